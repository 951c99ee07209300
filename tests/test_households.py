"""One envelope per household (rrnet notify --per-household), as an office meets it.

The register is written the way a municipal system exports it: CP932, CRLF,
Japanese headers, the householder listed first in each household. Everything is
read back from the files notify writes: the PDFs (pypdf), manifest.csv and
mailing.csv.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from helpers import MUNICIPALITY, profile_for, run_cli
from pypdf import PdfReader
from test_form import LONG_ALIAS, LONG_NAME, TOLERANCE_PT, fragments, squash

from rrnet_cli import household
from rrnet_cli.errors import UsageError
from rrnet_cli.form import compose, sheet_values
from rrnet_cli.languages import load_notices
from rrnet_cli.profile import load_profile
from rrnet_cli.schema import LANGUAGES, read_toml

HEADERS = [
    "宛名番号",
    "世帯番号",
    "氏名",
    "通称",
    "生年月日",
    "性別",
    "国籍・地域",
    "郵便番号",
    "住所",
    "通知言語",
]
LARGE = "000100"  # a household of 12, all Vietnamese
MIXED = "000200"  # Japanese, Korean and Portuguese notices
ADDRESS = "愛知県さくら市本町2-20-11 サンライズマンション307号室"


def member(
    resident_id: str,
    household_id: str,
    name: str,
    *,
    alias: str = "",
    language: str = "vi",
    nationality: str = "ベトナム",
    postal_code: str = "4870802",
) -> list[str]:
    return [
        resident_id,
        household_id,
        name,
        alias,
        "平成14年9月6日",
        "女",
        nationality,
        postal_code,
        ADDRESS,
        language,
    ]


def register_rows() -> list[list[str]]:
    rows = [member("100001", LARGE, "NGUYEN VAN AN", postal_code="4870801")]
    rows += [
        member(f"1000{n:02d}", LARGE, f"NGUYEN THI MEMBER {n}", postal_code="4870801")
        for n in range(2, 13)
    ]
    rows += [
        member("200001", MIXED, "KIM MINJUN", alias="金田民俊", language="ja", nationality="韓国"),
        member("200002", MIXED, "KIM SEOYEON", alias="金田瑞淵", language="ko", nationality="韓国"),
        member("200003", MIXED, "SILVA JOAO", language="pt", nationality="ブラジル"),
    ]
    # Nobody else in the household: an envelope of one.
    rows.append(
        member(
            "300001",
            "",
            "SANTOS MARIA",
            language="tl",
            nationality="フィリピン",
            postal_code="4870803",
        )
    )
    return rows


def write_cp932(path: Path, rows: list[list[str]]) -> Path:
    """A register as a municipal system exports it: CP932, CRLF, Japanese headers."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows([HEADERS, *rows])
    path.write_bytes(buffer.getvalue().encode("cp932"))
    return path


@pytest.fixture
def assigned(runner, ledger, tmp_path: Path) -> Path:
    export = write_cp932(tmp_path / "register.csv", register_rows())
    out = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", out)
    assert code == 0, output
    return out


def notify(runner, ledger, assigned: Path, sheets: Path, *extra: str) -> tuple[int, str]:
    profile = profile_for(MUNICIPALITY, sheets.parent)
    return run_cli(
        runner,
        *("notify", assigned, "-l", ledger.path, "--profile", profile, "-o", sheets),
        *("--workers", "1", *extra),
    )


def codes_by_resident(assigned: Path) -> dict[str, str]:
    frame = pl.read_csv(assigned, infer_schema=False, encoding="utf8-lossy")
    return dict(zip(frame["resident_id"], frame["resident_code"], strict=True))


def formatted(code: str) -> str:
    return f"{code[:4]} {code[4:8]} {code[8:]}"


def pages_of(sheets: Path, envelope: dict[str, Any]) -> list[str]:
    reader = PdfReader(sheets / envelope["file"])
    first, last = int(envelope["first_page"]), int(envelope["last_page"])
    return [reader.pages[n - 1].extract_text() for n in range(first, last + 1)]


@pytest.fixture
def printed(runner, ledger, assigned: Path, tmp_path: Path) -> dict[str, Any]:
    sheets = tmp_path / "sheets"
    code, output = notify(runner, ledger, assigned, sheets, "--per-household", "--batch-size", "10")
    assert code == 0, output
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    mailing = pl.read_csv(sheets / "mailing.csv", infer_schema=False)
    return {"sheets": sheets, "manifest": manifest, "mailing": mailing, "output": output}


def envelope_of(printed: dict[str, Any], household_id: str) -> dict[str, Any]:
    rows = printed["mailing"].filter(pl.col("household_id") == household_id)
    assert rows.height == 1
    return rows.row(0, named=True)


def test_a_household_of_12_continues_onto_a_second_page(printed, assigned: Path) -> None:
    codes = codes_by_resident(assigned)
    envelope = envelope_of(printed, LARGE)
    pages = pages_of(printed["sheets"], envelope)
    # Two member pages (8 rows, then 4) and the Vietnamese notice.
    assert len(pages) == int(envelope["sheets"]) == 3
    assert "1/3枚目" in pages[0] and "2/3枚目" in pages[1] and "Trang 3/3" in pages[2]
    for text in pages:
        assert LARGE in text  # the household reference, on every page
    members = [f"1000{n:02d}" for n in range(1, 13)]
    first, second = members[:8], members[8:]
    assert all(formatted(codes[m]) in pages[0] for m in first)
    assert not any(formatted(codes[m]) in pages[0] for m in second)
    assert all(formatted(codes[m]) in pages[1] for m in second)
    # The window names the householder (first in the export), once, on the first page.
    assert "NGUYEN VAN AN 様" in pages[0] and envelope["addressee"] == "NGUYEN VAN AN"
    assert "Thông báo mã số phiếu cư trú" in pages[2]
    manifest = printed["manifest"].filter(pl.col("household_id") == LARGE)
    assert manifest["resident_id"].to_list() == members
    assert manifest["envelope"].unique().to_list() == [envelope["envelope"]]
    start = int(envelope["first_page"])
    assert manifest["page"].cast(int).to_list() == [start] * 8 + [start + 1] * 4


def test_a_mixed_language_household_carries_each_members_language(printed, assigned: Path) -> None:
    codes = codes_by_resident(assigned)
    notices = load_notices()
    envelope = envelope_of(printed, MIXED)
    pages = pages_of(printed["sheets"], envelope)
    # The member page (with the Japanese notice), then Korean and Portuguese.
    assert len(pages) == 3
    for resident_id in ("200001", "200002", "200003"):
        assert formatted(codes[resident_id]) in pages[0]
    assert squash(notices["ja"].text["private_use"]) in squash(pages[0])
    assert "金田瑞淵" in pages[0]  # the alias column
    assert squash(notices["ko"].text["title"]) in squash(pages[1])
    assert squash(notices["pt"].text["keep_safe"]) in squash(pages[2])
    assert notices["ja"].text["title"] in pages[1]  # each page says what it is in Japanese too
    languages = printed["manifest"].filter(pl.col("household_id") == MIXED)["language"]
    assert languages.to_list() == ["ja", "ko", "pt"]


def test_mailing_csv_agrees_with_the_manifest_and_the_pdfs(printed) -> None:
    manifest, mailing, sheets = printed["manifest"], printed["mailing"], printed["sheets"]
    assert mailing.columns == [
        *("envelope", "postal_code", "address", "addressee", "household_id", "sheets"),
        *("file", "first_page", "last_page", "mail_class", "tracking_number"),
    ]
    # Two households and a resident on their own: three envelopes, in mailing order.
    assert mailing["envelope"].to_list() == ["1", "2", "3"]
    assert mailing["household_id"].to_list()[:2] == [LARGE, MIXED]
    assert manifest.height == 16 and manifest["envelope"].n_unique() == 3
    total_pages = sum(len(PdfReader(sheets / name).pages) for name in mailing["file"].unique())
    assert total_pages == mailing["sheets"].cast(int).sum()
    for envelope in mailing.iter_rows(named=True):
        first, last = int(envelope["first_page"]), int(envelope["last_page"])
        assert int(envelope["sheets"]) == last - first + 1
        mine = manifest.filter(pl.col("envelope") == envelope["envelope"])
        assert set(mine["file"]) == {envelope["file"]}
        assert all(first <= int(page) <= last for page in mine["page"])
        pages = pages_of(sheets, envelope)
        assert f"〒{envelope['postal_code']}" in pages[0]
        assert f"{envelope['addressee']} 様" in pages[0]
        reference = envelope["household_id"] or mine["resident_id"][0]
        assert all(reference in text for text in pages)
        # Labelled for what it is: 世帯番号 for a household, 整理番号 (the resident_id)
        # for a resident without one.
        label = "世帯番号" if envelope["household_id"] else "整理番号"
        assert f"{label} {reference}" in pages[0]
    # Whole households per file: the 12 fill the first batch of 10.
    assert mailing.filter(pl.col("household_id") == LARGE)["file"].to_list() == ["sheets-0001.pdf"]
    assert "envelopes (one per household)" in printed["output"]


def test_the_profile_can_make_households_the_default(
    runner, ledger, assigned: Path, tmp_path: Path
) -> None:
    profile = profile_for(MUNICIPALITY, tmp_path)
    profile.write_text(
        profile.read_text(encoding="utf-8").replace('mailing = "person"', 'mailing = "household"'),
        encoding="utf-8",
    )
    base = ("notify", assigned, "-l", ledger.path, "--profile", profile, "--workers", "1")
    code, output = run_cli(runner, *base, "-o", tmp_path / "by-household", "--json")
    assert code == 0, output
    assert '"envelopes": 3' in output and '"per_household": true' in output
    # The notices are issued now: a preview (--all) shows them one envelope each.
    code, output = run_cli(
        runner, *base, "-o", tmp_path / "by-person", "--per-person", "--all", "--json"
    )
    assert code == 0, output
    assert '"envelopes": 16' in output
    code, output = run_cli(runner, *base, "-o", tmp_path / "x", "--per-resident")
    assert code == 2 and "--per-household" in output
    assert not (tmp_path / "x").exists()


def test_a_member_too_long_to_print_is_set_aside_and_the_household_still_goes(
    runner, ledger, tmp_path: Path
) -> None:
    rows = register_rows()
    rows[13][2] = "KIM " + "SEOYEON " * 40  # far beyond what an office allows
    export = write_cp932(tmp_path / "register.csv", rows)
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", assigned)
    assert code == 0, output
    code, output = notify(runner, ledger, assigned, tmp_path / "refused", "--per-household")
    assert code == 2, output
    assert "resident_id 200002, name: too long for the members table's name column" in output
    assert "SEOYEON SEOYEON" not in output  # no personal data without --verbose
    assert "internal error" not in output
    assert not (tmp_path / "refused").exists()
    rejects = tmp_path / "rejects.csv"
    sheets = tmp_path / "sheets"
    code, output = notify(runner, ledger, assigned, sheets, "--per-household", "--rejects", rejects)
    assert code == 0, output
    assert pl.read_csv(rejects, infer_schema=False)["resident_id"].to_list() == ["200002"]
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    assert manifest.filter(pl.col("household_id") == MIXED)["resident_id"].to_list() == [
        "200001",
        "200003",
    ]
    envelope = pl.read_csv(sheets / "mailing.csv", infer_schema=False).filter(
        pl.col("household_id") == MIXED
    )
    # Nobody left needs Korean: the member page and the Portuguese one.
    assert envelope["sheets"].to_list() == ["2"]


# -- the form itself: the longest values, every language, the window ------------


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    """One household with a member per language, each with the longest values allowed."""
    profile = load_profile(Path(__file__).parent.parent / "sample_data" / "profile.toml")
    notices = load_notices()
    layout = household.load_household_layout(profile=profile)
    renderer = household.HouseholdRenderer(profile, notices, layout)
    members = []
    for number, language in enumerate(LANGUAGES, start=1):
        code = f"9{number:010d}"
        members.append(
            {
                "resident_id": f"{number:09d}",
                "household_id": "H1",
                "name": LONG_NAME,
                "addressee": LONG_NAME,
                "postal_code": "4870802",
                "address": ADDRESS,
                "language": language,
                "notice": notices[language],
                "code": code,
                "code_groups": [code[:4], code[4:8], code[8:]],
                "sex_ja": "女",
                "fields": [
                    {"key": "alias", "value": LONG_ALIAS},
                    {"key": "birth_date", "value": "令和10年12月31日"},
                ],
            }
        )
    households = [{"household_id": "H1", "reference": "H1", "members": members}]
    layer = renderer.render_households(households)
    static = household.render_household_static_pages(
        profile, notices, list(LANGUAGES), "令和8年12月1日", layout
    )
    return {
        "layout": layout,
        "members": members,
        "layer": layer,
        "composed": compose(layer.pdf, static, layer.keys),
    }


def test_the_longest_values_in_every_language_all_print(rendered) -> None:
    layer, members = rendered["layer"], rendered["members"]
    assert layer.rejections == []
    # 11 members: two member pages, then ten translation pages (every language but ja).
    assert len(layer.keys) == 2 + 10
    reader = PdfReader(io.BytesIO(rendered["composed"]))
    assert len(reader.pages) == 12
    text = squash(reader.pages[0].extract_text() + reader.pages[1].extract_text())
    for sheet in members:
        values = sheet_values(sheet)
        for value in (values["name"], values["alias"], values["resident_code"], "令和10年12月31日"):
            assert squash(value) in text
    # Every member, and the addressee in the window of each of the two member pages.
    assert text.count(squash(LONG_NAME)) == 11 + 2


def test_no_value_leaves_its_box_and_no_code_shows_through_the_window(rendered) -> None:
    layout = rendered["layout"].form
    height = layout.page_height
    window = layout.window.rect.to_pt(height)
    boxes = {"window": window, **{n: b.rect.to_pt(height) for n, b in layout.boxes.items()}}
    reader = PdfReader(io.BytesIO(rendered["layer"].pdf))
    codes = {squash(sheet_values(m)["resident_code"]) for m in rendered["members"]}
    for number, page in enumerate(reader.pages):
        found = fragments(page, code_word_spacing_mm=1.5, code_letter_spacing_em=0.04)
        assert found
        for fragment in found:
            owners = [name for name, rect in boxes.items() if fragment.starts_in(rect)]
            assert owners, (number, fragment)
            assert any(fragment.inside(boxes[o], TOLERANCE_PT) for o in owners), (number, fragment)
            if fragment.overlaps(window):
                # Only the postal code, address and addressee: never a digit of a code.
                assert not fragment.mono, (number, fragment)
                assert not any(code in squash(fragment.text) for code in codes)


def test_a_members_table_that_runs_into_the_window_is_refused() -> None:
    data = read_toml(household.HOUSEHOLD_LAYOUT, "Layout")
    data["members"]["top"] = 60
    with pytest.raises(UsageError, match="would show through the envelope window"):
        household.parse_household_layout(data, "household.toml")


#: 80 characters of the widest Latin letters an office's names have.
WIDE_NAME = "MOHAMMAD WASIM MAHMOOD MUHAMMAD WAQAS MUMTAZ MAQWOOD MOHAMMED WAHAB MAHMOUD MMMX"


def test_an_80_character_name_of_wide_letters_fits_every_form() -> None:
    """The window's addressee and the members table hold the longest name of M's and W's."""
    from rrnet_cli.change_notice import ChangeRenderer
    from rrnet_cli.form import FormRenderer

    assert len(WIDE_NAME) == 80
    profile = load_profile(Path(__file__).parent.parent / "sample_data" / "profile.toml")
    notices = load_notices()

    def sheet(number: int) -> dict[str, Any]:
        code = f"9{number:010d}"
        return {
            "resident_id": f"{number:09d}",
            "household_id": "H1",
            "name": WIDE_NAME,
            "addressee": WIDE_NAME,
            "postal_code": "4870802",
            "address": ADDRESS,
            "language": "en",
            "notice": notices["en"],
            "code": code,
            "code_groups": [code[:4], code[4:8], code[8:]],
            "sex_ja": "男",
            "old_code": "12345678903",
            "changed_on": "令和8年12月1日",
            "fields": [
                {"key": "alias", "value": LONG_ALIAS},
                {"key": "birth_date", "value": "令和10年12月31日"},
                {"key": "sex", "value": "男 / Male"},
                {"key": "recorded_on", "value": "令和8年12月1日"},
            ],
        }

    assert FormRenderer(profile).render_layer([sheet(1)]).rejections == []
    assert ChangeRenderer(profile).render_layer([sheet(2)]).rejections == []
    layer = household.HouseholdRenderer(profile, notices).render_households(
        [{"household_id": "H1", "reference": "H1", "members": [sheet(3), sheet(4)]}]
    )
    assert layer.rejections == []
    text = squash(PdfReader(io.BytesIO(layer.pdf)).pages[0].extract_text())
    assert text.count(squash(WIDE_NAME)) == 3  # the addressee and both members


def test_mailing_order_walks_room_numbers_as_numbers_and_keeps_the_householder_first(
    runner, ledger, tmp_path: Path
) -> None:
    rows = [
        # The householder has the larger resident_id, and is listed first by the register.
        member("500009", "H9", "PARK JIWOO", language="ko", nationality="韓国"),
        member("500001", "H9", "PARK MINSEO", language="ko", nationality="韓国"),
        member("600001", "", "ROOM 1104", postal_code="4870802"),
        member("600002", "", "ROOM 302", postal_code="4870802"),
    ]
    rows[2][8] = "愛知県さくら市本町2-20-11 サンライズマンション1104号室"
    rows[3][8] = "愛知県さくら市本町2-20-11 サンライズマンション302号室"
    # A member registered at another address: the office is told.
    rows[1][8] = "愛知県さくら市本町9-9-9"
    export = write_cp932(tmp_path / "register.csv", rows)
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", assigned)
    assert code == 0, output
    sheets = tmp_path / "sheets"
    code, output = notify(runner, ledger, assigned, sheets, "--per-household")
    assert code == 0, output
    assert "1 household(s) have members registered at different addresses (H9)" in " ".join(
        output.split()
    )
    mailing = pl.read_csv(sheets / "mailing.csv", infer_schema=False)
    # 302号室, then the household at 307号室 (its first member named), then 1104号室.
    assert mailing["addressee"].to_list() == ["ROOM 302", "PARK JIWOO", "ROOM 1104"]


def test_the_lists_can_be_excel_workbooks_that_keep_leading_zeros(
    runner, ledger, assigned: Path, tmp_path: Path
) -> None:
    sheets = tmp_path / "sheets"
    code, output = notify(runner, ledger, assigned, sheets, "--per-household", "--lists", "xlsx")
    assert code == 0, output
    assert sorted(p.name for p in sheets.iterdir() if not p.name.endswith(".pdf")) == [
        "mailing.xlsx",
        "manifest.xlsx",
    ]
    manifest = pl.read_excel(sheets / "manifest.xlsx", infer_schema_length=0)
    mailing = pl.read_excel(sheets / "mailing.xlsx", infer_schema_length=0)
    # Text cells: 000100, 100001 and 487-0801 come back as written.
    assert mailing["household_id"].to_list()[:2] == [LARGE, MIXED]
    assert manifest["resident_id"].to_list()[0] == "100001"
    assert set(mailing["postal_code"].drop_nulls()) <= {"487-0801", "487-0802", "487-0803"}
    assert (sheets / "manifest.xlsx").stat().st_mode & 0o777 == 0o600


def test_a_blank_postal_code_is_unknown_and_the_householder_stays_the_addressee(
    runner, ledger, tmp_path: Path
) -> None:
    rows = [
        member("700001", "H7", "TRAN VAN HOUSEHOLDER", postal_code="441-3147"),
        # No postal code for the second member (the export pads the empty field with a
        # space): unknown, not another one.
        member("700002", "H7", "TRAN THI BLANK", postal_code=" "),
        member("700003", "H7", "TRAN VAN THIRD", postal_code="441-3147"),
        # Nobody in this household has a postal code: its envelope has no 〒.
        member("800001", "H8", "LE VAN NOCODE", postal_code=""),
        member("800002", "H8", "LE THI NOCODE", postal_code="\u3000"),
    ]
    export = write_cp932(tmp_path / "register.csv", rows)
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", assigned)
    assert code == 0, output
    sheets = tmp_path / "sheets"
    code, output = notify(runner, ledger, assigned, sheets, "--per-household")
    assert code == 0, output
    text = " ".join(output.split())
    assert "different addresses" not in text, output
    # The household without any postal code is named; its members are not.
    assert "1 envelope(s) have no postal code (H8)" in text, output
    assert "NOCODE" not in text and "LE THI" not in text
    mailing = pl.read_csv(sheets / "mailing.csv", infer_schema=False)
    h7 = envelope_of({"mailing": mailing}, "H7")
    assert h7["addressee"] == "TRAN VAN HOUSEHOLDER"
    assert h7["postal_code"] == "441-3147"
    (first, *_) = pages_of(sheets, h7)
    # The window: 〒 and the household's postal code, then the householder's name.
    window = squash(first)
    assert squash("〒441-3147") in window
    assert window.index(squash("TRAN VAN HOUSEHOLDER")) < window.index(squash("TRAN THI BLANK"))
    h8 = envelope_of({"mailing": mailing}, "H8")
    assert h8["addressee"] == "LE VAN NOCODE"
    # Only the sender's 〒 is on the page: the window has none.
    assert pages_of(sheets, h8)[0].count("〒") == 1


def test_households_are_told_apart_as_the_mailing_order_tells_them() -> None:
    """An id of spaces is no household, and spaces around an id are not part of it: two
    residents whose export says "  " get an envelope each (one's code never goes in
    the other's), and "H1" and "H1 " share one."""
    from rrnet_cli.notify import group_households

    sheets = [
        {"resident_id": "1", "household_id": "  "},
        {"resident_id": "2", "household_id": "  "},
        {"resident_id": "3", "household_id": "H1"},
        {"resident_id": "4", "household_id": "H1 "},
        {"resident_id": "5", "household_id": "　"},
        {"resident_id": "6", "household_id": None},
    ]
    grouped = group_households(sheets)
    assert [[m["resident_id"] for m in h["members"]] for h in grouped] == [
        ["1"],
        ["2"],
        ["3", "4"],
        ["5"],
        ["6"],
    ]
    assert [h["reference"] for h in grouped] == ["1", "2", "H1", "5", "6"]
