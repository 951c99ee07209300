"""Register exports as municipal systems and Excel really write them.

Every file here is built the way those tools write it: CP932 (or UTF-8 with a
BOM), CRLF line ends, every field in double quotes, Japanese headers with stray
half- and full-width spaces, half-width katakana, TSV, Excel's blank trailing
rows (``,,,,``) and empty trailing header column, and a totals row (合計) at the
bottom. The tests run ``rrnet`` as staff do and check what they see: the exit
code, row numbers and reasons (never a cell's value), the summary, and that the
assigned register keeps every cell's own text.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner, Result

from rrnet_cli import ingest, schema
from rrnet_cli.cli import app
from rrnet_cli.errors import UsageError
from rrnet_cli.ledger import Ledger

#: Headers as a municipal system prints them, in its order.
JA_HEADERS = [
    "宛名番号",
    "世帯番号",
    "氏名",
    "氏名_外国人漢字",
    "通称",
    "通称_フリガナ",
    "生年月日",
    "性別",
    "国籍・地域",
    "郵便番号",
    "住所",
    "在留カード番号",
    "備考",
]

#: Synthetic residents (no real person), one list of cells per JA_HEADERS column.
#: Full-width spaces in names, half-width katakana in the alias reading, residence
#: card numbers in lower case, with spaces and in full-width letters.
RESIDENTS = [
    [
        "000101",
        "0001",
        "KIM\u3000MINJUN",
        "金\u3000珉俊",
        "金田",
        "ｷﾑ ﾐﾝｼﾞｭﾝ",
        "1990/04/01",
        "男",
        "韓国",
        "102-0074",
        "東京都千代田区九段南1-2-1",
        "ab 12345678 cd",
        "",
    ],
    [
        "000102",
        "0002",
        "NGUYEN\u3000THI\u3000LAN",
        "",
        "",
        "",
        "平成5年7月7日",
        "女",
        "ベトナム",
        "102-0074",
        "東京都千代田区九段南1-3-1",
        "ＥＦ８７６５４３２１ＧＨ",
        "転入",
    ],
    [
        "000103",
        "0003",
        "SILVA JOAO",
        "",
        "シルバ",
        "ｼﾙﾊﾞ",
        "1985-12-31",
        "男",
        "BRA",
        "",
        "東京都千代田区九段南1-4-1",
        "ij-1234-5678-kl",
        "",
    ],
]
NAMES = ("KIM\u3000MINJUN", "NGUYEN\u3000THI\u3000LAN", "SILVA JOAO")

CRLF = "\r\n"
BOM = b"\xef\xbb\xbf"


def municipal_file(
    path: Path,
    rows: list[list[str]],
    *,
    headers: list[str] = JA_HEADERS,
    encoding: str = "cp932",
    delimiter: str = ",",
    bom: bool = False,
    tail: list[str] = (),  # type: ignore[assignment]
) -> Path:
    """Write ``rows`` as a municipal system does: every field quoted, CRLF line ends.

    ``tail`` lines are appended verbatim (each gets a CRLF): Excel's ``,,,,``.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=CRLF, quoting=csv.QUOTE_ALL)
    writer.writerow(headers)
    writer.writerows(rows)
    text = buffer.getvalue() + "".join(line + CRLF for line in tail)
    path.write_bytes((BOM if bom else b"") + text.encode(encoding))
    return path


def excel_blank(width: int = len(JA_HEADERS), delimiter: str = ",") -> str:
    """A cleared row as Excel saves it: only the delimiters."""
    return delimiter * (width - 1)


def quoted_blank(width: int = len(JA_HEADERS), delimiter: str = ",") -> str:
    """A blank row as a system that quotes every field writes it."""
    return delimiter.join(['""'] * width)


def assign(
    runner: CliRunner, export: Path, ledger: Ledger, *args: str, out: Path | None = None
) -> Result:
    out = out or export.with_name("assigned.csv")
    return runner.invoke(
        app, ["assign", str(export), "--ledger", str(ledger.path), "-o", str(out), *args]
    )


def assign_json(runner: CliRunner, export: Path, ledger: Ledger, *args: str) -> dict[str, Any]:
    result = assign(runner, export, ledger, *args, "--json")
    data: dict[str, Any] = json.loads(result.stdout)
    data["exit_code"] = result.exit_code
    return data


def read_assigned(path: Path) -> pl.DataFrame:
    """rrnet's CSV output, every cell as text (it is UTF-8 with a BOM)."""
    data = path.read_bytes()
    assert data.startswith(BOM)
    frame = pl.read_csv(io.BytesIO(data[len(BOM) :]), infer_schema=False)
    return frame.with_columns(pl.all().fill_null(""))


def assert_no_personal_data(output: str) -> None:
    for name in NAMES:
        assert name not in output
    assert "ab 12345678 cd" not in output


# ---------------------------------------------------------------------------
# A municipal CP932 export: read, validated and written back unchanged


def test_cp932_quoted_crlf_export_is_assigned_and_keeps_its_text(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    # Headers with half-width and full-width spaces around them, as systems print them.
    headers = [f" {h} " if i % 3 == 0 else f"{h}\u3000" for i, h in enumerate(JA_HEADERS)]
    headers[10] = "\u3000住所"
    export = municipal_file(tmp_path / "register.csv", RESIDENTS, headers=headers)

    data = assign_json(runner, export, ledger)

    assert data["exit_code"] == 0, data
    assert data["encoding"] == "cp932"
    assert data["rows_read"] == 3
    assert data["newly_assigned"] == 3
    assert data["blank_rows_skipped"] == 0
    written = read_assigned(tmp_path / "assigned.csv")
    # Recognised headers take their canonical names; the others are trimmed.
    assert written.columns[:13] == [
        "resident_id",
        "household_id",
        "name",
        "name_kanji",
        "alias",
        "alias_kana",
        "birth_date",
        "sex",
        "nationality",
        "postal_code",
        "address",
        "residence_card_number",
        "備考",
    ]
    # Every cell keeps its own text: full-width spaces, half-width katakana, the
    # card numbers as typed (only the check saw them normalised), dates as written.
    originals = pl.DataFrame(
        [pl.Series(c, [r[i] for r in RESIDENTS]) for i, c in enumerate(written.columns[:13])]
    )
    assert written.select(originals.columns).rows() == originals.rows()
    assert written["alias_kana"].to_list() == ["ｷﾑ ﾐﾝｼﾞｭﾝ", "", "ｼﾙﾊﾞ"]
    assert written["residence_card_number"].to_list() == [
        "ab 12345678 cd",
        "ＥＦ８７６５４３２１ＧＨ",
        "ij-1234-5678-kl",
    ]
    assert written["code_status"].to_list() == ["assigned"] * 3


@pytest.mark.parametrize(
    "header",
    [" 宛名番号 ", "宛名番号\u3000", "\u3000宛名番号", "\u3000 宛名番号 \u3000", "宛名\u3000番号"],
)
def test_headers_with_half_and_full_width_spaces_are_recognised(
    tmp_path: Path, header: str
) -> None:
    headers = [header, *JA_HEADERS[1:]]
    export = ingest.read_export(municipal_file(tmp_path / "r.csv", RESIDENTS, headers=headers))
    assert export.recognised[header.strip()] == "resident_id"
    assert export.frame["resident_id"].to_list() == ["000101", "000102", "000103"]


def test_half_width_katakana_and_full_width_spaces_validate(tmp_path: Path) -> None:
    export = ingest.read_export(municipal_file(tmp_path / "r.csv", RESIDENTS))
    _, errors = ingest.validate_register(export)
    assert errors.height == 0, errors


@pytest.mark.parametrize(
    "card", ["ab 12345678 cd", "ab12345678cd", "Ab-1234-5678-Cd", "ＡＢ　１２３４５６７８　ＣＤ"]
)
def test_residence_card_numbers_are_normalised_for_the_check_only(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, card: str
) -> None:
    rows = [r.copy() for r in RESIDENTS]
    rows[1][11] = card
    export = municipal_file(tmp_path / "register.csv", rows)

    result = assign(runner, export, ledger)

    assert result.exit_code == 0, result.output
    assert read_assigned(tmp_path / "assigned.csv")["residence_card_number"][1] == card


def test_a_card_number_that_is_wrong_after_normalising_is_a_row_error(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    rows = [r.copy() for r in RESIDENTS]
    rows[2][11] = "ab 1234567 cd"  # seven digits
    export = municipal_file(tmp_path / "register.csv", rows)

    result = assign(runner, export, ledger)

    assert result.exit_code == 2, result.output
    assert "row 4, residence_card_number: residence card number must be" in result.output
    assert "1234567" not in result.output
    verbose = assign(runner, export, ledger, "--verbose")
    assert "(value 'ab 1234567 cd')" in verbose.output


# ---------------------------------------------------------------------------
# TSV


def test_tsv_in_utf8_with_bom_is_read_by_its_extension(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    rows = [r.copy() for r in RESIDENTS]
    rows[0][10] = "東京都千代田区九段南1-2-1, 2階"  # a comma means nothing in TSV
    export = municipal_file(
        tmp_path / "register.tsv", rows, encoding="utf-8", bom=True, delimiter="\t"
    )

    data = assign_json(runner, export, ledger)

    assert data["exit_code"] == 0, data
    assert data["encoding"] == "utf-8-sig"
    assert data["newly_assigned"] == 3
    written = read_assigned(tmp_path / "assigned.csv")
    assert written["address"][0] == "東京都千代田区九段南1-2-1, 2階"
    assert written["name"].to_list() == list(NAMES)


@pytest.mark.parametrize("value", ["tab", "TAB", "\t", "\\t"])
def test_cp932_tsv_under_another_name_is_read_with_delimiter_tab(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, value: str
) -> None:
    export = municipal_file(tmp_path / "register.txt", RESIDENTS, delimiter="\t")

    data = assign_json(runner, export, ledger, "--delimiter", value)

    assert data["exit_code"] == 0, data
    assert data["encoding"] == "cp932"
    assert data["newly_assigned"] == 3


def test_tsv_read_as_csv_says_it_looks_tab_separated(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = municipal_file(tmp_path / "register.csv", RESIDENTS, delimiter="\t")

    result = assign(runner, export, ledger)

    assert result.exit_code == 2, result.output
    assert "looks tab-separated; name it .tsv or pass --delimiter tab" in result.output
    assert "lacks required column" not in result.output
    assert_no_personal_data(result.output)


def test_csv_named_tsv_says_it_looks_comma_separated(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = municipal_file(tmp_path / "register.tsv", RESIDENTS)

    result = assign(runner, export, ledger)

    assert result.exit_code == 2, result.output
    assert "looks comma-separated; name it .csv or pass --delimiter comma" in result.output
    assert assign(runner, export, ledger, "--delimiter", "comma", "--dry-run").exit_code == 0


def test_semicolon_separated_file_says_so_and_reads_with_the_option(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = municipal_file(tmp_path / "register.csv", RESIDENTS, delimiter=";")

    refused = assign(runner, export, ledger)
    assert refused.exit_code == 2, refused.output
    assert "looks semicolon-separated; pass --delimiter semicolon" in refused.output

    data = assign_json(runner, export, ledger, "--delimiter", ";")
    assert data["exit_code"] == 0, data
    assert data["newly_assigned"] == 3


def test_unknown_delimiter_is_refused(runner: CliRunner, ledger: Ledger, tmp_path: Path) -> None:
    export = municipal_file(tmp_path / "register.csv", RESIDENTS)
    result = assign(runner, export, ledger, "--delimiter", "pipe")
    assert result.exit_code == 2
    assert "pipe" in result.output and "comma, tab, semicolon" in result.output


def test_a_tsv_named_xlsx_says_what_it_is(tmp_path: Path) -> None:
    export = municipal_file(tmp_path / "register.xlsx", RESIDENTS, delimiter="\t")
    with pytest.raises(UsageError, match=r"tab-separated text file \(TSV\).*extension \.tsv"):
        ingest.read_export(export)


def test_excel_unicode_text_says_it_is_utf16(tmp_path: Path) -> None:
    """Excel's "Unicode Text" is UTF-16 TSV: say so, not "binary data"."""
    export = municipal_file(tmp_path / "register.txt", RESIDENTS, encoding="utf-16", delimiter="\t")
    with pytest.raises(UsageError, match="UTF-16") as info:
        ingest.read_export(export)
    assert "binary" not in info.value.message


def test_verify_reads_an_assigned_register_saved_as_tsv(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = municipal_file(tmp_path / "register.csv", RESIDENTS)
    assert assign(runner, export, ledger).exit_code == 0
    tsv = read_assigned(tmp_path / "assigned.csv")
    (tmp_path / "assigned.tsv").write_text(tsv.write_csv(separator="\t"), encoding="utf-8")
    (tmp_path / "assigned.txt").write_text(tsv.write_csv(separator="\t"), encoding="utf-8")

    by_extension = runner.invoke(
        app, ["verify", str(tmp_path / "assigned.tsv"), "--ledger", str(ledger.path)]
    )
    txt = tmp_path / "assigned.txt"
    by_option = runner.invoke(
        app, ["verify", str(txt), "--ledger", str(ledger.path), "--delimiter", "tab"]
    )

    assert by_extension.exit_code == 0, by_extension.output
    assert by_option.exit_code == 0, by_option.output


@pytest.mark.parametrize("command", ["assign", "verify", "notify"])
def test_commands_that_read_an_export_take_delimiter(runner: CliRunner, command: str) -> None:
    result = runner.invoke(app, [command, "--help"])
    assert "--delimiter" in result.output


# ---------------------------------------------------------------------------
# Excel leftovers: blank trailing rows, an empty header column


@pytest.mark.parametrize("delimiter", [",", "\t"])
def test_blank_trailing_rows_are_skipped_and_counted(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, delimiter: str
) -> None:
    suffix = ".csv" if delimiter == "," else ".tsv"
    tail = [excel_blank(delimiter=delimiter)] * 3 + [quoted_blank(delimiter=delimiter)]
    export = municipal_file(
        tmp_path / f"register{suffix}", RESIDENTS, delimiter=delimiter, tail=tail
    )

    data = assign_json(runner, export, ledger)

    assert data["exit_code"] == 0, data
    assert data["rows_read"] == 3
    assert data["blank_rows_skipped"] == 4
    assert data["newly_assigned"] == 3
    assert read_assigned(tmp_path / "assigned.csv").height == 3


def test_the_summary_shows_the_blank_rows_skipped(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = municipal_file(tmp_path / "register.csv", RESIDENTS, tail=[excel_blank()] * 2)
    result = assign(runner, export, ledger, "--dry-run")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "blank rows (skipped)" in x)
    assert line.split()[-2] == "2", line


def quoted_line(cells: list[str]) -> str:
    """One row as ``municipal_file`` writes it (every field quoted), for a ``tail``."""
    return ",".join(f'"{c}"' for c in cells)


def test_a_blank_row_in_the_middle_is_skipped_and_counted(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    # Excel saves a row cleared in the middle of a sheet as ",,,,", with CRLF.
    tail = [excel_blank(), quoted_line(RESIDENTS[1]), quoted_line(RESIDENTS[2])]
    tail += [excel_blank()] * 2
    export = municipal_file(tmp_path / "register.csv", RESIDENTS[:1], tail=tail)
    assert b"\r\n,,,,,,,,,,,,\r\n" in export.read_bytes()

    data = assign_json(runner, export, ledger, "--dry-run")
    text = assign(runner, export, ledger).output

    assert data["exit_code"] == 0, data
    assert data["rows_read"] == 3
    assert data["blank_rows_skipped"] == 3
    assert data["newly_assigned"] == 3
    line = next(x for x in text.splitlines() if "blank rows (skipped)" in x)
    assert line.split()[-2] == "3", line
    assert read_assigned(tmp_path / "assigned.csv")["resident_id"].to_list() == [
        "000101",
        "000102",
        "000103",
    ]


def test_row_numbers_after_a_blank_row_in_the_middle_stay_excel_s(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    bad = RESIDENTS[2].copy()
    bad[7] = "X"  # a bad sex on the row a spreadsheet shows as 5
    tail = [excel_blank(), quoted_line(RESIDENTS[1]), quoted_line(bad), excel_blank()]
    export = municipal_file(tmp_path / "register.csv", RESIDENTS[:1], tail=tail)

    data = assign_json(runner, export, ledger)
    text = assign(runner, export, ledger).output

    assert data["exit_code"] == 2
    assert data["row_errors"] == [
        {"row": 5, "column": "sex", "reason": "sex must be 男/女, M/F or 1/2"},
    ]
    assert "row 5, sex" in text
    assert "row 3" not in text and "row 6" not in text  # the blank rows are no rows
    assert_no_personal_data(text)


def test_an_empty_header_column_at_the_end_is_dropped(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    """Excel saves a formatted but empty column as a trailing comma on every line."""
    export = municipal_file(
        tmp_path / "register.csv",
        [[*r, ""] for r in RESIDENTS],
        headers=[*JA_HEADERS, ""],
        tail=[excel_blank(len(JA_HEADERS) + 1)],
    )

    data = assign_json(runner, export, ledger)

    assert data["exit_code"] == 0, data
    written = read_assigned(tmp_path / "assigned.csv")
    assert written.columns[12:] == ["備考", "resident_code", "code_status", "exclusion_reason"]


def test_an_unnamed_column_with_values_is_refused_by_its_position(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    rows = [[*r[:6], "", *r[6:], ""] for r in RESIDENTS]
    rows[1][6] = "memo"
    headers = [*JA_HEADERS[:6], "", *JA_HEADERS[6:], ""]
    export = municipal_file(tmp_path / "register.csv", rows, headers=headers)

    result = assign(runner, export, ledger)

    assert result.exit_code == 2, result.output
    assert (
        "column 7 (after 通称_フリガナ) has values but no header name; name it or delete it"
        in result.output
    )
    assert "column 15" not in result.output  # the empty one at the end is only left over
    assert "memo" not in result.output


def test_an_unnamed_column_with_values_at_the_end_names_the_column_before(
    tmp_path: Path,
) -> None:
    rows = [[*r, ""] for r in RESIDENTS]
    rows[2][13] = "x"
    export = municipal_file(tmp_path / "r.csv", rows, headers=[*JA_HEADERS, ""])
    with pytest.raises(UsageError, match=r"column 14 \(after 備考\) has values but no header"):
        ingest.read_export(export)


# ---------------------------------------------------------------------------
# A totals row


def test_a_totals_row_at_the_end_is_one_row_error(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    total = ["合計", "", "3件", "", "", "", "", "", "", "", "", "", ""]
    export = municipal_file(
        tmp_path / "register.csv", [*RESIDENTS, total], tail=[excel_blank()] * 2
    )

    data = assign_json(runner, export, ledger)
    text = assign(runner, export, ledger).output

    assert data["exit_code"] == 2
    assert data["row_errors"] == [
        {
            "row": 5,
            "column": "*",
            "reason": "looks like a totals row (合計), not a resident; remove it",
        }
    ]
    assert "row 5, *: looks like a totals row (合計), not a resident; remove it" in text
    assert "1 row(s)" in text
    assert_no_personal_data(text)


def test_a_totals_row_can_be_set_aside_with_rejects(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    total = ["", "", "", "", "", "", "", "", "", "", "", "", "合計 3件"]
    total[0] = "合　計"
    export = municipal_file(tmp_path / "register.csv", [*RESIDENTS, total])
    rejects = tmp_path / "rejects.csv"

    data = assign_json(runner, export, ledger, "--rejects", str(rejects))

    assert data["exit_code"] == 0, data
    assert data["newly_assigned"] == 3
    assert data["rows_rejected"] == 1
    assert read_assigned(tmp_path / "assigned.csv").height == 3
    assert "totals row" in rejects.read_text(encoding="utf-8-sig")


@pytest.mark.parametrize(
    ("column", "word"),
    [
        (0, "合計"),
        (0, "総計"),
        (0, "小計"),
        (0, "計"),
        (0, "件数"),
        (0, "合計件数"),
        (0, "TOTAL"),
        (0, "Ｔｏｔａｌ"),
        (0, " 合計 "),
    ],
)
def test_totals_words_in_the_resident_id(tmp_path: Path, column: int, word: str) -> None:
    total = [""] * len(JA_HEADERS)
    total[column] = word
    total[11] = "3"  # a count where a card number goes: no card-number error
    export = ingest.read_export(municipal_file(tmp_path / "r.csv", [*RESIDENTS, total]))
    _, errors = ingest.validate_register(export)
    assert errors.select("row", "column", "reason").rows() == [(5, "*", ingest.TOTALS_ROW_REASON)]


def test_totals_word_in_the_first_cell_when_it_is_not_the_resident_id(tmp_path: Path) -> None:
    headers = ["世帯番号", *[h for h in JA_HEADERS if h != "世帯番号"]]
    rows = [[r[1], r[0], *r[2:]] for r in RESIDENTS]
    total = ["計", "", "3", *[""] * (len(JA_HEADERS) - 3)]
    export = ingest.read_export(municipal_file(tmp_path / "r.csv", [*rows, total], headers=headers))
    _, errors = ingest.validate_register(export)
    assert errors.select("row", "column", "reason").rows() == [(5, "*", ingest.TOTALS_ROW_REASON)]


def test_two_totals_rows_are_not_duplicates_of_each_other(tmp_path: Path) -> None:
    subtotal = ["小計", "", "", "", "", "", "", "", "", "", "", "", ""]
    export = ingest.read_export(
        municipal_file(tmp_path / "r.csv", [*RESIDENTS, subtotal, subtotal])
    )
    _, errors = ingest.validate_register(export)
    assert errors.select("row", "column").rows() == [(5, "*"), (6, "*")]


def test_a_resident_named_like_a_word_is_not_a_totals_row(tmp_path: Path) -> None:
    rows = [r.copy() for r in RESIDENTS]
    rows[0][2] = "TOTAL"  # the name cell: not the resident id, not the first cell
    export = ingest.read_export(municipal_file(tmp_path / "r.csv", rows))
    _, errors = ingest.validate_register(export)
    assert errors.height == 0


def test_totals_words_are_those_the_issue_lists() -> None:
    assert set(schema.TOTAL_ROW_WORDS) == {
        "合計",
        "計",
        "総計",
        "小計",
        "件数",
        "total",
        "合計件数",
    }
