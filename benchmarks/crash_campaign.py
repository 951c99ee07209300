"""Crash campaign at length: SIGKILL assign/import at random instants, then check.

    python benchmarks/crash_campaign.py --trials 200

Prints the tally (kills before and after commit, outputs present, residents,
distinct codes, violations). Exit 1 if anything broke. The CI test runs the same
harness with 25 trials (tests/reliability/).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reliability"))

from harness import run_campaign  # the harness lives with the tests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20130708)
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rrnet-crash-") as work:
        tally = run_campaign(Path(work), args.trials, seed=args.seed)
    print(tally.line())
    print(f"time: {time.perf_counter() - started:.0f} s")
    for violation in tally.violations[:20]:
        print("VIOLATION:", violation)
    sys.exit(1 if tally.violations else 0)


if __name__ == "__main__":
    main()
