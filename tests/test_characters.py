"""Characters a notice cannot carry, as an office meets them.

〓 is what a CP932 register system writes for a 外字 it cannot hold: a real
character, which every font prints, standing where the resident's own character
should be. The register is written the way such a system exports it (CP932,
CRLF, Japanese headers); everything is read back from what a user sees: the
exit code, the messages and the files written.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
from helpers import MUNICIPALITY, profile_for, run_cli

GETA_REASON = "〓 stands for a character (外字) the export could not carry"

HEADERS = [
    "宛名番号",
    "氏名",
    "漢字氏名",
    "通称",
    "生年月日",
    "性別",
    "国籍・地域",
    "郵便番号",
    "住所",
]


def person(resident_id: str, **values: str) -> list[str]:
    row = {
        "宛名番号": resident_id,
        "氏名": "LI MING",
        "漢字氏名": "李明",
        "通称": "",
        "生年月日": "1990-04-01",
        "性別": "男",
        "国籍・地域": "中国",
        "郵便番号": "441-3147",
        "住所": "愛知県さくら市本町2-20-11",
    }
    row.update(values)
    return [row[h] for h in HEADERS]


def write_cp932(path: Path, rows: list[list[str]]) -> Path:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows([HEADERS, *rows])
    path.write_bytes(buffer.getvalue().encode("cp932"))
    return path


def geta_register(path: Path) -> Path:
    return write_cp932(
        path,
        [
            person("000001"),
            person("000002", 漢字氏名="李〓"),
            person("000003", 通称="〓田"),
            person("000004", 住所="愛知県さくら市〓町1-1"),
        ],
    )


def test_geta_is_refused_in_every_printed_column_with_what_it_means(
    runner, ledger, tmp_path: Path
) -> None:
    export = geta_register(tmp_path / "register.csv")
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", tmp_path / "out.csv")
    text = " ".join(output.split())
    assert code == 2, output
    for row, column in ((3, "name_kanji"), (4, "alias"), (5, "address")):
        assert f"row {row}, {column}: {GETA_REASON}" in text, output
    # Not the kana rule's message: the alias is kanji, it is 〓 that is wrong.
    assert "kana" not in text, output
    assert not (tmp_path / "out.csv").exists()


def test_with_rejects_the_geta_rows_are_set_aside_and_the_rest_assigned(
    runner, ledger, tmp_path: Path
) -> None:
    export = geta_register(tmp_path / "register.csv")
    out, rejects = tmp_path / "out.csv", tmp_path / "rejects.csv"
    code, output = run_cli(
        runner, "assign", export, "-l", ledger.path, "-o", out, "--rejects", rejects
    )
    assert code == 0, output
    assigned = pl.read_csv(out, infer_schema=False)
    assert assigned["resident_id"].to_list() == ["000001"]
    assert assigned["code_status"].to_list() == ["assigned"]
    set_aside = pl.read_csv(rejects, infer_schema=False)
    assert set_aside["row"].to_list() == ["3", "4", "5"]
    assert set_aside["errors"].to_list() == [
        f"{column}: {GETA_REASON}; enter the real character in the register system and export again"
        for column in ("name_kanji", "alias", "address")
    ]


def test_notify_refuses_an_assigned_file_edited_to_carry_geta(
    runner, ledger, tmp_path: Path
) -> None:
    export = write_cp932(tmp_path / "register.csv", [person("000001"), person("000002")])
    out = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", out)
    assert code == 0, output
    # Opened in a spreadsheet and saved back through CP932: the kanji name became 〓.
    edited = pl.read_csv(out, infer_schema=False).with_columns(
        pl.when(pl.col("resident_id") == "000002")
        .then(pl.lit("李〓"))
        .otherwise(pl.col("name_kanji"))
        .alias("name_kanji")
    )
    edited.write_csv(out)
    sheets = tmp_path / "sheets"
    profile = profile_for(MUNICIPALITY, tmp_path)
    code, output = run_cli(
        runner,
        *("notify", out, "-l", ledger.path, "--profile", profile, "-o", sheets),
        *("--workers", "1"),
    )
    assert code == 2, output
    assert f"row 3, name_kanji: {GETA_REASON}" in " ".join(output.split())
    assert not sheets.exists()
