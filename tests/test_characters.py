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
import json
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


# -- scripts the form's fonts do not have -------------------------------------------

#: "Muhammad Ali" in Arabic script: none of the form's fonts (Noto Sans CJK JP, Noto
#: Sans, Noto Sans Devanagari) has Arabic letters.
ARABIC = "محمد علي"


def arabic_register(path: Path) -> Path:
    """A register saved by Excel as "CSV UTF-8" (CP932 cannot hold Arabic)."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows(
        [
            HEADERS,
            person("000001"),
            person("000002", 氏名="MUHAMMAD ALI", 漢字氏名=ARABIC),
            person("000003", 氏名="MUHAMMAD", 漢字氏名="محمد"),
        ]
    )
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode("utf-8"))
    return path


def test_doctor_reports_a_script_no_font_of_the_form_has_without_names(
    runner, tmp_path: Path
) -> None:
    register = arabic_register(tmp_path / "register.csv")
    code, output = run_cli(runner, "doctor", "--register", register, "--json")
    assert code == 1, output
    report = json.loads(output)
    (arabic,) = report["scripts"]
    assert arabic["script"] == "Arabic"
    assert arabic["residents"] == 2
    assert {"U+0645", "U+062D", "U+062F"} <= set(arabic["examples"])
    assert not any(ch in output for ch in ARABIC.replace(" ", "")) and "MUHAMMAD" not in output
    code, output = run_cli(runner, "doctor", "--register", register)
    text = " ".join(output.split())
    assert code == 1, output
    assert "Arabic (U+" in text and "2 resident(s)" in text and "MUHAMMAD" not in text
    # A register in scripts the form has passes.
    plain = write_cp932(tmp_path / "plain.csv", [person("000001"), person("000002")])
    code, output = run_cli(runner, "doctor", "--register", plain, "--json")
    assert json.loads(output)["scripts"] == [], output


def test_notify_names_the_character_and_its_script_never_the_name(
    runner, ledger, tmp_path: Path
) -> None:
    register = arabic_register(tmp_path / "register.csv")
    out = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", register, "-l", ledger.path, "-o", out)
    assert code == 0, output
    sheets = tmp_path / "sheets"
    profile = profile_for(MUNICIPALITY, tmp_path)
    code, output = run_cli(
        runner,
        *("notify", out, "-l", ledger.path, "--profile", profile, "-o", sheets),
        *("--workers", "1"),
    )
    text = " ".join(output.split())
    assert code == 2, output
    for resident in ("000002", "000003"):
        assert (
            f"resident_id {resident}, name_kanji: character U+0645 (Arabic) not in any of "
            "the form's fonts (外字?)"
        ) in text, output
    assert "م" not in output and "MUHAMMAD" not in output
    assert not sheets.exists()
