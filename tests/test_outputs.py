"""Output files: an existing one is never replaced unasked, partial outputs of
stopped runs are removed by the next run (or named), and a failed write names
the file and the reason."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from backends import LedgerBackend
from helpers import MUNICIPALITY, folder_bytes, profile_for, rrnet, write_export
from typer.testing import CliRunner

from rrnet_cli import files
from rrnet_cli.cli import app
from rrnet_cli.ledger import Ledger
from rrnet_cli.ledger import folder as folder_store

KEEP = "resident_id,name\n000000001,the first run's output\n"


def _assign(runner: CliRunner, export: Path, ledger: Ledger, *args: str | Path):
    return runner.invoke(
        app, ["assign", str(export), "--ledger", str(ledger.path), *map(str, args)]
    )


# -- an existing file is refused unless --overwrite ---------------------------------


@pytest.mark.parametrize("option", ["-o", "--rejects", "--departed"])
def test_assign_refuses_a_file_that_exists_unless_overwrite(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, option: str
) -> None:
    export = write_export(tmp_path / "export.csv", 50)
    files_given = {
        "-o": tmp_path / "assigned.csv",
        "--rejects": tmp_path / "rejects.csv",
        "--departed": tmp_path / "departed.csv",
    }
    existing = files_given[option]
    existing.write_text(KEEP, encoding="utf-8")
    before = folder_bytes(ledger.path)
    args = [a for option_, path in files_given.items() for a in (option_, path)]

    refused = _assign(runner, export, ledger, *args)
    assert refused.exit_code == 2, refused.output
    assert f"{existing} (given with {option}) already exists" in refused.output
    assert "--overwrite" in refused.output
    assert existing.read_text(encoding="utf-8") == KEEP
    assert folder_bytes(ledger.path) == before  # no code recorded
    assert not any(p.exists() for p in files_given.values() if p != existing)

    replaced = _assign(runner, export, ledger, *args, "--overwrite")
    assert replaced.exit_code == 0, replaced.output
    assert existing.read_text(encoding="utf-8-sig") != KEEP
    assert pl.read_csv(files_given["-o"], infer_schema=False).height == 50


def test_a_second_assign_onto_the_same_output_is_refused(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 20)
    out = tmp_path / "assigned.csv"
    assert _assign(runner, export, ledger, "-o", out).exit_code == 0
    first = out.read_bytes()
    again = _assign(runner, export, ledger, "-o", out, "--json")
    assert again.exit_code == 2
    assert "already exists" in json.loads(again.output)["error"]
    assert out.read_bytes() == first


def test_change_refuses_an_output_that_exists_unless_overwrite(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 3)
    assert _assign(runner, export, ledger, "-o", tmp_path / "assigned.csv").exit_code == 0
    changes = tmp_path / "changes.csv"
    changes.write_text(KEEP, encoding="utf-8")
    before = folder_bytes(ledger.path)
    change = ["change", "--resident", "000000001", "--id-document", "passport"]
    refused = runner.invoke(app, [*change, "--ledger", str(ledger.path), "-o", str(changes)])
    assert refused.exit_code == 2, refused.output
    assert "already exists" in refused.output and "Nothing was changed." in refused.output
    assert changes.read_text(encoding="utf-8") == KEEP
    assert folder_bytes(ledger.path) == before
    done = runner.invoke(
        app, [*change, "--ledger", str(ledger.path), "-o", str(changes), "--overwrite"]
    )
    assert done.exit_code == 0, done.output
    assert pl.read_csv(changes, infer_schema=False)["resident_id"].to_list() == ["000000001"]


# -- partial outputs of stopped runs ---------------------------------------------------


def _dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _part(destination: Path, pid: int, host: str | None = None) -> Path:
    host = files.host_name() if host is None else host
    part = destination.parent / f".{destination.name}.rrnet-{host}-{pid}-k2x9q0ab.part"
    part.write_text("resident_id,name\n000000001,SOMEONE\n", encoding="utf-8")
    return part


def test_assign_removes_the_parts_of_stopped_runs_and_spares_live_ones(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 20)
    out, rejects = tmp_path / "assigned.csv", tmp_path / "rejects.csv"
    dead = _dead_pid()
    stale = [_part(out, dead), _part(rejects, dead)]
    live = _part(out, files.os.getpid())  # a run of this machine still at work
    elsewhere = _part(out, dead, host="anothermachine")  # a run of another machine
    result = _assign(runner, export, ledger, "-o", out, "--rejects", rejects, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert sorted(report["stale_parts_removed"]) == sorted(map(str, stale))
    assert report["stale_parts_not_removed"] == []
    assert not any(p.exists() for p in stale)
    assert live.exists() and elsewhere.exists()


def test_a_run_removes_the_stale_parts_of_any_output_in_the_folders_it_writes_to(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    """A retry under another name (assigned_retry.csv after a killed run's
    assigned.csv) still removes the killed run's part: every rrnet part of a
    stopped run of this machine, in each folder -o, --rejects and --departed
    name, whatever it was for. Nothing else is touched."""
    export = write_export(tmp_path / "export.csv", 20)
    outs, asides = tmp_path / "out", tmp_path / "asides"
    outs.mkdir()
    asides.mkdir()
    dead = _dead_pid()
    stale = [
        _part(outs / "assigned.csv", dead),
        _part(outs / "changes.csv", _dead_pid()),
        _part(asides / "rejects_monday.csv", dead),
    ]
    spared = [
        _part(outs / "assigned.csv", files.os.getpid()),  # a live run's
        _part(outs / "assigned.csv", dead, host="anothermachine"),  # another machine's
        _part(tmp_path / "assigned.csv", dead),  # in a folder this run does not write to
    ]
    for name in (".foo.part", ".assigned.csv.part", ".notes.rrnet-draft.part", "a.rrnet.part"):
        (outs / name).write_text("the user's own file", encoding="utf-8")
        spared.append(outs / name)
    folder = outs / f".sheets.rrnet-{files.host_name()}-{dead}-k2x9q0ab.part"
    folder.mkdir()  # a folder (notify's, which notify recovers itself): left alone
    spared.append(folder)
    result = _assign(
        runner,
        export,
        ledger,
        *("-o", outs / "assigned_retry.csv", "--rejects", asides / "rejects.csv"),
        *("--departed", outs / "departed.csv"),
    )
    assert result.exit_code == 0, result.output
    for part in stale:
        assert f"note: removed {part}, a partial output (personal data)" in result.output
        assert not part.exists()
    assert all(p.exists() for p in spared)
    assert "not removed" not in result.output
    assert (outs / "assigned_retry.csv").exists()


def test_notify_removes_stale_parts_beside_its_output_folder(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    assigned = tmp_path / "assigned.csv"
    register = write_register([resident("000001")])
    assert _assign(runner, register, ledger, "-o", assigned).exit_code == 0
    stale = _part(tmp_path / "assigned_old.csv", _dead_pid())
    notify = [
        *("notify", str(assigned), "-l", str(ledger.path), "-o", str(tmp_path / "sheets")),
        *("--profile", str(profile_for(MUNICIPALITY, tmp_path)), "--workers", "1"),
    ]
    result = runner.invoke(app, notify)
    assert result.exit_code == 0, result.output
    assert f"removed {stale}" in result.output
    assert not stale.exists()


def test_verify_names_the_stale_parts_beside_the_files_it_is_given(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 20)
    out = tmp_path / "assigned_retry.csv"
    assert _assign(runner, export, ledger, "-o", out).exit_code == 0
    stale = _part(tmp_path / "assigned.csv", _dead_pid())
    live = _part(tmp_path / "assigned.csv", files.os.getpid())
    result = runner.invoke(app, ["verify", str(out), "--ledger", str(ledger.path)])
    assert result.exit_code == 0, result.output  # a note, not a violation
    assert f"note: {stale} is a partial output (personal data)" in result.output
    assert str(live) not in result.output
    assert stale.exists()  # verify only reads
    report = runner.invoke(app, ["verify", str(out), "--json"])
    assert any(str(stale) in note for note in json.loads(report.output)["notes"])


def test_a_part_that_cannot_be_removed_is_named(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = write_export(tmp_path / "export.csv", 20)
    out = tmp_path / "assigned.csv"
    stuck = _part(tmp_path / "assigned_old.csv", _dead_pid())
    real = files.os.unlink

    def immutable(path: object, *args: object, **kwargs: object) -> None:
        # What removing an immutable file (chattr +i) does; root is not stopped by chmod.
        if Path(str(path)) == stuck:
            raise PermissionError(errno.EPERM, "Operation not permitted", str(path))
        real(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(files.os, "unlink", immutable)
    removable = _part(out, _dead_pid())
    older = out.parent / f".{out.name}.a1b2c3d4.part"  # an older rrnet's: no run named
    older.write_text("personal data", encoding="utf-8")
    result = _assign(runner, export, ledger, "-o", out)
    assert result.exit_code == 0, result.output
    assert f"removed {removable}" in result.output
    assert f"not removed: {stuck} (operation not permitted)" in result.output
    assert f"not removed: {older} (a partial output of an older rrnet" in result.output
    assert stuck.exists() and older.exists() and not removable.exists()


def test_change_removes_the_parts_of_stopped_runs(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 3)
    assert _assign(runner, export, ledger, "-o", tmp_path / "assigned.csv").exit_code == 0
    changes = tmp_path / "changes.csv"
    stale = _part(changes, _dead_pid())
    result = runner.invoke(
        app,
        [
            *("change", "--resident", "000000002", "--id-document", "passport"),
            *("--ledger", str(ledger.path), "-o", str(changes), "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["stale_parts_removed"] == [str(stale)]
    assert not stale.exists() and changes.exists()


def test_notify_keeps_no_rejects_file_when_recording_fails(
    runner: CliRunner,
    ledger: Ledger,
    write_register,
    resident,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows = [
        resident("000001"),
        resident("000002", address="愛知県さくら市桜台" + "サンライズマンション" * 40),
    ]
    assigned = tmp_path / "assigned.csv"
    assert _assign(runner, write_register(rows), ledger, "-o", assigned).exit_code == 0

    def full(*_args: object, **_kwargs: object) -> None:  # the ledger's disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(folder_store, "_write_private_json", full)
    rejects, sheets = tmp_path / "unprintable.csv", tmp_path / "sheets"
    notify = [
        *("notify", str(assigned), "-l", str(ledger.path), "-o", str(sheets)),
        *("--profile", str(profile_for(MUNICIPALITY, tmp_path)), "--workers", "1"),
        *("--rejects", str(rejects)),
    ]
    failed = runner.invoke(app, notify)
    assert failed.exit_code == 2, failed.output
    assert "no space left on device" in failed.output.lower()
    assert "Traceback" not in failed.output
    # The sheet set aside names a resident and why: it goes with the failed run.
    assert not rejects.exists() and not sheets.exists()
    assert list(tmp_path.glob(".unprintable.csv*")) == []
    monkeypatch.undo()
    done = runner.invoke(app, notify)
    assert done.exit_code == 0, done.output
    assert pl.read_csv(rejects, infer_schema=False)["resident_id"].to_list() == ["000002"]

    # A rejects file is never replaced unasked: a second run naming it is refused
    # before anything is done, and the list of sheets to print by hand stays.
    kept = rejects.read_bytes()
    again = runner.invoke(app, [*notify[:5], str(tmp_path / "sheets2"), *notify[6:]])
    assert again.exit_code == 2, again.output
    assert f"--rejects {rejects} already exists" in " ".join(again.output.split())
    assert rejects.read_bytes() == kept and not (tmp_path / "sheets2").exists()


# -- a failed write names the file and the reason ---------------------------------------


def test_a_read_only_folder_is_named_with_the_reason(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = write_export(tmp_path / "export.csv", 20)
    out_dir = tmp_path / "OUT"
    out_dir.mkdir()
    real = files.tempfile.mkstemp

    def read_only(*args: object, **kwargs: object) -> tuple[int, str]:
        # What creating a file on a read-only mount does (root is not stopped by chmod).
        if kwargs.get("dir") == out_dir:
            name = f"{kwargs['dir']}/{kwargs['prefix']}w3e4r5t6{kwargs['suffix']}"
            raise OSError(errno.EROFS, "Read-only file system", name)
        return real(*args, **kwargs)  # type: ignore[call-overload, no-any-return]

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    result = _assign(runner, export, ledger, "-o", out_dir / "assigned.csv")
    assert result.exit_code == 2, result.output
    assert f"read-only file system: {out_dir / 'assigned.csv'}." in result.output
    assert "Traceback" not in result.output and "internal error" not in result.output


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A 16 kB tmpfs (to fill up) and a read-only one, where this machine lets us mount."""
    small, read_only = tmp_path / "small", tmp_path / "readonly"
    small.mkdir()
    read_only.mkdir()
    done = []
    try:
        for path, options in ((small, "size=16k"), (read_only, "ro,size=16k")):
            mount = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)]
            if subprocess.run(mount, capture_output=True).returncode != 0:
                pytest.skip("mounting a tmpfs needs root (or CAP_SYS_ADMIN)")
            done.append(path)
        yield small, read_only
    finally:
        for path in done:
            subprocess.run(["umount", str(path)], check=True)


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx"])
def test_a_full_disk_or_read_only_mount_is_named_with_the_reason(
    ledger: Ledger, tmp_path: Path, mounted: tuple[Path, Path], suffix: str
) -> None:
    small, read_only = mounted
    export = write_export(tmp_path / "export.csv", 3000)
    before = folder_bytes(ledger.path)
    reasons = {small: "no space left on device", read_only: "read-only file system"}
    for folder, reason in reasons.items():
        out = folder / f"assigned{suffix}"
        run = rrnet("assign", export, "--ledger", ledger.path, "-o", out)
        assert run.returncode == 2, run.stderr
        assert f"error: {reason}: {out}." in run.stderr
        assert "Traceback" not in run.stderr and "internal error" not in run.stderr
        assert list(folder.iterdir()) == []  # not even a part left
    assert folder_bytes(ledger.path) == before


def _notify_args(assigned: Path, location: str, sheets: Path, tmp_path: Path) -> list[str]:
    return [
        *("notify", str(assigned), "--ledger", location, "-o", str(sheets)),
        *("--profile", str(profile_for(MUNICIPALITY, tmp_path)), "--workers", "1"),
    ]


def test_notify_onto_a_full_disk_names_the_file(
    backend: LedgerBackend, write_register, resident, tmp_path: Path, mounted: tuple[Path, Path]
) -> None:
    small, _ = mounted
    assigned = tmp_path / "assigned.csv"
    register = write_register([resident(f"{i:06d}") for i in range(1, 7)])
    assert rrnet("assign", register, "--ledger", backend.location, "-o", assigned).returncode == 0
    before = backend.contents()
    sheets = small / "s"
    run = rrnet(*_notify_args(assigned, backend.location, sheets, tmp_path))
    assert run.returncode == 2, run.stderr
    assert f"error: no space left on device: {sheets}/" in run.stderr
    assert "No sheet was written" in run.stderr and "Traceback" not in run.stderr
    assert list(small.iterdir()) == []
    assert backend.contents() == before  # no notice recorded


def test_a_ledger_on_a_full_disk_is_named_and_left_as_before(
    tmp_path: Path, mounted: tuple[Path, Path]
) -> None:
    small, _ = mounted
    ledger = Ledger.init(small / "ledger", municipality=MUNICIPALITY)
    before = folder_bytes(ledger.path)
    export = write_export(tmp_path / "export.csv", 20_000)
    run = rrnet("assign", export, "--ledger", ledger.path, "-o", tmp_path / "assigned.csv")
    assert run.returncode == 2, run.stderr
    assert f"error: no space left on device: {ledger.path}/segments/" in run.stderr
    assert "The ledger was left as it was before this run." in run.stderr
    assert "Traceback" not in run.stderr and "error writing bytes" not in run.stderr
    assert folder_bytes(ledger.path) == before
    assert list((ledger.path / "segments").iterdir()) == []
    assert list(tmp_path.glob("*assigned.csv*")) == []
    assert rrnet("verify", "--ledger", ledger.path).returncode == 0


# -- the same, simulated: where this machine cannot mount --------------------------------


def _no_space(*_args: object, **_kwargs: object) -> None:
    # What a write() on a full disk raises: the error number, no file name.
    raise OSError(errno.ENOSPC, "No space left on device")


def test_notify_onto_a_full_disk_names_the_file_simulated(
    runner: CliRunner,
    backend: LedgerBackend,
    write_register,
    resident,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assigned = tmp_path / "assigned.csv"
    register = write_register([resident("000001"), resident("000002")])
    assign = ["assign", str(register), "--ledger", backend.location, "-o", str(assigned)]
    assert runner.invoke(app, assign).exit_code == 0
    before = backend.contents()
    real = Path.write_bytes

    def full(self: Path, data: bytes) -> int:  # the output's disk is full
        if self.name.endswith(".part"):
            _no_space()
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", full)
    sheets = tmp_path / "sheets"
    result = runner.invoke(app, _notify_args(assigned, backend.location, sheets, tmp_path))
    assert result.exit_code == 2, result.output
    assert f"error: no space left on device: {sheets}/" in result.output
    assert "No sheet was written" in result.output
    assert not sheets.exists() and list(tmp_path.glob(".sheets*")) == []
    assert backend.contents() == before


@pytest.mark.parametrize("where", ["segment", "manifest"])
def test_a_ledger_on_a_full_disk_is_named_and_left_as_before_simulated(
    runner: CliRunner, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    before = folder_bytes(ledger.path)
    export = write_export(tmp_path / "export.csv", 200)
    if where == "segment":

        def full(table: object, path: str | Path, **_options: object) -> None:
            # What Arrow raises when the disk fills under it: errno 28, its own
            # words, no file name; part of the segment written.
            Path(path).write_bytes(b"PAR1" + b"\0" * 100)
            raise OSError(
                errno.ENOSPC,
                "Error writing bytes to file. Detail: [errno 28] No space left on device",
            )

        monkeypatch.setattr(folder_store.pq, "write_table", full)
        named = f"{ledger.path}/segments/"
    else:
        monkeypatch.setattr(folder_store.json, "dump", _no_space)
        named = f"{ledger.path / 'manifest.json'}."
    result = _assign(runner, export, ledger, "-o", tmp_path / "assigned.csv")
    assert result.exit_code == 2, result.output
    assert f"error: no space left on device: {named}" in result.output
    assert "The ledger was left as it was before this run." in result.output
    assert "error writing bytes" not in result.output
    monkeypatch.undo()
    assert folder_bytes(ledger.path) == before
    assert list(tmp_path.glob("*assigned.csv*")) == []
