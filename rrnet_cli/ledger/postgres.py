"""The PostgreSQL ledger: one ledger many offices share, the database enforcing uniqueness.

A folder ledger excludes a second writer with an ``flock``, which a network file
system may not honour across machines; a second, empty ledger is exactly how
duplicate codes happen. Here the ledger is a schema (``rrnet``) in a PostgreSQL
database, and the server itself refuses what must never happen:

- ``codes``: one row per code ever used, the code its primary key, so a second
  row for a code is refused whoever inserts it. A CHECK (``is_resident_code``)
  refuses anything but an 11-digit number with a valid check digit. The row
  holds the code's current status, municipality, resident and the transaction
  that last recorded it.
- ``one_active_code_per_resident``: a partial unique index, so a resident
  (municipality, resident_id) holds at most one assigned or carried-over code.
- ``code_history``: every record ever made (code, status, municipality,
  resident, transaction, time), as the folder ledger keeps every segment. The
  current row repeats the latest record, so a row edited by hand in one table
  no longer matches the other (``check_integrity``).
- ``transactions``: the audit trail, one row per transaction: operator, command
  line, SHA-256 of inputs and outputs (JSONB), counts by status, the
  municipality a run was for, and the hash of the record before it. Each
  ``hash`` is ``audit.record_hash`` of the record, so the rows form the same
  kind of hash chain as the folder ledger's manifest. Transaction 0 records who
  created the ledger, for which municipality.
- ``municipalities``: every municipality the ledger serves, the role its
  office connects as (``add_municipality``), and its pool mode. ``meta``: one
  row, the schema version and the municipality the ledger was created for.
- ``pool``: the codes designated to each municipality (``rrnet ledger
  designate``), each once. A designated code is not a used code: it is free
  until a row of ``codes`` uses it.

A shared ledger: each office connects as its own role. Row-level security
policies (``my_municipalities()``: the municipalities whose office role the
current role is a member of) let it read and record only its own
municipality's rows of ``codes`` and ``code_history``, and read the imported
codes, which name no resident. The view ``code_owners`` (code, status,
municipality; no resident) runs with its owner's rights, so an office's
uniqueness questions (``lookup``) see every code; and the primary key refuses a
code another municipality holds whatever the inserting role can see. The
ledger's owner owns the tables and is not bound by the policies: it imports,
adds municipalities, and checks everything. docs/deployment.md shows the roles.

Codes are ``bigint``: integer comparisons, 8 bytes, and a CHECK that does
arithmetic without parsing text; every code is printed with 11 digits (in SQL,
``lpad(code::text, 11, '0')``). There are no foreign keys from the per-code
tables to ``transactions``: at 100 million codes a per-row check (a trigger
event per row, queued to the commit when deferred) measured longer than the
import itself, and every row is written by the same statement as, and in the
transaction of, its audit record.

The schema is versioned: ``MIGRATIONS`` holds one step per version, each taking
the schema from the version before; ``rrnet ledger init`` applies them all. A
ledger whose version differs from ``SCHEMA_VERSION`` is refused, newer (made by
a later rrnet) or older, rather than misread.

Every command is one database transaction: a client killed or disconnected
mid-run leaves nothing, because the server rolls back what was not committed.

Concurrency (``_lock_for_writing``): every writer takes one transaction-scoped
advisory lock for the whole ledger (``pg_advisory_xact_lock(LOCK_KEY)``) before
it reads anything, and holds it until its commit or rollback; the server drops
it when the client dies or the connection is lost. Why one lock, and not
SERIALIZABLE with retries or a lock per municipality:

- The audit trail is one hash chain with transaction numbers 1..n and no gaps,
  as in the folder ledger: every writer appends to its end, whatever its
  municipality, so writers are serialised at the chain whatever else is done.
  A per-municipality lock would still need this one, taken by every writer.
- Under SERIALIZABLE, two writers always conflict on that chain (both read its
  last record); the loser would redo its whole run (a COPY of a million codes)
  and could lose again under load. Waiting in line does the same work once.
- An assign run classifies its export (who already holds a code) and then
  records; run twice at once on one export, both would see nobody and give
  every resident two codes (the partial unique index would refuse the second
  run, with an error instead of "already assigned"). The lock makes the second
  run see the first's codes.
- An advisory lock, unlike ``LOCK TABLE``, can be tried in slices without
  ending the transaction, so a waiting run says that it waits (after about a
  second) and gives up cleanly at ``--lock-timeout``; and it blocks no reader.

Uniqueness never depends on the lock: the primary key refuses a second row for
a code whoever inserts it, and assign redraws a code the insert refuses
(``record_new``). Writers run in READ COMMITTED, so that each statement after
the lock sees what the run before them committed (a REPEATABLE READ snapshot
would be taken before the wait, and miss it).

Assign (``PostgresTransaction``) never loads the ledger into the client: each
question (``LedgerView``: the owners of the export's codes, the active codes of
its residents, ids that lost their leading zeros, residents no longer listed)
is one query joining a temporary table of the export's ids or codes, filled
with COPY, against the ledger on the server. New codes are drawn in the client
(``assign.draw_codes``, against an empty index: the client knows no used
code), COPYed into a temporary table and inserted with ``INSERT ... ON
CONFLICT (code) DO NOTHING``; the codes refused come back, and assign redraws
only those.

Every command runs here: ``rrnet ledger init``, ``stats``, ``import`` (the file is
streamed with COPY into a temporary table, then inserted), ``add-municipality``,
``upgrade``, ``assign``, ``change`` (``record_change``: an UPDATE retires the
old codes, the new ones go in as assign's do), ``notify`` and ``ledger notices``
(the ``notices`` table; ``notices_of``, ``recorded_times``, ``has_batch``,
``add_notices``), ``ledger designate`` and ``pool-mode`` (the ``pool`` table and
``municipalities.pool_mode``: one pool and one mode per municipality; a run
draws from its municipality's unused designated codes, ``free_pool``, which
come to the client, not the ledger),
``ledger log`` (``audit_log``: each ``transactions`` row
turned back into the record it was sealed from, its chain checked by
``audit.check_records``) and ``verify --ledger`` (``check_integrity``: the chain,
counts and current rows against ``code_history``, and the constraints and
row-level security from the catalog, all as queries on the server; a file's
codes are looked up through ``PostgresView``). What only a folder ledger does
(``snapshot``: the whole ledger in memory) is refused with a plain message.

A location is recognised as PostgreSQL (``is_database_location``) when it
starts with ``postgresql://`` or ``postgres://``, or with ``word=`` as a libpq
keyword string does (``host=db.example port=5432 dbname=rrnet``). A folder whose
name starts with ``word=`` is given as ``./word=...``. Messages name the server
(host, port, database), never the password.
"""

from __future__ import annotations

import configparser
import contextlib
import io
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import polars as pl
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.types.json import Jsonb

from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, LedgerBusy, LedgerError, UsageError
from rrnet_cli.ledger.audit import (
    DRAWN_FROM,
    FIXED_IDS,
    AuditLog,
    audit_details,
    check_records,
    record_hash,
)
from rrnet_cli.ledger.integrity import IntegrityReport
from rrnet_cli.ledger.interface import (
    ACTIVE,
    DESIGNATED,
    POOL_MODE,
    WAIT_NOTICE_AFTER,
    CodeIndex,
    Invocation,
    LedgerState,
    PoolCounts,
    SegmentInfo,
    Status,
    Waiting,
    failpoint,
    first_notices_due,
    not_yet_supported,
    on_off,
)
from rrnet_cli.ledger.notices import NOTICE, NOTICE_SCHEMA, NoticeKind

#: The schema that holds a ledger, in whichever database the location names.
SCHEMA = "rrnet"
#: The schema version this rrnet reads and writes.
SCHEMA_VERSION = 3
#: The advisory lock every writer holds (see the module docstring): one per
#: database, as a database holds one ledger. The bytes of "rrnet" and 1.
LOCK_KEY = 0x72726E6574_01
#: The server's keepalive settings for a writing session (see ``transaction``), seconds.
_KEEPALIVES = (
    ("tcp_keepalives_idle", 30),
    ("tcp_keepalives_interval", 10),
    ("tcp_keepalives_count", 3),
)
#: ``work_mem`` of a writing session (see ``transaction``).
WRITER_WORK_MEM = "128MB"
#: Rows per COPY chunk (and a failpoint after the first: crash tests kill mid-COPY).
COPY_CHUNK = 200_000

#: The municipalities of the current role's office, in a policy: a sub-select, so
#: the server evaluates it once per statement (an InitPlan), not once per row.
_MINE = f"(SELECT {SCHEMA}.my_municipalities())::bpchar[]"

#: In a policy: the current session holds the writers' lock (``LOCK_KEY``).
_HOLDS_THE_LOCK = (
    "EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid()"
    " AND l.locktype = 'advisory' AND l.granted"
    f" AND l.classid = {LOCK_KEY >> 32} AND l.objid = {LOCK_KEY & 0xFFFFFFFF}"
    " AND l.objsubid = 1)"
)

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
    # Version 2: codes as bigint, a shared ledger (municipalities, row-level security).
    # - A code as an 8-byte integer instead of 11 characters: the primary key's
    #   comparisons are integer ones and its index is smaller, and the check-digit
    #   CHECK no longer parses text eleven times a row. An assign of 1 million
    #   codes into a ledger of 10 million spent about a third less time inserting
    #   (benchmarks/bench_assign.py). Leading zeros are a matter of display: rrnet
    #   prints every code with 11 digits; in SQL, lpad(code::text, 11, '0').
    # - municipalities: every municipality the ledger serves, and the database
    #   role its office connects as (NULL: only the ledger's owner writes for it).
    # - Row-level security: an office's role reads and writes only its own
    #   municipality's records (and the imported ones, which name no resident);
    #   the view code_owners shows every code with its status and municipality,
    #   never a resident, so its uniqueness checks see every code. The ledger's
    #   owner, who owns the tables, is not bound by the policies.
    # - transactions.municipality: whom a run was for (NULL: imports and the like).
    f"""
    ALTER TABLE {SCHEMA}.codes DROP CONSTRAINT codes_code_check;
    DROP FUNCTION {SCHEMA}.is_resident_code(text);
    ALTER TABLE {SCHEMA}.codes ALTER COLUMN code TYPE bigint USING code::bigint;
    ALTER TABLE {SCHEMA}.code_history ALTER COLUMN code TYPE bigint USING code::bigint;
    -- code_history is appended to and read whole (integrity checks scan it); its
    -- primary key (code, txn), as large as the codes' own, took about a quarter of
    -- an assign's insert and guarded nothing the per-transaction counts do not.
    ALTER TABLE {SCHEMA}.code_history DROP CONSTRAINT code_history_pkey;
    -- The same rule on the integer: 0 <= code < 10^11, its last digit the check digit.
    CREATE FUNCTION {SCHEMA}.is_resident_code(code bigint) RETURNS boolean
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        RETURN code BETWEEN 0 AND 99999999999 AND code % 10 = ((11 - (
                5 * (code / 10000000000 % 10) + 4 * (code / 1000000000 % 10)
                + 3 * (code / 100000000 % 10) + 2 * (code / 10000000 % 10)
                + 7 * (code / 1000000 % 10) + 6 * (code / 100000 % 10)
                + 5 * (code / 10000 % 10) + 4 * (code / 1000 % 10)
                + 3 * (code / 100 % 10) + 2 * (code / 10 % 10)
            ) % 11) % 11) % 10;
    ALTER TABLE {SCHEMA}.codes ADD CONSTRAINT codes_code_check
        CHECK ({SCHEMA}.is_resident_code(code));
    CREATE TABLE {SCHEMA}.municipalities (
        code char(6) PRIMARY KEY CHECK (code ~ '^[0-9]{{6}}$'),
        office_role name,
        added_txn bigint NOT NULL,
        added_at timestamptz NOT NULL
    );
    INSERT INTO {SCHEMA}.municipalities (code, added_txn, added_at)
        SELECT municipality, 0, created_at FROM {SCHEMA}.meta;
    ALTER TABLE {SCHEMA}.transactions ADD COLUMN municipality char(6);
    -- Version 1 served one municipality: its runs that recorded more than imports.
    UPDATE {SCHEMA}.transactions SET municipality = (SELECT municipality FROM {SCHEMA}.meta)
        WHERE id > 0 AND EXISTS (
            SELECT 1 FROM jsonb_object_keys(counts) k WHERE k <> 'imported');
    -- The municipalities the current role's office may see and write for.
    CREATE FUNCTION {SCHEMA}.my_municipalities() RETURNS char(6)[]
        LANGUAGE sql STABLE
        RETURN ARRAY(SELECT m.code FROM {SCHEMA}.municipalities m
            JOIN pg_roles r ON r.rolname = m.office_role
            WHERE pg_has_role(current_user, r.oid, 'MEMBER'));
    CREATE VIEW {SCHEMA}.code_owners AS
        SELECT code, status, municipality FROM {SCHEMA}.codes;
    ALTER TABLE {SCHEMA}.codes ENABLE ROW LEVEL SECURITY;
    ALTER TABLE {SCHEMA}.code_history ENABLE ROW LEVEL SECURITY;
    CREATE POLICY office_reads ON {SCHEMA}.codes FOR SELECT
        USING (municipality IS NULL OR municipality = ANY ({_MINE}));
    CREATE POLICY office_records ON {SCHEMA}.codes FOR INSERT
        WITH CHECK (municipality = ANY ({_MINE}));
    CREATE POLICY office_takes_over ON {SCHEMA}.codes FOR UPDATE
        USING (municipality IS NULL OR municipality = ANY ({_MINE}))
        WITH CHECK (municipality = ANY ({_MINE}));
    CREATE POLICY office_reads ON {SCHEMA}.code_history FOR SELECT
        USING (municipality IS NULL OR municipality = ANY ({_MINE}));
    CREATE POLICY office_records ON {SCHEMA}.code_history FOR INSERT
        WITH CHECK (municipality = ANY ({_MINE}));
    -- Every notice printed (rrnet_cli/ledger/notices.py): a first notice of a kind
    -- is issued once per code, which a unique index makes the database's rule.
    CREATE TABLE {SCHEMA}.notices (
        code bigint NOT NULL,
        resident_id text NOT NULL,
        municipality char(6),
        kind text NOT NULL CHECK (kind IN ('new', 'change')),
        reprint_reason text
            CHECK (reprint_reason IN ('returned_mail', 'lost', 'address_corrected')),
        batch text NOT NULL,
        file text,
        page integer,
        txn bigint NOT NULL,
        issued_at timestamptz NOT NULL
    );
    -- The audit trail is shared: an office appends its own runs' records only, in
    -- order, while it holds the writers' lock. A record out of order, claiming
    -- another municipality, or written without the lock is refused, so a stray
    -- INSERT cannot cut the chain for everyone; every row stays readable.
    ALTER TABLE {SCHEMA}.transactions ENABLE ROW LEVEL SECURITY;
    CREATE POLICY everyone_reads ON {SCHEMA}.transactions FOR SELECT USING (true);
    CREATE POLICY office_appends ON {SCHEMA}.transactions FOR INSERT WITH CHECK (
        municipality = ANY ({_MINE})
        AND id = (SELECT max(t.id) + 1 FROM {SCHEMA}.transactions t)
        AND prev = (SELECT t.hash FROM {SCHEMA}.transactions t ORDER BY t.id DESC LIMIT 1)
        AND EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = pg_backend_pid()
            AND l.locktype = 'advisory' AND l.granted
            AND l.classid = {LOCK_KEY >> 32} AND l.objid = {LOCK_KEY & 0xFFFFFFFF}
            AND l.objsubid = 1));
    CREATE UNIQUE INDEX one_first_notice ON {SCHEMA}.notices (code, kind)
        WHERE reprint_reason IS NULL;
    CREATE INDEX notices_by_batch ON {SCHEMA}.notices (batch);
    ALTER TABLE {SCHEMA}.notices ENABLE ROW LEVEL SECURITY;
    CREATE POLICY office_reads ON {SCHEMA}.notices FOR SELECT
        USING (municipality = ANY ({_MINE}));
    CREATE POLICY office_records ON {SCHEMA}.notices FOR INSERT
        WITH CHECK (municipality = ANY ({_MINE}));
    """,
    # Version 3: designated pools (住民票コードの指定; rrnet_cli/pool.py), one per
    # municipality, as J-LIS designates them.
    # - pool: each designated code, the municipality it is designated to, and the
    #   transaction that designated it. The primary key designates a code once,
    #   to one municipality. A designated code is not a used code: it is free until
    #   a row of codes uses it, so what is left of a pool is computed (pool minus
    #   codes), never stored. No resident is named, so every office reads every
    #   pool (its designations are checked against all of them); each designates
    #   only to its own municipality, under the writers' lock (as it appends to
    #   the audit trail), and never a code in use.
    # - municipalities.pool_mode: whether that municipality draws new codes only
    #   from its pool. An office changes its own (row-level security on the table,
    #   and a grant on that one column), under the writers' lock; the owner any.
    #   The audit record of the transaction that changed it says so, as a folder
    #   ledger's does.
    # - The audit trail and the notices, as below.
    f"""
    CREATE TABLE {SCHEMA}.pool (
        code bigint PRIMARY KEY CHECK ({SCHEMA}.is_resident_code(code)),
        municipality char(6) NOT NULL,
        txn bigint NOT NULL,
        designated_at timestamptz NOT NULL
    );
    CREATE INDEX pool_by_municipality ON {SCHEMA}.pool (municipality, code);
    ALTER TABLE {SCHEMA}.pool ENABLE ROW LEVEL SECURITY;
    CREATE POLICY everyone_reads ON {SCHEMA}.pool FOR SELECT USING (true);
    CREATE POLICY office_designates ON {SCHEMA}.pool FOR INSERT WITH CHECK (
        municipality = ANY ({_MINE}) AND {_HOLDS_THE_LOCK}
        AND NOT EXISTS (SELECT 1 FROM {SCHEMA}.code_owners o WHERE o.code = pool.code));
    ALTER TABLE {SCHEMA}.municipalities ADD COLUMN pool_mode boolean NOT NULL DEFAULT false;
    ALTER TABLE {SCHEMA}.municipalities ENABLE ROW LEVEL SECURITY;
    CREATE POLICY everyone_reads ON {SCHEMA}.municipalities FOR SELECT USING (true);
    CREATE POLICY office_sets_pool_mode ON {SCHEMA}.municipalities FOR UPDATE
        USING (code = ANY ({_MINE}))
        WITH CHECK (code = ANY ({_MINE}) AND {_HOLDS_THE_LOCK});
    -- An audit record names residents (a code change's resident, codes and the
    -- office's own reason; the command line's --resident), so an office reads
    -- only its own municipality's records and the ledger-wide ones (imports,
    -- municipalities added, upgrades). audit_chain shows every record's number,
    -- time, municipality, counts and hashes, nothing else: what an office needs to
    -- append to the chain and to check its links. The policy that lets an office
    -- append asks audit_chain, which runs with its owner's rights, for the end of
    -- the chain (the table itself now shows an office only its own records).
    CREATE VIEW {SCHEMA}.audit_chain AS
        SELECT id, at, municipality, counts, prev, hash FROM {SCHEMA}.transactions;
    DROP POLICY everyone_reads ON {SCHEMA}.transactions;
    CREATE POLICY office_reads ON {SCHEMA}.transactions FOR SELECT
        USING (municipality IS NULL OR municipality = ANY ({_MINE}));
    DROP POLICY office_appends ON {SCHEMA}.transactions;
    CREATE POLICY office_appends ON {SCHEMA}.transactions FOR INSERT WITH CHECK (
        municipality = ANY ({_MINE})
        AND id = (SELECT max(t.id) + 1 FROM {SCHEMA}.audit_chain t)
        AND prev = (SELECT t.hash FROM {SCHEMA}.audit_chain t ORDER BY t.id DESC LIMIT 1)
        AND {_HOLDS_THE_LOCK});
    -- A notice only of a code the office's own municipality holds, under the lock:
    -- the unique index of first notices spans every ward, so a notice of another
    -- ward's code would block that ward's notify, and trying one would tell
    -- whether that code was ever notified or changed.
    DROP POLICY office_records ON {SCHEMA}.notices;
    CREATE POLICY office_records ON {SCHEMA}.notices FOR INSERT WITH CHECK (
        municipality = ANY ({_MINE}) AND {_HOLDS_THE_LOCK}
        AND EXISTS (SELECT 1 FROM {SCHEMA}.codes c
            WHERE c.code = notices.code AND c.municipality = notices.municipality));
    """,
)
assert len(MIGRATIONS) == SCHEMA_VERSION

#: What an office's role is granted on the ledger (``PostgresLedger.add_municipality``):
#: read every code's owner, the audit chain and the pools; record codes, notices,
#: designations and its pool mode, and read its own audit records and append them,
#: all of which the policies confine to its own municipality.
OFFICE_GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT ON {schema}.meta, {schema}.municipalities, {schema}.code_owners, "
    "{schema}.audit_chain TO {role}",
    "GRANT SELECT, INSERT ON {schema}.transactions TO {role}",
    "GRANT SELECT, INSERT, UPDATE ON {schema}.codes TO {role}",
    "GRANT SELECT, INSERT ON {schema}.code_history TO {role}",
    "GRANT SELECT, INSERT ON {schema}.notices TO {role}",
    "GRANT SELECT, INSERT ON {schema}.pool TO {role}",
    "GRANT UPDATE (pool_mode) ON {schema}.municipalities TO {role}",
)


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
        self._created_for: str | None = None
        self._serves: tuple[str, ...] | None = None
        self._every: tuple[str, ...] = ()
        #: whether the connecting role owns the ledger (row-level security does not bind it)
        self.owner = False

    # -- where it is ------------------------------------------------------------

    @property
    def server(self) -> str:
        """The server and database as messages name them: host, port, dbname, no password."""
        defaults = {o.keyword.decode(): o.val for o in psycopg.pq.Conninfo.get_defaults()}
        service = self._params.get("service") or _env("PGSERVICE")
        params = {**_service_entry(str(service)), **self._params} if service else self._params

        def value(key: str, fallback: str) -> str:
            given = params.get(key)
            if given not in (None, ""):
                return str(given)
            default = defaults.get(key)
            return default.decode() if default else fallback

        host = value("host", "") or value("hostaddr", "")
        named = make_conninfo(
            port=value("port", "5432"), dbname=value("dbname", value("user", "") or "postgres")
        )
        where = f"{make_conninfo(host=host)} {named}" if host else f"(local socket) {named}"
        return f"{where} (service {service})" if service else where

    @property
    def location(self) -> str:
        return f"PostgreSQL {self.server}"

    @property
    def municipality(self) -> str | None:
        """The one municipality this connection writes for; None when it may write for several."""
        serves = self.municipalities
        return serves[0] if len(serves) == 1 else None

    @property
    def municipalities(self) -> tuple[str, ...]:
        """The municipalities this connection may write for: every one the ledger serves
        for its owner, an office's own for an office's role (row-level security)."""
        if self._serves is None:
            with self._connect() as conn:
                self._created_for = self._check_schema(conn)
        return self._serves or ()

    @property
    def served(self) -> tuple[str, ...]:
        """Every municipality the ledger serves (an office reads the list, not their
        residents)."""
        if self._serves is None:
            with self._connect() as conn:
                self._created_for = self._check_schema(conn)
        return self._every

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
        return ledger

    def _create(self, municipality: str, invocation: Invocation, exists: LedgerError) -> None:
        """Run every migration step and write transaction 0, all in one transaction."""
        with self._connect() as conn, self._errors(), conn.transaction():
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (SCHEMA,)
            ).fetchone()
            if found:
                raise exists
            conn.execute(MIGRATIONS[0])
            created = _now()
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.meta (schema_version, municipality, created_at) "
                    "VALUES (1, %s, %s)"
                ).format(sql.Identifier(SCHEMA)),
                (municipality, created),
            )
            _migrate(conn, 1)
            _append_record(
                conn,
                _record(0, created, invocation, prev="", details={"municipality": municipality}),
            )

    def upgrade(
        self, *, invocation: Invocation | None = None, timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> tuple[int, int]:
        """Bring an older ledger's schema to this rrnet's version; (from, to).

        Every step in one transaction under the writers' lock, so a run sees the
        old schema or the new, never half; the audit trail records the upgrade.
        A ledger already at this version is left alone (from == to).
        """
        with self._connect() as conn, self._errors(), conn.transaction():
            version = self._schema_version(conn)
            if version > SCHEMA_VERSION:
                self._check_schema(conn)  # refuses, naming the versions
            if version == SCHEMA_VERSION:
                return version, version
            owns = conn.execute(
                "SELECT pg_has_role(current_user, nspowner, 'MEMBER') FROM pg_namespace "
                "WHERE nspname = %s",
                (SCHEMA,),
            ).fetchone()
            self.owner = bool(owns and owns[0])
            self._owner_only("upgrade", "An office's rrnet waits for the owner's upgrade.")
            number, prev = _lock_for_writing(
                conn, timeout, server=self.server, chain="transactions"
            )
            _migrate(conn, version)
            # What a later version added, every office's role (that still exists) is
            # granted too.
            roles = conn.execute(
                sql.SQL(
                    "SELECT DISTINCT m.office_role FROM {}.municipalities m "
                    "JOIN pg_roles r ON r.rolname = m.office_role ORDER BY 1"
                ).format(sql.Identifier(SCHEMA))
            ).fetchall()
            for (role,) in roles:
                _grant_office(conn, str(role))
            _append_record(
                conn,
                _record(
                    number,
                    _now(),
                    invocation or Invocation(),
                    prev=prev,
                    details={"schema_upgrade": {"from": version, "to": SCHEMA_VERSION}},
                ),
            )
        return version, SCHEMA_VERSION

    @classmethod
    def open(cls, conninfo: str) -> PostgresLedger:
        """Connect once to check that a ledger of this schema version is there."""
        ledger = cls(conninfo)
        with ledger._connect() as conn:
            ledger._created_for = ledger._check_schema(conn)
        return ledger

    def _schema_version(self, conn: psycopg.Connection[Any]) -> int:
        """The ledger's schema version; refuses a database without a ledger."""
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
                sql.SQL("SELECT schema_version FROM {}.meta").format(sql.Identifier(SCHEMA))
            ).fetchone()
        if row is None:
            raise LedgerError(f"The ledger in {self.server} is damaged: its meta row is missing.")
        return int(row[0])

    def _check_schema(self, conn: psycopg.Connection[Any]) -> str:
        """The municipality the ledger was created for, once its schema is of this version.

        Also reads which municipalities this connection's role may write for
        (``municipalities``).
        """
        version = self._schema_version(conn)
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"The ledger in {self.server} has schema version {version}, made by a newer "
                f"rrnet; this rrnet knows versions up to {SCHEMA_VERSION}. Upgrade rrnet."
            )
        if version < SCHEMA_VERSION:
            raise LedgerError(
                f"The ledger in {self.server} has schema version {version}, older than this "
                f"rrnet's {SCHEMA_VERSION}. Upgrade it once, as the ledger's owner, with "
                "`rrnet ledger upgrade --ledger LOCATION` (every office's rrnet must then be this "
                "version or later)."
            )
        schema = sql.Identifier(SCHEMA)
        with self._errors():
            row = conn.execute(
                sql.SQL(
                    "SELECT m.municipality, pg_has_role(current_user, n.nspowner, 'MEMBER'),"
                    " ARRAY(SELECT code::text FROM {schema}.municipalities ORDER BY code),"
                    " {schema}.my_municipalities()::text[]"
                    " FROM {schema}.meta m, pg_namespace n WHERE n.nspname = {name}"
                ).format(schema=schema, name=sql.Literal(SCHEMA))
            ).fetchone()
        if row is None:
            raise LedgerError(f"The ledger in {self.server} is damaged: its meta row is missing.")
        created_for, owner, every, mine = row
        self.owner = bool(owner)
        self._every = tuple(every)
        self._serves = self._every if owner else tuple(sorted(mine))
        self._created_for = str(created_for)
        return self._created_for

    def _owner_only(self, what: str, why: str = "") -> None:
        """Refuse, unless this connection's role owns the ledger (after ``_check_schema``)."""
        if not self.owner:
            raise LedgerError(
                f"Only the ledger's owner may {what} the ledger in {self.server}: connect "
                f"as the role that created it. {why}".rstrip()
            )

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
            reason = self._reason(exc)
            hint = (
                " This role has no access to the ledger: the ledger's owner grants an "
                "office's role with `rrnet ledger add-municipality -m CODE --role ROLE`."
                if f"permission denied for schema {SCHEMA}" in reason
                else ""
            )
            raise LedgerError(
                f"The PostgreSQL server {self.server} refused: {reason}. Nothing was written.{hint}"
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
        if "no password supplied" in text:
            return (
                f"The PostgreSQL server {self.server} asks for a password, and none was "
                "found for this connection: put it in your password file (PGPASSFILE, "
                "~/.pgpass), never on the command line."
            )
        if "password authentication failed" in text:
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

    # -- the municipalities a shared ledger serves ----------------------------------

    def add_municipality(
        self,
        municipality: str,
        *,
        role: str | None = None,
        invocation: Invocation | None = None,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> int:
        """Let the ledger serve ``municipality``, its office connecting as ``role``.

        Only the ledger's owner may. The role (an existing PostgreSQL role, made
        by the database's administrator) is granted ``OFFICE_GRANTS``; the
        row-level security policies then let it read and record only this
        municipality's residents. Naming a role for a municipality the ledger
        already serves sets or changes its role. Returns the transaction that
        recorded it.
        """
        with self._connect() as conn, self._errors(), conn.transaction():
            self._check_schema(conn)
            self._owner_only("add a municipality to")
            if role is not None:
                found = conn.execute(
                    "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = %s", (role,)
                ).fetchone()
                if found is None:
                    raise LedgerError(
                        f"The PostgreSQL server {self.server} has no role {role!r}. Create it "
                        "first (CREATE ROLE ... LOGIN; see docs/deployment.md), then add it."
                    )
                if found[0]:
                    raise UsageError(
                        f"The role {role!r} is a superuser or may bypass row-level security "
                        "(BYPASSRLS), so it would read every municipality's residents. Give "
                        "the office an ordinary role."
                    )
                self._refuse_shared_role(conn, role, municipality)
            schema = sql.Identifier(SCHEMA)
            number, prev = _lock_for_writing(conn, timeout, server=self.server)
            before = conn.execute(
                sql.SQL("SELECT office_role FROM {}.municipalities WHERE code = %s").format(schema),
                (municipality,),
            ).fetchone()
            at = _now()
            if before is None:
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.municipalities (code, office_role, added_txn, added_at) "
                        "VALUES (%s, %s, %s, %s)"
                    ).format(schema),
                    (municipality, role, number, at),
                )
            elif role is None or before[0] == role:
                raise UsageError(
                    f"The ledger in {self.server} already serves municipality {municipality}"
                    + (f" (its office connects as {before[0]})." if before[0] else ".")
                )
            else:
                conn.execute(
                    sql.SQL("UPDATE {}.municipalities SET office_role = %s WHERE code = %s").format(
                        schema
                    ),
                    (role, municipality),
                )
            if role is not None:
                _grant_office(conn, role)
            details: dict[str, Any] = {"added_municipality": municipality, "office_role": role}
            _append_record(
                conn, _record(number, at, invocation or Invocation(), prev=prev, details=details)
            )
        self._serves = None
        return number

    def _refuse_shared_role(
        self, conn: psycopg.Connection[Any], role: str, municipality: str
    ) -> None:
        """Refuse an office role through which one office would read another's residents.

        The policies let a role read every municipality whose office role it is a
        member of (``my_municipalities``), so an office role must be one office's
        alone: not the ledger's owner (row-level security does not bind it), not a
        role another office's role is a member of (a group: its members would
        read this municipality), and not one already serving, or a member of a role
        serving, another municipality.
        """
        row = conn.execute(
            sql.SQL(
                "SELECT pg_has_role(%(role)s, n.nspowner, 'MEMBER'),"
                " ARRAY(SELECT m.code::text FROM {schema}.municipalities m"
                "  JOIN pg_roles r ON r.rolname = m.office_role"
                "  WHERE m.code <> %(m)s AND (pg_has_role(%(role)s, r.oid, 'MEMBER')"
                "   OR pg_has_role(r.oid, (SELECT oid FROM pg_roles WHERE rolname = %(role)s),"
                "    'MEMBER')) ORDER BY 1),"
                " ARRAY(SELECT u.rolname::text FROM pg_auth_members a"
                "  JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles u ON u.oid = a.member"
                "  WHERE g.rolname = %(role)s ORDER BY 1)"
                " FROM pg_namespace n WHERE n.nspname = %(schema_name)s"
            ).format(schema=sql.Identifier(SCHEMA)),
            {"role": role, "m": municipality, "schema_name": SCHEMA},
        ).fetchone()
        owner, others, members = row if row else (False, [], [])
        if owner:
            raise UsageError(
                f"The role {role!r} owns the ledger (or is a member of its owner), and "
                "row-level security does not bind a table's owner: it would read every "
                "municipality's residents. Give the office a role of its own."
            )
        if others:
            raise UsageError(
                f"The role {role!r} already serves municipality {', '.join(others)} (itself, "
                "or through a role it belongs to or that belongs to it), so one office would "
                f"read the other's residents. Give municipality {municipality} a role of "
                "its own."
            )
        if members:
            raise UsageError(
                f"The role {role!r} has member roles ({', '.join(members)}), and each would "
                f"read municipality {municipality}'s residents. Give the office a login "
                "role of its own, not a group."
            )

    # -- reading ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts by current status, transactions, and the schema's size on disk."""
        with self._connect() as conn, self._errors():
            municipality = self._check_schema(conn)
            schema = sql.Identifier(SCHEMA)
            counts: dict[str, int] = {s.value: 0 for s in Status}
            rows = conn.execute(
                sql.SQL("SELECT status, count(*) FROM {}.code_owners GROUP BY status").format(
                    schema
                )
            ).fetchall()
            for status, n in rows:
                counts[str(status)] = int(n)
            last = conn.execute(
                sql.SQL("SELECT max(id) FROM {}.audit_chain").format(schema)
            ).fetchone()
            size = conn.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind = 'r'",
                (SCHEMA,),
            ).fetchone()
            view = PostgresView(self, conn)
            pools = {m: _pool_json(view.pool_counts(m)) for m in self._serves or ()}
            # this role's municipalities' codes drawn with no first notice yet
            due = first_notices_due(view, self._serves or ())
        mine = self.municipality
        return {
            "ledger": self.location,
            # whom this connection works for (None: the owner of several); the counts
            # below are the whole ledger's, every municipality's codes
            "municipality": self.municipality,
            "created_for": municipality,
            "municipalities": list(self._serves or ()),
            "transactions": int(last[0]) if last and last[0] is not None else 0,
            "codes_used": sum(counts.values()),
            "by_status": counts,
            # the pool of the municipality this connection works for; the owner of
            # several sees each one's under "pools" (and "pool" is null)
            "pool": pools.get(mine) if mine is not None else None,
            **({"pools": pools} if mine is None else {}),
            "bytes_on_disk": int(size[0]) if size else 0,
            "first_notice_due": due,
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
            self._owner_only(
                "import codes into", "An office's role records only its own residents' codes."
            )
            with conn.transaction() as txn:
                number, prev = _lock_for_writing(conn, timeout, server=self.server)
                conn.execute("CREATE TEMP TABLE incoming (code bigint NOT NULL) ON COMMIT DROP")
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

    @contextlib.contextmanager
    def transaction(
        self, *, timeout: float = DEFAULT_LOCK_TIMEOUT, waiting: Waiting | None = None
    ) -> Iterator[PostgresTransaction]:
        """One database transaction: lock, ask, record, append the audit record, commit.

        Commits on a clean exit when something was recorded (nothing recorded:
        nothing committed, as in the folder ledger); rolls back on an exception.
        A client killed at any point leaves the server to roll back.
        """
        with self._connect() as conn, self._errors():
            self._check_schema(conn)
            committing = False
            # A client that vanishes without closing its connection (a network cut,
            # not a kill: the kernel closes a killed client's socket) would leave
            # its session, and the writers' lock, to the system's TCP keepalive
            # (hours). These make the server notice within about a minute and
            # roll back (they apply to TCP; a Unix socket cannot be cut that way).
            for setting, seconds in _KEEPALIVES:
                conn.execute(
                    sql.SQL("SET {} = {}").format(sql.Identifier(setting), sql.Literal(seconds))
                )
            # Sorting a million new codes (inserted in code order, for index locality)
            # and matching them with what was inserted fit in memory with this, where
            # the default 4 MB spills both to disk.
            conn.execute(sql.SQL("SET work_mem = {}").format(sql.Literal(WRITER_WORK_MEM)))
            try:
                with conn.transaction() as outer:
                    number, prev = _lock_for_writing(
                        conn, timeout, waiting=waiting, server=self.server
                    )
                    txn = PostgresTransaction(self, conn, number, prev)
                    yield txn
                    if not txn.counts and not txn.settings:
                        raise psycopg.Rollback(outer)
                    _append_record(conn, txn.audit_record())
                    failpoint("pg-before-commit")
                    committing = True
            except psycopg.OperationalError as exc:
                if not committing:
                    raise
                raise LedgerError(
                    f"Lost the connection to the PostgreSQL server {self.server} while "
                    f"committing ({self._reason(exc)}). The run is recorded either whole or "
                    "not at all, and no output was written. Run the same command again: "
                    "residents whose codes were recorded come out as already assigned."
                ) from None
            failpoint("pg-after-commit")

    @contextlib.contextmanager
    def reading(self) -> Iterator[PostgresView]:
        """A consistent view (REPEATABLE READ) without the lock, rolled back at the end."""
        with self._connect() as conn, self._errors():
            self._check_schema(conn)
            with conn.transaction() as txn:
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                yield PostgresView(self, conn)
                raise psycopg.Rollback(txn)

    def notice_records(self) -> tuple[pl.DataFrame, list[Any]]:
        """Every notice this role may see, and the audit trail's records (``ledger notices``)."""
        with self.reading() as view:
            municipality = self._created_for or ""
            notices = view.notices_of_all()
            records = _audit_log(view.conn, municipality).records
        return notices, records

    # -- the audit trail and integrity ---------------------------------------------

    def audit_log(self) -> AuditLog:
        """The audit trail (``transactions``, by id) and a check of its chain.

        Each row is turned back into the record it was sealed from, so
        ``audit.record_hash`` applies unchanged: a row edited in SQL no longer
        matches its hash, and the record after it no longer links to it. The
        codes are not read (``check_integrity`` compares the counts with them).
        """
        with self._connect() as conn, self._errors(), conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            municipality = self._check_schema(conn)
            return _audit_log(conn, municipality)

    def check_integrity(self) -> IntegrityReport:
        """Check the ledger on the server (``rrnet verify --ledger``); nothing is loaded.

        - the audit trail's chain (``audit_log``), and each record's counts
          against the ``code_history`` rows of its transaction;
        - each ``codes`` row against the latest ``code_history`` row of its code
          (status, municipality, resident, transaction), and no code in one
          table only;
        - the database's own guarantees are still in place (``_guarantees``):
          the primary keys, the CHECK constraints (and the check-digit function
          they call), the partial unique index. A DBA could have dropped one;
          where one is gone, what it guaranteed is checked with a query instead.

        One REPEATABLE READ snapshot, so a run committing meanwhile is not half
        seen. Each check is one query streamed on the server: at 130 million
        codes it takes a while, and memory only there.
        """
        report = IntegrityReport()
        with self._connect() as conn, self._errors(), conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # The history is sorted by code once (``_check_current``): with the default
            # 4 MB a sort of 100 million rows merges many runs from disk.
            conn.execute(sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WRITER_WORK_MEM)))
            municipality = self._check_schema(conn)
            history = _history_counts(conn)
            if not self.owner:
                # Row-level security hides other municipalities' records from an
                # office: their runs' counts cannot be compared here (the owner's
                # check compares every run's).
                for number, counts in _hidden_runs(conn, self._serves or ()).items():
                    history[number] = counts
            log = _audit_log(conn, municipality, counts=history)
            for problem in log.problems:
                report.add(TABLE_TRANSACTIONS, problem)
            report.notes.extend(log.notes)
            report.records = sum(
                n for c in history.values() for s, n in c.items() if s not in (NOTICE, DESIGNATED)
            )
            known = {r.get("txn") for r in log.records if isinstance(r, dict)}
            strays = sorted(t for t in history if t not in known)
            if strays:
                report.add(
                    TABLE_HISTORY,
                    f"records of transactions {', '.join(map(str, strays[:10]))} have no audit "
                    "record (added by hand?)",
                )
            _check_current(conn, report)
            _check_notices(conn, report)
            _check_pools(
                conn, log.records, report, municipality, None if self.owner else self._serves
            )
            _guarantees(conn, report)
        return report

    # -- what the folder ledger can do and this one cannot yet -------------------

    def snapshot(self) -> LedgerState:
        _refuse("Reading the whole ledger into memory")

    def retire(
        self,
        codes: list[str],
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        invocation: Invocation | None = None,
    ) -> int:
        _refuse("Retiring codes")


def _migrate(conn: psycopg.Connection[Any], version: int) -> None:
    """Apply the migration steps after ``version``, each recording its version in ``meta``."""
    for number in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute(MIGRATIONS[number - 1])
        conn.execute(
            sql.SQL("UPDATE {}.meta SET schema_version = %s").format(sql.Identifier(SCHEMA)),
            (number,),
        )


def _pool_json(counts: PoolCounts) -> dict[str, Any]:
    """A municipality's pool as ``rrnet ledger stats`` reports it."""
    return {
        "mode": on_off(counts.mode),
        "designated": counts.designated,
        "used": counts.used,
        "left": counts.left,
    }


@contextlib.contextmanager
def _refused_notice(server: str) -> Iterator[None]:
    """A notice the database refuses: a first notice of the code recorded already (the
    unique index), which rrnet's own check before printing rules out, so one
    written outside rrnet."""
    try:
        yield
    except psycopg.errors.UniqueViolation:
        raise LedgerError(
            f"The ledger in {server} already records a first notice of one of these codes, "
            "though rrnet found none before printing: a notice was recorded outside rrnet. "
            "Nothing was recorded and no sheet was handed over. Ask the ledger's owner to "
            "run `rrnet verify --ledger`."
        ) from None


def _grant_office(conn: psycopg.Connection[Any], role: str) -> None:
    """Grant an office's role ``OFFICE_GRANTS``."""
    for grant in OFFICE_GRANTS:
        conn.execute(
            sql.SQL(grant).format(schema=sql.Identifier(SCHEMA), role=sql.Identifier(role))
        )


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _service_entry(name: str) -> dict[str, str]:
    """The settings of connection service ``name`` as libpq reads them (for messages):
    the user's service file (PGSERVICEFILE, else ~/.pg_service.conf), then the
    system's (PGSYSCONFDIR/pg_service.conf); the first that has it wins."""
    candidates = [Path(_env("PGSERVICEFILE") or Path.home() / ".pg_service.conf")]
    sysconf = _env("PGSYSCONFDIR")
    if sysconf:
        candidates.append(Path(sysconf) / "pg_service.conf")
    for path in candidates:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read(path, encoding="utf-8")
        except (OSError, configparser.Error, UnicodeDecodeError):
            continue
        if parser.has_section(name):
            return {k: v for k, v in parser.items(name) if k != "password"}
    return {}


def _refuse(what: str) -> NoReturn:
    raise not_yet_supported(what)


def _now() -> datetime:
    return datetime.now(UTC)


def _set_lock_timeout(conn: psycopg.Connection[Any], seconds: float) -> None:
    conn.execute(
        sql.SQL("SET LOCAL lock_timeout = {}").format(
            sql.Literal(f"{max(1, round(seconds * 1000))}ms")
        )
    )


def _lock_for_writing(
    conn: psycopg.Connection[Any],
    timeout: float,
    *,
    server: str,
    waiting: Waiting | None = None,
    chain: str = "audit_chain",
) -> tuple[int, str]:
    """Take the writers' lock (see module doc); this transaction's number and the last hash.

    The end of the chain is read from ``chain``: ``audit_chain``, which shows an
    office every record's number and hash; ``transactions`` itself for an upgrade
    from a version that has no ``audit_chain`` yet (only the owner upgrades).

    The lock is asked for in slices of at most ``WAIT_NOTICE_AFTER`` seconds, each
    in a savepoint (a slice that times out ends only the savepoint), so that
    ``waiting`` hears after the first slice that this run waits, and the wait
    ends at ``timeout`` with ``LedgerBusy``. Blocking slices keep the run's
    place in the server's queue of waiters while it waits.
    """
    schema = sql.Identifier(SCHEMA)
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        left = deadline - time.monotonic()
        try:
            with conn.transaction():
                _set_lock_timeout(conn, max(0.001, min(WAIT_NOTICE_AFTER, left)))
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            break
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() >= deadline:
                raise LedgerBusy(
                    f"The ledger in {server} is in use by another run, which did not "
                    f"finish within --lock-timeout ({timeout:g} s). Try again when it has "
                    "finished."
                ) from None
            if waiting is not None and not announced:
                announced = True
                waiting(
                    f"Waiting for the ledger in {server}: another run "
                    f"({_lock_holder(conn)}) is writing to it; waiting up to {timeout:g} s "
                    "(--lock-timeout)."
                )
    # Later statements wait for no lock of ours; bound them like the wait anyway.
    _set_lock_timeout(conn, max(0.001, timeout))
    last = conn.execute(
        sql.SQL("SELECT id, hash FROM {}.{} ORDER BY id DESC LIMIT 1").format(
            schema, sql.Identifier(chain)
        )
    ).fetchone()
    if last is None:
        return 0, ""
    return int(last[0]) + 1, str(last[1])


def _lock_holder(conn: psycopg.Connection[Any]) -> str:
    """Who holds the writers' lock, as far as this role may see: its application,
    server process and since when; or "another session"."""
    row = conn.execute(
        "SELECT a.application_name, a.pid, a.xact_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted "
        "AND l.classid = %s AND l.objid = %s AND l.objsubid = 1",
        (LOCK_KEY >> 32, LOCK_KEY & 0xFFFFFFFF),
    ).fetchone()
    if row is None:
        return "another session"
    app, pid, since = row
    when = f", since {since.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" if since else ""
    return f"{app or 'a client'}, server process {pid}{when}"


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


def _append_record(
    conn: psycopg.Connection[Any], record: Mapping[str, Any], *, whose: str | None = None
) -> None:
    """Write a sealed audit record as a row of ``transactions``.

    Its ``municipality`` (whom the run was for; part of the sealed record) is
    also a column: the row-level security shows a record to that municipality's
    office only, and an office's integrity check selects its own runs by it.
    ``whose`` sets the column for a record that does not name a municipality
    (one made in a folder ledger, copied here: ``copy.record_owner``).
    """
    details = {k: v for k, v in record.items() if k not in (*_RECORD_COLUMNS, "hash")}
    conn.execute(
        sql.SQL(
            "INSERT INTO {}.transactions (id, at, operator, command, inputs, outputs, counts, "
            "details, prev, hash, municipality) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
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
            record.get("municipality") or whose,
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


# ---------------------------------------------------------------------------
# Assign on the server: the ledger's questions as queries, its records as COPY


#: The temporary tables a view fills: resident ids, codes to look up, new records.
_TEMP_TABLES = {
    "rrnet_ids": "resident_id text NOT NULL",
    "rrnet_probe": "code bigint NOT NULL",
    "rrnet_pool": "code bigint NOT NULL",
    "rrnet_new": (
        "code bigint NOT NULL, status text NOT NULL, municipality char(6), resident_id text"
    ),
    "rrnet_notices": (
        "code bigint NOT NULL, resident_id text NOT NULL, municipality char(6), "
        "kind text NOT NULL, reprint_reason text, batch text NOT NULL, file text, page integer"
    ),
}

#: A timestamptz as milliseconds since the epoch (read back as ``Datetime("ms", "UTC")``).
_EPOCH_MS = "(extract(epoch FROM {0}) * 1000)::bigint"

#: A resident id without its leading zeros, as ``interface.without_leading_zeros``.
_STRIPPED = "CASE WHEN ltrim({0}, '0') = '' THEN '0' ELSE ltrim({0}, '0') END"

_ACTIVE_SQL = sql.SQL(", ").join(sql.Literal(s) for s in ACTIVE)


class PostgresView:
    """``LedgerView`` on an open connection: each question is one query on the server.

    The ids or codes asked about go into a temporary table (COPY, then ANALYZE
    so the planner knows its size), which the query joins against ``codes``
    through its indexes: the primary key for codes, the partial unique index
    (municipality, resident_id) for active codes. Only the answers come back.
    """

    def __init__(self, ledger: PostgresLedger, conn: psycopg.Connection[Any]) -> None:
        self.ledger = ledger
        self.conn = conn
        self._made: set[str] = set()
        self._ids: pl.Series | None = None

    # -- LedgerView -------------------------------------------------------------

    @property
    def record_count(self) -> int:
        """Records ever made: the sum of every audit record's counts (no scan of codes)."""
        row = self.conn.execute(
            sql.SQL(
                "SELECT coalesce(sum(c.value::bigint), 0) FROM {}.audit_chain t, "
                "jsonb_each_text(t.counts) c WHERE c.key NOT IN ({}, {})"
            ).format(sql.Identifier(SCHEMA), sql.Literal(NOTICE), sql.Literal(DESIGNATED))
        ).fetchone()
        return int(row[0]) if row else 0

    @property
    def used_codes(self) -> CodeIndex:
        """None: the client never holds the used codes; ``record_new`` reports conflicts."""
        return CodeIndex([])

    # -- designated pools: ``pool`` (everyone reads it) against ``code_owners``

    def pool_mode_of(self, municipality: str) -> bool:
        """The municipality's pool mode; refused (``LedgerError``) when it is not the
        one the audit trail set last, as after an UPDATE by hand: drawing by a mode
        nobody recorded could draw outside the pool without a trace."""
        counts = self._modes(municipality)
        if counts[0] != counts[1]:
            raise LedgerError(
                f"The pool mode of municipality {municipality} in {self.ledger.server} is "
                f"{on_off(counts[0])}, but the audit trail last set it {on_off(counts[1])}: "
                "it was changed outside rrnet. Nothing was drawn or written. Set it with "
                "`rrnet ledger pool-mode on|off`, which records it, and check the ledger "
                "with `rrnet verify --ledger`."
            )
        return counts[0]

    def _modes(self, municipality: str) -> tuple[bool, bool]:
        """The municipality's pool mode as stored, and as its last audit record set it."""
        row = self.conn.execute(
            sql.SQL(
                "SELECT coalesce((SELECT pool_mode FROM {schema}.municipalities"
                "  WHERE code = %(m)s), false),"
                " coalesce((SELECT (t.details->>{key})::boolean FROM {schema}.transactions t"
                "  WHERE t.municipality = %(m)s AND t.details ? {key}"
                "  ORDER BY t.id DESC LIMIT 1), false)"
            ).format(schema=sql.Identifier(SCHEMA), key=sql.Literal(POOL_MODE)),
            {"m": municipality},
        ).fetchone()
        return (bool(row[0]), bool(row[1])) if row else (False, False)

    def pool_counts(self, municipality: str) -> PoolCounts:
        """The pool's size and use, and the municipality's assigned codes outside it
        drawn since its first designation (through the partial index of its active
        codes), in one query; and the mode."""
        row = self.conn.execute(
            sql.SQL(
                "SELECT (SELECT count(*) FROM {schema}.pool WHERE municipality = %(m)s),"
                " (SELECT count(*) FROM {schema}.pool p JOIN {schema}.code_owners o"
                "  USING (code) WHERE p.municipality = %(m)s),"
                " (SELECT count(*) FROM {schema}.codes c WHERE c.municipality = %(m)s"
                "  AND c.status = 'assigned' AND c.resident_id IS NOT NULL"
                "  AND c.txn > (SELECT min(p.txn) FROM {schema}.pool p"
                "   WHERE p.municipality = %(m)s)"
                "  AND NOT EXISTS (SELECT 1 FROM {schema}.pool p"
                "   WHERE p.code = c.code AND p.municipality = %(m)s))"
            ).format(schema=sql.Identifier(SCHEMA)),
            {"m": municipality},
        ).fetchone()
        designated, used, outside = row if row else (0, 0, 0)
        mode, recorded = self._modes(municipality)
        return PoolCounts(
            mode=mode,
            designated=int(designated),
            used=int(used),
            assigned_outside=int(outside),
            recorded_mode=recorded,
        )

    def free_pool(self, municipality: str) -> np.ndarray:
        """The codes designated to ``municipality`` that no row of ``codes`` uses,
        sorted: a municipality's pool, not the ledger, comes to the client."""
        free = self._frame(
            sql.SQL(
                "SELECT p.code FROM {schema}.pool p WHERE p.municipality = {m}"
                " AND NOT EXISTS (SELECT 1 FROM {schema}.code_owners o WHERE o.code = p.code)"
                " ORDER BY p.code"
            ).format(schema=sql.Identifier(SCHEMA), m=sql.Literal(municipality)),
            ["code"],
        )
        return free["code"].cast(pl.UInt64).to_numpy().astype(np.uint64)

    def designated(self, codes: np.ndarray) -> pl.Series:
        return self._probe(
            codes,
            "SELECT p.code, p.municipality FROM rrnet_probe q JOIN {schema}.pool p USING (code)",
            ["code", "municipality"],
        )["municipality"]

    def outside_pool(self, codes: np.ndarray) -> np.ndarray:
        # A code drawn before the municipality's first designation is exempt: there
        # was no pool to draw from. Its transaction is read from ``codes``, which an
        # office's role sees for its own municipality only; another's code, whose
        # transaction it cannot see, is flagged as before.
        found = self._probe(
            codes,
            "SELECT o.code, true FROM rrnet_probe q JOIN {schema}.code_owners o USING (code)"
            " JOIN {schema}.municipalities m ON m.code = o.municipality AND m.pool_mode"
            " WHERE o.status = 'assigned' AND NOT EXISTS (SELECT 1 FROM {schema}.pool p"
            "  WHERE p.code = o.code AND p.municipality = o.municipality)"
            " AND NOT EXISTS (SELECT 1 FROM {schema}.codes c WHERE c.code = o.code"
            "  AND c.txn < (SELECT min(p.txn) FROM {schema}.pool p"
            "   WHERE p.municipality = o.municipality))",
            ["code", "outside"],
        )
        return found["outside"].is_not_null().to_numpy()

    def lookup(self, codes: np.ndarray) -> pl.DataFrame:
        # code_owners shows every code's status and municipality; the resident
        # comes from codes, where an office's role sees only its own residents
        # (another municipality's code reads as held there, by someone unnamed).
        return self._probe(
            codes,
            "SELECT o.code, o.status, o.municipality, c.resident_id "
            "FROM rrnet_probe p JOIN {schema}.code_owners o USING (code) "
            "LEFT JOIN {schema}.codes c ON c.code = o.code",
            ["code", "status", "municipality", "resident_id"],
        )

    def active_codes(self, municipality: str, resident_ids: pl.Series) -> pl.DataFrame:
        self._fill_ids(resident_ids)
        return self._joined(
            sql.SQL(
                "SELECT i.resident_id, c.code, c.status FROM rrnet_ids i "
                "JOIN {}.codes c ON c.resident_id = i.resident_id "
                "WHERE c.municipality = {} AND c.status IN ({})"
            ).format(sql.Identifier(SCHEMA), sql.Literal(municipality), _ACTIVE_SQL),
            ["resident_id", "code", "status"],
        ).with_columns(pl.col("code").cast(pl.UInt64))

    def lost_zeros(self, municipality: str, resident_ids: pl.Series) -> pl.DataFrame:
        if resident_ids.is_empty():
            return pl.DataFrame(schema={"resident_id": pl.String, "ledger_id": pl.String})
        self._fill_ids(resident_ids)
        schema, here = sql.Identifier(SCHEMA), sql.Literal(municipality)
        return self._joined(
            sql.SQL(
                "SELECT DISTINCT i.resident_id, c.resident_id FROM rrnet_ids i"
                " JOIN {schema}.codes c ON c.municipality = {here}"
                " AND c.status IN ({active}) AND {stripped_c} = {stripped_i}"
                " WHERE NOT EXISTS ("
                " SELECT 1 FROM {schema}.codes k WHERE k.municipality = {here}"
                " AND k.status IN ({active}) AND k.resident_id = i.resident_id)"
            ).format(
                schema=schema,
                here=here,
                active=_ACTIVE_SQL,
                stripped_c=sql.SQL(_STRIPPED.format("c.resident_id")),
                stripped_i=sql.SQL(_STRIPPED.format("i.resident_id")),
            ),
            ["resident_id", "ledger_id"],
        )

    def departed(self, municipality: str, listed: pl.Series) -> pl.DataFrame:
        self._fill_ids(listed.drop_nulls())
        return self._joined(
            sql.SQL(
                "SELECT c.resident_id, c.code, c.status FROM {}.codes c "
                "WHERE c.municipality = {} AND c.status IN ({}) AND NOT EXISTS ("
                " SELECT 1 FROM rrnet_ids i WHERE i.resident_id = c.resident_id)"
            ).format(sql.Identifier(SCHEMA), sql.Literal(municipality), _ACTIVE_SQL),
            ["resident_id", "code", "status"],
        ).with_columns(pl.col("code").cast(pl.UInt64))

    def known_residents(self, municipality: str, resident_ids: pl.Series) -> pl.Series:
        """Ids with any code recorded here: an active one (the partial index), else a
        retired one (a scan of the municipality's codes, for the few left)."""
        self._fill_ids(resident_ids)
        return self._joined(
            sql.SQL(
                "SELECT DISTINCT i.resident_id FROM rrnet_ids i JOIN {}.codes c"
                " ON c.resident_id = i.resident_id WHERE c.municipality = {}"
            ).format(sql.Identifier(SCHEMA), sql.Literal(municipality)),
            ["resident_id"],
        )["resident_id"]

    # -- what notify asks -----------------------------------------------------------

    def recorded_times(self, codes: np.ndarray) -> pl.DataFrame:
        return self._probe(
            codes,
            "SELECT c.code, " + _EPOCH_MS.format("t.at") + " FROM rrnet_probe p"
            " JOIN {schema}.codes c USING (code) JOIN {schema}.transactions t ON t.id = c.txn",
            ["code", "recorded_at"],
        ).with_columns(_utc_ms("recorded_at"))

    def notices_of(self, codes: np.ndarray) -> pl.DataFrame:
        self._fill_probe(codes)
        return self._notices("FROM rrnet_probe p JOIN {schema}.notices n USING (code)")

    def notices_of_all(self) -> pl.DataFrame:
        """Every notice this role may see (row-level security: an office's own)."""
        return self._notices("FROM {schema}.notices n")

    def _notices(self, source: str) -> pl.DataFrame:
        columns = [f.name for f in NOTICE_SCHEMA]
        found = self._frame(
            sql.SQL(
                "SELECT n.code, n.resident_id, n.municipality, n.kind, n.reprint_reason,"
                " n.batch, n.file, n.page, n.txn, {at} " + source
            ).format(schema=sql.Identifier(SCHEMA), at=sql.SQL(_EPOCH_MS.format("n.issued_at"))),
            columns,
        )
        frame = pl.from_arrow(
            found.with_columns(_utc_ms("issued_at")).to_arrow().cast(NOTICE_SCHEMA)
        )
        assert isinstance(frame, pl.DataFrame)
        return frame

    def has_batch(self, batch: str) -> bool:
        row = self.conn.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {}.notices WHERE batch = %s)").format(
                sql.Identifier(SCHEMA)
            ),
            (batch,),
        ).fetchone()
        return bool(row and row[0])

    def first_notice_due(
        self, municipality: str, resident_ids: pl.Series | None = None
    ) -> pl.DataFrame:
        """One query: the municipality's ``assigned`` codes (through the partial index of
        its active codes, joined with ``rrnet_ids`` when ids are given), less those with
        a first notice (the unique index of first notices) and the new codes of code
        changes (read from the change runs' audit records: few rows, each a small
        list). Its cost is the municipality's active codes, never the history."""
        schema = sql.Identifier(SCHEMA)
        among = sql.SQL("")
        if resident_ids is not None:
            self._fill_ids(resident_ids)
            among = sql.SQL(" AND c.resident_id IN (SELECT i.resident_id FROM rrnet_ids i)")
        return (
            self._frame(
                sql.SQL(
                    "WITH changed AS MATERIALIZED ("
                    " SELECT (ch ->> 'new_code')::bigint AS code FROM {schema}.transactions t"
                    " CROSS JOIN LATERAL jsonb_array_elements(t.details -> 'changes') ch"
                    " WHERE t.municipality = {m} AND t.counts ? 'retired'"
                    " AND jsonb_typeof(t.details -> 'changes') = 'array')"
                    " SELECT c.resident_id, c.code FROM {schema}.codes c"
                    " WHERE c.municipality = {m} AND c.status = 'assigned'{among}"
                    " AND NOT EXISTS (SELECT 1 FROM {schema}.notices n WHERE n.code = c.code"
                    "  AND n.kind = 'new' AND n.reprint_reason IS NULL)"
                    " AND NOT EXISTS (SELECT 1 FROM changed x WHERE x.code = c.code)"
                ).format(schema=schema, m=sql.Literal(municipality), among=among),
                ["resident_id", "code"],
            )
            .with_columns(pl.col("code").cast(pl.UInt64))
            .sort("resident_id")
        )

    # -- temporary tables and results --------------------------------------------

    def _fill_probe(self, codes: np.ndarray) -> pl.DataFrame:
        """``rrnet_probe`` holds these codes (each once); the codes as asked, in order."""
        query = pl.DataFrame({"code": np.asarray(codes, dtype=np.uint64)})
        self._fill("rrnet_probe", query.unique())
        return query

    def _probe(self, codes: np.ndarray, query: str, columns: list[str]) -> pl.DataFrame:
        """``query`` (``{schema}`` for the ledger's schema) about these codes, joined
        through ``rrnet_probe``: its ``columns`` (the first ``code``) for each code as
        asked, in order; null where the query found nothing."""
        asked = self._fill_probe(codes)
        found = self._frame(
            sql.SQL(query).format(schema=sql.Identifier(SCHEMA)), columns
        ).with_columns(pl.col("code").cast(pl.UInt64))
        return asked.join(found, on="code", how="left", maintain_order="left")

    def _fill_ids(self, resident_ids: pl.Series) -> None:
        """``rrnet_ids`` holds exactly these ids (kept when asked about the same ids again)."""
        if self._ids is not None and self._ids.equals(resident_ids):
            return
        self._fill("rrnet_ids", resident_ids.rename("resident_id").to_frame())
        self._ids = resident_ids

    def _fill(self, table: str, frame: pl.DataFrame) -> None:
        """Empty the temporary ``table`` (made on first use), COPY ``frame`` into it.

        CSV, because it carries any text a resident id may hold (commas, quotes,
        line breaks) and tells NULL (an empty field) from an empty string ("").
        The crash tests kill the client after the first chunk, mid-COPY
        (failpoint ``pg-mid-copy:TABLE``).
        """
        name = sql.Identifier(table)
        if table not in self._made:
            self.conn.execute(
                sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
                    name, sql.SQL(_TEMP_TABLES[table])
                )
            )
            self._made.add(table)
        else:
            self.conn.execute(sql.SQL("TRUNCATE {}").format(name))
        columns = sql.SQL(", ").join(map(sql.Identifier, frame.columns))
        with self.conn.cursor().copy(
            sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(name, columns)
        ) as copy:
            for start in range(0, frame.height, COPY_CHUNK):
                copy.write(frame.slice(start, COPY_CHUNK).write_csv(include_header=False))
                failpoint(f"pg-mid-copy:{table}")
        self.conn.execute(sql.SQL("ANALYZE {}").format(name))

    def _joined(self, query: sql.Composable, columns: list[str]) -> pl.DataFrame:
        """``_frame`` for a query joining a municipality's active codes with ``rrnet_ids``.

        Without nested loops: both sides are read whole anyway (the partial index
        gives the municipality's active codes), so a hash join is right whatever
        their sizes. The planner, left to itself, chose a nested loop when its
        statistics were older than the last runs' codes (a municipality's first
        codes, before the server analysed the table again): 20,000 residents
        against 20,000 codes then took 13 s instead of 14 ms, and a million
        would take hours. An office's role may not ANALYZE the table itself.
        """
        self.conn.execute("SET LOCAL enable_nestloop = off")
        try:
            return self._frame(query, columns)
        finally:
            self.conn.execute("SET LOCAL enable_nestloop = on")

    def _frame(self, query: sql.Composable, columns: list[str]) -> pl.DataFrame:
        """A query's rows as text columns, streamed with COPY TO (fast for many rows)."""
        buffer = io.BytesIO()
        with self.conn.cursor().copy(
            sql.SQL("COPY ({}) TO STDOUT WITH (FORMAT csv)").format(query)
        ) as copy:
            for block in copy:
                buffer.write(block)
        if not buffer.tell():
            return pl.DataFrame(schema={c: pl.String for c in columns})
        buffer.seek(0)
        return pl.read_csv(
            buffer,
            has_header=False,
            new_columns=columns,
            schema={c: pl.String for c in columns},
        )


class PostgresTransaction(PostgresView):
    """An assign run's database transaction (``LedgerTransaction``), lock held.

    Records go straight into ``codes`` and ``code_history`` inside the
    transaction; nothing is visible to anyone else until the commit, and a
    rollback (or a dead client) leaves nothing.
    """

    def __init__(
        self, ledger: PostgresLedger, conn: psycopg.Connection[Any], number: int, prev: str
    ) -> None:
        super().__init__(ledger, conn)
        self.number = number
        self.prev = prev
        self.recorded_at = _now()
        self.invocation = Invocation()
        self.audit: dict[str, Any] = {"inputs": [], "outputs": []}
        #: records made, by status: the audit record's counts
        self.counts: dict[str, int] = {}
        #: whom the run records for (the first record's municipality)
        self.municipality: str | None = None
        #: settings this transaction changes (``pool_mode``); its audit record says so
        self.settings: dict[str, Any] = {}

    @property
    def state(self) -> LedgerState:
        _refuse("Reading the whole ledger into memory")

    def view(self) -> PostgresTransaction:
        return self

    def describe(
        self,
        invocation: Invocation | None = None,
        *,
        inputs: Sequence[Mapping[str, str]] = (),
        outputs: Sequence[Mapping[str, str]] = (),
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.audit = audit_details(inputs, outputs, details)
        if invocation is not None:
            self.invocation = invocation

    def audit_record(self) -> dict[str, Any]:
        """This transaction's audit record, chained to the last one and sealed."""
        extra = {k: v for k, v in self.audit.items() if k not in ("inputs", "outputs")}
        extra.update(self.settings)
        if self.municipality is not None:
            extra["municipality"] = self.municipality
        return _record(
            self.number,
            self.recorded_at,
            self.invocation,
            prev=self.prev,
            inputs=self.audit["inputs"],
            outputs=self.audit["outputs"],
            counts=self.counts,
            details=extra or None,
        )

    def _note_municipality(self, frame: pl.DataFrame) -> None:
        """Whom the run records for (its audit record's ``municipality``): the first
        municipality its records name."""
        named = frame["municipality"].drop_nulls()
        if self.municipality is None and len(named):
            self.municipality = str(named[0])

    def _stage_records(self, records: pl.DataFrame) -> pl.DataFrame:
        """Code records as ``rrnet_new`` holds them, COPYed there; the frame."""
        frame = records.select(
            pl.col("code").cast(pl.UInt64),
            pl.col("status").cast(pl.String),
            pl.col("municipality").cast(pl.String),
            pl.col("resident_id").cast(pl.String),
        )
        self._note_municipality(frame)
        self._fill("rrnet_new", frame)
        return frame

    def record_new(self, records: pl.DataFrame) -> np.ndarray:
        """COPY the records into ``rrnet_new``, record them; the codes refused.

        1. A carried-over code the ledger holds as imported becomes this
           resident's: one UPDATE of those rows (their imported record stays in
           ``code_history``), and they leave ``rrnet_new``.
        2. One INSERT of the rest, ``ON CONFLICT (code) DO NOTHING``: the primary
           key refuses a code the ledger holds, whoever else is writing, and
           whatever the row-level security lets this role see. Every row it
           wrote is copied to ``code_history`` in the same statement, and the
           codes of ``rrnet_new`` it did not write come back: the conflicts, for
           assign to redraw. (A code of another municipality's, which an
           office's role cannot see, is among them, as it should be.) A new
           code designated to another municipality is not written either: it
           is theirs to draw, though unused. (A carried-over one is: its
           resident brought it.)
        """
        if records.height == 0:
            return np.empty(0, np.uint64)
        frame = self._stage_records(records)
        schema = sql.Identifier(SCHEMA)
        txn, at = sql.Literal(self.number), sql.Literal(self.recorded_at)
        if (frame["status"] == Status.CARRIED_OVER.value).any():
            self.conn.execute(
                sql.SQL(
                    "WITH taken AS ("
                    " UPDATE {schema}.codes c SET status = n.status,"
                    " municipality = n.municipality, resident_id = n.resident_id, txn = {txn}"
                    " FROM rrnet_new n WHERE c.code = n.code"
                    " AND c.status = 'imported' AND n.status = 'carried_over'"
                    " RETURNING c.code, c.status, c.municipality, c.resident_id),"
                    " history AS ("
                    " INSERT INTO {schema}.code_history"
                    " (code, status, municipality, resident_id, txn, recorded_at)"
                    " SELECT code, status, municipality, resident_id, {txn}, {at} FROM taken)"
                    " DELETE FROM rrnet_new n USING taken t WHERE n.code = t.code"
                ).format(schema=schema, txn=txn, at=at)
            )
        # The codes refused are those of rrnet_new the INSERT did not return: an
        # anti-join of two tables of this run's size, in the same statement. (Asking
        # ``codes`` afterwards which were recorded joined against the whole ledger:
        # at 100 million codes the planner hashed all of them, for minutes.)
        refused = self._frame(
            sql.SQL(
                "WITH added AS ("
                " INSERT INTO {schema}.codes (code, status, municipality, resident_id, txn)"
                " SELECT code, status, municipality, resident_id, {txn} FROM rrnet_new n"
                " WHERE n.status <> 'assigned' OR NOT EXISTS (SELECT 1 FROM {schema}.pool p"
                "  WHERE p.code = n.code AND p.municipality <> n.municipality)"
                " ORDER BY code ON CONFLICT (code) DO NOTHING"
                " RETURNING code, status, municipality, resident_id),"
                " history AS ("
                " INSERT INTO {schema}.code_history"
                " (code, status, municipality, resident_id, txn, recorded_at)"
                " SELECT code, status, municipality, resident_id, {txn}, {at} FROM added)"
                " SELECT n.code FROM rrnet_new n"
                " WHERE NOT EXISTS (SELECT 1 FROM added a WHERE a.code = n.code)"
            ).format(schema=schema, txn=txn, at=at),
            ["code"],
        )
        conflicts = refused["code"].cast(pl.UInt64).to_numpy().astype(np.uint64)
        recorded = frame.filter(~pl.col("code").is_in(pl.Series(conflicts).implode()))
        for status, n in recorded.group_by("status").len().iter_rows():
            self.counts[str(status)] = self.counts.get(str(status), 0) + int(n)
        return conflicts

    # -- not built on PostgreSQL yet ---------------------------------------------

    def record_change(self, records: pl.DataFrame) -> np.ndarray:
        """Retire each ``retired`` record's code, which must still be its resident's
        active code here (one UPDATE; the row-level security confines it to the
        role's municipality), then record the ``assigned`` ones (``record_new``:
        the codes refused come back for a redraw)."""
        retired = records.filter(pl.col("status") == Status.RETIRED.value)
        if retired.height:
            frame = self._stage_records(retired)
            schema = sql.Identifier(SCHEMA)
            txn, at = sql.Literal(self.number), sql.Literal(self.recorded_at)
            done = self.conn.execute(
                sql.SQL(
                    "WITH gone AS ("
                    " UPDATE {schema}.codes c SET status = 'retired', txn = {txn}"
                    " FROM rrnet_new n WHERE c.code = n.code AND c.status IN ({active})"
                    " AND c.municipality = n.municipality AND c.resident_id = n.resident_id"
                    " RETURNING c.code, c.status, c.municipality, c.resident_id)"
                    " INSERT INTO {schema}.code_history"
                    " (code, status, municipality, resident_id, txn, recorded_at)"
                    " SELECT code, status, municipality, resident_id, {txn}, {at} FROM gone"
                ).format(schema=schema, txn=txn, at=at, active=_ACTIVE_SQL)
            ).rowcount
            if done != frame.height:
                raise LedgerError(
                    f"{frame.height - done} of the codes to change stopped being their "
                    "residents' active codes while this run was working (another run on the "
                    "same ledger). Nothing was changed; run again."
                )
            self.counts[Status.RETIRED.value] = (
                self.counts.get(Status.RETIRED.value, 0) + frame.height
            )
        return self.record_new(records.filter(pl.col("status") != Status.RETIRED.value))

    def add_records(self, records: pl.DataFrame) -> SegmentInfo | None:
        _refuse("Recording codes other than by assign or change")

    def record_ids_fixed(self, records: pl.DataFrame) -> None:
        """One UPDATE of the codes' rows to the correct ids, each still active here with
        the same status and an id equal to the new one but for leading zeros (the
        row-level security confines it to the role's municipality); each row it
        changed is copied to ``code_history`` in the same statement."""
        if records.height == 0:
            return
        frame = self._stage_records(records)
        schema = sql.Identifier(SCHEMA)
        txn, at = sql.Literal(self.number), sql.Literal(self.recorded_at)
        try:
            done = self.conn.execute(
                sql.SQL(
                    "WITH fixed AS ("
                    " UPDATE {schema}.codes c SET resident_id = n.resident_id, txn = {txn}"
                    " FROM rrnet_new n WHERE c.code = n.code AND c.status = n.status"
                    " AND c.status IN ({active}) AND c.municipality = n.municipality"
                    " AND c.resident_id <> n.resident_id AND {stripped_c} = {stripped_n}"
                    " RETURNING c.code, c.status, c.municipality, c.resident_id)"
                    " INSERT INTO {schema}.code_history"
                    " (code, status, municipality, resident_id, txn, recorded_at)"
                    " SELECT code, status, municipality, resident_id, {txn}, {at} FROM fixed"
                ).format(
                    schema=schema,
                    txn=txn,
                    at=at,
                    active=_ACTIVE_SQL,
                    stripped_c=sql.SQL(_STRIPPED.format("c.resident_id")),
                    stripped_n=sql.SQL(_STRIPPED.format("n.resident_id")),
                )
            ).rowcount
        except psycopg.errors.UniqueViolation:
            raise LedgerError(
                "A correct id of the map already holds an active code in the ledger in "
                f"{self.ledger.server}; nothing was changed."
            ) from None
        if done != frame.height:
            raise LedgerError(
                f"{frame.height - done} of the codes to re-key are no longer active under "
                "the ledger's id (another run, or a change by hand). Nothing was changed; "
                "run again."
            )
        for status, n in frame.group_by("status").len().iter_rows():
            self.counts[str(status)] = self.counts.get(str(status), 0) + int(n)

    def add_codes(self, codes: np.ndarray, status: Status) -> SegmentInfo | None:
        _refuse("Adding codes in a transaction (use rrnet ledger import)")

    def add_pool(self, codes: np.ndarray, municipality: str) -> SegmentInfo | None:
        """Designate these codes to ``municipality``: COPY, then one INSERT, which the
        primary key refuses for a code designated before and the row-level security
        for another municipality than the role's. (``rrnet_cli.pool`` has checked
        that none is used or designated, under the writers' lock.)"""
        if len(codes) == 0:
            return None
        self.municipality = self.municipality or municipality
        self._fill("rrnet_pool", pl.DataFrame({"code": np.asarray(codes, np.uint64)}))
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {schema}.pool (code, municipality, txn, designated_at)"
                " SELECT code, {m}, {txn}, {at} FROM rrnet_pool ORDER BY code"
            ).format(
                schema=sql.Identifier(SCHEMA),
                m=sql.Literal(municipality),
                txn=sql.Literal(self.number),
                at=sql.Literal(self.recorded_at),
            )
        )
        self.counts[DESIGNATED] = self.counts.get(DESIGNATED, 0) + len(codes)
        return None

    def add_notices(self, notices: pl.DataFrame) -> SegmentInfo | None:
        """Record notices printed (``notices.NOTICE_SCHEMA`` without txn and time, which
        are this transaction's): COPY, then one INSERT, which the row-level security
        confines to the role's municipality and the unique index to one first notice
        of a kind per code."""
        if notices.height == 0:
            return None
        frame = notices.select(
            pl.col("code").cast(pl.UInt64),
            *(pl.col(c).cast(pl.String) for c in ("resident_id", "municipality", "kind")),
            pl.col("reprint_reason").cast(pl.String),
            *(pl.col(c).cast(pl.String) for c in ("batch", "file")),
            pl.col("page").cast(pl.Int32),
        )
        kinds = set(frame["kind"].to_list()) - {k.value for k in NoticeKind}
        if kinds:
            raise ValueError(f"unknown notice kind {sorted(kinds, key=str)}")
        self._note_municipality(frame)
        self._fill("rrnet_notices", frame)
        with _refused_notice(self.ledger.server):
            self._insert_notices()
        self.counts[NOTICE] = self.counts.get(NOTICE, 0) + frame.height
        return None

    def _insert_notices(self) -> None:
        self.conn.execute(
            sql.SQL(
                "INSERT INTO {schema}.notices (code, resident_id, municipality, kind,"
                " reprint_reason, batch, file, page, txn, issued_at)"
                " SELECT code, resident_id, municipality, kind, reprint_reason, batch, file,"
                " page, {txn}, {at} FROM rrnet_notices"
            ).format(
                schema=sql.Identifier(SCHEMA),
                txn=sql.Literal(self.number),
                at=sql.Literal(self.recorded_at),
            )
        )

    def set_pool_mode(self, on: bool, municipality: str) -> None:
        """Set ``municipality``'s pool mode; the audit record says so (``pool_mode``,
        with the municipality), and the transaction commits though it adds no code."""
        changed = self.conn.execute(
            sql.SQL("UPDATE {}.municipalities SET pool_mode = %s WHERE code = %s").format(
                sql.Identifier(SCHEMA)
            ),
            (bool(on), municipality),
        ).rowcount
        if changed != 1:
            raise LedgerError(
                f"The ledger in {self.ledger.server} does not let this role set the pool "
                f"mode of municipality {municipality}: an office sets only its own."
            )
        self.municipality = municipality
        self.settings[POOL_MODE] = bool(on)


# ---------------------------------------------------------------------------
# Reading the audit trail back, and checking the ledger on the server

#: How ``IntegrityReport`` names where a problem lies (its ``file``): the tables.
TABLE_TRANSACTIONS = f"{SCHEMA}.transactions"
TABLE_CODES = f"{SCHEMA}.codes"
TABLE_HISTORY = f"{SCHEMA}.code_history"


def _audit_log(
    conn: psycopg.Connection[Any],
    municipality: str,
    *,
    counts: Mapping[int, Mapping[str, int]] | None = None,
) -> AuditLog:
    """Every row of ``transactions`` as the record it was sealed from, its chain checked.

    ``counts``: the records stored per transaction and status, to compare each
    record's counts with (None: not compared).

    An office's role reads only its own municipality's records (and the
    ledger-wide ones); another municipality's record comes from ``audit_chain``
    as what it shows (number, time, municipality, counts, hashes). Its link in
    the chain is checked, its hash only by a role that reads it (the owner).
    """
    schema = sql.Identifier(SCHEMA)
    chain = conn.execute(
        sql.SQL(
            "SELECT id, at, municipality::text, counts, prev, hash FROM {}.audit_chain ORDER BY id"
        ).format(schema)
    ).fetchall()
    rows = {
        int(row[0]): row
        for row in conn.execute(
            sql.SQL(
                "SELECT id, at, operator, command, inputs, outputs, counts, details, prev, hash "
                "FROM {}.transactions ORDER BY id"
            ).format(schema)
        ).fetchall()
    }
    records: list[dict[str, Any]] = []
    hidden: set[int] = set()
    for number, at, whose, tallies, prev, hashed in chain:
        row = rows.get(int(number))
        if row is not None:
            records.append(_row_record(row))
            continue
        hidden.add(int(number))
        records.append(
            {
                "txn": int(number),
                "at": at.astimezone(UTC).isoformat(),
                "municipality": whose,
                "counts": tallies,
                "prev": prev,
                "hash": hashed,
            }
        )
    last = int(chain[-1][0]) if chain else 0
    log = check_records(
        records,
        last_txn=last,
        municipality=municipality,
        counts=counts,
        holder="its meta row",
        unreadable=hidden,
    )
    if hidden:
        log.notes.append(
            f"{len(hidden):,} records of other municipalities' runs are not shown to this "
            "role (they name residents): their links in the chain are checked here, their "
            "contents by the ledger's owner"
        )
    return log


def _row_record(row: Sequence[Any]) -> dict[str, Any]:
    """A ``transactions`` row as the audit record ``_record`` built (and hashed)."""
    number, at, operator, command, inputs, outputs, counts, details, prev, hashed = row
    record: dict[str, Any] = dict(details) if isinstance(details, dict) else {}
    record.update(
        txn=int(number),
        at=at.astimezone(UTC).isoformat() if isinstance(at, datetime) else str(at),
        operator=operator,
        command=command,
        inputs=inputs,
        outputs=outputs,
        counts=counts,
        prev=prev,
        hash=hashed,
    )
    return record


def _history_counts(conn: psycopg.Connection[Any]) -> dict[int, dict[str, int]]:
    """The ``code_history`` rows per transaction and status, the notices recorded
    (status ``notice``, as the folder ledger counts its notice segments) and the
    codes designated (``designated``, as it counts a pool segment)."""
    counts: dict[int, dict[str, int]] = {}
    rows = conn.execute(
        sql.SQL(
            "SELECT txn, status, count(*) FROM {schema}.code_history GROUP BY txn, status "
            "UNION ALL SELECT txn, {notice}, count(*) FROM {schema}.notices GROUP BY txn "
            "UNION ALL SELECT txn, {designated}, count(*) FROM {schema}.pool GROUP BY txn"
        ).format(
            schema=sql.Identifier(SCHEMA),
            notice=sql.Literal(NOTICE),
            designated=sql.Literal(DESIGNATED),
        )
    ).fetchall()
    for txn, status, n in rows:
        counts.setdefault(int(txn), {})[str(status)] = int(n)
    return counts


TABLE_NOTICES = f"{SCHEMA}.notices"


def _check_notices(conn: psycopg.Connection[Any], report: IntegrityReport) -> None:
    """Every notice is of a code its resident held (as ``notices.notice_problems``)."""
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FROM {schema}.notices n WHERE NOT EXISTS ("
            " SELECT 1 FROM {schema}.code_history h WHERE h.code = n.code"
            " AND h.resident_id = n.resident_id AND h.status IN ({active}))"
        ).format(schema=sql.Identifier(SCHEMA), active=_ACTIVE_SQL)
    ).fetchone()
    if row and row[0]:
        report.add(
            TABLE_NOTICES,
            f"{row[0]} notice records are of a code the ledger never recorded for that "
            "resident (added by hand?)",
        )


TABLE_POOL = f"{SCHEMA}.pool"
TABLE_MUNICIPALITIES = f"{SCHEMA}.municipalities"


def _check_pools(
    conn: psycopg.Connection[Any],
    records: Sequence[Any],
    report: IntegrityReport,
    created_for: str,
    mine: Sequence[str] | None = None,
) -> None:
    """The designated pools against the records and the audit trail, as a folder
    ledger's (``integrity._check_pool``), per municipality:

    - a code is designated only while unused: no record of it comes from a
      transaction before its designation;
    - a transaction whose audit record says it drew from the pool (``drawn_from:
      pool``) drew only codes designated to its municipality before it;
    - no municipality drew as new a code designated to another (rrnet's insert
      leaves such a code out; one recorded by hand is reported);
    - each municipality's pool mode is the one the audit trail set last for it
      (off if none did): only a transaction changes it, and its record says so.
      A record that names no municipality (made in a folder ledger, copied
      here) is for the one the ledger was created for. An office (``mine``:
      its municipalities) reads only its own records, so only its own modes
      are compared; the owner (None) compares every municipality's.
    """
    schema = sql.Identifier(SCHEMA)
    # One pass over the history, only when there is anything to check against.
    drawn = sql.SQL("SELECT id FROM {schema}.transactions WHERE details->>{key} = 'pool'").format(
        schema=schema, key=sql.Literal(DRAWN_FROM)
    )
    found = conn.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {schema}.pool) OR EXISTS ({drawn})").format(
            schema=schema, drawn=drawn
        )
    ).fetchone()
    if found and found[0]:
        checks = {
            "early": "p.code IS NOT NULL AND h.txn < p.txn",
            "outside": "h.status = 'assigned' AND t.id IS NOT NULL AND (p.code IS NULL"
            " OR p.municipality IS DISTINCT FROM h.municipality OR p.txn >= h.txn)",
            "theirs": "h.status = 'assigned' AND p.municipality IS DISTINCT FROM h.municipality"
            " AND p.txn < h.txn",
        }
        source = sql.SQL(
            " FROM {schema}.code_history h LEFT JOIN {schema}.pool p ON p.code = h.code"
            " LEFT JOIN ({drawn}) t ON t.id = h.txn"
        ).format(schema=schema, drawn=drawn)
        counts = conn.execute(
            sql.SQL("SELECT {}").format(
                sql.SQL(", ").join(
                    sql.SQL("count(*) FILTER (WHERE {})").format(sql.SQL(c))
                    for c in checks.values()
                )
            )
            + source
        ).fetchone()
        what = {
            "early": "records of designated codes predate their designation (designated "
            "while already in use)",
            "outside": "codes drawn from the designated pool were not designated to that "
            "municipality before they were drawn",
            "theirs": "codes designated to one municipality were drawn as new by another",
        }
        for (name, condition), n in zip(checks.items(), counts or (), strict=False):
            if not n:
                continue
            shown = conn.execute(
                sql.SQL(
                    "SELECT lpad(h.code::text, 11, '0') || ' (' "
                    " || coalesce(h.municipality::text, 'no municipality')"
                    " || ', transaction ' || h.txn"
                    " || coalesce(', designated to ' || p.municipality::text, '') || ')'"
                )
                + source
                + sql.SQL(" WHERE {} ORDER BY h.txn, h.code LIMIT 5").format(sql.SQL(condition))
            ).fetchall()
            report.add(TABLE_POOL, f"{n} {what[name]}: {', '.join(r[0] for r in shown)}")
    recorded: dict[str, tuple[bool, Any]] = {}
    for record in records:
        if isinstance(record, dict) and isinstance(record.get(POOL_MODE), bool):
            whose = str(record.get("municipality") or created_for)
            recorded[whose] = (record[POOL_MODE], record.get("txn"))
    modes = conn.execute(
        sql.SQL("SELECT code::text, pool_mode FROM {}.municipalities ORDER BY code").format(schema)
    ).fetchall()
    for municipality, mode in modes:
        if mine is not None and str(municipality) not in mine:
            continue
        said, where = recorded.get(str(municipality), (False, None))
        if bool(mode) != said:
            trail = (
                "no transaction ever turned it on"
                if where is None
                else f"transaction {where} set it {on_off(said)}"
            )
            report.add(
                TABLE_MUNICIPALITIES,
                f"municipality {municipality}'s pool mode is {on_off(bool(mode))}, but in the "
                f"audit trail {trail} (changed by hand)",
            )


def _utc_ms(column: str) -> pl.Expr:
    """A text column of epoch milliseconds (``_EPOCH_MS``) as ``Datetime("ms", "UTC")``."""
    return pl.col(column).cast(pl.Int64).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")


def _hidden_runs(conn: psycopg.Connection[Any], mine: Sequence[str]) -> dict[int, dict[str, int]]:
    """The counts of the runs an office's role cannot see the records of, as recorded."""
    rows = conn.execute(
        sql.SQL(
            "SELECT id, counts FROM {}.audit_chain "
            "WHERE municipality IS NOT NULL AND NOT municipality::text = ANY(%s)"
        ).format(sql.Identifier(SCHEMA)),
        (list(mine),),
    ).fetchall()
    return {int(n): {str(k): int(v) for k, v in (c or {}).items()} for n, c in rows}


def _check_current(conn: psycopg.Connection[Any], report: IntegrityReport) -> None:
    """Each code's records in order, and its ``codes`` row against the latest of them.

    One pass over ``code_history`` sorted by (code, txn), the window functions
    computed in it, merge-joined with ``codes`` in code order:

    - the latest record of each code is its ``codes`` row (status,
      municipality, resident, transaction), and no code is in one table only;
    - a code drawn here (``assigned``) was never used before: no earlier
      record of it;
    - a retired code stays retired: no active record after a ``retired`` one.

    These are the folder ledger's own checks (``integrity._check_records``).
    """
    schema = sql.Identifier(SCHEMA)
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE h.last AND c.code IS NULL),"
            " count(*) FILTER (WHERE h.last AND c.code IS NOT NULL),"
            " count(*) FILTER (WHERE h.last AND c.code IS NOT NULL"
            "  AND (c.status, c.municipality, c.resident_id, c.txn)"
            "  IS DISTINCT FROM (h.status, h.municipality, h.resident_id, h.txn)),"
            " count(*) FILTER (WHERE h.status = 'assigned' AND h.n > 1 AND NOT h.rekey),"
            " count(*) FILTER (WHERE h.status IN ({active}) AND h.retired_before),"
            " (SELECT count(*) FROM {schema}.codes),"
            " count(*) FILTER (WHERE h.rekey AND (h.status NOT IN ({active})"
            "  OR h.prev_status IS DISTINCT FROM h.status"
            "  OR h.prev_municipality IS DISTINCT FROM h.municipality"
            "  OR h.prev_resident_id IS NOT DISTINCT FROM h.resident_id"
            "  OR {stripped_prev} IS DISTINCT FROM {stripped_h}))"
            " FROM (SELECT code, status, municipality, resident_id, txn,"
            "  row_number() OVER w AS n,"
            "  coalesce(bool_or(status = 'retired') OVER (w ROWS BETWEEN UNBOUNDED PRECEDING"
            "   AND 1 PRECEDING), false) AS retired_before,"
            "  lead(txn) OVER w IS NULL AS last,"
            "  lag(status) OVER w AS prev_status, lag(municipality) OVER w AS prev_municipality,"
            "  lag(resident_id) OVER w AS prev_resident_id,"
            "  txn IN (SELECT id FROM {schema}.transactions WHERE details ? {fixed}) AS rekey"
            "  FROM {schema}.code_history WINDOW w AS (PARTITION BY code ORDER BY txn)) h"
            " LEFT JOIN {schema}.codes c ON c.code = h.code"
        ).format(
            schema=schema,
            active=_ACTIVE_SQL,
            fixed=sql.Literal(FIXED_IDS),
            stripped_prev=sql.SQL(_STRIPPED.format("h.prev_resident_id")),
            stripped_h=sql.SQL(_STRIPPED.format("h.resident_id")),
        )
    ).fetchone()
    missing, matched, differ, redrawn, revived, codes, strays = (
        (int(n) for n in row) if row else (0,) * 7
    )
    if strays:
        report.add(
            TABLE_HISTORY,
            f"{strays} records of fixed resident ids do not continue their code's record "
            "(another status, municipality or id)",
        )
    if codes > matched:
        report.add(TABLE_CODES, f"{codes - matched} codes have no record in {TABLE_HISTORY}")
    if missing:
        report.add(
            TABLE_CODES,
            f"{missing} codes recorded in {TABLE_HISTORY} are missing from {TABLE_CODES}",
        )
    if differ:
        report.add(
            TABLE_CODES,
            f"{differ} codes differ from their latest record in {TABLE_HISTORY} (status, "
            "municipality, resident or transaction changed by hand)",
        )
    if redrawn:
        report.add(TABLE_HISTORY, f"{redrawn} codes were drawn as new while already used")
    if revived:
        report.add(TABLE_HISTORY, f"{revived} retired codes were made active again")


#: A valid code and one with a wrong check digit: ``is_resident_code`` must tell them apart.
_CODE_PROBES = (12345678903, 12345678900)


def _guarantees(conn: psycopg.Connection[Any], report: IntegrityReport) -> None:
    """The constraints and index the database enforces uniqueness with, from the catalog.

    Missing (dropped by a DBA, or replaced by something weaker), each is a
    violation; and what it would have refused is then counted with a query.
    """
    schema = sql.Identifier(SCHEMA)
    keys = {
        str(table): str(definition)
        for table, definition in conn.execute(
            "SELECT c.relname, pg_get_constraintdef(k.oid) FROM pg_constraint k "
            "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND k.contype = 'p' AND k.convalidated",
            (SCHEMA,),
        ).fetchall()
    }
    expected = {"codes": "(code)", "transactions": "(id)", "pool": "(code)"}
    for table, columns in expected.items():
        if keys.get(table) != f"PRIMARY KEY {columns}":
            report.add(
                f"{SCHEMA}.{table}",
                f"the primary key {columns} of {SCHEMA}.{table} is missing (dropped?): the "
                "database no longer refuses a second row for it",
            )
    if keys.get("codes") != "PRIMARY KEY (code)":
        row = conn.execute(
            sql.SQL("SELECT count(*) - count(DISTINCT code) FROM {}.codes").format(schema)
        ).fetchone()
        if row and row[0]:
            report.add(TABLE_CODES, f"{row[0]} codes are recorded in more than one row")
    checks = [
        str(d)
        for (d,) in conn.execute(
            "SELECT pg_get_constraintdef(k.oid) FROM pg_constraint k "
            "WHERE k.conrelid = to_regclass(%s) AND k.contype = 'c' AND k.convalidated",
            (TABLE_CODES,),
        ).fetchall()
    ]
    # As the server prints them: CHECK (rrnet.is_resident_code((code)::text)).
    if not any(re.search(r"\bis_resident_code\(\(?code\b", d) for d in checks):
        report.add(
            TABLE_CODES,
            "the CHECK that every code has 11 digits and a valid check digit is missing (dropped?)",
        )
    if not any("resident_id IS NOT NULL" in d for d in checks):
        report.add(
            TABLE_CODES,
            "the CHECK that every active code names its resident is missing (dropped?)",
        )
    try:
        with conn.transaction():
            probe = conn.execute(
                sql.SQL("SELECT {0}.is_resident_code(%s), {0}.is_resident_code(%s)").format(schema),
                _CODE_PROBES,
            ).fetchone()
    except psycopg.errors.UndefinedFunction:
        probe = None
    if probe != (True, False):
        report.add(
            SCHEMA,
            f"the function {SCHEMA}.is_resident_code no longer tells a valid code from an "
            "invalid one (replaced or dropped): the CHECK on codes does not hold",
        )
    unguarded = [
        str(name)
        for (name,) in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s "
            "AND c.relname IN ('codes', 'code_history', 'notices', 'transactions', 'pool', "
            "'municipalities') "
            "AND NOT c.relrowsecurity ORDER BY 1",
            (SCHEMA,),
        ).fetchall()
    ]
    for table in unguarded:
        report.add(
            f"{SCHEMA}.{table}",
            f"row-level security is off on {SCHEMA}.{table} (disabled by hand?): office "
            "roles are no longer confined to their own municipality's rows",
        )
    index = conn.execute(
        "SELECT count(*) FROM pg_index i "
        "WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indisvalid "
        "AND i.indexprs IS NULL AND i.indnkeyatts = 2 "
        "AND ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o) "
        "= ARRAY['municipality', 'resident_id'] "
        "AND (i.indpred IS NULL OR (pg_get_expr(i.indpred, i.indrelid) LIKE '%%assigned%%' "
        "AND pg_get_expr(i.indpred, i.indrelid) LIKE '%%carried_over%%'))",
        (TABLE_CODES,),
    ).fetchone()
    if not index or not index[0]:
        report.add(
            TABLE_CODES,
            "the unique index one_active_code_per_resident (one active code per "
            "resident) is missing (dropped?): the database no longer refuses a second "
            "active code for a resident",
        )
        row = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM (SELECT 1 FROM {}.codes WHERE status IN ({})"
                " AND resident_id IS NOT NULL GROUP BY municipality, resident_id"
                " HAVING count(*) > 1) s"
            ).format(schema, _ACTIVE_SQL)
        ).fetchone()
        if row and row[0]:
            report.add(TABLE_CODES, f"{row[0]} residents hold more than one active code")
