"""`rrnet notify` and `rrnet ledger notices` on a PostgreSQL ledger, as an office meets them.

The same CP932 register and sample profile as tests/test_notices_issued.py (which
runs every notify rule on a folder ledger); here the ledger is a database on a
real server, shared by two wards, each office connecting as its own role. What a
user notices: sheets print and are recorded once; a second run prints nothing;
a reprint is marked and recorded; a run killed before or after its commit loses
no sheet and issues nothing twice; an office sees only its own notices; the
database itself refuses a second first notice of a code.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import psycopg
import pytest
from backends import WARD_A, WARD_B, Shared
from helpers import profile_for, rrnet, run_cli
from pypdf import PdfReader
from test_households import register_rows, write_cp932
from test_notices_issued import listed, run_notify
from typer.testing import CliRunner

from rrnet_cli.ledger.postgres import LOCK_KEY

SHEETS = 16  # the residents of register_rows() who get a code


@pytest.fixture
def office(shared: Shared) -> SimpleNamespace:
    """Ward A's office as test_notices_issued's helpers take a ledger (``.path``)."""
    return SimpleNamespace(path=shared.url(shared.roles[WARD_A]))


@pytest.fixture
def assigned(runner: CliRunner, office: SimpleNamespace, tmp_path: Path) -> Path:
    export = write_cp932(tmp_path / "register.csv", register_rows())
    out = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", office.path, "-o", out)
    assert code == 0, output
    return out


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return profile_for(WARD_A, tmp_path)


def test_notices_are_issued_once_and_recorded_in_the_database(
    runner: CliRunner, shared: Shared, office: SimpleNamespace, assigned: Path, profile: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    sheets = tmp_path / "sheets"
    code, output = run_notify(runner, office, assigned, profile, sheets, "--json")
    assert code == 0, output
    result = json.loads(output)
    assert result["sheets"] == SHEETS and result["batch"]
    assert len(PdfReader(sheets / "sheets-0001.pdf").pages) == SHEETS
    issued = listed(runner, office)["issued"]
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    assert sorted((n["resident_id"], n["file"], str(n["page"])) for n in issued) == sorted(
        manifest.select("resident_id", "file", "page").iter_rows()
    )
    codes = pl.read_csv(assigned, infer_schema=False).select("resident_id", "resident_code")
    assert sorted((n["resident_id"], n["code"]) for n in issued) == sorted(codes.iter_rows())
    assert {n["batch"] for n in issued} == {result["batch"]}
    # A second run prints nothing and makes no folder.
    again = tmp_path / "again"
    code, output = run_notify(runner, office, assigned, profile, again)
    assert code == 0, output
    assert "already issued" in " ".join(output.split()) and not again.exists()
    # The audit record counts the notices; verify checks them as the office and the owner.
    for who in (office.path, shared.owner):
        code, output = run_cli(runner, "verify", "-l", who)
        assert code == 0, output
    log = json.loads(run_cli(runner, "ledger", "log", "-l", shared.owner, "--json")[1])
    assert log["transactions"][-1]["counts"] == {"notice": SHEETS}
    assert log["transactions"][-1]["municipality"] == WARD_A


def test_another_ward_sees_none_of_these_notices_and_the_profile_must_be_its_own(
    runner: CliRunner, shared: Shared, office: SimpleNamespace, assigned: Path, profile: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    code, output = run_notify(runner, office, assigned, profile, tmp_path / "sheets")
    assert code == 0, output
    ward_b = SimpleNamespace(path=shared.url(shared.roles[WARD_B]))
    assert listed(runner, ward_b)["issued"] == []
    assert shared.rows(ward_b.path, "SELECT count(*) FROM rrnet.notices") == [(0,)]
    assert shared.rows(shared.owner, "SELECT count(*) FROM rrnet.notices") == [(SHEETS,)]
    # Ward B's office with ward A's profile: refused before anything is read or printed.
    code, output = run_notify(runner, ward_b, assigned, profile, tmp_path / "wrong")
    assert code == 2 and f"the ledger for {WARD_B}" in " ".join(output.split())
    assert not (tmp_path / "wrong").exists()
    # Ward B prints its own; the owner's listing tells the wards' residents apart.
    register = tmp_path / "register.csv"
    code, output = run_cli(runner, "assign", register, "-l", ward_b.path, "-o", tmp_path / "b.csv")
    assert code == 0, output
    code, output = run_notify(
        runner, ward_b, tmp_path / "b.csv", profile_for(WARD_B, tmp_path), tmp_path / "b-sheets"
    )
    assert code == 0, output
    owner = SimpleNamespace(path=shared.owner)
    assert {n["municipality"] for n in listed(runner, owner)["issued"]} == {WARD_A, WARD_B}
    code, output = run_cli(runner, "ledger", "notices", "-l", shared.owner)
    assert code == 0 and "municipality" in output and WARD_B in output
    # No change recorded yet: a change-notice run has nothing to print, and says why.
    code, output = run_notify(runner, office, assigned, profile, tmp_path / "c", "--changes")
    assert code == 0 and "no resident of the file has a code change" in " ".join(output.split())
    assert not (tmp_path / "c").exists()


def test_a_reprint_is_marked_and_recorded(
    runner: CliRunner, office: SimpleNamespace, assigned: Path, profile: Path, tmp_path: Path
) -> None:
    code, output = run_notify(runner, office, assigned, profile, tmp_path / "first")
    assert code == 0, output
    code, output = run_notify(
        runner, office, assigned, profile, tmp_path / "reprint",
        "--reprint", "lost", "--resident", "200003", "--json",
    )  # fmt: skip
    assert code == 0, output
    assert json.loads(output)["sheets"] == 1
    assert "再交付" in PdfReader(tmp_path / "reprint" / "sheets-0001.pdf").pages[0].extract_text()
    reprints = [n for n in listed(runner, office)["issued"] if n["reprint_reason"]]
    assert [(n["resident_id"], n["reprint_reason"]) for n in reprints] == [("200003", "lost")]


def test_the_database_refuses_a_second_first_notice_of_a_code(
    runner: CliRunner, shared: Shared, office: SimpleNamespace, assigned: Path, profile: Path,
    tmp_path: Path,
) -> None:  # fmt: skip
    code, output = run_notify(runner, office, assigned, profile, tmp_path / "sheets")
    assert code == 0, output
    # As rrnet would write it (the office's own code, under the writers' lock): the
    # unique index refuses a second first notice.
    with psycopg.connect(office.path) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(
            "INSERT INTO rrnet.notices (code, resident_id, municipality, kind, batch, txn,"
            " issued_at) SELECT code, resident_id, municipality, kind, 'forged', txn, now()"
            " FROM rrnet.notices LIMIT 1"
        )
    # Without the lock, the row-level security refuses it first.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        shared.rows(
            office.path,
            "INSERT INTO rrnet.notices (code, resident_id, municipality, kind, batch, txn,"
            " issued_at) SELECT code, resident_id, municipality, kind, 'forged', txn, now()"
            " FROM rrnet.notices LIMIT 1 RETURNING code",
        )


@pytest.mark.parametrize(
    ("failpoint", "committed"), [("pg-before-commit", False), ("pg-after-commit", True)]
)
def test_a_run_killed_at_its_commit_loses_no_sheet_and_issues_nothing_twice(
    runner: CliRunner, office: SimpleNamespace, assigned: Path, profile: Path, tmp_path: Path,
    failpoint: str, committed: bool,
) -> None:  # fmt: skip
    sheets = tmp_path / "sheets"
    killed = rrnet(
        "notify", assigned, "-l", office.path, "--profile", profile, "-o", sheets,
        "--workers", "1", env={"RRNET_FAILPOINT": failpoint},
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    assert not sheets.exists()
    assert len(listed(runner, office)["issued"]) == SHEETS * committed
    code, output = run_notify(runner, office, assigned, profile, sheets)
    assert code == 0, output
    if committed:  # the issued sheets are handed over, not printed again
        assert "its sheets are now in" in " ".join(output.split())
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    assert manifest.height == SHEETS
    assert list(tmp_path.glob(".sheets.rrnet-*")) == []
    issued = listed(runner, office)["issued"]
    assert len(issued) == SHEETS and len({n["batch"] for n in issued}) == 1
