"""Benchmark: drawing 1M codes from a 10M-code designated pool vs drawing 1M freely.

Builds, in one run, two ledgers of the same size: one with 10,000,000 codes in
use (``rrnet ledger import``) and one with a designated pool of 10,000,000 codes
(``rrnet ledger designate``), and a third whose pool is half used (5,000,000 of
its codes imported as in use elsewhere). Then times, in this process, what
``assign`` does to get its new codes: ``assign.draw_codes`` for 1,000,000 codes
from the OS CSPRNG, freely against the 10M used codes and from the pool (the
pool's free codes computed, positions drawn, codes shuffled), best of
``--repeat`` runs each. Loading each ledger is timed apart.

    python benchmarks/bench_pool.py                         # 1M from 10M
    python benchmarks/bench_pool.py --draw 100000 --codes 1000000
    python benchmarks/bench_pool.py --end-to-end            # also whole `rrnet assign` runs

Target: drawing from the pool as fast as drawing freely (ratio <= 1).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

# The script's own folder is on sys.path: share bench_assign's helpers.
from bench_assign import national_extract, run, scratch_ledger

from rrnet_cli.assign import draw_codes
from rrnet_cli.ledger import Ledger, LedgerState
from rrnet_cli.sample import write_sample


def best_of(repeat: int, work: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return times


def runs(times: list[float]) -> str:
    return f"best {min(times):.3f} s   (runs: {', '.join(f'{t:.3f}' for t in times)})"


def draw(state: LedgerState, n: int, pool: bool) -> None:
    codes, _ = draw_codes(
        n,
        used=state.codes,
        taken=np.empty(0, np.uint64),
        random_bytes=os.urandom,
        pool=state.pool_left() if pool else None,  # what free_pool() answers
    )
    assert len(codes) == n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draw", type=int, default=1_000_000, help="codes to draw")
    parser.add_argument("--codes", type=int, default=10_000_000, help="pool and ledger size")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each; best is kept")
    parser.add_argument(
        "--end-to-end",
        action="store_true",
        help="also time whole `rrnet assign` runs on a --draw-row export, free and --pool",
    )
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rrnet-bench-pool-"))
    work.mkdir(parents=True, exist_ok=True)
    rrnet = [sys.executable, "-m", "rrnet_cli"]

    extract, pool_file, half = work / "in_use.txt", work / "pool.txt", work / "half.txt"
    started = time.perf_counter()
    national_extract(extract, args.codes, seed=2)
    national_extract(pool_file, args.codes, seed=3)
    # Lines are 12 bytes (11 digits and a newline): the first half of the pool file.
    half.write_bytes(pool_file.read_bytes()[: (args.codes // 2) * 12])
    print(f"inputs: two files of {args.codes:,} codes ({time.perf_counter() - started:.1f} s)")

    free_ledger, pool_ledger, half_ledger = work / "free", work / "pool", work / "half"
    for path in (free_ledger, pool_ledger, half_ledger):
        shutil.rmtree(path, ignore_errors=True)
        run([*rrnet, "ledger", "init", str(path), "--municipality", "139998"])
    secs, rss, _ = run([*rrnet, "ledger", "import", str(extract), "-l", str(free_ledger)])
    print(f"ledger import    {args.codes:,} codes: {secs:.1f} s, peak RSS {rss:,.0f} MB")
    secs, rss, _ = run([*rrnet, "ledger", "designate", str(pool_file), "-l", str(pool_ledger)])
    print(f"ledger designate {args.codes:,} codes: {secs:.1f} s, peak RSS {rss:,.0f} MB")
    run([*rrnet, "ledger", "designate", str(pool_file), "-l", str(half_ledger)])
    run([*rrnet, "ledger", "import", str(half), "-l", str(half_ledger)])

    states = {}
    for name, path in (("free", free_ledger), ("pool", pool_ledger), ("half", half_ledger)):
        started = time.perf_counter()
        states[name] = Ledger.open(path).snapshot()
        print(f"load the {name} ledger: {time.perf_counter() - started:.3f} s")
    free = best_of(args.repeat, lambda: draw(states["free"], args.draw, pool=False))
    pooled = best_of(args.repeat, lambda: draw(states["pool"], args.draw, pool=True))
    half_used = best_of(args.repeat, lambda: draw(states["half"], args.draw, pool=True))
    n, m = f"{args.draw:,}", f"{args.codes:,}"
    print(f"draw {n} freely against {m} used codes:      {runs(free)}")
    print(f"draw {n} from a pool of {m} codes (unused):  {runs(pooled)}")
    print(f"draw {n} from a pool of {m}, half used:      {runs(half_used)}")
    print(f"ratio pool/free: {min(pooled) / min(free):.2f}  (target <= 1.0)")
    print(f"ratio half-used pool/free: {min(half_used) / min(free):.2f}")

    if args.end_to_end:
        export = work / "export.csv"
        write_sample(export, args.draw, seed=1, headers="en", encoding="utf-8")
        whole = {}
        for label, ledger, extra in (
            ("free", free_ledger, []),
            ("pool", pool_ledger, ["--pool"]),
        ):
            times = []
            for i in range(min(args.repeat, 3)):
                copy = work / f"{label}-{i}"
                scratch_ledger(ledger, copy, rrnet)
                out = work / f"{label}-{i}.parquet"
                command = [
                    *rrnet,
                    "assign",
                    str(export),
                    "-l",
                    str(copy),
                    "-o",
                    str(out),
                    "--overwrite",
                ]
                secs, _, _ = run(command + extra)
                times.append(secs)
                shutil.rmtree(copy)
            whole[label] = times
            print(f"rrnet assign {args.draw:,} rows, {label:4} (whole process): {runs(times)}")
        print(f"ratio assign --pool / assign: {min(whole['pool']) / min(whole['free']):.2f}")
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
