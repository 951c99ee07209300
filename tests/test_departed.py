"""Who left the register: residents the ledger knows whom a new export no longer lists.

Offices reconcile with this list, and it catches the wrong export being given.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from rrnet_cli.cli import app
from rrnet_cli.ledger import Ledger


def _assign(runner: CliRunner, export: Path, ledger: Ledger, out: Path, *extra: str):
    return runner.invoke(
        app, ["assign", str(export), "-l", str(ledger.path), "-o", str(out), "--json", *extra]
    )


def test_residents_missing_from_the_next_export_are_counted_and_listed(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    everyone = [resident(f"{i:06d}") for i in range(1, 8)]
    first = _assign(runner, write_register(everyone, "first.csv"), ledger, tmp_path / "a1.csv")
    assert first.exit_code == 0, first.output
    assert '"departed": 0' in first.output
    assigned = pl.read_csv(tmp_path / "a1.csv", infer_schema=False)
    # Next month: two residents left, one arrived.
    stayed = [r for r in everyone if r["resident_id"] not in ("000002", "000005")]
    later = write_register([*stayed, resident("000100")], "later.csv")
    departed = tmp_path / "departed.csv"
    second = _assign(runner, later, ledger, tmp_path / "a2.csv", "--departed", str(departed))
    assert second.exit_code == 0, second.output
    assert '"departed": 2' in second.output and '"newly_assigned": 1' in second.output
    listed = pl.read_csv(departed, infer_schema=False)
    assert listed["resident_id"].to_list() == ["000002", "000005"]
    codes = dict(zip(assigned["resident_id"], assigned["resident_code"], strict=True))
    assert listed["resident_code"].to_list() == [codes["000002"], codes["000005"]]
    assert departed.stat().st_mode & 0o777 == 0o600


def test_the_wrong_export_shows_up_as_everyone_departed(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    mine = [resident(f"{i:06d}") for i in range(1, 6)]
    assert (
        _assign(runner, write_register(mine, "mine.csv"), ledger, tmp_path / "a.csv").exit_code == 0
    )
    other = write_register([resident(f"9{i:05d}") for i in range(1, 4)], "other.csv")
    result = runner.invoke(app, ["assign", str(other), "-l", str(ledger.path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "known to the ledger, not in the export" in result.output
    assert "│ known to the ledger, not in the export │      5 │" in result.output


def test_departed_may_not_share_a_path_with_the_output(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    export = write_register([resident("000001")])
    out = tmp_path / "out.csv"
    result = _assign(runner, export, ledger, out, "--departed", str(out))
    assert result.exit_code == 2
    assert "-o and --departed both name" in result.output
    assert not out.exists()
