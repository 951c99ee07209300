"""Excel in and out: `assign`, `verify` and `notify` read .xlsx; `assign -o` writes it.

Fixtures are built the way Excel stores cells (with xlsxwriter directly, not only
with rrnet's own writer): text cells, numbers where ids should be text, real date
cells with date formats (including the Japanese era format), a Japanese header
row, a second sheet, blank rows at the end and blank rows above the header.
"""

from __future__ import annotations

import csv
import json
import stat
from datetime import date
from pathlib import Path
from typing import Any

import fastexcel
import polars as pl
import pytest
import xlsxwriter
from helpers import MUNICIPALITY, profile_for
from typer.testing import CliRunner

from rrnet_cli import ingest
from rrnet_cli.cli import app
from rrnet_cli.ledger import Ledger
from rrnet_cli.schema import ROW

#: canonical column -> the Japanese header municipal systems print
JA = {
    "resident_id": "宛名番号",
    "name": "氏名",
    "birth_date": "生年月日",
    "sex": "性別",
    "nationality": "国籍・地域",
    "postal_code": "郵便番号",
    "address": "住所",
    "planned_move_out_date": "転出予定日",
    "resident_code": "住民票コード",
}
COLUMNS = tuple(JA)


def register_rows() -> list[dict[str, str]]:
    """Six residents: new ones, one arriving with a code that starts with 0, one
    moving out, one whose name looks like a formula."""
    rows = []
    for i in range(1, 7):
        rows.append(
            {
                "resident_id": f"{i:09d}",
                "name": f"TEST PERSON {i}",
                "birth_date": "1990-04-01",
                "sex": "F" if i % 2 else "M",
                "nationality": "VNM",
                "postal_code": f"{i:03d}-0001",
                "address": f"東京都千代田区九段南1-2-{i}",
                "planned_move_out_date": "",
                "resident_code": "",
            }
        )
    rows[1]["resident_code"] = "00000000060"  # carried over; its leading zeros must stay
    rows[2]["name"] = "=1+1"
    rows[3]["planned_move_out_date"] = "2030-01-01"
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_xlsx(
    path: Path,
    rows: list[dict[str, Any]],
    *,
    headers: str = "ja",
    sheet: str = "住民",
    before: tuple[str, ...] = (),
    after: tuple[str, ...] = (),
    numbers: tuple[str, ...] = (),
    blank_above: int = 0,
    blank_tail: int = 0,
) -> Path:
    """Write ``rows`` into ``sheet`` as Excel would store them.

    Text cells by default; the columns in ``numbers`` as number cells; a
    ``date`` value as a date cell with a date format (a ``(date, format)``
    pair for another format). ``before`` and ``after`` name other sheets
    (with a note in A1). ``blank_above`` leaves rows above the header empty;
    ``blank_tail`` adds formatted but empty rows at the end, as Excel keeps
    after rows are cleared.
    """
    book = xlsxwriter.Workbook(str(path))
    default_date = book.add_format({"num_format": "yyyy/mm/dd"})
    styled = book.add_format({"bold": True})
    for name in before:
        book.add_worksheet(name).write_string(0, 0, "メモ: 提出前に確認")
    ws = book.add_worksheet(sheet)
    names = [JA[c] if headers == "ja" else c for c in rows[0]]
    top = blank_above
    for col, header in enumerate(names):
        ws.write_string(top, col, header)
    for r, row in enumerate(rows, start=top + 1):
        for col, (column, value) in enumerate(row.items()):
            if isinstance(value, tuple):
                ws.write_datetime(r, col, value[0], book.add_format({"num_format": value[1]}))
            elif isinstance(value, date):
                ws.write_datetime(r, col, value, default_date)
            elif value in ("", None):
                continue
            elif column in numbers:
                ws.write_number(r, col, float(value))
            else:
                ws.write_string(r, col, value)
    last = top + len(rows)
    for r in range(last + 1, last + 1 + blank_tail):
        ws.write_blank(r, 0, None, styled)
        ws.write_string(r, 1, "")
    for name in after:
        book.add_worksheet(name).write_string(0, 0, "メモ")
    book.close()
    return path


def assign(runner: CliRunner, export: Path, ledger: Path, *args: str) -> Any:
    return runner.invoke(
        app, ["assign", str(export), "--ledger", str(ledger), "--seed", "7", *args]
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def no_crash(output: str) -> None:
    assert "Traceback" not in output
    assert "internal error" not in output


# -- the round trip -----------------------------------------------------------------


def test_xlsx_round_trip_matches_csv(runner: CliRunner, ledger: Ledger, tmp_path: Path) -> None:
    rows = register_rows()
    csv_export = write_csv(tmp_path / "register.csv", rows)
    xlsx_export = write_xlsx(tmp_path / "register.xlsx", rows)
    other = Ledger.init(tmp_path / "ledger2", municipality=MUNICIPALITY)

    from_csv = assign(runner, csv_export, ledger.path, "-o", str(tmp_path / "a.csv"), "--json")
    assert from_csv.exit_code == 0, from_csv.output
    out = tmp_path / "assigned.xlsx"
    from_xlsx = assign(runner, xlsx_export, other.path, "-o", str(out), "--json")
    assert from_xlsx.exit_code == 0, from_xlsx.output
    summary = json.loads(from_xlsx.stdout)
    assert summary["warnings"] == []
    assert summary["sheet"] == "住民"
    assert summary["newly_assigned"] == 4 and summary["carried_over"] == 1

    # Same rows, same statuses (and, with the same seed, the same codes).
    by_csv = ingest.read_export(tmp_path / "a.csv", ours=True).frame
    by_xlsx = ingest.read_export(out, ours=True).frame
    keys = ["resident_id", "code_status", "exclusion_reason", "resident_code"]
    assert by_xlsx.select(keys).to_dicts() == by_csv.select(keys).to_dicts()
    assert by_xlsx.drop(ROW).to_dicts() == by_csv.drop(ROW).to_dicts()
    # Read back, the formula-like name is the name again.
    assert by_xlsx["name"][2] == "=1+1"
    assert by_xlsx["resident_code"][1] == "00000000060"
    assert mode(out) == 0o600

    # The file as Excel sees it: text cells everywhere, zeros kept, the formula inert.
    seen = pl.read_excel(out, engine="calamine", infer_schema_length=0)
    assert seen.columns == [*COLUMNS, "code_status", "exclusion_reason"]
    codes = seen.filter(pl.col("resident_code").is_not_null())["resident_code"].to_list()
    assert len(codes) == 5 and all(len(c) == 11 and c.isdigit() for c in codes)
    assert "00000000060" in codes
    assert seen["resident_id"].to_list() == [r["resident_id"] for r in rows]
    assert seen["name"][2] == "'=1+1"
    sheet = fastexcel.read_excel(out.read_bytes()).load_sheet(0)
    types = {c.name: c.dtype for c in sheet.selected_columns}
    assert types["resident_code"] == "string" and types["resident_id"] == "string"
    assert types["postal_code"] == "string"
    assert sheet.to_arrow().column("resident_code")[1].as_py() == "00000000060"

    checked = runner.invoke(app, ["verify", str(out), "--ledger", str(other.path), "--json"])
    assert checked.exit_code == 0, checked.output
    assert json.loads(checked.stdout)["codes"] == 5

    sheets = tmp_path / "sheets"
    printed = runner.invoke(
        app,
        [
            "notify",
            str(out),
            "--ledger",
            str(other.path),
            "--profile",
            str(profile_for(MUNICIPALITY, tmp_path)),
            "-o",
            str(sheets),
            "--workers",
            "1",
            "--json",
        ],
    )
    assert printed.exit_code == 0, printed.output
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    assert manifest.height == 4  # the newly assigned residents
    assert sorted(manifest["resident_id"].to_list()) == [
        "000000001",
        "000000003",
        "000000005",
        "000000006",
    ]


def test_assigned_xlsx_fed_back_assigns_nothing_new(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    out = tmp_path / "assigned.xlsx"
    first = assign(
        runner, write_xlsx(tmp_path / "r.xlsx", register_rows()), ledger.path, "-o", str(out)
    )
    assert first.exit_code == 0, first.output
    again = assign(runner, out, ledger.path, "-o", str(tmp_path / "again.xlsx"), "--json")
    assert again.exit_code == 0, again.output
    summary = json.loads(again.stdout)
    assert summary["newly_assigned"] == 0 and summary["already_assigned"] == 5
    back = ingest.read_export(tmp_path / "again.xlsx", ours=True).frame
    assert back["name"][2] == "=1+1"  # neutralised once on the way out, not twice


# -- row numbers, sheets ----------------------------------------------------------


def test_bad_row_is_reported_with_the_row_number_excel_shows(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    rows = register_rows()
    rows[2]["name"] = ""  # Excel row 4: the header is row 1
    export = write_xlsx(tmp_path / "r.xlsx", rows, blank_tail=3)
    result = assign(runner, export, ledger.path, "-o", str(tmp_path / "out.xlsx"))
    assert result.exit_code == 2, result.output
    assert "row 4, name: required value is empty" in result.output
    assert "row 8" not in result.output  # formatted blank rows at the end are no rows
    assert not (tmp_path / "out.xlsx").exists()


def test_an_empty_row_in_the_middle_is_skipped_and_counted(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    rows = register_rows()
    empty = dict.fromkeys(rows[0], "")
    export = write_xlsx(tmp_path / "r.xlsx", [*rows[:2], empty, *rows[2:]], blank_tail=2)
    result = assign(runner, export, ledger.path, "-o", str(tmp_path / "out.csv"), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rows_read"] == 6
    assert data["blank_rows_skipped"] == 3  # the one in the middle and the two at the end

    bad = [dict(r) for r in rows]
    bad[4]["sex"] = "X"  # Excel row 7 once the empty row 4 is counted
    export = write_xlsx(tmp_path / "bad.xlsx", [*bad[:2], empty, *bad[2:]])
    result = assign(runner, export, ledger.path, "--dry-run")
    assert result.exit_code == 2, result.output
    assert "row 7, sex" in result.output
    assert "row 4" not in result.output
    no_crash(result.output)


def test_rows_below_a_header_that_is_not_in_row_1_keep_excel_numbers(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    rows = register_rows()
    rows[0]["sex"] = "X"
    export = write_xlsx(tmp_path / "r.xlsx", rows, blank_above=2)  # header in row 3
    result = assign(runner, export, ledger.path, "-o", str(tmp_path / "out.xlsx"))
    assert result.exit_code == 2, result.output
    assert "row 4, sex" in result.output


def test_sheet_option_picks_a_sheet_and_the_default_is_the_first(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = write_xlsx(tmp_path / "r.xlsx", register_rows(), sheet="台帳", before=("メモ",))
    first = assign(runner, export, ledger.path, "--dry-run")
    assert first.exit_code == 2, first.output
    assert "lacks required column" in first.output  # the note sheet is not a register

    picked = assign(runner, export, ledger.path, "--dry-run", "--sheet", "台帳", "--json")
    assert picked.exit_code == 0, picked.output
    assert json.loads(picked.stdout)["rows_read"] == 6

    missing = assign(runner, export, ledger.path, "--dry-run", "--sheet", "Sheet9")
    assert missing.exit_code == 2
    assert "no sheet 'Sheet9'" in missing.output
    assert "'メモ', '台帳'" in missing.output
    no_crash(missing.output)


def test_sheet_option_on_a_csv_is_refused(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = write_csv(tmp_path / "r.csv", register_rows())
    result = assign(runner, export, ledger.path, "--dry-run", "--sheet", "住民")
    assert result.exit_code == 2
    assert "--sheet applies to" in result.output


# -- cells Excel stored as numbers and dates ------------------------------------------


def test_numbers_and_date_cells_are_read_as_excel_shows_them(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    rows: list[dict[str, Any]] = [dict(r) for r in register_rows()]
    for row in rows:
        row["resident_id"] = str(int(row["resident_id"]) + 5970)  # 5971, 5972 ...
        row["postal_code"] = "1000001"
    rows[0]["birth_date"] = date(1990, 4, 1)
    rows[1]["birth_date"] = (date(1985, 12, 24), '[$-ja-JP]ggge"年"m"月"d"日"')
    rows[2]["birth_date"] = "2001/02/03"  # typed as text
    export = write_xlsx(
        tmp_path / "r.xlsx", rows, headers="en", numbers=("resident_id", "postal_code")
    )
    out = tmp_path / "out.xlsx"
    result = assign(runner, export, ledger.path, "-o", str(out))
    assert result.exit_code == 0, result.output
    no_crash(result.output)
    # A column of numbers only: the warning names the column's type.
    assert (
        "warning: resident_id: all 6 cell(s) were stored by Excel as numbers (column type "
        "Number, not Text); leading zeros may already be lost (format the column as Text "
        "in Excel)"
    ) in " ".join(result.output.split())
    assert "warning: postal_code: all 6 cell(s)" in result.output

    as_json = assign(
        runner,
        export,
        Ledger.init(tmp_path / "l2", municipality=MUNICIPALITY).path,
        "--dry-run",
        "--json",
    )
    assert as_json.exit_code == 0, as_json.output
    warnings = json.loads(as_json.stdout)["warnings"]
    assert [w.split(":")[0] for w in warnings] == ["resident_id", "postal_code"]

    back = ingest.read_export(out, ours=True).frame
    assert back["resident_id"].to_list() == [str(5971 + i) for i in range(6)]  # no ".0"
    assert back["postal_code"].to_list() == ["1000001"] * 6
    assert back["birth_date"].to_list()[:3] == ["1990-04-01", "1985-12-24", "2001/02/03"]


def test_a_date_and_time_cell_keeps_its_time_and_text_stays_text(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [dict(r) for r in register_rows()[:3]]
    rows[0]["planned_move_out_date"] = (date(2030, 1, 2), "yyyy-mm-dd hh:mm")
    rows[1]["planned_move_out_date"] = "2030-01-02 00:00:00"  # text, left alone
    export = ingest.read_export(write_xlsx(tmp_path / "r.xlsx", rows))
    assert export.frame["planned_move_out_date"].to_list()[:2] == [
        "2030-01-02",
        "2030-01-02 00:00:00",
    ]
    assert export.warnings == []
    assert export.first_row == 2 and export.frame[ROW].to_list() == [2, 3, 4]


def test_a_numeric_code_that_lost_its_zero_is_a_row_error_with_the_warning(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    rows = register_rows()
    export = write_xlsx(tmp_path / "r.xlsx", rows, numbers=("resident_code",))
    result = assign(runner, export, ledger.path, "-o", str(tmp_path / "out.xlsx"))
    assert result.exit_code == 2, result.output
    assert "row 3, resident_code" in result.output  # 00000000060 became 60
    assert (
        "warning: resident_code (住民票コード): all 1 cell(s) were stored by Excel as numbers"
    ) in result.output


# -- writing ------------------------------------------------------------------------


def test_written_xlsx_and_rejects_are_private(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    rows = register_rows()
    rows[4]["birth_date"] = "1990-02-30"  # Excel row 6
    export = write_xlsx(tmp_path / "r.xlsx", rows)
    out, rejects = tmp_path / "out.xlsx", tmp_path / "rejects.xlsx"
    result = assign(runner, export, ledger.path, "-o", str(out), "--rejects", str(rejects))
    assert result.exit_code == 0, result.output
    assert mode(out) == 0o600 and mode(rejects) == 0o600
    set_aside = pl.read_excel(rejects, engine="calamine", infer_schema_length=0)
    assert set_aside["row"].to_list() == ["6"]
    assert set_aside["resident_id"].to_list() == ["000000005"]
    assert "birth_date" in set_aside["errors"][0]
    assert pl.read_excel(out, engine="calamine", infer_schema_length=0).height == 5


def test_other_output_extensions_are_refused(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = write_xlsx(tmp_path / "r.xlsx", register_rows())
    result = assign(runner, export, ledger.path, "-o", str(tmp_path / "out.xls"))
    assert result.exit_code == 2
    assert ".csv, .parquet or .xlsx" in result.output


# -- files that are not what their name says ----------------------------------------


def test_csv_renamed_to_xlsx_is_a_clear_usage_error(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    fake = tmp_path / "register.xlsx"
    write_csv(fake, register_rows())
    result = assign(runner, fake, ledger.path, "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 2
    assert "is not an Excel workbook" in result.output and ".csv" in result.output
    no_crash(result.output)


def test_xlsx_renamed_to_csv_is_a_clear_usage_error(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    fake = write_xlsx(tmp_path / "register.csv", register_rows())
    result = assign(runner, fake, ledger.path, "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 2
    assert "looks like an Excel workbook" in result.output
    no_crash(result.output)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
def test_damaged_workbook_is_a_usage_error(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, damage: str
) -> None:
    good = write_xlsx(tmp_path / "good.xlsx", register_rows()).read_bytes()
    bad = tmp_path / "bad.xlsx"
    bad.write_bytes(
        {"truncated": good[: len(good) // 2], "empty": b"", "garbage": b"PK\x03\x04" + bytes(500)}[
            damage
        ]
    )
    for command in (["assign", str(bad), "--dry-run"], ["verify", str(bad)]):
        result = runner.invoke(app, [*command, "--ledger", str(ledger.path)])
        assert result.exit_code == 2, result.output
        no_crash(result.output)
        assert str(bad) in result.output


def test_an_xlsx_named_xls_is_read_by_content(tmp_path: Path) -> None:
    # calamine decides the format from the bytes, so a misnamed workbook still reads.
    book = write_xlsx(tmp_path / "r.xlsx", register_rows())
    misnamed = tmp_path / "r.xls"
    misnamed.write_bytes(book.read_bytes())
    assert ingest.read_export(misnamed).rows == 6


def _excel_lock_file(workbook: Path, user: str, padding: bytes) -> Path:
    """The owner file Excel keeps beside an open workbook, made as Excel makes it:
    ``~$`` + the name, 165 bytes: the user name's length and the name (padded with
    spaces to 54 bytes), then its length and the name in UTF-16, padded."""
    ansi = bytes([len(user)]) + user.encode("ascii")
    wide = len(user).to_bytes(2, "little") + user.encode("utf-16-le")
    data = ansi.ljust(54, b" ") + wide
    lock = workbook.with_name("~$" + workbook.name)
    lock.write_bytes(data.ljust(165, padding))
    return lock


@pytest.mark.parametrize("padding", [b"\0", b" "])
@pytest.mark.parametrize("command", ["assign", "verify"])
def test_excels_lock_file_is_named_for_what_it_is(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, padding: bytes, command: str
) -> None:
    workbook = write_xlsx(tmp_path / "x.xlsx", register_rows())
    lock = _excel_lock_file(workbook, "tanaka.hanako", padding)
    assert lock.stat().st_size == 165
    args = ["-o", str(tmp_path / "out.csv")] if command == "assign" else []
    result = runner.invoke(app, [command, str(lock), "--ledger", str(ledger.path), *args])
    assert result.exit_code == 2, result.output
    assert (
        f"{lock} is Excel's lock file for x.xlsx (the workbook is open in Excel), not the "
        f"workbook: give {workbook} itself, or close Excel." in result.output
    )
    assert "tanaka" not in result.output  # the lock file's user name is not echoed
    assert "text file" not in result.output and "other kind of file" not in result.output
    no_crash(result.output)
    assert not (tmp_path / "out.csv").exists()


def test_a_workbook_whose_name_starts_like_a_lock_file_is_read(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    workbook = write_xlsx(tmp_path / "~$register.xlsx", register_rows())
    result = assign(runner, workbook, ledger.path, "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 0, result.output
