"""Crash campaign at length: SIGKILL assign/import at random instants, then check.

    python benchmarks/crash_campaign.py --trials 200
    python benchmarks/crash_campaign.py --trials 200 --backend postgres

Prints the tally (kills before and after commit, outputs present, residents,
distinct codes, violations). Exit 1 if anything broke. The CI test runs the same
harness with 25 trials on each backend (tests/reliability/). ``--backend
postgres`` starts a throwaway PostgreSQL server (tests/pgserver.py; needs the
server programs installed) and runs the campaign on a ledger there, over TCP.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reliability"))

from harness import run_campaign  # the harness lives with the tests (it puts tests/ on the path)

from backends import LedgerBackend, folder_backend, postgres_backend  # isort: skip
from helpers import SAMPLE_MUNICIPALITY  # isort: skip
from pgserver import running_server  # isort: skip


@contextlib.contextmanager
def ledger_on(kind: str, work: Path) -> Iterator[LedgerBackend]:
    if kind == "folder":
        yield folder_backend(work / "ledger", SAMPLE_MUNICIPALITY)
        return
    with running_server() as server:
        yield postgres_backend(server, SAMPLE_MUNICIPALITY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20130708)
    parser.add_argument("--backend", choices=["folder", "postgres"], default="folder")
    args = parser.parse_args()
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="rrnet-crash-") as work,
        ledger_on(args.backend, Path(work)) as ledger,
    ):
        tally = run_campaign(ledger, Path(work), args.trials, seed=args.seed)
    print(f"backend: {args.backend}")
    print(tally.line())
    print(f"time: {time.perf_counter() - started:.0f} s")
    for violation in tally.violations[:20]:
        print("VIOLATION:", violation)
    sys.exit(1 if tally.violations else 0)


if __name__ == "__main__":
    main()
