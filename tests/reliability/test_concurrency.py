"""Eight `rrnet assign` processes at once on one ledger, each with its own export of
50,000 residents: on a folder ledger, and on a PostgreSQL ledger over loopback TCP
(eight offices' clients at once)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import polars as pl
import pytest
from backends import LedgerBackend
from helpers import start_assign_in_subprocess, write_exports

from rrnet_cli.verify import verify

pytestmark = pytest.mark.slow
PROCESSES = 8
ROWS = 50_000


def test_eight_concurrent_assigns_serialise_and_never_share_a_code(
    backend: LedgerBackend, tmp_path: Path
) -> None:
    exports = write_exports(tmp_path, PROCESSES, ROWS)
    procs = [
        start_assign_in_subprocess(
            e,
            backend.location,
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
    result = verify(outputs, ledger=backend.store())
    assert result.ok, result.violations[:5]
    assert result.codes == PROCESSES * ROWS
    codes = pl.concat([pl.read_parquet(o, columns=["resident_code"]) for o in outputs])
    assert codes["resident_code"].n_unique() == PROCESSES * ROWS
    assert backend.integrity() == []
    assert backend.transactions() == PROCESSES, "one transaction per run, none lost"
    stats = backend.store().stats()
    assert (stats["codes_used"], stats["by_status"]["assigned"]) == (PROCESSES * ROWS,) * 2
