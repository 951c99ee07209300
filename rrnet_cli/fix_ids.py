"""``rrnet ledger fix-ids``: give the ledger's resident ids back their leading zeros.

An export that went through Excel turns 000005974 into 5974; assigned from it,
the ledger records the resident as 5974, and the correct export later finds
nobody under 000005974 (assign refuses it and says so). The map file names,
one resident a line, the id as the ledger holds it and the correct one:

    ledger_id,correct_id          (or 台帳の宛名番号,正しい宛名番号)
    5974,000005974

A CSV (UTF-8, UTF-8 with BOM or CP932; tab-separated as .tsv) or a workbook,
every cell read as text. Refused, naming the map's rows (the header is row 1),
and nothing is changed: an empty cell; an id twice in the map (either column,
or as the ledger's id of one line and the correct id of another); a pair that
differs in anything but leading zeros (this command restores zeros, nothing
else); a ledger id with no active code here, or with more than one; a correct
id the ledger has recorded a code for already.

Every resident's active code is re-keyed in ONE transaction under the writers'
lock (``LedgerTransaction.record_ids_fixed``): in a folder ledger a segment of
new records that supersede the old ones (segments are never rewritten); in a
PostgreSQL ledger an UPDATE of the office's own codes, each copied to
``code_history``. The audit record names the operator, the map's SHA-256 and
the count (``fixed_ids``); ``rrnet verify --ledger`` takes such records for
what they are. Notices already issued keep the id they were issued under.
"""

from __future__ import annotations

import csv
import io
import time
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, InputRowsError, UsageError
from rrnet_cli.ingest import (
    EXCEL_SUFFIXES,
    TAB_SUFFIXES,
    check_input_file,
    clean_resident_ids,
    describe_errors,
    detect_encoding,
)
from rrnet_cli.ledger import (
    Invocation,
    LedgerStore,
    Waiting,
    file_digest,
    municipality_for,
)
from rrnet_cli.ledger.audit import FIXED_IDS

#: The map's two columns, by the header names accepted for each (compared after
#: NFKC, trimmed, case-folded).
LEDGER_ID = "ledger_id"
CORRECT_ID = "correct_id"
_HEADERS = {
    LEDGER_ID: ("ledger_id", "wrong_id", "台帳の宛名番号", "誤った宛名番号"),
    CORRECT_ID: ("correct_id", "正しい宛名番号"),
}


@dataclass
class FixIdsResult:
    """What one ``rrnet ledger fix-ids`` run did."""

    map: str
    ledger: str
    municipality: str = ""
    residents_fixed: int = 0
    transaction: int | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [
            ("municipality", self.municipality),
            ("residents whose id was fixed", self.residents_fixed),
            ("recorded as transaction", self.transaction),
            ("time", f"{self.seconds:.1f} s"),
        ]


def read_map(path: Path) -> pl.DataFrame:
    """The map file as ``row, ledger_id, correct_id`` (ids as rrnet keys them)."""
    path = check_input_file(path, "the map file of resident ids")
    suffix = path.suffix.lower()
    rows: list[list[str | None]]
    if suffix in EXCEL_SUFFIXES:
        import fastexcel

        try:
            sheet = fastexcel.read_excel(path.read_bytes()).load_sheet(
                0, header_row=None, dtypes="string"
            )
        except fastexcel.FastExcelError:
            raise UsageError(f"{path} cannot be read as an Excel workbook.") from None
        frame = pl.from_arrow(sheet.to_arrow())
        assert isinstance(frame, pl.DataFrame)
        rows = [[None if v is None else str(v) for v in r] for r in frame.iter_rows()]
    else:
        data = path.read_bytes()
        text = data.decode(detect_encoding(data, "auto", path)).removeprefix("\ufeff")
        delimiter = "\t" if suffix in TAB_SUFFIXES else ","
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        rows = [list[str | None](r) for r in reader]
    if not rows:
        raise UsageError(f"{path} is empty: the map needs a header row ({LEDGER_ID},{CORRECT_ID}).")
    keys = [unicodedata.normalize("NFKC", h or "").strip().casefold() for h in rows[0]]
    where = {}
    for column, names in _HEADERS.items():
        found = [i for i, k in enumerate(keys) if k in names]
        if len(found) != 1:
            raise UsageError(
                f"{path} needs one column {column} (or {' / '.join(names[1:])}) in its header "
                f"row: the ledger's id, then the correct id ({LEDGER_ID},{CORRECT_ID})."
            )
        where[column] = found[0]
    body = [
        (number, *(r[where[c]] if where[c] < len(r) else None for c in (LEDGER_ID, CORRECT_ID)))
        for number, r in enumerate(rows[1:], start=2)
        if any((v or "").strip() for v in r)
    ]
    frame = pl.DataFrame(
        body, schema={"row": pl.Int64, LEDGER_ID: pl.String, CORRECT_ID: pl.String}, orient="row"
    )
    return frame.with_columns(
        clean_resident_ids(frame[LEDGER_ID]), clean_resident_ids(frame[CORRECT_ID])
    )


def _map_errors(frame: pl.DataFrame) -> pl.DataFrame:
    """What is wrong with the map on its own: ``row, column, reason, value``."""
    problems = []
    every = pl.concat([frame[LEDGER_ID], frame[CORRECT_ID]]).drop_nulls()
    twice = set(every.filter(every.is_duplicated()).to_list())
    for row, old, new in frame.iter_rows():
        if old is None or new is None:
            column = LEDGER_ID if old is None else CORRECT_ID
            problems.append((row, column, "empty: each line needs both ids", None))
        elif old in twice or new in twice:
            column = LEDGER_ID if old in twice else CORRECT_ID
            value = old if old in twice else new
            problems.append((row, column, "this id is in the map more than once", value))
        elif (old.lstrip("0") or "0") != (new.lstrip("0") or "0"):
            problems.append(
                (
                    row,
                    CORRECT_ID,
                    "differs from the ledger's id in more than leading zeros: fix-ids only "
                    "gives ids back the zeros they lost",
                    new,
                )
            )
    return pl.DataFrame(
        problems,
        schema={"row": pl.Int64, "column": pl.String, "reason": pl.String, "value": pl.String},
        orient="row",
    )


def fix_resident_ids(
    ledger: LedgerStore,
    map_path: Path,
    *,
    municipality: str | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    invocation: Invocation | None = None,
    waiting: Waiting | None = None,
    verbose: bool = False,
) -> FixIdsResult:
    """Re-key the residents of the map (see the module docstring); all or nothing."""
    started = time.perf_counter()
    frame = read_map(map_path)
    result = FixIdsResult(map=str(map_path), ledger=ledger.location)
    municipality = municipality_for(ledger, municipality)
    result.municipality = municipality
    errors = _map_errors(frame)
    if frame.height == 0:
        raise UsageError(f"{map_path} maps no resident id: nothing to fix.")
    if errors.height == 0:
        with ledger.transaction(timeout=lock_timeout, waiting=waiting) as txn:
            view = txn.view()
            active = view.active_codes(municipality, frame[LEDGER_ID])
            per_id = active.group_by("resident_id").agg(
                pl.len().alias("n"), pl.col("code").first(), pl.col("status").first()
            )
            known = set(view.known_residents(municipality, frame[CORRECT_ID]).to_list())
            joined = frame.join(per_id.rename({"resident_id": LEDGER_ID}), on=LEDGER_ID, how="left")
            problems = []
            for row, old, new, n, _, _ in joined.iter_rows():
                if n is None:
                    problems.append(
                        (
                            row,
                            LEDGER_ID,
                            f"the ledger holds no active code for this id in municipality "
                            f"{municipality}",
                            old,
                        )
                    )
                elif n > 1:
                    problems.append(
                        (
                            row,
                            LEDGER_ID,
                            "the ledger holds more than one active code for this id; run "
                            "`rrnet verify --ledger` first",
                            old,
                        )
                    )
                elif new in known:
                    problems.append(
                        (
                            row,
                            CORRECT_ID,
                            "the ledger already holds a code for the correct id: two "
                            "residents would be one",
                            new,
                        )
                    )
            errors = pl.DataFrame(problems, schema=errors.schema, orient="row")
            if errors.height == 0:
                records = joined.select(
                    pl.col("code"),
                    pl.col("status"),
                    pl.lit(municipality).alias("municipality"),
                    pl.col(CORRECT_ID).alias("resident_id"),
                )
                txn.describe(
                    invocation,
                    inputs=[file_digest(map_path)],
                    details={FIXED_IDS: records.height},
                )
                txn.record_ids_fixed(records)
                result.residents_fixed = records.height
                result.transaction = txn.number
    if errors.height:
        raise InputRowsError(
            f"{errors['row'].n_unique()} line(s) of {map_path} cannot be applied, so no id "
            "was fixed. Fix the map and run again.",
            errors=errors.select(
                "row", "column", "reason", *(["value"] if verbose else [])
            ).to_dicts(),
            details=describe_errors(errors.sort("row"), map_path, verbose=verbose),
        )
    result.seconds = round(time.perf_counter() - started, 3)
    return result


__all__ = ["CORRECT_ID", "LEDGER_ID", "FixIdsResult", "fix_resident_ids", "read_map"]
