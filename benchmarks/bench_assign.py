"""Benchmark: `rrnet assign` on 1M residents against a ledger of 100M codes.

Compares, as whole processes in the same run, `rrnet assign` with the floor of
the same I/O — Polars reading the same CSV and writing it as Parquet — and
prints wall times, their ratio and each process's peak memory (RSS). Also times
`rrnet ledger import` of the 100M-code national extract that builds the
ledger, and `rrnet verify` of the result.

    python benchmarks/bench_assign.py                      # 1M rows, 100M codes
    python benchmarks/bench_assign.py --rows 100000 --ledger-codes 10000000

Targets: assign / floor <= 1.5, assign peak RSS <= 2.5 GB.
Needs ~4 GB of free disk in --workdir and ~4 GB of RAM for building the extract.

Reading the figures: the floor only parses and writes. `assign` also checks
18 rules on every row, loads and searches 100M used codes (800 MB in memory),
draws and shuffles ~970,000 codes, and commits one ledger transaction. On a
shared virtual machine the system time for first-touch page faults varies run
to run by a second or more, so the script keeps the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from rrnet_cli import code as rcode
from rrnet_cli.sample import write_sample


def _high_water_mb(pid: int) -> float | None:
    """The process's own peak RSS so far (VmHWM), or None once it has exited."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def run(cmd: list[str]) -> tuple[float, float, int]:
    """Run a command; return (seconds, peak RSS in MB, exit code) of that process alone.

    The peak is the process's VmHWM, sampled every 5 ms until it exits. (The
    rusage of a child is no use here: Linux carries the parent's high-water mark
    into a forked child, so every child would look at least as big as this
    script.)
    """
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            mb = _high_water_mb(proc.pid)
            if mb is not None:
                peak = max(peak, mb)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    assert proc.stderr is not None
    errors = proc.stderr.read()
    code = proc.wait()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if code != 0:
        sys.exit(f"{' '.join(cmd)} failed ({code}): {errors.decode()[-2000:]}")
    return seconds, peak, code


def national_extract(path: Path, n: int, seed: int) -> None:
    """Write ``n`` distinct random valid codes, one per line, in chunks."""
    rng = np.random.default_rng(seed)
    # np.unique is pathologically slow at this size on NumPy 2.4: sort and compare
    # neighbours instead.
    bodies = np.sort(rng.integers(0, rcode.BODY_SPACE, int(n * 1.01), dtype=np.uint64))
    keep = np.ones(len(bodies), dtype=bool)
    np.not_equal(bodies[1:], bodies[:-1], out=keep[1:])
    bodies = rng.permutation(bodies[keep][:n])
    with pacsv.CSVWriter(
        path,
        pa.schema([("code", pa.string())]),
        write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"),
    ) as writer:
        for start in range(0, len(bodies), 10_000_000):
            chunk = rcode.codes_to_strings(
                rcode.codes_from_bodies(bodies[start : start + 10_000_000])
            )
            writer.write_table(pa.table({"code": chunk}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ledger-codes", type=int, default=100_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; best is kept")
    parser.add_argument("--make", nargs=3, metavar=("KIND", "PATH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:  # a child that builds an input, so the parent stays small
        kind, path, n = args.make
        if kind == "export":
            write_sample(Path(path), int(n), seed=1, headers="en", encoding="utf-8")
        else:
            national_extract(Path(path), int(n), seed=2)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rrnet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    rrnet = [py, "-m", "rrnet_cli"]

    export = work / "export.csv"
    t = time.perf_counter()
    write_sample(export, args.rows, seed=1, headers="en", encoding="utf-8")
    print(
        f"export: {args.rows:,} rows, {export.stat().st_size / 1e6:,.0f} MB "
        f"(generated in {time.perf_counter() - t:.1f} s)"
    )

    extract = work / "national.txt"
    t = time.perf_counter()
    national_extract(extract, args.ledger_codes, seed=2)
    print(
        f"extract: {args.ledger_codes:,} codes, {extract.stat().st_size / 1e6:,.0f} MB "
        f"(generated in {time.perf_counter() - t:.1f} s)"
    )

    base = work / "ledger-base"
    shutil.rmtree(base, ignore_errors=True)
    run([*rrnet, "ledger", "init", str(base), "--municipality", "139998"])
    secs, rss, _ = run([*rrnet, "ledger", "import", str(extract), "--ledger", str(base)])
    size = sum(p.stat().st_size for p in base.rglob("*") if p.is_file())
    print(
        f"ledger import: {secs:.1f} s, peak RSS {rss:,.0f} MB, ledger on disk {size / 1e6:,.0f} MB"
    )

    floor_cmd = [
        py,
        "-c",
        "import sys, polars as pl; "
        "pl.read_csv(sys.argv[1], infer_schema=False).write_parquet(sys.argv[2])",
        str(export),
        str(work / "floor.parquet"),
    ]
    floors, assigns = [], []
    for i in range(args.repeat):
        floors.append(run(floor_cmd))
        ledger = work / f"ledger-{i}"
        shutil.rmtree(ledger, ignore_errors=True)
        shutil.copytree(base, ledger)
        out = work / f"assigned-{i}.parquet"
        assigns.append(
            run([*rrnet, "assign", str(export), "--ledger", str(ledger), "-o", str(out)])
        )
    floor = min(floors)
    assign = min(assigns)
    secs_v, rss_v, _ = run(
        [*rrnet, "verify", str(work / "assigned-0.parquet"), "--ledger", str(work / "ledger-0")]
    )
    print(
        f"floor  (polars read_csv + write_parquet): {floor[0]:.2f} s, "
        f"peak RSS {floor[1]:,.0f} MB   (runs: {', '.join(f'{f[0]:.2f}' for f in floors)})"
    )
    print(
        f"assign (rrnet assign, whole process):     {assign[0]:.2f} s, "
        f"peak RSS {assign[1]:,.0f} MB   (runs: {', '.join(f'{a[0]:.2f}' for a in assigns)})"
    )
    print(f"ratio assign/floor: {assign[0] / floor[0]:.2f}  (target <= 1.5)")
    print(f"assign peak RSS: {max(a[1] for a in assigns) / 1024:.2f} GB  (target <= 2.5 GB)")
    print(f"verify (output + ledger integrity): {secs_v:.1f} s, peak RSS {rss_v:,.0f} MB")
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
