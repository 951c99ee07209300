"""Eight `rrnet assign` processes at once on one ledger, each with its own export."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest
from helpers import SAMPLE_MUNICIPALITY, start_assign_in_subprocess, write_exports

from rrnet_cli.ledger import Ledger, check_integrity
from rrnet_cli.verify import verify

pytestmark = pytest.mark.slow
PROCESSES = 8
ROWS = 50_000


def test_eight_concurrent_assigns_serialise_and_never_share_a_code(tmp_path: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    exports = write_exports(tmp_path, PROCESSES, ROWS)
    procs = [
        start_assign_in_subprocess(
            e,
            ledger.path,
            tmp_path / f"out{p}.parquet",
            "--lock-timeout",
            "900",
            stderr=subprocess.PIPE,
        )
        for p, e in enumerate(exports)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=1200)
        assert proc.returncode == 0, err
    outputs = [tmp_path / f"out{p}.parquet" for p in range(PROCESSES)]
    result = verify(outputs, ledger=ledger)
    assert result.ok, result.violations[:5]
    assert result.codes == PROCESSES * ROWS
    codes = pl.concat([pl.read_parquet(o, columns=["resident_code"]) for o in outputs])
    assert codes["resident_code"].n_unique() == PROCESSES * ROWS
    assert check_integrity(ledger).violations == []
    assert ledger.read_manifest()["txn"] == PROCESSES, "one transaction per run, none lost"
