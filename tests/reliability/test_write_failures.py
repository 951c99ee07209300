"""A write that fails mid-run (disk full, file-size limit) leaves the ledger exactly
as before, publishes no output and says so clearly, without a traceback."""

from __future__ import annotations

import errno
import resource
import signal
from pathlib import Path

import pytest
from helpers import SAMPLE_MUNICIPALITY, assign_in_subprocess, folder_bytes
from typer.testing import CliRunner

from rrnet_cli.cli import app
from rrnet_cli.ledger import Ledger
from rrnet_cli.ledger import folder as folder_store
from rrnet_cli.sample import write_sample


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Ledger]:
    export = tmp_path / "register.csv"
    write_sample(export, 5000, seed=1)
    return export, Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)


def test_file_size_limit_in_the_child_fails_cleanly(setup, tmp_path: Path) -> None:
    export, ledger = setup
    before = folder_bytes(ledger.path)

    def limit() -> None:  # runs in the child: a 100 kB file-size limit, EFBIG not SIGXFSZ
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    run = assign_in_subprocess(export, ledger.path, tmp_path / "out.parquet", preexec_fn=limit)
    assert run.returncode == 2
    assert f"file too large: {tmp_path / 'out.parquet'}." in run.stderr
    assert "Traceback" not in run.stderr
    assert folder_bytes(ledger.path) == before
    assert not list(tmp_path.glob("out.parquet")) and not list(tmp_path.glob(".out.parquet*"))


@pytest.mark.parametrize("where", ["segment", "manifest"])
def test_disk_full_during_commit_leaves_the_ledger_as_before(
    setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    export, ledger = setup
    before = folder_bytes(ledger.path)

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    if where == "segment":
        monkeypatch.setattr(folder_store.pq, "write_table", full)
    else:
        monkeypatch.setattr(folder_store, "_write_private_json", full)
    result = CliRunner().invoke(
        app, ["assign", str(export), "--ledger", str(ledger.path), "-o", str(tmp_path / "out.csv")]
    )
    assert result.exit_code == 2
    assert "no space left on device" in result.output
    assert "Traceback" not in result.output
    assert folder_bytes(ledger.path) == before, "no segment, no manifest change"
    assert not list(tmp_path.glob("out.csv")) and not list(tmp_path.glob(".out.csv*"))
