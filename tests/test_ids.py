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
from helpers import MUNICIPALITY, cli_ok, profile_for, run_cli
from pypdf import PdfReader
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


# -- rrnet ledger fix-ids ---------------------------------------------------------------


def write_map(path: Path, pairs: list[tuple[str, str]], *, japanese: bool = True) -> Path:
    """The map as Excel saves a CSV on a Japanese Windows: CP932, CRLF."""
    header = "台帳の宛名番号,正しい宛名番号" if japanese else "ledger_id,correct_id"
    lines = [header, *(f"{old},{new}" for old, new in pairs)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp932"))
    return path


def stripped_ledger(runner: CliRunner, backend: LedgerBackend, tmp_path: Path) -> dict[str, str]:
    """Assign an export whose ids Excel stripped (all number cells); the codes by id."""
    export = write_workbook(tmp_path / "bad.xlsx", [5971, 5972, 5973])
    out = tmp_path / "first.csv"
    result = assign(runner, export, backend.location, "-o", str(out))
    assert result.exit_code == 0, result.output
    return codes_by_id(out)


def test_fix_ids_restores_the_zeros_and_assign_then_finds_everyone(
    runner: CliRunner, backend: LedgerBackend, tmp_path: Path
) -> None:
    first = stripped_ledger(runner, backend, tmp_path)
    before = backend.transactions()
    ids = tmp_path / "ids.csv"
    write_map(ids, [("5971", "000005971"), ("5972", "000005972"), ("5973", "000005973")])
    result = runner.invoke(
        app,
        ["ledger", "fix-ids", "--map", str(ids), "--ledger", backend.location, "--json"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["residents_fixed"] == 3
    assert data["transaction"] == before + 1
    assert backend.transactions() == before + 1  # one transaction
    assert backend.integrity() == []

    log = json.loads(
        runner.invoke(app, ["ledger", "log", "--ledger", backend.location, "--json"]).stdout
    )
    record = log["transactions"][-1]
    assert record["fixed_ids"] == 3
    assert record["inputs"][0]["path"] == str(ids)
    assert len(record["inputs"][0]["sha256"]) == 64
    assert record["counts"] == {"assigned": 3}

    right = write_csv(tmp_path / "right.csv", ["000005971", "000005972", "000005973"])
    out = tmp_path / "second.csv"
    result = assign(runner, right, backend.location, "-o", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["already_assigned"] == 3 and summary["newly_assigned"] == 0
    assert codes_by_id(out) == {f"00000{k}": code for k, code in first.items()}
    assert backend.integrity() == []


def test_fix_ids_refuses_a_bad_map_and_changes_nothing(
    runner: CliRunner, backend: LedgerBackend, tmp_path: Path
) -> None:
    stripped_ledger(runner, backend, tmp_path)
    other = write_csv(tmp_path / "other.csv", ["000007000"])
    assert assign(runner, other, backend.location, "-o", str(tmp_path / "o.csv")).exit_code == 0
    before = backend.contents()
    pairs = [
        ("5971", "000005971"),  # fine
        ("9999", "000009999"),  # not in the ledger (row 3)
        ("5972", "000005979"),  # more than zeros (row 4)
        ("5973", "000007000"),  # more than zeros too (row 5)
        ("7000", "0007000"),  # the target is not held, but 7000 is not the ledger's id
    ]
    ids = write_map(tmp_path / "ids.csv", pairs, japanese=False)
    result = runner.invoke(
        app, ["ledger", "fix-ids", "--map", str(ids), "--ledger", backend.location]
    )
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "row 4, correct_id: differs from the ledger's id in more than leading zeros" in text
    assert "row 5, correct_id: differs" in text
    assert backend.contents() == before

    twice = write_map(tmp_path / "twice.csv", [("5971", "000005971"), ("5971", "0005971")])
    result = runner.invoke(
        app, ["ledger", "fix-ids", "--map", str(twice), "--ledger", backend.location]
    )
    assert result.exit_code == 2, result.output
    assert "row 2, 台帳の宛名番号" not in result.output  # columns by their canonical names
    assert "row 2, ledger_id: this id is in the map more than once" in result.output
    assert backend.contents() == before

    unknown = write_map(tmp_path / "unknown.csv", [("5971", "000005971"), ("9999", "09999")])
    # 000007000 holds a code already: as a ledger id it is not stripped, and "7000"
    # is no id of the ledger's.
    held = write_map(tmp_path / "held.csv", [("5971", "000005971"), ("7000", "000007000")])
    for path, expected in (
        (unknown, "row 3, ledger_id: the ledger holds no active code for this id"),
        (held, "row 3, ledger_id: the ledger holds no active code for this id"),
    ):
        result = runner.invoke(
            app, ["ledger", "fix-ids", "--map", str(path), "--ledger", backend.location]
        )
        assert result.exit_code == 2, result.output
        assert expected in " ".join(result.output.split())
        assert "Traceback" not in result.output
        assert backend.contents() == before


def test_a_ledger_whose_ids_were_fixed_copies_both_ways(
    runner: CliRunner, backend: LedgerBackend, tmp_path: Path, pg_url: str
) -> None:
    stripped_ledger(runner, backend, tmp_path)
    ids = write_map(tmp_path / "ids.csv", [("5971", "000005971"), ("5973", "000005973")])
    fixed = runner.invoke(app, ["ledger", "fix-ids", "--map", str(ids), "-l", backend.location])
    assert fixed.exit_code == 0, fixed.output
    # Into the other backend and back: each copy checks its content hash and its own
    # integrity, and publishes nothing if either fails.
    other = pg_url if backend.kind == "folder" else str(tmp_path / "copied")
    back = str(tmp_path / "back")
    for source, target in ((backend.location, other), (other, back)):
        result = runner.invoke(app, ["ledger", "copy", source, target])
        assert result.exit_code == 0, result.output
    right = write_csv(tmp_path / "right.csv", ["000005971", "5972", "000005973"])
    result = assign(runner, right, back, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["already_assigned"] == 3


def notify_json(runner: CliRunner, location: str, assigned: Path, out: Path, *extra: str) -> dict:
    profile = profile_for(MUNICIPALITY, out.parent)
    code, output = run_cli(
        runner,
        *("notify", assigned, "-l", location, "--profile", profile, "-o", out),
        *("--workers", "1", "--json", *extra),
    )
    assert code == 0, output
    return json.loads(output)


def test_notices_follow_the_residents_through_fix_ids(
    runner: CliRunner, backend: LedgerBackend, tmp_path: Path
) -> None:
    """The notices and code changes recorded under the stripped ids are the residents'
    still once fix-ids gave the ids their zeros back: nobody gets a second first
    notice, a reprint finds the first, and a change made before the repair gives
    its change notice under the correct id, with the code the resident was told of."""
    first = stripped_ledger(runner, backend, tmp_path)
    printed = notify_json(runner, backend.location, tmp_path / "first.csv", tmp_path / "n1")
    assert printed["sheets"] == 3
    changed = run_cli(
        runner,
        *("change", "--resident", "5971", "--by-office", "--reason", "漏えいのおそれ"),
        *("-l", backend.location, "--json"),
    )
    assert changed[0] == 0, changed[1]
    new_code = json.loads(changed[1])["changes"][0]["new_code"]
    ids = write_map(
        tmp_path / "ids.csv",
        [("5971", "000005971"), ("5972", "000005972"), ("5973", "000005973")],
    )
    cli_ok(runner, "ledger", "fix-ids", "--map", ids, "--ledger", backend.location)
    right = write_csv(tmp_path / "right.csv", ["000005971", "000005972", "000005973"])
    second = tmp_path / "second.csv"
    assert assign(runner, right, backend.location, "-o", str(second)).exit_code == 0

    again = notify_json(runner, backend.location, second, tmp_path / "n2")
    assert again["sheets"] == 0 and again["nothing_to_print"], again

    reprint = notify_json(
        runner, backend.location, second, tmp_path / "n3",
        *("--reprint", "lost", "--resident", "000005972"),
    )  # fmt: skip
    assert reprint["sheets"] == 1

    changes = notify_json(runner, backend.location, second, tmp_path / "n4", "--changes")
    assert changes["sheets"] == 1
    text = "".join(
        page.extract_text() for page in PdfReader(tmp_path / "n4" / "sheets-0001.pdf").pages
    )
    squashed = text.replace(" ", "")
    assert first["5971"] in squashed and new_code in squashed
    assert "000005971" in text
