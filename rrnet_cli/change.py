"""Changing a resident's code: ``rrnet change`` (住民票コードの変更).

A resident may ask for a new code at any time, showing official ID (変更請求),
and the office may change a code on its own authority (職権), for example after
a notice went astray. Either way:

- the resident's active code is retired, and stays used forever;
- a new code is drawn at random through the same CSPRNG path as ``assign``
  (``assign.draw_codes``): it is never the old code nor any code ever used, and
  nobody chooses it. In pool mode (or with ``pool=True``) it comes from the
  designated pool, like assign's, and a pool with too few codes left refuses
  the batch before anything is written;
- both records go into the ledger in one transaction. Its audit record keeps
  every change: the old and the new code, the reason (``request`` or
  ``office``), the kind of ID checked (never its number) or the office's
  reason, and, as every audit record does, the operator.

The run is split like assign's: ``plan_changes`` asks the ledger
(``LedgerView``: the residents' active codes, which residents it knows) and
draws (requests in; records, changes and refusals out), ``stage_changes``
records them in a transaction (a shared database ledger may refuse a new code
another office recorded meanwhile: it is drawn again), ``record_changes``
writes the audit details, and ``change_codes`` runs the whole of it. One
request the ledger cannot honour (a resident it does not know, one with no
active code, a second change of one resident in one batch) refuses the whole
batch: nothing is changed.

The office's reason is free text and may hold personal data: it is kept in
the audit record, and never printed in a message.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from rrnet_cli import code as rcode
from rrnet_cli.assign import (
    RandomBytes,
    draw_codes,
    pool_to_draw_from,
    random_source,
    redraw_refused,
)
from rrnet_cli.dates import JAPAN, in_japan
from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, InputRowsError, UsageError
from rrnet_cli.files import (
    PendingFile,
    check_table_suffix,
    refuse_existing,
    remove_stale_parts,
    write_table_to,
)
from rrnet_cli.ingest import (
    ERROR_SCHEMA,
    clean_resident_ids,
    describe_errors,
    read_export,
    require_columns,
)
from rrnet_cli.ledger import (
    DRAWN_FROM,
    Invocation,
    LedgerStore,
    LedgerTransaction,
    LedgerView,
    Status,
    Waiting,
    file_digest,
    municipality_for,
)
from rrnet_cli.progress import QUIET, Steps
from rrnet_cli.schema import (
    ID_DOCUMENT_CHOICES,
    ROW,
    ChangeReason,
    IdDocument,
    header_key,
    id_document_kind,
)

#: Headers of a requests file's columns besides resident_id (compared as header_key does).
ID_DOCUMENT_HEADERS = ("id_document", "本人確認書類", "確認書類")
REASON_HEADERS = ("reason", "職権理由", "変更理由", "理由")

#: Change lines printed after the summary; -o FILE holds them all.
SHOWN_CHANGES = 20


@dataclass(frozen=True)
class ChangeRequest:
    """One request to change a resident's code."""

    resident_id: str
    reason: ChangeReason
    #: the kind of ID the resident showed (a change on request)
    id_document: IdDocument | None = None
    #: why the office changes the code (a change by the office); may hold personal data
    office_reason: str | None = None
    #: the row of a requests file (as a spreadsheet numbers it), for messages
    row: int | None = None

    def problem(self) -> tuple[str, str] | None:
        """(column, reason) when the request is incomplete, else None."""
        if self.reason is ChangeReason.REQUEST:
            if self.id_document is None:
                return "id_document", "a change on request needs the kind of ID checked"
            if self.office_reason:
                return "reason", "a change on request takes no office reason"
        else:
            if not (self.office_reason or "").strip():
                return "reason", "a change by the office needs a reason"
            if self.id_document is not None:
                return "id_document", "a change by the office takes no kind of ID"
        return None


@dataclass(frozen=True)
class Change:
    """One code changed: the old code retired, the new one drawn."""

    resident_id: str
    old_code: str
    new_code: str
    reason: ChangeReason
    id_document: IdDocument | None = None
    office_reason: str | None = None

    def audit(self) -> dict[str, Any]:
        """The entry in the transaction's audit record (``changes``)."""
        entry: dict[str, Any] = {
            "resident_id": self.resident_id,
            "old_code": self.old_code,
            "new_code": self.new_code,
            "reason": self.reason.value,
        }
        if self.reason is ChangeReason.REQUEST:
            entry["id_document"] = self.id_document.value if self.id_document else None
        else:
            entry["office_reason"] = self.office_reason
        return entry

    def public(self) -> dict[str, Any]:
        """What the command prints: everything but the office's free-text reason."""
        return {k: v for k, v in self.audit().items() if k != "office_reason"}


@dataclass
class ChangePlan:
    """Everything one change run will record, decided before anything is written."""

    changes: list[Change]
    #: ledger records: the old codes ``retired``, the new ones ``assigned``
    records: pl.DataFrame
    #: requests the ledger refuses: row (or request number), column, reason, value
    errors: pl.DataFrame
    #: candidates that had to be redrawn (already used, or drawn twice)
    redraws: int = 0
    #: the designated codes the new ones were drawn from (those not used yet, sorted;
    #: a redraw draws from them too), or None: from the whole code space
    pool: np.ndarray | None = None

    @property
    def from_pool(self) -> bool:
        """Whether the new codes were drawn from the designated pool."""
        return self.pool is not None


def plan_changes(
    requests: list[ChangeRequest],
    view: LedgerView,
    municipality: str,
    random_bytes: RandomBytes,
    *,
    pool: bool = False,
) -> ChangePlan:
    """Check every request against the ledger and draw the new codes; write nothing.

    A plan with errors has no changes: one refused request refuses the batch.
    New codes come from the designated pool in pool mode or with ``pool``.
    """
    ids = clean_resident_ids(pl.Series("resident_id", [r.resident_id for r in requests]))
    asked = ids.drop_nulls().unique()
    current = view.active_codes(municipality, asked)
    active: dict[str, list[int]] = {}
    for rid, code in current.select("resident_id", "code").iter_rows():
        active.setdefault(rid, []).append(int(code))
    known = set(view.known_residents(municipality, asked).to_list())
    lost = view.lost_zeros(municipality, asked.filter(~asked.is_in(list(known))))
    # The shorter id lost its zeros: the request's (Excel), or the ledger's.
    shorter = pl.col("ledger_id").str.len_chars() < pl.col("resident_id").str.len_chars()
    stripped = set(lost.filter(~shorter)["resident_id"].to_list())
    ledger_stripped = set(lost.filter(shorter)["resident_id"].to_list()) - stripped
    errors: list[dict[str, Any]] = []
    first_seen: dict[str, int] = {}
    wanted: list[tuple[ChangeRequest, str, int]] = []
    for index, (request, rid) in enumerate(zip(requests, ids.to_list(), strict=True)):
        row = request.row if request.row is not None else index + 1

        def refuse(column: str, reason: str, value: str | None = rid, row: int = row) -> None:
            errors.append({"row": row, "column": column, "reason": reason, "value": value})

        problem = request.problem()
        if rid is None:
            refuse("resident_id", "empty: a request needs the resident's id", None)
        elif problem is not None:
            refuse(problem[0], problem[1], None)
        elif rid in first_seen:
            refuse(
                "resident_id",
                f"a second change of the same resident in this batch (first in row "
                f"{first_seen[rid]}); one change per resident at a time",
            )
        elif rid not in known:
            hint = (
                "; it equals an id the ledger knows without its leading zeros: Excel may "
                "have dropped them"
                if rid in stripped
                else "; the ledger holds an id equal to it without its leading zeros (recorded "
                "from an export that had lost them): repair the ledger's ids with `rrnet "
                "ledger fix-ids --map FILE`"
                if rid in ledger_stripped
                else ""
            )
            refuse(
                "resident_id",
                f"the ledger does not know this resident: no code was ever recorded for them "
                f"in municipality {municipality}{hint}",
            )
        elif rid not in active:
            refuse(
                "resident_id",
                "this resident has no active code to change (their code was retired); "
                "`rrnet assign` gives them a new one",
            )
        elif len(active[rid]) > 1:
            refuse(
                "resident_id",
                "the ledger holds more than one active code for this resident; run "
                "`rrnet verify --ledger` first",
            )
        else:
            wanted.append((request, rid, active[rid][0]))
        if rid is not None:
            first_seen.setdefault(rid, row)
    frame = pl.DataFrame(errors, schema=ERROR_SCHEMA)
    if frame.height:
        return ChangePlan(changes=[], records=_records([], [], [], municipality), errors=frame)
    free = pool_to_draw_from(view, municipality, pool)
    # ``used`` (every code ever used, on a folder ledger) keeps every new code from
    # being an old one, or any other code ever used; a database ledger's client
    # knows none, so the old codes are named as taken, and the database refuses
    # the rest (``stage_changes`` redraws them).
    old = np.array([code for _, _, code in wanted], dtype=np.uint64)
    drawn, redraws = draw_codes(
        len(wanted),
        used=view.used_codes,
        taken=old,
        random_bytes=random_bytes,
        pool=free,
    )
    old_text = rcode.codes_to_strings(old).to_pylist()
    new_text = rcode.codes_to_strings(drawn).to_pylist()
    changes = [
        Change(
            resident_id=rid,
            old_code=before,
            new_code=after,
            reason=request.reason,
            id_document=request.id_document,
            office_reason=(request.office_reason or "").strip() or None,
        )
        for (request, rid, _), before, after in zip(wanted, old_text, new_text, strict=True)
    ]
    residents = [rid for _, rid, _ in wanted]
    return ChangePlan(
        changes=changes,
        records=_records(residents, old, drawn, municipality),
        errors=frame,
        redraws=redraws,
        pool=free,
    )


def _records(residents: list[str], old: Any, new: Any, municipality: str) -> pl.DataFrame:
    n = len(residents)
    return pl.DataFrame(
        {
            "code": np.concatenate(
                [np.asarray(old, dtype=np.uint64), np.asarray(new, dtype=np.uint64)]
            ),
            "status": [Status.RETIRED.value] * n + [Status.ASSIGNED.value] * n,
            "municipality": [municipality] * (2 * n),
            "resident_id": residents * 2,
        },
        schema={
            "code": pl.UInt64,
            "status": pl.String,
            "municipality": pl.String,
            "resident_id": pl.String,
        },
    )


def record_changes(
    txn: LedgerTransaction,
    plan: ChangePlan,
    invocation: Invocation | None = None,
    *,
    inputs: list[dict[str, str]] | None = None,
    outputs: list[dict[str, str]] | None = None,
) -> int:
    """Describe the plan's changes in ``txn``'s audit record; the transaction number.

    The records themselves are staged first (``stage_changes``), since a new
    code a shared ledger refuses is redrawn, and the changes (and their file)
    name the codes actually recorded.
    """
    details: dict[str, Any] = {"changes": [c.audit() for c in plan.changes]}
    if plan.from_pool:
        details[DRAWN_FROM] = "pool"
    txn.describe(invocation, inputs=inputs or [], outputs=outputs or [], details=details)
    return txn.number


def stage_changes(txn: LedgerTransaction, plan: ChangePlan, random_bytes: RandomBytes) -> None:
    """Record the plan: each old code retired, each new one assigned (``record_change``).

    A folder ledger drew every new code against every used code under its
    lock, so nothing is refused. A shared database ledger may refuse a new code
    another office recorded meanwhile: it is drawn again as assign's are
    (``assign.redraw_refused``), and ``plan`` (its records, changes and redraw
    count) is updated to match. The old codes must still be their residents'
    when recorded, or the run stops.
    """

    def rename(old: np.ndarray, fresh: np.ndarray) -> None:
        plan.records = plan.records.with_columns(
            pl.col("code").replace(
                pl.Series(old, dtype=pl.UInt64), pl.Series(fresh, dtype=pl.UInt64)
            )
        )
        before = rcode.codes_to_strings(old).to_pylist()
        names = dict(zip(before, rcode.codes_to_strings(fresh).to_pylist(), strict=True))
        plan.changes = [
            replace(c, new_code=names.get(c.new_code, c.new_code)) for c in plan.changes
        ]

    plan.redraws += redraw_refused(
        txn,
        plan.records.filter(pl.col("status") == Status.ASSIGNED.value),
        txn.record_change(plan.records),
        taken=[plan.records["code"].to_numpy()],
        used=None,
        pool=plan.pool,
        random_bytes=random_bytes,
        replace=rename,
        nothing="changed",
    )


def change_table(changes: list[Change], changed_at: datetime) -> pl.DataFrame:
    """The ``-o`` file: resident_id, old_code, new_code, changed_at (ISO 8601, in
    Japan's time with its offset: 2026-04-01T05:00:00+09:00)."""
    stamp = in_japan(changed_at).isoformat(timespec="seconds")
    return pl.DataFrame(
        {
            "resident_id": [c.resident_id for c in changes],
            "old_code": [c.old_code for c in changes],
            "new_code": [c.new_code for c in changes],
            "changed_at": [stamp] * len(changes),
        },
        schema=dict.fromkeys(("resident_id", "old_code", "new_code", "changed_at"), pl.String),
    )


# ---------------------------------------------------------------------------
# A requests file: one request per row


def _find_column(columns: list[str], names: tuple[str, ...]) -> str | None:
    keys = {header_key(n) for n in names}
    found = [c for c in columns if header_key(c) in keys]
    return found[0] if found else None


def read_requests(
    path: Path,
    *,
    encoding: str = "auto",
    sheet: str | None = None,
    delimiter: str = "auto",
    verbose: bool = False,
) -> list[ChangeRequest]:
    """Read a requests file (CSV in UTF-8 or CP932, Excel, Parquet), one request per row.

    Columns: ``resident_id`` (or 宛名番号 ...), and per row either
    ``id_document`` (the kind of ID the resident showed: a change on request) or
    ``reason`` (a change by the office). A bad row stops the batch; every bad
    row is reported by its row number.
    """
    export = read_export(path, encoding=encoding, sheet=sheet, delimiter=delimiter)
    require_columns(export, ("resident_id",))
    frame = export.frame
    doc_column = _find_column(frame.columns, ID_DOCUMENT_HEADERS)
    reason_column = _find_column(frame.columns, REASON_HEADERS)
    if doc_column is None and reason_column is None:
        raise UsageError(
            f"{export.path} needs an id_document column (the kind of ID each resident "
            "showed) or a reason column (for changes by the office), besides resident_id."
        )
    if frame.height == 0:
        raise UsageError(f"{export.path} holds no requests.")

    def texts(column: str | None) -> list[str]:
        if column is None:
            return [""] * frame.height
        return [(v or "").strip() for v in frame[column].cast(pl.String).to_list()]

    ids = clean_resident_ids(frame["resident_id"].cast(pl.String)).to_list()
    errors: list[dict[str, Any]] = []
    requests: list[ChangeRequest] = []
    for row, rid, doc, why in zip(
        frame[ROW].to_list(), ids, texts(doc_column), texts(reason_column), strict=True
    ):
        if rid is None:
            errors.append({"row": row, "column": "resident_id", "reason": "empty", "value": None})
            continue
        if doc and why:
            errors.append(
                {
                    "row": row,
                    "column": "id_document",
                    "reason": "give the kind of ID checked (a change on request) or a reason "
                    "(a change by the office), not both",
                    "value": doc,
                }
            )
        elif not doc and not why:
            errors.append(
                {
                    "row": row,
                    "column": "id_document",
                    "reason": "empty: give the kind of ID the resident showed, or a reason "
                    "for a change by the office",
                    "value": None,
                }
            )
        elif doc:
            kind = id_document_kind(doc)
            if kind is None:
                errors.append(
                    {
                        "row": row,
                        "column": "id_document",
                        "reason": f"not a kind of ID rrnet knows; use one of {ID_DOCUMENT_CHOICES}",
                        "value": doc,
                    }
                )
            else:
                requests.append(ChangeRequest(rid, ChangeReason.REQUEST, id_document=kind, row=row))
        else:
            requests.append(ChangeRequest(rid, ChangeReason.OFFICE, office_reason=why, row=row))
    if errors:
        table = pl.DataFrame(errors, schema=ERROR_SCHEMA)
        raise InputRowsError(
            f"{table['row'].n_unique()} row(s) of {export.path} cannot be used, so no code "
            "was changed. Fix them and run again.",
            errors=_error_dicts(table, verbose),
            details=describe_errors(table, export.path, verbose=verbose),
        )
    return requests


def _error_dicts(errors: pl.DataFrame, verbose: bool) -> list[dict[str, object]]:
    return errors.select("row", "column", "reason", *(["value"] if verbose else [])).to_dicts()


# ---------------------------------------------------------------------------
# The whole run


@dataclass
class ChangeResult:
    """What one change run did; the CLI prints it as a table or JSON."""

    ledger: str
    municipality: str
    requests: str | None
    output: str | None
    operator: str
    changed: int = 0
    on_request: int = 0
    by_office: int = 0
    transaction: int | None = None
    changed_at: str | None = None
    redraws: int = 0
    seconds: float = 0.0
    #: resident_id, old_code, new_code, reason and id_document of each change
    changes: list[dict[str, Any]] = field(default_factory=list)
    #: the new codes came from the designated pool (pool mode, or --pool)
    from_pool: bool = False
    #: things the office must know: a resident changed again before being told of
    #: their previous change (``unnotified_changes``)
    warnings: list[str] = field(default_factory=list)
    #: partial changes files (personal data) of stopped runs, removed before this run wrote
    stale_parts_removed: list[str] = field(default_factory=list)
    #: such files found but left in place, each with the reason
    stale_parts_not_removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [
            ("municipality", self.municipality),
            ("codes changed", self.changed),
            ("  on request (ID checked)", self.on_request),
            ("  by the office", self.by_office),
            *([("new codes drawn from", "the designated pool")] if self.from_pool else []),
            ("ledger transaction", self.transaction if self.transaction is not None else "-"),
            ("operator", self.operator),
            ("time", f"{self.seconds:.2f} s"),
        ]

    def lines(self, limit: int = SHOWN_CHANGES) -> list[str]:
        """One line per change (the first ``limit``): the old code retired, the new one."""
        lines = [
            f"resident {c['resident_id']}: {rcode.format(c['old_code'])} retired, "
            f"new code {rcode.format(c['new_code'])}"
            for c in self.changes[:limit]
        ]
        if len(self.changes) > limit:
            more = f"... and {len(self.changes) - limit} more"
            lines.append(more + (f" (all in {self.output})" if self.output else " (use --json)"))
        return lines


def change_codes(
    ledger: LedgerStore,
    requests: list[ChangeRequest],
    *,
    municipality: str | None = None,
    output: Path | None = None,
    source: Path | None = None,
    invocation: Invocation | None = None,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    random_bytes: RandomBytes | None = None,
    verbose: bool = False,
    steps: Steps = QUIET,
    pool: bool = False,
    waiting: Waiting | None = None,
    overwrite: bool = False,
) -> ChangeResult:
    """Change every requested code in one ledger transaction, or none (see module doc).

    ``source`` is the requests file the requests came from (hashed into the
    audit record, and named in messages). ``output`` gets the changes, written
    0600 before the commit and renamed into place after it. ``random_bytes``
    is for tests; the default is the operating system's CSPRNG. ``pool`` draws
    the new codes from the designated pool for this run (as pool mode does).
    ``waiting`` is told when another run holds the ledger and this one waits.
    An existing ``output`` is refused unless ``overwrite``; partial changes files
    that stopped runs left beside it are removed first (and named in the result).
    """
    started = time.perf_counter()
    municipality = municipality_for(ledger, municipality)
    invocation = invocation or Invocation()
    if not requests:
        raise UsageError("No change request was given; nothing was changed.")
    suffix = check_table_suffix(output, excel=True) if output is not None else None
    if output is not None and source is not None and output.resolve() == source.resolve():
        raise UsageError(f"{output} is the requests file itself; write the changes elsewhere.")
    refuse_existing([("-o", output)], overwrite, "Nothing was changed.")
    result = ChangeResult(
        ledger=ledger.location,
        municipality=municipality,
        requests=None if source is None else str(source),
        output=None,
        operator=invocation.operator,
    )
    if output is not None:
        stale = remove_stale_parts([output])
        result.stale_parts_removed = stale.removed
        result.stale_parts_not_removed = stale.not_removed
    inputs = [file_digest(source)] if source is not None else []
    with contextlib.ExitStack() as outputs:
        pending = outputs.enter_context(PendingFile(output)) if output is not None else None
        with ledger.transaction(timeout=lock_timeout, waiting=waiting) as txn:
            with steps.step("Loading the ledger"):
                view = txn.view()
            draw = random_bytes or random_source(None)
            with steps.step("Drawing new codes", total=len(requests)) as advance:
                plan = plan_changes(requests, view, municipality, draw, pool=pool)
                advance(len(requests))
            if plan.errors.height:
                _refuse(plan.errors, requests, source, verbose)
            with steps.step("Recording the changes in the ledger"):
                stage_changes(txn, plan, draw)
            written: list[dict[str, str]] = []
            if pending is not None and suffix is not None:
                write_table_to(change_table(plan.changes, txn.recorded_at), pending.path, suffix)
                written.append(file_digest(pending.path, name=output))
            result.transaction = record_changes(
                txn, plan, invocation, inputs=inputs, outputs=written
            )
            result.changed_at = in_japan(txn.recorded_at).isoformat(timespec="seconds")
        # Committed; only now does the changes file appear.
        if pending is not None:
            pending.publish()
            result.output = str(output)
    result.changed = len(plan.changes)
    result.on_request = sum(c.reason is ChangeReason.REQUEST for c in plan.changes)
    result.by_office = result.changed - result.on_request
    result.redraws = plan.redraws
    result.from_pool = plan.from_pool
    result.changes = [c.public() for c in plan.changes]
    if plan.changes and result.transaction is not None:
        result.warnings = unnotified_changes(ledger, plan.changes, result.transaction, municipality)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def unnotified_changes(
    ledger: LedgerStore, changes: list[Change], transaction: int, municipality: str
) -> list[str]:
    """A warning for each change of a code the resident was never notified of.

    A second change soon after a first one is harmless once the first change's
    notice is out; the harm is a change of a code that came from an earlier
    change whose notice was never printed: the resident never received the code
    just retired. ``rrnet notify --changes`` gives them as their old code the one
    they were last notified of, but the office should know (and check the request).
    """
    earlier = recorded_changes(ledger.audit_log().records).filter(pl.col("txn") != transaction)
    retired = pl.DataFrame(
        [(c.resident_id, c.old_code) for c in changes],
        schema={"resident_id": pl.String, "new_code": pl.String},
        orient="row",
    )
    # The change that gave each resident the code retired now, if one did.
    previous = earlier.join(retired, on=["resident_id", "new_code"], how="semi")
    if previous.height == 0:
        return []
    with ledger.reading() as view:
        notices = view.notices_of(rcode.strings_to_codes(previous["new_code"].to_arrow()))
    ours = pl.col("municipality").is_null() | (pl.col("municipality") == municipality)
    told = {
        (rid, code) for rid, code in notices.filter(ours).select("resident_id", "code").iter_rows()
    }
    warnings = []
    for row in previous.sort("txn").iter_rows(named=True):
        code = int(row["new_code"])
        if (row["resident_id"], code) in told:
            continue
        when = row["changed_at"].astimezone(JAPAN).date().isoformat()
        warnings.append(
            f"resident {row['resident_id']} was changed again before the notice of their "
            f"previous change ({when}) was printed: they never received the code just "
            f"retired ({rcode.format(row['new_code'])}). The change notice will give as "
            "their old code the one they were last notified of. Check that both changes "
            "were meant."
        )
    return warnings


def _refuse(
    errors: pl.DataFrame, requests: list[ChangeRequest], source: Path | None, verbose: bool
) -> None:
    """Stop the run (nothing is recorded) with every refused request."""
    if source is not None:
        raise InputRowsError(
            f"{errors['row'].n_unique()} request(s) of {source} cannot be carried out, so no "
            "code was changed.",
            errors=_error_dicts(errors, verbose),
            details=describe_errors(errors, source, verbose=verbose),
        )
    if len(requests) == 1:
        reason = errors["reason"][0]
        raise UsageError(
            f"Cannot change the code of resident {requests[0].resident_id.strip()}: {reason}. "
            "Nothing was changed."
        )
    lines = [
        f"request {row}, {column}: {reason}"
        for row, column, reason in errors.select("row", "column", "reason").iter_rows()
    ]
    raise InputRowsError(
        f"{errors['row'].n_unique()} of {len(requests)} change requests cannot be carried "
        "out, so no code was changed.",
        errors=_error_dicts(errors, verbose),
        details=lines,
    )


def recorded_changes(transactions: list[Any]) -> pl.DataFrame:
    """Every code change the ledger's audit trail records, oldest first.

    ``resident_id, old_code, new_code, reason, changed_at`` (UTC), ``txn``: one
    row per change, from the ``changes`` of each change transaction's record.
    """
    rows = []
    for record in transactions:
        if not isinstance(record, dict) or not isinstance(record.get("changes"), list):
            continue
        at = datetime.fromisoformat(str(record["at"]))
        for change in record["changes"]:
            if isinstance(change, dict):
                rows.append(
                    (
                        str(change.get("resident_id")),
                        str(change.get("old_code")),
                        str(change.get("new_code")),
                        str(change.get("reason")),
                        at,
                        int(record["txn"]),
                    )
                )
    return pl.DataFrame(
        rows,
        schema={
            "resident_id": pl.String,
            "old_code": pl.String,
            "new_code": pl.String,
            "reason": pl.String,
            "changed_at": pl.Datetime("us", "UTC"),
            "txn": pl.Int64,
        },
        orient="row",
    )
