"""SIGKILL `rrnet assign` and `rrnet ledger import` at random instants, many times,
on a folder ledger and on a PostgreSQL ledger (over loopback TCP).

A code must never go to two residents, the ledger must always be as before or as
after a run, and an output file must be complete or absent. The campaign with
hundreds of trials is `benchmarks/crash_campaign.py`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from backends import LedgerBackend
from harness import run_campaign

pytestmark = pytest.mark.slow


def test_twenty_five_random_kills_break_nothing(backend: LedgerBackend, tmp_path: Path) -> None:
    tally = run_campaign(backend, tmp_path, trials=25)
    assert tally.violations == [], tally.line()
    assert tally.kills >= 12, f"most trials must really be killed: {tally.line()}"
    assert tally.killed_before_commit > 0, tally.line()
    # Exports overlap by half: every resident ends with exactly one code, all distinct.
    assert tally.distinct_codes == tally.residents, tally.line()
