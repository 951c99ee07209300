"""A folder ledger knows its place: a folder copied, moved or restored by hand is no
second ledger.

`cp -a ledger copy`, then the same new arrivals assigned on both, used to work
silently: ten residents with two codes, and each ledger's own `verify` passed.
Here the office meets it as it would: a ledger made through the CLI (a CP932
register assigned), copied with `shutil.copytree` (copy2) and with a real
`cp -a`, moved with `mv`, restored from a tar backup, reached through a symbolic
link, made with `rrnet ledger copy`, and one from before the binding. Writes
to a folder that is not its ledger's place are refused, naming what happened
and what to do, and change nothing; reads still work and warn; `rrnet ledger
relocate` makes a folder the ledger, in the audit trail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from helpers import MUNICIPALITY, cli_ok, folder_bytes, profile_for, rrnet, run_cli, write_export
from test_households import register_rows, write_cp932
from typer.testing import CliRunner

from rrnet_cli import code as rcode
from rrnet_cli.errors import LedgerError
from rrnet_cli.ledger import Ledger
from rrnet_cli.ledger.audit import TRANSACTIONS, check_chain, record_hash

REFUSED = "Nothing was written: a folder ledger writes only in the folder it is bound to"


def made_ledger(runner: CliRunner, tmp_path: Path) -> tuple[Path, Path]:
    """A ledger with a CP932 register assigned, made through the CLI; (ledger, assigned)."""
    ledger = tmp_path / "ledger"
    cli_ok(runner, "ledger", "init", ledger, "-m", MUNICIPALITY)
    register = write_cp932(tmp_path / "register.csv", register_rows())
    assigned = tmp_path / "assigned.csv"
    cli_ok(runner, "assign", register, "-l", ledger, "-o", assigned)
    return ledger, assigned


def arrivals(tmp_path: Path, start: int = 900_000) -> Path:
    """Ten new arrivals, none of them in the ledger yet."""
    return write_export(tmp_path / f"arrivals-{start}.csv", 10, start=start)


def copy_by_hand(source: Path, target: Path, how: str) -> None:
    if how == "copytree":
        shutil.copytree(source, target, copy_function=shutil.copy2, symlinks=True)
    else:
        subprocess.run(["cp", "-a", str(source), str(target)], check=True)


def log_of(runner: CliRunner, ledger: Path) -> dict[str, Any]:
    return json.loads(cli_ok(runner, "ledger", "log", "-l", ledger, "--json"))


@pytest.mark.parametrize("how", ["copytree", "cp -a"])
def test_a_copy_made_by_hand_refuses_writes_and_the_original_goes_on(
    runner: CliRunner, tmp_path: Path, how: str
) -> None:
    ledger, _ = made_ledger(runner, tmp_path)
    copy = tmp_path / "copy"
    copy_by_hand(ledger, copy, how)
    before = folder_bytes(copy)
    new = arrivals(tmp_path)

    code, output = run_cli(runner, "assign", new, "-l", copy, "-o", tmp_path / "on-copy.csv")
    assert code == 2, output
    assert f"{copy} is a copy, made by hand, of the ledger at {ledger}" in output
    assert REFUSED in output
    assert f"Run this against {ledger}" in output and "`rrnet ledger copy`" in output
    assert "Traceback" not in output
    assert not (tmp_path / "on-copy.csv").exists()
    assert folder_bytes(copy) == before

    # The original assigns the same arrivals: each of them has one code, in one ledger.
    cli_ok(runner, "assign", new, "-l", ledger, "-o", tmp_path / "on-original.csv")
    cli_ok(runner, "verify", tmp_path / "on-original.csv", "-l", ledger)
    # The refusal is the ledger's own, whatever calls it (not only the command line).
    with (
        pytest.raises(LedgerError, match="is a copy, made by hand"),
        Ledger.open(copy).transaction(),
    ):
        pass
    assert folder_bytes(copy) == before


def test_every_command_that_writes_is_refused_on_a_copy(runner: CliRunner, tmp_path: Path) -> None:
    ledger, assigned = made_ledger(runner, tmp_path)
    copy = tmp_path / "copy"
    copy_by_hand(ledger, copy, "cp -a")
    before = folder_bytes(copy)
    codes = [f"{i:010d}" + rcode.calc_check_digit(f"{i:010d}") for i in range(5000, 5010)]
    (tmp_path / "codes.txt").write_text("\n".join(codes) + "\n", encoding="utf-8")
    profile = profile_for(MUNICIPALITY, tmp_path)
    writes = [
        ("assign", arrivals(tmp_path), "-o", tmp_path / "out.csv"),
        ("change", "--resident", "100001", "--id-document", "passport"),
        ("ledger", "import", tmp_path / "codes.txt"),
        ("ledger", "designate", tmp_path / "codes.txt"),
        ("ledger", "pool-mode", "off"),
        ("notify", assigned, "--profile", profile, "-o", tmp_path / "sheets"),
    ]
    for command in writes:
        code, output = run_cli(runner, *command, "-l", copy)
        assert code == 2, (command, output)
        assert REFUSED in output, (command, output)
        assert folder_bytes(copy) == before, command
    assert not (tmp_path / "out.csv").exists()
    assert not (tmp_path / "sheets").exists() or not any((tmp_path / "sheets").iterdir())


def test_reads_of_a_copy_work_and_warn(runner: CliRunner, tmp_path: Path) -> None:
    ledger, assigned = made_ledger(runner, tmp_path)
    copy = tmp_path / "copy"
    copy_by_hand(ledger, copy, "copytree")
    for command in (
        ("ledger", "stats"),
        ("ledger", "log"),
        ("ledger", "notices"),
        ("verify", assigned),
    ):
        code, output = run_cli(runner, *command, "-l", copy)
        assert code == 0, (command, output)
        assert f"warning: The ledger folder {copy} is a copy, made by hand" in output, command
        assert f"writing here is refused (the ledger is at {ledger})" in output, command
    # The original itself reads without a warning.
    assert "warning" not in cli_ok(runner, "ledger", "stats", "-l", ledger)


def test_a_moved_ledger_is_refused_until_relocated(runner: CliRunner, tmp_path: Path) -> None:
    ledger, assigned = made_ledger(runner, tmp_path)
    moved = tmp_path / "elsewhere" / "ledger"
    moved.parent.mkdir()
    subprocess.run(["mv", str(ledger), str(moved)], check=True)
    new = arrivals(tmp_path)

    code, output = run_cli(runner, "assign", new, "-l", moved, "-o", tmp_path / "out.csv")
    assert code == 2, output
    assert f"{moved} was moved by hand from {ledger}." in output
    assert f"run `rrnet ledger relocate --ledger {moved}` once" in output

    relocated = cli_ok(runner, "ledger", "relocate", "-l", moved, "--operator", "sato")
    assert "This folder is now the ledger" in relocated
    assert "must be retired" in relocated
    last = log_of(runner, moved)["transactions"][-1]
    assert last["command"][:3] == ["rrnet", "ledger", "relocate"]
    assert last["operator"] == "sato"
    assert last["place"]["path"] == os.path.realpath(moved)
    assert last["counts"] == {} and last["segments"] == []
    assert "bound to" in cli_ok(runner, "ledger", "log", "-l", moved)  # path folded in the table

    cli_ok(runner, "assign", new, "-l", moved, "-o", tmp_path / "out.csv")
    cli_ok(runner, "verify", assigned, tmp_path / "out.csv", "-l", moved)
    # Written as version 6: an rrnet from before would take the relocation for damage.
    assert json.loads((moved / "manifest.json").read_text())["version"] == 6
    # A second relocate has nothing to do and records nothing.
    txn = log_of(runner, moved)["transactions"][-1]["txn"]
    assert "at its place already" in cli_ok(runner, "ledger", "relocate", "-l", moved)
    assert log_of(runner, moved)["transactions"][-1]["txn"] == txn


def test_a_backup_restored_is_refused_until_relocated(runner: CliRunner, tmp_path: Path) -> None:
    ledger, _ = made_ledger(runner, tmp_path)
    backup = tmp_path / "backup.tar"
    with tarfile.open(backup, "w") as tar:
        tar.add(ledger, arcname="ledger")
    cli_ok(runner, "assign", arrivals(tmp_path, 800_000), "-l", ledger, "-o", tmp_path / "a.csv")

    # Restored beside the original, which is still there: a copy.
    restored = tmp_path / "restored"
    restored.mkdir()
    with tarfile.open(backup) as tar:
        tar.extractall(restored, filter="tar")
    code, output = run_cli(
        runner, "assign", arrivals(tmp_path), "-l", restored / "ledger", "-o", tmp_path / "b.csv"
    )
    assert code == 2 and f"of the ledger at {ledger}, which is still there" in output, output

    # Restored where the ledger was (its folder gets the same inode number on ext4).
    shutil.rmtree(ledger)
    with tarfile.open(backup) as tar:
        tar.extractall(tmp_path, filter="tar")
    new = arrivals(tmp_path)
    code, output = run_cli(runner, "assign", new, "-l", ledger, "-o", tmp_path / "b.csv")
    assert code == 2, output
    assert f"{ledger} is not the folder the ledger was bound to: it was replaced" in output
    assert "bring in the codes assigned since the backup was made" in output
    cli_ok(runner, "ledger", "relocate", "-l", ledger)
    cli_ok(runner, "assign", new, "-l", ledger, "-o", tmp_path / "b.csv")
    # The copy restored beside it now is a copy of a ledger that is no longer where it was.
    code, output = run_cli(runner, "ledger", "stats", "-l", restored / "ledger")
    assert code == 0 and "or a restored backup of the ledger that was at" in output, output


def test_relocating_a_copy_while_the_original_works_is_refused_unless_it_is_closed(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Two folders that both accept writes give one resident two codes: relocate of a
    hand copy refuses while the original is open, and --close-original closes it."""
    ledger, _ = made_ledger(runner, tmp_path)
    copy = tmp_path / "copy"
    copy_by_hand(ledger, copy, "cp -a")
    original_before, copy_before = folder_bytes(ledger), folder_bytes(copy)
    code, output = run_cli(runner, "ledger", "relocate", "-l", copy)
    assert code == 2, output
    text = " ".join(output.split())
    assert f"{ledger} still holds this ledger and accepts writes" in text
    assert f"rrnet ledger relocate --ledger {copy} --close-original" in text
    assert "Nothing was changed." in text
    assert folder_bytes(ledger) == original_before and folder_bytes(copy) == copy_before

    output = cli_ok(runner, "ledger", "relocate", "-l", copy, "--close-original")
    assert f"{ledger} is closed" in " ".join(output.split())
    assert log_of(runner, copy)["transactions"][-1]["place"]["path"] == os.path.realpath(copy)
    assert log_of(runner, ledger)["transactions"][-1]["moved_to"]["ledger"] == str(copy)
    # The same arrivals on both: the original refuses, so nobody gets a second code.
    new = arrivals(tmp_path)
    code, output = run_cli(runner, "assign", new, "-l", ledger, "-o", tmp_path / "old.csv")
    assert code == 2 and f"was moved to {copy}" in " ".join(output.split()), output
    cli_ok(runner, "assign", new, "-l", copy, "-o", tmp_path / "new.csv")
    cli_ok(runner, "verify", tmp_path / "new.csv", "-l", copy)  # exit 0: no violation
    # The closed original still reads.
    assert cli_ok(runner, "ledger", "stats", "-l", ledger)
    result = json.loads(cli_ok(runner, "ledger", "relocate", "-l", copy, "--json"))
    assert result["relocated"] is False  # done already


def test_a_symbolic_link_to_the_ledger_is_the_ledger(runner: CliRunner, tmp_path: Path) -> None:
    ledger, _ = made_ledger(runner, tmp_path)
    link = tmp_path / "current"
    link.symlink_to(ledger, target_is_directory=True)
    output = cli_ok(runner, "assign", arrivals(tmp_path), "-l", link, "-o", tmp_path / "out.csv")
    assert "warning" not in output
    assert "warning" not in cli_ok(runner, "ledger", "stats", "-l", link)
    assert "at its place already" in cli_ok(runner, "ledger", "relocate", "-l", link)


def test_a_ledger_copy_is_bound_to_its_own_folder(runner: CliRunner, tmp_path: Path) -> None:
    ledger, _ = made_ledger(runner, tmp_path)
    new = tmp_path / "new"
    cli_ok(runner, "ledger", "copy", ledger, new)
    output = cli_ok(runner, "assign", arrivals(tmp_path), "-l", new, "-o", tmp_path / "out.csv")
    assert "warning" not in output
    places = [r["place"] for r in log_of(runner, new)["transactions"] if "place" in r]
    assert places[-1]["path"] == os.path.realpath(new)
    assert places[-1]["ledger"] != places[0]["ledger"]  # a new ledger, with an id of its own
    # ... and a copy of the copy made by hand is refused like any other.
    copy_by_hand(new, tmp_path / "hand", "copytree")
    code, output = run_cli(
        runner, "assign", arrivals(tmp_path, 1), "-l", tmp_path / "hand", "-o", tmp_path / "x.csv"
    )
    assert code == 2 and f"of the ledger at {new}" in output, output


def unbind(ledger: Path) -> None:
    """Make ``ledger`` look as a ledger made before the binding: no place in its audit
    records (each resealed and relinked) and no place mark."""
    path = ledger / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    prev = ""
    for record in data[TRANSACTIONS]:
        record.pop("place", None)
        record["prev"] = prev
        record["hash"] = prev = record_hash(record)
    path.write_text(json.dumps(data), encoding="utf-8")
    (ledger / "place").unlink()
    assert check_chain(data).intact


def test_a_ledger_from_before_is_bound_on_its_first_write(
    runner: CliRunner, tmp_path: Path
) -> None:
    ledger, assigned = made_ledger(runner, tmp_path)
    unbind(ledger)
    # It reads and verifies as before, without a warning; a hand copy of it cannot be told
    # from it yet.
    assert "warning" not in cli_ok(runner, "verify", assigned, "-l", ledger)
    copy_by_hand(ledger, tmp_path / "early-copy", "cp -a")

    cli_ok(runner, "assign", arrivals(tmp_path), "-l", ledger, "-o", tmp_path / "out.csv")
    last = log_of(runner, ledger)["transactions"][-1]
    assert last["command"][:2] == ["rrnet", "assign"]
    assert last["place"]["path"] == os.path.realpath(ledger)
    assert (ledger / "place").is_file()
    cli_ok(runner, "verify", assigned, tmp_path / "out.csv", "-l", ledger)

    # From then on a copy is refused.
    copy_by_hand(ledger, tmp_path / "copy", "copytree")
    code, output = run_cli(
        runner, "assign", arrivals(tmp_path, 1), "-l", tmp_path / "copy", "-o", tmp_path / "x.csv"
    )
    assert code == 2 and REFUSED in output, output

    # `ledger relocate` binds one too, as its own transaction.
    early = tmp_path / "early-copy"
    cli_ok(runner, "ledger", "relocate", "-l", early)
    last = log_of(runner, early)["transactions"][-1]
    assert last["place"]["path"] == os.path.realpath(early) and last["segments"] == []
    cli_ok(runner, "verify", assigned, "-l", early)


@pytest.mark.parametrize("failpoint", ["before-manifest-replace", "after-manifest-replace"])
def test_relocate_killed_leaves_the_ledger_before_or_after(
    runner: CliRunner, tmp_path: Path, failpoint: str
) -> None:
    ledger, assigned = made_ledger(runner, tmp_path)
    moved = tmp_path / "moved"
    ledger.rename(moved)
    crashed = rrnet("ledger", "relocate", "-l", moved, env={"RRNET_FAILPOINT": failpoint})
    assert crashed.returncode == -signal.SIGKILL
    committed = failpoint == "after-manifest-replace"
    code, output = run_cli(
        runner, "assign", arrivals(tmp_path), "-l", moved, "-o", tmp_path / "o.csv"
    )
    assert (code == 0) is committed, output
    if not committed:
        cli_ok(runner, "ledger", "relocate", "-l", moved)
        cli_ok(runner, "assign", arrivals(tmp_path), "-l", moved, "-o", tmp_path / "o.csv")
    cli_ok(runner, "verify", assigned, tmp_path / "o.csv", "-l", moved)
    assert not list(moved.glob(".place.*"))


def test_relocate_refuses_a_database_and_a_closed_ledger(runner: CliRunner, tmp_path: Path) -> None:
    ledger, _ = made_ledger(runner, tmp_path)
    code, output = run_cli(runner, "ledger", "relocate", "-l", "postgresql://localhost/nothing")
    assert code == 2 and "is for a folder ledger" in output, output
    cli_ok(runner, "ledger", "copy", ledger, tmp_path / "new", "--move")
    closed = tmp_path / "closed"
    ledger.rename(closed)
    code, output = run_cli(runner, "ledger", "relocate", "-l", closed)
    assert code == 2 and "was moved to" in output and "is closed" in output, output
