"""Giving every eligible resident of an export a resident record code.

The pipeline, each step a frame in and a frame out::

    read_export -> validate_register -> classify (against the ledger)
                -> draw_codes (for the rows that need one) -> build_output

Rules:
- a resident the ledger already knows keeps their code (``already_assigned``),
  so running assign twice on one export assigns nothing new;
- a resident arriving with a valid code keeps it (``carried_over``) and the
  ledger records it as theirs; a code the ledger holds for someone else, or a
  retired code, is a row error;
- a resident with a planned move-out gets no new code (``excluded``);
- everyone else gets a new random code (``assigned``).

The run is split in three so that each part can be read and tested alone:

- ``plan_assignment`` decides every row's status, draws the new codes and
  returns an ``AssignPlan`` (the output, the rejects, the new ledger records
  and the counts). It writes nothing; what it knows of the ledger it asks a
  ``LedgerView``: the folder ledger answers from memory (the plan is then a
  pure function of the state), the PostgreSQL ledger with queries on the
  server, never loading the ledger into the client;
- ``record_plan`` records the plan's codes in one ledger transaction. A code
  the ledger refuses as used (another office recorded it since: only a
  database ledger shared by many can say so) is redrawn, with the same
  ``draw_codes``, and the plan updated, until every code is recorded;
- the outputs are written, then published (renamed into place) only after the
  commit.

Order of effects, so that a crash never leaves an output the ledger disowns:
the codes are recorded in the open transaction, the output is written to a
private temporary file, the ledger commits, then the output is renamed into
place.

Drawing (``draw_codes``, the one entry point that assign and change call):
- from the whole code space by default: 10-digit bodies from the CSPRNG
  (``random_below``: rejection sampling, no modulo bias), redrawn in vectorised
  rounds until every code is new to the used codes the client holds
  (``LedgerView.used_codes``: all of them for a folder ledger, none for a
  PostgreSQL one, whose insert reports the used ones for ``record_plan`` to
  redraw);
- from the designated pool when the ledger is in pool mode, or for one run with
  ``--pool`` (``draw_from_pool``): the codes left are the municipality's pool
  minus every used code (``LedgerView.free_pool``, asked of the ledger: a
  PostgreSQL ledger answers on the server) and the codes on the export, and the draw is
  uniform over them. Too few left is refused before anything is drawn or
  written ("needs 2,345 codes, the pool has 1,200 left"). For a draw of up to a
  quarter of what is left, uniform indices into the sorted codes left are drawn
  in rounds (``random_below`` again), repeats dropped, until enough; for more,
  every code left gets a 64-bit random key and the smallest keys win (a random
  subset of exactly that size, without a long tail of rounds). Either way no
  code is preferred, and the codes are then shuffled like any drawn codes.
  Such a transaction's audit record says ``"drawn_from": "pool"``.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from rrnet_cli import code as rcode
from rrnet_cli import schema
from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, InputRowsError, LedgerError, UsageError
from rrnet_cli.files import (
    PendingFile,
    check_table_suffix,
    refuse_existing,
    remove_stale_parts,
    write_table_to,
)
from rrnet_cli.ingest import (
    ERROR_SCHEMA,
    NUMBER_ID_REASON,
    Export,
    describe_errors,
    read_export,
    stripped_first,
    unrecognised_languages,
    validate_register,
)
from rrnet_cli.ledger import (
    ACTIVE,
    DRAWN_FROM,
    CodeIndex,
    Invocation,
    LedgerStore,
    LedgerTransaction,
    LedgerView,
    Status,
    Waiting,
    file_digest,
    free_pool_codes,
    municipality_for,
    sorted_member,
)
from rrnet_cli.progress import QUIET, Steps
from rrnet_cli.schema import (
    CODE,
    EXCLUDED_MOVE_OUT,
    INCOMING_CODE,
    KNOWN_CODE,
    LEDGER_MUNICIPALITY,
    LEDGER_RESIDENT,
    LEDGER_STATUS,
    LEDGER_ZEROS_LOST,
    MOVE_OUT,
    N_RESIDENT_CODE,
    N_RESIDENT_ID,
    ROW,
    ZEROS_LOST,
    CodeStatus,
)

ZEROS_LOST_REASON = (
    "this resident_id equals an id the ledger knows, without its leading zeros: Excel may "
    "have dropped leading zeros. Restore them (export again from the register system, or "
    "format the id column as Text in Excel and re-enter the ids) and run again"
)
LEDGER_ZEROS_LOST_REASON = (
    "the ledger holds this resident under this id without its leading zeros (recorded "
    "from an earlier export that had lost them): this id is right, the ledger's is not. "
    "Repair the ledger's ids with `rrnet ledger fix-ids --map FILE` and run again"
)
#: More rows than this with lost zeros stop the whole run, even with --rejects.
MAX_LOST_ZEROS = 5
#: Every reason that says an id lost its leading zeros: reported before the others.
STRIPPED_REASONS = (NUMBER_ID_REASON, ZEROS_LOST_REASON, LEDGER_ZEROS_LOST_REASON)

# Rejection sampling bound: the largest multiple of 10**10 below 2**64. Values at
# or above it are thrown away, so ``value % 10**10`` has no modulo bias.
_UNBIASED_LIMIT = np.uint64((2**64 // rcode.BODY_SPACE) * rcode.BODY_SPACE)

RandomBytes = Callable[[int], bytes]

#: FOR TESTS ONLY, like ``--seed``: when set, code bodies are drawn from
#: ``[0, _test_body_space)`` instead of the whole 10-digit space, so that a test
#: can come close to exhausting a tiny space and see that no code is ever drawn
#: twice. Set it only through ``tiny_code_space_for_tests``; nothing else does.
_test_body_space: int | None = None

#: Rounds in a row that may find no new code before drawing gives up (a space
#: that is full); in the real space one such round is practically impossible.
_MAX_BARREN_ROUNDS = 1000


@contextlib.contextmanager
def tiny_code_space_for_tests(bodies: int) -> Iterator[None]:
    """FOR TESTS ONLY: draw code bodies from ``[0, bodies)`` inside this block."""
    global _test_body_space
    if not 0 < bodies <= rcode.BODY_SPACE:
        raise ValueError("a code space of 1 .. 10**10 bodies")
    saved, _test_body_space = _test_body_space, bodies
    try:
        yield
    finally:
        _test_body_space = saved


def random_source(seed: int | None) -> RandomBytes:
    """The operating system's CSPRNG, or a seeded generator for reproducible tests."""
    if seed is None:
        return os.urandom
    generator = np.random.Generator(np.random.PCG64(seed))
    return generator.bytes


def random_below(n: int, bound: int, random_bytes: RandomBytes) -> np.ndarray:
    """``n`` uniform random integers in [0, ``bound``) without modulo bias (uint64).

    Raw 64-bit values at or above the largest multiple of ``bound`` that fits
    are thrown away, so ``value % bound`` favours no remainder. The one place
    rrnet turns random bytes into numbers: code bodies and pool positions.
    """
    if not 0 < bound <= 2**64:
        raise ValueError("a bound of 1 .. 2**64")
    limit = (2**64 // bound) * bound  # 2**64 itself when bound divides it: keep all
    parts: list[np.ndarray] = []
    need = n
    while need > 0:
        # 2**64 mod bound is tiny next to 2**64 for any bound rrnet uses, so almost
        # nothing is rejected; ask a little extra.
        count = need + need // 1000 + 8
        raw = np.frombuffer(random_bytes(8 * count), dtype=np.uint64)
        if limit < 2**64:
            raw = raw[raw < np.uint64(limit)]
        good = raw[:need] % np.uint64(bound) if bound < 2**64 else raw[:need].copy()
        parts.append(good)
        need -= len(good)
    return np.concatenate(parts) if parts else np.empty(0, np.uint64)


def random_bodies(n: int, random_bytes: RandomBytes) -> np.ndarray:
    """``n`` uniform random code bodies in [0, 10**10) without modulo bias."""
    space = rcode.BODY_SPACE
    if _test_body_space is not None:  # tests only: see tiny_code_space_for_tests
        space = _test_body_space
    return random_below(n, space, random_bytes)


def _shuffled(codes: np.ndarray, random_bytes: RandomBytes) -> np.ndarray:
    """``codes`` in random order, so that a code's size says nothing about a row.

    The order is not a secret the way codes are, but it must not be guessable
    from the rows: shuffle with a generator seeded from the same source.
    """
    shuffler = np.random.Generator(np.random.PCG64(int.from_bytes(random_bytes(32), "little")))
    return shuffler.permutation(codes)


def draw_codes(
    n: int,
    *,
    used: CodeIndex,
    taken: np.ndarray,
    random_bytes: RandomBytes,
    pool: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Draw ``n`` new codes, distinct from each other, ``used`` and ``taken``.

    The one way rrnet draws codes. With ``pool`` (designated codes, sorted:
    ``pool_to_draw_from``) only codes of the pool are drawn, uniformly over
    those neither used nor taken (see ``draw_from_pool``); too few left
    raises ``UsageError`` before anything is drawn.

    Otherwise vectorised rounds over sorted candidates: draw all that are still
    missing, drop repeats within the round, codes in the ledger, codes already on
    this export (``taken``) and codes accepted in earlier rounds; repeat for the
    shortfall. The accepted codes are then shuffled with the same random source,
    so that a code's size says nothing about a resident's row. Returns the codes
    and how many candidates had to be redrawn.
    """
    if pool is not None:
        return draw_from_pool(n, free_pool_codes(pool, used, taken), random_bytes)
    taken = np.sort(np.asarray(taken, dtype=np.uint64))
    accepted = np.empty(0, dtype=np.uint64)
    redraws = barren = 0
    while len(accepted) < n:
        need = n - len(accepted)
        candidates = np.sort(rcode.codes_from_bodies(random_bodies(need, random_bytes)))
        fresh = np.ones(need, dtype=bool)
        np.not_equal(candidates[1:], candidates[:-1], out=fresh[1:])
        fresh &= ~used.contains_sorted(candidates)
        fresh &= ~sorted_member(taken, candidates)
        fresh &= ~sorted_member(accepted, candidates)
        redraws += int(need - fresh.sum())
        barren = 0 if fresh.any() else barren + 1
        if barren > _MAX_BARREN_ROUNDS:
            raise LedgerError(
                f"No unused code was found in {_MAX_BARREN_ROUNDS} rounds of drawing: the "
                "code space is used up. Nothing was recorded."
            )
        accepted = np.concatenate([accepted, candidates[fresh]])
        if len(accepted) < n:  # later rounds search ``accepted``: keep it sorted
            accepted.sort()
    return _shuffled(accepted, random_bytes), redraws


def pool_exhausted(needed: int, left: int) -> str:
    """The refusal when a run needs more codes than the pool has left."""
    return (
        f"The designated pool is too small for this run: it needs {needed:,} "
        f"code{'' if needed == 1 else 's'}, the pool has {left:,} left. Nothing was "
        "written and no code was recorded. Ask for "
        "more codes to be designated and add them with `rrnet ledger designate`."
    )


def pool_to_draw_from(view: LedgerView, municipality: str, pool: bool) -> np.ndarray | None:
    """The codes a run for ``municipality`` draws from: its designated codes not yet
    used (sorted) in pool mode or with ``pool`` (``--pool``); None: the whole space.

    Refuses (``UsageError``) to draw from a pool when none was designated.
    """
    if not (pool or view.pool_mode_of(municipality)):
        return None
    free = view.free_pool(municipality)
    if not len(free) and not view.pool_counts(municipality).designated:
        raise UsageError(
            f"No pool is designated to municipality {municipality}: the ledger has no "
            "designated pool to draw from for it. Add one with `rrnet ledger designate "
            "POOLFILE`."
        )
    return free


def draw_from_pool(n: int, left: np.ndarray, random_bytes: RandomBytes) -> tuple[np.ndarray, int]:
    """Draw ``n`` distinct codes uniformly from ``left`` (sorted, distinct, all free).

    Refuses (``UsageError``) when ``left`` has fewer than ``n`` codes. Up to a
    quarter of ``left``: positions in [0, len(left)) from ``random_below``, in
    vectorised rounds that keep the positions not drawn before (each round has
    at least a 3 in 4 chance per candidate). More: one 64-bit random key per
    code left and the ``n`` smallest keys win, redrawn in the (practically
    impossible) case of a tie at the cut. Every step treats all positions
    alike, so every ``n``-subset of ``left`` is equally likely. The codes are
    then shuffled. Returns the codes and how many positions were drawn twice.
    """
    m = len(left)
    if n > m:
        raise UsageError(pool_exhausted(n, m))
    if n == 0:
        return np.empty(0, np.uint64), 0
    redraws = 0
    if 4 * n <= m:
        chosen = np.empty(0, dtype=np.uint64)
        while len(chosen) < n:
            need = n - len(chosen)
            candidates = np.sort(random_below(need, m, random_bytes))
            fresh = np.ones(need, dtype=bool)
            np.not_equal(candidates[1:], candidates[:-1], out=fresh[1:])
            fresh &= ~sorted_member(chosen, candidates)
            redraws += int(need - fresh.sum())
            chosen = np.concatenate([chosen, candidates[fresh]])
            chosen.sort(kind="stable")  # two sorted runs: a merge, not a full sort
        picked = left[chosen.astype(np.intp)]
    else:
        while True:
            keys = random_below(m, 2**64, random_bytes)
            cut = np.argpartition(keys, n - 1) if n < m else np.arange(m)
            if n == m or keys[cut[:n]].max() < keys[cut[n:]].min():
                break
            redraws += 1  # a tie at the cut: which code wins would not be random
        picked = left[cut[:n]]
    return _shuffled(picked, random_bytes), redraws


# ---------------------------------------------------------------------------


@dataclass
class AssignResult:
    """What one assign run did; the CLI prints it as a table or JSON."""

    export: str
    output: str | None
    rejects: str | None
    ledger: str
    municipality: str
    dry_run: bool
    encoding: str | None = None
    rows_read: int = 0
    rows_rejected: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    carried_over: int = 0
    already_assigned: int = 0
    newly_assigned: int = 0
    redraws: int = 0
    ledger_records_before: int = 0
    ledger_records_after: int = 0
    transaction: int | None = None
    seconds: float = 0.0
    #: the worksheet read, for an Excel export
    sheet: str | None = None
    #: how the export was read that a person should know (numbers in id columns)
    warnings: list[str] = field(default_factory=list)
    #: blank rows of the export, anywhere (Excel leftovers such as ",,,,"), skipped
    blank_rows_skipped: int = 0
    #: residents with an active code here whom the export no longer lists
    departed: int = 0
    #: where their list was written (--departed FILE)
    departed_file: str | None = None
    #: new codes came from the designated pool (pool mode, or --pool)
    from_pool: bool = False
    #: partial outputs (personal data) of stopped runs, removed before this run wrote
    stale_parts_removed: list[str] = field(default_factory=list)
    #: such files found but left in place, each with the reason
    stale_parts_not_removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary_rows(self) -> list[tuple[str, Any]]:
        """The lines of the summary table a person reads after the run."""
        rows: list[tuple[str, Any]] = [
            ("municipality", self.municipality),
            ("rows read", self.rows_read),
            ("read as", self.encoding),
        ]
        if self.sheet is not None:
            rows.append(("sheet", self.sheet))
        if self.blank_rows_skipped:
            rows.append(("blank rows (skipped)", self.blank_rows_skipped))
        if self.rejects is not None or self.rows_rejected:
            rows.append(("rows set aside (rejects)", self.rows_rejected))
        for reason, n in sorted(self.excluded.items()) or [(EXCLUDED_MOVE_OUT, 0)]:
            rows.append((f"excluded: {reason}", n))
        rows += [
            ("carried over (existing code kept)", self.carried_over),
            ("already assigned (ledger)", self.already_assigned),
            ("newly assigned", self.newly_assigned),
            *(
                [("  drawn from", "the designated pool")]
                if self.from_pool and self.newly_assigned
                else []
            ),
            ("known to the ledger, not in the export", self.departed),
            ("ledger records after the run", self.ledger_records_after),
            *(
                [("stale partial outputs removed", len(self.stale_parts_removed))]
                if self.stale_parts_removed
                else []
            ),
            ("time", f"{self.seconds:.2f} s"),
        ]
        return rows


@dataclass
class AssignPlan:
    """Everything one assign run will write, decided before anything is written."""

    #: the assigned register: every input row and column, plus the code and status
    output: pl.DataFrame
    #: bad rows as they came in, with their row number and every reason
    rejects: pl.DataFrame
    #: the same reasons, one line per (row, column, reason, value)
    errors: pl.DataFrame
    #: new ledger records: code, status, municipality, resident_id
    records: pl.DataFrame
    #: rows per code status
    counts: dict[CodeStatus, int]
    #: candidates that had to be redrawn (already used, or drawn twice)
    redraws: int

    #: residents the ledger holds an active code for here, missing from the export:
    #: resident_id, resident_code, status (they moved away, died or were removed)
    departed: pl.DataFrame = field(default_factory=pl.DataFrame)
    #: the designated codes the new ones were drawn from (those not used yet, sorted;
    #: a redraw draws from them too), or None: from the whole code space
    pool: np.ndarray | None = None
    #: the codes the export's rows hold already (their own or the ledger's): a
    #: redraw must avoid them as the first draw did
    taken: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))

    @property
    def rows_rejected(self) -> int:
        return int(self.errors["row"].n_unique()) if self.errors.height else 0

    @property
    def from_pool(self) -> bool:
        """Whether the new codes were drawn from the designated pool."""
        return self.pool is not None


def classify(
    frame: pl.DataFrame, view: LedgerView, municipality: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decide each valid row's code_status against the ledger.

    Three questions to the ledger (``view``): the active codes of the export's
    residents here, which of them lost leading zeros, and who holds the codes
    the export carries; the decision itself is the same for every backend.
    Returns (frame with ``code_status``, ``exclusion_reason``, ``CODE`` as
    uint64 for rows that already have a code) and the rows the ledger refuses
    (``row, column, reason, value``).
    """
    ids = frame[N_RESIDENT_ID]
    known = view.active_codes(municipality, ids).select(
        pl.col("resident_id").alias(N_RESIDENT_ID), pl.col("code").alias(KNOWN_CODE)
    )
    frame = frame.join(known, on=N_RESIDENT_ID, how="left", maintain_order="left")
    # Excel turns 000005974 into 5974: an id the ledger does not know that equals
    # a known one once leading zeros are ignored is almost surely that resident.
    # Only the ids it does not know are asked about (on a second run, few). The
    # shorter id lost its zeros: the export's (this export went through Excel),
    # or the ledger's (an earlier one did, and its ids were recorded so).
    unknown = frame.filter(pl.col(KNOWN_CODE).is_null())[N_RESIDENT_ID]
    lost = view.lost_zeros(municipality, unknown)
    shorter = pl.col("ledger_id").str.len_chars() < pl.col("resident_id").str.len_chars()
    ours = lost.filter(~shorter)["resident_id"]
    theirs = lost.filter(shorter & ~pl.col("resident_id").is_in(ours.implode()))["resident_id"]
    frame = frame.with_columns(
        pl.col(N_RESIDENT_ID).is_in(ours.implode()).alias(ZEROS_LOST),
        pl.col(N_RESIDENT_ID).is_in(theirs.implode()).alias(LEDGER_ZEROS_LOST),
    )
    frame = frame.with_columns(pl.col(N_RESIDENT_CODE).cast(pl.UInt64).alias(INCOMING_CODE))
    incoming = frame.filter(pl.col(INCOMING_CODE).is_not_null())[INCOMING_CODE].to_numpy()
    owners = view.lookup(incoming).select(
        pl.col("code").alias(INCOMING_CODE),
        pl.col("status").alias(LEDGER_STATUS),
        pl.col("municipality").alias(LEDGER_MUNICIPALITY),
        pl.col("resident_id").alias(LEDGER_RESIDENT),
    )
    frame = frame.join(owners, on=INCOMING_CODE, how="left", maintain_order="left")
    has_in = pl.col(INCOMING_CODE).is_not_null()
    is_known = pl.col(KNOWN_CODE).is_not_null()
    refusals = [
        (~is_known & pl.col(ZEROS_LOST), "resident_id", ZEROS_LOST_REASON),
        (~is_known & pl.col(LEDGER_ZEROS_LOST), "resident_id", LEDGER_ZEROS_LOST_REASON),
        (
            is_known & has_in & (pl.col(INCOMING_CODE) != pl.col(KNOWN_CODE)),
            "resident_code",
            "the ledger holds a different code for this resident; a new code needs a change "
            "request, not a new export",
        ),
        (
            has_in & (pl.col(LEDGER_STATUS) == Status.RETIRED.value),
            "resident_code",
            "this code has been retired and can never be used again",
        ),
        (
            has_in
            & ~is_known
            & pl.col(LEDGER_STATUS).is_in(ACTIVE)
            & pl.col(LEDGER_MUNICIPALITY).ne_missing(pl.lit(municipality)),
            "resident_code",
            "the ledger holds this code for a resident of another municipality that shares "
            "this ledger (a move between them cannot carry the code over yet: that "
            "municipality's record of it stays active)",
        ),
        (
            has_in
            & ~is_known
            & pl.col(LEDGER_STATUS).is_in(ACTIVE)
            & pl.col(LEDGER_RESIDENT).ne_missing(pl.col(N_RESIDENT_ID)),
            "resident_code",
            "the ledger holds this code for another resident",
        ),
    ]
    refused = pl.concat(
        [
            frame.filter(mask.fill_null(False)).select(
                pl.col(ROW).alias("row"),
                pl.lit(column).alias("column"),
                pl.lit(reason).alias("reason"),
                pl.col(N_RESIDENT_CODE if column == "resident_code" else N_RESIDENT_ID).alias(
                    "value"
                ),
            )
            for mask, column, reason in refusals
        ]
    ).unique(subset="row", keep="first", maintain_order=True)
    status = (
        pl.when(is_known)
        .then(pl.lit(CodeStatus.ALREADY_ASSIGNED))
        .when(has_in)
        .then(pl.lit(CodeStatus.CARRIED_OVER))
        .when(pl.col(MOVE_OUT))
        .then(pl.lit(CodeStatus.EXCLUDED))
        .otherwise(pl.lit(CodeStatus.ASSIGNED))
    )
    frame = (
        frame.with_columns(
            status.alias("code_status"),
            pl.coalesce(KNOWN_CODE, INCOMING_CODE).alias(CODE),
        )
        .with_columns(
            pl.when(pl.col("code_status") == CodeStatus.EXCLUDED)
            .then(pl.lit(EXCLUDED_MOVE_OUT))
            .otherwise(None)
            .cast(pl.String)
            .alias("exclusion_reason")
        )
        .drop(
            KNOWN_CODE,
            INCOMING_CODE,
            LEDGER_STATUS,
            LEDGER_MUNICIPALITY,
            LEDGER_RESIDENT,
            ZEROS_LOST,
            LEDGER_ZEROS_LOST,
        )
    )
    return frame, refused


def build_output(frame: pl.DataFrame, input_columns: list[str]) -> pl.DataFrame:
    """The assigned register: every input column, code as 11-char text, status."""
    code_text = pl.Series(
        "resident_code",
        rcode.codes_to_strings(frame[CODE].fill_null(0).to_numpy()),
        dtype=pl.String,
    )
    frame = frame.with_columns(
        pl.when(pl.col(CODE).is_null()).then(None).otherwise(code_text).alias("resident_code")
    )
    columns = [c for c in input_columns if c not in schema.OUTPUT_COLUMNS]
    if "resident_code" in input_columns:
        columns.insert(input_columns.index("resident_code"), "resident_code")
    else:
        columns.append("resident_code")
    return frame.select(*columns, "code_status", "exclusion_reason")


def build_rejects(
    frame: pl.DataFrame, errors: pl.DataFrame, input_columns: list[str]
) -> pl.DataFrame:
    """Bad rows as they came in, with their row number and every reason."""
    reasons = errors.group_by("row", maintain_order=True).agg(
        pl.concat_str(pl.col("column"), pl.lit(": "), pl.col("reason"))
        .str.join("; ")
        .alias("errors")
    )
    bad = frame.join(reasons, left_on=ROW, right_on="row", how="inner", maintain_order="left")
    return bad.select(pl.col(ROW).alias("row"), "errors", *input_columns)


def plan_assignment(
    frame: pl.DataFrame,
    view: LedgerView,
    municipality: str,
    random_bytes: RandomBytes,
    *,
    errors: pl.DataFrame | None = None,
    input_columns: list[str] | None = None,
    steps: Steps = QUIET,
    pool: bool = False,
) -> AssignPlan:
    """Decide every row of a checked export and draw the new codes; write nothing.

    ``frame`` and ``errors`` are what ``ingest.validate_register`` returned;
    rows with errors, and rows the ledger refuses, go to the plan's rejects.
    ``input_columns`` are the export's own columns, in order (default: every
    column of ``frame`` that is not a working column). New codes come from the
    designated pool when the ledger is in pool mode or ``pool`` is set.
    """
    free = pool_to_draw_from(view, municipality, pool)
    if input_columns is None:
        input_columns = [c for c in frame.columns if not schema.is_working_column(c)]
    if errors is None or errors.height == 0:
        errors = pl.DataFrame(schema=ERROR_SCHEMA)
        good = frame
    else:
        good = frame.filter(~pl.col(ROW).is_in(errors["row"].unique().implode()))
    with steps.step("Checking against the ledger"):
        good, refused = classify(good, view, municipality)
    if refused.height:
        errors = pl.concat([errors, refused.cast(ERROR_SCHEMA)]).sort("row", maintain_order=True)
        good = good.filter(~pl.col(ROW).is_in(refused["row"].implode()))
    need = (good["code_status"] == CodeStatus.ASSIGNED).to_numpy()
    n_new = int(need.sum())
    with steps.step("Drawing new codes", total=n_new) as advance:
        taken = good.filter(pl.col(CODE).is_not_null())[CODE].to_numpy()
        drawn, redraws = draw_codes(
            n_new,
            used=view.used_codes,
            taken=taken,
            random_bytes=random_bytes,
            pool=free,
        )
        advance(n_new)
    has_code = good[CODE].is_not_null().to_numpy() | need
    codes = good[CODE].fill_null(0).to_numpy().astype(np.uint64)
    codes[need] = drawn
    good = good.with_columns(
        pl.Series(CODE, codes, dtype=pl.UInt64).set(pl.Series(~has_code), None)
    )
    counts = {CodeStatus(k): int(n) for k, n in good.group_by("code_status").len().iter_rows()}
    records = good.filter(
        pl.col("code_status").is_in([CodeStatus.ASSIGNED, CodeStatus.CARRIED_OVER])
    ).select(
        pl.col(CODE).alias("code"),
        pl.col("code_status").alias("status"),
        pl.lit(municipality).alias("municipality"),
        pl.col(N_RESIDENT_ID).alias("resident_id"),
    )
    return AssignPlan(
        output=build_output(good, input_columns),
        rejects=build_rejects(frame, errors, input_columns),
        errors=errors,
        records=records,
        counts=counts,
        redraws=redraws,
        departed=departed_residents(frame, view, municipality),
        pool=free,
        taken=np.asarray(taken, dtype=np.uint64),
    )


def departed_residents(frame: pl.DataFrame, view: LedgerView, municipality: str) -> pl.DataFrame:
    """Residents with an active code in ``municipality`` whom the export does not list.

    They moved away, died or were removed from the register, or the wrong
    export was given: offices reconcile with this list. Every export row counts
    as listed, rejected rows too.
    """
    # Not deduplicated: both backends take repeats in their stride, and the ids as
    # they are let a database ledger reuse the table of ids classification filled.
    gone = view.departed(municipality, frame[N_RESIDENT_ID].drop_nulls()).sort("resident_id")
    return gone.select(
        "resident_id",
        pl.Series("resident_code", rcode.codes_to_strings(gone["code"].to_numpy())),
        pl.col("status").alias("ledger_status"),
    )


def record_plan(
    txn: LedgerTransaction,
    plan: AssignPlan,
    *,
    used: CodeIndex | None = None,
    random_bytes: RandomBytes = os.urandom,
) -> int | None:
    """Record the plan's codes in ``txn``; the transaction number, or None if none.

    A new code the ledger refuses (``record_new``: used meanwhile, which only a
    shared database ledger can report; a folder ledger drew against every used
    code under its lock) is redrawn with ``draw_codes`` from ``random_bytes``,
    the source the plan drew from, avoiding ``used``, the export's codes and
    every code tried before; only the redrawn rows are recorded again. The
    plan's records, output and redraw count are updated to match. A refused
    carried-over code cannot be redrawn: it stops the run (nothing commits).
    """
    if plan.records.height == 0:
        return None

    def carried_over_lost(lost: pl.DataFrame) -> None:
        if (lost["status"] != CodeStatus.ASSIGNED.value).any():
            raise LedgerError(
                "A code carried over by a row of the export was recorded for someone else "
                "while this run was working (another run on the same ledger). Nothing was "
                "recorded and no output was written; run again."
            )

    plan.redraws += redraw_refused(
        txn,
        plan.records,
        txn.record_new(plan.records),
        taken=[plan.taken, plan.records["code"].to_numpy()],
        used=used,
        pool=plan.pool,
        random_bytes=random_bytes,
        replace=lambda old, fresh: _replace_codes(plan, old, fresh),
        check=carried_over_lost,
        nothing="recorded",
    )
    return txn.number


def redraw_refused(
    txn: LedgerTransaction,
    pending: pl.DataFrame,
    refused: np.ndarray,
    *,
    taken: list[np.ndarray],
    used: CodeIndex | None,
    pool: np.ndarray | None = None,
    random_bytes: RandomBytes,
    replace: Callable[[np.ndarray, np.ndarray], None],
    check: Callable[[pl.DataFrame], None] | None = None,
    nothing: str,
) -> int:
    """Draw again every new code of ``pending`` the ledger refused; the redraws.

    ``refused`` is what ``txn.record_new(pending)`` sent back: codes used
    meanwhile, which only a shared database ledger can report (a folder ledger
    drew against every used code under its lock). Each round draws as many with
    ``draw_codes`` from ``random_bytes`` (from ``pool``, the designated codes the
    run drew from, when it drew from one), avoiding ``used``, ``taken`` (the
    run's own codes) and every code tried before, tells the caller (``replace``:
    old codes, new ones) so that its plan names the codes recorded, and records
    only those rows again. ``check`` may stop the run on the refused rows.
    Rounds in a row in which every code was refused end it: the code space is
    used up, and nothing is ``nothing`` ("recorded", "changed").
    """
    redraws = barren = 0
    while len(refused):
        lost = pending.filter(pl.col("code").is_in(pl.Series(refused, dtype=pl.UInt64).implode()))
        if check is not None:
            check(lost)
        barren = barren + 1 if lost.height == pending.height else 0
        if barren > _MAX_BARREN_ROUNDS:
            raise LedgerError(
                f"Every code drawn in {_MAX_BARREN_ROUNDS} rounds was already used: the code "
                f"space is used up. Nothing was {nothing}."
            )
        old = lost["code"].to_numpy()
        taken.append(old)
        fresh, more = draw_codes(
            lost.height,
            used=used if used is not None else CodeIndex([]),
            taken=np.concatenate(taken),
            random_bytes=random_bytes,
            pool=pool,
        )
        taken.append(fresh)  # a later round must not draw a code given in this one
        redraws += lost.height + more
        replace(old, fresh)
        pending = lost.with_columns(pl.Series("code", fresh, dtype=pl.UInt64))
        refused = txn.record_new(pending)
    return redraws


def _replace_codes(plan: AssignPlan, old: np.ndarray, new: np.ndarray) -> None:
    """Put ``new`` codes in the place of ``old`` ones, in the plan's records and output.

    Each drawn code is on one row only (draws avoid every code on the export),
    so a code-for-code replacement touches exactly the redrawn rows.
    """
    old_s = pl.Series(old, dtype=pl.UInt64)
    new_s = pl.Series(new, dtype=pl.UInt64)
    plan.records = plan.records.with_columns(pl.col("code").replace(old_s, new_s))
    plan.output = plan.output.with_columns(
        pl.col("resident_code").replace(
            pl.Series(rcode.codes_to_strings(old), dtype=pl.String),
            pl.Series(rcode.codes_to_strings(new), dtype=pl.String),
        )
    )


def assign_register(
    export_path: Path,
    *,
    ledger: LedgerStore,
    output: Path | None,
    rejects: Path | None = None,
    departed: Path | None = None,
    encoding: str = "auto",
    mapping: dict[str, str] | None = None,
    municipality: str | None = None,
    seed: int | None = None,
    dry_run: bool = False,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    steps: Steps = QUIET,
    today: date | None = None,
    verbose: bool = False,
    sheet: str | None = None,
    headers: str = "canonical",
    delimiter: str = "auto",
    invocation: Invocation | None = None,
    pool: bool = False,
    waiting: Waiting | None = None,
    output_encoding: str = "auto",
    overwrite: bool = False,
) -> AssignResult:
    """Read, check, plan, record and publish one export (see the module doc).

    ``encoding`` is the export's (``auto``: detected). ``headers="original"``
    writes the output and rejects with the export's own header names, and the
    output's values exactly as the export had them (no ``'`` before a value
    Excel would take for a formula), so that an office can load the result
    back into its register system. ``output_encoding`` is the CSV output's:
    ``auto`` is the export's own with original headers (CP932 in, CP932 out),
    else UTF-8 with a BOM, which Excel reads; or ``utf-8-sig``, ``utf-8``,
    ``cp932``. The ledger's
    audit record names ``invocation`` (operator, command line) and the SHA-256
    of the export and of the files written. ``pool`` draws the new codes from
    the designated pool for this run (as pool mode does for every run).
    ``waiting`` is told once when the run waits for another to let go of the
    ledger (after about a second). A file that ``output``, ``rejects`` or
    ``departed`` names and that exists already is refused unless ``overwrite``.
    Partial outputs that stopped runs left in their folders are removed first (see
    ``files.remove_stale_parts``) and named in the result.
    """
    started = time.perf_counter()
    if headers not in ("canonical", "original"):
        raise UsageError(f"Unknown --headers {headers!r}; use canonical or original.")
    if output_encoding not in OUTPUT_ENCODINGS:
        raise UsageError(
            f"Unknown --output-encoding {output_encoding!r}; use {', '.join(OUTPUT_ENCODINGS)}."
        )
    municipality = municipality_for(ledger, municipality)
    if output is None and not dry_run:
        raise UsageError("Give -o/--output for the assigned register (or use --dry-run).")
    out_suffix = check_table_suffix(output, excel=True) if output is not None else None
    rej_suffix = check_table_suffix(rejects, excel=True) if rejects is not None else None
    dep_suffix = check_table_suffix(departed, excel=True) if departed is not None else None
    named = [
        (option, path)
        for option, path in (("-o", output), ("--rejects", rejects), ("--departed", departed))
        if path is not None
    ]
    for i, (first, first_path) in enumerate(named):
        for second, second_path in named[i + 1 :]:
            if Path(first_path).resolve() == Path(second_path).resolve():
                raise UsageError(
                    f"{first} and {second} both name {second_path}; one would overwrite the "
                    "other. Give each its own file."
                )
    for target in (output, rejects, departed):
        if target is not None and Path(target).resolve() == Path(export_path).resolve():
            raise UsageError(f"{target} is the export itself; write the output elsewhere.")
    refuse_existing(named, overwrite, "Nothing was written and no code was recorded.")
    result = AssignResult(
        export=str(export_path),
        output=None if dry_run else str(output),
        rejects=None,
        ledger=str(ledger.location),
        municipality=municipality,
        dry_run=dry_run,
    )
    if not dry_run:
        stale = remove_stale_parts([output, rejects, departed])
        result.stale_parts_removed = stale.removed
        result.stale_parts_not_removed = stale.not_removed
    random_bytes = random_source(seed)
    with contextlib.ExitStack() as outputs:
        out_file = outputs.enter_context(PendingFile(output)) if output and not dry_run else None
        rej_file = outputs.enter_context(PendingFile(rejects)) if rejects and not dry_run else None
        dep_file = (
            outputs.enter_context(PendingFile(departed)) if departed and not dry_run else None
        )
        with contextlib.ExitStack() as session:
            # The transaction commits when this inner stack closes without an
            # exception, and aborts (nothing recorded) when one escapes.
            txn: LedgerTransaction | None = None
            with steps.step("Waiting for the ledger lock"):
                if not dry_run:
                    txn = session.enter_context(
                        ledger.transaction(timeout=lock_timeout, waiting=waiting)
                    )

            def load_view() -> LedgerView:
                if txn is not None:
                    return txn.view()
                return session.enter_context(ledger.reading())

            # Load the ledger while the export is read and checked: both are mostly
            # native code that releases the GIL, so the two overlap on two cores
            # (a folder ledger loads here; a database ledger answers later, in
            # queries). The export's SHA-256 (for the audit record) is taken meanwhile.
            with ThreadPoolExecutor(max_workers=2) as workers:
                loading = workers.submit(load_view)
                hashing = workers.submit(file_digest, export_path) if txn is not None else None
                with steps.step("Reading export"):
                    export = read_export(
                        export_path,
                        encoding=encoding,
                        mapping=mapping,
                        sheet=sheet,
                        delimiter=delimiter,
                    )
                result.rows_read = export.rows
                result.encoding = export.encoding or ("excel" if export.sheet else "parquet")
                result.sheet = export.sheet
                result.warnings = export.warnings
                result.blank_rows_skipped = export.blank_rows_skipped
                with steps.step("Validating rows", total=export.rows) as advance:
                    frame, errors = validate_register(export, today=today)
                    advance(export.rows)
                result.warnings = [*export.warnings, *_language_warnings(frame)]
                if export.zero_stripped.height:
                    _refuse_number_ids(errors, export, verbose)
                if errors.height and rejects is None:
                    _refuse(errors, export.path, verbose, export.warnings)
                with steps.step("Loading the ledger"):
                    view = loading.result()
            result.ledger_records_before = view.record_count
            plan = plan_assignment(
                frame,
                view,
                municipality,
                random_bytes,
                errors=errors,
                input_columns=[c for c in export.frame.columns if c != ROW],
                steps=steps,
                pool=pool,
            )
            for reason, message in (
                (ZEROS_LOST_REASON, _EXPORT_LOST_ZEROS),
                (LEDGER_ZEROS_LOST_REASON, _LEDGER_LOST_ZEROS),
            ):
                _refuse_many(plan.errors, reason, message, export.path)
            if plan.errors.height and rejects is None:
                _refuse(plan.errors, export.path, verbose, export.warnings)
            if txn is not None:
                with steps.step("Recording codes in the ledger"):
                    result.transaction = record_plan(
                        txn, plan, used=view.used_codes, random_bytes=random_bytes
                    )
            _count(result, plan)
            result.ledger_records_after = result.ledger_records_before + plan.records.height
            if txn is not None:
                assert out_file is not None and out_suffix is not None
                with steps.step("Writing the assigned register"):
                    names = _output_names(export, headers)
                    out_encoding = _output_encoding(output_encoding, headers, export)
                    write_table_to(
                        _renamed(plan.output, names),
                        out_file.path,
                        out_suffix,
                        encoding=out_encoding,
                        # back into the register system: every value as the export had it
                        excel_safe=headers != "original",
                    )
                    if rej_file is not None and rej_suffix is not None:
                        write_table_to(
                            _renamed(plan.rejects, names),
                            rej_file.path,
                            rej_suffix,
                            encoding=out_encoding,
                        )
                    if dep_file is not None and dep_suffix is not None:
                        write_table_to(plan.departed, dep_file.path, dep_suffix)
                # The outputs are hashed in their temporary files: the same bytes
                # that are renamed into place after the commit.
                written = [(output, out_file)]
                if rej_file is not None:
                    written.append((rejects, rej_file))
                if dep_file is not None:
                    written.append((departed, dep_file))
                txn.describe(
                    invocation,
                    inputs=[hashing.result()] if hashing is not None else [],
                    outputs=[file_digest(f.path, name=name) for name, f in written],
                    details={DRAWN_FROM: "pool"} if plan.from_pool else None,
                )
        # Committed; only now do the outputs appear (see the module docstring).
        if rej_file is not None:
            rej_file.publish()
            result.rejects = str(rejects)
        if dep_file is not None:
            dep_file.publish()
            result.departed_file = str(departed)
        if out_file is not None:
            out_file.publish()
    result.seconds = round(time.perf_counter() - started, 3)
    return result


#: ``--output-encoding`` values: ``auto`` (see ``_output_encoding``) or an encoding.
OUTPUT_ENCODINGS = ("auto", "utf-8-sig", "utf-8", "cp932")


def _output_encoding(requested: str, headers: str, export: Export) -> str:
    """The CSV output's encoding: the one asked for, else (``auto``) the export's own
    when the output goes back into the register system (original headers), else
    UTF-8 with a BOM for Excel."""
    if requested != "auto":
        return requested
    if headers == "original" and export.encoding in ("utf-8", "utf-8-sig", "cp932"):
        return export.encoding
    return "utf-8-sig"


def _language_warnings(frame: pl.DataFrame) -> list[str]:
    """A warning naming the rows whose language rrnet does not recognise (never their
    values): their codes are assigned all the same."""
    rows = unrecognised_languages(frame)
    if rows.is_empty():
        return []
    shown = ", ".join(map(str, rows.head(10).to_list())) + (" ..." if rows.len() > 10 else "")
    return [
        f"{rows.len()} row(s) name a notice language rrnet does not recognise (row {shown}): "
        "they get their codes; rrnet notify prints their notices in their nationality's "
        "language where rrnet knows it, else in the default language (English unless "
        "--default-language says otherwise). Write the language as a tag such as th or vi, "
        "or its English or Japanese name, to have rrnet recognise it."
    ]


def _output_names(export: Export, headers: str) -> dict[str, str]:
    """Canonical column name -> the name the output gives it.

    With ``original`` headers, each recognised column gets the export's own
    header back, and a new resident_code column is called 住民票コード when the
    export's headers are Japanese; code_status and exclusion_reason keep their
    names (a register system has no column of its own for them).
    """
    if headers != "original":
        return {}
    names = {canonical: original for original, canonical in export.recognised.items()}
    if "resident_code" not in names and any(not h.isascii() for h in export.recognised):
        names["resident_code"] = "住民票コード"
    return names


def _renamed(frame: pl.DataFrame, names: dict[str, str]) -> pl.DataFrame:
    taken = set(frame.columns)
    # Never rename onto a column the frame already has (an unrecognised header).
    usable = {c: n for c, n in names.items() if c in taken and (n == c or n not in taken)}
    return frame.rename(usable) if usable else frame


def _count(result: AssignResult, plan: AssignPlan) -> None:
    result.from_pool = plan.from_pool
    result.departed = plan.departed.height
    result.rows_rejected = plan.rows_rejected
    result.redraws = plan.redraws
    result.newly_assigned = plan.counts.get(CodeStatus.ASSIGNED, 0)
    result.carried_over = plan.counts.get(CodeStatus.CARRIED_OVER, 0)
    result.already_assigned = plan.counts.get(CodeStatus.ALREADY_ASSIGNED, 0)
    if plan.counts.get(CodeStatus.EXCLUDED):
        result.excluded = {EXCLUDED_MOVE_OUT: plan.counts[CodeStatus.EXCLUDED]}


#: Why many ids stripped of zeros stop the run ({count}, {source}): the export's ...
_EXPORT_LOST_ZEROS = (
    "{count} resident_id values of {source} equal ids the ledger knows, but without their "
    "leading zeros: Excel (or another tool) may have dropped the zeros, and those residents "
    "would get second codes. Nothing was written. Export the register again with the ids as "
    "text (in Excel, format the column as Text, or save as .xlsx), then run again."
)
#: ... and the ledger's.
_LEDGER_LOST_ZEROS = (
    "{count} resident_id values of {source} are held in the ledger without their leading "
    "zeros: an earlier export lost them, and the ledger recorded the residents under the "
    "stripped ids. This file's ids are right; the ledger's are not, and these residents "
    "would get second codes. Nothing was written. Repair the ledger's ids with `rrnet "
    "ledger fix-ids --map FILE` (a CSV of the ledger's id and the correct id, one resident "
    "a line), then run again."
)


def _refuse_many(errors: pl.DataFrame, reason: str, message: str, source: Path) -> None:
    """Stop the whole run when more than a handful of rows have this zeros reason.

    One such row may be a typo; many mean a tool ate the zeros (of the export, or
    earlier of the ledger's ids), and setting them aside would only hide it.
    """
    lost = errors.filter(pl.col("reason") == reason)
    if lost.height > MAX_LOST_ZEROS:
        raise InputRowsError(
            message.format(count=lost.height, source=source),
            errors=lost.select("row", "column", "reason").to_dicts(),
            details=describe_errors(lost, source),
        )


def _refuse_number_ids(errors: pl.DataFrame, export: Export, verbose: bool) -> None:
    """Stop the whole run, even with --rejects, when a workbook's id column mixes
    numbers with ids stored as text with leading zeros.

    Those numbers are ids whose zeros Excel dropped: recorded, each would be a
    resident the correct export later gives a second code. The file is what is
    wrong, not a few rows of it.
    """
    stripped = export.zero_stripped
    columns = ", ".join(dict.fromkeys(stripped["column"].to_list()))
    ordered = stripped_first(errors, STRIPPED_REASONS)
    raise InputRowsError(
        f"{stripped.height} cell(s) of {columns} in {export.path} are numbers, while the "
        "column's other ids are text with leading zeros: Excel dropped those zeros, and "
        "the residents would be recorded under the wrong ids. Nothing was written and no "
        "code was recorded (--rejects does not set these aside). Format the column as Text "
        "in Excel and enter those ids again with their zeros, or export the register "
        "again, then run again.",
        errors=ordered.select(
            "row", "column", "reason", *(["value"] if verbose else [])
        ).to_dicts(),
        details=describe_errors(ordered, export.path, verbose=verbose),
    )


def _refuse(
    errors: pl.DataFrame, source: Path, verbose: bool, warnings: list[str] | None = None
) -> None:
    rows = errors["row"].n_unique()
    errors = stripped_first(errors, STRIPPED_REASONS)
    raise InputRowsError(
        f"{rows} row(s) of {source} break the rules, so nothing was written and no code "
        "was recorded. Fix them, or pass --rejects FILE to set them aside and go on.",
        errors=errors.select("row", "column", "reason", *(["value"] if verbose else [])).to_dicts(),
        # Numbers in an Excel id or code column are often why rows break: say so too.
        details=describe_errors(errors, source, verbose=verbose)
        + [f"warning: {w}" for w in warnings or []],
    )
