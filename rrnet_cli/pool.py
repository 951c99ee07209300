"""Designated pools (住民票コードの指定): ``rrnet ledger designate`` and ``pool-mode``.

The prefecture (since 2015 J-LIS) designates to each municipality the codes it
may use, so that no two municipalities can ever collide. rrnet keeps such a
pool in the ledger:

- **Storage.** ``designate_codes`` streams a file of codes (one per line, or a
  CSV/Parquet column: the same reader as ``rrnet ledger import``,
  ``importer.code_batches``), checks every code against the ledger
  (``LedgerView.lookup`` and ``designated``) and records them in one ledger
  transaction (``LedgerTransaction.add_pool``): a sorted pool segment in a
  folder ledger, rows of the ``pool`` table in a PostgreSQL one, where each
  municipality has its own pool. Its audit record, like any other, names the
  operator, the command, the file's SHA-256 and the count (``{"designated": n}``).
- **Designated is not used.** A pool code stays out of the used codes until a
  record uses it (assign, carry-over, import, retirement). What is left of the
  pool is the pool minus every used code, computed from the ledger
  (``LedgerView.free_pool``), never stored, so no crash can make it disagree.
- **Refusals.** A code that is invalid, already used (any status), already in
  the pool, or twice in the file refuses the whole designation, naming its
  record (as ``ledger import`` numbers them: a CSV's header is record 1).
  One bad code: nothing is designated.
- **Pool mode.** ``set_pool_mode`` turns it on or off (for one municipality, on
  a shared ledger) in a transaction of its own (its audit record says
  ``pool_mode``). In pool mode ``assign`` and
  ``change`` draw only from what is left of the pool (``assign.draw_codes``);
  ``assign --pool`` does so for one run. Turning it on needs a pool, and warns
  when codes drawn here since the first designation lie outside the pool: in
  pool mode ``rrnet verify`` flags each of them. Codes drawn before any pool was
  designated are not outside it (there was none to draw from).
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, UsageError
from rrnet_cli.importer import code_batches, merge_runs, numbered_codes
from rrnet_cli.ingest import check_input_file
from rrnet_cli.ledger import (
    Invocation,
    LedgerStore,
    LedgerView,
    Waiting,
    file_digest,
    municipality_for,
    on_off,
)
from rrnet_cli.progress import QUIET, Steps

#: Refused records named in a message; the count says how many there were.
SHOWN_RECORDS = 5


@dataclass
class DesignateResult:
    """What one designation did."""

    source: str
    ledger: str
    municipality: str = ""
    codes_read: int = 0
    designated: int = 0
    #: the pool after the run: every designated code, and those not used yet
    pool_size: int = 0
    pool_left: int = 0
    pool_mode: str = "off"
    transaction: int | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [
            ("municipality", self.municipality),
            ("codes read", self.codes_read),
            ("designated", self.designated),
            ("pool size (all designations)", self.pool_size),
            ("left in the pool", self.pool_left),
            ("pool mode", self.pool_mode),
            ("time", f"{self.seconds:.1f} s"),
        ]

    def lines(self) -> list[str]:
        if self.pool_mode == "on":
            return []
        return [
            "Pool mode is off: assign draws from the whole code space. "
            "`rrnet ledger pool-mode on` draws only from the pool; `rrnet assign --pool` "
            "does so for one run."
        ]


def designate_codes(
    ledger: LedgerStore,
    source: Path,
    *,
    municipality: str | None = None,
    column: str | None = None,
    encoding: str = "auto",
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    steps: Steps = QUIET,
    batch_rows: int = 4_000_000,
    invocation: Invocation | None = None,
    waiting: Waiting | None = None,
) -> DesignateResult:
    """Record the codes of ``source`` as designated to ``municipality`` (see module doc).

    ``municipality``: as ``-m`` gives it (``municipality_for``: the ledger's own
    when it serves one). Streams the file in batches; every code must be valid,
    unused, not designated (to any municipality) and not repeated in the file,
    or nothing is designated. The whole designation is one transaction.
    """
    source = check_input_file(source, "the file of designated codes")
    municipality = municipality_for(ledger, municipality)
    started = time.perf_counter()
    result = DesignateResult(source=str(source), ledger=ledger.location, municipality=municipality)
    with (
        ThreadPoolExecutor(max_workers=1) as workers,
        ledger.transaction(timeout=lock_timeout, waiting=waiting) as txn,
    ):
        hashing = workers.submit(file_digest, source)  # for the audit record
        with steps.step("Loading the ledger"):
            view = txn.view()
            before = view.pool_counts(municipality)
        runs: list[np.ndarray] = []  # one sorted run per batch
        numbers: list[np.ndarray] = []  # the record number of each code of a run
        with (
            steps.step("Checking the designated codes") as advance,
            contextlib.closing(code_batches(source, column, batch_rows, encoding)) as batches,
        ):
            for first, array in batches:
                codes, records = numbered_codes(array, first, source, done="designated")
                order = np.argsort(codes, kind="stable")
                codes, records = codes[order], records[order]
                _refuse_used_or_designated(codes, records, view, source, municipality)
                result.codes_read += len(codes)
                runs.append(codes)
                numbers.append(records)
                advance(len(array))
        with steps.step("Recording the designated codes"):
            merged = merge_runs(list(runs))
            if len(merged) < result.codes_read:
                _refuse_repeats(runs, numbers, source)
            if not len(merged):
                raise UsageError(f"{source} holds no codes; nothing was designated.")
            txn.add_pool(merged, municipality)
        txn.describe(invocation, inputs=[hashing.result()])
        result.transaction = txn.number
        result.designated = len(merged)
        result.pool_size = before.designated + len(merged)
        result.pool_left = before.left + len(merged)  # every new one is unused
        result.pool_mode = on_off(before.mode)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _refuse_used_or_designated(
    codes: np.ndarray, records: np.ndarray, view: LedgerView, source: Path, municipality: str
) -> None:
    """Stop when a code of this batch (sorted) is used or already designated."""
    statuses = view.lookup(codes)["status"]
    used = statuses.is_not_null().to_numpy()
    owners = view.designated(codes)
    designated = owners.is_not_null().to_numpy()
    bad = np.flatnonzero(used | designated)
    if not len(bad):
        return
    shown = bad[np.argsort(records[bad], kind="stable")][:SHOWN_RECORDS]
    details = []
    for index in shown.tolist():
        if used[index]:
            why = f"already used ({statuses[index]})"
        else:
            whose = owners[index]
            why = f"already in a designated pool ({whose}'s" + (
                ", this run's municipality)" if whose == municipality else ")"
            )
        details.append(f"record {records[index]}: {why}")
    raise UsageError(
        f"{source}: {len(bad):,} code(s) in one batch are already used or designated, so "
        f"nothing was designated ({'; '.join(details)}). A designated code must be one "
        "that was never used and is not yet designated (to this or another municipality)."
    )


def _refuse_repeats(runs: list[np.ndarray], numbers: list[np.ndarray], source: Path) -> None:
    """Stop, naming the records of codes that the file lists more than once."""
    codes = np.concatenate(runs)
    records = np.concatenate(numbers)
    order = np.lexsort((records, codes))  # by code, then by record
    codes, records = codes[order], records[order]
    starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    repeats = np.flatnonzero(codes[1:] == codes[:-1]) + 1
    firsts = records[starts[np.searchsorted(starts, repeats, side="right") - 1]]
    shown = np.argsort(records[repeats], kind="stable")[:SHOWN_RECORDS]
    details = "; ".join(
        f"record {records[repeats[i]]}: the same code as record {firsts[i]}" for i in shown
    )
    raise UsageError(
        f"{source}: {len(repeats):,} code(s) appear more than once in the file, so nothing "
        f"was designated ({details}). Ask whoever sent the file for a corrected one."
    )


# ---------------------------------------------------------------------------
# Pool mode


@dataclass
class PoolModeResult:
    """What ``rrnet ledger pool-mode`` did."""

    ledger: str
    mode: str
    municipality: str = ""
    changed: bool = False
    transaction: int | None = None
    pool_size: int = 0
    pool_left: int = 0
    #: codes drawn here (current status assigned) since the first designation that
    #: are not in the pool
    assigned_outside_pool: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [
            ("municipality", self.municipality),
            ("pool mode", self.mode),
            ("changed", "yes" if self.changed else "no (it already was)"),
            ("ledger transaction", self.transaction if self.transaction is not None else "-"),
            ("pool size", self.pool_size),
            ("left in the pool", self.pool_left),
            ("assigned here, outside the pool", self.assigned_outside_pool),
        ]


def set_pool_mode(
    ledger: LedgerStore,
    on: bool,
    *,
    municipality: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    invocation: Invocation | None = None,
    waiting: Waiting | None = None,
) -> PoolModeResult:
    """Turn ``municipality``'s pool mode on or off, as a transaction of its own
    (nothing if it already is). ``municipality`` as ``-m`` gives it."""
    municipality = municipality_for(ledger, municipality)
    with ledger.transaction(timeout=lock_timeout, waiting=waiting) as txn:
        counts = txn.view().pool_counts(municipality)
        if on and not counts.designated:
            raise UsageError(
                f"No pool is designated to municipality {municipality}, so pool mode stays "
                "off: the ledger has no designated pool to draw from. Designate one first: "
                "`rrnet ledger designate POOLFILE --ledger LEDGER`."
            )
        result = PoolModeResult(ledger=ledger.location, mode=on_off(on), municipality=municipality)
        # A mode changed by hand (stored, but not what the trail says): recorded again.
        if counts.mode != on or counts.recorded_mode != on:
            txn.describe(invocation)
            txn.set_pool_mode(on, municipality)
            result.changed = True
            result.transaction = txn.number
        result.pool_size = counts.designated
        result.pool_left = counts.left
        result.assigned_outside_pool = counts.assigned_outside
    if on and result.assigned_outside_pool:
        result.warnings.append(
            f"{result.assigned_outside_pool:,} code(s) assigned here lie outside the designated "
            "pool (drawn freely after the pool was designated); in pool mode `rrnet verify` "
            "flags each of them."
        )
    if on and not result.pool_left:
        result.warnings.append(
            "The pool has no codes left: assign and change will refuse to draw until more "
            "codes are designated."
        )
    return result
