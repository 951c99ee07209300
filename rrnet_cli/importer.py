"""Importing codes in use elsewhere into the ledger: ``rrnet ledger import``.

A national extract can hold 100 million codes, so the file is streamed in
batches and every step is vectorised: normalise, check format and check digit,
drop codes the ledger already has and repeats within the file, then write
one sorted segment. Memory grows with the number of distinct new codes (about
24 bytes each at the peak of the final merge: 100M codes, ~2.5 GB), not with
the file's size. The whole import is one transaction: a crash or one invalid code leaves
the ledger as it was. Into a PostgreSQL ledger the validated batches are streamed
with COPY instead, and the database keeps out the codes it already holds
(``PostgresLedger.import_codes``).

Accepted sources: a text file with one code per line; a CSV with a header
(the code column is ``--column``, or the one recognised as ``resident_code``,
or the only column); a Parquet file (same rule for the column).

``code_batches`` and ``numbered_codes`` are the one way rrnet reads a file of
codes: ``rrnet ledger designate`` (``rrnet_cli.pool``) reads a pool with them too.
"""

from __future__ import annotations

import contextlib
import csv
import time
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rrnet_cli import code as rcode
from rrnet_cli import schema
from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, UsageError
from rrnet_cli.ingest import check_input_file, detect_encoding
from rrnet_cli.ledger import Invocation, Ledger, LedgerStore, Status, file_digest
from rrnet_cli.progress import QUIET, Steps


@dataclass
class ImportResult:
    """What one import did."""

    source: str
    ledger: str
    status: str
    codes_read: int = 0
    imported: int = 0
    already_in_ledger: int = 0
    repeated_in_file: int = 0
    segments: int = 0
    transaction: int | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [
            ("codes read", self.codes_read),
            ("added to the ledger", self.imported),
            ("already in the ledger", self.already_in_ledger),
            ("repeated in the file", self.repeated_in_file),
            ("status", self.status),
            ("time", f"{self.seconds:.1f} s"),
        ]


def _pick_column(names: list[str], column: str | None, source: Path) -> str:
    if column is not None:
        if column not in names:
            raise UsageError(f"{source} has no column {column!r} (it has: {', '.join(names)}).")
        return column
    recognised = schema.resolve_headers(names, None, source=str(source))
    for original, canonical in recognised.items():
        if canonical == "resident_code":
            return original
    if len(names) == 1:
        return names[0]
    raise UsageError(f"{source} has several columns; say which holds the codes with --column.")


def code_batches(
    source: Path, column: str | None, batch_rows: int, encoding: str = "auto"
) -> Generator[tuple[int, pa.Array], None, None]:
    """Yield (number of the batch's first record, string array) from the source.

    Close it (``contextlib.closing``) when you stop early: that stops Arrow's reader.
    """
    if source.suffix.lower() == ".parquet":
        try:
            parquet = pq.ParquetFile(source)
        except (OSError, pa.ArrowException) as exc:
            raise UsageError(f"{source} cannot be read as Parquet: {exc}") from None
        name = _pick_column(parquet.schema_arrow.names, column, source)
        kind = parquet.schema_arrow.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise UsageError(
                f"{source}: column {name!r} has type {kind}; codes must be stored as text "
                "or their leading zeros are lost."
            )
        first = 1
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=[name]):
            yield first, batch.column(0).cast(pa.string())
            first += batch.num_rows
        return
    with open(source, "rb") as handle:
        head = handle.read(1 << 20)
    if b"\x00" in head:
        raise UsageError(f"{source} does not look like a text file: it contains binary data.")
    used = detect_encoding(head, encoding, source, head=True)
    first_line = (
        head.removeprefix(b"\xef\xbb\xbf")
        .split(b"\n", 1)[0]
        .rstrip(b"\r")
        .decode("cp932" if used == "cp932" else "utf-8", "replace")
    )
    has_header = column is not None or not rcode.compact(first_line).isdigit()
    names = next(csv.reader([first_line])) if has_header else ["code"]
    read_options = pacsv.ReadOptions(
        block_size=max(batch_rows * 16, 4096),
        encoding="cp932" if used == "cp932" else "utf8",
        column_names=names,
        skip_rows=1 if has_header else 0,
    )
    try:
        reader = pacsv.open_csv(
            source,
            read_options=read_options,
            convert_options=pacsv.ConvertOptions(
                strings_can_be_null=True,
                null_values=[""],
                column_types=dict.fromkeys(names, pa.string()),
            ),
        )
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"{source} cannot be read as a list of codes: {exc}") from None
    names = reader.schema.names
    name = _pick_column(names, column, source) if has_header else names[0]
    index = names.index(name)
    first = 2 if has_header else 1
    try:
        for batch in reader:
            array = batch.column(index)
            if not pa.types.is_string(array.type):
                # A column of plain digits is typed as integers: leading zeros are gone.
                raise UsageError(
                    f"{source}: the code column was read as numbers; write each code as "
                    "11 digits with its leading zeros (they are text, not numbers)."
                )
            yield first, array
            first += batch.num_rows
    except pa.ArrowInvalid as exc:
        raise UsageError(f"{source} cannot be read: {str(exc).split(':', 1)[0]}") from None
    finally:
        # Stop Arrow's read-ahead thread now: left to the garbage collector at exit,
        # a reader still reading ends the process with "terminate called" (abort).
        reader.close()


def numbered_codes(
    array: pa.Array, first: int, source: Path, *, done: str = "imported"
) -> tuple[np.ndarray, np.ndarray]:
    """Validated uint64 codes of one batch and their record numbers (empty values skipped).

    Raises naming the first bad records: "... nothing was ``done`` (record 7: ...)".
    """
    array = rcode.compact_array(array)
    reasons = rcode.validate_array(array) if len(array) else []
    if any(r is not None for r in reasons):
        bad = [i for i, r in enumerate(reasons) if r is not None]
        detail = "; ".join(
            f"record {first + i}: {_why(reasons[i], array[i].as_py())}" for i in bad[:5]
        )
        raise UsageError(
            f"{source}: {len(bad)} invalid code(s) in one batch, nothing was {done} ({detail})."
        )
    present = array.is_valid().to_numpy(zero_copy_only=False)
    records = np.flatnonzero(present) + first
    return rcode.strings_to_codes(pc.drop_null(array)), records


def _why(reason: str | None, value: object) -> str:
    """A bad code's reason for a message; a short all-digit code is likely one whose
    leading zeros a spreadsheet dropped (Excel turns 01234567890 into 1234567890)."""
    text = str(reason or "").rstrip(".")
    if isinstance(value, str) and value.isdigit() and len(value) < 11:
        text += (
            f" ({len(value)} digits: did a spreadsheet drop its leading zeros? Keep the "
            "column as text, or export it again as CSV)"
        )
    return text


def import_codes(
    ledger: LedgerStore,
    source: Path,
    *,
    column: str | None = None,
    status: Status = Status.IMPORTED,
    encoding: str = "auto",
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    steps: Steps = QUIET,
    batch_rows: int = 4_000_000,
    invocation: Invocation | None = None,
) -> ImportResult:
    """Stream ``source`` into the ledger as one transaction (see module doc).

    The audit record names ``invocation`` and the source file's SHA-256.
    """
    if status not in (Status.IMPORTED, Status.RETIRED):
        raise UsageError("Imported codes are either 'imported' (in use elsewhere) or 'retired'.")
    source = check_input_file(source, "the file of codes")
    started = time.perf_counter()
    result = ImportResult(source=str(source), ledger=ledger.location, status=status.value)
    if not isinstance(ledger, Ledger):  # the database does its own merging: see below
        _import_into_database(
            ledger, source, result, column, encoding, batch_rows, lock_timeout, steps, invocation
        )
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        ledger.transaction(timeout=lock_timeout) as txn,
    ):
        # The source's SHA-256 for the audit record, taken while the import reads it.
        hashing = pool.submit(file_digest, source)
        with steps.step("Loading the ledger"):
            used = txn.state.codes
        runs: list[np.ndarray] = []  # one sorted run per batch, codes new to the ledger
        # closing(): a bad code stops the loop; the reader is closed at once, not at exit.
        with (
            steps.step("Importing codes") as advance,
            contextlib.closing(code_batches(source, column, batch_rows, encoding)) as batches,
        ):
            for first, array in batches:
                codes = np.sort(numbered_codes(array, first, source)[0])
                result.codes_read += len(codes)
                in_ledger = used.contains_sorted(codes)
                result.already_in_ledger += int(in_ledger.sum())
                runs.append(codes[~in_ledger])
                advance(len(array))
        with steps.step("Merging and writing one sorted segment"):
            merged = merge_runs(runs)
            result.repeated_in_file = result.codes_read - result.already_in_ledger - len(merged)
            if len(merged) and txn.add_codes(merged, status) is not None:
                result.segments = 1
                result.imported = len(merged)
        result.transaction = txn.number if result.segments else None
        txn.describe(invocation, inputs=[hashing.result()])
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def _import_into_database(
    ledger: LedgerStore,
    source: Path,
    result: ImportResult,
    column: str | None,
    encoding: str,
    batch_rows: int,
    lock_timeout: float,
    steps: Steps,
    invocation: Invocation | None,
) -> None:
    """``import_codes`` into a PostgreSQL ledger: this module reads and validates the
    file, the database keeps out codes it already holds and repeats (its primary key)."""
    from rrnet_cli.ledger.postgres import PostgresLedger

    if not isinstance(ledger, PostgresLedger):
        raise TypeError(f"no import for a {type(ledger).__name__}")
    status = Status(result.status)
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        steps.step("Importing codes") as advance,
        contextlib.closing(code_batches(source, column, batch_rows, encoding)) as batches,
    ):
        hashing = pool.submit(file_digest, source)

        def validated() -> Iterator[np.ndarray]:
            for first, array in batches:
                yield numbered_codes(array, first, source)[0]
                advance(len(array))

        counts = ledger.import_codes(
            validated(),
            status=status,
            inputs=lambda: [hashing.result()],
            invocation=invocation,
            timeout=lock_timeout,
        )
    result.codes_read = counts.codes_read
    result.imported = counts.imported
    result.already_in_ledger = counts.already_in_ledger
    result.repeated_in_file = counts.repeated_in_file
    result.transaction = counts.transaction


def merge_runs(runs: list[np.ndarray]) -> np.ndarray:
    """Merge sorted runs into one sorted array without repeats.

    One segment per import keeps later membership tests to one binary search
    per candidate. NumPy's stable sort is a timsort for integers: on
    concatenated sorted runs it merges them rather than sorting from scratch.
    """
    if not runs:
        return np.empty(0, np.uint64)
    merged = np.concatenate(runs)
    runs.clear()  # let the runs go before the sort needs its buffer
    merged.sort(kind="stable")
    if len(merged) > 1:
        keep = np.empty(len(merged), dtype=bool)
        keep[0] = True
        np.not_equal(merged[1:], merged[:-1], out=keep[1:])
        if not keep.all():
            merged = merged[keep]
    return merged
