"""A bilingual label or value whose translation is the Japanese itself is printed once.

Chinese writes 男, 女 and 通称 (and traditional Chinese 性別) as Japanese does: the
sheet says 男, not "男 / 男". Read back from the PDFs a real notify run writes,
per resident and per household, for a CP932, CRLF register with Japanese headers.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
from helpers import MUNICIPALITY, profile_for, run_cli
from pypdf import PdfReader
from test_households import member, write_cp932

from rrnet_cli.languages import load_notices

HOUSEHOLD = "000500"


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def sheets_by_resident(sheets: Path) -> dict[str, str]:
    """Each resident's page text (whitespace removed), as manifest.csv places it."""
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    return {
        row["resident_id"]: squash(
            PdfReader(sheets / row["file"]).pages[int(row["page"]) - 1].extract_text()
        )
        for row in manifest.iter_rows(named=True)
    }


def male(row: list[str]) -> list[str]:
    return [*row[:5], "男", *row[6:]]


def test_a_label_or_value_the_same_in_both_languages_is_printed_once(
    runner, ledger, tmp_path: Path
) -> None:
    rows = [
        member("000001", HOUSEHOLD, "WANG FANG", alias="王芳子", language="zh-Hans"),
        male(member("000002", HOUSEHOLD, "CHEN WEI", alias="陳偉男", language="zh-Hant")),
        member("000003", HOUSEHOLD, "NGUYEN THI HOA", alias="花子", language="vi"),
    ]
    export = write_cp932(tmp_path / "register.csv", rows)
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", assigned)
    assert code == 0, output
    profile = profile_for(MUNICIPALITY, tmp_path)

    def notify(sheets: Path, *extra: str) -> dict[str, str]:
        code, output = run_cli(
            runner,
            *("notify", assigned, "-l", ledger.path, "--profile", profile, "-o", sheets),
            *("--workers", "1", *extra),
        )
        assert code == 0, output
        return sheets_by_resident(sheets)

    pages = notify(tmp_path / "sheets")
    notices = load_notices()
    assert notices["zh-Hans"].labels["alias"] == notices["ja"].labels["alias"] == "通称"
    assert notices["zh-Hant"].labels["sex"] == notices["ja"].labels["sex"] == "性別"
    hans, hant, vi = pages["000001"], pages["000002"], pages["000003"]
    assert "女" in hans and "女/女" not in hans
    assert "通称" in hans and "通称/通称" not in hans
    assert "性別/性别" in hans  # different: both
    assert "男" in hant and "男/男" not in hant
    assert "性別" in hant and "性別/性別" not in hant
    assert "通称/通稱" in hant
    # Where the translation differs, both are printed.
    assert "女/Nữ" in vi and "通称/Tênthườnggọiđãđăngký" in vi
    # A preview says 見本 / 样本 once each, as before.
    preview = notify(tmp_path / "preview", "--all")
    assert "見本/样本" in preview["000001"] and "男/男" not in preview["000002"]

    # The household notice's translation page explains the table's Japanese headings;
    # one whose translation is the same needs no line.
    households = tmp_path / "households"
    code, output = run_cli(
        runner,
        *("notify", assigned, "-l", ledger.path, "--profile", profile, "-o", households),
        *("--workers", "1", "--all", "--per-household"),
    )
    assert code == 0, output
    (file,) = sorted(households.glob("sheets-*.pdf"))
    text = squash("".join(page.extract_text() for page in PdfReader(file).pages))
    assert "性別=性别" in text and "性別=Giớitính" in text
    assert "性別=性別" not in text

    # So does the change notice (住民票コード変更通知書).
    code, output = run_cli(
        runner,
        *("change", "--resident", "000001", "-l", ledger.path, "--id-document", "passport"),
    )
    assert code == 0, output
    changes = tmp_path / "changes"
    code, output = run_cli(
        runner,
        *("notify", export, "-l", ledger.path, "--profile", profile, "-o", changes),
        *("--workers", "1", "--changes"),
    )
    assert code == 0, output
    (page,) = PdfReader(changes / "sheets-0001.pdf").pages
    text = squash(page.extract_text())
    assert "住民票コード変更通知書" in text and "王芳子" in text
    assert "通称/通称" not in text and "女/女" not in text and "性別/性别" in text
