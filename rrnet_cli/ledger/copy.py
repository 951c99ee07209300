"""``rrnet ledger copy SRC DST``: a ledger copied whole into a new one, and checked.

A folder ledger goes into a PostgreSQL database and back (and folder to folder,
database to database) with every record it ever made, its audit trail, its
notices, the municipality it was made for and, from a database, the
municipalities it serves (not their office roles: those are the database's,
granted again with ``rrnet ledger add-municipality --role``).

Up front, before anything is written:

- DST must be new: a folder that does not exist or is empty, or a database
  without a schema ``rrnet``. An existing ledger is never overwritten.
- SRC must be sound: its own check (``check_integrity``, as ``rrnet verify
  --ledger``) finds nothing, its audit trail starts at transaction 0, and a
  database is read as the ledger's owner (an office's role would see only its
  own municipality: a partial copy). A copy never launders a damaged ledger.
- What the other store cannot hold is refused: into a folder, a database
  serving more than one municipality (a folder ledger serves one).

The writers: SRC is held still (the folder's lock, or the database's writers'
lock) for the whole copy.

- Into a database: one transaction. The schema is made as ``rrnet ledger
  init`` makes it (without its transaction 0: SRC's is copied); every record
  ever made is streamed into ``code_history`` with one COPY (imported codes as
  vectorised text, never a Python list), ``codes`` is filled from it on the
  server (each code's latest record), then the notices, the audit records as
  they are (a folder record's ``segments`` stays in ``details``) and the copy
  record. The check below runs inside the same transaction; only a clean copy
  commits. A client killed midway leaves nothing: the server rolls back.
- Into a folder: everything is written into a temporary folder next to DST
  (``.NAME.copying-HOST-PID-*``), each segment fsynced, then the manifest;
  checked; and renamed into place at the end (an atomic step). A run killed
  midway leaves at most that temporary folder, never a half ledger at DST. It
  holds residents' records, so the next copy into DST removes one that a dead
  process on this machine left (``_sweep_unfinished``), and names any other
  (another machine's, or a live run's) for a person to delete.

Designated pools go across with the rest: each designated code with the
municipality and the transaction that designated it (a folder's pool segments
are its one municipality's), and which municipalities are in pool mode (a
folder's manifest key ``pool_mode``, a database's ``municipalities.pool_mode``).

The audit trail: every record of SRC is kept byte for byte, so every hash and
link holds. The copy appends one record (``copied_from``: SRC's location
without password, its head hash, the content hash and counts). Into a folder,
that record names every segment the copy wrote, sealing them into the chain;
the records before it, made in a database or another folder, are checked by
their counts (``audit.copy_boundary``). It also binds the copy to its folder
(``audit.PLACE``, see ``folder.py``) with a ledger id of its own: the copy is a
new ledger, writable at once where it was made, and a copy of it made by hand
is refused like any other.

The check at the end reads both ledgers again (``LedgerSummary``): the
municipalities, the number of audit records and the last transaction, the
records ever made by status, the codes by current status, the notices, and a
content hash. The hash is SHA-256 over the audit records (canonical JSON, in
order), every record ever made (code, status, municipality, resident,
transaction, time to the millisecond) ordered by transaction and code, every
notice, and (when there are any) the designated codes (code, municipality,
transaction) and the municipalities in pool mode, each line in PostgreSQL's
COPY text form: a database hashes its
server's own COPY output, a folder writes the same form from its segments, so
the two sides are computed independently. Any difference, or a violation in
DST's own check: nothing is published (exit 1).

Times: a folder keeps a record's time to the millisecond, a database to the
microsecond; the content hash compares milliseconds. Each transaction's exact
time is in its audit record, copied byte for byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, EXIT_CHECK_FAILED, LedgerError, UsageError
from rrnet_cli.files import PRIVATE_DIR, PRIVATE_FILE, fsync_dir, host_name, pid_alive
from rrnet_cli.ledger import folder as folder_mod
from rrnet_cli.ledger.audit import COPIED_FROM, MOVED_TO, PLACE, TRANSACTIONS, AuditLog, seal
from rrnet_cli.ledger.folder import (
    FORMAT,
    LOCK,
    MANIFEST,
    POOL_VERSION,
    SEGMENTS,
    VERSION,
    Ledger,
    is_pool_segment,
)
from rrnet_cli.ledger.integrity import IntegrityReport
from rrnet_cli.ledger.interface import (
    DESIGNATED,
    POOL_MODE,
    RECORD_SCHEMA,
    Invocation,
    SegmentInfo,
    failpoint,
    file_sha256,
    is_database_location,
)
from rrnet_cli.ledger.notices import NOTICE, NOTICE_SCHEMA, NOTICE_VERSION, is_notice_segment
from rrnet_cli.progress import QUIET, Steps

#: Rows per chunk streamed (Parquet batches read, COPY text written, rows hashed).
CHUNK = 2_000_000
#: Bytes of COPY output parsed at a time when a database is read.
_READ_BYTES = 64 << 20
#: Rows per Parquet row group of a segment the copy writes (as ``folder.py``).
_ROW_GROUP = 8_000_000
#: The first line of the content hash: the form below, versioned.
_HASH_FORM = b"rrnet-ledger-content/1\n"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class CopyMismatch(LedgerError):
    """The copy, read back, differs from its source (exit 1): nothing was published."""

    exit_code = EXIT_CHECK_FAILED


# ---------------------------------------------------------------------------
# What both sides are compared by


@dataclass
class LedgerSummary:
    """What the check at the end compares: counts and the content hash."""

    municipality: str | None
    municipalities: list[str]
    #: the last transaction copied (the copy's own record is not counted)
    transactions: int
    audit_records: int
    #: every record ever made, by status
    records: dict[str, int]
    #: every code by its current status (``rrnet ledger stats``)
    codes: dict[str, int]
    notices: int
    content_sha256: str
    #: designated codes, and the municipalities in pool mode
    designated: int = 0
    pool_mode: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "municipality": self.municipality,
            "municipalities": self.municipalities,
            "transactions": self.transactions,
            "audit_records": self.audit_records,
            "records": sum(self.records.values()),
            "records_by_status": self.records,
            "codes_by_status": self.codes,
            "notices": self.notices,
            "designated": self.designated,
            "pool_mode": self.pool_mode,
            "content_sha256": self.content_sha256,
        }

    def differences(self, other: LedgerSummary) -> list[str]:
        mine, theirs = self.to_json(), other.to_json()
        return [
            f"{key}: {mine[key]} in the source, {theirs[key]} in the copy"
            for key in mine
            if mine[key] != theirs[key]
        ]


class _Hasher:
    """The content hash, fed section by section, each line in COPY text form."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256(_HASH_FORM)

    def section(self, name: str) -> None:
        self.digest.update(f"== {name}\n".encode())

    def update(self, data: bytes) -> None:
        self.digest.update(data)

    def records(self, records: list[dict[str, Any]]) -> None:
        self.section("audit")
        for record in records:
            text = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            self.digest.update(text.encode("utf-8") + b"\n")

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


#: The control characters COPY's text form writes as backslash escapes.
_COPY_ESCAPES = (
    ("\b", "\\b"),
    ("\f", "\\f"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\t", "\\t"),
    ("\v", "\\v"),
)


def _escape(column: str) -> pl.Expr:
    """A text column as PostgreSQL's COPY text form writes it (NULL is left null)."""
    expr = pl.col(column).cast(pl.String)
    for raw, escaped in (("\\", "\\\\"), *_COPY_ESCAPES):
        expr = expr.str.replace_all(raw, escaped, literal=True)
    return expr.alias(column)


def _unescape(column: str) -> pl.Expr:
    """The inverse of ``_escape`` (COPY text form to the text)."""
    expr = pl.col(column).str.replace_all("\\\\", "\x00", literal=True)
    for raw, escaped in _COPY_ESCAPES:
        expr = expr.str.replace_all(escaped, raw, literal=True)
    return expr.str.replace_all("\x00", "\\", literal=True).alias(column)


def _text_lines(frame: pl.DataFrame) -> bytes:
    """A frame of text columns (already escaped) as COPY text lines; null is \\N."""
    if frame.height == 0:
        return b""
    text = frame.write_csv(
        separator="\t", quote_style="never", null_value="\\N", include_header=False
    )
    return text.encode("utf-8")


def _ms(at: datetime) -> int:
    """Milliseconds since the epoch, floored (as the database's ``floor(epoch * 1000)``)."""
    return (at - _EPOCH) // timedelta(milliseconds=1)


def _at(record: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(record["at"])).astimezone(UTC)


#: Powers of ten that split a code into its 11 digits, most significant first.
_PLACES = 10 ** np.arange(10, -1, -1, dtype=np.uint64)


def _code_lines(codes: np.ndarray, suffix: bytes) -> bytes:
    """Each code as 11 digits followed by ``suffix`` (ending in a newline), vectorised."""
    codes = np.asarray(codes, dtype=np.uint64)
    tail = np.frombuffer(suffix, dtype=np.uint8)
    lines = np.empty((len(codes), 11 + len(tail)), dtype=np.uint8)
    lines[:, :11] = (codes[:, None] // _PLACES) % 10 + ord("0")
    lines[:, 11:] = tail
    return lines.tobytes()


def _history_hash_lines(frame: pl.DataFrame) -> bytes:
    """Records (code, status, municipality, resident_id, txn, recorded_at) as hashed."""
    return _text_lines(
        frame.select(
            pl.col("code").cast(pl.String).str.zfill(11),
            _escape("status"),
            _escape("municipality"),
            _escape("resident_id"),
            pl.col("txn").cast(pl.String),
            pl.col("recorded_at").dt.epoch("ms").cast(pl.String),
        )
    )


#: The notices' columns in the order they are hashed (and their canonical order).
_NOTICE_ORDER = ("txn", "code", "kind", "resident_id", "reprint_reason", "batch", "file", "page")


def _notice_hash_lines(frame: pl.DataFrame) -> bytes:
    return _text_lines(
        frame.sort(list(_NOTICE_ORDER), nulls_last=True).select(
            pl.col("code").cast(pl.String).str.zfill(11),
            *(_escape(c) for c in ("resident_id", "municipality", "kind", "reprint_reason")),
            *(_escape(c) for c in ("batch", "file")),
            pl.col("page").cast(pl.String),
            pl.col("txn").cast(pl.String),
            pl.col("issued_at").dt.epoch("ms").cast(pl.String),
        )
    )


def _pool_hash_lines(pool: pl.DataFrame) -> bytes:
    """Designated codes (code, municipality, txn), in (txn, code) order, as hashed."""
    return _text_lines(
        pool.sort("txn", "code").select(
            pl.col("code").cast(pl.String).str.zfill(11),
            _escape("municipality"),
            pl.col("txn").cast(pl.String),
        )
    )


def _hash_pools(hasher: _Hasher, pool_lines: Iterator[bytes], modes: list[str]) -> None:
    """The pool sections, only for a ledger that has a pool or a municipality in pool
    mode (so a ledger without pools hashes as it always did)."""
    hasher.section("pool")
    for data in pool_lines:
        hasher.update(data)
    hasher.section("pool mode")
    hasher.update("".join(f"{m}\n" for m in modes).encode())


#: A designated pool as both sides read it: code, municipality, txn.
_POOL_SCHEMA = {"code": pl.UInt64, "municipality": pl.String, "txn": pl.UInt64}


# ---------------------------------------------------------------------------
# Reading a folder ledger


def _frame(table: pa.Table) -> pl.DataFrame:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


@dataclass
class _FolderSource:
    """A folder ledger read as its manifest says (the lock held by the caller)."""

    ledger: Ledger
    manifest: dict[str, Any]

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self.manifest.get(TRANSACTIONS) or [])

    @property
    def municipality(self) -> str | None:
        value = self.manifest.get("municipality")
        return None if value is None else str(value)

    def municipalities(self) -> list[tuple[str, int, datetime]]:
        own = self.municipality
        return [(own, 0, self.created_at())] if own else []

    def created_at(self) -> datetime:
        value = self.manifest.get("created_at")
        if isinstance(value, str):
            return datetime.fromisoformat(value).astimezone(UTC)
        return _at(self.records[0])

    def _times(self) -> dict[int, datetime]:
        return {int(r["txn"]): _at(r) for r in self.records}

    def _code_segments(self) -> list[dict[str, Any]]:
        return [
            s
            for s in self.manifest["segments"]
            if not is_notice_segment(s) and not is_pool_segment(s)
        ]

    def history(self) -> Iterator[tuple[int, pl.DataFrame | tuple[str, np.ndarray]]]:
        """Every record, segment by segment in manifest order (so by transaction).

        A fixed-status segment (imports) comes as ``(status, codes)`` batches; a
        segment of records as frames (code, status, municipality, resident_id,
        txn, recorded_at in microseconds).
        """
        for info in self._code_segments():
            path = self.ledger._segment_path(info)
            txn = int(info["txn"])
            if info["has_residents"] or len(info["statuses"]) != 1:
                frame = _frame(pq.read_table(path, schema=RECORD_SCHEMA))
                yield txn, frame.with_columns(pl.col("recorded_at").cast(pl.Datetime("us", "UTC")))
                continue
            status = next(iter(info["statuses"]))
            for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK, columns=["code"]):
                yield txn, (status, batch.column(0).to_numpy())

    def notices(self) -> pl.DataFrame:
        tables = [
            pq.read_table(self.ledger._segment_path(s), schema=NOTICE_SCHEMA)
            for s in self.manifest["segments"]
            if is_notice_segment(s)
        ]
        return _frame(pa.concat_tables(tables) if tables else NOTICE_SCHEMA.empty_table())

    def pools(self) -> pl.DataFrame:
        """Every designated code: ``code, municipality, txn`` (the ledger's municipality)."""
        frames = [
            pl.DataFrame(
                {"code": pq.read_table(self.ledger._segment_path(s), columns=["code"])["code"]}
            ).with_columns(
                pl.col("code").cast(pl.UInt64),
                pl.lit(self.municipality, pl.String).alias("municipality"),
                pl.lit(int(s["txn"]), pl.UInt64).alias("txn"),
            )
            for s in self.manifest["segments"]
            if is_pool_segment(s)
        ]
        return pl.concat(frames) if frames else pl.DataFrame(schema=_POOL_SCHEMA)

    def pool_modes(self) -> list[str]:
        """The municipalities in pool mode: the ledger's own, or none."""
        on = self.manifest.get(POOL_MODE) is True and self.municipality is not None
        return [str(self.municipality)] if on else []

    def summary(self, steps: Steps = QUIET, *, copied: bool = False) -> LedgerSummary:
        """Read every segment again and hash it (``copied``: the last record is the copy's)."""
        records = self.records[:-1] if copied else self.records
        times = self._times()
        hasher = _Hasher()
        hasher.section("municipalities")
        hasher.update(f"{self.municipality}\t{self.municipality}\n".encode())
        hasher.records(records)
        hasher.section("history")
        counts: dict[str, int] = {}
        by_txn: dict[int, list[dict[str, Any]]] = {}
        for info in self._code_segments():
            by_txn.setdefault(int(info["txn"]), []).append(info)
        total = sum(int(s["rows"]) for s in self._code_segments())
        with steps.step("Reading the folder ledger back", total=total) as advance:
            for txn in sorted(by_txn):
                frames: list[pl.DataFrame] = []
                fixed: list[tuple[str, np.ndarray]] = []
                segments = by_txn[txn]
                for info in segments:
                    path = self.ledger._segment_path(info)
                    if info["has_residents"] or len(info["statuses"]) != 1:
                        frames.append(_frame(pq.read_table(path, schema=RECORD_SCHEMA)))
                        continue
                    status = next(iter(info["statuses"]))
                    batches = pq.ParquetFile(path).iter_batches(batch_size=CHUNK, columns=["code"])
                    if len(segments) == 1:  # one sorted segment: streamed
                        suffix = f"\t{status}\t\\N\t\\N\t{txn}\t{_ms(times[txn])}\n".encode()
                        for batch in batches:
                            codes = batch.column(0).to_numpy()
                            hasher.update(_code_lines(codes, suffix))
                            counts[status] = counts.get(status, 0) + len(codes)
                            advance(len(codes))
                        continue
                    fixed += [(status, b.column(0).to_numpy()) for b in batches]
                if fixed:
                    frames += [
                        pl.DataFrame(
                            {
                                "code": pl.Series(codes, dtype=pl.UInt64),
                                "status": status,
                                "municipality": None,
                                "resident_id": None,
                                "txn": txn,
                            },
                            schema_overrides={
                                "municipality": pl.String,
                                "resident_id": pl.String,
                                "txn": pl.UInt64,
                            },
                        ).with_columns(
                            pl.lit(times[txn]).cast(pl.Datetime("ms", "UTC")).alias("recorded_at")
                        )
                        for status, codes in fixed
                    ]
                if not frames:
                    continue
                frame = pl.concat(
                    [
                        f.with_columns(pl.col("recorded_at").cast(pl.Datetime("ms", "UTC")))
                        for f in frames
                    ]
                ).sort("code")
                for start in range(0, frame.height, CHUNK):
                    hasher.update(_history_hash_lines(frame.slice(start, CHUNK)))
                for status, n in frame.group_by("status").len().iter_rows():
                    counts[str(status)] = counts.get(str(status), 0) + int(n)
                advance(frame.height)
        notices = self.notices()
        hasher.section("notices")
        hasher.update(_notice_hash_lines(notices))
        pools, modes = self.pools(), self.pool_modes()
        if pools.height or modes:
            _hash_pools(hasher, iter([_pool_hash_lines(pools)]), modes)
        stats = Ledger(self.ledger.path).stats()
        return LedgerSummary(
            municipality=self.municipality,
            municipalities=[self.municipality] if self.municipality else [],
            transactions=int(records[-1]["txn"]) if records else 0,
            audit_records=len(records),
            records=dict(sorted(counts.items())),
            codes={k: v for k, v in sorted(stats["by_status"].items()) if v},
            notices=notices.height,
            content_sha256=hasher.hexdigest(),
            designated=pools.height,
            pool_mode=modes,
        )


# ---------------------------------------------------------------------------
# Reading a PostgreSQL ledger


def _schema() -> sql.Identifier:
    from rrnet_cli.ledger.postgres import SCHEMA

    return sql.Identifier(SCHEMA)


#: Every record ever made in COPY text form, as hashed (code with its 11 digits,
#: time in milliseconds), in the canonical order.
_HISTORY_HASH_SQL = (
    "SELECT lpad(code::text, 11, '0'), status, municipality::text, resident_id, txn,"
    " floor(extract(epoch FROM recorded_at) * 1000)::bigint"
    " FROM {}.code_history ORDER BY txn, code"
)
_NOTICES_HASH_SQL = (
    "SELECT lpad(code::text, 11, '0'), resident_id, municipality::text, kind, reprint_reason,"
    " batch, file, page, txn, floor(extract(epoch FROM issued_at) * 1000)::bigint"
    ' FROM {}.notices ORDER BY txn, code, kind COLLATE "C", resident_id COLLATE "C",'
    ' reprint_reason COLLATE "C", batch COLLATE "C", file COLLATE "C", page'
)
_POOL_HASH_SQL = (
    "SELECT lpad(code::text, 11, '0'), municipality::text, txn FROM {}.pool ORDER BY txn, code"
)
_POOL_SQL = "SELECT code, municipality::text, txn FROM {}.pool ORDER BY txn, code"
#: Every record ever made, to copy: the time in microseconds.
_HISTORY_SQL = (
    "SELECT code, status, municipality::text, resident_id, txn,"
    " (extract(epoch FROM recorded_at) * 1000000)::bigint"
    " FROM {}.code_history ORDER BY txn, code"
)
_HISTORY_COLUMNS = ("code", "status", "municipality", "resident_id", "txn", "recorded_at")
_NOTICES_SQL = (
    "SELECT code, resident_id, municipality::text, kind, reprint_reason, batch, file, page, txn,"
    " (extract(epoch FROM issued_at) * 1000000)::bigint FROM {}.notices ORDER BY txn, code"
)


def _copy_out(conn: psycopg.Connection[Any], query: sql.Composable) -> Iterator[bytes]:
    """A query's rows in COPY text form, in blocks of whole lines (one row a line)."""
    blocks: list[bytes] = []
    size = 0
    with conn.cursor().copy(sql.SQL("COPY ({}) TO STDOUT").format(query)) as copy:
        for block in copy:
            blocks.append(bytes(block))
            size += len(block)
            if size >= _READ_BYTES:
                data = b"".join(blocks)
                cut = data.rfind(b"\n") + 1
                yield data[:cut]
                blocks, size = [data[cut:]], len(data) - cut
    if size:
        yield b"".join(blocks)


def _parse_text(data: bytes, columns: tuple[str, ...]) -> pl.DataFrame:
    """COPY text lines as a frame of text columns, unescaped; \\N is null."""
    frame = pl.read_csv(
        io.BytesIO(data),
        separator="\t",
        has_header=False,
        quote_char=None,
        null_values="\\N",
        empty_string_is_null=False,
        new_columns=list(columns),
        schema={c: pl.String for c in columns},
    )
    if b"\\" in data.replace(b"\\N", b""):
        frame = frame.with_columns(_unescape(c) for c in columns)
    return frame


def _micros(column: str) -> pl.Expr:
    return pl.from_epoch(pl.col(column).cast(pl.Int64), time_unit="us").dt.replace_time_zone("UTC")


@dataclass
class _PostgresSource:
    """A PostgreSQL ledger read in one REPEATABLE READ snapshot on ``conn``."""

    location: str
    conn: psycopg.Connection[Any]
    municipality: str | None
    log: AuditLog

    @property
    def records(self) -> list[dict[str, Any]]:
        return list(self.log.records)

    def municipalities(self) -> list[tuple[str, int, datetime]]:
        rows = self.conn.execute(
            sql.SQL(
                "SELECT code::text, added_txn, added_at FROM {}.municipalities ORDER BY code"
            ).format(_schema())
        ).fetchall()
        return [(str(c), int(t), a) for c, t, a in rows]

    def created_at(self) -> datetime:
        row = self.conn.execute(
            sql.SQL("SELECT created_at FROM {}.meta").format(_schema())
        ).fetchone()
        assert row is not None
        return row[0].astimezone(UTC)

    def history(self) -> Iterator[tuple[int, pl.DataFrame]]:
        """Every record, ordered by transaction and code, in frames of one transaction."""
        query = sql.SQL(_HISTORY_SQL).format(_schema())
        for data in _copy_out(self.conn, query):
            frame = _parse_text(data, _HISTORY_COLUMNS).with_columns(
                pl.col("code").cast(pl.UInt64),
                pl.col("txn").cast(pl.UInt64),
                _micros("recorded_at"),
            )
            for (txn,), part in frame.group_by("txn", maintain_order=True):
                yield int(str(txn)), part

    def notices(self) -> pl.DataFrame:
        columns = (*NOTICE_SCHEMA.names[:-1], "issued_at")
        data = b"".join(_copy_out(self.conn, sql.SQL(_NOTICES_SQL).format(_schema())))
        if not data:
            return _frame(NOTICE_SCHEMA.empty_table())
        frame = _parse_text(data, columns).with_columns(
            pl.col("code").cast(pl.UInt64),
            pl.col("page").cast(pl.Int32),
            pl.col("txn").cast(pl.UInt64),
            _micros("issued_at"),
        )
        return frame

    def pools(self) -> pl.DataFrame:
        """Every designated code: ``code, municipality, txn``."""
        data = b"".join(_copy_out(self.conn, sql.SQL(_POOL_SQL).format(_schema())))
        if not data:
            return pl.DataFrame(schema=_POOL_SCHEMA)
        return _parse_text(data, tuple(_POOL_SCHEMA)).cast(_POOL_SCHEMA)  # type: ignore[arg-type]

    def pool_modes(self) -> list[str]:
        """The municipalities in pool mode."""
        rows = self.conn.execute(
            sql.SQL(
                "SELECT code::text FROM {}.municipalities WHERE pool_mode ORDER BY code"
            ).format(_schema())
        ).fetchall()
        return [str(m) for (m,) in rows]

    def summary(self, steps: Steps = QUIET, *, copied: bool = False) -> LedgerSummary:
        """Read every row again on the server and hash its COPY output."""
        schema = _schema()
        records = self.records[:-1] if copied else self.records
        served = [c for c, _, _ in self.municipalities()]
        hasher = _Hasher()
        hasher.section("municipalities")
        hasher.update(f"{self.municipality}\t{','.join(served)}\n".encode())
        hasher.records(records)
        hasher.section("history")
        counts = {
            str(s): int(n)
            for s, n in self.conn.execute(
                sql.SQL("SELECT status, count(*) FROM {}.code_history GROUP BY status").format(
                    schema
                )
            ).fetchall()
        }
        with steps.step("Reading the database ledger back", total=sum(counts.values())) as advance:
            for data in _copy_out(self.conn, sql.SQL(_HISTORY_HASH_SQL).format(schema)):
                hasher.update(data)
                advance(data.count(b"\n"))
        hasher.section("notices")
        notices = 0
        for data in _copy_out(self.conn, sql.SQL(_NOTICES_HASH_SQL).format(schema)):
            hasher.update(data)
            notices += data.count(b"\n")
        row = self.conn.execute(sql.SQL("SELECT count(*) FROM {}.pool").format(schema)).fetchone()
        designated = int(row[0]) if row else 0
        modes = self.pool_modes()
        if designated or modes:
            _hash_pools(hasher, _copy_out(self.conn, sql.SQL(_POOL_HASH_SQL).format(schema)), modes)
        current = {
            str(s): int(n)
            for s, n in self.conn.execute(
                sql.SQL("SELECT status, count(*) FROM {}.codes GROUP BY status").format(schema)
            ).fetchall()
        }
        return LedgerSummary(
            municipality=self.municipality,
            municipalities=served,
            transactions=int(records[-1]["txn"]) if records else 0,
            audit_records=len(records),
            records=dict(sorted(counts.items())),
            codes={k: v for k, v in sorted(current.items()) if v},
            notices=notices,
            content_sha256=hasher.hexdigest(),
            designated=designated,
            pool_mode=modes,
        )


Source = _FolderSource | _PostgresSource


# ---------------------------------------------------------------------------
# Checks before anything is written


def _refuse_incomplete_trail(location: str, records: list[dict[str, Any]]) -> None:
    first = records[0] if records else None
    if not isinstance(first, dict) or first.get("txn") != 0:
        raise UsageError(
            f"The audit trail of {location} does not start at transaction 0 (its first "
            "transactions predate the trail, or were removed), so its records cannot all be "
            "copied. Nothing was written."
        )


def _refuse_unsound(location: str, report: IntegrityReport) -> None:
    if report.violations:
        first = report.violations[0]
        raise UsageError(
            f"The ledger {location} fails its own check ({len(report.violations)} problems, "
            f"e.g. {first['file']}: {first['reason']}); a copy would carry the damage over. "
            f"Run `rrnet verify --ledger` on it and restore it from backup. Nothing was written."
        )


def _sweep_unfinished(path: Path) -> list[str]:
    """Remove the temporary folders of copies into ``path`` that were killed on this
    machine (their process is gone); the notes to show, naming what was removed and
    what is left for a person (another machine's, a running copy's, an old name)."""
    notes: list[str] = []
    prefix = f".{path.name}.copying-"
    for leftover in sorted(path.parent.glob(f"{prefix}*")):
        host, _, rest = leftover.name[len(prefix) :].partition("-")
        pid = rest.partition("-")[0]
        if host == host_name() and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)
            if not leftover.exists():
                notes.append(f"Removed {leftover}, left by an earlier copy that was stopped.")
                continue
        notes.append(
            f"{leftover} is an unfinished copy (another run's, or one stopped on another "
            "machine). It holds residents' records: delete it once no copy is running."
        )
    return notes


def _folder_target(location: str) -> Path:
    path = Path(location)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UsageError(
            f"{path} already exists and is not an empty folder; a copy needs a new ledger "
            "(an existing ledger is never overwritten). Nothing was written."
        )
    if not path.parent.is_dir():
        raise UsageError(f"The folder {path.parent} does not exist. Nothing was written.")
    return path


# ---------------------------------------------------------------------------
# The copy record


def _copy_record(
    number: int,
    invocation: Invocation,
    prev: str,
    source_location: str,
    summary: LedgerSummary,
    *,
    segments: list[dict[str, Any]] | None,
    place: dict[str, Any] | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "txn": number,
        "at": datetime.now(UTC).isoformat(),
        "operator": invocation.operator,
        "command": list(invocation.command),
        "inputs": [],
        "outputs": [],
        COPIED_FROM: {
            "ledger": source_location,
            "head": prev,
            "transactions": summary.transactions,
            "records": sum(summary.records.values()),
            "notices": summary.notices,
            "content_sha256": summary.content_sha256,
        },
        "counts": {},
        "prev": prev,
    }
    if segments is not None:
        record["segments"] = segments
    if place is not None:
        record[PLACE] = place
    return seal(record)


# ---------------------------------------------------------------------------
# Writing a PostgreSQL ledger


def _pg_history_lines(txn: int, part: pl.DataFrame | tuple[str, np.ndarray], at: datetime) -> bytes:
    """Records as COPY text for ``code_history`` (code, status, municipality, resident_id,
    txn, recorded_at); a fixed-status batch at its transaction's time, vectorised."""
    if isinstance(part, tuple):
        status, codes = part
        return _code_lines(codes, f"\t{status}\t\\N\t\\N\t{txn}\t{at.isoformat()}\n".encode())
    return _text_lines(
        part.select(
            pl.col("code").cast(pl.String),
            _escape("status"),
            _escape("municipality"),
            _escape("resident_id"),
            pl.col("txn").cast(pl.String),
            pl.col("recorded_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
        )
    )


def _pg_notice_lines(notices: pl.DataFrame) -> bytes:
    return _text_lines(
        notices.select(
            pl.col("code").cast(pl.String),
            *(_escape(c) for c in ("resident_id", "municipality", "kind", "reprint_reason")),
            *(_escape(c) for c in ("batch", "file")),
            pl.col("page").cast(pl.String),
            pl.col("txn").cast(pl.String),
            pl.col("issued_at")
            .cast(pl.Datetime("us", "UTC"))
            .dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"),
        )
    )


#: Counts that a ledger-wide record holds (an import of codes in use elsewhere).
_LEDGER_WIDE = frozenset({"imported", "retired"})


def record_owner(record: Mapping[str, Any], municipality: str) -> str | None:
    """The municipality a folder ledger's audit record is for, in a database's terms.

    A folder serves one municipality and its records do not name it. In a shared
    database an office reads only its own municipality's records (they name
    residents: a code change's resident, codes and reason) and the ledger-wide
    ones: so every run of the folder's municipality (assign, change, notify,
    designate, pool mode) is that municipality's; imports and earlier copies are
    ledger-wide (None), as schema version 2 decided for the records of version 1.
    (A record that names its municipality, as the ledger's creation does, keeps
    it: ``_append_record`` uses ``whose`` only for a record that names none.)
    """
    counts = record.get("counts")
    keys = set(counts) if isinstance(counts, dict) else set()
    if keys - _LEDGER_WIDE or POOL_MODE in record or "changes" in record:
        return municipality
    return None


def _pg_pool_lines(pool: pl.DataFrame, times: Mapping[int, datetime]) -> bytes:
    """Designated codes as COPY text for ``pool``, each at its transaction's time."""
    at = pl.Series([times[int(t)].isoformat() for t in pool["txn"].unique().to_list()])
    when = pl.DataFrame({"txn": pool["txn"].unique(), "at": at})
    return _text_lines(
        pool.join(when, on="txn", how="left", maintain_order="left").select(
            pl.col("code").cast(pl.String),
            _escape("municipality"),
            pl.col("txn").cast(pl.String),
            pl.col("at"),
        )
    )


def _pg_check(conn: psycopg.Connection[Any], municipality: str) -> IntegrityReport:
    """``PostgresLedger.check_integrity``'s owner checks, on this (uncommitted) transaction."""
    from rrnet_cli.ledger import postgres as pgmod

    report = IntegrityReport()
    history = pgmod._history_counts(conn)
    log = pgmod._audit_log(conn, municipality, counts=history)
    for problem in log.problems:
        report.add(pgmod.TABLE_TRANSACTIONS, problem)
    known = {r.get("txn") for r in log.records if isinstance(r, dict)}
    strays = sorted(t for t in history if t not in known)
    if strays:
        report.add(
            pgmod.TABLE_HISTORY, f"records of transactions {strays[:10]} have no audit record"
        )
    pgmod._check_current(conn, report)
    pgmod._check_pools(conn, log.records, report, municipality)
    pgmod._guarantees(conn, report)
    return report


def _into_postgres(
    source: Source,
    location: str,
    summary: LedgerSummary,
    invocation: Invocation,
    steps: Steps,
) -> tuple[str, LedgerSummary]:
    """Copy into a new schema in one transaction, check it there, commit only if clean."""
    from rrnet_cli.ledger import postgres as pgmod

    target = pgmod.PostgresLedger(location)
    schema = _schema()
    records = source.records
    municipality = source.municipality
    if municipality is None:
        raise UsageError("The source ledger names no municipality; nothing was written.")
    times = {int(r["txn"]): _at(r) for r in records}
    exists = UsageError(
        f"The database {target.server} already has a schema {pgmod.SCHEMA!r}: it holds a "
        "ledger already (or something else of that name). A copy needs a database without "
        "one (an existing ledger is never overwritten). Nothing was written."
    )
    try:
        with target._connect() as conn, target._errors(), conn.transaction():
            found = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (pgmod.SCHEMA,)
            ).fetchone()
            if found:
                raise exists
            conn.execute(
                sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(pgmod.WRITER_WORK_MEM))
            )
            conn.execute(pgmod.MIGRATIONS[0])
            conn.execute(
                sql.SQL(
                    "INSERT INTO {}.meta (schema_version, municipality, created_at) "
                    "VALUES (1, %s, %s)"
                ).format(schema),
                (municipality, source.created_at()),
            )
            pgmod._migrate(conn, 1)
            for code, added_txn, added_at in source.municipalities():
                if code == municipality:
                    continue
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {}.municipalities (code, added_txn, added_at) "
                        "VALUES (%s, %s, %s)"
                    ).format(schema),
                    (code, added_txn, added_at),
                )
            total = sum(summary.records.values())
            with (
                steps.step("Copying every record into the database", total=total) as advance,
                conn.cursor().copy(
                    sql.SQL(
                        "COPY {}.code_history (code, status, municipality, resident_id, txn, "
                        "recorded_at) FROM STDIN"
                    ).format(schema)
                ) as copy,
            ):
                for txn, part in source.history():
                    for start in range(0, _rows(part), CHUNK):
                        copy.write(_pg_history_lines(txn, _slice(part, start), times[txn]))
                    advance(_rows(part))
            with steps.step("Filling the current code of every code"):
                conn.execute(
                    sql.SQL(
                        "INSERT INTO {0}.codes (code, status, municipality, resident_id, txn)"
                        " SELECT DISTINCT ON (code) code, status, municipality, resident_id, txn"
                        " FROM {0}.code_history ORDER BY code, txn DESC"
                    ).format(schema)
                )
            notices = source.notices()
            if notices.height:
                with conn.cursor().copy(
                    sql.SQL(
                        "COPY {}.notices (code, resident_id, municipality, kind, reprint_reason,"
                        " batch, file, page, txn, issued_at) FROM STDIN"
                    ).format(schema)
                ) as copy:
                    copy.write(_pg_notice_lines(notices))
            pools = source.pools()
            if pools.height:
                with conn.cursor().copy(
                    sql.SQL(
                        "COPY {}.pool (code, municipality, txn, designated_at) FROM STDIN"
                    ).format(schema)
                ) as copy:
                    for start in range(0, pools.height, CHUNK):
                        copy.write(_pg_pool_lines(pools.slice(start, CHUNK), times))
            conn.execute(
                sql.SQL(
                    "UPDATE {}.municipalities SET pool_mode = true WHERE code = ANY(%s)"
                ).format(schema),
                (source.pool_modes(),),
            )
            for record in records:
                pgmod._append_record(conn, record, whose=record_owner(record, municipality))
            head = str(records[-1]["hash"])
            pgmod._append_record(
                conn,
                _copy_record(
                    int(records[-1]["txn"]) + 1,
                    invocation,
                    head,
                    _source_location(source),
                    summary,
                    segments=None,
                ),
            )
            conn.execute(sql.SQL("ANALYZE {}.code_history").format(schema))
            # The check, before the commit: read back from the tables just written.
            log = pgmod._audit_log(conn, municipality)
            copied = _PostgresSource(target.location, conn, municipality, log)
            after = copied.summary(steps, copied=True)
            _compare(summary, after, target.location)
            with steps.step("Checking the copy (as rrnet verify --ledger)"):
                report = _pg_check(conn, municipality)
            _refuse_copy(report, target.location)
            failpoint("copy-before-commit")
    except psycopg.errors.DuplicateSchema:
        raise exists from None
    except (psycopg.errors.IntegrityError, psycopg.errors.DataError) as exc:
        raise LedgerError(
            f"The database {target.server} refused a record of the source ledger "
            f"({target._reason(exc)}); nothing was written."
        ) from None
    return target.location, after


def _rows(part: pl.DataFrame | tuple[str, np.ndarray]) -> int:
    return len(part[1]) if isinstance(part, tuple) else part.height


def _slice(
    part: pl.DataFrame | tuple[str, np.ndarray], start: int
) -> pl.DataFrame | tuple[str, np.ndarray]:
    if isinstance(part, tuple):
        return part[0], part[1][start : start + CHUNK]
    return part.slice(start, CHUNK)


# ---------------------------------------------------------------------------
# Writing a folder ledger


class _SegmentWriter:
    """One segment written as ``folder.Transaction._write_segment`` writes one, streamed."""

    def __init__(self, folder: Path, txn: int, index: int, schema: pa.Schema) -> None:
        self.name = f"{txn:08d}-{index:04d}-{uuid.uuid4().hex[:12]}.parquet"
        self.path = folder / SEGMENTS / self.name
        self.txn = txn
        self.rows = 0
        self.statuses: dict[str, int] = {}
        self.has_residents = False
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        os.close(fd)
        names = schema.names
        self.writer = pq.ParquetWriter(
            self.path,
            schema,
            compression={n: ("none" if n == "code" else "zstd") for n in names},
            use_dictionary=[n for n in names if n != "code"],
            column_encoding={"code": "DELTA_BINARY_PACKED"},
        )

    def write(self, table: pa.Table, statuses: Mapping[str, int], has_residents: bool) -> None:
        self.writer.write_table(table, row_group_size=_ROW_GROUP)
        self.rows += table.num_rows
        for status, n in statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + n
        self.has_residents |= has_residents

    def close(self) -> dict[str, Any]:
        self.writer.close()
        with open(self.path, "rb+") as handle:
            os.fsync(handle.fileno())
        return SegmentInfo(
            file=f"{SEGMENTS}/{self.name}",
            txn=self.txn,
            rows=self.rows,
            bytes=self.path.stat().st_size,
            sha256=file_sha256(self.path),
            statuses=self.statuses,
            has_residents=self.has_residents,
        ).to_json()


def _record_table(frame: pl.DataFrame) -> pa.Table:
    return (
        frame.select(
            pl.col("code").cast(pl.UInt64),
            pl.col("status").cast(pl.String),
            pl.col("municipality").cast(pl.String),
            pl.col("resident_id").cast(pl.String),
            pl.col("txn").cast(pl.UInt64),
            pl.col("recorded_at").cast(pl.Datetime("ms", "UTC")),
        )
        .sort("code")
        .to_arrow()
        .cast(RECORD_SCHEMA)
    )


def _write_folder(
    source: Source,
    folder: Path,
    summary: LedgerSummary,
    invocation: Invocation,
    steps: Steps,
    place: Path,
) -> None:
    """The whole ledger into ``folder`` (new), its manifest last; bound to ``place``,
    where ``folder`` is renamed to once checked (the copy is a new ledger, with an id
    of its own)."""
    records = source.records
    times = {int(r["txn"]): _at(r) for r in records}
    folder.mkdir(mode=PRIVATE_DIR)
    os.chmod(folder, PRIVATE_DIR)
    (folder / SEGMENTS).mkdir(mode=PRIVATE_DIR)
    os.close(os.open(folder / LOCK, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
    segments: list[dict[str, Any]] = []
    fixed: dict[str, _SegmentWriter] = {}
    kept: list[pl.DataFrame] = []
    current = -1
    names = iter(range(10**9))  # segment numbers within a transaction, for their names

    def close_txn() -> None:
        for writer in fixed.values():
            segments.append(writer.close())
        fixed.clear()
        frame = pl.concat(kept) if kept else None
        kept.clear()
        if frame is None or frame.height == 0:
            return
        writer = _SegmentWriter(folder, current, next(names), RECORD_SCHEMA)
        statuses = {str(s): int(n) for s, n in frame.group_by("status").len().iter_rows()}
        has_residents = bool(frame["resident_id"].is_not_null().any())
        writer.write(_record_table(frame), statuses, has_residents)
        segments.append(writer.close())

    def add_fixed(txn: int, status: str, codes: np.ndarray) -> None:
        writer = fixed.get(status)
        if writer is None:
            code_only = pa.schema([("code", pa.uint64())])
            writer = fixed[status] = _SegmentWriter(folder, txn, next(names), code_only)
        table = pa.table({"code": pa.array(np.asarray(codes, np.uint64), pa.uint64())})
        writer.write(table, {status: table.num_rows}, False)

    total = sum(summary.records.values())
    with steps.step("Copying every record into the folder", total=total) as advance:
        for txn, part in source.history():
            if txn != current:
                close_txn()
                current, names = txn, iter(range(10**9))
            if isinstance(part, tuple):  # a fixed-status batch of a folder's segment
                add_fixed(txn, part[0], part[1])
                advance(len(part[1]))
                continue
            # Records that name nobody and carry their transaction's time go into a
            # code-only segment per status, as imports do; the rest as records.
            plain = (
                pl.col("resident_id").is_null()
                & pl.col("municipality").is_null()
                & (pl.col("recorded_at").dt.epoch("ms") == _ms(times[txn]))
            )
            for (status,), group in part.filter(plain).group_by("status", maintain_order=True):
                add_fixed(txn, str(status), group["code"].cast(pl.UInt64).to_numpy())
            kept.append(part.filter(~plain))
            advance(part.height)
        close_txn()
    notices = source.notices()
    for (txn_value,), group in notices.group_by("txn", maintain_order=True):
        txn = int(str(txn_value))
        writer = _SegmentWriter(folder, txn, 9999, NOTICE_SCHEMA)
        frame = group.sort("code", maintain_order=True).with_columns(
            pl.col("issued_at").cast(pl.Datetime("ms", "UTC"))
        )
        writer.write(frame.to_arrow().cast(NOTICE_SCHEMA), {NOTICE: frame.height}, True)
        segments.append(writer.close())
    pools = source.pools()
    code_only = pa.schema([("code", pa.uint64())])
    for (txn_value,), group in pools.group_by("txn", maintain_order=True):
        writer = _SegmentWriter(folder, int(str(txn_value)), 9998, code_only)
        codes = np.sort(group["code"].to_numpy().astype(np.uint64))
        writer.write(
            pa.table({"code": pa.array(codes, pa.uint64())}), {DESIGNATED: len(codes)}, False
        )
        segments.append(writer.close())
    fsync_dir(folder / SEGMENTS)
    segments.sort(key=lambda s: (s["txn"], s["file"]))
    head = str(records[-1]["hash"])
    number = int(records[-1]["txn"]) + 1
    copy_record = _copy_record(
        number,
        invocation,
        head,
        _source_location(source),
        summary,
        segments=[{"file": s["file"], "sha256": s["sha256"], "rows": s["rows"]} for s in segments],
        place=folder_mod.new_place(folder, uuid.uuid4().hex, path=place),
    )
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": source.created_at().isoformat(),
        "municipality": source.municipality,
        "txn": number,
        "segments": segments,
        TRANSACTIONS: [*records, copy_record],
    }
    # Pool mode as the source has it; a ledger whose trail ever set it keeps the key.
    if source.pool_modes() or any(isinstance(r.get(POOL_MODE), bool) for r in records):
        manifest[POOL_MODE] = bool(source.pool_modes())
    manifest["version"] = (
        NOTICE_VERSION
        if notices.height
        else POOL_VERSION
        if pools.height or POOL_MODE in manifest
        else VERSION
    )
    folder_mod._write_private_json(folder / MANIFEST, manifest)
    fsync_dir(folder)


def _into_folder(
    source: Source,
    location: str,
    summary: LedgerSummary,
    invocation: Invocation,
    steps: Steps,
) -> tuple[str, LedgerSummary]:
    """Write into a temporary folder, check it, and rename it into place."""
    path = _folder_target(location)
    temporary = path.parent / (
        f".{path.name}.copying-{host_name()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    )
    try:
        _write_folder(source, temporary, summary, invocation, steps, path)
        ledger = Ledger.open(temporary)
        copied = _FolderSource(ledger, ledger.read_manifest())
        after = copied.summary(steps, copied=True)
        _compare(summary, after, str(path))
        with steps.step("Checking the copy (as rrnet verify --ledger)"):
            report = ledger.check_integrity()
        _refuse_copy(report, str(path))
        failpoint("copy-before-rename")
        try:
            os.rename(temporary, path)  # replaces an empty folder; refuses anything else
        except OSError as exc:
            raise UsageError(
                f"{path} appeared while the copy ran and is not empty ({exc.strerror}); "
                "nothing was written there."
            ) from None
        fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return str(path), after


def _close_source(source: _FolderSource, target: str, invocation: Invocation) -> None:
    """Close the folder SRC (``--move``) once DST is in place: one transaction of its
    own, under the lock the copy still holds, whose record and manifest say where
    the ledger went (``MOVED_TO``). Its writers then refuse (``folder.refuse_moved``).
    A crash before this leaves SRC open and DST complete: close it by hand then, or
    delete DST and copy again."""
    source.ledger.close_locked(source.ledger.read_manifest(), target, invocation)


# ---------------------------------------------------------------------------
# The command


def _source_location(source: Source) -> str:
    return str(source.ledger.path) if isinstance(source, _FolderSource) else source.location


def _compare(before: LedgerSummary, after: LedgerSummary, where: str) -> None:
    differences = before.differences(after)
    if differences:
        raise CopyMismatch(
            f"The copy at {where}, read back, differs from its source; nothing was kept there.",
            details=differences,
        )


def _refuse_copy(report: IntegrityReport, where: str) -> None:
    if report.violations:
        raise CopyMismatch(
            f"The copy at {where} fails its check; nothing was kept there.",
            details=[f"{v['file']}: {v['reason']}" for v in report.violations[:20]],
        )


@dataclass
class CopyResult:
    """What ``rrnet ledger copy`` did: both ledgers' counts and the content hash."""

    source: str
    target: str
    summary: LedgerSummary
    #: the copy's own audit record (appended after the copied ones)
    copy_transaction: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            **self.summary.to_json(),
            "copy_transaction": self.copy_transaction,
            "matches": True,
            "notes": self.notes,
        }

    def summary_rows(self) -> list[tuple[str, Any]]:
        s = self.summary
        rows: list[tuple[str, Any]] = [
            ("from", self.source),
            ("to", self.target),
            ("municipality", s.municipality or "-"),
        ]
        if len(s.municipalities) > 1:
            rows.append(("serves", ", ".join(s.municipalities)))
        rows += [
            ("transactions", s.transactions),
            ("audit records", s.audit_records),
            ("records ever made", sum(s.records.values())),
            *((f"  {k}", v) for k, v in s.records.items()),
            ("codes used", sum(s.codes.values())),
            *((f"  {k} now", v) for k, v in s.codes.items()),
            ("notices", s.notices),
            *([("designated codes", s.designated)] if s.designated else []),
            *([("pool mode on for", ", ".join(s.pool_mode))] if s.pool_mode else []),
            ("content SHA-256", s.content_sha256),
            ("copy recorded as transaction", self.copy_transaction),
        ]
        return rows


@contextlib.contextmanager
def _held_source(location: str, timeout: float) -> Iterator[Source]:
    """SRC opened and held still (its writers' lock) for the whole copy."""
    if is_database_location(location):
        from rrnet_cli.ledger import postgres as pgmod

        ledger = pgmod.PostgresLedger.open(location)
        if not ledger.owner:
            raise UsageError(
                f"Copy the ledger in {ledger.server} as its owner: row-level security shows "
                "an office's role only its own municipality, and the copy would be partial. "
                "Nothing was written."
            )
        with ledger._connect() as guard, ledger._errors(), guard.transaction():
            pgmod._lock_for_writing(guard, timeout, server=ledger.server)
            report = ledger.check_integrity()
            _refuse_unsound(ledger.location, report)
            with ledger._connect() as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                municipality = ledger._check_schema(conn)
                log = pgmod._audit_log(conn, municipality)
                yield _PostgresSource(ledger.location, conn, municipality, log)
        return
    folder = Ledger.open(Path(location))
    with folder.lock(timeout):
        report = folder.check_integrity()
        _refuse_unsound(str(folder.path), report)
        yield _FolderSource(folder, folder.read_manifest())


def copy_ledger(
    source_location: str,
    target_location: str,
    *,
    invocation: Invocation | None = None,
    steps: Steps = QUIET,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    move: bool = False,
) -> CopyResult:
    """Copy the ledger at ``source_location`` into a new one at ``target_location``.

    See the module docstring: refusals up front, one transaction or a renamed
    temporary folder, the check at the end. Raises ``CopyMismatch`` (exit 1)
    when the copy differs from its source; nothing is then left at the target.
    ``move`` closes a folder source once the copy is in place (``_close_source``).
    """
    invocation = invocation or Invocation()
    if move and is_database_location(source_location):
        raise UsageError(
            "--move closes a folder ledger; a database ledger is closed by revoking its "
            "offices' roles (docs/deployment.md). Nothing was written."
        )
    into_database = is_database_location(target_location)
    notes: list[str] = []
    if not into_database:
        notes += _sweep_unfinished(_folder_target(target_location))
    with _held_source(source_location, timeout) as source:
        records = source.records
        location = _source_location(source)
        if isinstance(source, _FolderSource) and MOVED_TO in source.manifest:
            moved = source.manifest[MOVED_TO]
            raise UsageError(
                f"The ledger {location} was moved to "
                f"{moved.get('ledger') if isinstance(moved, dict) else moved} and is closed: "
                "copy that one instead (a copy of this one would be a second ledger in use). "
                "Nothing was written."
            )
        _refuse_incomplete_trail(location, records)
        if isinstance(source, _PostgresSource) and not into_database:
            served = [c for c, _, _ in source.municipalities()]
            if len(served) > 1:
                raise UsageError(
                    f"The ledger in {location} serves {len(served)} municipalities "
                    f"({', '.join(served)}); a folder ledger serves the one it was made for. "
                    "Nothing was written."
                )
        with steps.step("Reading the source ledger"):
            before = source.summary(steps)
        if into_database:
            target, _after = _into_postgres(source, target_location, before, invocation, steps)
        else:
            target, _after = _into_folder(source, target_location, before, invocation, steps)
        if move and isinstance(source, _FolderSource):
            _close_source(source, target, invocation)
    if isinstance(source, _PostgresSource) or into_database:
        notes.append(
            "Office roles are not copied: grant them on the new ledger with "
            "`rrnet ledger add-municipality --role`."
        )
    if move:
        notes.append(
            f"{location} is closed: it refuses every run that writes, naming {target}, and "
            "still answers stats, log and verify."
        )
    else:
        notes.append(
            f"{location} still works as a ledger. From now on assign, change and notify with "
            "one of the two only, and keep the other as a read-only backup (or copy with "
            "--move, which closes a folder): two ledgers in use draw codes without seeing "
            "each other's, which is how duplicate codes happen."
        )
    return CopyResult(
        source=location,
        target=target,
        summary=before,
        copy_transaction=before.transactions + 1,
        notes=notes,
    )


#: For tests and tools: the summary of an existing ledger, as the copy compares it.
def summarize(location: str, *, copied: bool = False) -> LedgerSummary:
    with _held_source(location, DEFAULT_LOCK_TIMEOUT) as source:
        return source.summary(copied=copied)
