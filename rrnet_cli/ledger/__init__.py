"""The ledger: every resident record code ever used, persisted crash-safely.

A record says that a code was used, with its status (``assigned`` here,
``carried_over`` from another municipality, ``imported`` as in use elsewhere, or
``retired``) and, where known, the municipality and resident it belongs to. A
code's current status is that of its record in the latest transaction. Every
code that appears in any record is used forever, retired or not.

Designated pools (住民票コードの指定): the prefecture (since 2015 J-LIS) designates
to each municipality the codes it may use, so that municipalities never
collide. ``rrnet ledger designate`` records such a pool in the ledger through
an ordinary transaction (so the audit trail records the designation with the
file's SHA-256 and the count). Designated codes are *not* used codes: they stay
out of the used-code index (``LedgerState.codes``) and sit in
``LedgerState.pool``; a designated code is free until a record uses it, and a
pool code's use is simply a record of it (assigned, carried over, imported or
retired). What is left of the pool is therefore the pool minus every used code,
computed when needed rather than stored. A code is designated only while it is
unused and not yet in the pool (``rrnet_cli.pool`` refuses anything else).
Pool mode (``rrnet ledger pool-mode on|off``) makes ``assign`` and ``change``
draw only from the pool.

The package, one concern per module:

- ``interface``: records, statuses, the in-memory ``LedgerState`` and the
  ``LedgerStore``/``LedgerTransaction``/``LedgerView`` protocols every command
  is typed to;
- ``folder``: the embedded default store, a folder of Parquet segments, its
  manifest, lock and crash safety;
- ``audit``: the hash-chained audit trail and its check;
- ``integrity``: the end-to-end check behind ``rrnet verify --ledger``;
- ``postgres``: a ledger many offices share, in a PostgreSQL database.

``open_store`` and ``init_store`` take what ``--ledger`` says (a folder, or a
PostgreSQL URL or connection string) and return the store. Everything the rest
of rrnet uses is importable from here; the PostgreSQL module (and its driver)
is imported only for a database location.
"""

from __future__ import annotations

from pathlib import Path

from rrnet_cli.ledger.audit import (
    DRAWN_FROM,
    TRANSACTIONS,
    AuditLog,
    check_chain,
    record_hash,
)
from rrnet_cli.ledger.folder import Ledger, Transaction
from rrnet_cli.ledger.integrity import IntegrityReport, check_integrity
from rrnet_cli.ledger.interface import (
    ACTIVE,
    DESIGNATED,
    POOL_MODE,
    RECORD_SCHEMA,
    CodeIndex,
    Invocation,
    LedgerState,
    LedgerStore,
    LedgerTransaction,
    LedgerView,
    PoolCounts,
    SegmentInfo,
    SortedCodes,
    Status,
    Waiting,
    check_operator,
    default_operator,
    file_digest,
    first_notices_due,
    free_pool_codes,
    is_database_location,
    municipality_for,
    not_yet_supported,
    on_off,
    ownership_problems,
    sorted_member,
    without_leading_zeros,
    without_password,
)
from rrnet_cli.ledger.notices import NOTICE_SCHEMA, NoticeKind, ReprintReason

__all__ = [
    "ACTIVE",
    "DESIGNATED",
    "DRAWN_FROM",
    "NOTICE_SCHEMA",
    "POOL_MODE",
    "RECORD_SCHEMA",
    "TRANSACTIONS",
    "AuditLog",
    "CodeIndex",
    "IntegrityReport",
    "Invocation",
    "Ledger",
    "LedgerState",
    "LedgerStore",
    "LedgerTransaction",
    "LedgerView",
    "NoticeKind",
    "PoolCounts",
    "ReprintReason",
    "SegmentInfo",
    "SortedCodes",
    "Status",
    "Transaction",
    "Waiting",
    "check_chain",
    "check_integrity",
    "check_operator",
    "default_operator",
    "file_digest",
    "first_notices_due",
    "free_pool_codes",
    "init_store",
    "is_database_location",
    "municipality_for",
    "not_yet_supported",
    "on_off",
    "open_store",
    "ownership_problems",
    "record_hash",
    "sorted_member",
    "without_leading_zeros",
    "without_password",
]


def open_store(location: str | Path) -> LedgerStore:
    """The existing ledger ``location`` names: a PostgreSQL database or a folder.

    Never creates one: a mistyped location is refused, not a new empty ledger.
    """
    if is_database_location(location):
        from rrnet_cli.ledger.postgres import PostgresLedger

        return PostgresLedger.open(str(location))
    return Ledger.open(Path(location))


def init_store(
    location: str | Path, *, municipality: str, invocation: Invocation | None = None
) -> LedgerStore:
    """Create a new, empty ledger at ``location``; refuse one that exists already."""
    if is_database_location(location):
        from rrnet_cli.ledger.postgres import PostgresLedger

        return PostgresLedger.init(str(location), municipality=municipality, invocation=invocation)
    return Ledger.init(Path(location), municipality=municipality, invocation=invocation)
