"""Ordinary slips that would give residents a second code for good.

Each was met by a new user: ids that Excel stripped of their leading zeros, a
mistyped or stale municipality code, and the rejects written over the output.
Each must be refused before anything is written, and the ledger must not move.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from helpers import MUNICIPALITY, folder_bytes
from typer.testing import CliRunner

from rrnet_cli.cli import app
from rrnet_cli.ledger import Ledger

OTHER_MUNICIPALITY = "131024"  # 中央区: a real code, but not this ledger's


def _export(path: Path, ids: list[str], *, excel_style: bool = False) -> Path:
    """A CP932 export; ``excel_style`` writes it the way Excel saves a CSV: CRLF, ids as numbers."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n" if excel_style else "\n")
    writer.writerow(["宛名番号", "氏名", "生年月日", "性別", "国籍・地域", "住所"])
    for i, rid in enumerate(ids):
        shown = str(int(rid)) if excel_style else rid
        writer.writerow([shown, f"PERSON {i}", "平成2年4月1日", "女", "ベトナム", f"千代田区{i}"])
    path.write_bytes(buffer.getvalue().encode("cp932"))
    return path


def _assign(runner: CliRunner, export: Path, ledger: Ledger, out: Path, *extra: str):
    return runner.invoke(
        app, ["assign", str(export), "-l", str(ledger.path), "-o", str(out), *extra]
    )


@pytest.fixture
def assigned_once(runner: CliRunner, ledger: Ledger, tmp_path: Path) -> list[str]:
    ids = [f"{5970 + i:09d}" for i in range(12)]
    first = _assign(runner, _export(tmp_path / "first.csv", ids), ledger, tmp_path / "a1.csv")
    assert first.exit_code == 0, first.output
    return ids


def test_ids_excel_stripped_of_zeros_are_refused_not_given_second_codes(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, assigned_once: list[str]
) -> None:
    before = folder_bytes(ledger.path)
    resaved = _export(tmp_path / "resaved.csv", assigned_once, excel_style=True)
    out = tmp_path / "a2.csv"
    result = _assign(runner, resaved, ledger, out)
    assert result.exit_code == 2
    assert "Excel" in result.output and "leading zeros" in result.output
    assert "row 2, resident_id" in result.output
    assert not out.exists()
    assert folder_bytes(ledger.path) == before


def test_many_stripped_ids_stop_the_run_even_with_rejects(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, assigned_once: list[str]
) -> None:
    before = folder_bytes(ledger.path)
    resaved = _export(tmp_path / "resaved.csv", assigned_once, excel_style=True)
    out, rejects = tmp_path / "a2.csv", tmp_path / "rejects.csv"
    result = _assign(runner, resaved, ledger, out, "--rejects", str(rejects))
    assert result.exit_code == 2
    assert "12 resident_id values" in result.output
    assert "Nothing was written" in result.output
    assert not out.exists() and not rejects.exists()
    assert folder_bytes(ledger.path) == before


def test_one_stripped_id_goes_to_the_rejects_and_the_others_proceed(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, assigned_once: list[str]
) -> None:
    # One known resident whose id lost its zeros, beside two new residents.
    ids = [str(int(assigned_once[0])), "000007001", "000007002"]
    export = _export(tmp_path / "mixed.csv", ids)
    out, rejects = tmp_path / "a2.csv", tmp_path / "rejects.csv"
    result = _assign(runner, export, ledger, out, "--rejects", str(rejects), "--json")
    assert result.exit_code == 0, result.output
    assert '"newly_assigned": 2' in result.output and '"rows_rejected": 1' in result.output
    assert "leading zeros" in rejects.read_text(encoding="utf-8-sig")


def test_the_same_ids_written_properly_are_already_assigned(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, assigned_once: list[str]
) -> None:
    again = _export(tmp_path / "again.csv", assigned_once)
    result = _assign(runner, again, ledger, tmp_path / "a2.csv", "--json")
    assert result.exit_code == 0, result.output
    assert '"already_assigned": 12' in result.output and '"newly_assigned": 0' in result.output


@pytest.mark.parametrize("given", [OTHER_MUNICIPALITY, "abc", "131017"])
def test_assign_refuses_a_municipality_other_than_the_ledgers(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, assigned_once: list[str], given: str
) -> None:
    before = folder_bytes(ledger.path)
    export = _export(tmp_path / "again.csv", assigned_once)
    out = tmp_path / "a2.csv"
    result = _assign(runner, export, ledger, out, "-m", given, "--rejects", str(tmp_path / "r.csv"))
    assert result.exit_code == 2
    if given == OTHER_MUNICIPALITY:
        assert f"is for municipality {MUNICIPALITY}, not {given}" in result.output
        assert "wrong municipality?" in result.output
    else:
        assert "local government code" in result.output
    assert not out.exists()
    assert folder_bytes(ledger.path) == before


def test_a_stale_environment_municipality_is_refused_too(
    ledger: Ledger, tmp_path: Path, assigned_once: list[str]
) -> None:
    runner = CliRunner(env={"RRNET_LEDGER": None, "RRNET_MUNICIPALITY": OTHER_MUNICIPALITY})
    export = _export(tmp_path / "again.csv", assigned_once)
    result = _assign(runner, export, ledger, tmp_path / "a2.csv")
    assert result.exit_code == 2
    assert "wrong municipality?" in result.output


def test_the_ledgers_own_municipality_given_explicitly_is_fine(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, assigned_once: list[str]
) -> None:
    export = _export(tmp_path / "again.csv", assigned_once)
    result = _assign(runner, export, ledger, tmp_path / "a2.csv", "-m", MUNICIPALITY)
    assert result.exit_code == 0, result.output


def test_verify_with_the_wrong_municipality_says_so_once(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, assigned_once: list[str]
) -> None:
    result = runner.invoke(
        app, ["verify", str(tmp_path / "a1.csv"), "-l", str(ledger.path), "-m", OTHER_MUNICIPALITY]
    )
    assert result.exit_code == 2
    assert result.output.count("wrong municipality?") == 1
    assert "holds this code for another resident" not in result.output


def test_rejects_on_the_same_path_as_the_output_is_refused(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = _export(tmp_path / "e.csv", ["000000001", "000000002"])
    out = tmp_path / "same.csv"
    result = _assign(runner, export, ledger, out, "--rejects", str(tmp_path / "." / "same.csv"))
    assert result.exit_code == 2
    assert "-o and --rejects both name" in result.output
    assert not out.exists()
