"""Notices issued: which notice of which code went to which resident, when, and where.

A notice is issued once. ``rrnet notify`` records every notice it prints in the
ledger, in the same kind of transaction as any other change, so that a second
run prints nothing, a reprint is an explicit, recorded act, and an auditor can
list what was issued (``rrnet ledger notices``).

A notice record says: the code and the resident (and municipality) it was
issued for, its kind (``new``: the notification of a new code; ``change``: the
notice of a changed code), whether it was a reprint and why, the batch (one
notify run), the file and page it was printed on, and the transaction; the
time and the operator are the transaction's audit record's.

In a folder ledger the records are segments like any other, kept apart from
the code records by their manifest entry: ``statuses: {"notice": n}``. A
notice segment holds no used code that is not already a record's, so it never
enters the used-code index. A ledger with notices is written as manifest
version 4, so that an rrnet from before notices refuses it instead of taking
its notices for used codes of status "notice".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import polars as pl
import pyarrow as pa

from rrnet_cli.schema import NoticeKind, ReprintReason

__all__ = ["NOTICE", "NOTICE_SCHEMA", "NOTICE_VERSION", "NoticeKind", "ReprintReason"]

#: A notice segment's manifest status.
NOTICE = "notice"
#: The manifest version of a ledger that has notice records.
NOTICE_VERSION = 4


NOTICE_SCHEMA = pa.schema(
    [
        pa.field("code", pa.uint64(), nullable=False),
        pa.field("resident_id", pa.string(), nullable=False),
        pa.field("municipality", pa.string()),
        pa.field("kind", pa.string(), nullable=False),
        #: null for a first issue; the reason for a reprint
        pa.field("reprint_reason", pa.string()),
        pa.field("batch", pa.string(), nullable=False),
        pa.field("file", pa.string()),
        pa.field("page", pa.int32()),
        pa.field("txn", pa.uint64(), nullable=False),
        pa.field("issued_at", pa.timestamp("ms", tz="UTC"), nullable=False),
    ]
)


def is_notice_segment(info: Mapping[str, Any]) -> bool:
    """Whether a manifest's segment entry holds notice records."""
    return list(info.get("statuses") or {}) == [NOTICE]


def empty_notices() -> pl.DataFrame:
    frame = pl.from_arrow(NOTICE_SCHEMA.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def notice_problems(notices: pl.DataFrame, records: pl.DataFrame) -> list[str]:
    """What is wrong with the notice records, given the code records (integrity).

    Every notice must be of a code that the ledger records for that resident,
    of a known kind, and a reprint must say why.
    """
    problems = []
    kinds = {k.value for k in NoticeKind}
    bad_kind = notices.filter(~pl.col("kind").is_in(kinds)).height
    if bad_kind:
        problems.append(f"{bad_kind} notice records have an unknown kind")
    reasons = {r.value for r in ReprintReason}
    bad_reason = notices.filter(
        pl.col("reprint_reason").is_not_null() & ~pl.col("reprint_reason").is_in(reasons)
    ).height
    if bad_reason:
        problems.append(f"{bad_reason} notice records have an unknown reprint reason")
    owners = records.select("code", "resident_id").unique()
    orphans = notices.join(owners, on=["code", "resident_id"], how="anti").height
    if orphans:
        problems.append(
            f"{orphans} notice records name a code the ledger never recorded for that resident"
        )
    return problems


def notice_listing(
    notices: pl.DataFrame,
    transactions: list[Any],
    *,
    since: date | None = None,
    until: date | None = None,
    batch: str | None = None,
    kind: NoticeKind | None = None,
) -> pl.DataFrame:
    """The notices issued, oldest first, as ``rrnet ledger notices`` lists them.

    ``issued_at`` and the ``since``/``until`` dates are in Japan's time (every
    date rrnet prints is); the operator is the one its transaction's audit
    record names, and the folder is the one its notify run wrote (the record's
    ``notice_folder``, or where an older record's outputs are). Codes are 11-digit strings.
    """
    from rrnet_cli import code as rcode

    records = [
        (
            int(r["txn"]),
            str(r.get("operator", "")),
            r.get("notice_folder") or output_folder(r.get("outputs")),
        )
        for r in transactions
        if isinstance(r, dict) and isinstance(r.get("txn"), int)
    ]
    operators = pl.DataFrame(
        records,
        schema={"txn": pl.UInt64, "operator": pl.String, "folder": pl.String},
        orient="row",
    )
    frame = notices.sort(["issued_at", "batch", "file", "page"], maintain_order=True)
    local = pl.col("issued_at").dt.convert_time_zone("Asia/Tokyo")
    if since is not None:
        frame = frame.filter(local.dt.date() >= since)
    if until is not None:
        frame = frame.filter(local.dt.date() <= until)
    if batch is not None:
        frame = frame.filter(pl.col("batch") == whole_batch(notices, batch))
    if kind is not None:
        frame = frame.filter(pl.col("kind") == kind.value)
    return frame.select(
        local.dt.strftime("%Y-%m-%dT%H:%M:%S%:z").alias("issued_at"),
        "batch",
        "kind",
        "reprint_reason",
        "resident_id",
        pl.Series("code", rcode.codes_to_strings(frame["code"].to_numpy()), dtype=pl.String),
        "municipality",
        "file",
        "page",
        "txn",
    ).join(operators, on="txn", how="left", maintain_order="left")


#: Batches named when a --batch prefix is ambiguous.
SHOWN_BATCHES = 10


def whole_batch(notices: pl.DataFrame, batch: str) -> str:
    """The batch id ``batch`` names: itself, or the one batch whose id begins with it.

    Batch ids are long (``20261208-100200-ea4a42``); a prefix (``20261208-1002``)
    names the one batch it begins. A prefix of several is refused with the
    candidates, and one of none with what batch ids look like: a silent empty
    listing would read as "no notices issued".
    """
    from rrnet_cli.errors import UsageError

    batches = notices["batch"].unique().sort()
    if batch in batches:
        return batch
    matching = batches.filter(batches.str.starts_with(batch)).to_list()
    if len(matching) == 1:
        return str(matching[0])
    if matching:
        shown = ", ".join(matching[:SHOWN_BATCHES])
        more = f" and {len(matching) - SHOWN_BATCHES} more" if len(matching) > SHOWN_BATCHES else ""
        raise UsageError(
            f"--batch {batch} begins {len(matching)} batches: {shown}{more}. "
            "Give more of the batch id."
        )
    if batches.is_empty():
        raise UsageError(f"No batch {batch}: the ledger has recorded no notices yet.")
    raise UsageError(
        f"No batch {batch} in the ledger; batch ids look like {batches[-1]} "
        "(rrnet ledger notices lists them; --batch takes a whole id or its beginning)."
    )


def output_folder(outputs: Any) -> str | None:
    """The folder a notify run wrote its files into, from its audit record's outputs."""
    from pathlib import PurePath

    if not isinstance(outputs, list):
        return None
    folders = {
        str(PurePath(o["path"]).parent)
        for o in outputs
        if isinstance(o, dict) and isinstance(o.get("path"), str)
    }
    return folders.pop() if len(folders) == 1 else None
