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

Order of effects, so that a crash never leaves an output the ledger disowns:
the output is written to a private temporary file, the ledger commits, then
the output is renamed into place.
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
from rrnet_cli.errors import InputRowsError, UsageError
from rrnet_cli.files import PendingFile, check_table_suffix, write_table_to
from rrnet_cli.ingest import (
    MOVE_OUT,
    N_RESIDENT_CODE,
    N_RESIDENT_ID,
    ROW,
    describe_errors,
    read_export,
    validate_register,
)
from rrnet_cli.ledger import (
    ACTIVE,
    CodeIndex,
    Ledger,
    LedgerState,
    Status,
    Transaction,
    sorted_member,
)
from rrnet_cli.progress import QUIET, Steps

EXCLUDED_MOVE_OUT = "planned_move_out"

# Rejection sampling bound: the largest multiple of 10**10 below 2**64. Values at
# or above it are thrown away, so ``value % 10**10`` has no modulo bias.
_UNBIASED_LIMIT = np.uint64((2**64 // rcode.BODY_SPACE) * rcode.BODY_SPACE)

RandomBytes = Callable[[int], bytes]


def random_source(seed: int | None) -> RandomBytes:
    """The operating system's CSPRNG, or a seeded generator for reproducible tests."""
    if seed is None:
        return os.urandom
    generator = np.random.Generator(np.random.PCG64(seed))
    return generator.bytes


def random_bodies(n: int, random_bytes: RandomBytes) -> np.ndarray:
    """``n`` uniform random code bodies in [0, 10**10) without modulo bias."""
    parts: list[np.ndarray] = []
    need = n
    while need > 0:
        # 2**64 mod 10**10 is tiny, so almost nothing is rejected; ask a little extra.
        count = need + need // 1000 + 8
        raw = np.frombuffer(random_bytes(8 * count), dtype=np.uint64)
        good = raw[raw < _UNBIASED_LIMIT][:need] % np.uint64(rcode.BODY_SPACE)
        parts.append(good)
        need -= len(good)
    return np.concatenate(parts) if parts else np.empty(0, np.uint64)


def draw_codes(
    n: int, *, used: CodeIndex, taken: np.ndarray, random_bytes: RandomBytes
) -> tuple[np.ndarray, int]:
    """Draw ``n`` new codes, distinct from each other, ``used`` and ``taken``.

    Vectorised rounds over sorted candidates: draw all that are still missing,
    drop repeats within the round, codes in the ledger, codes already on this
    export (``taken``) and codes accepted in earlier rounds; repeat for the
    shortfall. The accepted codes are then shuffled with the same random source,
    so that a code's size says nothing about a resident's row. Returns the codes
    and how many candidates had to be redrawn.
    """
    taken = np.sort(np.asarray(taken, dtype=np.uint64))
    accepted = np.empty(0, dtype=np.uint64)
    redraws = 0
    while len(accepted) < n:
        need = n - len(accepted)
        candidates = np.sort(rcode.codes_from_bodies(random_bodies(need, random_bytes)))
        fresh = np.ones(need, dtype=bool)
        np.not_equal(candidates[1:], candidates[:-1], out=fresh[1:])
        fresh &= ~used.contains_sorted(candidates)
        fresh &= ~sorted_member(taken, candidates)
        fresh &= ~sorted_member(accepted, candidates)
        redraws += int(need - fresh.sum())
        accepted = np.concatenate([accepted, candidates[fresh]])
        if len(accepted) < n:  # later rounds search ``accepted``: keep it sorted
            accepted.sort()
    # The order is not a secret the way codes are, but it must not be guessable
    # from the rows: shuffle with a generator seeded from the same source.
    shuffler = np.random.Generator(np.random.PCG64(int.from_bytes(random_bytes(32), "little")))
    return shuffler.permutation(accepted), redraws


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def classify(
    frame: pl.DataFrame, state: LedgerState, municipality: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Decide each valid row's code_status against the ledger.

    Returns (frame with ``code_status``, ``exclusion_reason``, ``__code__`` as
    uint64 for rows that already have a code) and the rows the ledger refuses
    (``row, column, reason, value``).
    """
    known = (
        state.active_by_resident()
        .filter(pl.col("municipality") == municipality)
        .select(pl.col("resident_id").alias(N_RESIDENT_ID), pl.col("code").alias("__known__"))
    )
    frame = frame.join(known, on=N_RESIDENT_ID, how="left", maintain_order="left")
    frame = frame.with_columns(pl.col(N_RESIDENT_CODE).cast(pl.UInt64).alias("__in__"))
    incoming = frame.filter(pl.col("__in__").is_not_null())["__in__"].to_numpy()
    owners = state.lookup(incoming).select(
        pl.col("code").alias("__in__"),
        pl.col("status").alias("__l_status__"),
        pl.col("municipality").alias("__l_muni__"),
        pl.col("resident_id").alias("__l_rid__"),
    )
    frame = frame.join(owners, on="__in__", how="left", maintain_order="left")
    has_in = pl.col("__in__").is_not_null()
    is_known = pl.col("__known__").is_not_null()
    refusals = [
        (
            is_known & has_in & (pl.col("__in__") != pl.col("__known__")),
            "the ledger holds a different code for this resident; a new code needs a change "
            "request, not a new export",
        ),
        (
            has_in & (pl.col("__l_status__") == Status.RETIRED.value),
            "this code has been retired and can never be used again",
        ),
        (
            has_in
            & ~is_known
            & pl.col("__l_status__").is_in(ACTIVE)
            & (
                (pl.col("__l_muni__") != municipality)
                | (pl.col("__l_rid__") != pl.col(N_RESIDENT_ID))
            ),
            "the ledger holds this code for another resident",
        ),
    ]
    refused = pl.concat(
        [
            frame.filter(mask.fill_null(False)).select(
                pl.col(ROW).alias("row"),
                pl.lit("resident_code").alias("column"),
                pl.lit(reason).alias("reason"),
                pl.col(N_RESIDENT_CODE).alias("value"),
            )
            for mask, reason in refusals
        ]
    ).unique(subset="row", keep="first", maintain_order=True)
    status = (
        pl.when(is_known)
        .then(pl.lit("already_assigned"))
        .when(has_in)
        .then(pl.lit("carried_over"))
        .when(pl.col(MOVE_OUT))
        .then(pl.lit("excluded"))
        .otherwise(pl.lit("assigned"))
    )
    frame = (
        frame.with_columns(
            status.alias("code_status"),
            pl.coalesce("__known__", "__in__").alias("__code__"),
        )
        .with_columns(
            pl.when(pl.col("code_status") == "excluded")
            .then(pl.lit(EXCLUDED_MOVE_OUT))
            .otherwise(None)
            .cast(pl.String)
            .alias("exclusion_reason")
        )
        .drop("__known__", "__in__", "__l_status__", "__l_muni__", "__l_rid__")
    )
    return frame, refused


def build_output(frame: pl.DataFrame, input_columns: list[str]) -> pl.DataFrame:
    """The assigned register: every input column, code as 11-char text, status."""
    code_text = pl.Series(
        "resident_code",
        rcode.codes_to_strings(frame["__code__"].fill_null(0).to_numpy()),
        dtype=pl.String,
    )
    frame = frame.with_columns(
        pl.when(pl.col("__code__").is_null()).then(None).otherwise(code_text).alias("resident_code")
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


@contextlib.contextmanager
def _ledger_session(
    ledger: Ledger, dry_run: bool, timeout: float
) -> Iterator[tuple[Callable[[], LedgerState], Transaction | None]]:
    """Yield a loader of the ledger's state, and the transaction (None on a dry run)."""
    if dry_run:
        yield ledger.snapshot, None
        return
    with ledger.transaction(timeout=timeout) as txn:
        yield (lambda: txn.state), txn


def assign_register(
    export_path: Path,
    *,
    ledger: Ledger,
    output: Path | None,
    rejects: Path | None = None,
    encoding: str = "auto",
    mapping: dict[str, str] | None = None,
    municipality: str | None = None,
    seed: int | None = None,
    dry_run: bool = False,
    lock_timeout: float = 600.0,
    steps: Steps = QUIET,
    today: date | None = None,
    verbose: bool = False,
) -> AssignResult:
    """Run the whole assign pipeline as one ledger transaction (see module doc)."""
    started = time.perf_counter()
    municipality = municipality or ledger.municipality
    if not municipality:
        raise UsageError("Give --municipality: the ledger does not name its municipality.")
    if output is None and not dry_run:
        raise UsageError("Give -o/--output for the assigned register (or use --dry-run).")
    out_suffix = check_table_suffix(output) if output is not None else None
    rej_suffix = check_table_suffix(rejects) if rejects is not None else None
    for target in (output, rejects):
        if target is not None and Path(target).resolve() == Path(export_path).resolve():
            raise UsageError(f"{target} is the export itself; write the output elsewhere.")
    result = AssignResult(
        export=str(export_path),
        output=None if dry_run else str(output),
        rejects=None,
        ledger=str(ledger.path),
        municipality=municipality,
        dry_run=dry_run,
    )
    with contextlib.ExitStack() as files:
        out_file = files.enter_context(PendingFile(output)) if output and not dry_run else None
        rej_file = files.enter_context(PendingFile(rejects)) if rejects and not dry_run else None
        with steps.step("Waiting for the ledger lock"):
            session = _ledger_session(ledger, dry_run, lock_timeout)
            load_state, txn = session.__enter__()
        try:
            # Load the ledger while the export is read and checked: both are mostly
            # native code that releases the GIL, so the two overlap on two cores.
            with ThreadPoolExecutor(max_workers=1) as pool:
                loading = pool.submit(load_state)
                with steps.step("Reading export"):
                    export = read_export(export_path, encoding=encoding, mapping=mapping)
                input_columns = [c for c in export.frame.columns if c != ROW]
                result.rows_read = export.rows
                result.encoding = export.encoding or "parquet"
                with steps.step("Validating rows", total=export.rows) as advance:
                    frame, errors = validate_register(export, today=today)
                    advance(export.rows)
                if errors.height and rejects is None:
                    _refuse(errors, export.path, verbose)
                with steps.step("Loading the ledger"):
                    state = loading.result()
            with steps.step("Checking against the ledger"):
                result.ledger_records_before = len(state.codes)
                good = (
                    frame.filter(~pl.col(ROW).is_in(errors["row"].unique().implode()))
                    if errors.height
                    else frame
                )
                good, refused = classify(good, state, municipality)
            if refused.height:
                if rejects is None:
                    _refuse(refused, export.path, verbose)
                errors = pl.concat([errors, refused]).sort("row", maintain_order=True)
                good = good.filter(~pl.col(ROW).is_in(refused["row"].implode()))
            good = _draw_for(good, state, seed, result, steps)
            new_records = good.filter(pl.col("code_status").is_in(["assigned", "carried_over"]))
            result.rows_rejected = int(errors["row"].n_unique()) if errors.height else 0
            result.ledger_records_after = result.ledger_records_before + new_records.height
            if not dry_run:
                assert out_file is not None and out_suffix is not None and txn is not None
                with steps.step("Writing the assigned register"):
                    write_table_to(build_output(good, input_columns), out_file.path, out_suffix)
                    if rej_file is not None and rej_suffix is not None:
                        write_table_to(
                            build_rejects(frame, errors, input_columns), rej_file.path, rej_suffix
                        )
                with steps.step("Recording codes in the ledger"):
                    txn.add_records(
                        new_records.select(
                            pl.col("__code__").alias("code"),
                            pl.col("code_status").alias("status"),
                            pl.lit(municipality).alias("municipality"),
                            pl.col(N_RESIDENT_ID).alias("resident_id"),
                        )
                    )
                    result.transaction = txn.number if new_records.height else None
        except BaseException as exc:
            session.__exit__(type(exc), exc, exc.__traceback__)
            raise
        # Commit first; only then do the outputs appear (see module docstring).
        session.__exit__(None, None, None)
        if rej_file is not None:
            rej_file.publish()
            result.rejects = str(rejects)
        if out_file is not None:
            out_file.publish()
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _draw_for(
    good: pl.DataFrame, state: LedgerState, seed: int | None, result: AssignResult, steps: Steps
) -> pl.DataFrame:
    """Fill ``__code__`` with new codes on the rows whose status is ``assigned``."""
    need = (good["code_status"] == "assigned").to_numpy()
    n_new = int(need.sum())
    with steps.step("Drawing new codes", total=n_new) as advance:
        taken = good.filter(pl.col("__code__").is_not_null())["__code__"].to_numpy()
        drawn, result.redraws = draw_codes(
            n_new, used=state.codes, taken=taken, random_bytes=random_source(seed)
        )
        advance(n_new)
    has_code = (good["__code__"].is_not_null().to_numpy()) | need
    codes = good["__code__"].fill_null(0).to_numpy().astype(np.uint64)
    codes[need] = drawn
    good = good.with_columns(
        pl.Series("__code__", codes, dtype=pl.UInt64).set(pl.Series(~has_code), None)
    )
    counts = dict(good.group_by("code_status").len().iter_rows())
    result.newly_assigned = int(counts.get("assigned", 0))
    result.carried_over = int(counts.get("carried_over", 0))
    result.already_assigned = int(counts.get("already_assigned", 0))
    if counts.get("excluded"):
        result.excluded = {EXCLUDED_MOVE_OUT: int(counts["excluded"])}
    return good


def _refuse(errors: pl.DataFrame, source: Path, verbose: bool) -> None:
    rows = errors["row"].n_unique()
    raise InputRowsError(
        f"{rows} row(s) of {source} break the rules, so nothing was written and no code "
        "was recorded. Fix them, or pass --rejects FILE to set them aside and go on.",
        errors=errors.select("row", "column", "reason", *(["value"] if verbose else [])).to_dicts(),
        details=describe_errors(errors, source, verbose=verbose),
    )
