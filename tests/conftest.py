"""Shared fixtures for rrnet's tests.

- ``ledger``: a fresh, empty ledger for municipality 131016 (千代田区).
- ``resident``: a factory for one valid register row (a dict of canonical columns).
- ``write_register``: writes a list of row dicts as a register CSV.
- ``runner``: a Typer ``CliRunner`` that ignores the caller's RRNET_* variables.
- ``pg_server``: a throwaway PostgreSQL server for the session (tests/pgserver.py).
- ``pg_url``: a fresh, empty database on it (loopback TCP URL with the password).
- ``backend``: a new ledger for 131016 on each backend, folder and postgres
  (tests/backends.py): the contract tests, crash trials and harness run on both.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from backends import (
    BACKENDS,
    WARD_A,
    WARD_B,
    LedgerBackend,
    Shared,
    folder_backend,
    postgres_backend,
)
from helpers import MUNICIPALITY
from pgserver import PgServer, PostgresMissing, check_installed, running_server
from typer.testing import CliRunner

from rrnet_cli.ledger import Ledger

#: Canonical register headers in the order municipal exports usually print them.
CANONICAL_ORDER = (
    "resident_id",
    "household_id",
    "name",
    "name_kanji",
    "alias",
    "alias_kana",
    "birth_date",
    "sex",
    "nationality",
    "postal_code",
    "address",
    "foreign_resident_category",
    "residence_status",
    "stay_expiry",
    "residence_card_number",
    "planned_move_out_date",
    "resident_code",
    "language",
)

Resident = Callable[..., dict[str, str]]
WriteRegister = Callable[..., Path]


def make_resident(resident_id: str, **overrides: str) -> dict[str, str]:
    """One valid register row with the required columns; ``overrides`` add or replace."""
    row = {
        "resident_id": resident_id,
        "name": f"TEST PERSON {resident_id}",
        "birth_date": "1990-04-01",
        "sex": "F",
        "nationality": "VNM",
        "address": "東京都千代田区九段南1-2-1",
    }
    row.update(overrides)
    return row


@pytest.fixture
def resident() -> Resident:
    """``resident("000123", planned_move_out_date="2030-01-01")`` -> a row dict."""
    return make_resident


@pytest.fixture
def ledger(tmp_path: Path) -> Ledger:
    """A fresh, empty ledger at ``tmp_path / "ledger"`` for municipality 131016."""
    return Ledger.init(tmp_path / "ledger", municipality=MUNICIPALITY)


@pytest.fixture
def write_register(tmp_path: Path) -> WriteRegister:
    """Return ``write(rows, name="register.csv") -> Path``, a UTF-8 register CSV in tmp_path.

    Columns are the union of the rows' keys: canonical ones in CANONICAL_ORDER
    first, then any others (extra columns) in first-seen order. A key missing
    from a row is written as an empty cell. ``name`` may also be an absolute path.
    """

    def write(rows: list[dict[str, str]], name: str | Path = "register.csv") -> Path:
        keys: list[str] = []
        for row in rows:
            keys.extend(k for k in row if k not in keys)
        headers = [c for c in CANONICAL_ORDER if c in keys]
        headers += [k for k in keys if k not in headers]
        path = tmp_path / name
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=headers, restval="")
            writer.writeheader()
            writer.writerows(rows)
        return path

    return write


@pytest.fixture
def runner() -> CliRunner:
    """A CliRunner whose environment cannot point rrnet at a real ledger."""
    return CliRunner(env={"RRNET_LEDGER": None, "RRNET_MUNICIPALITY": None, "COLUMNS": "200"})


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A real PostgreSQL server, started once for the session, stopped and removed after.

    Without PostgreSQL the tests that need it skip here, but fail in CI
    (CI=true): there they must run.
    """
    try:
        check_installed()
    except PostgresMissing as exc:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI needs PostgreSQL: {exc}", pytrace=False)
        pytest.skip(str(exc))
    with running_server() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A URL (loopback TCP, with the superuser's password) of a fresh, empty database."""
    return pg_server.url(pg_server.create_database())


@pytest.fixture
def shared(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> Shared:
    """A ledger created for WARD_A by the owner, then serving WARD_B too; an office role each."""
    ledger = Shared(pg_server, tmp_path, monkeypatch)
    ledger.create(runner, (WARD_A, WARD_B))
    return ledger


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerBackend:
    """A new, empty ledger for municipality 131016 on each backend.

    ``folder``: at ``tmp_path / "ledger"``; ``postgres``: in a fresh database of
    ``pg_server``, its location a loopback-TCP URL with the password. A test
    that applies to one backend only parametrizes ``backend`` itself
    (``indirect=True``) with that one.
    """
    if request.param == "folder":
        return folder_backend(tmp_path / "ledger")
    return postgres_backend(request.getfixturevalue("pg_server"))
