"""Checking a folder ledger end to end: ``rrnet verify --ledger``.

``check_integrity`` streams every segment and checks it against the manifest
(size, checksum, row count, order, check digits) and the ledger's invariants: a
code drawn here was never used before, retired codes stay retired, one active
code per resident. The audit trail's chain is checked too (``check_chain``).
A designated pool is checked like any segment and against the rest: no code
designated twice, none used before its designation, and every code a
transaction drew from the pool (its audit record says ``"drawn_from": "pool"``)
designated before that transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rrnet_cli import code as rcode
from rrnet_cli.ledger.audit import DRAWN_FROM, FIXED_IDS, TRANSACTIONS, check_chain
from rrnet_cli.ledger.folder import MANIFEST, SEGMENTS, Ledger, is_pool_segment, segment_txn
from rrnet_cli.ledger.interface import (
    ACTIVE,
    RECORD_SCHEMA,
    Status,
    file_sha256,
    sorted_member,
    without_leading_zeros,
)
from rrnet_cli.ledger.notices import NOTICE_SCHEMA, is_notice_segment, notice_problems


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
        elif path.stat().st_size != info["bytes"] or file_sha256(path) != info["sha256"]:
            report.add(label, "segment's size or checksum differs from the manifest (damaged)")
        else:
            readable.append((info, path, label))
    for path in ledger.segments_path.glob("*"):
        if path.name in live:
            continue
        if segment_txn(path.name) <= manifest["txn"]:
            report.add(
                f"{SEGMENTS}/{path.name}",
                "a committed transaction's segment is missing from the manifest",
            )
        else:
            report.notes.append(
                f"{SEGMENTS}/{path.name} is left over from an interrupted run; "
                "the next write removes it"
            )
    notice_segments = [r for r in readable if is_notice_segment(r[0])]
    readable = [r for r in readable if r not in notice_segments]
    pool_segments = [r for r in readable if is_pool_segment(r[0])]
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
        _check_records(records, report, fixed_ids_txns(manifest.get(TRANSACTIONS) or []))
    _check_notices(notice_segments, records, report)
    if pool.height:
        _check_pool(pool, records, manifest, report)
    return report


def _check_notices(
    segments: list[tuple[dict[str, Any], Path, str]],
    records: pl.DataFrame,
    report: IntegrityReport,
) -> None:
    """Notice segments: readable, sorted valid codes, each of a code its resident holds."""
    tables = []
    for info, path, label in segments:
        try:
            table = pq.read_table(path, schema=NOTICE_SCHEMA)
        except (OSError, pa.ArrowException):
            report.add(label, "segment cannot be read as Parquet (damaged)")
            continue
        counted = report.records  # notices are not code records: not counted as such
        _check_codes([table.column("code").to_numpy()], info, label, report)
        report.records = counted
        tables.append(table)
    if not tables:
        return
    notices = pl.from_arrow(pa.concat_tables(tables))
    assert isinstance(notices, pl.DataFrame)
    for problem in notice_problems(notices, records):
        report.add(None, problem)


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


def fixed_ids_txns(records: Iterable[Any]) -> list[int]:
    """The transactions whose audit record says they fixed residents' ids (``FIXED_IDS``)."""
    return [
        r["txn"]
        for r in records
        if isinstance(r, dict) and isinstance(r.get("txn"), int) and FIXED_IDS in r
    ]


def _check_records(
    records: pl.DataFrame, report: IntegrityReport, fixed_ids: Iterable[int] = ()
) -> None:
    ordered = records.sort(["code", "txn"])
    # A record of ``rrnet ledger fix-ids`` re-keys an active code: it continues the
    # code's record before it (same status and municipality, an id equal to it but
    # for leading zeros), and is not a code drawn again.
    rekeyed = pl.col("txn").is_in(list(fixed_ids))
    previous = [pl.col(c).shift(1).over("code").alias(f"prev_{c}") for c in ordered.columns]
    with_prev = ordered.with_columns(previous)
    strays = with_prev.filter(
        rekeyed
        & (
            pl.col("prev_status").ne_missing(pl.col("status"))
            | pl.col("prev_municipality").ne_missing(pl.col("municipality"))
            | ~pl.col("status").is_in(ACTIVE)
            | pl.col("prev_resident_id").eq_missing(pl.col("resident_id"))
            | without_leading_zeros(pl.col("prev_resident_id")).ne_missing(
                without_leading_zeros(pl.col("resident_id"))
            )
        )
    )
    if strays.height:
        report.add(
            None,
            f"{strays.height} records of fixed resident ids do not continue their code's "
            "record (another status, municipality or id)",
        )
    # A code drawn here must never have been in use before: no other record of it
    # may come earlier than its "assigned" record.
    first = ordered.unique(subset="code", keep="first", maintain_order=True)
    redrawn = ordered.join(first.select("code", pl.col("txn").alias("first_txn")), on="code")
    redrawn = redrawn.filter(
        (pl.col("status") == Status.ASSIGNED.value)
        & (pl.col("txn") > pl.col("first_txn"))
        & ~rekeyed
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
