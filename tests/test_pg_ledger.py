"""The PostgreSQL ledger, against a real server (the ``pg_server`` fixture).

What a user notices: ``rrnet ledger init URL`` creates the schema once and
refuses a second time; the database itself refuses a duplicate code and a
second active code for a resident, whoever writes; import then stats count the
same on both backends; every failure to reach or trust the server is exit 2
with the server named and never the password; commands not yet built on
PostgreSQL refuse it plainly.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from backends import LedgerBackend, sql_rows
from helpers import MUNICIPALITY, cli_ok, run_cli
from pgserver import PgServer, free_port
from typer.testing import CliRunner

from rrnet_cli import code as rcode
from rrnet_cli.cli import app
from rrnet_cli.errors import LedgerError, UsageError
from rrnet_cli.importer import import_codes
from rrnet_cli.ledger import (
    Status,
    is_database_location,
    open_store,
    without_password,
)
from rrnet_cli.ledger.postgres import SCHEMA_VERSION, PostgresLedger

#: Valid codes (the spec's test vectors and a few more).
CODES = ["12345678903", "58026173947", "70935378190", "00000000060"]


def valid_codes(n: int, start: int = 1_000_000) -> list[str]:
    """``n`` distinct valid codes: bodies ``start`` .. ``start + n - 1`` with their check digit."""
    return [f"{b:010d}" + rcode.calc_check_digit(f"{b:010d}") for b in range(start, start + n)]


def write_codes(path: Path, codes: list[str]) -> Path:
    path.write_text("".join(f"{c}\n" for c in codes), encoding="utf-8")
    return path


def transactions(url: str) -> int:
    """How many transactions (audit records) the ledger in ``url`` holds."""
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM rrnet.transactions").fetchone()
    assert row is not None
    return int(row[0])


# -- recognising a database ------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "database"),
    [
        ("postgresql://office@db.example:5432/rrnet", True),
        ("postgres://db.example/rrnet", True),
        ("POSTGRESQL://db.example/rrnet", True),
        ("host=db.example dbname=rrnet", True),
        ("service=rrnet", True),
        ("ledger", False),
        ("/srv/rrnet/ledger", False),
        ("./host=odd-folder", False),
        ("postgresql-ledger", False),
    ],
)
def test_a_url_or_keyword_string_names_a_database_anything_else_a_folder(
    location: str, database: bool
) -> None:
    assert is_database_location(location) is database
    assert is_database_location(Path(location)) is False


@pytest.mark.parametrize(
    "location",
    [
        "postgresql://office:s3cret@db.example:5432/rrnet",
        "postgres://office:s3cret@db.example/rrnet?sslmode=require",
        "host=db.example password=s3cret dbname=rrnet",
        "host=db.example password='s3cret with spaces' dbname=rrnet",
        "postgresql://office@db.example/rrnet?password=s3cret",
    ],
)
def test_a_password_is_blanked_out_of_a_location(location: str) -> None:
    shown = without_password(location)
    assert "s3cret" not in shown
    assert "db.example" in shown and "***" in shown


# -- init ------------------------------------------------------------------------


def test_init_creates_the_versioned_schema_with_its_first_audit_record(
    pg_server: PgServer, pg_url: str, runner: CliRunner
) -> None:
    output = cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    assert f"port={pg_server.port}" in output and "for municipality 131016" in output
    meta = sql_rows(pg_url, "SELECT schema_version, municipality FROM rrnet.meta")
    assert meta == [(SCHEMA_VERSION, MUNICIPALITY)]
    (genesis,) = sql_rows(pg_url, "SELECT id, details, prev, command FROM rrnet.transactions")
    assert genesis[:3] == (0, {"municipality": MUNICIPALITY}, "")
    command = " ".join(map(str, genesis[3]))
    assert "ledger init" in command
    assert pg_server.password not in command, "the audit trail never records a password"


def test_a_second_init_is_refused_and_changes_nothing(
    backend: LedgerBackend, runner: CliRunner
) -> None:
    before = backend.contents()
    for municipality in ("139998", MUNICIPALITY):
        code, output = run_cli(runner, "ledger", "init", backend.location, "-m", municipality)
        assert code == 2, output
        assert "never overwritten" in output and "Traceback" not in output
    assert backend.contents() == before
    stats = cli_ok(runner, "ledger", "stats", "--ledger", backend.location, "--json")
    assert '"municipality": "131016"' in stats


# -- the database enforces uniqueness itself -------------------------------------


def test_the_database_refuses_a_duplicate_or_invalid_code_even_through_raw_sql(
    pg_server: PgServer, pg_url: str, runner: CliRunner, tmp_path: Path
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    cli_ok(runner, "ledger", "import", write_codes(tmp_path / "c.txt", CODES), "-l", pg_url)
    with psycopg.connect(pg_url) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "INSERT INTO rrnet.codes (code, status, txn) VALUES (%s, 'retired', 1)",
                (CODES[0],),
            )
    # Codes are integers (leading zeros are display): a wrong check digit, 12 digits
    # or a negative number break the CHECK; anything but digits is not a number.
    for bad in (12345678900, 123456789012, -12345678903):
        with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO rrnet.codes (code, status, txn) VALUES (%s, 'imported', 1)",
                (bad,),
            )
    with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.DataError):
        conn.execute(
            "INSERT INTO rrnet.codes (code, status, txn) VALUES ('1234567890X', 'imported', 1)"
        )
    assert sql_rows(pg_url, "SELECT count(*) FROM rrnet.codes") == [(len(CODES),)]


def test_the_database_refuses_a_second_active_code_for_a_resident(
    pg_server: PgServer, pg_url: str, runner: CliRunner
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    first, second, third = valid_codes(3)
    insert = (
        "INSERT INTO rrnet.codes (code, status, municipality, resident_id, txn) "
        "VALUES (%s, %s, %s, %s, 0)"
    )
    with psycopg.connect(pg_url) as conn:
        conn.execute(insert, (first, "assigned", MUNICIPALITY, "000123"))
    with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(insert, (second, "carried_over", MUNICIPALITY, "000123"))
    with psycopg.connect(pg_url) as conn:  # retired codes and other municipalities are fine
        conn.execute(insert, (second, "retired", MUNICIPALITY, "000123"))
        conn.execute(insert, (third, "assigned", "139998", "000123"))
    with psycopg.connect(pg_url) as conn, pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(insert, (valid_codes(1, start=9)[0], "assigned", MUNICIPALITY, None))


# -- import and stats: the same on both backends ---------------------------------


def test_import_then_stats_count_the_same_on_both_backends(
    backend: LedgerBackend, runner: CliRunner, tmp_path: Path
) -> None:
    location = backend.location
    # 1,000 codes with 10 listed twice; then 500 of them again and 500 new, as retired.
    first = valid_codes(1000)
    again = first[500:] + valid_codes(500, start=2_000_000)
    source = write_codes(tmp_path / "first.txt", first + first[:10])
    result = cli_ok(runner, "ledger", "import", source, "-l", location, "--json")
    assert '"codes_read": 1010' in result and '"imported": 1000' in result
    assert '"already_in_ledger": 0' in result and '"repeated_in_file": 10' in result
    result = cli_ok(
        runner, "ledger", "import", write_codes(tmp_path / "again.txt", again), "-l", location,
        "--retired", "--json",
    )  # fmt: skip
    assert '"imported": 500' in result and '"already_in_ledger": 500' in result
    nothing_new = cli_ok(runner, "ledger", "import", source, "-l", location, "--json")
    assert '"imported": 0' in nothing_new and '"transaction": null' in nothing_new
    stats = open_store(location).stats()
    assert stats["codes_used"] == 1500
    assert stats["by_status"] == {
        "assigned": 0,
        "carried_over": 0,
        "imported": 1000,
        "retired": 500,
    }
    assert stats["transactions"] == 2, "an import that adds nothing commits nothing"
    assert stats["municipality"] == MUNICIPALITY
    table = cli_ok(runner, "ledger", "stats", "-l", location)
    assert "1,500" in table and "size on disk" in table


def test_an_invalid_code_even_in_a_later_batch_leaves_the_ledger_as_it_was(
    backend: LedgerBackend, runner: CliRunner, tmp_path: Path
) -> None:
    before = backend.contents()
    source = write_codes(tmp_path / "codes.txt", [*valid_codes(9), "12345678900"])
    code, output = run_cli(runner, "ledger", "import", source, "-l", backend.location)
    assert code == 2, output
    assert "record 10" in output and "Traceback" not in output
    assert backend.contents() == before
    with pytest.raises(UsageError, match="record 10"):  # three batches: the third one fails
        import_codes(backend.store(), source, status=Status.IMPORTED, batch_rows=3)
    assert backend.contents() == before
    assert backend.store().stats()["codes_used"] == 0
    assert backend.transactions() == 0


def test_a_libpq_keyword_string_and_rrnet_ledger_work_too(
    pg_server: PgServer, runner: CliRunner
) -> None:
    dbname = pg_server.create_database()
    cli_ok(runner, "ledger", "init", pg_server.socket_dsn(dbname), "-m", MUNICIPALITY)
    result = runner.invoke(
        app,
        ["ledger", "stats", "--json"],
        env={"RRNET_LEDGER": pg_server.url(dbname)},
    )
    assert result.exit_code == 0, result.output
    assert '"codes_used": 0' in result.output


# -- errors a person can act on --------------------------------------------------


def refused(runner: CliRunner, location: str, *args: str) -> str:
    """Run ``rrnet ledger stats`` (or ARGS) on ``location``: exit 2, no traceback."""
    code, output = run_cli(runner, *(args or ("ledger", "stats")), "--ledger", location)
    assert code == 2, output
    assert "Traceback" not in output and "internal error" not in output
    return output


def test_a_wrong_password_is_named_never_shown(
    pg_server: PgServer, pg_url: str, runner: CliRunner
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    dbname = pg_url.rsplit("/", 1)[1]
    output = refused(runner, pg_server.url(dbname, password="Wr0ng-Passw0rd"))
    assert "refused the password" in output
    assert f"host=127.0.0.1 port={pg_server.port} dbname={dbname}" in output
    assert "Wr0ng-Passw0rd" not in output and pg_server.password not in output


@pytest.mark.parametrize(
    ("case", "says"),
    [
        ("server down", "is not reachable"),
        ("database missing", "has no such database"),
        ("schema missing", "rrnet ledger init"),
        ("schema too new", "made by a newer rrnet"),
        ("schema too old", "older than this rrnet's"),
    ],
)
def test_each_failure_names_the_server_and_hides_the_password(
    pg_server: PgServer,
    pg_url: str,
    runner: CliRunner,
    tmp_path: Path,
    case: str,
    says: str,
) -> None:
    dbname = pg_url.rsplit("/", 1)[1]
    location, port = pg_url, pg_server.port
    if case == "server down":
        port = free_port()
        location = pg_url.replace(f":{pg_server.port}/", f":{port}/")
    elif case == "database missing":
        dbname = "no_such_database"
        location = pg_server.url(dbname)
    elif case.startswith("schema too"):
        cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
        version = SCHEMA_VERSION + 1 if case.endswith("new") else SCHEMA_VERSION - 1
        pg_server.execute(f"UPDATE rrnet.meta SET schema_version = {version}", dbname)
    source = write_codes(tmp_path / "codes.txt", CODES)
    for args in (("ledger", "stats"), ("ledger", "import", str(source))):
        output = refused(runner, location, *args)
        assert says in output
        assert f"host=127.0.0.1 port={port} dbname={dbname}" in output
        assert pg_server.password not in output
    if case.startswith("schema too"):
        assert transactions(pg_url) == 1, "nothing was written"


def test_a_connection_lost_mid_import_writes_nothing(
    pg_server: PgServer, pg_url: str, runner: CliRunner
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    ledger = PostgresLedger.open(pg_url)
    codes = rcode.strings_to_codes(valid_codes(20))

    def batches() -> Iterator[np.ndarray]:
        yield codes[:10]
        # The server ends the import's session mid-COPY, as a restart or a network cut would.
        pg_server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'rrnet' AND pid <> pg_backend_pid()"
        )
        yield codes[10:]

    with pytest.raises(LedgerError, match="Lost the connection") as raised:
        ledger.import_codes(batches(), status=Status.IMPORTED, inputs=list)
    assert f"port={pg_server.port}" in raised.value.message
    assert pg_server.password not in raised.value.message
    assert ledger.stats()["codes_used"] == 0
    assert transactions(pg_url) == 1, "nothing was written"
