"""The ledger: every resident record code ever used, persisted crash-safely.

A ledger is a directory::

    LEDGER/
      manifest.json        which segments make up the ledger (replaced atomically)
      lock                 flock()ed by the one run that may write
      segments/*.parquet   immutable record segments, each sorted by code

A record says that a code was used, with its status (``assigned`` here,
``carried_over`` from another municipality, ``imported`` as in use elsewhere, or
``retired``) and, where known, the municipality and resident it belongs to. A
code's current status is that of its record in the latest transaction. Every
code that appears in any record is used forever, retired or not.

Why it is crash-safe: a transaction writes its new segments under fresh names,
fsyncs them, then writes a new manifest to a temporary file, fsyncs it and
renames it over ``manifest.json`` (an atomic step on POSIX file systems), then
fsyncs the directory. Readers only ever follow the manifest, so a crash at any
instant leaves either the old manifest (the run never happened; its stray
segment files are swept by the next writer) or the new one (the run is whole).

Why runs cannot collide: a writer holds an exclusive ``flock`` on ``lock`` from
before it reads the ledger until after it has committed; a second run waits for
the lock or gives up with a clear message. The kernel drops the lock when the
holder dies, even by ``kill -9``.

The audit trail: the manifest also holds one record per transaction
(``transactions``), written in the same atomic replace as the segments it
describes: who ran it (operator), the command line, the SHA-256 of every input
and output file, the counts by status, its segments with their checksums and
the hash of the record before it. Each record's ``hash`` is the SHA-256 of its
canonical JSON, so the records form a hash chain: a record edited, removed,
inserted or moved by hand no longer matches its hash or its neighbour's link,
and ``check_integrity`` names the transaction. Manifest version 1 (before the
trail) is still read; its transactions are reported as predating the trail,
and the first write upgrades the manifest to version 2.

Designated pools (住民票コードの指定): the prefecture (since 2015 J-LIS) designates
to each municipality the codes it may use, so that municipalities never
collide. ``rrnet ledger designate`` records such a pool as its own segments,
written through the same transaction and commit path as any other (so the audit
trail records the designation with the file's SHA-256 and the count). A pool
segment holds only sorted codes, and its manifest entry says
``statuses: {"designated": n}``. Designated codes are *not* used codes: they stay
out of the used-code index (``LedgerState.codes``) and sit in
``LedgerState.pool``; a designated code is free until a record uses it, and a
pool code's use is simply a record of it (assigned, carried over, imported or
retired). What is left of the pool is therefore the pool minus every used code,
computed when needed rather than stored. A code is designated only while it is
unused and not yet in the pool (``rrnet_cli.pool`` refuses anything else), and
``check_integrity`` checks that no pool code was used before its designation,
that the pool holds no code twice, and that every code a transaction drew from
the pool (its audit record says ``"drawn_from": "pool"``) was designated before.

Pool mode (``manifest["pool_mode"]``, set by ``rrnet ledger pool-mode on|off``)
makes ``assign`` and ``change`` draw only from the pool. Changing it is a
transaction of its own that adds no segment: its audit record carries the new
``pool_mode``, and ``check_chain`` checks that the manifest's mode is the one the
trail last recorded. A manifest that has a pool or a pool mode is written as
version 3, so that an rrnet from before pools refuses the ledger instead of
ignoring its pool mode (or taking designated codes for used ones); a ledger
without a pool stays version 2.

The store sits behind the small ``LedgerStore`` protocol so that a shared
database backend can take its place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import hashlib
import json
import os
import signal
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rrnet_cli import code as rcode
from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, LedgerBusy, LedgerError, UsageError
from rrnet_cli.files import PRIVATE_DIR, PRIVATE_FILE, fsync_dir

FORMAT = "rrnet-ledger"
#: The manifest version this rrnet writes: 2 has the audit trail (``transactions``).
VERSION = 2
#: The version it writes once the ledger has a designated pool or a pool mode: an
#: rrnet from before pools refuses it rather than draw outside the pool.
POOL_VERSION = 3
#: The versions it reads: 1 (before the audit trail) is upgraded on the next write.
READABLE_VERSIONS = (1, 2, 3)
#: The status of a pool segment's codes in its manifest entry (never a record's status).
DESIGNATED = "designated"
#: The manifest key (and audit record key) of pool mode: true means draw only from the pool.
POOL_MODE = "pool_mode"
#: The audit detail of a transaction that drew its new codes from the pool.
DRAWN_FROM = "drawn_from"
#: The manifest key of the audit trail: one record per transaction, hash-chained.
TRANSACTIONS = "transactions"
MANIFEST = "manifest.json"
LOCK = "lock"
SEGMENTS = "segments"

#: Segments smaller than this are merged in memory when a ledger is opened, so
#: that many small runs do not turn every membership test into many searches.
_SMALL_SEGMENT = 4_000_000


class Status(StrEnum):
    """What a record says about its code."""

    ASSIGNED = "assigned"
    CARRIED_OVER = "carried_over"
    IMPORTED = "imported"
    RETIRED = "retired"


ACTIVE = (Status.ASSIGNED.value, Status.CARRIED_OVER.value)

RECORD_SCHEMA = pa.schema(
    [
        ("code", pa.uint64()),
        ("status", pa.string()),
        ("municipality", pa.string()),
        ("resident_id", pa.string()),
        ("txn", pa.uint64()),
        ("recorded_at", pa.timestamp("ms", tz="UTC")),
    ]
)


def _failpoint(name: str) -> None:
    """Die on the spot when RRNET_FAILPOINT names this point (crash tests only)."""
    if os.environ.get("RRNET_FAILPOINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _write_private_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        _failpoint("before-manifest-replace")
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# The audit trail: who did what, one hash-chained record per transaction


def default_operator() -> str:
    """The operating-system user running rrnet (its uid when it has no name)."""
    try:
        name = getpass.getuser()
    except Exception:  # no login name in the environment or the password database
        name = ""
    return name or f"uid {os.getuid()}"


def check_operator(name: str) -> str:
    """An ``--operator`` name as recorded: trimmed, one line, not empty."""
    text = name.strip()
    if not text or len(text) > 200 or any(not c.isprintable() for c in text):
        raise UsageError(
            "--operator needs a name for the audit trail: one line of printable text, "
            "at most 200 characters."
        )
    return text


@dataclass(frozen=True)
class Invocation:
    """Who ran which command: what a transaction's audit record says about its run."""

    operator: str = field(default_factory=default_operator)
    #: the command line (argv), with file names but no personal data
    command: tuple[str, ...] = ()


def file_digest(path: Path, *, name: str | Path | None = None) -> dict[str, str]:
    """``{"path", "sha256"}`` of a file for an audit record.

    ``name`` is the path to record when the bytes are read elsewhere: an output
    is hashed in its temporary file, before the commit, under its final name.
    """
    return {"path": str(path if name is None else name), "sha256": _sha256(Path(path))}


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of an audit record's canonical JSON, every key but ``hash`` itself."""
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sealed(record: dict[str, Any]) -> dict[str, Any]:
    record["hash"] = record_hash(record)
    return record


#: The fields every audit record has, and their JSON types.
_RECORD_KEYS: dict[str, type | tuple[type, ...]] = {
    "txn": int,
    "at": str,
    "operator": str,
    "command": list,
    "inputs": list,
    "outputs": list,
    "counts": dict,
    "segments": list,
    "prev": str,
    "hash": str,
}
#: Keys a command's own details may not use (they belong to the record, or to a
#: setting only the transaction itself may record).
_RESERVED_KEYS = frozenset(_RECORD_KEYS) | {POOL_MODE}


def _record_problem(record: dict[str, Any]) -> str | None:
    for key, kind in _RECORD_KEYS.items():
        value = record.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"the record lacks a valid {key!r}"
    if not all(isinstance(a, str) for a in record["command"]):
        return "the record's command is not a list of words"
    for key in ("inputs", "outputs"):
        for entry in record[key]:
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("path"), str)
                and isinstance(entry.get("sha256"), str)
            ):
                return f"the record's {key} are not a list of files with their SHA-256"
    if not all(isinstance(s, dict) for s in record["segments"]):
        return "the record's segments are not a list of segment entries"
    return None


def _segment_key(entry: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return (entry.get("file"), entry.get("sha256"), entry.get("rows"))


def _txn_ranges(numbers: Iterable[int]) -> list[str]:
    """``[1, 2, 3, 7]`` -> ``["1..3", "7"]``."""
    out: list[str] = []
    ordered = sorted(numbers)
    start = previous = None
    for n in [*ordered, None]:
        if n is not None and previous is not None and n == previous + 1:
            previous = n
            continue
        if start is not None:
            out.append(str(start) if start == previous else f"{start}..{previous}")
        start = previous = n
    return out


@dataclass
class AuditLog:
    """The audit trail as stored, and what a check of its chain found."""

    records: list[dict[str, Any]]
    #: broken hashes or links, missing or moved records: each names its transaction
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.problems

    @property
    def head(self) -> str | None:
        """The latest record's hash: note it elsewhere to detect a rewritten trail."""
        last = self.records[-1] if self.records else None
        value = last.get("hash") if isinstance(last, dict) else None
        return value if isinstance(value, str) else None


def check_chain(manifest: Mapping[str, Any]) -> AuditLog:
    """Check the audit trail of a manifest (no segment file is read).

    Each record must match its hash and link to the record before it; the
    records must number the transactions in order up to the manifest's last,
    without gaps or repeats; and each must name exactly the segments (file,
    checksum, rows) and counts that the manifest holds for its transaction.
    A version 1 manifest has no trail: its transactions predate it (a note).
    """
    txn = int(manifest["txn"])
    records = manifest.get(TRANSACTIONS)
    if records is None:
        log = AuditLog(records=[])
        if manifest.get("version") == 1:
            if txn:
                log.notes.append(_predate(txn) + " (a version 1 ledger)")
        else:
            log.problems.append("the manifest has no audit trail (its records were removed)")
        return log
    log = AuditLog(records=list(records) if isinstance(records, list) else [])
    by_txn: dict[int, list[Mapping[str, Any]]] = {}
    for entry in manifest["segments"]:
        by_txn.setdefault(int(entry["txn"]), []).append(entry)
    numbers: list[int] = []
    previous_hash: str | None = None
    previous_label: str | None = None
    for index, record in enumerate(log.records):
        if not isinstance(record, dict) or not isinstance(record.get("txn"), int):
            log.problems.append(
                f"record {index + 1} of the audit trail is damaged (no transaction number)"
            )
            previous_hash, previous_label = None, f"record {index + 1}"
            continue
        number = int(record["txn"])
        label = f"transaction {number}"
        numbers.append(number)
        shape = _record_problem(record)
        if shape:
            log.problems.append(f"{label}: {shape}")
        if record.get("hash") != record_hash(record):
            log.problems.append(
                f"{label}: the record does not match its hash (it was changed after it was written)"
            )
        if index == 0:
            if record.get("prev") != "":
                log.problems.append(
                    f"{label}: it links to an earlier record that is not in the audit "
                    "trail (the first records were removed)"
                )
        elif record.get("prev") != previous_hash:
            log.problems.append(
                f"{label}: its link to the record before it ({previous_label}) is broken "
                "(a record was changed, removed, inserted or moved)"
            )
        stored = record.get("hash")
        previous_hash = stored if isinstance(stored, str) else None
        previous_label = label
        entries = by_txn.get(number, [])
        named = record.get("segments")
        if isinstance(named, list) and all(isinstance(e, dict) for e in named):
            if sorted(map(_segment_key, named), key=repr) != sorted(
                map(_segment_key, entries), key=repr
            ):
                log.problems.append(
                    f"{label}: the segments it names differ from the manifest's segments of "
                    "that transaction (a segment was added, removed or replaced)"
                )
        counts: dict[str, Any] = {}
        for entry in entries:
            for status, n in entry["statuses"].items():
                counts[status] = counts.get(status, 0) + n if isinstance(n, int) else n
        if isinstance(record.get("counts"), dict) and record["counts"] != counts:
            log.problems.append(f"{label}: its counts differ from its segments' records")
        if number == 0 and record.get("municipality") != manifest.get("municipality"):
            log.problems.append(
                f"{label}: the ledger was created for municipality "
                f"{record.get('municipality')}, but the manifest now names "
                f"{manifest.get('municipality')}"
            )
    problem = _pool_mode_problem(manifest, log.records)
    if problem:
        log.problems.append(problem)
    if not numbers:
        if txn:
            log.problems.append(f"transactions 0..{txn} have no record in the audit trail")
        elif not log.records:
            log.problems.append("the audit trail is empty (its records were removed)")
        return log
    start = min(numbers)
    seen: set[int] = set()
    for index, number in enumerate(numbers):
        if number in seen:
            log.problems.append(f"transaction {number} is recorded twice in the audit trail")
        elif index and number < numbers[index - 1]:
            log.problems.append(
                f"transaction {number}: out of order in the audit trail (after "
                f"transaction {numbers[index - 1]})"
            )
        seen.add(number)
    missing = set(range(start, txn + 1)) - seen
    for span in _txn_ranges(missing):
        word = "transactions" if ".." in span else "transaction"
        log.problems.append(f"{word} {span}: no record in the audit trail (removed?)")
    for number in sorted(n for n in seen if n > txn):
        log.problems.append(
            f"transaction {number}: recorded in the audit trail, but the ledger's last "
            f"transaction is {txn}"
        )
    first = log.records[0]
    if start > 1 and isinstance(first, dict) and first.get("prev") == "":
        log.notes.append(_predate(start - 1))
    return log


def _pool_mode_problem(manifest: Mapping[str, Any], records: list[Any]) -> str | None:
    """Why the manifest's pool mode disagrees with the audit trail, or None.

    The mode is a manifest key; only a transaction may change it, and its record
    says so. So the manifest's mode must be the one the trail recorded last (off
    when no record ever set it): anything else is a hand edit.
    """
    recorded, where = False, None
    for record in records:
        if isinstance(record, dict) and isinstance(record.get(POOL_MODE), bool):
            recorded, where = record[POOL_MODE], record.get("txn")
    stored = manifest.get(POOL_MODE, False)
    if stored is recorded:
        return None
    if where is None:
        said = "no transaction ever turned it on"
    else:
        said = f"transaction {where} set it {_on_off(recorded)}"
    return (
        f"the manifest says pool mode is {_on_off(bool(stored))}, but in the audit trail "
        f"{said} (the manifest was edited by hand)"
    )


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def _predate(last: int) -> str:
    if last == 1:
        return "transaction 1 predates the audit trail: it has no record"
    return f"transactions 1..{last} predate the audit trail: they have no record"


# ---------------------------------------------------------------------------
# The in-memory view of a ledger


class SortedCodes:
    """One sorted sequence of codes, kept in the chunks it was read in.

    Parquet hands a segment back as one chunk per row group; concatenating 100
    million codes would copy 800 MB for nothing. Because the chunks are
    consecutive ranges of one sorted sequence, each needle is searched only in
    the chunk whose range holds it.
    """

    def __init__(self, chunks: list[np.ndarray]) -> None:
        self.chunks = [np.asarray(c, dtype=np.uint64) for c in chunks if len(c)]
        self.firsts = np.array([c[0] for c in self.chunks], dtype=np.uint64)

    def __len__(self) -> int:
        return int(sum(len(c) for c in self.chunks))

    def member(self, sorted_needles: np.ndarray) -> np.ndarray:
        """Boolean mask over ``sorted_needles`` (ascending): which are in the sequence."""
        found = np.zeros(len(sorted_needles), dtype=bool)
        if not self.chunks or not len(sorted_needles):
            return found
        cuts = np.searchsorted(sorted_needles, self.firsts[1:], side="left")
        bounds = [0, *cuts.tolist(), len(sorted_needles)]
        for chunk, lo, hi in zip(self.chunks, bounds[:-1], bounds[1:], strict=True):
            if hi > lo:
                found[lo:hi] = sorted_member(chunk, sorted_needles[lo:hi])
        return found


class CodeIndex:
    """The used-code set as a few sorted sequences, searched with searchsorted.

    ``np.isin``/``np.unique`` and a Polars anti-join are far slower or hungrier
    at 100 million codes; a binary search of sorted candidates is not.
    """

    def __init__(self, groups: list[tuple[SortedCodes, str | None]]) -> None:
        # Each group: (sorted codes, status of the whole group or None when the
        # status is per record and lives in LedgerState.records).
        self.groups = groups

    def __len__(self) -> int:
        return int(sum(len(a) for a, _ in self.groups))

    def contains(self, candidates: np.ndarray) -> np.ndarray:
        """Boolean mask: which candidates are used codes."""
        candidates = np.asarray(candidates, dtype=np.uint64)
        if len(candidates) > 1 and bool(np.all(candidates[1:] >= candidates[:-1])):
            return self.contains_sorted(candidates)
        order = np.argsort(candidates)
        mask = np.empty(len(candidates), dtype=bool)
        mask[order] = self.contains_sorted(candidates[order])
        return mask

    def contains_sorted(self, sorted_candidates: np.ndarray) -> np.ndarray:
        """``contains`` for candidates already in ascending order (no sort)."""
        found = np.zeros(len(sorted_candidates), dtype=bool)
        for codes, _ in self.groups:
            found |= codes.member(sorted_candidates)
        return found

    def group_status(self, candidates: np.ndarray) -> np.ndarray:
        """For each candidate, the status of the fixed-status group holding it, or None."""
        candidates = np.asarray(candidates, dtype=np.uint64)
        order = np.argsort(candidates)
        ordered = candidates[order]
        out = np.full(len(candidates), None, dtype=object)
        for codes, status in self.groups:
            if status is not None:
                out[order[codes.member(ordered)]] = status
        return out


def sorted_member(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Which ``needles`` are in the sorted array ``haystack`` (fastest if needles sorted)."""
    if len(haystack) == 0 or len(needles) == 0:
        return np.zeros(len(needles), dtype=bool)
    idx = np.searchsorted(haystack, needles)
    idx[idx == len(haystack)] = len(haystack) - 1
    return haystack[idx] == needles


def sorted_positions(haystack: np.ndarray, needles: np.ndarray) -> np.ndarray:
    """Positions in the sorted array ``haystack`` of those ``needles`` it holds."""
    if len(haystack) == 0 or len(needles) == 0:
        return np.empty(0, dtype=np.intp)
    idx = np.searchsorted(haystack, needles)
    idx[idx == len(haystack)] = len(haystack) - 1
    return idx[haystack[idx] == needles]


def pool_used_mask(pool: np.ndarray, used: CodeIndex) -> np.ndarray:
    """Boolean mask over the sorted ``pool``: which of its codes are ``used``.

    Each group of used codes is searched from its smaller side: the pool's codes
    in a large group (a national extract), or a small group's codes in the pool.
    Vectorised binary searches either way.
    """
    mask = np.zeros(len(pool), dtype=bool)
    if not len(pool):
        return mask
    for codes, _ in used.groups:
        if len(codes) >= len(pool):
            mask |= codes.member(pool)
        else:
            for chunk in codes.chunks:
                mask[sorted_positions(pool, chunk)] = True
    return mask


def free_pool_codes(
    pool: np.ndarray, used: CodeIndex, taken: np.ndarray | None = None
) -> np.ndarray:
    """The codes of the sorted ``pool`` that are neither ``used`` nor ``taken`` (sorted)."""
    used_mask = pool_used_mask(pool, used)
    left = pool[~used_mask] if used_mask.any() else pool
    if taken is not None and len(taken) and len(left):
        free = np.ones(len(left), dtype=bool)
        free[sorted_positions(left, np.asarray(taken, dtype=np.uint64))] = False
        left = left[free]
    return left


@dataclass
class LedgerState:
    """A consistent read of the ledger at one manifest."""

    manifest: dict[str, Any]
    codes: CodeIndex
    #: Every record that names a resident or varies in status, all columns.
    records: pl.DataFrame
    #: Every designated code (the pool), sorted; used ones too (see ``pool_used``).
    pool: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))

    @property
    def txn(self) -> int:
        return int(self.manifest["txn"])

    @property
    def pool_mode(self) -> bool:
        """Whether new codes come only from the designated pool (``rrnet ledger pool-mode``)."""
        return bool(self.manifest.get(POOL_MODE, False))

    def pool_used(self) -> np.ndarray:
        """Boolean mask over ``pool``: which designated codes are used (any status)."""
        return pool_used_mask(self.pool, self.codes)

    def pool_left(self, taken: np.ndarray | None = None) -> np.ndarray:
        """The designated codes still free: not used, and not in ``taken`` (sorted)."""
        return free_pool_codes(self.pool, self.codes, taken)

    def current_records(self) -> pl.DataFrame:
        """Each code's latest record (among the per-record segments)."""
        return self.records.sort("txn", maintain_order=True).unique(
            subset="code", keep="last", maintain_order=True
        )

    def active_by_resident(self) -> pl.DataFrame:
        """``municipality, resident_id, code, status`` of every active code."""
        return self.current_records().filter(
            pl.col("status").is_in(ACTIVE) & pl.col("resident_id").is_not_null()
        )

    def lookup(self, codes: np.ndarray) -> pl.DataFrame:
        """Current status and owner of each given code (status null when unused).

        Returns ``code, status, municipality, resident_id`` in the input order.
        """
        codes = np.asarray(codes, dtype=np.uint64)
        query = pl.DataFrame({"code": codes, "_i": np.arange(len(codes))})
        current = self.current_records().select("code", "status", "municipality", "resident_id")
        joined = query.join(current, on="code", how="left").sort("_i")
        # Per-record segments take precedence; else a fixed-status segment (import).
        fallback = pl.Series("g", self.codes.group_status(codes).tolist(), dtype=pl.String)
        return joined.with_columns(pl.coalesce(pl.col("status"), fallback).alias("status")).drop(
            "_i"
        )


# ---------------------------------------------------------------------------
# The store


class LedgerTransaction(Protocol):
    """One all-or-nothing change to a ledger, as the commands use it."""

    #: the number this transaction commits as
    number: int
    #: when it was recorded (UTC): every record's ``recorded_at`` and the audit record's ``at``
    recorded_at: datetime

    @property
    def state(self) -> LedgerState:
        """The ledger as this transaction found it (read under its lock)."""
        ...

    def describe(
        self,
        invocation: Invocation | None = None,
        *,
        inputs: Sequence[Mapping[str, str]] = (),
        outputs: Sequence[Mapping[str, str]] = (),
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Say who ran what for the audit record the commit writes.

        ``inputs`` and ``outputs`` are ``file_digest`` entries; ``details`` adds
        the command's own keys to the record (a code change's ``changes``).
        """
        ...

    def add_records(self, records: pl.DataFrame) -> SegmentInfo | None:
        """Stage records: ``code``, ``status``, ``municipality``, ``resident_id``."""
        ...

    def add_codes(self, codes: np.ndarray, status: Status) -> SegmentInfo | None:
        """Stage sorted, distinct codes that all have ``status`` (an import)."""
        ...

    def add_pool(self, codes: np.ndarray) -> SegmentInfo | None:
        """Stage sorted, distinct, unused codes as designated (a pool segment)."""
        ...

    def set_pool_mode(self, on: bool) -> None:
        """Turn pool mode on or off when this transaction commits."""
        ...


class LedgerStore(Protocol):
    """What the commands need from a ledger backend; callers are typed to this.

    The folder ledger (``Ledger``) is the one backend today.
    """

    @property
    def location(self) -> str:
        """Where the ledger lives, as a person would name it in a message."""
        ...

    @property
    def municipality(self) -> str | None:
        """The municipality the ledger was made for."""
        ...

    def snapshot(self) -> LedgerState:
        """The committed ledger as of now (no lock held afterwards)."""
        ...

    def transaction(
        self, *, timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> contextlib.AbstractContextManager[LedgerTransaction]:
        """Lock, read, stage, and commit on a clean exit (abort on an exception)."""
        ...

    def retire(
        self,
        codes: list[str],
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        invocation: Invocation | None = None,
    ) -> int:
        """Retire codes for good; the number of codes newly retired."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counts by status, transactions and size, for ``rrnet ledger stats``."""
        ...

    def check_integrity(self) -> IntegrityReport:
        """Check the stored ledger end to end (``rrnet verify --ledger``)."""
        ...

    def audit_log(self) -> AuditLog:
        """The audit trail and a check of its chain (``rrnet ledger log``)."""
        ...


def ownership_problems(
    owners: pl.DataFrame, resident_ids: pl.Series, municipality: str | None
) -> pl.Series:
    """Why the ledger does not hold each code for its row's resident; None where it does.

    ``owners`` is ``LedgerState.lookup`` of the codes and ``resident_ids`` their
    rows' residents (keyed as ``ingest.clean_resident_ids`` keys them), row for
    row; ``municipality``, when given, must be the code's too. verify reports
    these reasons as violations; notify refuses to print any of them.
    """
    status = pl.col("status")
    another = pl.col("resident_id") != pl.col("__rid__")
    if municipality is not None:
        another = another | (pl.col("municipality") != pl.lit(municipality))
    return (
        owners.select("status", "municipality", "resident_id")
        .with_columns(resident_ids.alias("__rid__"))
        .select(
            pl.when(status.is_null())
            .then(pl.lit("the ledger has no record of this code"))
            .when(status == Status.RETIRED.value)
            .then(pl.lit("the ledger says this code is retired"))
            .when(~status.is_in(ACTIVE))
            .then(pl.lit("the ledger lists this code as in use elsewhere, not for this resident"))
            .when(another)
            .then(pl.lit("the ledger holds this code for another resident"))
            .otherwise(None)
            .alias("reason")
        )
        .to_series()
    )


def municipality_for(ledger: LedgerStore, given: str | None) -> str:
    """The municipality a run works for: ``given`` (``-m``) or the ledger's.

    A ledger knows its residents by municipality, so a run under another code
    would find none of them and give every one a second code: a ``-m`` that
    differs from the ledger's own is refused (a mistyped code, or a stale
    RRNET_MUNICIPALITY), as is one that is not a local government code at all.
    """
    from rrnet_cli.schema import validate_municipality_code

    own = ledger.municipality
    if given is None or not given.strip():
        if not own:
            raise UsageError("Give --municipality: the ledger does not name its municipality.")
        return own
    code = validate_municipality_code(given)
    if own and code != own:
        raise UsageError(
            f"The ledger {ledger.location} is for municipality {own}, not {code} (wrong "
            "municipality?). Its residents are known under its own code, so another code "
            "would give each of them a second resident record code. Leave out -m (and "
            "RRNET_MUNICIPALITY) to use the ledger's."
        )
    return code


@dataclass
class SegmentInfo:
    file: str
    txn: int
    rows: int
    bytes: int
    sha256: str
    statuses: dict[str, int]
    has_residents: bool

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Ledger:
    """A ledger directory (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.manifest_path = self.path / MANIFEST
        self.segments_path = self.path / SEGMENTS

    # -- creating and opening -------------------------------------------------

    @classmethod
    def init(
        cls,
        path: Path,
        *,
        municipality: str | None = None,
        invocation: Invocation | None = None,
    ) -> Ledger:
        """Create a new, empty ledger; refuse if anything already sits at ``path``.

        Its audit trail starts with a record of transaction 0: who created the
        ledger, for which municipality.
        """
        path = Path(path)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise LedgerError(
                f"{path} already exists and is not an empty folder; a new ledger needs a "
                "fresh path (an existing ledger is never overwritten)."
            )
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        os.chmod(path, PRIVATE_DIR)
        (path / SEGMENTS).mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(path / SEGMENTS, PRIVATE_DIR)
        fd = os.open(path / LOCK, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE)
        os.close(fd)
        ledger = cls(path)
        invocation = invocation or Invocation()
        created = _now().isoformat()
        genesis = _sealed(
            {
                "txn": 0,
                "at": created,
                "operator": invocation.operator,
                "command": list(invocation.command),
                "inputs": [],
                "outputs": [],
                "counts": {},
                "segments": [],
                "municipality": municipality,
                "prev": "",
            }
        )
        _write_private_json(
            ledger.manifest_path,
            {
                "format": FORMAT,
                "version": VERSION,
                "created_at": created,
                "municipality": municipality,
                "txn": 0,
                "segments": [],
                TRANSACTIONS: [genesis],
            },
        )
        return ledger

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open an existing ledger; refuse anything else, never create one."""
        path = Path(path)
        if not path.exists():
            raise LedgerError(
                f"There is no ledger at {path}. Create one with `rrnet ledger init {path}` "
                "(only once: a second, empty ledger is how duplicate codes happen)."
            )
        if not path.is_dir():
            raise LedgerError(f"{path} is a file, not a ledger folder.")
        ledger = cls(path)
        if not ledger.manifest_path.exists():
            raise LedgerError(f"{path} is not an rrnet ledger (it has no {MANIFEST}).")
        ledger.read_manifest()
        return ledger

    def read_manifest(self) -> dict[str, Any]:
        """The committed manifest, checked for shape."""
        try:
            manifest = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LedgerError(
                f"The ledger's manifest {self.manifest_path} cannot be read ({exc}); "
                "restore the ledger from backup."
            ) from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise LedgerError(f"{self.path} is not an rrnet ledger (unknown manifest format).")
        if manifest.get("version") not in READABLE_VERSIONS:
            raise LedgerError(
                f"{self.path} is a version {manifest.get('version')} ledger; this rrnet "
                f"reads versions {', '.join(map(str, READABLE_VERSIONS))}."
            )
        problem = _manifest_problem(manifest)
        if problem:
            raise LedgerError(
                f"The ledger's manifest {self.manifest_path} is damaged ({problem}); "
                "nothing was changed. Restore the ledger from backup."
            )
        return manifest

    @property
    def location(self) -> str:
        return str(self.path)

    @property
    def municipality(self) -> str | None:
        value = self.read_manifest().get("municipality")
        return None if value is None else str(value)

    # -- reading --------------------------------------------------------------

    def snapshot(self) -> LedgerState:
        """Load the ledger as of its committed manifest (no lock needed)."""
        return self._load(self.read_manifest())

    def _segment_path(self, info: dict[str, Any]) -> Path:
        name = Path(info["file"]).name
        return self.segments_path / name

    def _load(self, manifest: dict[str, Any]) -> LedgerState:
        by_status: dict[str | None, list[list[np.ndarray]]] = {}
        record_tables = []
        pool_segments: list[list[np.ndarray]] = []
        for info in manifest["segments"]:
            path = self._segment_path(info)
            try:
                if _is_pool(info):  # designated, not used: kept out of the used-code index
                    table = pq.read_table(path, columns=["code"])
                    pool_segments.append([c.to_numpy() for c in table.column("code").chunks])
                    continue
                if info["has_residents"] or len(info["statuses"]) != 1:
                    table = pq.read_table(path, schema=RECORD_SCHEMA)
                    record_tables.append(table)
                    key: str | None = None
                else:
                    table = pq.read_table(path, columns=["code"])
                    key = next(iter(info["statuses"]))
            except (OSError, pa.ArrowException) as exc:
                raise LedgerError(
                    f"Ledger segment {path.name} cannot be read ({exc}); run "
                    f"`rrnet verify --ledger {self.path}` and restore from backup."
                ) from None
            # Zero-copy: one NumPy view per row group (no nulls in ``code``).
            chunks = [c.to_numpy() for c in table.column("code").chunks]
            by_status.setdefault(key, []).append(chunks)
        groups: list[tuple[SortedCodes, str | None]] = []
        for key, segments in by_status.items():
            small = [
                c for chunks in segments if sum(map(len, chunks)) < _SMALL_SEGMENT for c in chunks
            ]
            groups.extend(
                (SortedCodes(chunks), key)
                for chunks in segments
                if sum(map(len, chunks)) >= _SMALL_SEGMENT
            )
            if small:
                groups.append((SortedCodes([np.sort(np.concatenate(small))]), key))
        if record_tables:
            records = pl.from_arrow(pa.concat_tables(record_tables))
        else:
            records = pl.from_arrow(RECORD_SCHEMA.empty_table())
        assert isinstance(records, pl.DataFrame)
        return LedgerState(
            manifest=manifest,
            codes=CodeIndex(groups),
            records=records,
            pool=_one_sorted(pool_segments),
        )

    # -- writing --------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
        """Hold the ledger's write lock; wait up to ``timeout`` seconds for it."""
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, PRIVATE_FILE)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
                        raise LedgerBusy(
                            f"The ledger {self.path} is in use by another run "
                            f"({holder or 'unknown process'}); waited {timeout:g} s. "
                            "Try again when it has finished."
                        ) from None
                    time.sleep(0.05)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} since {_now().isoformat()}".encode(), 0)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    @contextlib.contextmanager
    def transaction(self, *, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[Transaction]:
        """One all-or-nothing change: lock, read, stage segments, commit the manifest."""
        with self.lock(timeout):
            manifest = self.read_manifest()
            self._sweep(manifest)
            txn = Transaction(self, manifest)
            try:
                yield txn
                txn.commit()
            except BaseException:
                txn.abort()  # staged segments go; the manifest never named them
                raise

    def _sweep(self, manifest: dict[str, Any]) -> None:
        """Remove segment files a crashed run left outside the manifest (lock held).

        Only files of a transaction *after* the committed one can be leftovers; a
        file of a committed transaction that the manifest does not name means the
        manifest lost it, and deleting it would forget used codes.
        """
        live = {Path(s["file"]).name for s in manifest["segments"]}
        for path in self.segments_path.glob("*"):
            if path.name in live:
                continue
            if _segment_txn(path.name) <= manifest["txn"]:
                raise LedgerError(
                    f"Segment {path.name} belongs to a committed transaction but the "
                    "manifest does not name it: the ledger is damaged; nothing was changed. "
                    "Restore the ledger from backup."
                )
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for path in self.path.glob(f".{MANIFEST}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def retire(
        self,
        codes: list[str],
        *,
        timeout: float = DEFAULT_LOCK_TIMEOUT,
        invocation: Invocation | None = None,
    ) -> int:
        """Mark codes retired. They stay used forever.

        (``rrnet change`` retires a resident's code and draws the new one in one
        transaction; see ``rrnet_cli.change``.)
        """
        ints = rcode.strings_to_codes([rcode.validate(c) for c in codes])
        with self.transaction(timeout=timeout) as txn:
            txn.describe(invocation)
            found = txn.state.lookup(ints)
            unknown = found.filter(pl.col("status").is_null()).height
            if unknown:
                raise LedgerError(f"{unknown} of the codes to retire are not in the ledger.")
            txn.add_records(
                pl.DataFrame(
                    {
                        "code": ints,
                        "status": Status.RETIRED.value,
                        "municipality": found["municipality"],
                        "resident_id": found["resident_id"],
                    }
                )
            )
        return len(ints)

    # -- reporting ------------------------------------------------------------

    def check_integrity(self) -> IntegrityReport:
        """Stream every segment and check it against the manifest (see ``check_integrity``)."""
        return check_integrity(self)

    def audit_log(self) -> AuditLog:
        """The audit trail of the committed manifest, its chain checked (see ``check_chain``)."""
        return check_chain(self.read_manifest())

    def stats(self) -> dict[str, Any]:
        """Counts by current status, the designated pool, and the ledger's size on disk.

        ``pool``: its size (``designated``), how many of those codes are used
        (any status), how many are ``left``, and whether pool mode is on.
        """
        state = self.snapshot()
        current = state.current_records()
        counts: dict[str, int] = {s.value: 0 for s in Status}
        for status, n in current.group_by("status").len().iter_rows():
            counts[status] = counts.get(status, 0) + int(n)
        fixed_codes = [a for a, s in state.codes.groups if s is not None]
        fixed_status = [s for _, s in state.codes.groups if s is not None]
        if len(current):
            per_record_codes = current["code"].to_numpy()
        else:
            per_record_codes = np.empty(0, np.uint64)
        for codes, status in zip(fixed_codes, fixed_status, strict=True):
            # Codes both imported and later carried over count once, as carried over.
            overlap = int(codes.member(np.sort(per_record_codes)).sum())
            counts[status] = counts.get(status, 0) + len(codes) - overlap
        size = sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())
        pool_used = int(np.count_nonzero(state.pool_used()))
        return {
            "ledger": str(self.path),
            "municipality": state.manifest.get("municipality"),
            "transactions": state.txn,
            "segments": len(state.manifest["segments"]),
            "codes_used": sum(counts.values()),
            "by_status": counts,
            "pool": {
                "mode": _on_off(state.pool_mode),
                "designated": len(state.pool),
                "used": pool_used,
                "left": len(state.pool) - pool_used,
            },
            "bytes_on_disk": size,
        }


class Transaction:
    """Records staged by one run; committed together or not at all."""

    def __init__(self, ledger: Ledger, manifest: dict[str, Any]) -> None:
        self.ledger = ledger
        self.manifest = manifest
        self.number = int(manifest["txn"]) + 1
        self.recorded_at = _now()
        self.staged: list[SegmentInfo] = []
        self._state: LedgerState | None = None
        self.invocation = Invocation()
        self.audit: dict[str, Any] = {"inputs": [], "outputs": []}
        #: manifest settings this transaction changes (``pool_mode``); its record says so
        self.settings: dict[str, Any] = {}

    def describe(
        self,
        invocation: Invocation | None = None,
        *,
        inputs: Sequence[Mapping[str, str]] = (),
        outputs: Sequence[Mapping[str, str]] = (),
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """Say who ran what, for the audit record that ``commit`` writes.

        ``inputs`` and ``outputs`` are ``file_digest`` entries (an output is
        hashed before the commit, in its temporary file). ``details`` are the
        command's own keys (a code change's ``changes``); they may not replace
        the record's own fields.
        """
        clash = _RESERVED_KEYS & set(details or {})
        if clash:
            raise ValueError(f"audit details may not use the record's keys {sorted(clash)}")
        if invocation is not None:
            self.invocation = invocation
        self.audit = {
            "inputs": [{"path": str(d["path"]), "sha256": str(d["sha256"])} for d in inputs],
            "outputs": [{"path": str(d["path"]), "sha256": str(d["sha256"])} for d in outputs],
            **(details or {}),
        }

    def _audit_record(self) -> dict[str, Any]:
        """This transaction's audit record, linked to the last one and sealed."""
        previous = self.manifest.get(TRANSACTIONS) or []
        last = previous[-1] if previous else None
        prev = last.get("hash") if isinstance(last, dict) else None
        counts: dict[str, int] = {}
        for info in self.staged:
            for status, n in info.statuses.items():
                counts[status] = counts.get(status, 0) + int(n)
        return _sealed(
            {
                "txn": self.number,
                "at": self.recorded_at.isoformat(),
                "operator": self.invocation.operator,
                "command": list(self.invocation.command),
                **self.audit,
                **self.settings,
                "counts": counts,
                "segments": [
                    {"file": s.file, "sha256": s.sha256, "rows": s.rows} for s in self.staged
                ],
                "prev": prev if isinstance(prev, str) else "",
            }
        )

    @property
    def state(self) -> LedgerState:
        """The ledger as this transaction found it (read under the lock)."""
        if self._state is None:
            self._state = self.ledger._load(self.manifest)
        return self._state

    def add_records(self, records: pl.DataFrame) -> SegmentInfo | None:
        """Stage records (``code`` plus ``status``, ``municipality``, ``resident_id``)."""
        if records.height == 0:
            return None
        frame = records.select(
            pl.col("code").cast(pl.UInt64),
            pl.col("status").cast(pl.String),
            (pl.col("municipality") if "municipality" in records.columns else pl.lit(None))
            .cast(pl.String)
            .alias("municipality"),
            (pl.col("resident_id") if "resident_id" in records.columns else pl.lit(None))
            .cast(pl.String)
            .alias("resident_id"),
            pl.lit(self.number, dtype=pl.UInt64).alias("txn"),
            pl.lit(self.recorded_at).cast(pl.Datetime("ms", "UTC")).alias("recorded_at"),
        ).sort("code")
        statuses = {s: int(n) for s, n in frame.group_by("status").len().iter_rows()}
        unknown = set(statuses) - {s.value for s in Status}
        if unknown:
            raise ValueError(f"unknown ledger status {sorted(unknown)}")
        has_residents = bool(frame["resident_id"].is_not_null().any())
        table = frame.to_arrow().cast(RECORD_SCHEMA)
        return self._write_segment(table, statuses, has_residents)

    def add_codes(self, codes: np.ndarray, status: Status) -> SegmentInfo | None:
        """Stage a large batch of sorted, distinct codes that share one status (imports).

        Such a segment holds only the ``code`` column: its status and transaction
        live in the manifest, so 100 million imported codes cost ~1.6 bytes each.
        """
        if len(codes) == 0:
            return None
        table = pa.table({"code": pa.array(np.asarray(codes, np.uint64), pa.uint64())})
        return self._write_segment(table, {status.value: len(codes)}, False)

    def add_pool(self, codes: np.ndarray) -> SegmentInfo | None:
        """Stage sorted, distinct designated codes as a pool segment.

        The caller (``rrnet_cli.pool.designate_codes``) has checked that none is
        used or already designated. Like an import's, the segment holds only
        the ``code`` column; its manifest entry says ``{"designated": n}``.
        """
        if len(codes) == 0:
            return None
        table = pa.table({"code": pa.array(np.asarray(codes, np.uint64), pa.uint64())})
        return self._write_segment(table, {DESIGNATED: len(codes)}, False)

    def set_pool_mode(self, on: bool) -> None:
        """Turn pool mode on or off: the manifest and this transaction's record say so."""
        self.settings[POOL_MODE] = bool(on)

    def _write_segment(
        self, table: pa.Table, statuses: dict[str, int], has_residents: bool
    ) -> SegmentInfo:
        name = f"{self.number:08d}-{len(self.staged):04d}-{uuid.uuid4().hex[:12]}.parquet"
        path = self.ledger.segments_path / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        os.close(fd)
        info = SegmentInfo(
            file=f"{SEGMENTS}/{name}",
            txn=self.number,
            rows=table.num_rows,
            bytes=0,
            sha256="",
            statuses=statuses,
            has_residents=has_residents,
        )
        self.staged.append(info)  # staged first, so abort() removes a half-written file
        # Sorted codes delta-encode to ~1.6 bytes each and decode fastest without
        # a general-purpose codec on top (measured: 100M codes, 161 MB, 0.5 s).
        pq.write_table(
            table,
            path,
            compression={n: ("none" if n == "code" else "zstd") for n in table.column_names},
            use_dictionary=[n for n in table.column_names if n != "code"],
            column_encoding={"code": "DELTA_BINARY_PACKED"},
            row_group_size=8_000_000,
        )
        with open(path, "rb+") as handle:
            os.fsync(handle.fileno())
        info.bytes = path.stat().st_size
        info.sha256 = _sha256(path)
        return info

    def commit(self) -> None:
        """Publish the staged segments and settings with one atomic manifest replace."""
        if not self.staged and not self.settings:
            return
        fsync_dir(self.ledger.segments_path)
        _failpoint("before-manifest-write")
        manifest = dict(self.manifest)
        manifest.update(self.settings)
        manifest["txn"] = self.number
        manifest["segments"] = [*self.manifest["segments"], *(s.to_json() for s in self.staged)]
        # A version 1 manifest gains its audit trail here; one with a pool becomes 3.
        manifest["version"] = POOL_VERSION if _uses_pool(manifest) else VERSION
        manifest[TRANSACTIONS] = [*(self.manifest.get(TRANSACTIONS) or []), self._audit_record()]
        _write_private_json(self.ledger.manifest_path, manifest)
        _failpoint("after-manifest-replace")
        self.manifest = manifest
        self.staged = []
        self.settings = {}

    def abort(self) -> None:
        """Remove staged segment files; the manifest never named them."""
        for info in self.staged:
            with contextlib.suppress(FileNotFoundError):
                self.ledger._segment_path(info.to_json()).unlink()
        self.staged = []


def _is_pool(info: Mapping[str, Any]) -> bool:
    """Whether a manifest's segment entry is a pool segment (designated codes)."""
    return not info.get("has_residents") and list(info.get("statuses") or {}) == [DESIGNATED]


def _uses_pool(manifest: Mapping[str, Any]) -> bool:
    return POOL_MODE in manifest or any(_is_pool(s) for s in manifest["segments"])


def _one_sorted(segments: list[list[np.ndarray]]) -> np.ndarray:
    """One sorted array of the codes of sorted segments (each a list of row-group chunks)."""
    chunks = [c for chunks in segments for c in chunks if len(c)]
    if not chunks:
        return np.empty(0, np.uint64)
    if len(segments) == 1:  # consecutive ranges of one sorted sequence
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)
    merged = np.concatenate(chunks)
    merged.sort(kind="stable")  # a merge of sorted runs
    return merged


_SEGMENT_KEYS = {
    "file": str,
    "txn": int,
    "rows": int,
    "bytes": int,
    "sha256": str,
    "statuses": dict,
    "has_residents": bool,
}


def _segment_txn(name: str) -> int:
    """The transaction number a segment file name starts with (0 if it has none)."""
    head = name.split("-", 1)[0]
    return int(head) if head.isdigit() else 0


def _manifest_problem(manifest: Any) -> str | None:
    """Why a manifest cannot be trusted, or None.

    Every committed transaction adds at least one segment, except one that only
    changes pool mode (its audit record says so and names no segment), so the
    segments' transaction numbers must be exactly 1..txn but for those: a
    shortened list is caught.
    """
    txn = manifest.get("txn")
    segments = manifest.get("segments")
    if not isinstance(txn, int) or isinstance(txn, bool) or txn < 0:
        return "txn is not a transaction number"
    if not isinstance(segments, list):
        return "segments is not a list"
    for entry in segments:
        if not isinstance(entry, dict):
            return "a segment entry is not an object"
        for key, kind in _SEGMENT_KEYS.items():
            if not isinstance(entry.get(key), kind):
                return f"a segment entry lacks a valid {key!r}"
        if Path(entry["file"]).name != entry["file"].removeprefix(f"{SEGMENTS}/"):
            return "a segment entry names a file outside the segments folder"
    if not isinstance(manifest.get(TRANSACTIONS, []), list):
        return f"{TRANSACTIONS} is not a list"
    if not isinstance(manifest.get(POOL_MODE, False), bool):
        return f"{POOL_MODE} is not true or false"
    numbered = {entry["txn"] for entry in segments}
    expected = set(range(1, txn + 1))
    if not numbered <= expected or expected - numbered - _setting_txns(manifest):
        return f"the segments do not account for transactions 1..{txn}"
    return None


def _setting_txns(manifest: Mapping[str, Any]) -> set[int]:
    """Transactions whose audit record only changes pool mode (they add no segment)."""
    return {
        r["txn"]
        for r in manifest.get(TRANSACTIONS) or []
        if isinstance(r, dict)
        and isinstance(r.get("txn"), int)
        and r.get("segments") == []
        and isinstance(r.get(POOL_MODE), bool)
    }


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class IntegrityReport:
    """What ``check_integrity`` found: violations make the ledger unsound."""

    violations: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    segments: int = 0
    records: int = 0

    def add(self, segment: str | None, reason: str) -> None:
        self.violations.append({"file": segment or MANIFEST, "row": None, "reason": reason})


def check_integrity(ledger: Ledger, *, batch_rows: int = 8_000_000) -> IntegrityReport:
    """Check every segment against the manifest and the ledger's invariants.

    Large fixed-status segments (imports) are streamed one batch at a time, so
    checking a 100-million-code ledger needs memory for one batch, not for all.
    The audit trail's chain is checked too (``check_chain``): with the segment
    checksums below, every segment is tied to the record of its transaction.
    A designated pool is checked like any segment (sorted, check digits), and
    against the rest: no code designated twice, none used before it was
    designated, and every code a transaction drew from the pool designated
    before that transaction (see ``_check_pool``).
    """
    report = IntegrityReport()
    manifest = ledger.read_manifest()
    report.segments = len(manifest["segments"])
    chain = check_chain(manifest)
    for problem in chain.problems:
        report.add(None, problem)
    report.notes.extend(chain.notes)
    live = set()
    readable: list[tuple[dict[str, Any], Path, str]] = []
    for info in manifest["segments"]:
        path = ledger._segment_path(info)
        live.add(path.name)
        label = f"{SEGMENTS}/{path.name}"
        if not path.is_file():
            report.add(label, "segment named by the manifest is missing")
        elif path.stat().st_size != info["bytes"] or _sha256(path) != info["sha256"]:
            report.add(label, "segment's size or checksum differs from the manifest (damaged)")
        else:
            readable.append((info, path, label))
    for path in ledger.segments_path.glob("*"):
        if path.name in live:
            continue
        if _segment_txn(path.name) <= manifest["txn"]:
            report.add(
                f"{SEGMENTS}/{path.name}",
                "a committed transaction's segment is missing from the manifest",
            )
        else:
            report.notes.append(
                f"{SEGMENTS}/{path.name} is left over from an interrupted run; "
                "the next write removes it"
            )
    pool_segments = [r for r in readable if _is_pool(r[0])]
    per_record = [r for r in readable if r[0]["has_residents"] or len(r[0]["statuses"]) != 1]
    fixed = [r for r in readable if r not in per_record and r not in pool_segments]
    pool = _read_pool(pool_segments, report)
    tables = []
    for info, path, label in per_record:
        try:
            table = pq.read_table(path, schema=RECORD_SCHEMA)
        except (OSError, pa.ArrowException):
            report.add(label, "segment cannot be read as Parquet (damaged)")
            continue
        _check_codes([table.column("code").to_numpy()], info, label, report)
        tables.append(table)
    records = pl.from_arrow(pa.concat_tables(tables) if tables else RECORD_SCHEMA.empty_table())
    assert isinstance(records, pl.DataFrame)
    assigned = np.sort(records.filter(pl.col("status") == Status.ASSIGNED.value)["code"].to_numpy())
    for info, path, label in fixed:
        try:
            batches = (
                b.column(0).to_numpy()
                for b in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=["code"])
            )
            later = pool.filter(pl.col("pool_txn") > info["txn"])["code"].to_numpy()
            clash, early = _check_codes(
                batches, info, label, report, assigned=assigned, designated_later=later
            )
        except (OSError, pa.ArrowException):
            report.add(label, "segment cannot be read as Parquet (damaged)")
            continue
        status = next(iter(info["statuses"]))
        if clash:
            report.add(None, f"{clash} codes drawn as new were already in use ({status})")
        if early:
            report.add(None, f"{early} codes were designated while already in use ({status})")
    if records.height:
        _check_records(records, report)
    if pool.height:
        _check_pool(pool, records, manifest, report)
    return report


def _read_pool(
    segments: list[tuple[dict[str, Any], Path, str]], report: IntegrityReport
) -> pl.DataFrame:
    """Every designated code with the transaction that designated it, sorted by code.

    Each pool segment is checked like any other (``_check_codes``); a code in two
    pool segments was designated twice.
    """
    frames = []
    for info, path, label in segments:
        try:
            codes = pq.read_table(path, columns=["code"]).column("code").to_numpy()
        except (OSError, pa.ArrowException):
            report.add(label, "segment cannot be read as Parquet (damaged)")
            continue
        _check_codes([codes], info, label, report)
        frames.append(
            pl.DataFrame(
                {"code": codes, "pool_txn": np.full(len(codes), info["txn"], np.uint64)},
                schema={"code": pl.UInt64, "pool_txn": pl.UInt64},
            )
        )
    if not frames:
        return pl.DataFrame(schema={"code": pl.UInt64, "pool_txn": pl.UInt64})
    pool = pl.concat(frames).sort("code")
    twice = pool.height - pool["code"].n_unique()
    if twice:
        report.add(None, f"{twice} codes were designated twice (in two pool segments)")
    return pool


def _check_pool(
    pool: pl.DataFrame,
    records: pl.DataFrame,
    manifest: Mapping[str, Any],
    report: IntegrityReport,
) -> None:
    """The pool against the per-record segments and the audit trail.

    A code may be designated only while unused: no record of it may come from a
    transaction before its designation. And a transaction whose audit record
    says it drew from the pool (``drawn_from: pool``) may have drawn only codes
    designated before it.
    """
    first_pool = pool.unique(subset="code", keep="first", maintain_order=True)
    joined = records.join(first_pool, on="code", how="left")
    early = joined.filter(pl.col("pool_txn").is_not_null() & (pl.col("txn") < pl.col("pool_txn")))
    if early.height:
        report.add(None, f"{early.height} codes were designated while already in use")
    from_pool = sorted(
        r["txn"]
        for r in manifest.get(TRANSACTIONS) or []
        if isinstance(r, dict) and isinstance(r.get("txn"), int) and r.get(DRAWN_FROM) == "pool"
    )
    outside = joined.filter(
        pl.col("txn").is_in(from_pool)
        & (pl.col("status") == Status.ASSIGNED.value)
        & (pl.col("pool_txn").is_null() | (pl.col("pool_txn") >= pl.col("txn")))
    )
    if outside.height:
        report.add(
            None,
            f"{outside.height} codes drawn from the designated pool were not designated "
            "before they were drawn",
        )


def _check_codes(
    batches: Iterable[np.ndarray],
    info: dict[str, Any],
    label: str,
    report: IntegrityReport,
    assigned: np.ndarray | None = None,
    designated_later: np.ndarray | None = None,
) -> tuple[int, int]:
    """Row count, order, repeats and check digits of one segment, batch by batch.

    Returns how many of ``assigned`` (codes drawn here) the segment also holds,
    and how many of ``designated_later`` (sorted codes designated after the
    segment's transaction: designated while used).
    """
    rows = bad = clash = early = 0
    unsorted = repeated = False
    previous: np.uint64 | None = None
    for codes in batches:
        if not len(codes):
            continue
        rows += len(codes)
        if previous is not None:
            unsorted |= bool(codes[0] < previous)
            repeated |= bool(codes[0] == previous)
        unsorted |= bool(np.any(codes[1:] < codes[:-1]))
        repeated |= bool(np.any(codes[1:] == codes[:-1]))
        bad += int(len(codes) - np.count_nonzero(rcode.codes_are_valid(codes)))
        if assigned is not None and len(assigned):
            clash += int(np.count_nonzero(sorted_member(assigned, codes)))
        if designated_later is not None and len(designated_later):
            early += int(np.count_nonzero(sorted_member(designated_later, codes)))
        previous = codes[-1]
    report.records += rows
    if rows != info["rows"]:
        report.add(label, "segment's row count differs from the manifest")
    if unsorted:
        report.add(label, "segment is not sorted by code")
    if repeated:
        report.add(label, "a code is recorded twice in one segment")
    if bad:
        report.add(label, f"{bad} codes fail the format or check-digit test")
    return clash, early


def _check_records(records: pl.DataFrame, report: IntegrityReport) -> None:
    ordered = records.sort(["code", "txn"])
    # A code drawn here must never have been in use before: no other record of it
    # may come earlier than its "assigned" record.
    first = ordered.unique(subset="code", keep="first", maintain_order=True)
    redrawn = ordered.join(first.select("code", pl.col("txn").alias("first_txn")), on="code")
    redrawn = redrawn.filter(
        (pl.col("status") == Status.ASSIGNED.value) & (pl.col("txn") > pl.col("first_txn"))
    )
    if redrawn.height:
        report.add(None, f"{redrawn.height} codes were drawn as new while already used")
    # Retired codes stay retired.
    retired_at = (
        ordered.filter(pl.col("status") == Status.RETIRED.value)
        .group_by("code")
        .agg(pl.col("txn").min().alias("retired_txn"))
    )
    revived = ordered.join(retired_at, on="code").filter(
        pl.col("status").is_in(ACTIVE) & (pl.col("txn") > pl.col("retired_txn"))
    )
    if revived.height:
        report.add(None, f"{revived.height} retired codes were made active again")
    current = ordered.unique(subset="code", keep="last", maintain_order=True)
    active = current.filter(pl.col("status").is_in(ACTIVE))
    missing_owner = active.filter(pl.col("resident_id").is_null()).height
    if missing_owner:
        report.add(None, f"{missing_owner} active codes name no resident")
    per_resident = (
        active.filter(pl.col("resident_id").is_not_null())
        .group_by(["municipality", "resident_id"])
        .len()
    )
    several = per_resident.filter(pl.col("len") > 1).height
    if several:
        report.add(None, f"{several} residents hold more than one active code")
