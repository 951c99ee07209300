"""Benchmark: the packed used-code set (rrnet_cli/ledger/packed.py) at national scale.

Builds a set of random code bodies (default 100 million, as the national
ledger holds), writes it packed in one streaming pass, and prints:

- bytes a code on disk (target of the ledger-index work: <= 1.2);
- the write's time and the process's peak memory (the input array itself,
  8 bytes a code, is part of it: it stands for the sorted stream a merge reads);
- probes from a memory-mapped file: 50,000 and 1,000,000 codes, half of them
  members, against ``np.searchsorted`` on the whole sorted array in memory (what
  the folder ledger does today after loading every code);
- decoding every member (what verify and copy stream through).

Each probe is run ``--repeat`` times and the best is kept (a shared machine).

    python benchmarks/bench_packed.py                    # 100M codes
    python benchmarks/bench_packed.py --codes 10000000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from rrnet_cli.ledger.packed import BODIES, PackedCodes, write_packed


def best(repeat: int, run) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", type=int, default=100_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261208)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    values = np.unique(rng.integers(0, BODIES, args.codes, dtype=np.uint64))
    with tempfile.TemporaryDirectory(dir=args.workdir) as work:
        path = Path(work) / "codes.packed"
        started = time.perf_counter()
        chunks = (values[i : i + (1 << 22)] for i in range(0, len(values), 1 << 22))
        write_packed(path, chunks, len(values))
        write_seconds = time.perf_counter() - started
        size = path.stat().st_size
        print(f"codes                 {len(values):>14,}")
        print(f"on disk               {size / 1e6:>14,.1f} MB  ({size / len(values):.3f} B/code)")
        print(f"write                 {write_seconds:>14.2f} s")
        print(
            f"peak RSS so far       {peak_mb():>14,.0f} MB"
            f" (the input array alone is {values.nbytes / 1e6:,.0f} MB)"
        )
        packed = PackedCodes.open(path)
        for count in (50_000, 1_000_000):
            half = count // 2
            probes = np.concatenate(
                [
                    values[rng.integers(0, len(values), half)],
                    rng.integers(0, BODIES, half, np.uint64),
                ]
            )
            rng.shuffle(probes)
            expected = np.isin(probes, values, kind="sort")
            assert np.array_equal(packed.contains(probes), expected)
            mapped = best(args.repeat, lambda p=probes: packed.contains(p))

            def in_memory(p: np.ndarray = probes) -> None:
                ordered = np.sort(p)
                at = np.searchsorted(values, ordered)
                at[at == len(values)] = len(values) - 1
                _ = values[at] == ordered

            memory = best(args.repeat, in_memory)
            print(
                f"probe {count:>9,}       {mapped:>14.3f} s packed, mapped;"
                f" {memory:.3f} s sorted array in memory"
            )
        started = time.perf_counter()
        decoded = sum(len(chunk) for chunk in packed.chunks())
        assert decoded == len(values)
        print(f"decode every code     {time.perf_counter() - started:>14.2f} s")
        print(f"peak RSS              {peak_mb():>14,.0f} MB")


if __name__ == "__main__":
    main()
