"""Benchmark: `rrnet ledger copy` and `rrnet verify --ledger` on a 100M-code ledger.

Builds a folder ledger the way an office would have one before moving to a
shared database: ``rrnet ledger init``, ``rrnet ledger import`` of a national
extract of N codes (default 100M), then ``rrnet assign`` of a register of
``--rows`` residents (default 1M), so the ledger holds resident records too.
Then, as whole processes, against an empty PostgreSQL database:

1. ``rrnet ledger copy FOLDER URL`` (folder into PostgreSQL): wall time, the
   client's peak RSS, the server's peak memory and the database's size on disk;
2. ``rrnet verify --ledger URL`` (the ledger's integrity check alone, no files)
   and ``rrnet verify --ledger FOLDER`` in the same run, and their ratio;
3. ``rrnet ledger copy URL FOLDER2`` (PostgreSQL back into a new folder).

It ends with every figure in one plain table.

    python benchmarks/bench_ledger_ops.py --ledger postgresql://user@host/emptydb
    python benchmarks/bench_ledger_ops.py --ledger-codes 1000000 --rows 20000 \\
        --ledger postgresql://user@host/emptydb

The database must be empty (no schema ``rrnet``); the password comes from
PGPASSFILE or the environment, never the URL. The server's memory is the peak of
the summed PSS of that server's processes (its postmaster and every child), when
it runs on this machine; other PostgreSQL servers on the machine are not
counted. For each step on the database it also prints the megabytes the
database wrote to temporary files (sorts and hashes larger than ``work_mem``
spill there; ``pg_stat_database.temp_bytes``) and the WAL the server wrote
(``pg_current_wal_lsn``, the whole server): both take disk space meanwhile.

Needs about 4 GB of RAM for building the extract and, at 100M codes, ~2 GB in
--workdir and on the server's disk about 15 GB for the database plus, while the
steps run, up to ~15 GB of temporary files and as much WAL as the server keeps
(``max_wal_size``).

Reading the figures: a copy into PostgreSQL streams every record ever made
through one COPY, builds ``codes`` and its indexes on the server and then reads
both ledgers again to compare a content hash, all in one transaction; the
figure is all of that. A verify of a folder reads the Parquet segments into the
client; a verify of a database runs the checks on the server. On a shared
machine times vary run to run: ``--repeat`` runs each verify that many times and
keeps the best.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench_assign import run, server_memory_peak, sql

MUNICIPALITY = "139998"
BENCH_ASSIGN = str(Path(__file__).with_name("bench_assign.py"))


def _tree_pss_mb(root: int) -> float | None:
    """The summed PSS (MB) of process ``root`` and its children, or None if ``root`` is gone."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("PPid:"):
                    children.setdefault(int(line.split()[1]), []).append(int(entry.name))
                    break
        except OSError:
            continue
    total, pending, found = 0, [root], False
    while pending:
        pid = pending.pop()
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    found = True
        except OSError:
            pass
        pending += children.get(pid, [])
    return total / 1024 if found else None


def postmaster_pid(url: str) -> int | None:
    """The pid of the server's postmaster when it runs on this machine (else None).

    A backend's parent is the postmaster; the backend's pid must be visible here
    as a ``postgres`` process for the server to count as local.
    """
    backend = sql(url, "SELECT pg_backend_pid()")[0][0]
    try:
        if Path(f"/proc/{backend}/comm").read_text().strip() != "postgres":
            return None
        for line in Path(f"/proc/{backend}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def server_peak(postmaster: int | None) -> Iterator[list[float]]:
    """Sample the server's PSS every 200 ms meanwhile; the peak ends up in the list.

    With a postmaster pid only that server's processes count; without one, every
    local ``postgres`` process (``bench_assign.server_memory_peak``).
    """
    if postmaster is None:
        with server_memory_peak() as peak:
            yield peak
        return
    peak = [_tree_pss_mb(postmaster) or 0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _tree_pss_mb(postmaster) or 0.0)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def database_mb(url: str) -> float:
    return float(sql(url, "SELECT pg_database_size(current_database())")[0][0]) / 1e6


def server_counters(url: str) -> tuple[float, float]:
    """(MB written to temporary files by this database so far, MB of WAL written so far).

    A backend reports its temporary files when it ends, a moment after its client
    has gone: the short wait lets the last run's be counted.
    """
    time.sleep(1)
    (temp, wal), *_ = sql(
        url,
        "SELECT temp_bytes, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"
        " FROM pg_stat_database WHERE datname = current_database()",
    )
    return float(temp) / 1e6, float(wal) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ledger-codes", type=int, default=100_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each verify; best is kept")
    parser.add_argument(
        "--ledger",
        metavar="URL",
        help="(required) an empty PostgreSQL database (postgresql://...) to copy the ledger into",
    )
    args = parser.parse_args()
    if not args.ledger:
        parser.error("--ledger URL is required (an empty PostgreSQL database)")

    from rrnet_cli.ledger import without_password

    url = args.ledger
    if sql(url, "SELECT 1 FROM pg_namespace WHERE nspname = 'rrnet'"):
        sys.exit(f"{without_password(url)} has a schema rrnet already: give an empty database")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rrnet-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    rrnet = [py, "-m", "rrnet_cli"]
    figures: list[tuple[str, ...]] = []

    def built(kind: str, path: Path, n: int) -> float:
        t = time.perf_counter()
        # bench_assign.py builds the same inputs in a child, so this process stays small.
        subprocess.run([py, BENCH_ASSIGN, "--make", kind, str(path), str(n)], check=True)
        return time.perf_counter() - t

    export, extract = work / "export.csv", work / "national.txt"
    secs = built("export", export, args.rows)
    print(f"export: {args.rows:,} rows, {export.stat().st_size / 1e6:,.0f} MB ({secs:.1f} s)")
    secs = built("extract", extract, args.ledger_codes)
    print(
        f"extract: {args.ledger_codes:,} codes, {extract.stat().st_size / 1e6:,.0f} MB "
        f"({secs:.1f} s)",
        flush=True,
    )

    folder = work / "ledger"
    back = work / "ledger-back"
    for old in (folder, back):
        shutil.rmtree(old, ignore_errors=True)
    run([*rrnet, "ledger", "init", str(folder), "--municipality", MUNICIPALITY])
    secs, rss, _ = run([*rrnet, "ledger", "import", str(extract), "--ledger", str(folder)])
    print(f"folder ledger import: {secs:.1f} s, peak RSS {rss:,.0f} MB", flush=True)
    figures.append(("folder ledger import", f"{secs:.1f}", f"{rss:,.0f}", "", "", "", ""))
    out = work / "assigned.parquet"
    secs, rss, _ = run(
        [*rrnet, "assign", str(export), "--ledger", str(folder), "-o", str(out), "--overwrite"]
    )
    size = folder_mb(folder)
    print(
        f"folder assign of {args.rows:,} rows: {secs:.1f} s, peak RSS {rss:,.0f} MB, "
        f"ledger on disk {size:,.0f} MB",
        flush=True,
    )
    figures.append(("folder assign", f"{secs:.1f}", f"{rss:,.0f}", "", f"{size:,.0f}", "", ""))
    extract.unlink()  # not needed any more: leave the disk to the database

    print(f"PostgreSQL ledger: {without_password(url)}")
    postmaster = postmaster_pid(url)
    if postmaster is None:
        print("  (server not on this machine, or not visible: no server memory figures)")
    empty = database_mb(url)

    def pg_step(cmd: list[str]) -> tuple[float, float, float, float, float]:
        """(seconds, client peak RSS, server peak PSS, temp file MB, WAL MB) of one run."""
        temp, wal = server_counters(url)
        with server_peak(postmaster) as peak:
            secs, rss, _ = run(cmd)
        temp_after, wal_after = server_counters(url)
        return secs, rss, peak[0], temp_after - temp, wal_after - wal

    def server_cells(temp: float, wal: float) -> tuple[str, str]:
        return f"{temp:,.0f}", f"{wal:,.0f}"

    secs, rss, pss, temp, wal = pg_step([*rrnet, "ledger", "copy", str(folder), url])
    size = database_mb(url)
    print(
        f"copy folder -> pg: {secs:.1f} s, client peak RSS {rss:,.0f} MB, "
        f"server peak PSS {pss:,.0f} MB, database {size:,.0f} MB (empty: {empty:,.0f} MB), "
        f"temporary files {temp:,.0f} MB, WAL {wal:,.0f} MB",
        flush=True,
    )
    figures.append(
        (
            "copy folder -> pg",
            f"{secs:.1f}",
            f"{rss:,.0f}",
            f"{pss:,.0f}",
            f"{size:,.0f}",
            *server_cells(temp, wal),
        )
    )

    pg_runs: list[tuple[float, float, float, float, float]] = []
    folder_runs: list[tuple[float, float, int]] = []
    for _ in range(args.repeat):
        pg_runs.append(pg_step([*rrnet, "verify", "--ledger", url]))
        folder_runs.append(run([*rrnet, "verify", "--ledger", str(folder)]))
    best_pg, best_folder = min(pg_runs), min(folder_runs)
    print(
        f"verify --ledger pg: {best_pg[0]:.1f} s, client peak RSS {best_pg[1]:,.0f} MB, "
        f"server peak PSS {max(r[2] for r in pg_runs):,.0f} MB, temporary files "
        f"{best_pg[3]:,.0f} MB   (runs: {', '.join(f'{r[0]:.1f}' for r in pg_runs)})",
        flush=True,
    )
    print(
        f"verify --ledger folder: {best_folder[0]:.1f} s, peak RSS {best_folder[1]:,.0f} MB"
        f"   (runs: {', '.join(f'{r[0]:.1f}' for r in folder_runs)})",
        flush=True,
    )
    figures.append(
        (
            "verify --ledger pg",
            f"{best_pg[0]:.1f}",
            f"{best_pg[1]:,.0f}",
            f"{max(r[2] for r in pg_runs):,.0f}",
            "",
            *server_cells(best_pg[3], best_pg[4]),
        )
    )
    figures.append(
        (
            "verify --ledger folder",
            f"{best_folder[0]:.1f}",
            f"{best_folder[1]:,.0f}",
            "",
            "",
            "",
            "",
        )
    )
    ratio = best_pg[0] / best_folder[0]
    print(f"ratio verify pg / folder: {ratio:.2f}")

    secs, rss, pss, temp, wal = pg_step([*rrnet, "ledger", "copy", url, str(back)])
    size = folder_mb(back)
    print(
        f"copy pg -> folder: {secs:.1f} s, client peak RSS {rss:,.0f} MB, "
        f"server peak PSS {pss:,.0f} MB, folder {size:,.0f} MB, temporary files {temp:,.0f} MB",
        flush=True,
    )
    figures.append(
        (
            "copy pg -> folder",
            f"{secs:.1f}",
            f"{rss:,.0f}",
            f"{pss:,.0f}",
            f"{size:,.0f}",
            *server_cells(temp, wal),
        )
    )

    print()
    print(f"ledger: {args.ledger_codes:,} imported codes + {args.rows:,} register rows assigned")
    header = (
        "step",
        "seconds",
        "client peak RSS MB",
        "server peak PSS MB",
        "on disk MB",
        "server temp files MB",
        "WAL MB",
    )
    widths = [max(len(row[i]) for row in [header, *figures]) for i in range(len(header))]
    for row in [header, *figures]:
        print(
            "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
        )
    print(f"ratio verify pg / folder: {ratio:.2f}")
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
