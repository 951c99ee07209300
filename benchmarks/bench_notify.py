"""Benchmark: notification sheets, naive loop vs `rrnet notify`, in one run.

Builds a synthetic register, assigns it, then measures
- naive: one WeasyPrint document per sheet in a loop, in one process (same
  template, CSS and fonts, reused), on --naive-sheets sheets;
- `rrnet notify` as a whole process on every newly assigned resident,
and prints sheets per second, the ratio, and the peak memory (VmHWM) of each
process involved, workers included.

    python benchmarks/bench_notify.py                     # ~2,000 sheets
    python benchmarks/bench_notify.py --rows 500 --naive-sheets 50

Targets: notify >= 15x the naive rate; peak memory per process <= 400 MB; <= 12 KB per page.
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

ROOT = Path(__file__).resolve().parent.parent
PROFILE = ROOT / "sample_data" / "profile.toml"

NAIVE = """
import sys, time
from pathlib import Path
from rrnet_cli.ingest import read_export
from rrnet_cli.languages import choose_languages, load_notices
from rrnet_cli.notify import build_sheets, mailing_order, select_residents
from rrnet_cli.render import SheetRenderer
from rrnet_cli.profile import load_profile
frame = select_residents(read_export(Path(sys.argv[1]), ours=True).frame, False)
frame = mailing_order(frame.with_columns(choose_languages(frame)))
sheets = build_sheets(frame.head(int(sys.argv[3])), load_notices(), recorded_on="2026-12-01")
renderer = SheetRenderer(load_profile(Path(sys.argv[2])), "2026-12-01")
started = time.perf_counter()
for sheet in sheets:
    renderer.document([sheet]).write_pdf()
print(len(sheets), time.perf_counter() - started)
"""


def _descendants(pid: int) -> set[int]:
    """All processes below ``pid`` (workers are children of the forkserver)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _hwm_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(cmd: list[str]) -> tuple[float, dict[int, float], str]:
    """Run ``cmd``; return seconds, peak RSS (MB) of it and each descendant, stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, float] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for pid in {proc.pid, *_descendants(proc.pid)}:
                mb = _hwm_mb(pid)
                if mb is not None:
                    peaks[pid] = max(peaks.get(pid, 0.0), mb)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed: {stderr[-2000:]}")
    return seconds, {pid: mb for pid, mb in peaks.items()}, stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_150, help="register rows (~93%% get sheets)")
    parser.add_argument("--naive-sheets", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rrnet-bench-notify-"))
    work.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    rrnet = [py, "-m", "rrnet_cli"]
    export, ledger, assigned = work / "register.csv", work / "ledger", work / "assigned.csv"
    shutil.rmtree(ledger, ignore_errors=True)
    subprocess.run(
        [*rrnet, "sample", str(export), "--rows", str(args.rows), "--seed", "9"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*rrnet, "ledger", "init", str(ledger), "-m", "139998"], check=True, capture_output=True
    )
    subprocess.run(
        [*rrnet, "assign", str(export), "-l", str(ledger), "-o", str(assigned), "--overwrite"],
        check=True,
        capture_output=True,
    )

    seconds, peaks, stdout = run(
        [py, "-c", NAIVE, str(assigned), str(PROFILE), str(args.naive_sheets)]
    )
    count, render_seconds = stdout.split()
    naive_rate = int(count) / float(render_seconds)
    print(
        f"naive  (one document per sheet, one process): {naive_rate:.1f} sheets/s "
        f"over {count} sheets, peak RSS {max(peaks.values()):,.0f} MB"
    )

    out = work / "sheets"
    shutil.rmtree(out, ignore_errors=True)
    seconds, peaks, stdout = run(
        [
            *rrnet,
            "notify",
            str(assigned),
            "-o",
            str(out),
            "--profile",
            str(PROFILE),
            "-l",
            str(ledger),
            "--workers",
            str(args.workers),
            "--batch-size",
            str(args.batch_size),
        ]
    )
    sheets = sum(1 for _ in (out / "manifest.csv").open(encoding="utf-8-sig")) - 1
    rate = sheets / seconds
    print(
        f"notify (whole process, {args.workers} workers, batches of {args.batch_size}): "
        f"{rate:.1f} sheets/s over {sheets} sheets ({seconds:.1f} s)"
    )
    print(f"ratio notify/naive: {rate / naive_rate:.1f}x  (target >= 15x)")
    worker_peaks = sorted(peaks.values(), reverse=True)
    print(
        "peak RSS per process (MB): "
        + ", ".join(f"{mb:,.0f}" for mb in worker_peaks)
        + "  (target <= 400 per worker)"
    )
    size = sum(p.stat().st_size for p in out.glob("sheets-*.pdf"))
    print(f"PDF size: {size / sheets / 1024:.1f} KB per sheet")
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
