"""Scale: a large synthetic register against a large ledger, end to end (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import SAMPLE_MUNICIPALITY, assign_in_subprocess, rrnet

from rrnet_cli import code as rcode
from rrnet_cli.sample import write_sample

pytestmark = pytest.mark.slow


def test_200k_residents_against_5m_codes(tmp_path: Path) -> None:
    export = tmp_path / "register.csv"
    write_sample(export, 200_000, seed=7, headers="ja", encoding="cp932")
    rng = np.random.default_rng(8)
    bodies = np.sort(rng.integers(0, rcode.BODY_SPACE, 5_000_000, dtype=np.uint64))
    extract = tmp_path / "national.txt"
    strings = rcode.codes_to_strings(rcode.codes_from_bodies(bodies))
    pl.DataFrame({"code": strings}).write_csv(extract, include_header=False)
    ledger = tmp_path / "ledger"
    assert rrnet("ledger", "init", str(ledger), "-m", SAMPLE_MUNICIPALITY).returncode == 0
    imported = rrnet("ledger", "import", str(extract), "--ledger", str(ledger), "--json")
    assert imported.returncode == 0, imported.stderr
    figures = json.loads(imported.stdout)
    assert figures["imported"] + figures["repeated_in_file"] == 5_000_000

    out = tmp_path / "assigned.parquet"
    run = assign_in_subprocess(export, ledger, out, "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["rows_read"] == 200_000
    assert (
        result["newly_assigned"] + result["carried_over"] + sum(result["excluded"].values())
        == 200_000
    )

    assigned = pl.read_parquet(out)
    new = assigned.filter(pl.col("code_status") == "assigned")["resident_code"]
    new_ints = rcode.strings_to_codes(new.to_arrow())
    imported_ints = rcode.codes_from_bodies(bodies)
    assert not np.isin(new_ints, imported_ints).any(), "a code in use elsewhere was drawn"

    check = rrnet("verify", str(out), "--ledger", str(ledger), "--json")
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)["codes"] == result["newly_assigned"] + result["carried_over"]


def test_one_million_residents_against_ten_million_codes(tmp_path: Path) -> None:
    """The scale run CI affords: 1,000,000 residents, a 10,000,000-code ledger, verified."""
    export = tmp_path / "register.csv"
    write_sample(export, 1_000_000, seed=11, headers="en", encoding="utf-8")
    rng = np.random.default_rng(12)
    bodies = np.sort(rng.integers(0, rcode.BODY_SPACE, 10_000_000, dtype=np.uint64))
    extract = tmp_path / "national.txt"
    pl.DataFrame({"code": rcode.codes_to_strings(rcode.codes_from_bodies(bodies))}).write_csv(
        extract, include_header=False
    )
    ledger = tmp_path / "ledger"
    assert rrnet("ledger", "init", str(ledger), "-m", SAMPLE_MUNICIPALITY).returncode == 0
    assert rrnet("ledger", "import", str(extract), "--ledger", str(ledger)).returncode == 0
    out = tmp_path / "assigned.parquet"
    run = assign_in_subprocess(export, ledger, out, "--json")
    assert run.returncode == 0, run.stderr
    figures = json.loads(run.stdout)
    assert figures["rows_read"] == 1_000_000
    assert figures["newly_assigned"] > 900_000
    check = rrnet("verify", str(out), "--ledger", str(ledger), "--json")
    assert check.returncode == 0, check.stdout[-2000:]
    verified = json.loads(check.stdout)
    assert verified["codes"] == figures["newly_assigned"] + figures["carried_over"]
    assert verified["ledger_records"] >= 10_000_000 - 10_000
