"""Crash campaign: kill `rrnet assign` / `rrnet ledger import` at random instants.

Used by ``tests/reliability/test_crash_campaign.py`` (a few dozen trials in CI)
and ``benchmarks/crash_campaign.py`` (hundreds, printing the tally).

The campaign runs on one ledger of either backend (``backends.LedgerBackend``:
a folder ledger, or a PostgreSQL ledger reached over loopback TCP). Every
trial starts a real process on a real export (or code list), sleeps a random
time, sends SIGKILL, waits until a PostgreSQL server has ended the killed
client's session (``settle``), and then checks, with the library (fast, no
extra processes):
- the ledger moved by zero or one transaction, never half of one;
- the ledger's integrity check passes;
- the output file is either absent or complete and verifiable.
At the end every export is assigned to completion and all outputs are verified
together against the ledger: no code was ever given to two residents.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from rrnet_cli import code as rcode
from rrnet_cli.verify import verify

# benchmarks/crash_campaign.py puts only this folder on sys.path; helpers.py is in tests/.
_TESTS = str(Path(__file__).resolve().parent.parent)
if _TESTS not in sys.path:
    sys.path.append(_TESTS)

from backends import LedgerBackend  # noqa: E402
from helpers import (  # noqa: E402
    assign_in_subprocess,
    start_assign_in_subprocess,
    start_rrnet,
    write_export,
)


@dataclass
class Tally:
    """What the campaign did and saw."""

    trials: int = 0
    kills: int = 0
    finished_before_kill: int = 0
    committed_then_killed: int = 0
    killed_before_commit: int = 0
    outputs_present_after_kill: int = 0
    imports: int = 0
    residents: int = 0
    distinct_codes: int = 0
    codes_verified: int = 0
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"trials {self.trials}, kills {self.kills} "
            f"(before commit {self.killed_before_commit}, after commit "
            f"{self.committed_then_killed}), finished before the kill "
            f"{self.finished_before_kill}, outputs present after a kill "
            f"{self.outputs_present_after_kill}, imports {self.imports}, residents "
            f"{self.residents}, distinct codes {self.distinct_codes}, rows verified "
            f"{self.codes_verified}, violations "
            f"{len(self.violations)}"
        )


def _codes(path: Path, n: int, seed: int) -> Path:
    bodies = np.random.default_rng(seed).integers(0, rcode.BODY_SPACE, n, dtype=np.uint64)
    codes = rcode.codes_to_strings(rcode.codes_from_bodies(bodies)).to_pylist()
    path.write_text("\n".join(codes) + "\n", encoding="ascii")
    return path


def run_campaign(
    ledger: LedgerBackend,
    work: Path,
    trials: int,
    *,
    seed: int = 20130708,
    rows: int = 20_000,
) -> Tally:
    """Run ``trials`` kill trials on the empty ``ledger``, files in ``work``; the tally.

    Kill times are drawn up to 1.2 times how long an uninterrupted run takes on
    this machine (timed first, on a separate ledger of the same backend), so
    kills land all through a run: while reading, drawing, writing and committing.
    """
    rng = random.Random(seed)
    tally = Tally()
    probe = ledger.another("timing-ledger")
    timing_export = write_export(work / "timing.csv", rows)
    started = time.perf_counter()
    assign_in_subprocess(timing_export, probe.location, work / "timing-out.csv", check=True)
    max_delay = 1.2 * (time.perf_counter() - started)
    exports: list[Path] = []
    for trial in range(trials):
        tally.trials += 1
        before = ledger.transactions()
        if trial % 5 == 4:  # every fifth trial imports codes in use elsewhere
            source = _codes(work / f"codes{trial}.txt", 200_000, seed + trial)
            proc = start_rrnet("ledger", "import", source, "--ledger", ledger.location)
            out = None
            tally.imports += 1
        else:
            # Half of each export overlaps the previous one: re-runs must keep codes.
            export = write_export(work / f"export{trial}.csv", rows, start=trial * rows // 2)
            exports.append(export)
            out = work / f"out{trial}.csv"
            proc = start_assign_in_subprocess(export, ledger.location, out)
        time.sleep(rng.uniform(0.05, max_delay))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        ledger.settle()
        # Counted by how the process ended: it may finish just as the signal is sent.
        if proc.returncode == -signal.SIGKILL:
            tally.kills += 1
        else:
            tally.finished_before_kill += 1
        after = ledger.transactions()
        if after not in (before, before + 1):
            tally.violations.append(f"trial {trial}: ledger jumped from txn {before} to {after}")
        if proc.returncode == -signal.SIGKILL:
            if after == before + 1:
                tally.committed_then_killed += 1
            else:
                tally.killed_before_commit += 1
        tally.violations += [f"trial {trial}: {v['reason']}" for v in ledger.integrity()]
        if out is not None and out.exists():
            if proc.returncode == -signal.SIGKILL:
                tally.outputs_present_after_kill += 1
            result = verify([out], ledger=ledger.store())
            if not result.ok or result.rows != rows:
                tally.violations.append(f"trial {trial}: output incomplete or failing verify")
    # Finish the job: every export assigned; everything verified together.
    finals = []
    for index, export in enumerate(exports):
        final = work / f"final{index}.csv"
        done = assign_in_subprocess(export, ledger.location, final)
        if done.returncode != 0:
            tally.violations.append(f"re-run of {export.name} failed: {done.stderr[-300:]}")
        finals.append(final)
    result = verify([f for f in finals if f.exists()], ledger=ledger.store())
    tally.violations += [f"final: {v.file} row {v.row}: {v.message}" for v in result.violations]
    tally.codes_verified = result.codes
    residents = pl.concat([pl.read_csv(f, infer_schema=False) for f in finals if f.exists()])
    tally.residents = residents["resident_id"].n_unique()
    tally.distinct_codes = residents["resident_code"].n_unique()
    return tally
