"""One bad resident record code, given to every command that reads codes from a file.

A code with a wrong check digit (what a typo, or a hand edit in Excel, gives)
must be named by its row and column with a plain message and the exit code the
command promises: never a traceback, never "unexpected internal error", and
nothing written. ``verify`` reports it as a violation (exit 1: a check failed);
the commands that act on codes refuse it as unusable input (exit 2).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
import pytest
from helpers import MUNICIPALITY, profile_for
from typer.testing import CliRunner

from rrnet_cli.cli import app
from rrnet_cli.ledger import Ledger

GOOD = "12345678903"
BAD = "12345678904"  # the same body with a wrong check digit


def _no_crash(output: str) -> None:
    assert "Traceback" not in output
    assert "internal error" not in output


def _assigned_csv(runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path) -> Path:
    export = write_register([resident(f"{i:06d}") for i in range(1, 6)])
    out = tmp_path / "assigned.csv"
    result = runner.invoke(app, ["assign", str(export), "-l", str(ledger.path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _tamper(path: Path, row: int) -> str:
    """Give spreadsheet row ``row`` a code with a wrong check digit; return the old code."""
    text = path.read_text(encoding="utf-8-sig")
    records = list(csv.reader(io.StringIO(text, newline="")))
    column = records[0].index("resident_code")
    old = records[row - 1][column]
    records[row - 1][column] = old[:-1] + str((int(old[-1]) + 1) % 10)
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n").writerows(records)
    path.write_text(buffer.getvalue(), encoding="utf-8-sig")
    return old


def test_assign_names_the_row_of_a_bad_existing_code(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    export = write_register(
        [resident("000001"), resident("000002", resident_code=BAD), resident("000003")]
    )
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["assign", str(export), "-l", str(ledger.path), "-o", str(out)])
    _no_crash(result.output)
    assert result.exit_code == 2
    assert "row 3, resident_code" in result.output
    assert "check digit" in result.output
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_notify_refuses_a_bad_code_naming_the_row_and_prints_nothing(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path, fmt: str
) -> None:
    assigned = _assigned_csv(runner, ledger, write_register, resident, tmp_path)
    _tamper(assigned, row=4)
    if fmt == "parquet":
        frame = pl.read_csv(assigned, infer_schema=False)
        assigned = assigned.with_suffix(".parquet")
        frame.write_parquet(assigned)
    sheets = tmp_path / "sheets"
    result = runner.invoke(
        app,
        [
            "notify",
            str(assigned),
            "-l",
            str(ledger.path),
            "--profile",
            str(profile_for(MUNICIPALITY, tmp_path)),
            "-o",
            str(sheets),
        ],
    )
    _no_crash(result.output)
    assert result.exit_code == 2, result.output
    row = 4 if fmt == "csv" else 3  # Parquet has no header row: its first person is row 1
    assert f"row {row}, resident_code" in result.output
    assert "check digit" in result.output
    assert not sheets.exists()


def test_verify_reports_a_bad_code_as_a_violation_of_its_row(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    assigned = _assigned_csv(runner, ledger, write_register, resident, tmp_path)
    _tamper(assigned, row=4)
    result = runner.invoke(app, ["verify", str(assigned), "-l", str(ledger.path)])
    _no_crash(result.output)
    assert result.exit_code == 1
    assert "row 4: [format]" in result.output
    assert "check digit" in result.output


def _cp932_codes_csv(path: Path, codes: list[str]) -> Path:
    """A code list as a municipal system writes it: CP932, CRLF, a Japanese header."""
    lines = ["宛名番号,住民票コード", *(f"{i:06d},{c}" for i, c in enumerate(codes, start=1))]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp932"))
    return path


def test_ledger_import_names_the_record_of_a_bad_code_and_changes_nothing(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    source = _cp932_codes_csv(tmp_path / "codes.csv", [GOOD, "58026173947", BAD])
    before = ledger.read_manifest()
    result = runner.invoke(
        app, ["ledger", "import", str(source), "-l", str(ledger.path), "--column", "住民票コード"]
    )
    _no_crash(result.output)
    assert result.exit_code == 2
    assert "record 4" in result.output  # the header is record 1, as in a spreadsheet
    assert ledger.read_manifest() == before


def test_ledger_import_reads_a_cp932_column_by_its_japanese_name(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    source = _cp932_codes_csv(tmp_path / "codes.csv", [GOOD, "58026173947"])
    result = runner.invoke(
        app,
        [
            "ledger",
            "import",
            str(source),
            "-l",
            str(ledger.path),
            "--column",
            "住民票コード",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert '"imported": 2' in result.output
