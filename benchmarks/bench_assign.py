"""Benchmark: `rrnet assign` on 1M residents against a ledger of 100M codes.

Compares, as whole processes in the same run, `rrnet assign` with the floor of
the same I/O — Polars reading the same CSV and writing it as Parquet — and
prints wall times, their ratio and each process's peak memory (RSS). Also times
`rrnet ledger import` of the 100M-code national extract that builds the
ledger, and `rrnet verify` of the result.

    python benchmarks/bench_assign.py                      # 1M rows, 100M codes
    python benchmarks/bench_assign.py --rows 100000 --ledger-codes 10000000
    python benchmarks/bench_assign.py --ledger postgresql://user@host/emptydb

With ``--ledger URL`` (an empty PostgreSQL database; the password from
PGPASSFILE or the environment, never the command line) the same extract is
imported there too (``rrnet ledger import``, COPY) and the same export
assigned against it in the same run, so the two backends are timed side by
side. For the database it also prints the server's memory (the peak of the
summed PSS of the local ``postgres`` processes, when the server runs on this
machine), the database's size on disk, and where an assign's time goes (from
one more run with each step timed: classification queries, COPY, the
conflict insert). Between runs the assign's records are deleted again, so
each run meets the same ledger.

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
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def scratch_ledger(master: Path, scratch: Path, rrnet: list[str]) -> None:
    """A scratch copy of ``master`` that accepts writes, ``master`` left as it was.

    A copy made by hand refuses writes, and ``ledger relocate`` refuses it while
    the original is in place and open: while the copy is bound, the master is
    renamed aside (a rename keeps it bound to its folder once it is back).
    """
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.copytree(master, scratch)
    aside = master.with_name(master.name + ".aside")
    master.rename(aside)
    try:
        *_, code = run([*rrnet, "ledger", "relocate", "--ledger", str(scratch)])
        if code:
            raise SystemExit(f"ledger relocate of the scratch ledger {scratch} failed")
    finally:
        aside.rename(master)


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


def server_pss_mb() -> float:
    """The summed PSS (MB) of this machine's ``postgres`` processes (0 if none visible).

    PSS shares each shared page (shared_buffers) among the processes mapping
    it, so the sum is the server's real footprint, not a multiple of it.
    """
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            for line in (entry / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


@contextlib.contextmanager
def server_memory_peak() -> Iterator[list[float]]:
    """Sample ``server_pss_mb`` every 50 ms meanwhile; the peak ends up in the list."""
    peak = [server_pss_mb()]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server_pss_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def sql(url: str, query: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query.encode())
        return cursor.fetchall() if cursor.description else []


def reset_pg_ledger(url: str) -> None:
    """Delete what assign runs recorded (transactions after the import), then VACUUM."""
    sql(url, "DELETE FROM rrnet.code_history WHERE txn > 1")
    sql(url, "DELETE FROM rrnet.codes WHERE txn > 1")
    sql(url, "DELETE FROM rrnet.transactions WHERE id > 1")
    sql(url, "VACUUM ANALYZE rrnet.codes")
    sql(url, "VACUUM ANALYZE rrnet.code_history")


def timed_assign(export: str, ledger: str, output: str) -> None:
    """One assign in this process with every step timed, and the database's COPYs and
    queries timed apart; prints the times as JSON (a child of the benchmark)."""
    from rrnet_cli.assign import assign_register
    from rrnet_cli.ledger import open_store
    from rrnet_cli.progress import Steps

    times: dict[str, float] = {}

    class TimedSteps(Steps):
        @contextlib.contextmanager
        def step(
            self, description: str, total: float | None = None
        ) -> Iterator[Callable[[float], None]]:
            started = time.perf_counter()
            try:
                yield lambda _n: None
            finally:
                times[description] = times.get(description, 0) + time.perf_counter() - started

    def timing(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                times[name] = times.get(name, 0) + time.perf_counter() - started

        return timed

    from rrnet_cli.ledger import is_database_location

    if is_database_location(ledger):
        from rrnet_cli.ledger import postgres

        view = postgres.PostgresView
        # Benchmark instrumentation only: each COPY in and each query's COPY out.
        view._fill = timing("  db: COPY into temporary tables", view._fill)  # type: ignore[method-assign]
        view._frame = timing("  db: queries (incl. the conflict insert)", view._frame)  # type: ignore[method-assign]
    started = time.perf_counter()
    assign_register(
        Path(export),
        ledger=open_store(ledger),
        output=Path(output),
        steps=TimedSteps(),
        overwrite=True,
    )
    times["total (in process)"] = time.perf_counter() - started
    print(json.dumps(times))


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
    parser.add_argument(
        "--ledger",
        metavar="URL",
        help="also time a PostgreSQL ledger in this empty database (postgresql://...)",
    )
    parser.add_argument("--make", nargs=3, metavar=("KIND", "PATH", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.make:  # a child that builds an input, so the parent stays small
        kind, path, n = args.make
        if kind == "timed-assign":
            timed_assign(path, os.environ["RRNET_BENCH_LEDGER"], n)
        elif kind == "export":
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
        scratch_ledger(base, ledger, rrnet)
        out = work / f"assigned-{i}.parquet"
        assigns.append(
            run(
                [
                    *rrnet,
                    "assign",
                    str(export),
                    "--ledger",
                    str(ledger),
                    "-o",
                    str(out),
                    "--overwrite",
                ]
            )
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
    if args.ledger:
        bench_postgres(args.ledger, rrnet, export, extract, work, args.repeat, assign[0])
    if args.workdir is None:
        shutil.rmtree(work)


def bench_postgres(
    url: str, rrnet: list[str], export: Path, extract: Path, work: Path, repeat: int, folder: float
) -> None:
    """Import and assign on the PostgreSQL ledger at ``url``; print its figures."""
    from rrnet_cli.ledger import without_password

    print(f"PostgreSQL ledger: {without_password(url)}")
    run([*rrnet, "ledger", "init", url, "--municipality", "139998"])
    with server_memory_peak() as peak:
        secs, rss, _ = run([*rrnet, "ledger", "import", str(extract), "--ledger", url])
    print(
        f"pg ledger import: {secs:.1f} s, client peak RSS {rss:,.0f} MB, "
        f"server peak PSS {peak[0]:,.0f} MB"
    )
    sql(url, "VACUUM ANALYZE rrnet.codes")
    size = sql(url, "SELECT pg_database_size(current_database())")[0][0]
    print(f"pg database size on disk after import: {size / 1e6:,.0f} MB")
    runs = []
    for i in range(repeat):
        with server_memory_peak() as peak:
            secs, rss, _ = run(
                [
                    *rrnet,
                    "assign",
                    str(export),
                    "--ledger",
                    url,
                    "-o",
                    str(work / f"pg-{i}.parquet"),
                    "--overwrite",
                ]
            )
        runs.append((secs, rss, peak[0]))
        reset_pg_ledger(url)
    best = min(runs)
    print(
        f"pg assign (rrnet assign, whole process): {best[0]:.2f} s, client peak RSS "
        f"{best[1]:,.0f} MB, server peak PSS {max(r[2] for r in runs):,.0f} MB   "
        f"(runs: {', '.join(f'{r[0]:.2f}' for r in runs)})"
    )
    print(f"ratio pg assign / folder assign: {best[0] / folder:.2f}  (goal <= 4)")
    child = subprocess.run(
        [sys.executable, __file__, "--make", "timed-assign", str(export), str(work / "t.parquet")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "RRNET_BENCH_LEDGER": url},
    )
    reset_pg_ledger(url)
    print("where a pg assign's time goes (one more run, in process):")
    for step, seconds in json.loads(child.stdout.strip().splitlines()[-1]).items():
        print(f"  {step:<45} {seconds:7.2f} s")


if __name__ == "__main__":
    main()
