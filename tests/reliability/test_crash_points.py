"""An assign run crashed at each known point, on each backend: 0 or 1 transaction
applied, never a duplicate code, and running the same command again completes.

Each trial first assigns residents 0..199 (``first.csv``), then runs an export of
residents 100..399 (100 already assigned, 200 new) and crashes it:

- ``kill``: the client is SIGKILLed at a failpoint (``RRNET_FAILPOINT``). The
  folder ledger's commit steps (before the manifest is written, before it
  replaces the old one, after); the PostgreSQL ledger's mid-COPY of the
  export's ids and of the new codes, right before COMMIT and right after it.
- ``server``: the PostgreSQL server crashes (``pg_ctl stop -m immediate``)
  while the run waits at a point (``pause:NAME``), and is started again:
  mid-COPY of the new codes, before COMMIT, after COMMIT.

After the crash: the ledger moved by exactly the transaction the crash
allowed (none before the commit, one after), its integrity check is clean, no
output appeared unless the run finished, and no session holds the writers'
lock. Then the same command is run again: it completes, the two outputs
verified together against the ledger show no code twice and no resident with
two codes, and the ledger holds one transaction for the run, never two.

These trials were ``test_kill_at_each_commit_step`` (tests/test_ledger.py,
folder), ``test_a_client_killed_mid_run_leaves_the_ledger_before_or_after_it``
and ``test_a_server_crash_mid_run_applies_nothing_and_a_rerun_completes``
(tests/test_pg_assign.py, PostgreSQL), now one test. The random-instant
campaign on both backends is test_crash_campaign.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest
from backends import (
    FolderBackend,
    LedgerBackend,
    PostgresBackend,
    advisory_lock_holders,
    assert_no_duplicates,
    sql_one,
)
from helpers import assign_in_subprocess, rrnet_command, write_export

from rrnet_cli.verify import verify

FIRST = 200  # residents 0..199, assigned before the crashed run
CRASHED, OVERLAP = 300, 100  # the crashed run: residents 100..399
NEW = CRASHED - OVERLAP

#: What the server shows of a run waiting at each pause point (pg_stat_activity).
WAITING_AT = {
    "pg-mid-copy:rrnet_new": "state = 'active' AND query LIKE 'COPY \"rrnet_new\"%%'",
    "pg-before-commit": (
        "state = 'idle in transaction' AND query LIKE 'INSERT INTO %%transactions%%'"
    ),
    "pg-after-commit": "state = 'idle' AND query = 'COMMIT'",
}


def trial(kind: str, how: str, point: str, committed: bool, slow: bool = False) -> object:
    marks = [pytest.mark.slow] if slow else []
    return pytest.param(kind, how, point, committed, marks=marks, id=f"{kind}-{how}-{point}")


TRIALS = [
    trial("folder", "kill", "before-manifest-write", False),
    trial("folder", "kill", "before-manifest-replace", False),
    trial("folder", "kill", "after-manifest-replace", True),
    trial("postgres", "kill", "pg-mid-copy:rrnet_ids", False),  # classifying: ids half sent
    trial("postgres", "kill", "pg-mid-copy:rrnet_new", False),  # the new codes half sent
    trial("postgres", "kill", "pg-before-commit", False),  # all inserted, audit too; no COMMIT
    trial("postgres", "kill", "pg-after-commit", True),  # committed; output not yet in place
    # The server crashes with the run's open transaction (6 s pauses: slow).
    trial("postgres", "server", "pg-mid-copy:rrnet_new", False, slow=True),
    trial("postgres", "server", "pg-before-commit", False, slow=True),
    trial("postgres", "server", "pg-after-commit", True, slow=True),
]


def codes_by_resident(path: Path) -> dict[str, str]:
    frame = pl.read_csv(path, infer_schema=False)
    return dict(zip(frame["resident_id"], frame["resident_code"], strict=True))


def kill_client(backend: LedgerBackend, export: Path, out: Path, point: str) -> None:
    crashed = assign_in_subprocess(export, backend.location, out, env={"RRNET_FAILPOINT": point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    backend.settle()  # the server has rolled back (or finished the COMMIT it was sent)
    assert not out.exists(), "the output never appears before the ledger commits"


def crash_server(backend: PostgresBackend, export: Path, out: Path, point: str) -> None:
    """Crash the server while the run waits at ``point``; start it again; the run ends."""
    env = {**os.environ, "RRNET_FAILPOINT": f"pause:{point}", "RRNET_FAILPOINT_PAUSE": "6"}
    process = subprocess.Popen(
        rrnet_command("assign", export, "--ledger", backend.location, "-o", out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    waiting = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rrnet' "
        f"AND datname = current_database() AND {WAITING_AT[point]}"
    )
    try:
        deadline = time.monotonic() + 60
        while not sql_one(backend.location, waiting):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"the run never reached {point}"
            time.sleep(0.05)
        started = time.monotonic()
        backend.server.stop("immediate")  # a crash: no checkpoint, open transactions lost
    finally:
        backend.server.start()
    _, stderr = process.communicate(timeout=120)
    assert time.monotonic() - started < 60
    assert "Traceback" not in stderr and backend.server.password not in stderr
    if point == "pg-after-commit":  # committed before the crash: the run finishes
        assert process.returncode == 0, stderr
        assert len(codes_by_resident(out)) == CRASHED
    else:
        assert process.returncode == 2, stderr
        assert "Lost the connection to the PostgreSQL server" in stderr
        assert not out.exists()


@pytest.mark.parametrize(("backend", "how", "point", "committed"), TRIALS, indirect=["backend"])
def test_a_run_crashed_at_any_point_applies_0_or_1_transaction_and_a_rerun_completes(
    backend: LedgerBackend, tmp_path: Path, how: str, point: str, committed: bool
) -> None:
    first_out = tmp_path / "first.csv"
    first = write_export(tmp_path / "first-export.csv", FIRST)
    assign_in_subprocess(first, backend.location, first_out, check=True)
    export = write_export(tmp_path / "export.csv", CRASHED, start=FIRST - OVERLAP)
    out = tmp_path / "assigned.csv"
    before = backend.transactions()
    assert before == 1

    if how == "kill":
        kill_client(backend, export, out, point)
    else:
        assert isinstance(backend, PostgresBackend)
        crash_server(backend, export, out, point)

    assert backend.transactions() == before + committed, "0 or 1 transaction, as expected"
    assert backend.integrity() == []
    stats = backend.store().stats()
    assert stats["codes_used"] == stats["by_status"]["assigned"] == FIRST + NEW * committed
    if isinstance(backend, PostgresBackend):
        assert advisory_lock_holders(backend.location) == 0, "the server let go of the lock"
        assert_no_duplicates(backend.location)

    # The run may have written its output before the crash (a server lost after the
    # commit): the office runs it again over that file, on purpose.
    rerun = assign_in_subprocess(
        export, backend.location, out, "--json", "--lock-timeout", "10", "--overwrite"
    )
    assert rerun.returncode == 0, rerun.stderr
    figures = json.loads(rerun.stdout)
    expected = (CRASHED, 0) if committed else (OVERLAP, NEW)
    assert (figures["already_assigned"], figures["newly_assigned"]) == expected
    assert backend.transactions() == before + 1, "the crashed run and its rerun: one, not two"
    result = verify([first_out, out], ledger=backend.store())
    assert result.ok, result.violations[:5]
    assert result.codes == FIRST + CRASHED
    earlier, now = codes_by_resident(first_out), codes_by_resident(out)
    assert all(now[r] == code for r, code in earlier.items() if r in now), "codes kept"
    everyone = {**earlier, **now}
    assert len(everyone) == len(set(everyone.values())) == FIRST + NEW, "no code twice"
    if isinstance(backend, PostgresBackend):
        assert_no_duplicates(backend.location)
    if isinstance(backend, FolderBackend):  # no stray segment once a later run has written
        manifest = json.loads((backend.path / "manifest.json").read_text())
        live = {Path(s["file"]).name for s in manifest["segments"]}
        assert {p.name for p in (backend.path / "segments").iterdir()} == live
