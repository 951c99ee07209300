"""Benchmark: notification sheets as a printed form (rrnet_cli.form) vs the naive loop.

Builds a synthetic register (~2,000 sheets), assigns it, then measures in one run
- (a) naive: one WeasyPrint document per sheet in a loop, one process, on
  --naive-sheets sheets (bench_notify's code, run as its own process);
- (b) static pages: all eleven languages laid out once (WeasyPrint) and compacted;
- (c) value layers: FormRenderer.render_layer on batches, one process (pages/s);
- (d) composition: compose() of those layers over the static pages (pages/s);
- (e) the whole job: static pages, then every batch laid out and composed by
  --workers worker processes (forkserver, like notify), files written;
and prints the rate of each, the ratio of (e) to (a), the peak memory (VmHWM)
of each process, and the size of the output per page.

    python benchmarks/bench_form.py                       # ~2,000 sheets
    python benchmarks/bench_form.py --rows 500 --naive-sheets 50

Targets: (e) >= 15x the naive rate; <= 400 MB per process; <= 12 KB per page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from bench_notify import NAIVE, PROFILE  # noqa: E402
from bench_notify import run as run_measured  # noqa: E402

NOTICE_DATE = "2026-12-01"


def vm_hwm_mb() -> float:
    """This process's peak resident memory (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def build_input(work: Path, rows: int) -> tuple[Path, list[dict[str, Any]]]:
    """Sample register -> ledger -> assigned file -> the sheets notify would print."""
    rrnet = [sys.executable, "-m", "rrnet_cli"]
    export, ledger, assigned = work / "register.csv", work / "ledger", work / "assigned.csv"
    shutil.rmtree(ledger, ignore_errors=True)
    for args in (
        ["sample", str(export), "--rows", str(rows), "--seed", "9"],
        ["ledger", "init", str(ledger), "-m", "139998"],
        ["assign", str(export), "-l", str(ledger), "-o", str(assigned), "--overwrite"],
    ):
        subprocess.run([*rrnet, *args], check=True, capture_output=True)
    from rrnet_cli.ingest import read_export
    from rrnet_cli.languages import choose_languages, load_notices
    from rrnet_cli.notify import build_sheets, mailing_order, select_residents

    frame = select_residents(read_export(assigned, ours=True).frame, False)
    frame = mailing_order(frame.with_columns(choose_languages(frame)))
    return assigned, build_sheets(frame, load_notices(), recorded_on="2026-12-01")


def batches(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


# -- worker processes (e) ----------------------------------------------------


def _init(profile: Any, static_pages: Mapping[str, bytes]) -> None:
    from rrnet_cli import form

    form.init_worker(profile, static_pages)


def _task(task: tuple[list[dict[str, Any]], str]) -> tuple[int, int, int, float, int]:
    """One batch: layer + composition, written to ``path``; (pid, pages, rejected, MB, rounds)."""
    from rrnet_cli import form

    sheets, path = task
    result = form.render_batch(sheets)
    Path(path).write_bytes(result.pdf)
    rounds = form._WORKER.rounds if form._WORKER is not None else 0
    return os.getpid(), len(result.rendered), len(result.rejections), vm_hwm_mb(), rounds


def _single_process(profile: Any, sheets: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """(b), (c) and (d) in one fresh process; the figures."""
    from rrnet_cli import form
    from rrnet_cli.languages import load_notices
    from rrnet_cli.schema import LANGUAGES

    started = time.perf_counter()
    static = form.render_static_pages(profile, load_notices(), LANGUAGES, NOTICE_DATE)
    static_seconds = time.perf_counter() - started
    renderer = form.FormRenderer(profile)
    layers = []
    refits = 0
    started = time.perf_counter()
    for batch in batches(sheets, batch_size):
        layers.append((batch, renderer.render_layer(batch)))
        refits += renderer.rounds > 1
    layer_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for batch, layer in layers:
        form.compose(layer.pdf, static, [batch[i]["language"] for i in layer.rendered])
    compose_seconds = time.perf_counter() - started
    sizes = [len(pdf) / 1024 for pdf in static.values()]
    return {
        "static_languages": len(static),
        "static_seconds": static_seconds,
        "static_kb": len(static.combined) / 1024,
        "static_kb_min": min(sizes),
        "static_kb_max": max(sizes),
        "pages": sum(len(layer.rendered) for _, layer in layers),
        "batches": len(layers),
        "refits": refits,
        "layer_seconds": layer_seconds,
        "compose_seconds": compose_seconds,
        "peak_mb": vm_hwm_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_150, help="register rows (~93%% get sheets)")
    parser.add_argument("--naive-sheets", type=int, default=200)
    parser.add_argument("--single-sheets", type=int, default=400, help="sheets for (c) and (d)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="rrnet-bench-form-"))
    work.mkdir(parents=True, exist_ok=True)
    print("command: " + " ".join([Path(sys.executable).name, *sys.argv]))

    assigned, sheets = build_input(work, args.rows)
    from rrnet_cli import form
    from rrnet_cli.profile import load_profile

    profile = load_profile(PROFILE)
    languages = sorted({s["language"] for s in sheets})
    print(f"input: {len(sheets)} sheets in {len(languages)} languages, mailing order")

    # (a) the naive loop, in its own process (bench_notify's code).
    _, peaks, stdout = run_measured(
        [sys.executable, "-c", NAIVE, str(assigned), str(PROFILE), str(args.naive_sheets)]
    )
    count, seconds = stdout.split()
    naive_rate = int(count) / float(seconds)
    print(
        f"(a) naive (one WeasyPrint document per sheet, one process): {naive_rate:.1f} sheets/s "
        f"over {count} sheets, peak RSS {max(peaks.values()):,.0f} MB"
    )

    # (b), (c), (d): one fresh process, as a worker would be.
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("forkserver")) as pool:
        single = pool.submit(
            _single_process, profile, sheets[: args.single_sheets], args.batch_size
        ).result()
    print(
        f"(b) static pages: {single['static_languages']} languages in "
        f"{single['static_seconds']:.2f} s; {single['static_kb']:.0f} KB together, "
        f"{single['static_kb_min']:.0f}-{single['static_kb_max']:.0f} KB each"
    )
    pages, layer_seconds, compose_seconds = (
        single["pages"],
        single["layer_seconds"],
        single["compose_seconds"],
    )
    print(
        f"(c) value layers, one process: {pages / layer_seconds:.1f} pages/s "
        f"over {pages} pages ({layer_seconds:.1f} s, {single['refits']} of "
        f"{single['batches']} batches needed a refit)"
    )
    print(
        f"(d) composition, one process: {pages / compose_seconds:.1f} pages/s "
        f"({compose_seconds:.1f} s); layer + composition: "
        f"{pages / (layer_seconds + compose_seconds):.1f} pages/s per process; "
        f"peak RSS of that process {single['peak_mb']:,.0f} MB"
    )

    # (e) the whole job with worker processes.
    out = work / "sheets"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    tasks = [
        (batch, str(out / f"sheets-{i + 1:04d}.pdf"))
        for i, batch in enumerate(batches(sheets, args.batch_size))
    ]
    started = time.perf_counter()
    static_run = form.render_static_pages_apart(profile, languages, NOTICE_DATE)
    peaks_by_pid: dict[int, float] = {}
    printed = rejected = refitted = 0
    with ProcessPoolExecutor(
        max_workers=args.workers,
        mp_context=get_context("forkserver"),
        initializer=_init,
        initargs=(profile, static_run),
    ) as pool:
        for pid, done, bad, mb, rounds in pool.map(_task, tasks):
            printed += done
            rejected += bad
            refitted += rounds > 1
            peaks_by_pid[pid] = max(peaks_by_pid.get(pid, 0.0), mb)
    total_seconds = time.perf_counter() - started
    rate = printed / total_seconds
    size = sum(Path(path).stat().st_size for _, path in tasks)
    print(
        f"(e) whole job, {args.workers} workers (forkserver), batches of {args.batch_size}: "
        f"{rate:.1f} sheets/s over {printed} sheets ({total_seconds:.1f} s, static pages "
        f"included; {rejected} rejected; {refitted} of {len(tasks)} batches needed a refit)"
    )
    print(f"ratio form/naive: {rate / naive_rate:.1f}x  (target >= 15x)")
    print(
        "peak RSS per process (MB): main "
        f"{vm_hwm_mb():,.0f}; workers "
        + ", ".join(f"{mb:,.0f}" for mb in sorted(peaks_by_pid.values(), reverse=True))
        + "  (target <= 400)"
    )
    print(
        f"PDF size: {size / printed / 1024:.1f} KB per page over {len(tasks)} files (target <= 12)"
    )
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
