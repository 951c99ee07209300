"""The audit trail: who did what, one hash-chained record per transaction.

The folder ledger's manifest holds one record per transaction
(``transactions``), written in the same atomic replace as the segments it
describes: who ran it (operator), the command line, the SHA-256 of every input
and output file, the counts by status, its segments with their checksums and
the hash of the record before it. Each record's ``hash`` is the SHA-256 of its
canonical JSON, so the records form a hash chain: a record edited, removed,
inserted or moved by hand no longer matches its hash or its neighbour's link,
and ``check_chain`` names the transaction. Manifest version 1 (before the
trail) is still read; its transactions are reported as predating the trail,
and the first write upgrades the manifest to version 2.

Pool mode is a manifest setting that only a transaction may change, and its
record says so: ``check_chain`` checks that the manifest's mode is the one the
trail last recorded.

A copied ledger (``rrnet ledger copy``, ``rrnet_cli.ledger.copy``) keeps every
record of its source byte for byte, so their hashes and links still hold; the
copy then appends one record of its own, with a ``copied_from`` key. Records
made in a database name no segments, and records made in another folder name
that folder's segment files, so in a folder neither can be checked against its
own transaction's segments. The rule (``copy_boundary``): the latest copy
record that names segments (one made into a folder) names *every* segment of
the transactions before it (file, checksum, rows), sealed by its hash like any
record; each record before it is checked by its counts against the segments
of its transaction, and its own ``segments`` (if any) are not compared. A
record after it is an ordinary folder record, checked as before.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from rrnet_cli.ledger.interface import POOL_MODE, on_off

#: The audit detail of a transaction that drew its new codes from the pool.
DRAWN_FROM = "drawn_from"
#: The audit detail of a transaction of ``rrnet ledger fix-ids``: how many residents'
#: ids it gave back their leading zeros. Its records re-key active codes; the
#: integrity checks take them for that, not for codes drawn again.
FIXED_IDS = "fixed_ids"
#: The manifest key of the audit trail: one record per transaction, hash-chained.
TRANSACTIONS = "transactions"
#: The audit detail of the record a copy appends (``rrnet ledger copy``).
COPIED_FROM = "copied_from"
#: The manifest key (and audit record key) of a folder ledger closed by
#: ``rrnet ledger copy --move``: where it was moved, and when.
MOVED_TO = "moved_to"
#: The audit record key that binds a folder ledger to its folder (``folder.py``
#: explains the binding): the ledger's id, the folder's real path and its place
#: mark. The latest record that has one says where the ledger is.
PLACE = "place"


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 of an audit record's canonical JSON, every key but ``hash`` itself."""
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(record: dict[str, Any]) -> dict[str, Any]:
    """Set the record's ``hash`` (``record_hash``) and return it."""
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
RESERVED_KEYS = frozenset(_RECORD_KEYS) | {POOL_MODE, COPIED_FROM, MOVED_TO, PLACE}


def audit_details(
    inputs: Sequence[Mapping[str, str]],
    outputs: Sequence[Mapping[str, str]],
    details: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What a transaction's ``describe`` keeps for its audit record: the files read
    and written (path and SHA-256, as ``file_digest`` gives them) and the command's
    own details, which may not replace the record's own fields."""
    clash = RESERVED_KEYS & set(details or {})
    if clash:
        raise ValueError(f"audit details may not use the record's keys {sorted(clash)}")
    return {
        "inputs": [{"path": str(d["path"]), "sha256": str(d["sha256"])} for d in inputs],
        "outputs": [{"path": str(d["path"]), "sha256": str(d["sha256"])} for d in outputs],
        **(details or {}),
    }


def latest_place(records: Iterable[Any]) -> dict[str, Any] | None:
    """The place the latest record that binds the ledger names, or None (never bound)."""
    place = None
    for record in records:
        if isinstance(record, dict) and isinstance(record.get(PLACE), dict):
            place = record[PLACE]
    return place


def copy_boundary(records: Iterable[Any]) -> int | None:
    """The transaction of the latest copy record that names segments, or None.

    Such a record closes a copy into a folder: it names every segment of the
    transactions before it, whose own records are then checked by their counts
    (see the module docstring). A copy record without segments (a copy into a
    database) sets no boundary.
    """
    boundary = None
    for record in records:
        if (
            isinstance(record, dict)
            and isinstance(record.get("txn"), int)
            and isinstance(record.get(COPIED_FROM), dict)
            and isinstance(record.get("segments"), list)
        ):
            boundary = int(record["txn"])
    return boundary


def _record_problem(record: dict[str, Any], *, segments: bool = True) -> str | None:
    for key, kind in _RECORD_KEYS.items():
        if key == "segments" and not segments:
            continue
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
    if segments and not all(isinstance(s, dict) for s in record["segments"]):
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
    by_txn: dict[int, list[Mapping[str, Any]]] = {}
    for entry in manifest["segments"]:
        by_txn.setdefault(int(entry["txn"]), []).append(entry)
    counts: dict[int, dict[str, Any]] = {}
    for number, entries in by_txn.items():
        tally: dict[str, Any] = counts.setdefault(number, {})
        for entry in entries:
            for status, n in entry["statuses"].items():
                tally[status] = tally.get(status, 0) + n if isinstance(n, int) else n
    log = check_records(
        list(records) if isinstance(records, list) else [],
        last_txn=txn,
        municipality=manifest.get("municipality"),
        segments=by_txn,
        counts=counts,
        pool_mode=manifest.get(POOL_MODE, False),
    )
    moved = [r for r in log.records if isinstance(r, dict) and MOVED_TO in r]
    if moved and MOVED_TO not in manifest:
        log.problems.append(
            f"transaction {moved[-1].get('txn')} closed this ledger (it was moved with "
            "`rrnet ledger copy --move`), but the manifest no longer says so: it was "
            "reopened by hand"
        )
    return log


#: ``check_records``' default: the trail's pool mode is not checked (no manifest).
_UNCHECKED: Any = object()


def check_records(
    records: list[Any],
    *,
    last_txn: int,
    municipality: Any,
    segments: Mapping[int, list[Mapping[str, Any]]] | None = None,
    counts: Mapping[int, Mapping[str, Any]] | None = None,
    pool_mode: Any = _UNCHECKED,
    holder: str = "the manifest",
    unreadable: Set[int] = frozenset(),
) -> AuditLog:
    """Check an audit trail's records, in their stored order, whatever stores them.

    Each record must match its hash and link to the record before it; the
    records must number the transactions in order up to ``last_txn``, without
    gaps or repeats; and transaction 0 must name ``municipality``. Where given,
    each record must name exactly the ``segments`` (file, checksum, rows) of its
    transaction, and its ``counts`` those counted from the records stored
    (a transaction absent from the mapping counts nothing); and ``pool_mode``
    (the manifest's) must be the one the trail recorded last. A database
    ledger's records have no segments (``segments=None``: not required of the
    record either). In a copied folder ledger the records before its copy
    record (``copy_boundary``) are checked by their counts only, and the copy
    record must name every segment of the transactions before it.
    ``holder`` names where ``municipality`` was read, for the message.
    ``unreadable``: the transactions whose records the reader may not read (a
    shared database shows an office only the chain's fields of another
    municipality's records): their links and counts are checked, not their
    hashes or shape.
    """
    txn = last_txn
    log = AuditLog(records=records)
    boundary = copy_boundary(records) if segments is not None else None
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
        copied = boundary is not None and number < boundary
        sealed = number not in unreadable
        shape = sealed and _record_problem(record, segments=segments is not None and not copied)
        if shape:
            log.problems.append(f"{label}: {shape}")
        if sealed and record.get("hash") != record_hash(record):
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
        named = record.get("segments")
        if (
            segments is not None
            and not copied
            and isinstance(named, list)
            and all(isinstance(e, dict) for e in named)
        ):
            if number == boundary:  # the copy record: every segment up to it
                held = [e for n, entries in segments.items() if n <= number for e in entries]
                whose = "the transactions up to it (copied)"
            else:
                held, whose = list(segments.get(number, [])), "that transaction"
            if sorted(map(_segment_key, named), key=repr) != sorted(
                map(_segment_key, held), key=repr
            ):
                log.problems.append(
                    f"{label}: the segments it names differ from the manifest's segments of "
                    f"{whose} (a segment was added, removed or replaced)"
                )
        if (
            counts is not None
            and isinstance(record.get("counts"), dict)
            and record["counts"] != dict(counts.get(number, {}))
        ):
            what = "its segments' records" if segments is not None else "the records stored"
            log.problems.append(f"{label}: its counts differ from {what}")
        if number == 0 and record.get("municipality") != municipality:
            log.problems.append(
                f"{label}: the ledger was created for municipality "
                f"{record.get('municipality')}, but {holder} now names "
                f"{municipality}"
            )
    if pool_mode is not _UNCHECKED:
        problem = _pool_mode_problem(pool_mode, log.records)
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


def _pool_mode_problem(stored: Any, records: list[Any]) -> str | None:
    """Why the manifest's pool mode disagrees with the audit trail, or None.

    The mode is a manifest key; only a transaction may change it, and its record
    says so. So the manifest's mode must be the one the trail recorded last (off
    when no record ever set it): anything else is a hand edit.
    """
    recorded, where = False, None
    for record in records:
        if isinstance(record, dict) and isinstance(record.get(POOL_MODE), bool):
            recorded, where = record[POOL_MODE], record.get("txn")
    if stored is recorded:
        return None
    if where is None:
        said = "no transaction ever turned it on"
    else:
        said = f"transaction {where} set it {on_off(recorded)}"
    return (
        f"the manifest says pool mode is {on_off(bool(stored))}, but in the audit trail "
        f"{said} (the manifest was edited by hand)"
    )


def _predate(last: int) -> str:
    if last == 1:
        return "transaction 1 predates the audit trail: it has no record"
    return f"transactions 1..{last} predate the audit trail: they have no record"
