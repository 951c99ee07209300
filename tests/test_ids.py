"""Resident ids that lost their leading zeros: in a workbook, in a Parquet column of
integers, and in a ledger that recorded them from an export that had lost them.

The files are made as the tools make them: workbooks with xlsxwriter, whose
number cells are what Excel stores when a column is not formatted as Text (5974
for 000005974) and whose text cells are what Excel stores for '000005974; a
Parquet file with an int64 id column; and a CP932 CSV with CRLF line ends for
the map of ``rrnet ledger fix-ids``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import xlsxwriter
from backends import LedgerBackend
from conftest import make_resident
from typer.testing import CliRunner

from rrnet_cli.cli import app

COLUMNS = ("resident_id", "name", "birth_date", "sex", "nationality", "address")


def write_workbook(path: Path, ids: list[str | int], **bad: dict[str, str]) -> Path:
    """A register workbook: an int id is a number cell (as Excel stores 5974 typed into
    a General column), a str id a text cell ('000005974). ``bad`` overrides cells of
    a row: ``row3={"sex": "X"}`` (rows as Excel numbers them)."""
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet("住民")
    for col, name in enumerate(COLUMNS):
        sheet.write_string(0, col, name)
    for r, rid in enumerate(ids, start=1):
        row = make_resident(str(rid), **bad.get(f"row{r + 1}", {}))
        for col, name in enumerate(COLUMNS):
            if name == "resident_id" and isinstance(rid, int):
                sheet.write_number(r, col, rid)
            else:
                sheet.write_string(r, col, row[name])
    book.close()
    return path


def write_csv(path: Path, ids: list[str]) -> Path:
    lines = [",".join(COLUMNS)]
    lines += [",".join(make_resident(rid)[c] for c in COLUMNS) for rid in ids]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp932"))
    return path


def assign(runner: CliRunner, export: Path, location: str, *args: str) -> Any:
    return runner.invoke(app, ["assign", str(export), "--ledger", location, "--seed", "7", *args])


def codes_by_id(path: Path) -> dict[str, str]:
    import polars as pl

    frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    return dict(zip(frame["resident_id"], frame["resident_code"], strict=True))


# -- a workbook id column that mixes numbers and zero-padded text ---------------------


def test_numbers_among_zero_padded_ids_refuse_the_run_even_with_rejects(
    runner: CliRunner, backend: LedgerBackend, tmp_path: Path
) -> None:
    ids: list[str | int] = ["000005971", "000005972", 5973, "000005974", 5975]
    export = write_workbook(tmp_path / "r.xlsx", ids)
    before = backend.contents()
    rejects = tmp_path / "rejects.csv"
    out = tmp_path / "out.csv"
    result = assign(runner, export, backend.location, "-o", str(out), "--rejects", str(rejects))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "2 cell(s) of resident_id" in text
    assert "Excel dropped those zeros" in text
    assert "row 4, resident_id: Excel stored this id as a number" in text
    assert "row 6, resident_id: Excel stored this id as a number" in text
    assert "warning: resident_id" not in text  # a refusal, not a warning
    assert backend.contents() == before  # nothing recorded
    assert not out.exists() and not rejects.exists()


def test_zero_stripped_ids_are_reported_before_other_row_errors(
    runner: CliRunner, backend: LedgerBackend, tmp_path: Path
) -> None:
    ids: list[str | int] = ["000005971", "000005972", "000005973", 5974]
    export = write_workbook(tmp_path / "r.xlsx", ids, row2={"sex": "X"}, row3={"sex": "Y"})
    result = assign(runner, export, backend.location, "--dry-run", "--json")
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert [(e["row"], e["column"]) for e in data["row_errors"]] == [
        (5, "resident_id"),
        (2, "sex"),
        (3, "sex"),
    ]


def test_an_id_column_of_numbers_only_is_a_warning_naming_its_type(
    runner: CliRunner, backend: LedgerBackend, tmp_path: Path
) -> None:
    export = write_workbook(tmp_path / "r.xlsx", [5971, 5972, 5973])
    result = assign(runner, export, backend.location, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    (warning,) = json.loads(result.stdout)["warnings"]
    assert warning.startswith("resident_id: all 3 cell(s) were stored by Excel as numbers")
    assert "column type Number, not Text" in warning


def test_a_parquet_id_column_of_integers_is_a_warning_naming_its_type(
    runner: CliRunner, backend: LedgerBackend, tmp_path: Path
) -> None:
    rows = [make_resident(str(i)) for i in (5971, 5972)]
    table = pa.table(
        {
            c: pa.array([int(r[c]) for r in rows], pa.int64())
            if c == "resident_id"
            else pa.array([r[c] for r in rows])
            for c in COLUMNS
        }
    )
    export = tmp_path / "r.parquet"
    pq.write_table(table, export)
    result = assign(runner, export, backend.location, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    (warning,) = json.loads(result.stdout)["warnings"]
    assert warning.startswith("resident_id: the column has type int64 (integers, not text)")


# -- the ledger holds the ids without their zeros ---------------------------------------


def test_the_correct_export_after_a_stripped_one_names_the_ledger_s_ids(
    runner: CliRunner, backend: LedgerBackend, tmp_path: Path
) -> None:
    # An earlier export went through Excel: every id lost its zeros, and was recorded so.
    stripped = write_workbook(tmp_path / "bad.xlsx", [5971, 5972])
    assert assign(runner, stripped, backend.location, "-o", str(tmp_path / "a.csv")).exit_code == 0
    right = write_csv(tmp_path / "right.csv", ["000005971", "000005972", "000005973"])
    before = backend.contents()
    result = assign(runner, right, backend.location, "-o", str(tmp_path / "b.csv"))
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "row 2, resident_id: the ledger holds this resident under this id without" in text
    assert "this id is right, the ledger's is not" in text
    assert "rrnet ledger fix-ids --map FILE" in text
    assert "Excel may have dropped" not in text  # not this file's ids
    assert backend.contents() == before
