"""rrnet_cli.dates: every accepted form, the era boundaries, and scalar == vectorised."""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Callable

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrnet_cli.dates import (
    DATE_FORMS_HELP,
    ERAS,
    InvalidDate,
    date_problems,
    format_date,
    parse_date,
    parse_dates,
    to_wareki,
)

D = datetime.date
NOT_A_DATE = f"not a date ({DATE_FORMS_HELP})"
NO_SUCH_DAY = "not a real date (no such day)"
NO_SUCH_MONTH = "not a real date (no such month)"
NO_YEAR_ZERO = "not a real date (there is no year 0)"
HEISEI_ENDED = "not a real date (平成 ended on 2019-04-30; that day is in 令和)"
REIWA_BEGAN = "not a real date (令和 began on 2019-05-01; that day is in 平成)"
SHOWA_ENDED = "not a real date (昭和 ended on 1989-01-07; that day is in 平成)"
MEIJI_ENDED = "not a real date (明治 ended on 1912-07-29; that day is in 大正)"
TAISHO_ENDED = "not a real date (大正 ended on 1926-12-24; that day is in 昭和)"
HEISEI_BEGAN = "not a real date (平成 began on 1989-01-08; that day is in 昭和)"
MEIJI_BEGAN = "not a real date (明治 began on 1868-09-08; rrnet knows no earlier era)"

FIRST_DAY = D(1868, 9, 8)
LAST_DAY = D(2100, 12, 31)


def fullwidth(text: str) -> str:
    """ASCII letters, digits and punctuation as their full-width forms."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# (value, the day it names or None, the reason date_problems gives or None)
CASES: list[tuple[str | None, D | None, str | None]] = [
    # Plain 西暦 forms.
    ("2002-09-06", D(2002, 9, 6), None),
    ("2002/09/06", D(2002, 9, 6), None),
    ("20020906", D(2002, 9, 6), None),
    ("2002-9-6", D(2002, 9, 6), None),
    ("2002.09.06", D(2002, 9, 6), None),
    ("2002/9/6", D(2002, 9, 6), None),
    ("2002.9.6", D(2002, 9, 6), None),
    ("2002年9月6日", D(2002, 9, 6), None),
    ("2002年09月06日", D(2002, 9, 6), None),
    ("2002 年 9 月 6 日", D(2002, 9, 6), None),
    # 和暦 with the era name.
    ("平成14年9月6日", D(2002, 9, 6), None),
    ("平成14年09月06日", D(2002, 9, 6), None),
    ("平成１４年９月６日", D(2002, 9, 6), None),
    ("平成 14年 9月 6日", D(2002, 9, 6), None),
    ("平成　１４年　９月　６日", D(2002, 9, 6), None),  # ideographic spaces
    ("㍻14年9月6日", D(2002, 9, 6), None),  # the square era sign, via NFKC
    ("令和元年5月1日", D(2019, 5, 1), None),
    ("令和1年5月1日", D(2019, 5, 1), None),
    ("昭和63年1月7日", D(1988, 1, 7), None),
    ("大正15年12月24日", D(1926, 12, 24), None),
    ("明治元年9月8日", D(1868, 9, 8), None),
    # Era initials (JIS X 0301).
    ("H14.9.6", D(2002, 9, 6), None),
    ("H14/09/06", D(2002, 9, 6), None),
    ("H14-09-06", D(2002, 9, 6), None),
    ("h14.9.6", D(2002, 9, 6), None),
    ("S63.1.7", D(1988, 1, 7), None),
    ("R1.5.1", D(2019, 5, 1), None),
    ("r01.05.01", D(2019, 5, 1), None),
    ("T1.7.30", D(1912, 7, 30), None),
    ("M45.7.29", D(1912, 7, 29), None),
    ("Ｈ１４．９．６", D(2002, 9, 6), None),
    ("ｈ14.9.6", D(2002, 9, 6), None),
    # The era-code form of data exchange.
    ("4140906", D(2002, 9, 6), None),
    ("3630107", D(1988, 1, 7), None),
    ("5010501", D(2019, 5, 1), None),
    ("1450729", D(1912, 7, 29), None),
    ("４１４０９０６", D(2002, 9, 6), None),
    # Full-width 西暦 and white space around the value.
    ("２００２－０９－０６", D(2002, 9, 6), None),
    ("２００２年９月６日", D(2002, 9, 6), None),
    ("  2002-09-06  ", D(2002, 9, 6), None),
    ("\t20020906\n", D(2002, 9, 6), None),
    ("\u30002002/9/6\u3000", D(2002, 9, 6), None),
    # Changeover days: the era's last day, and the next era's first day.
    ("明治45年7月29日", D(1912, 7, 29), None),
    ("明治45年7月30日", None, MEIJI_ENDED),
    ("大正元年7月30日", D(1912, 7, 30), None),
    ("大正元年7月29日", None, "not a real date (大正 began on 1912-07-30; that day is in 明治)"),
    ("大正15年12月24日", D(1926, 12, 24), None),
    ("大正15年12月25日", None, TAISHO_ENDED),
    ("昭和元年12月25日", D(1926, 12, 25), None),
    ("昭和元年12月24日", None, "not a real date (昭和 began on 1926-12-25; that day is in 大正)"),
    ("昭和64年1月7日", D(1989, 1, 7), None),
    ("昭和64年1月8日", None, SHOWA_ENDED),
    ("S64.1.8", None, SHOWA_ENDED),
    ("3640108", None, SHOWA_ENDED),
    ("平成元年1月8日", D(1989, 1, 8), None),
    ("平成元年1月7日", None, HEISEI_BEGAN),
    ("平成31年4月30日", D(2019, 4, 30), None),
    ("平成31年5月1日", None, HEISEI_ENDED),
    ("H31.5.1", None, HEISEI_ENDED),
    ("4310501", None, HEISEI_ENDED),
    ("令和元年5月1日", D(2019, 5, 1), None),
    ("令和元年4月30日", None, REIWA_BEGAN),
    ("R1.4.30", None, REIWA_BEGAN),
    ("5010430", None, REIWA_BEGAN),
    ("明治元年1月1日", None, MEIJI_BEGAN),
    ("大正99年1月1日", None, "not a real date (大正 ended on 1926-12-24; that day is in 平成)"),
    ("1912-07-29", D(1912, 7, 29), None),
    ("1912-07-30", D(1912, 7, 30), None),
    ("1926-12-24", D(1926, 12, 24), None),
    ("1926-12-25", D(1926, 12, 25), None),
    ("1989-01-07", D(1989, 1, 7), None),
    ("1989-01-08", D(1989, 1, 8), None),
    ("2019-04-30", D(2019, 4, 30), None),
    ("2019-05-01", D(2019, 5, 1), None),
    # Days that do not exist.
    ("2002-02-30", None, NO_SUCH_DAY),
    ("2001-02-29", None, NO_SUCH_DAY),
    ("2000-02-29", D(2000, 2, 29), None),
    ("1900-02-29", None, NO_SUCH_DAY),
    ("20010229", None, NO_SUCH_DAY),
    ("2001/2/29", None, NO_SUCH_DAY),
    ("2002年2月30日", None, NO_SUCH_DAY),
    ("平成13年2月29日", None, NO_SUCH_DAY),
    ("平成12年2月29日", D(2000, 2, 29), None),
    ("H13.2.29", None, NO_SUCH_DAY),
    ("4130229", None, NO_SUCH_DAY),
    ("2002-04-31", None, NO_SUCH_DAY),
    ("2002-09-00", None, NO_SUCH_DAY),
    ("2002-13-01", None, NO_SUCH_MONTH),
    ("2002-00-01", None, NO_SUCH_MONTH),
    ("99999999", None, NO_SUCH_MONTH),
    ("0000-01-01", None, NO_YEAR_ZERO),
    ("00000101", None, NO_YEAR_ZERO),
    ("平成0年1月1日", None, NO_YEAR_ZERO),
    # Garbage.
    ("abc", None, NOT_A_DATE),
    ("平成", None, NOT_A_DATE),
    ("H14", None, NOT_A_DATE),
    ("+2020-01-01", None, NOT_A_DATE),
    ("-2020-01-01", None, NOT_A_DATE),
    ("2002-09/06", None, NOT_A_DATE),
    ("H14.9-6", None, NOT_A_DATE),
    ("2002-09-06T00:00", None, NOT_A_DATE),
    ("2002-09-06 x", None, NOT_A_DATE),
    ("02-09-06", None, NOT_A_DATE),
    ("2002096", None, NO_YEAR_ZERO),  # 7 digits read as era code 2 (大正), year 00
    ("6140906", None, NOT_A_DATE),
    ("X14.9.6", None, NOT_A_DATE),
    ("平成14年9月6", None, NOT_A_DATE),
    ("平成十四年九月六日", None, NOT_A_DATE),
    ("2002年9月6日生", None, NOT_A_DATE),
    ("٢٠٠٢-٠٩-٠٦", None, NOT_A_DATE),  # Arabic-Indic digits are not NFKC digits
    # Empty.
    ("", None, None),
    ("   ", None, None),
    ("\u3000", None, None),
    (None, None, None),
]

IDS = [repr(value) for value, _, _ in CASES]


@pytest.fixture(scope="module")
def table() -> tuple[list[D | None], list[str | None]]:
    column = pl.Series("birth_date", [value for value, _, _ in CASES], pl.String)
    return parse_dates(column).to_list(), date_problems(column).to_list()


@pytest.mark.parametrize(("index", "case"), list(enumerate(CASES)), ids=IDS)
def test_table_vectorised(
    table: tuple[list[D | None], list[str | None]],
    index: int,
    case: tuple[str | None, D | None, str | None],
) -> None:
    _, day, reason = case
    days, reasons = table
    assert days[index] == day
    assert reasons[index] == reason


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_table_scalar(case: tuple[str | None, D | None, str | None]) -> None:
    value, day, reason = case
    if value is None:
        return
    if day is not None:
        assert parse_date(value) == day
        return
    with pytest.raises(InvalidDate) as caught:
        parse_date(value)
    assert str(caught.value) == (reason or "not a date (empty)")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_table_one_value_at_a_time(case: tuple[str | None, D | None, str | None]) -> None:
    """A value parses the same alone as among the others (no column-wide choice leaks)."""
    value, day, reason = case
    column = pl.Series([value], dtype=pl.String)
    assert parse_dates(column).to_list() == [day]
    assert date_problems(column).to_list() == [reason]


def test_reasons_never_carry_the_value(
    table: tuple[list[D | None], list[str | None]],
) -> None:
    _, reasons = table
    for (value, _, _), reason in zip(CASES, reasons, strict=True):
        if reason is None:
            continue
        assert value is not None
        # The help text names example dates; past it, nothing may echo the input.
        assert value.strip() not in reason.replace(DATE_FORMS_HELP, "")
    personal = pl.Series(["1985-02-30", "昭和60年2月30日", "1985年13月3日", "Ｓ６０．２．３０x"])
    for reason in date_problems(personal).to_list():
        assert reason is not None
        assert "1985" not in reason and "60" not in reason and "30" not in reason


def test_series_shape_name_and_type() -> None:
    column = pl.Series("stay_expiry", ["2030-01-01", None, "R12.1.1", "x"])
    days = parse_dates(column)
    assert days.name == "stay_expiry" and days.dtype == pl.Date and len(days) == 4
    problems = date_problems(column)
    assert problems.name == "stay_expiry" and problems.dtype == pl.String
    assert problems.to_list() == [None, None, None, NOT_A_DATE]
    assert parse_dates(pl.Series("e", [], pl.String)).dtype == pl.Date
    assert date_problems(pl.Series("e", [], pl.String)).to_list() == []
    assert parse_dates(pl.Series("n", [None, None], pl.String)).to_list() == [None, None]


def test_non_string_columns() -> None:
    """An integer column (a CSV reader's guess) and date columns still parse."""
    ints = pl.Series("b", [20020906, 4140906, 123, None])
    assert parse_dates(ints).to_list() == [D(2002, 9, 6), D(2002, 9, 6), None, None]
    assert date_problems(ints).to_list() == [None, None, NOT_A_DATE, None]
    days = pl.Series("b", [D(2002, 9, 6), None])
    assert parse_dates(days).to_list() == [D(2002, 9, 6), None]
    assert date_problems(days).to_list() == [None, None]
    stamps = pl.Series("b", [datetime.datetime(2002, 9, 6, 12, 0)])
    assert parse_dates(stamps).to_list() == [D(2002, 9, 6)]


def test_mixed_column() -> None:
    values = ["2002-09-06", "H14.9.6", "4140906", "20020906", "平成１４年９月６日", "2002.9.6"]
    assert parse_dates(pl.Series(values * 1000)).to_list() == [D(2002, 9, 6)] * 6000


def test_parse_date_errors() -> None:
    with pytest.raises(InvalidDate, match=r"^not a date \(empty\)$"):
        parse_date("  ")
    with pytest.raises(ValueError, match="平成 ended"):
        parse_date("平成31年5月1日")


# ---------------------------------------------------------------------------
# Era table and formatting


def test_era_table_is_contiguous() -> None:
    assert [era.code for era in ERAS] == [1, 2, 3, 4, 5]
    assert [era.initial for era in ERAS] == ["M", "T", "S", "H", "R"]
    assert [era.name for era in ERAS] == ["明治", "大正", "昭和", "平成", "令和"]
    assert ERAS[0].start == FIRST_DAY
    for before, after in itertools.pairwise(ERAS):
        assert before.end is not None
        assert before.end + datetime.timedelta(days=1) == after.start
    assert ERAS[-1].end is None


@pytest.mark.parametrize(
    ("day", "kanji", "initial", "code"),
    [
        (D(1868, 9, 8), "明治元年9月8日", "M01.09.08", "1010908"),
        (D(1912, 7, 29), "明治45年7月29日", "M45.07.29", "1450729"),
        (D(1912, 7, 30), "大正元年7月30日", "T01.07.30", "2010730"),
        (D(1926, 12, 24), "大正15年12月24日", "T15.12.24", "2151224"),
        (D(1926, 12, 25), "昭和元年12月25日", "S01.12.25", "3011225"),
        (D(1989, 1, 7), "昭和64年1月7日", "S64.01.07", "3640107"),
        (D(1989, 1, 8), "平成元年1月8日", "H01.01.08", "4010108"),
        (D(2002, 9, 6), "平成14年9月6日", "H14.09.06", "4140906"),
        (D(2019, 4, 30), "平成31年4月30日", "H31.04.30", "4310430"),
        (D(2019, 5, 1), "令和元年5月1日", "R01.05.01", "5010501"),
        (D(2100, 12, 31), "令和82年12月31日", "R82.12.31", "5821231"),
    ],
)
def test_to_wareki(day: D, kanji: str, initial: str, code: str) -> None:
    assert to_wareki(day) == kanji
    assert to_wareki(day, style="kanji") == kanji
    assert to_wareki(day, style="initial") == initial
    assert to_wareki(day, style="code") == code
    assert format_date(day, "wareki") == kanji


def test_format_date() -> None:
    day = D(2002, 9, 6)
    assert format_date(day, "iso") == "2002-09-06"
    assert format_date(day, "seireki") == "2002年9月6日"
    assert format_date(day, "wareki") == "平成14年9月6日"
    with pytest.raises(ValueError, match="unknown date style"):
        format_date(day, "roman")


def test_to_wareki_limits() -> None:
    with pytest.raises(ValueError, match="before 明治"):
        to_wareki(D(1868, 9, 7))
    with pytest.raises(ValueError, match="no year 100"):
        to_wareki(D(2118, 1, 1))
    with pytest.raises(ValueError, match="unknown 和暦 style"):
        to_wareki(D(2002, 9, 6), style="kana")


# ---------------------------------------------------------------------------
# Properties


ALL_DAYS = [FIRST_DAY + datetime.timedelta(days=n) for n in range((LAST_DAY - FIRST_DAY).days + 1)]


@pytest.mark.parametrize(
    "render",
    [
        lambda d: d.isoformat(),
        lambda d: d.strftime("%Y%m%d"),
        lambda d: f"{d.year}/{d.month}/{d.day}",
        lambda d: format_date(d, "seireki"),
        lambda d: to_wareki(d, style="kanji"),
        lambda d: to_wareki(d, style="initial"),
        lambda d: to_wareki(d, style="code"),
        lambda d: fullwidth(to_wareki(d, style="kanji")),
        lambda d: fullwidth(to_wareki(d, style="initial")).lower(),
    ],
    ids=[
        "iso",
        "yyyymmdd",
        "excel",
        "seireki",
        "kanji",
        "initial",
        "code",
        "kanji-fullwidth",
        "initial-fullwidth-lower",
    ],
)
def test_every_day_round_trips(render: Callable[[D], str]) -> None:
    """Every day from 明治's start to 2100, rendered, parses back in one vectorised call."""
    column = pl.Series("d", [render(day) for day in ALL_DAYS])
    assert len(column) > 84_000
    assert parse_dates(column).to_list() == ALL_DAYS
    assert date_problems(column).null_count() == len(column)


def test_every_day_round_trips_mixed() -> None:
    """One column mixing every style, in rotation."""
    styles = ("kanji", "initial", "code")
    values = [
        to_wareki(day, style=styles[n % 3]) if n % 4 else day.isoformat()
        for n, day in enumerate(ALL_DAYS)
    ]
    assert parse_dates(pl.Series(values)).to_list() == ALL_DAYS


def test_every_day_of_each_era_is_rejected_in_the_neighbouring_eras() -> None:
    """Writing a day in the era before or after its own is an error, never a silent shift."""
    values, reasons = [], []
    for era, following in itertools.pairwise(ERAS):
        assert era.end is not None
        for offset in range(0, 400):
            day = following.start + datetime.timedelta(days=offset)
            year = day.year - era.start.year + 1
            values.append(f"{era.name}{year}年{day.month}月{day.day}日")
            reasons.append(
                f"not a real date ({era.name} ended on {era.end.isoformat()}; "
                f"that day is in {following.name})"
            )
            day = era.end - datetime.timedelta(days=offset)
            year = day.year - following.start.year + 1
            if year < 1:
                continue
            values.append(f"{following.initial}{year}.{day.month}.{day.day}")
            reasons.append(
                f"not a real date ({following.name} began on {following.start.isoformat()}; "
                f"that day is in {era.name})"
            )
    column = pl.Series(values)
    assert parse_dates(column).null_count() == len(values)
    assert date_problems(column).to_list() == reasons


def scalar(value: str | None) -> tuple[D | None, str | None]:
    if value is None:
        return None, None
    try:
        return parse_date(value), None
    except InvalidDate as error:
        return None, None if str(error) == "not a date (empty)" else str(error)


ERA_WORDS = [era.name for era in ERAS] + [era.initial for era in ERAS]
ERA_WORDS += [era.initial.lower() for era in ERAS]
PIECES = st.sampled_from(
    [*ERA_WORDS, "年", "月", "日", "元", "-", "/", ".", " ", "\u3000", "+", "Ｈ", "㍻", "x", "T"]
)


@st.composite
def date_like(draw: st.DrawFn) -> str | None:
    """Values near the accepted forms: real days, bent fields, and shuffled pieces."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return None
    if kind == 1:  # a real day in any style, perhaps full-width or padded
        day = draw(st.dates(D(1860, 1, 1), D(2117, 12, 31)))
        style = draw(st.sampled_from(["iso", "seireki", "kanji", "initial", "code", "digits"]))
        if style in ("kanji", "initial", "code"):
            if day < FIRST_DAY:
                return day.isoformat()
            text = to_wareki(day, style=style)
        elif style == "digits":
            text = day.strftime("%Y%m%d")
        else:
            text = format_date(day, style)
        if draw(st.booleans()):
            text = fullwidth(text)
        return draw(st.sampled_from(["", " ", "\t", "\u3000"])) + text
    if kind == 2:  # era, year, month, day in range or just out of it
        era = draw(st.sampled_from(ERAS))
        year, month, day_ = (
            draw(st.integers(0, 99)),
            draw(st.integers(0, 13)),
            draw(st.integers(0, 32)),
        )
        form = draw(st.integers(0, 3))
        if form == 0:
            shown = "元" if year == 1 and draw(st.booleans()) else str(year)
            return f"{era.name}{shown}年{month}月{day_}日"
        if form == 1:
            sep = draw(st.sampled_from("-/."))
            return f"{era.initial}{year:02d}{sep}{month}{sep}{day_}"
        if form == 2:
            return f"{era.code}{year:02d}{month:02d}{day_:02d}"
        return f"{draw(st.integers(0, 9999)):04d}{draw(st.sampled_from('-/.'))}{month}-{day_}"
    if kind == 3:  # pieces and digits shuffled together
        parts = draw(st.lists(st.one_of(PIECES, st.integers(0, 2100).map(str)), max_size=8))
        return "".join(parts)
    # Any text; kept to the BMP, where Python's and Polars' Unicode tables agree.
    return draw(st.text(st.characters(max_codepoint=0xFFFF, codec="utf-8"), max_size=12))


@settings(max_examples=300, deadline=None)
@given(st.lists(date_like(), max_size=40))
def test_scalar_and_vectorised_agree(values: list[str | None]) -> None:
    column = pl.Series("v", values, dtype=pl.String)
    days = parse_dates(column).to_list()
    reasons = date_problems(column).to_list()
    assert list(zip(days, reasons, strict=True)) == [scalar(value) for value in values]


@settings(max_examples=200, deadline=None)
@given(st.dates(FIRST_DAY, D(2117, 12, 31)), st.sampled_from(["kanji", "initial", "code"]))
def test_scalar_round_trip(day: D, style: str) -> None:
    assert parse_date(to_wareki(day, style=style)) == day
    assert parse_date(day.isoformat()) == day


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20))
def test_reasons_come_from_a_fixed_set(text: str) -> None:
    """Whatever the input, a reason is one of a few fixed sentences."""
    reason = date_problems(pl.Series([text])).to_list()[0]
    assert reason is None or reason == NOT_A_DATE or reason.startswith("not a real date (")
