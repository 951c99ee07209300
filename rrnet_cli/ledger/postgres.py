"""The PostgreSQL ledger: one ledger many offices share, the database enforcing uniqueness.

A folder ledger excludes a second writer with an ``flock``, which a network file
system may not honour across machines; a second, empty ledger is exactly how
duplicate codes happen. Here the ledger is a schema (``rrnet``) in a PostgreSQL
database, and the server itself refuses what must never happen:

- ``codes``: one row per code ever used, the code its primary key, so a second
  row for a code is refused whoever inserts it. A CHECK (``is_resident_code``)
  refuses anything but 11 digits with a valid check digit. The row holds the
  code's current status, municipality, resident and the transaction that last
  recorded it.
- ``one_active_code_per_resident``: a partial unique index, so a resident
  (municipality, resident_id) holds at most one assigned or carried-over code.
- ``code_history``: every record ever made (code, status, municipality,
  resident, transaction, time), as the folder ledger keeps every segment.
- ``transactions``: the audit trail, one row per transaction: operator, command
  line, SHA-256 of inputs and outputs (JSONB), counts by status, and the hash of
  the record before it. Each ``hash`` is ``audit.record_hash`` of the record,
  so the rows form the same kind of hash chain as the folder ledger's manifest.
  Transaction 0 records who created the ledger, for which municipality.
- ``meta``: one row, the schema version and the ledger's municipality.

Codes are ``char(11) COLLATE "C"``: text, so leading zeros stay, compared byte
by byte whatever the database's locale. There are no foreign keys from the
per-code tables to ``transactions``: at 100 million codes a per-row check (a
trigger event per row, queued to the commit when deferred) measured longer than
the import itself, and every row is written by the same statement as, and in
the transaction of, its audit record. The CHECK (format and check digit) took
about a fifth of an import of 1 million codes, so it stays: the database
refuses a mistyped code whoever writes it.

The schema is versioned: ``MIGRATIONS`` holds one step per version, each taking
the schema from the version before; ``rrnet ledger init`` applies them all. A
ledger whose version differs from ``SCHEMA_VERSION`` is refused, newer (made by
a later rrnet) or older, rather than misread.

Every command is one database transaction: a client killed or disconnected
mid-run leaves nothing, because the server rolls back what was not committed.
Writers take ``LOCK TABLE transactions IN SHARE ROW EXCLUSIVE MODE`` (it
conflicts with itself and nothing that readers take) for the whole run,
waiting at most ``--lock-timeout``: the audit trail is one chain, so its records
are appended one at a time, and transaction numbers stay 1..n without gaps,
as in the folder ledger.

What works so far: ``rrnet ledger init``, ``stats`` and ``import`` (the file is
streamed with COPY into a temporary table, then inserted). The other commands
refuse a PostgreSQL ledger with a plain message until they are built on it.

A location is recognised as PostgreSQL (``is_database_location``) when it
starts with ``postgresql://`` or ``postgres://``, or with ``word=`` as a libpq
keyword string does (``host=db.example port=5432 dbname=rrnet``). A folder whose
name starts with ``word=`` is given as ``./word=...``. Messages name the server
(host, port, database), never the password.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

import numpy as np
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, LedgerBusy, LedgerError, UsageError
from rrnet_cli.ledger.audit import AuditLog, record_hash
from rrnet_cli.ledger.integrity import IntegrityReport
from rrnet_cli.ledger.interface import (
    Invocation,
    LedgerState,
    LedgerTransaction,
    Status,
    not_yet_supported,
)

#: The schema that holds a ledger, in whichever database the location names.
SCHEMA = "rrnet"
#: The schema version this rrnet reads and writes.
SCHEMA_VERSION = 1

#: One step per schema version: MIGRATIONS[n - 1] takes the schema from version
#: n - 1 to n (version 0: no schema). ``init`` runs them all in one transaction.
MIGRATIONS: tuple[str, ...] = (
    f"""
    CREATE SCHEMA {SCHEMA};
    CREATE TABLE {SCHEMA}.meta (
        one_row boolean PRIMARY KEY DEFAULT true CHECK (one_row),
        schema_version integer NOT NULL,
        municipality char(6) NOT NULL CHECK (municipality ~ '^[0-9]{{6}}$'),
        created_at timestamptz NOT NULL
    );
    -- A valid code: 11 ASCII digits whose last is the check digit of the first 10,
    -- weighted 5 4 3 2 7 6 5 4 3 2 (rrnet_cli/code.py): r = sum mod 11, check digit
    -- 0 if r <= 1 else 11 - r, which ((11 - r) % 11) % 10 is. Integer arithmetic on
    -- the code as a bigint; not STRICT, so that PostgreSQL may inline it.
    CREATE FUNCTION {SCHEMA}.is_resident_code(code text) RETURNS boolean
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN CASE WHEN code ~ '^[0-9]{{11}}$' THEN
            code::bigint % 10 = ((11 - (
                5 * (code::bigint / 10000000000 % 10) + 4 * (code::bigint / 1000000000 % 10)
                + 3 * (code::bigint / 100000000 % 10) + 2 * (code::bigint / 10000000 % 10)
                + 7 * (code::bigint / 1000000 % 10) + 6 * (code::bigint / 100000 % 10)
                + 5 * (code::bigint / 10000 % 10) + 4 * (code::bigint / 1000 % 10)
                + 3 * (code::bigint / 100 % 10) + 2 * (code::bigint / 10 % 10)
            ) % 11) % 11) % 10
        ELSE false END;
    CREATE TABLE {SCHEMA}.transactions (
        id bigint PRIMARY KEY CHECK (id >= 0),
        at timestamptz NOT NULL,
        operator text NOT NULL,
        command jsonb NOT NULL,
        inputs jsonb NOT NULL,
        outputs jsonb NOT NULL,
        counts jsonb NOT NULL,
        details jsonb NOT NULL,
        prev text NOT NULL,
        hash text NOT NULL UNIQUE
    );
    CREATE TABLE {SCHEMA}.codes (
        code char(11) COLLATE "C" PRIMARY KEY CHECK ({SCHEMA}.is_resident_code(code)),
        status text NOT NULL
            CHECK (status IN ('assigned', 'carried_over', 'imported', 'retired')),
        municipality char(6),
        resident_id text,
        txn bigint NOT NULL,
        CHECK (status NOT IN ('assigned', 'carried_over') OR resident_id IS NOT NULL)
    );
    CREATE UNIQUE INDEX one_active_code_per_resident ON {SCHEMA}.codes (municipality, resident_id)
        WHERE status IN ('assigned', 'carried_over');
    CREATE TABLE {SCHEMA}.code_history (
        code char(11) COLLATE "C" NOT NULL,
        status text NOT NULL
            CHECK (status IN ('assigned', 'carried_over', 'imported', 'retired')),
        municipality char(6),
        resident_id text,
        txn bigint NOT NULL,
        recorded_at timestamptz NOT NULL,
        PRIMARY KEY (code, txn)
    );
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION


@dataclass(frozen=True)
class ImportCounts:
    """What an import into the database did, in ``importer.ImportResult``'s terms."""

    codes_read: int
    imported: int
    already_in_ledger: int
    repeated_in_file: int
    #: the transaction it committed as, or None when nothing was new
    transaction: int | None


class PostgresLedger:
    """A ledger in a PostgreSQL database (see the module docstring).

    It holds only where the database is; every operation opens its own
    connection and transaction, so nothing stays open between commands.
    """

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo.strip()
        try:
            self._params = conninfo_to_dict(self.conninfo)
        except psycopg.ProgrammingError:
            raise UsageError(
                "The ledger location is neither a PostgreSQL URL (postgresql://host/dbname) "
                "nor a valid libpq connection string (host=... dbname=...). A folder whose "
                "name starts with word= is given as ./word=..."
            ) from None
        self._municipality: str | None = None

    # -- where it is ------------------------------------------------------------

    @property
    def server(self) -> str:
        """The server and database as messages name them: host, port, dbname, no password."""
        defaults = {o.keyword.decode(): o.val for o in psycopg.pq.Conninfo.get_defaults()}

        def value(key: str, fallback: str) -> str:
            given = self._params.get(key)
            if given not in (None, ""):
                return str(given)
            default = defaults.get(key)
            return default.decode() if default else fallback

        host = value("host", "") or value("hostaddr", "")
        named = make_conninfo(
            port=value("port", "5432"), dbname=value("dbname", value("user", "") or "postgres")
        )
        return f"{make_conninfo(host=host)} {named}" if host else f"(local socket) {named}"

    @property
    def location(self) -> str:
        return f"PostgreSQL {self.server}"

    @property
    def municipality(self) -> str | None:
        if self._municipality is None:
            with self._connect() as conn:
                self._municipality = self._check_schema(conn)
        return self._municipality

    # -- creating and opening ---------------------------------------------------

    @classmethod
    def init(
        cls, conninfo: str, *, municipality: str, invocation: Invocation | None = None
    ) -> PostgresLedger:
        """Create the schema and its first audit record; refuse a database that has one."""
        ledger = cls(conninfo)
        invocation = invocation or Invocation()
        exists = LedgerError(
            f"The database {ledger.server} already has a schema {SCHEMA!r}: it holds a "
            "ledger already (or something else of that name). An existing ledger is never "
            "overwritten."
        )
        try:
            ledger._create(municipality, invocation, exists)
        except psycopg.errors.DuplicateSchema:  # another init won the race
            raise exists from None
        ledger._municipality = municipality
        return ledger

    def _create(self, municipality: str, invocation: Invocation, exists: LedgerError) -> None:
        """Run every migration step and write transaction 0, all in one transaction."""
        with self._connect() as conn, self._errors(), conn.transaction():
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
            ).fetchone()
            if found:
                raise exists
            for step in MIGRATIONS:
                conn.execute(step)
            created = _now()
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.meta (schema_version, municipality, created_at) "
                    "VALUES (%s, %s, %s)"
                ).format(sql.Identifier(SCHEMA)),
                (SCHEMA_VERSION, municipality, created),
            )
            _append_record(
                conn,
                _record(0, created, invocation, prev="", details={"municipality": municipality}),
            )

    @classmethod
    def open(cls, conninfo: str) -> PostgresLedger:
        """Connect once to check that a ledger of this schema version is there."""
        ledger = cls(conninfo)
        with ledger._connect() as conn:
            ledger._municipality = ledger._check_schema(conn)
        return ledger

    def _check_schema(self, conn: psycopg.Connection[Any]) -> str:
        """The ledger's municipality, once its schema is found and of this version."""
        with self._errors():
            found = conn.execute(
                "SELECT to_regclass(%s) IS NOT NULL", (f"{SCHEMA}.meta",)
            ).fetchone()
            if not found or not found[0]:
                raise LedgerError(
                    f"The database {self.server} holds no rrnet ledger (no schema "
                    f"{SCHEMA!r}). Create one with `rrnet ledger init LOCATION -m CODE` "
                    "(only once: a second, empty ledger is how duplicate codes happen)."
                )
            row = conn.execute(
                sql.SQL("SELECT schema_version, municipality FROM {}.meta").format(
                    sql.Identifier(SCHEMA)
                )
            ).fetchone()
        if row is None:
            raise LedgerError(f"The ledger in {self.server} is damaged: its meta row is missing.")
        version, municipality = int(row[0]), str(row[1])
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"The ledger in {self.server} has schema version {version}, made by a newer "
                f"rrnet; this rrnet knows versions up to {SCHEMA_VERSION}. Upgrade rrnet."
            )
        if version < SCHEMA_VERSION:
            raise LedgerError(
                f"The ledger in {self.server} has schema version {version}, older than this "
                f"rrnet's {SCHEMA_VERSION}. Upgrading a schema is not supported yet: use the "
                "rrnet that made it."
            )
        return municipality

    # -- connecting, and errors a person can act on ------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection, closed afterwards; a failure to connect is a plain LedgerError."""
        options: dict[str, Any] = {"application_name": "rrnet"}
        if "connect_timeout" not in self._params:
            options["connect_timeout"] = 10
        try:
            conn = psycopg.connect(self.conninfo, autocommit=True, **options)
        except psycopg.OperationalError as exc:
            raise LedgerError(self._connection_problem(exc)) from None
        with conn:
            yield conn

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn a database failure mid-run into a plain message; the server rolls back."""
        try:
            yield
        except psycopg.errors.LockNotAvailable:
            raise LedgerBusy(
                f"The ledger in {self.server} is in use by another run, which did not "
                "finish within --lock-timeout. Try again when it has finished."
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            raise LedgerError(
                f"The PostgreSQL server {self.server} refused: {self._reason(exc)}. "
                "Nothing was written."
            ) from None
        except psycopg.OperationalError as exc:
            raise LedgerError(
                f"Lost the connection to the PostgreSQL server {self.server} "
                f"({self._reason(exc)}). Nothing was written: the server rolls back an "
                "unfinished run."
            ) from None

    def _reason(self, exc: BaseException) -> str:
        """The server's or libpq's own reason, one line, the password blanked out."""
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        text = lines[0] if lines else type(exc).__name__
        text = re.sub(r"^.*\bfailed: ", "", text)
        password = self._params.get("password")
        if password:
            text = text.replace(str(password), "***")
        return text.removeprefix("FATAL:").strip()

    def _connection_problem(self, exc: psycopg.OperationalError) -> str:
        text = str(exc)
        reason = self._reason(exc)
        if "password authentication failed" in text or "no password supplied" in text:
            return (
                f"The PostgreSQL server {self.server} refused the password ({reason}). "
                "Check the password in your password file (PGPASSFILE, ~/.pgpass) or "
                "service file."
            )
        if re.search(r'database ".*" does not exist', text):
            return (
                f"The PostgreSQL server has no such database: {self.server}. Create the "
                "database first, then the ledger in it with `rrnet ledger init`."
            )
        if re.search(
            r"Connection refused|No such file or directory|timeout expired|"
            r"could not translate host name|Network is unreachable|No route to host",
            text,
        ):
            return (
                f"The PostgreSQL server {self.server} is not reachable ({reason}): is it "
                "running, and are the host and port right?"
            )
        return f"Cannot connect to the PostgreSQL server {self.server}: {reason}."

    # -- reading ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts by current status, transactions, and the schema's size on disk."""
        with self._connect() as conn, self._errors():
            municipality = self._check_schema(conn)
            schema = sql.Identifier(SCHEMA)
            counts: dict[str, int] = {s.value: 0 for s in Status}
            rows = conn.execute(
                sql.SQL("SELECT status, count(*) FROM {}.codes GROUP BY status").format(schema)
            ).fetchall()
            for status, n in rows:
                counts[str(status)] = int(n)
            last = conn.execute(
                sql.SQL("SELECT max(id) FROM {}.transactions").format(schema)
            ).fetchone()
            size = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r'",
                (SCHEMA,),
            ).fetchone()
        return {
            "ledger": self.location,
            "municipality": municipality,
            "transactions": int(last[0]) if last and last[0] is not None else 0,
            "codes_used": sum(counts.values()),
            "by_status": counts,
            "pool": {"mode": "off", "designated": 0, "used": 0, "left": 0},
            "bytes_on_disk": int(size[0]) if size else 0,
        }

    # -- writing --------------------------------------------------------------------

    def import_codes(
        self,
        batches: Iterable[np.ndarray],
        *,
        status: Status,
        inputs: Callable[[], Sequence[Mapping[str, str]]],
        invocation: Invocation | None = None,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> ImportCounts:
        """Add validated codes (uint64 batches) with ``status``, as one transaction.

        The batches are streamed with COPY into a temporary table; one INSERT
        then adds the codes the ledger does not hold (``ON CONFLICT DO
        NOTHING``: the primary key decides), with their history records.
        ``inputs`` is called just before the audit record is written (the
        source's SHA-256 is computed while it is read). Nothing new: nothing is
        committed, as in the folder ledger.
        """
        schema = sql.Identifier(SCHEMA)
        with self._connect() as conn, self._errors():
            self._check_schema(conn)
            with conn.transaction() as txn:
                number, prev = _lock_for_writing(conn, timeout)
                conn.execute(
                    'CREATE TEMP TABLE incoming (code char(11) COLLATE "C" NOT NULL) ON COMMIT DROP'
                )
                read = 0
                with conn.cursor().copy("COPY incoming (code) FROM STDIN") as copy:
                    for codes in batches:
                        copy.write(_copy_lines(codes))
                        read += len(codes)
                found = conn.execute(
                    sql.SQL("SELECT count(*) FROM incoming JOIN {}.codes USING (code)").format(
                        schema
                    )
                ).fetchone()
                already = int(found[0]) if found else 0
                at = _now()
                added = conn.execute(
                    sql.SQL(
                        "WITH added AS ("
                        " INSERT INTO {schema}.codes (code, status, txn)"
                        " SELECT DISTINCT code, %(status)s, %(txn)s FROM incoming ORDER BY code"
                        " ON CONFLICT (code) DO NOTHING RETURNING code)"
                        " INSERT INTO {schema}.code_history (code, status, txn, recorded_at)"
                        " SELECT code, %(status)s, %(txn)s, %(at)s FROM added"
                    ).format(schema=schema),
                    {"status": status.value, "txn": number, "at": at},
                ).rowcount
                counts = ImportCounts(
                    codes_read=read,
                    imported=added,
                    already_in_ledger=already,
                    repeated_in_file=read - already - added,
                    transaction=number if added else None,
                )
                if not added:
                    raise psycopg.Rollback(txn)
                record = _record(
                    number,
                    at,
                    invocation or Invocation(),
                    prev=prev,
                    inputs=inputs(),
                    counts={status.value: added},
                )
                _append_record(conn, record)
        return counts

    # -- what the folder ledger can do and this one cannot yet -------------------

    def snapshot(self) -> LedgerState:
        _refuse("Reading the whole ledger into memory")

    def transaction(
        self, *, timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> contextlib.AbstractContextManager[LedgerTransaction]:
        _refuse("A ledger transaction of this command")

    def retire(
        self,
        codes: list[str],
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        invocation: Invocation | None = None,
    ) -> int:
        _refuse("Retiring codes")

    def check_integrity(self) -> IntegrityReport:
        _refuse("Checking the ledger's integrity (rrnet verify --ledger)")

    def audit_log(self) -> AuditLog:
        _refuse("The audit trail (rrnet ledger log)")


def _refuse(what: str) -> NoReturn:
    raise not_yet_supported(what)


def _now() -> datetime:
    return datetime.now(UTC)


def _lock_for_writing(conn: psycopg.Connection[Any], timeout: float) -> tuple[int, str]:
    """Take the writers' lock (see module doc); this transaction's number and the last hash."""
    schema = sql.Identifier(SCHEMA)
    conn.execute(
        sql.SQL("SET LOCAL lock_timeout = {}").format(
            sql.Literal(f"{max(1, round(timeout * 1000))}ms")
        )
    )
    conn.execute(sql.SQL("LOCK TABLE {}.transactions IN SHARE ROW EXCLUSIVE MODE").format(schema))
    last = conn.execute(
        sql.SQL("SELECT id, hash FROM {}.transactions ORDER BY id DESC LIMIT 1").format(schema)
    ).fetchone()
    if last is None:
        return 0, ""
    return int(last[0]) + 1, str(last[1])


def _record(
    number: int,
    at: datetime,
    invocation: Invocation,
    *,
    prev: str,
    inputs: Sequence[Mapping[str, str]] = (),
    outputs: Sequence[Mapping[str, str]] = (),
    counts: Mapping[str, int] | None = None,
    details: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An audit record as the folder ledger writes one (no segments), sealed by its hash."""
    record: dict[str, Any] = {
        "txn": number,
        "at": at.isoformat(),
        "operator": invocation.operator,
        "command": list(invocation.command),
        "inputs": [{"path": str(d["path"]), "sha256": str(d["sha256"])} for d in inputs],
        "outputs": [{"path": str(d["path"]), "sha256": str(d["sha256"])} for d in outputs],
        **(details or {}),
        "counts": dict(counts or {}),
        "prev": prev,
    }
    record["hash"] = record_hash(record)
    return record


_RECORD_COLUMNS = ("txn", "at", "operator", "command", "inputs", "outputs", "counts", "prev")


def _append_record(conn: psycopg.Connection[Any], record: Mapping[str, Any]) -> None:
    """Write a sealed audit record as a row of ``transactions``."""
    details = {k: v for k, v in record.items() if k not in (*_RECORD_COLUMNS, "hash")}
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.transactions (id, at, operator, command, inputs, outputs, counts, "
            "details, prev, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        ).format(sql.Identifier(SCHEMA)),
        (
            record["txn"],
            datetime.fromisoformat(record["at"]),
            record["operator"],
            Jsonb(record["command"]),
            Jsonb(record["inputs"]),
            Jsonb(record["outputs"]),
            Jsonb(record["counts"]),
            Jsonb(details),
            record["prev"],
            record["hash"],
        ),
    )


#: Powers of ten that split a code into its 11 digits, most significant first.
_DIGIT_PLACES = 10 ** np.arange(10, -1, -1, dtype=np.uint64)


def _copy_lines(codes: np.ndarray) -> bytes:
    """uint64 codes as COPY text: one zero-padded 11-digit code per line, vectorised."""
    codes = np.asarray(codes, dtype=np.uint64)
    lines = np.empty((len(codes), 12), dtype=np.uint8)
    lines[:, :11] = (codes[:, None] // _DIGIT_PLACES) % 10 + ord("0")
    lines[:, 11] = ord("\n")
    return lines.tobytes()
