"""What a run stopped from outside leaves behind, on both backends: a SIGKILLed
assign leaves partial outputs that the next run removes, and Ctrl-C (SIGINT) at
any instant, from the first tenths of a second on, and to notify's parent alone,
gives one clean line, exit code 130 and no file with personal data."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backends import LedgerBackend
from helpers import (
    MUNICIPALITY,
    SAMPLE_MUNICIPALITY,
    SAMPLE_PROFILE,
    assign_in_subprocess,
    profile_for,
    rrnet,
    start_assign_in_subprocess,
    write_export,
)

from rrnet_cli.ledger import Ledger
from rrnet_cli.verify import verify

#: The ``rrnet`` command as installed (the console script), as a person starts it.
RRNET = Path(sys.executable).with_name("rrnet")


def _parts(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.part"))


def test_a_killed_assign_leaves_parts_the_next_run_removes(
    backend: LedgerBackend, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 20_000)
    out, rejects = tmp_path / "assigned.csv", tmp_path / "rejects.csv"
    rng = random.Random(20240601)
    parts: list[Path] = []
    for _ in range(10):  # kill while the outputs are being written, at a random instant
        proc = start_assign_in_subprocess(
            export, backend.location, out, "--rejects", rejects, "--overwrite"
        )
        while proc.poll() is None and not _parts(tmp_path):
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        backend.settle()
        parts = _parts(tmp_path)
        if proc.returncode == -signal.SIGKILL and parts:
            break
    else:
        pytest.fail("no kill landed while the outputs were being written")
    assert {p.name.split(".rrnet-")[0] for p in parts} <= {".assigned.csv", ".rejects.csv"}
    if out.exists():  # a run before finished; what this one wrote was not published
        out.unlink()

    run = assign_in_subprocess(export, backend.location, out, "--rejects", rejects, "--json")
    assert run.returncode == 0, run.stderr
    assert sorted(json.loads(run.stdout)["stale_parts_removed"]) == [str(p) for p in parts]
    assert _parts(tmp_path) == []
    checked = verify([out], ledger=backend.store())
    assert checked.ok and checked.rows == 20_000


def _written(parts: list[Path]) -> int:
    """How many bytes ``parts`` hold now (one may be renamed away meanwhile)."""
    size = 0
    for part in parts:
        with contextlib.suppress(FileNotFoundError):
            size += part.stat().st_size
    return size


def test_a_retry_under_another_name_removes_the_killed_runs_part(
    backend: LedgerBackend, tmp_path: Path
) -> None:
    """kill -9 while assign writes outD/assigned.csv, then assign -o
    outD/assigned_retry.csv: the killed run's part (names, addresses, codes the
    ledger never recorded) is removed and named, and verify names one before."""
    export = write_export(tmp_path / "export.csv", 100_000)
    folder = tmp_path / "outD"
    folder.mkdir()
    out, retry = folder / "assigned.csv", folder / "assigned_retry.csv"
    earlier = folder / "earlier.csv"  # an output of the day before, in the same folder
    done = assign_in_subprocess(
        write_export(tmp_path / "e.csv", 5, start=10**6), backend.location, earlier
    )
    assert done.returncode == 0, done.stderr
    rng = random.Random(20240602)
    parts: list[Path] = []
    for _ in range(10):  # kill once the part holds rows, at a random instant after
        proc = start_assign_in_subprocess(export, backend.location, out, "--overwrite")
        while proc.poll() is None and _written(_parts(folder)) < 1_000_000:
            time.sleep(0.002)
        time.sleep(rng.uniform(0, 0.01))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        backend.settle()
        parts = _parts(folder)
        if proc.returncode == -signal.SIGKILL and _written(parts) >= 1_000_000:
            break
    else:
        pytest.fail("no kill landed while the output was being written")
    assert [p.name.split(".rrnet-")[0] for p in parts] == [".assigned.csv"]
    own = folder / ".notes.part"  # the user's own hidden file: never touched
    own.write_text("mine", encoding="utf-8")
    checked = rrnet("verify", earlier, "--ledger", backend.location)
    assert checked.returncode == 0, checked.stderr
    assert f"note: {parts[0]} is a partial output" in checked.stdout
    assert parts[0].exists()

    run = assign_in_subprocess(export, backend.location, retry)
    assert run.returncode == 0, run.stderr
    for part in parts:
        assert f"note: removed {part}, a partial output (personal data)" in run.stderr
    assert _parts(folder) == [own]
    checked = rrnet("verify", retry, "--ledger", backend.location)
    assert checked.returncode == 0, checked.stderr
    assert ".part" not in checked.stdout + checked.stderr


def _startup_seconds() -> float:
    """How long this interpreter takes to start, before any of rrnet's code runs."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return max(times)


def _before_python_ran(code: int, stderr: str) -> bool:
    """Whether the signal came before the interpreter had set up its own handling.

    Until then no code of Python's or rrnet's runs, and SIGINT ends the process
    the default way: killed by the signal, nothing printed and nothing written
    (each caller checks that nothing was). On a loaded machine that start can
    outlast the start-up time measured beforehand, so any trial may meet it.
    """
    return code == -signal.SIGINT and stderr == ""


def _interrupt(command: list[str], after: float, *, group: bool = False) -> tuple[int, str]:
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    time.sleep(after)
    if group:  # what Ctrl-C at a terminal does: the whole process group
        os.killpg(proc.pid, signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=300)
    return proc.returncode, stderr


def test_ctrl_c_at_any_instant_of_assign_is_clean(backend: LedgerBackend, tmp_path: Path) -> None:
    export = write_export(tmp_path / "export.csv", 20_000)
    start = _startup_seconds()
    before = backend.transactions()
    for trial, delay in enumerate((0.0, 0.05, 0.1, 0.15, 0.2, 0.4, 0.8, 1.6)):
        out = tmp_path / f"assigned{trial}.csv"
        command = [str(RRNET), "assign", str(export), "--ledger", backend.location, "-o", str(out)]
        code, stderr = _interrupt(command, start + delay)
        backend.settle()
        assert "Traceback" not in stderr, (delay, stderr)
        assert _parts(tmp_path) == [], delay
        if code == 0:  # finished before the signal came
            assert verify([out], ledger=backend.store()).ok
            continue
        if _before_python_ran(code, stderr):
            assert not out.exists() and backend.transactions() == before
            continue
        assert code == 130, (delay, code, stderr)
        assert stderr.startswith("Interrupted."), (delay, stderr)
        assert not out.exists()
        assert backend.transactions() in (before, before + 1)
    assert backend.integrity() == []


@pytest.mark.slow
def test_ctrl_c_to_notify_or_its_parent_alone_is_clean(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    assigned = tmp_path / "assigned.csv"
    sample = Path(__file__).resolve().parents[2] / "sample_data" / "register_ja_cp932.csv"
    rrnet("assign", sample, "--ledger", ledger.path, "-o", assigned, check=True)
    start = _startup_seconds()
    parent_alone = [(0.05, False), (0.15, False), (0.6, False), (1.5, False), (2.5, False)]
    whole_group = [(0.1, True), (2.0, True), (3.0, True)]
    for trial, (delay, group) in enumerate([*parent_alone, (4.0, False), *whole_group]):
        sheets, rejects = tmp_path / f"sheets{trial}", tmp_path / f"rejects{trial}.csv"
        command = [
            *(str(RRNET), "notify", str(assigned), "--ledger", str(ledger.path)),
            *("--profile", str(SAMPLE_PROFILE), "-o", str(sheets), "--rejects", str(rejects)),
            *("--batch-size", "10", "--workers", "2"),
        ]
        code, stderr = _interrupt(command, start + delay, group=group)
        assert "Traceback" not in stderr and "Error" not in stderr, (delay, group, stderr)
        if not _before_python_ran(code, stderr):
            assert code == 130, (delay, group, code, stderr)
            assert stderr.startswith("Interrupted."), (delay, stderr)
        assert not sheets.exists() and not rejects.exists()
        assert list(tmp_path.glob(".*.part")) == []
        assert Ledger.open(ledger.path).snapshot().notices.height == 0


def _session(sid: int) -> dict[int, tuple[int, str]]:
    """The processes of session ``sid`` (a run started with start_new_session): pid ->
    (ppid, command line), read from /proc."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            found[int(entry.name)] = (int(fields[1]), command)
    return found


def test_kill_9_of_notify_leaves_no_rendering_process_behind(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    assigned = tmp_path / "assigned.csv"
    sample = Path(__file__).resolve().parents[2] / "sample_data" / "register_ja_cp932.csv"
    rrnet("assign", sample, "--ledger", ledger.path, "-o", assigned, check=True)
    proc = subprocess.Popen(
        [
            *(str(RRNET), "notify", str(assigned), "--ledger", str(ledger.path)),
            *("--profile", str(SAMPLE_PROFILE), "-o", str(tmp_path / "sheets")),
            *("--batch-size", "5", "--workers", "2"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:  # until both rendering workers of the pool are at work
            processes = _session(proc.pid)
            servers = {
                pid
                for pid, (ppid, command) in processes.items()
                if ppid == proc.pid and "forkserver" in command
            }
            workers = [pid for pid, (ppid, _) in processes.items() if ppid in servers]
            if len(workers) >= 2 or proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "notify ended before its workers were seen"
        assert len(workers) >= 2, processes
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 10
        while _session(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        # Nothing of the run is left: no worker holding residents' data, no forkserver,
        # no resource tracker.
        assert _session(proc.pid) == {}
    finally:
        for pid in _session(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_ctrl_c_after_notify_has_done_its_work_does_not_make_it_a_failure(
    tmp_path: Path,
) -> None:
    """Ctrl-C right after the summary: the notices are recorded and the sheets named,
    so the run is a success (exit 0), and says it was interrupted after the work."""
    ledger = Ledger.init(tmp_path / "ledger", municipality=MUNICIPALITY)
    profile = profile_for(MUNICIPALITY, tmp_path)
    for trial in range(3):  # new residents each time: each run records its notices
        export = write_export(tmp_path / f"export{trial}.csv", 20, start=trial * 20)
        assigned = tmp_path / f"assigned{trial}.csv"
        rrnet("assign", export, "--ledger", ledger.path, "-o", assigned, check=True)
        sheets = tmp_path / f"sheets{trial}"
        proc = subprocess.Popen(
            [
                *(str(RRNET), "notify", str(assigned), "--ledger", str(ledger.path)),
                *("--profile", str(profile), "-o", str(sheets), "--workers", "2"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert proc.stdout is not None
        printed = []
        for line in proc.stdout:  # the summary's last line: the work is done
            printed.append(line)
            if line.startswith("└"):
                break
        proc.send_signal(signal.SIGINT)
        rest, stderr = proc.communicate(timeout=60)
        summary = " ".join("".join([*printed, rest]).split())
        assert "notices recorded in the ledger, batch" in summary, [*printed, stderr]
        assert proc.returncode == 0, (trial, proc.returncode, stderr)
        assert "Traceback" not in stderr and (sheets / "manifest.csv").is_file()
        if stderr:  # the signal came before the run had ended
            assert stderr.startswith("Interrupted after the work was done: 20 notice(s)"), stderr
    assert Ledger.open(ledger.path).snapshot().notices.height == 60
