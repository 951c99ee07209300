"""One ledger on either backend, as the tests see it (the ``backend`` fixture's object).

The contract tests, the crash harness and the concurrency test run the same
steps on a folder ledger and on a PostgreSQL ledger; what differs is where the
ledger lives and how a test reads its state. ``LedgerBackend`` says that once:

- ``location``: what ``--ledger`` takes (a folder path, or a ``postgresql://``
  URL over loopback TCP with the password, as an office across machines uses);
- ``store()``: the opened ``LedgerStore`` (``rrnet_cli.ledger.open_store``);
- ``transactions()``: the number of the last transaction (0 right after init);
- ``integrity()``: the violations ``check_integrity`` finds (none, when sound);
- ``contents()``: everything the ledger holds, to compare before and after a
  run that must change nothing (the folder's bytes; the schema's rows);
- ``settle()``: wait until the server has ended the sessions of killed rrnet
  clients (and so rolled back or committed what they left); a folder has none;
- ``another(name)``: a second, empty ledger on the same backend.

``Shared`` is one PostgreSQL ledger several municipalities share, each office
connecting as its own role (the ``shared`` fixture: wards ``WARD_A`` and
``WARD_B``).

Plain classes and functions, no pytest: ``benchmarks/crash_campaign.py`` builds
one without it. The fixture is in tests/conftest.py.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import psycopg
from helpers import MUNICIPALITY, cli_ok, folder_bytes
from pgserver import PgServer

from rrnet_cli.ledger import LedgerStore, open_store
from rrnet_cli.ledger.postgres import LOCK_KEY

if TYPE_CHECKING:
    import pytest
    from typer.testing import CliRunner

#: The ``backend`` fixture's params, in the order tests are reported.
BACKENDS = ("folder", "postgres")


class LedgerBackend:
    """A ledger that exists (``rrnet ledger init`` done) on one backend."""

    kind: str = ""

    def __init__(self, location: str, municipality: str) -> None:
        self.location = location
        self.municipality = municipality

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    def store(self) -> LedgerStore:
        return open_store(self.location)

    def transactions(self) -> int:
        raise NotImplementedError

    def integrity(self) -> list[dict[str, Any]]:
        return self.store().check_integrity().violations

    def contents(self) -> object:
        raise NotImplementedError

    def settle(self, timeout: float = 20) -> None:
        """Nothing to wait for (a folder ledger)."""

    def another(self, name: str) -> LedgerBackend:
        raise NotImplementedError


class FolderBackend(LedgerBackend):
    kind = "folder"

    @property
    def path(self) -> Path:
        return Path(self.location)

    def transactions(self) -> int:
        from rrnet_cli.ledger import Ledger

        return int(Ledger.open(self.path).read_manifest()["txn"])

    def contents(self) -> object:
        return folder_bytes(self.path)

    def another(self, name: str) -> LedgerBackend:
        return folder_backend(self.path.parent / name, self.municipality)


class PostgresBackend(LedgerBackend):
    kind = "postgres"

    def __init__(self, location: str, municipality: str, server: PgServer) -> None:
        super().__init__(location, municipality)
        self.server = server

    def transactions(self) -> int:
        return int(self.store().stats()["transactions"])

    def contents(self) -> object:
        tables = {
            "meta": "SELECT * FROM rrnet.meta",
            "codes": "SELECT * FROM rrnet.codes ORDER BY code",
            "code_history": "SELECT * FROM rrnet.code_history ORDER BY txn, code",
            "transactions": "SELECT * FROM rrnet.transactions ORDER BY id",
            "notices": "SELECT * FROM rrnet.notices ORDER BY txn, code, kind",
            "pool": "SELECT * FROM rrnet.pool ORDER BY code",
            "municipalities": "SELECT * FROM rrnet.municipalities ORDER BY code",
        }
        return {name: sql_rows(self.location, query) for name, query in tables.items()}

    def settle(self, timeout: float = 20) -> None:
        settle_sessions(self.location, timeout)

    def another(self, name: str) -> LedgerBackend:
        return postgres_backend(self.server, self.municipality)


def init_ledger(location: str, municipality: str) -> None:
    """``rrnet ledger init LOCATION -m MUNICIPALITY``, as staff run it (in this process)."""
    from typer.testing import CliRunner

    from rrnet_cli.cli import app

    runner = CliRunner(env={"RRNET_LEDGER": None, "RRNET_MUNICIPALITY": None})
    result = runner.invoke(app, ["ledger", "init", location, "-m", municipality])
    assert result.exit_code == 0, result.output


def folder_backend(path: Path, municipality: str = MUNICIPALITY) -> FolderBackend:
    """A new folder ledger at ``path``."""
    init_ledger(str(path), municipality)
    return FolderBackend(str(path), municipality)


def postgres_backend(server: PgServer, municipality: str = MUNICIPALITY) -> PostgresBackend:
    """A new PostgreSQL ledger in a fresh database of ``server``, reached over TCP with
    the password (as from another machine)."""
    url = server.url(server.create_database())
    init_ledger(url, municipality)
    return PostgresBackend(url, municipality, server)


# -- a ledger several municipalities share -----------------------------------------

WARD_A, WARD_B = "131016", "131024"


class Shared:
    """A shared ledger in a fresh database: the owner's URL, and offices' URLs by municipality."""

    def __init__(self, server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.server = server
        self.dbname = server.create_database()
        self.owner = server.url(self.dbname)
        self.passfile = tmp_path / "pgpass"
        self.passfile.write_text("", encoding="utf-8")
        self.passfile.chmod(0o600)
        monkeypatch.setenv("PGPASSFILE", str(self.passfile))
        self.roles: dict[str, str] = {}

    def office(self, municipality: str) -> str:
        """Create an ordinary login role for the municipality's office; its URL (no password:
        the password is in the password file, as docs/deployment.md says)."""
        role = f"office_{municipality}_{secrets.token_hex(3)}"
        password = secrets.token_urlsafe(12)
        self.server.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        with self.passfile.open("a", encoding="utf-8") as handle:
            handle.write(f"127.0.0.1:{self.server.port}:{self.dbname}:{role}:{password}\n")
        self.roles[municipality] = role
        return self.url(role)

    def create(self, runner: CliRunner, wards: tuple[str, ...]) -> None:
        """`ledger init` for the first ward, then every ward served, its office in its role."""
        cli_ok(runner, "ledger", "init", self.owner, "-m", wards[0])
        for ward in wards:
            self.office(ward)
            cli_ok(runner, "ledger", "add-municipality", "-l", self.owner, "-m", ward,
                   "--role", self.roles[ward])  # fmt: skip

    def url(self, role: str) -> str:
        return f"postgresql://{quote(role)}@127.0.0.1:{self.server.port}/{self.dbname}"

    def rows(self, url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(url) as conn:
            return conn.execute(query.encode(), params or None).fetchall()


# -- reading a PostgreSQL ledger behind rrnet's back -------------------------------


def sql_rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``query``, run as the superuser in the database ``url`` names."""
    with psycopg.connect(url) as conn:
        return conn.execute(query.encode(), params or None).fetchall()


def sql_one(url: str, query: str, *params: Any) -> Any:
    (row,) = sql_rows(url, query, *params)
    return row[0]


def settle_sessions(url: str, timeout: float = 20) -> None:
    """Until the server has noticed that every rrnet client is gone (and ended its
    transaction: a killed client's COMMIT may still be on its way)."""
    deadline = time.monotonic() + timeout
    while sql_one(
        url,
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = 'rrnet' AND datname = current_database()",
    ):
        assert time.monotonic() < deadline, "a killed client's session never ended"
        time.sleep(0.05)


def assert_no_duplicates(url: str) -> None:
    """The database's own view: one row per code, one active code per resident, and
    the history holds every code and exactly the records the audit trail counts."""
    total, distinct = sql_rows(url, "SELECT count(*), count(DISTINCT code) FROM rrnet.codes")[0]
    assert total == distinct
    assert sql_one(url, "SELECT count(DISTINCT code) FROM rrnet.code_history") == total
    assert sql_one(url, "SELECT count(*) FROM rrnet.code_history") == sql_one(
        url,
        "SELECT coalesce(sum(c.value::bigint), 0) FROM rrnet.transactions t, "
        "jsonb_each_text(t.counts) c WHERE c.key NOT IN ('notice', 'designated')",
    )
    doubled = sql_rows(
        url,
        "SELECT municipality, resident_id FROM rrnet.codes "
        "WHERE status IN ('assigned', 'carried_over') GROUP BY 1, 2 HAVING count(*) > 1",
    )
    assert doubled == []


def advisory_lock_holders(url: str) -> int:
    """Sessions holding the writers' lock of the ledger (any database of the server)."""
    return int(
        sql_one(
            url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s",
            LOCK_KEY >> 32,
            LOCK_KEY & 0xFFFFFFFF,
        )
    )
