"""Dates of a register export: ISO, 西暦 and 和暦 (Japanese era) forms.

Japanese register systems print dates in many ways, and one column may mix
them. This module is the one parser rrnet uses for every date column. It
accepts, after NFKC (so full-width digits and letters, and the square era
signs such as ㍻, read as their plain forms) and with surrounding white space
ignored:

- 西暦 with separators: ``2002-09-06``, ``2002-9-6``, ``2002/09/06``,
  ``2002/9/6`` (Excel), ``2002.09.06``; the two separators must be the same;
- 西暦 digits: ``20020906``;
- 西暦 in kanji: ``2002年9月6日``, ``2002年09月06日``;
- 和暦 with the era name: ``平成14年9月6日``, ``平成１４年９月６日``,
  ``令和元年5月1日`` (元年 is year 1), with optional spaces between the parts;
- 和暦 with the era initial of JIS X 0301 (M, T, S, H, R, either case):
  ``H14.9.6``, ``H14/09/06``, ``h14-09-06``;
- the 7-digit era-code form of municipal data exchange: one era digit
  (1 明治, 2 大正, 3 昭和, 4 平成, 5 令和) then YYMMDD, ``4140906``.

A 和暦 date must lie inside its era: 平成31年4月30日 is the last day of 平成,
平成31年5月1日 is not a real date (that day is 令和元年5月1日). Days that do
not exist (2月30日, 平成13年2月29日) are not real dates either. A leading sign
(``+2020-01-01``) is not a date.

Sources for the era table (``ERAS``):

- 明治: the era began by the 改元の詔 of 明治元年9月8日; the law made it run from
  慶応4年1月1日 (1868-01-25). rrnet starts 明治 on 1868-09-08, as CLDR does
  (supplemental calendarData, japanese era 232, start 1868-9-8) and so ICU and
  Java. Caution: Japan kept its lunisolar calendar until 明治5年12月2日, the
  day before 明治6年1月1日 = 1873-01-01 (明治5年太政官布告第337号), so a
  明治1-5 date in an old document is not the Gregorian day computed here.
  Registers never need it (ingest rejects births before 1880).
- 大正: from 1912-07-30 (明治45年7月30日 改元の詔書).
- 昭和: from 1926-12-25 (大正15年12月25日 改元の詔書).
- 平成: from 1989-01-08 (元号を改める政令, 昭和64年政令第1号).
- 令和: from 2019-05-01 (元号を改める政令, 平成31年政令第143号).
- Initials M, T, S, H: JIS X 0301:2002; R: its amendment JIS X 0301:2002/AMD 1:2019.
- Era codes 1-5: the numbering used in municipal data exchange.

Maintained PyPI libraries (japanera, jpdatetime) convert one value at a time;
this module keeps the table and parses whole columns with Polars, with a pure
Python scalar twin (``parse_date``) that the tests check it against.

>>> parse_date('平成14年9月6日')
datetime.date(2002, 9, 6)
>>> parse_date(' Ｈ１４．９．６ ')
datetime.date(2002, 9, 6)
>>> parse_date('4140906')
datetime.date(2002, 9, 6)
>>> parse_date('令和元年5月1日')
datetime.date(2019, 5, 1)
>>> parse_date('平成31年5月1日')
Traceback (most recent call last):
    ...
rrnet_cli.dates.InvalidDate: not a real date (平成 ended on 2019-04-30; that day is in 令和)
>>> parse_date('2001-02-29')
Traceback (most recent call last):
    ...
rrnet_cli.dates.InvalidDate: not a real date (no such day)
>>> to_wareki(datetime.date(2019, 5, 1))
'令和元年5月1日'
>>> to_wareki(datetime.date(2002, 9, 6), style='initial')
'H14.09.06'
>>> to_wareki(datetime.date(2002, 9, 6), style='code')
'4140906'
>>> format_date(datetime.date(2002, 9, 6), 'seireki')
'2002年9月6日'
>>> import polars as pl
>>> parse_dates(pl.Series('birth_date', ['2002-09-06', 'H14.9.6', '', None, 'abc'])).to_list()
[datetime.date(2002, 9, 6), datetime.date(2002, 9, 6), None, None, None]
>>> date_problems(pl.Series(['2019-04-30', '令和元年4月30日'])).to_list()[1]
'not a real date (令和 began on 2019-05-01; that day is in 平成)'
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from dataclasses import dataclass

import polars as pl

#: Japan's time: UTC+9 all year (no daylight saving since 1951). Every date and
#: time rrnet shows is Japan's, whatever the machine's own time zone.
JAPAN = datetime.timezone(datetime.timedelta(hours=9), "JST")

__all__ = [
    "DATE_FORMS_HELP",
    "ERAS",
    "JAPAN",
    "Era",
    "InvalidDate",
    "date_problems",
    "format_date",
    "in_japan",
    "parse_date",
    "parse_dates",
    "to_wareki",
]


def in_japan(moment: datetime.datetime) -> datetime.datetime:
    """``moment`` (aware; a naive one is taken as UTC, as the ledger stores times) in
    Japan's time."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(JAPAN)


@dataclass(frozen=True)
class Era:
    """One era (元号): its name, JIS X 0301 initial, data-exchange code and days.

    ``end`` is the era's last day (inclusive); None for the current era.
    """

    name: str
    initial: str
    code: int
    start: datetime.date
    end: datetime.date | None


# Sources: see the module docstring (CLDR for 明治's start; the 詔書 and 政令 for
# the changes of era; JIS X 0301 for the initials; municipal data exchange for the codes).
ERAS: tuple[Era, ...] = (
    Era("明治", "M", 1, datetime.date(1868, 9, 8), datetime.date(1912, 7, 29)),
    Era("大正", "T", 2, datetime.date(1912, 7, 30), datetime.date(1926, 12, 24)),
    Era("昭和", "S", 3, datetime.date(1926, 12, 25), datetime.date(1989, 1, 7)),
    Era("平成", "H", 4, datetime.date(1989, 1, 8), datetime.date(2019, 4, 30)),
    Era("令和", "R", 5, datetime.date(2019, 5, 1), None),
)

DATE_FORMS_HELP = (
    "expected 2002-09-06, 2002/9/6, 20020906, 2002年9月6日, 平成14年9月6日, H14.9.6 or 4140906"
)

NOT_A_DATE = f"not a date ({DATE_FORMS_HELP})"
NO_YEAR_ZERO = "not a real date (there is no year 0)"
NO_SUCH_MONTH = "not a real date (no such month)"
NO_SUCH_DAY = "not a real date (no such day)"
EMPTY = "not a date (empty)"

_BY_CODE = {era.code: era for era in ERAS}
_BY_NAME = {era.name: era.code for era in ERAS}
_BY_INITIAL = {era.initial: era.code for era in ERAS}
_MAX_ERA_YEAR = 99  # the parsed forms carry at most two digits of era year

# White space as Unicode defines it (what Polars' strip_chars removes); Python's
# str.strip() would also remove a few control characters, so both sides use this.
_WS = (
    "\t\n\v\f\r \x85\xa0\u1680"
    + "".join(map(chr, range(0x2000, 0x200B)))
    + "\u2028\u2029\u202f\u205f\u3000"
)

# Patterns shared by Polars (Rust regex) and Python re: plain ASCII classes only.
_SP = "[ \t]*"
_ERA_NAMES = "|".join(era.name for era in ERAS)
_INITIALS = "".join(era.initial + era.initial.lower() for era in ERAS)
_ERA_YEAR = "(元|[0-9]{1,2})"
_SEP = "([-/.])"
_MD = "([0-9]{1,2})"
_KANJI_MD = f"{_SP}年{_SP}{_MD}{_SP}月{_SP}{_MD}{_SP}日"

# Each form's pattern; _fields (scalar) and _form_fields (Polars) read its groups.
_FORMS: dict[str, str] = {
    "sep": f"^([0-9]{{4}}){_SEP}{_MD}{_SEP}{_MD}$",  # 2002-9-6, 2002/09/06, 2002.9.6
    "digits": "^([0-9]{4})([0-9]{2})([0-9]{2})$",  # 20020906
    "nen": f"^([0-9]{{4}}){_KANJI_MD}$",  # 2002年9月6日
    "kanji": f"^({_ERA_NAMES}){_SP}{_ERA_YEAR}{_KANJI_MD}$",  # 平成14年9月6日
    "initial": f"^([{_INITIALS}]){_SP}{_ERA_YEAR}{_SEP}{_MD}{_SEP}{_MD}$",  # H14.9.6
    "code": "^([1-5])([0-9]{2})([0-9]{2})([0-9]{2})$",  # 4140906
}
_COMPILED = {name: re.compile(pattern) for name, pattern in _FORMS.items()}

# Fast path: the plain forms, parsed by Polars' own date parser on the values
# shaped for it (the shape check also keeps out what the parser would tolerate:
# signs, surrounding spaces, 7-digit "%Y%m%d").
_ISO_DASH = "^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}$"
_ISO_SLASH = "^[0-9]{4}/[0-9]{1,2}/[0-9]{1,2}$"
_DIGITS8 = "^[0-9]{8}$"
# A character outside ASCII and the kanji of the forms: only such values can change under NFKC.
_NFKC_UNSTABLE = "[^\\x00-\\x7F年月日元" + "".join(era.name for era in ERAS) + "]"


class InvalidDate(ValueError):
    """A value that is no date rrnet reads; str() is the reason, never the value."""


# ---------------------------------------------------------------------------
# Reasons


def _era_reason(era: Era, day: datetime.date) -> str | None:
    """Why ``day`` is outside ``era``, or None when it is inside."""
    if day < era.start:
        other = _era_of(day)
        where = f"that day is in {other.name}" if other else "rrnet knows no earlier era"
        return f"not a real date ({era.name} began on {era.start.isoformat()}; {where})"
    if era.end is not None and day > era.end:
        other = _era_of(day)
        assert other is not None
        return (
            f"not a real date ({era.name} ended on {era.end.isoformat()}; "
            f"that day is in {other.name})"
        )
    return None


def _era_of(day: datetime.date) -> Era | None:
    found = None
    for era in ERAS:
        if day >= era.start:
            found = era
    return found


# Reason keys of the vectorised path: small integers mapped to the messages.
_OK, _NOT_A_DATE, _YEAR_ZERO, _BAD_MONTH, _BAD_DAY = 0, 1, 2, 3, 4
_BEFORE, _AFTER = 100, 200  # + 10 * era code + code of the era the day is in (0: none)


def _reason_messages() -> dict[int, str]:
    messages = {
        _NOT_A_DATE: NOT_A_DATE,
        _YEAR_ZERO: NO_YEAR_ZERO,
        _BAD_MONTH: NO_SUCH_MONTH,
        _BAD_DAY: NO_SUCH_DAY,
    }
    for era in ERAS:
        # A representative day in each other era gives the same message as any.
        for other in (None, *ERAS):
            probe = other.start if other else ERAS[0].start - datetime.timedelta(days=1)
            reason = _era_reason(era, probe)
            if reason is None:
                continue
            base = _BEFORE if probe < era.start else _AFTER
            messages[base + 10 * era.code + (other.code if other else 0)] = reason
    return messages


_REASONS = _reason_messages()


# ---------------------------------------------------------------------------
# Scalar


def _fields(text: str) -> tuple[int, int, int, int] | None:
    """(era code or 0, year, month, day) of a cleaned value, or None."""
    for name, pattern in _COMPILED.items():
        found = pattern.fullmatch(text)
        if found is None:
            continue
        g = found.groups()
        if name == "sep":
            return (0, int(g[0]), int(g[2]), int(g[4])) if g[1] == g[3] else None
        if name in ("digits", "nen"):
            return 0, int(g[0]), int(g[1]), int(g[2])
        if name == "kanji":
            return _BY_NAME[g[0]], _era_year(g[1]), int(g[2]), int(g[3])
        if name == "initial":
            if g[2] != g[4]:
                return None
            return _BY_INITIAL[g[0].upper()], _era_year(g[1]), int(g[3]), int(g[5])
        return int(g[0]), int(g[1]), int(g[2]), int(g[3])  # code
    return None


def _era_year(text: str) -> int:
    return 1 if text == "元" else int(text)


def _clean(text: str) -> str:
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return text.strip(_WS)


def _parse_one(text: str) -> tuple[datetime.date | None, str | None]:
    """(day, None) when ``text`` parses, (None, reason) when not, (None, None) if empty."""
    text = _clean(text)
    if not text:
        return None, None
    fields = _fields(text)
    if fields is None:
        return None, NOT_A_DATE
    code, year, month, day = fields
    era = _BY_CODE.get(code)
    if year < 1:
        return None, NO_YEAR_ZERO
    if not 1 <= month <= 12:
        return None, NO_SUCH_MONTH
    if era is not None:
        year += era.start.year - 1
    try:
        result = datetime.date(year, month, day)
    except ValueError:
        return None, NO_SUCH_DAY
    if era is not None:
        reason = _era_reason(era, result)
        if reason is not None:
            return None, reason
    return result, None


def parse_date(text: str) -> datetime.date:
    """The day that ``text`` names, in any accepted form.

    Raises InvalidDate (a ValueError) whose message gives the reason and never
    the value; an empty value raises with the reason "not a date (empty)".
    """
    day, reason = _parse_one(text)
    if day is None:
        raise InvalidDate(reason or EMPTY)
    return day


def _era_for(day: datetime.date) -> Era:
    era = _era_of(day)
    if era is None:
        raise ValueError(f"{day.isoformat()} is before {ERAS[0].name} ({ERAS[0].start}): no 和暦")
    return era


def to_wareki(day: datetime.date, *, style: str = "kanji") -> str:
    """``day`` in the Japanese calendar.

    ``style`` is "kanji" (平成14年9月6日, 元年 for year 1), "initial" (H14.09.06,
    JIS X 0301) or "code" (4140906). Raises ValueError for a day before 明治 or
    past the 99th year of an era (no form here carries three digits).

    >>> to_wareki(datetime.date(1989, 1, 7)), to_wareki(datetime.date(1989, 1, 8))
    ('昭和64年1月7日', '平成元年1月8日')
    """
    era = _era_for(day)
    year = day.year - era.start.year + 1
    if year > _MAX_ERA_YEAR:
        raise ValueError(f"{era.name} has no year {year} in rrnet's forms")
    if style == "kanji":
        shown = "元" if year == 1 else str(year)
        return f"{era.name}{shown}年{day.month}月{day.day}日"
    if style == "initial":
        return f"{era.initial}{year:02d}.{day.month:02d}.{day.day:02d}"
    if style == "code":
        return f"{era.code}{year:02d}{day.month:02d}{day.day:02d}"
    raise ValueError(f"unknown 和暦 style {style!r}: use kanji, initial or code")


def format_date(day: datetime.date, style: str) -> str:
    """``day`` as "iso" (2002-09-06), "seireki" (2002年9月6日) or "wareki" (平成14年9月6日)."""
    if style == "iso":
        return day.isoformat()
    if style == "seireki":
        return f"{day.year}年{day.month}月{day.day}日"
    if style == "wareki":
        return to_wareki(day)
    raise ValueError(f"unknown date style {style!r}: use iso, seireki or wareki")


# ---------------------------------------------------------------------------
# Vectorised


def _as_text(column: pl.Series) -> pl.Series:
    if column.dtype == pl.String:
        return column
    return column.cast(pl.String)


def _fast(text: pl.Series) -> pl.Series:
    """Plain ISO/slash/8-digit values parsed by Polars; null for everything else."""
    frame = text.to_frame("v")
    v = pl.col("v")
    parts: list[pl.Expr] = []
    if text.str.contains("-", literal=True).any():
        dash = pl.when(v.str.contains(_ISO_DASH)).then(v)
        parts.append(dash.str.to_date("%Y-%m-%d", strict=False))
    if text.str.contains("/", literal=True).any():
        slash = pl.when(v.str.contains(_ISO_SLASH)).then(v)
        parts.append(slash.str.to_date("%Y/%m/%d", strict=False))
    if (text.str.len_bytes() == 8).any():
        digits = pl.when(v.str.contains(_DIGITS8)).then(v)
        parts.append(digits.str.to_date("%Y%m%d", strict=False))
    if not parts:
        return pl.Series(text.name, [], pl.Date).extend_constant(None, len(text))
    day = pl.coalesce(parts) if len(parts) > 1 else parts[0]
    if text.str.starts_with("0000").any():  # Polars has a year 0; the calendar has not
        day = pl.when(day.dt.year() >= 1).then(day)
    return frame.select(day.alias(text.name)).to_series()


def _form_fields(name: str) -> tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr]:
    """(era code, year, month, day) of one form, read from its groups (struct column ``name``).

    The era code is an integer (0 for 西暦), the other three are the matched text;
    all four are null where the form does not match.
    """
    g = pl.col(name)

    def f(i: int) -> pl.Expr:
        return g.struct.field(str(i))

    zero = pl.lit(0, pl.Int64)
    if name == "sep":
        era, ok, ymd = zero, f(2) == f(4), (f(1), f(3), f(5))
    elif name in ("digits", "nen"):
        era, ok, ymd = zero, f(1).is_not_null(), (f(1), f(2), f(3))
    elif name == "kanji":
        era = f(1).replace_strict(_BY_NAME, default=None, return_dtype=pl.Int64)
        ok, ymd = f(1).is_not_null(), (f(2), f(3), f(4))
    elif name == "initial":
        initial = f(1).str.to_uppercase()
        era = initial.replace_strict(_BY_INITIAL, default=None, return_dtype=pl.Int64)
        ok, ymd = f(3) == f(5), (f(2), f(4), f(6))
    else:  # code
        era, ok, ymd = f(1).cast(pl.Int64), f(1).is_not_null(), (f(2), f(3), f(4))
    a, b, c, d = (pl.when(ok).then(x) for x in (era, *ymd))
    return a, b, c, d


def _days_from_civil(y: pl.Expr, m: pl.Expr, d: pl.Expr) -> pl.Expr:
    """Days since 1970-01-01 of a valid proleptic Gregorian (y, m, d) (H. Hinnant)."""
    y = y - (m <= 2).cast(pl.Int64)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + pl.when(m > 2).then(-3).otherwise(9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _slow(text: pl.Series) -> pl.DataFrame:
    """Every form, field by field: columns ``day`` (Date) and ``why`` (reason key)."""
    frame = text.rename("s").to_frame()
    s = pl.col("s")
    # NFKC only the values it can change: ASCII and the kanji of the forms are stable.
    unstable = text.str.contains(_NFKC_UNSTABLE)
    if unstable.any():
        nfkc = pl.when(unstable).then(s).str.normalize("NFKC")
        frame = frame.with_columns(pl.coalesce(nfkc, s).alias("s"))
    stripped = s.str.strip_chars(_WS)
    frame = frame.with_columns(pl.when(stripped != "").then(stripped).alias("s"))
    cleaned = frame["s"]

    forms = []
    if cleaned.str.contains("^[0-9]{4}[-/.]").any():
        forms.append("sep")
    if (cleaned.str.len_bytes() == 8).any():
        forms.append("digits")
    if (cleaned.str.len_bytes() == 7).any():
        forms.append("code")
    if cleaned.str.contains("年", literal=True).any():
        forms += ["nen", "kanji"]
    if cleaned.str.contains(f"^[{_INITIALS}]").any():
        forms.append("initial")
    if not forms:
        return frame.select(
            pl.lit(None, pl.Date).alias("day"),
            pl.when(s.is_null()).then(_OK).otherwise(_NOT_A_DATE).cast(pl.Int16).alias("why"),
        )

    frame = frame.with_columns(s.str.extract_groups(_FORMS[name]).alias(name) for name in forms)
    per_form = [_form_fields(name) for name in forms]
    frame = frame.with_columns(
        pl.coalesce([fields[i] for fields in per_form]).alias(col)
        for i, col in enumerate(("era", "y", "m", "d"))
    ).with_columns(
        pl.when(pl.col("y") == "元").then(1).otherwise(pl.col("y").cast(pl.Int64)).alias("y"),
        pl.col("m").cast(pl.Int64),
        pl.col("d").cast(pl.Int64),
    )
    era, y, m, d = pl.col("era"), pl.col("y"), pl.col("m"), pl.col("d")
    start_year = era.replace_strict(
        {e.code: e.start.year for e in ERAS}, default=1, return_dtype=pl.Int64
    )
    frame = frame.with_columns(
        gy=y + start_year - 1,
        month_ok=(m >= 1) & (m <= 12),
    )
    gy = pl.col("gy")
    leap = ((gy % 4 == 0) & (gy % 100 != 0)) | (gy % 400 == 0)
    days_in_month = (
        pl.when(m == 2)
        .then(28 + leap.cast(pl.Int64))
        .when(m.is_in([4, 6, 9, 11]))
        .then(30)
        .otherwise(31)
    )
    frame = frame.with_columns(
        day_ok=pl.col("month_ok") & (y >= 1) & (d >= 1) & (d <= days_in_month),
    )
    frame = frame.with_columns(
        day=pl.when(pl.col("day_ok")).then(_days_from_civil(gy, m, d)).cast(pl.Int32).cast(pl.Date),
    )
    day = pl.col("day")
    start = era.replace_strict({e.code: e.start for e in ERAS}, default=None, return_dtype=pl.Date)
    end = era.replace_strict({e.code: e.end for e in ERAS}, default=None, return_dtype=pl.Date)
    in_era = pl.sum_horizontal([(day >= e.start).cast(pl.Int16) for e in ERAS])
    why = (
        pl.when(s.is_null())
        .then(_OK)
        .when(era.is_null())
        .then(_NOT_A_DATE)
        .when(y < 1)
        .then(_YEAR_ZERO)
        .when(~pl.col("month_ok"))
        .then(_BAD_MONTH)
        .when(~pl.col("day_ok"))
        .then(_BAD_DAY)
        .when(day < start)
        .then(_BEFORE + 10 * era + in_era)
        .when(day > end)
        .then(_AFTER + 10 * era + in_era)
        .otherwise(_OK)
        .cast(pl.Int16)
    )
    return frame.select(pl.when(why == _OK).then(day).alias("day"), why.alias("why"))


def _analyse(column: pl.Series, *, reasons: bool) -> tuple[pl.Series, pl.Series | None]:
    """(dates, reason keys or None): the fast path first, every form on the rest."""
    if column.dtype == pl.Date:
        text = None
        days = column
    elif isinstance(column.dtype, pl.Datetime):
        text = None
        days = column.dt.date()
    else:
        text = _as_text(column)
        days = _fast(text)
    keys = pl.zeros(len(column), pl.Int16, eager=True) if reasons else None
    if text is None:
        return days.rename(column.name), keys
    rest = text.is_not_null() & days.is_null()
    if rest.any():
        where = rest.arg_true()
        slow = _slow(text.filter(rest))
        days = days.scatter(where, slow["day"])
        if keys is not None:
            keys = keys.scatter(where, slow["why"])
    return days.rename(column.name), keys


def parse_dates(column: pl.Series) -> pl.Series:
    """A pl.Date Series: each value's day; null where empty, of no form, or not a real day."""
    return _analyse(column, reasons=False)[0]


def date_problems(column: pl.Series) -> pl.Series:
    """A pl.String Series: None where empty or valid, else why (never the value itself)."""
    keys = _analyse(column, reasons=True)[1]
    assert keys is not None
    return keys.replace_strict(_REASONS, default=None, return_dtype=pl.String).rename(column.name)
