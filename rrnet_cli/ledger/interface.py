"""The ledger as the commands see it: records, statuses and the store protocols.

Every command is typed to ``LedgerStore`` and ``LedgerTransaction``, never to a
backend, so the folder ledger (``rrnet_cli.ledger.folder``) and a database
backend can stand in for each other. Also here: what a record is
(``RECORD_SCHEMA``, ``Status``), the in-memory view a transaction reads
(``LedgerState`` with its sorted-code index), who ran a command for the audit
trail (``Invocation``), and the ownership rules verify and notify share.

``LedgerView`` is the shape the store takes for assign, around what both
backends do well: look up these codes; the active codes of these residents;
ids that lost their leading zeros; residents no longer listed; and, on a
transaction, record these new codes reporting conflicts (``record_new``).
``LedgerState`` answers it from memory (the folder ledger's speed); the
PostgreSQL ledger answers with queries and never loads the ledger.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import re
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import polars as pl
import pyarrow as pa

from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, UsageError
from rrnet_cli.ledger.notices import empty_notices
from rrnet_cli.schema import NoticeKind

if TYPE_CHECKING:
    from rrnet_cli.ledger.audit import AuditLog
    from rrnet_cli.ledger.integrity import IntegrityReport

#: The status of a pool segment's codes in its manifest entry (never a record's status).
DESIGNATED = "designated"
#: The manifest key (and audit record key) of pool mode: true means draw only from the pool.
POOL_MODE = "pool_mode"


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


def failpoint(name: str) -> None:
    """Die on the spot when RRNET_FAILPOINT names this point (crash tests only).

    SIGKILL, not an exception: nothing of the process's own clean-up runs, as
    when the power fails or an operator kills the run. ``pause:NAME`` waits
    there instead (``RRNET_FAILPOINT_PAUSE`` seconds, 10 by default), so that a
    test can crash the database server under a run in that state.
    """
    wanted = os.environ.get("RRNET_FAILPOINT")
    if wanted == name:
        os.kill(os.getpid(), signal.SIGKILL)
    elif wanted == f"pause:{name}":
        time.sleep(float(os.environ.get("RRNET_FAILPOINT_PAUSE", "10")))


#: Told, once, that a run is waiting for another to let go of the ledger (a message).
Waiting = Callable[[str], None]
#: Seconds a run waits for the ledger in silence before it says that it waits.
WAIT_NOTICE_AFTER = 1.0


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex), read in 4 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


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
    return {"path": str(path if name is None else name), "sha256": file_sha256(Path(path))}


def on_off(value: bool) -> str:
    """Pool mode as messages and ``rrnet ledger stats`` say it."""
    return "on" if value else "off"


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


@dataclass(frozen=True)
class PoolCounts:
    """A municipality's designated pool, as ``ledger stats``, designate and pool-mode
    report it."""

    #: whether its new codes come only from the pool (``rrnet ledger pool-mode``)
    mode: bool
    #: every code designated to it
    designated: int
    #: of those, the codes a record uses (any status)
    used: int
    #: its current ``assigned`` codes drawn since its first designation that are not
    #: in its pool (codes drawn before any pool was designated are not counted)
    assigned_outside: int
    #: the mode the audit trail set last (``mode`` differs only after a hand edit)
    recorded_mode: bool = False

    @property
    def left(self) -> int:
        return self.designated - self.used


@dataclass
class LedgerState:
    """A consistent read of the ledger at one manifest."""

    manifest: dict[str, Any]
    codes: CodeIndex
    #: Every record that names a resident or varies in status, all columns.
    records: pl.DataFrame
    #: Every designated code (the pool), sorted; used ones too (see ``pool_used``).
    pool: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    #: Every notice issued (``rrnet_cli.ledger.notices.NOTICE_SCHEMA``).
    notices: pl.DataFrame = field(default_factory=empty_notices)
    #: Answers computed once per state (each code's latest record; a municipality's
    #: active codes): assign asks for them several times, and the state never changes.
    _cache: dict[Any, pl.DataFrame] = field(default_factory=dict, repr=False, compare=False)

    @property
    def txn(self) -> int:
        return int(self.manifest["txn"])

    @property
    def pool_mode(self) -> bool:
        """Whether new codes come only from the designated pool (``rrnet ledger pool-mode``)."""
        return bool(self.manifest.get(POOL_MODE, False))

    @property
    def first_designation(self) -> int | None:
        """The transaction of the first designation (None: no pool is designated)."""
        txns = [
            int(s["txn"])
            for s in self.manifest["segments"]
            if not s.get("has_residents") and list(s.get("statuses") or {}) == [DESIGNATED]
        ]
        return min(txns) if txns else None

    def drawn_outside_pool(self, codes: np.ndarray) -> np.ndarray:
        """Which of these codes were drawn here (current status ``assigned``) since the
        first designation, yet are not in the pool: a boolean mask. A code drawn
        before any pool was designated is not outside it: there was none to draw from."""
        codes = np.asarray(codes, dtype=np.uint64)
        first = self.first_designation
        if first is None or not len(codes):
            return np.zeros(len(codes), dtype=bool)
        current = self.current_records().select("code", "status", "txn")
        found = pl.DataFrame({"code": codes}).join(
            current, on="code", how="left", maintain_order="left"
        )
        since = ((found["status"] == Status.ASSIGNED.value) & (found["txn"] > first)).fill_null(
            False
        )
        return since.to_numpy() & ~sorted_member(self.pool, codes)

    def pool_used(self) -> np.ndarray:
        """Boolean mask over ``pool``: which designated codes are used (any status)."""
        return pool_used_mask(self.pool, self.codes)

    def pool_left(self, taken: np.ndarray | None = None) -> np.ndarray:
        """The designated codes still free: not used, and not in ``taken`` (sorted)."""
        return free_pool_codes(self.pool, self.codes, taken)

    def current_records(self) -> pl.DataFrame:
        """Each code's latest record (among the per-record segments)."""
        if "current" not in self._cache:
            self._cache["current"] = self.records.sort("txn", maintain_order=True).unique(
                subset="code", keep="last", maintain_order=True
            )
        return self._cache["current"]

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

    # -- LedgerView: what assign asks, answered from memory ------------------------

    @property
    def record_count(self) -> int:
        """Records in the ledger: the codes of every segment (one recorded twice counts twice)."""
        return len(self.codes)

    @property
    def used_codes(self) -> CodeIndex:
        """Every used code: drawing checks candidates against all of them up front."""
        return self.codes

    # A folder ledger's pool and pool mode are its municipality's: the ledger
    # serves one, so ``municipality`` is not needed to answer.

    def pool_mode_of(self, municipality: str) -> bool:
        """Whether ``municipality`` draws new codes only from its designated pool."""
        return self.pool_mode

    def pool_counts(self, municipality: str) -> PoolCounts:
        """The designated pool's size, how much of it is used, and the codes drawn
        here outside it."""
        used = int(np.count_nonzero(self.pool_used()))
        current = self.current_records().filter(pl.col("status") == Status.ASSIGNED.value)
        outside = self.drawn_outside_pool(current["code"].to_numpy())
        return PoolCounts(
            mode=self.pool_mode,
            designated=len(self.pool),
            used=used,
            assigned_outside=int(np.count_nonzero(outside)),
            # A manifest edited by hand breaks the chain (``audit.check_chain``).
            recorded_mode=self.pool_mode,
        )

    def free_pool(self, municipality: str) -> np.ndarray:
        """The codes designated to ``municipality`` that no record uses, sorted."""
        return self.pool_left()

    def designated(self, codes: np.ndarray) -> pl.Series:
        """The municipality each of these codes is designated to (null: none): this
        ledger's own, for a code of its pool."""
        inside = sorted_member(self.pool, np.asarray(codes, dtype=np.uint64))
        own = self.manifest.get("municipality")
        return pl.Series("municipality", [None] * len(inside), dtype=pl.String).set(
            pl.Series(inside), None if own is None else str(own)
        )

    def outside_pool(self, codes: np.ndarray) -> np.ndarray:
        """Which of these codes were drawn here (current status ``assigned``) for a
        municipality in pool mode since its first designation, yet are not in its
        pool: a boolean mask (``drawn_outside_pool``)."""
        codes = np.asarray(codes, dtype=np.uint64)
        if not self.pool_mode:
            return np.zeros(len(codes), dtype=bool)
        return self.drawn_outside_pool(codes)

    def _active_in(self, municipality: str) -> pl.DataFrame:
        """``resident_id, code, status`` of every active code in ``municipality``."""
        key = ("active", municipality)
        if key not in self._cache:
            self._cache[key] = (
                self.active_by_resident()
                .filter(pl.col("municipality") == municipality)
                .select("resident_id", "code", "status")
            )
        return self._cache[key]

    def active_codes(self, municipality: str, resident_ids: pl.Series) -> pl.DataFrame:
        """``resident_id, code, status`` of the active codes of these residents here."""
        active = self._active_in(municipality)
        if active.is_empty():  # a first run: nothing to match (and nothing to hash)
            return active
        # A semi join, not is_in: is_in would hash all of the export's ids first.
        return active.join(
            resident_ids.rename("resident_id").to_frame(), on="resident_id", how="semi"
        )

    def lost_zeros(self, municipality: str, resident_ids: pl.Series) -> pl.DataFrame:
        """``resident_id, ledger_id``: those of these ids that hold no active code here,
        each with the id of one who does that it equals once leading zeros are ignored
        (Excel turns 000005974 into 5974, in the export or in an earlier one)."""
        known = self._active_in(municipality)["resident_id"]
        ids = resident_ids.rename("resident_id")
        if known.is_empty() or ids.is_empty():
            return pl.DataFrame(schema={"resident_id": pl.String, "ledger_id": pl.String})
        key = without_leading_zeros(pl.col("resident_id")).alias("__key__")
        ledger = known.to_frame().select(pl.col("resident_id").alias("ledger_id"), key)
        asked = ids.to_frame().filter(~pl.col("resident_id").is_in(known.implode()))
        return (
            asked.unique(maintain_order=True)
            .with_columns(key)
            .join(ledger, on="__key__", how="inner", maintain_order="left")
            .select("resident_id", "ledger_id")
        )

    def departed(self, municipality: str, listed: pl.Series) -> pl.DataFrame:
        """``resident_id, code, status`` of the active codes here of residents not ``listed``."""
        return self._active_in(municipality).filter(~pl.col("resident_id").is_in(listed.implode()))

    def known_residents(self, municipality: str, resident_ids: pl.Series) -> pl.Series:
        """Those of these ids the ledger has ever recorded a code for here."""
        here = self.records.filter(pl.col("municipality") == municipality)["resident_id"]
        return resident_ids.filter(resident_ids.is_in(here.drop_nulls().implode())).unique()

    # -- what notify asks ---------------------------------------------------------

    def recorded_times(self, codes: np.ndarray) -> pl.DataFrame:
        """``code, recorded_at`` of each given code's current record, in the input order."""
        query = pl.DataFrame({"code": np.asarray(codes, dtype=np.uint64)})
        current = self.current_records().select("code", "recorded_at")
        return query.join(current, on="code", how="left", maintain_order="left")

    def notices_of(self, codes: np.ndarray) -> pl.DataFrame:
        """Every notice issued of these codes (``NOTICE_SCHEMA`` columns)."""
        wanted = pl.Series(np.asarray(codes, dtype=np.uint64)).implode()
        return self.notices.filter(pl.col("code").is_in(wanted))

    def has_batch(self, batch: str) -> bool:
        """Whether the ledger records notices of this notify batch."""
        return bool((self.notices["batch"] == batch).any())

    def first_notice_due(
        self, municipality: str, resident_ids: pl.Series | None = None
    ) -> pl.DataFrame:
        """``resident_id, code`` of the codes drawn here with no first notice yet.

        A code drawn here is one whose current record is ``assigned`` in
        ``municipality`` and that no code change brought (a change retires the
        resident's code and records the new one in the same transaction: that
        resident gets a change notice). Of these residents, or of all of them.
        """
        drawn = self.current_records().filter(
            (pl.col("status") == Status.ASSIGNED.value) & (pl.col("municipality") == municipality)
        )
        if resident_ids is not None:
            drawn = drawn.join(
                resident_ids.rename("resident_id").to_frame(), on="resident_id", how="semi"
            )
        # A code change's new code is first recorded in the transaction that retired
        # the old one. Told by the code's first record, not its current one, which a
        # later ``ledger fix-ids`` re-keys in a transaction of its own.
        change_txns = self.records.filter(
            (pl.col("status") == Status.RETIRED.value) & (pl.col("municipality") == municipality)
        )["txn"].unique()
        brought = (
            self.records.filter(pl.col("code").is_in(drawn["code"].implode()))
            .sort("txn", maintain_order=True)
            .unique(subset="code", keep="first", maintain_order=True)
            .filter(pl.col("txn").is_in(change_txns.implode()))
            .select("code")
        )
        first = self.notices.filter(pl.col("kind") == NoticeKind.NEW.value)
        return (
            drawn.join(brought, on="code", how="anti")
            .join(first.select("code"), on="code", how="anti")
            .select("resident_id", "code")
            .sort("resident_id")
        )


def without_leading_zeros(resident_id: pl.Expr) -> pl.Expr:
    """A resident id without its leading zeros ("0" for an id of zeros only)."""
    stripped = resident_id.str.strip_chars_start("0")
    return pl.when(stripped == "").then(pl.lit("0")).otherwise(stripped).alias("resident_id")


# ---------------------------------------------------------------------------
# The store


class LedgerView(Protocol):
    """What assign asks a ledger, as questions each backend answers its own way.

    The folder ledger holds the whole ledger in memory (``LedgerState``) and
    answers from there; the PostgreSQL ledger never loads it and answers each
    question with a query, joining a temporary table of the given ids or codes
    against the ledger on the server.
    """

    @property
    def record_count(self) -> int:
        """How many records the ledger holds (the summary's "ledger records")."""
        ...

    @property
    def used_codes(self) -> CodeIndex:
        """The used codes the client holds, for drawing: every one (folder) or none
        (PostgreSQL: the database refuses a used code when it is recorded)."""
        ...

    def pool_mode_of(self, municipality: str) -> bool:
        """Whether ``municipality`` draws new codes only from its designated pool."""
        ...

    def pool_counts(self, municipality: str) -> PoolCounts:
        """``municipality``'s designated pool: its mode, size, use, codes drawn outside it."""
        ...

    def free_pool(self, municipality: str) -> np.ndarray:
        """The codes designated to ``municipality`` that no record uses, sorted."""
        ...

    def designated(self, codes: np.ndarray) -> pl.Series:
        """The municipality each of these codes is designated to, in the input order
        (null: not designated)."""
        ...

    def outside_pool(self, codes: np.ndarray) -> np.ndarray:
        """Which of these codes were drawn here (status ``assigned``) for a municipality
        in pool mode, after its first designation, though not designated to it (a
        boolean mask). Codes drawn before any pool was designated are not outside it."""
        ...

    def lookup(self, codes: np.ndarray) -> pl.DataFrame:
        """Look up these codes: ``code, status, municipality, resident_id`` in the
        input order (status null for a code the ledger does not hold)."""
        ...

    def active_codes(self, municipality: str, resident_ids: pl.Series) -> pl.DataFrame:
        """The active codes of these residents here: ``resident_id, code, status``."""
        ...

    def lost_zeros(self, municipality: str, resident_ids: pl.Series) -> pl.DataFrame:
        """``resident_id, ledger_id``: those of these ids that hold no active code here,
        each with the id of a resident who has one that it equals once leading zeros
        are ignored. The shorter of the two is the one that lost its zeros."""
        ...

    def departed(self, municipality: str, listed: pl.Series) -> pl.DataFrame:
        """The active codes here of residents not ``listed``: ``resident_id, code, status``."""
        ...

    def known_residents(self, municipality: str, resident_ids: pl.Series) -> pl.Series:
        """Those of these ids the ledger has ever recorded a code for here (any status)."""
        ...

    def recorded_times(self, codes: np.ndarray) -> pl.DataFrame:
        """``code, recorded_at`` of each code's current record, in the input order."""
        ...

    def notices_of(self, codes: np.ndarray) -> pl.DataFrame:
        """Every notice issued of these codes (``notices.NOTICE_SCHEMA`` columns)."""
        ...

    def has_batch(self, batch: str) -> bool:
        """Whether the ledger records notices of this notify batch."""
        ...

    def first_notice_due(
        self, municipality: str, resident_ids: pl.Series | None = None
    ) -> pl.DataFrame:
        """``resident_id, code`` of the codes drawn here (current status ``assigned`` in
        ``municipality``, not brought by a code change) that have no first notice yet
        (a notice of kind ``new``): of these residents, or of every resident when
        ``resident_ids`` is None; sorted by resident_id."""
        ...


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

    def view(self) -> LedgerView:
        """The ledger as this transaction sees it, to ask what assign needs to know.

        The folder ledger loads its state here (slow: callers may do it in a
        thread); the PostgreSQL ledger answers on the transaction's connection.
        """
        ...

    def record_new(self, records: pl.DataFrame) -> np.ndarray:
        """Record these codes in this transaction, reporting conflicts.

        ``records`` as for ``add_records`` (statuses ``assigned`` or
        ``carried_over``). A code the ledger already holds is not recorded and is
        returned (uint64): an assigned code that is used, or a carried-over code
        that the ledger holds as anything but imported. The caller redraws the
        assigned ones. All or nothing with the rest of the transaction.
        """
        ...

    def record_change(self, records: pl.DataFrame) -> np.ndarray:
        """Record code changes: each ``retired`` record retires a code its resident
        holds; each ``assigned`` one is a new code, reported back (as ``record_new``)
        when the ledger refuses it."""
        ...

    def add_records(self, records: pl.DataFrame) -> SegmentInfo | None:
        """Stage records: ``code``, ``status``, ``municipality``, ``resident_id``."""
        ...

    def record_ids_fixed(self, records: pl.DataFrame) -> None:
        """Give active codes their residents' correct ids (``rrnet ledger fix-ids``).

        ``records``: ``code``, ``status``, ``municipality`` as the ledger holds them
        now, and ``resident_id``, the correct id. Each becomes the code's latest
        record; the transaction's audit record must say ``FIXED_IDS`` (describe).
        """
        ...

    def add_codes(self, codes: np.ndarray, status: Status) -> SegmentInfo | None:
        """Stage sorted, distinct codes that all have ``status`` (an import)."""
        ...

    def add_pool(self, codes: np.ndarray, municipality: str) -> SegmentInfo | None:
        """Stage sorted, distinct, unused codes as designated to ``municipality``."""
        ...

    def add_notices(self, notices: pl.DataFrame) -> SegmentInfo | None:
        """Stage notice records (see ``rrnet_cli.ledger.notices``)."""
        ...

    def set_pool_mode(self, on: bool, municipality: str) -> None:
        """Turn ``municipality``'s pool mode on or off when this transaction commits."""
        ...


class LedgerStore(Protocol):
    """What the commands need from a ledger backend; callers are typed to this.

    The folder ledger (``folder.Ledger``) implements all of it. The PostgreSQL
    ledger (``postgres.PostgresLedger``) implements ``stats``, an import of its
    own, ``reading`` and transactions as far as assign, change, notify and the
    pool commands need them (``LedgerView``, ``record_new``, ``record_change``,
    ``add_notices``, ``add_pool``, ``set_pool_mode``), ``notice_records``,
    ``audit_log`` and ``check_integrity``, and refuses the rest (``snapshot``,
    ``retire``) with a plain message.
    """

    @property
    def location(self) -> str:
        """Where the ledger lives, as a person would name it in a message."""
        ...

    @property
    def municipality(self) -> str | None:
        """The municipality a run works for by default: the one this ledger serves
        (for this connection's role, on a shared ledger); None when it serves several."""
        ...

    @property
    def municipalities(self) -> tuple[str, ...]:
        """Every municipality a run may work for on this ledger (as this role)."""
        ...

    @property
    def served(self) -> tuple[str, ...]:
        """Every municipality the ledger serves, whoever asks (a shared ledger's list
        is no secret to its offices); ``municipalities`` is what this role may use."""
        ...

    def snapshot(self) -> LedgerState:
        """The committed ledger as of now (no lock held afterwards)."""
        ...

    def notice_records(self) -> tuple[pl.DataFrame, list[Any]]:
        """Every notice issued (``notices.NOTICE_SCHEMA``) and the audit trail's records."""
        ...

    def transaction(
        self, *, timeout: float = DEFAULT_LOCK_TIMEOUT, waiting: Waiting | None = None
    ) -> contextlib.AbstractContextManager[LedgerTransaction]:
        """Lock, read, stage, and commit on a clean exit (abort on an exception).

        ``waiting`` is told once, after about a second, when another run holds
        the ledger and this one waits for it (up to ``timeout`` seconds).
        """
        ...

    def reading(self) -> contextlib.AbstractContextManager[LedgerView]:
        """A consistent view of the committed ledger, no lock held (a dry run)."""
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


#: ``postgresql://`` or ``postgres://``, or libpq's ``keyword=value`` form.
_DATABASE_LOCATION = re.compile(r"^\s*(postgres(ql)?://|[A-Za-z_]+\s*=)", re.IGNORECASE)


def is_database_location(location: str | Path) -> bool:
    """Whether ``--ledger`` names a PostgreSQL database rather than a folder.

    A URL (``postgresql://host/dbname``, ``postgres://...``) or a libpq keyword
    string (``host=db.example dbname=rrnet``) names a database; anything else is
    a folder. A folder whose name starts with ``word=`` is given as
    ``./word=...``. A ``Path`` is always a folder (it cannot hold a URL's ``//``).
    """
    return isinstance(location, str) and bool(_DATABASE_LOCATION.match(location))


#: A URL's ``user:password@`` and a keyword string's ``password=...`` (quoted or not).
_URL_PASSWORD = re.compile(r"^(\s*postgres(?:ql)?://[^:/@?#]*):[^/?#]*@", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def without_password(text: str) -> str:
    """``text`` with the password of a database location blanked out (``***``).

    The audit trail records the command line, and ``--ledger`` may carry a
    password in its URL; a password must never be written down or shown.
    """
    if not is_database_location(text):
        return text
    return _KEYWORD_PASSWORD.sub("password=***", _URL_PASSWORD.sub(r"\1:***@", text))


def not_yet_supported(what: str) -> UsageError:
    """The refusal of what the PostgreSQL ledger cannot do yet (exit 2, no traceback)."""
    return UsageError(
        f"Not yet supported on a PostgreSQL ledger: {what}. Do not start a separate folder "
        "ledger for it: a second ledger is how duplicate codes happen."
    )


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
    # ne_missing: a resident the reader may not see (another municipality's, on a
    # shared ledger) is null here, and is another resident.
    another = pl.col("resident_id").ne_missing(pl.col("__rid__"))
    if municipality is not None:
        another = another | pl.col("municipality").ne_missing(pl.lit(municipality))
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


def first_notices_due(view: LedgerView, municipalities: Sequence[str]) -> dict[str, Any]:
    """The codes drawn here that have no first notice yet, as ``ledger stats`` and
    ``verify --ledger`` report them: ``count``, and ``codes`` (municipality,
    resident_id and 11-digit code of each), for each of ``municipalities``."""
    from rrnet_cli import code as rcode

    listed: list[dict[str, Any]] = []
    for municipality in municipalities:
        due = view.first_notice_due(municipality)
        codes = rcode.codes_to_strings(due["code"].to_numpy()).to_pylist()
        listed += [
            {"municipality": municipality, "resident_id": resident, "code": code}
            for resident, code in zip(due["resident_id"].to_list(), codes, strict=True)
        ]
    return {"count": len(listed), "codes": listed}


def municipality_for(ledger: LedgerStore, given: str | None) -> str:
    """The municipality a run works for: ``given`` (``-m``) or the ledger's.

    A ledger knows its residents by municipality, so a run under another code
    would find none of them and give every one a second code: a ``-m`` the
    ledger does not serve is refused (a mistyped code, or a stale
    RRNET_MUNICIPALITY), as is one that is not a local government code at all.
    A shared ledger serving several municipalities (to its owner) needs ``-m``.
    """
    from rrnet_cli.schema import validate_municipality_code

    serves = ledger.municipalities
    if given is None or not given.strip():
        if len(serves) == 1:
            return serves[0]
        if not serves:
            raise UsageError(
                f"The ledger {ledger.location} serves no municipality for you: on a shared "
                "ledger, its owner adds yours with `rrnet ledger add-municipality`."
            )
        raise UsageError(
            f"The ledger {ledger.location} serves {len(serves)} municipalities "
            f"({_some(serves)}): give --municipality for this run."
        )
    code = validate_municipality_code(given)
    if code not in serves:
        if code in ledger.served:  # another office's: row-level security keeps it out
            raise UsageError(
                f"Your role may not read or record municipality {code}'s residents on the "
                f"shared ledger {ledger.location}: each office's role sees only its own "
                f"municipality ({_some(serves) or 'none'}). Connect as {code}'s office role, "
                "or as the ledger's owner, to work for it."
            )
        if len(serves) == 1:
            raise UsageError(
                f"The ledger {ledger.location} is for municipality {serves[0]}, not {code} "
                "(wrong municipality?). Its residents are known under its own code, so "
                "another code would give each of them a second resident record code. Leave "
                "out -m (and RRNET_MUNICIPALITY) to use the ledger's."
            )
        raise UsageError(
            f"The ledger {ledger.location} does not serve municipality {code} for you "
            f"(it serves {_some(serves) or 'none'}). Its owner adds a municipality with "
            "`rrnet ledger add-municipality`; a mistyped code would give every resident a "
            "second resident record code."
        )
    return code


def _some(codes: tuple[str, ...], most: int = 8) -> str:
    shown = ", ".join(codes[:most])
    return shown + (f" and {len(codes) - most} more" if len(codes) > most else "")


@dataclass
class SegmentInfo:
    """A folder ledger's segment as its manifest entry describes it."""

    file: str
    txn: int
    rows: int
    bytes: int
    sha256: str
    statuses: dict[str, int]
    has_residents: bool

    def to_json(self) -> dict[str, Any]:
        return self.__dict__.copy()
