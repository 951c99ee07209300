"""``rrnet ledger``: create, fill and inspect the ledger."""

from __future__ import annotations

import copy
import shlex
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from rrnet_cli.cli._common import (
    Encoding,
    EncodingOpt,
    JsonOpt,
    LedgerOpt,
    LockTimeoutOpt,
    MunicipalityOpt,
    OperatorOpt,
    VerboseOpt,
    audit_invocation,
    err,
    finish,
    handle_errors,
    open_ledger,
    out,
    say_waiting,
    size_text,
)
from rrnet_cli.dates import in_japan
from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT

if TYPE_CHECKING:
    from rrnet_cli.ledger import AuditLog

#: Which column of a CSV or Parquet file holds the codes (ledger import, designate).
CodeColumnOpt = Annotated[
    str | None,
    typer.Option(
        "--column",
        help="Column holding the codes (CSV with header, or Parquet).",
        show_default=False,
    ),
]

ledger_app = typer.Typer(
    help="Create, fill and inspect the ledger: the set of every code ever used.",
    no_args_is_help=True,
)


@dataclass
class _Created:
    ledger: str
    municipality: str

    def to_json(self) -> dict[str, Any]:
        return {"ledger": self.ledger, "municipality": self.municipality}

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [("ledger", self.ledger), ("municipality", self.municipality)]


@dataclass
class _Stats:
    stats: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return self.stats

    def summary_rows(self) -> list[tuple[str, Any]]:
        stats = self.stats
        rows: list[tuple[str, Any]] = [
            ("municipality", stats["municipality"] or "-"),
        ]
        served = stats.get("municipalities")
        if served is not None and len(served) > 1:
            rows.append(("serves", ", ".join(served)))
        # A shared ledger's counts are every municipality's codes (its uniqueness).
        used = "codes used (all municipalities)" if served is not None else "codes used"
        rows.append((used, stats["codes_used"]))
        rows += [(f"  {status}", n) for status, n in stats["by_status"].items()]
        pools = stats.get("pools") or {"": stats.get("pool") or {}}  # several: each one's
        for municipality, pool in pools.items():
            if pool.get("designated") or pool.get("mode") == "on":
                of = f" of {municipality}" if municipality else ""
                rows += [
                    (f"designated pool{of}", pool["designated"]),
                    ("  used", pool["used"]),
                    ("  left", pool["left"]),
                    ("  pool mode" if of else "pool mode", pool["mode"]),
                ]
        due = stats.get("first_notice_due")
        if due is not None:
            # Not an error: rrnet notify prints them (the list is in --json).
            rows.append(("drawn here, no first notice yet", due["count"]))
        # `ledger log` lists `ledger init` too, as record 0: this counts the ones after it.
        rows.append(("transactions (after init)", stats["transactions"]))
        if "segments" in stats:  # a folder ledger's files (a database has none)
            rows.append(("segments", stats["segments"]))
        rows.append(("size on disk", size_text(stats["bytes_on_disk"])))
        return rows


@dataclass
class _Log:
    """The audit trail as ``rrnet ledger log`` shows it."""

    ledger: str
    log: AuditLog
    last: int | None = None
    verbose: bool = False

    def shown(self) -> list[dict[str, Any]]:
        """The records shown (the last ``last``); an office's reasons only with --verbose."""
        records = self.log.records[-self.last :] if self.last else self.log.records
        if self.verbose:
            return records
        shown = copy.deepcopy(records)
        for record in shown:
            changes = record.get("changes") if isinstance(record, dict) else None
            for entry in changes if isinstance(changes, list) else []:
                if isinstance(entry, dict) and entry.get("office_reason") is not None:
                    entry["office_reason"] = "(hidden: --verbose shows it)"
        return shown

    def to_json(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "transactions": self.shown(),
            "intact": self.log.intact,
            "problems": self.log.problems,
            "notes": self.log.notes,
            "head": self.log.head,
        }

    def summary_rows(self) -> list[tuple[str, Any]]:
        chain = "intact" if self.log.intact else f"BROKEN ({len(self.log.problems)} problems)"
        return [("records", len(self.log.records)), ("chain (hashes and links)", chain)]

    def table(self) -> Table:
        grid = Table(show_header=True, header_style="bold")
        shown = self.shown()
        # A shared ledger's runs for several municipalities: whose each run was.
        whose = {r.get("municipality") for r in shown if isinstance(r, dict)}
        several = len(whose - {None}) > 1
        columns = ["txn", "time (Japan)", *(["for"] if several else []), "operator", "command"]
        for name in (*columns, "counts", "hash"):
            wrap = name in ("operator", "command", "counts")
            grid.add_column(
                name,
                overflow="fold",
                no_wrap=not wrap,
                justify="right" if name == "txn" else "left",
            )
        for record in shown:
            if not isinstance(record, dict):
                grid.add_row("?", *[""] * (len(columns) - 2), "(damaged record)", "", "")
                continue
            command = record.get("command")
            counts = record.get("counts")
            mode = record.get("pool_mode")  # a transaction that turned pool mode on or off
            place = record.get("place")  # one that bound a folder ledger to its folder
            if "command" in record:
                said = shlex.join(map(str, command)) if isinstance(command, list) else ""
            else:  # another municipality's run on a shared ledger: the chain's fields only
                said = f"(a run for {record.get('municipality')}: not shown to your role)"
            grid.add_row(
                str(record.get("txn", "?")),
                _time(record.get("at")),
                *([str(record.get("municipality") or "-")] if several else []),
                str(record.get("operator", "")),
                said,
                ", ".join(f"{k} {counts[k]:,}" for k in sorted(counts, key=_count_order))
                if isinstance(counts, dict) and counts
                else f"pool mode {'on' if mode else 'off'}"
                if isinstance(mode, bool)
                else f"bound to {place.get('path')}"
                if isinstance(place, dict)
                else "",
                str(record.get("hash", ""))[:12],
            )
        return grid

    def lines(self) -> list[str]:
        head = [f"latest hash: {self.log.head}"] if self.log.head else []
        problems = [f"problem: {p}" for p in self.log.problems]
        return head + problems + [f"note: {n}" for n in self.log.notes]


def _count_order(name: str) -> tuple[int, str]:
    """Counts in the order of a code's life (assigned, carried over, imported,
    retired), then the others by name: the same order for every record, whatever
    order the run that wrote it counted in."""
    from rrnet_cli.ledger import Status

    order = [status.value for status in Status]
    return (order.index(name), "") if name in order else (len(order), name)


def _time(value: Any) -> str:
    """A record's time (stored in UTC) as Japan's, whatever the machine's time zone."""
    try:
        return in_japan(datetime.fromisoformat(str(value))).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


@ledger_app.command("init")
@handle_errors
def ledger_init(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(
            metavar="LEDGER",
            help="Folder to create (must not exist yet, or be empty), or a PostgreSQL "
            "database (postgresql:// URL or libpq connection string) to create the "
            "ledger's schema in.",
            show_default=False,
        ),
    ],
    municipality: Annotated[
        str,
        typer.Option(
            "--municipality",
            "-m",
            envvar="RRNET_MUNICIPALITY",
            help="Your 6-digit local government code (全国地方公共団体コード), e.g. 131016.",
            show_default=False,
        ),
    ],
    operator: OperatorOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Create a new, empty ledger (once per municipality, then back it up).

    Every other command refuses a path that is not a ledger, so a mistyped path
    can never start a second, empty ledger. In a PostgreSQL database the ledger
    is the schema `rrnet`; a database that has one already is refused.

    A folder ledger is bound to its folder: a copy made by hand (cp -a, rsync),
    a moved folder or a restored backup refuses every write until `rrnet ledger
    relocate`; `rrnet ledger copy` makes a new ledger from an old one.

    Example: `rrnet ledger init /srv/rrnet/ledger --municipality 131016`
    """
    from rrnet_cli.ledger import init_store
    from rrnet_cli.schema import validate_municipality_code

    code = validate_municipality_code(municipality)
    store = init_store(path, municipality=code, invocation=audit_invocation(ctx, operator))
    if as_json:
        finish(_Created(store.location, code), as_json, "")
    else:  # one sentence says it better than a table
        out.print(f"Created ledger {store.location} for municipality {code}.", markup=False)


@ledger_app.command("import")
@handle_errors
def ledger_import(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            metavar="CODES",
            help="Codes: one per line, or a CSV/Parquet column.",
            show_default=False,
        ),
    ],
    ledger: LedgerOpt,
    column: CodeColumnOpt = None,
    retired: Annotated[
        bool,
        typer.Option(
            "--retired",
            help="The codes are retired (never to be issued again) rather than in use elsewhere.",
        ),
    ] = False,
    encoding: EncodingOpt = Encoding.AUTO,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    operator: OperatorOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Add codes in use elsewhere (or a designated pool's used codes) to the ledger.

    Streams the file in bounded batches; the whole import is one transaction.
    Codes already in the ledger and repeats in the file are counted and skipped;
    one invalid code stops the import with its record number and nothing changes.

    Example: `rrnet ledger import national_extract.txt --ledger ledger`
    """
    from rrnet_cli.importer import import_codes
    from rrnet_cli.ledger import Status
    from rrnet_cli.progress import Steps

    invocation = audit_invocation(ctx, operator)
    with Steps.for_terminal(quiet=as_json) as steps:
        result = import_codes(
            open_ledger(ledger, writes=True),
            source,
            column=column,
            status=Status.RETIRED if retired else Status.IMPORTED,
            encoding=encoding.value,
            lock_timeout=lock_timeout,
            steps=steps,
            invocation=invocation,
        )
    finish(result, as_json, f"Imported into {result.ledger}")


@ledger_app.command("designate")
@handle_errors
def ledger_designate(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            metavar="POOLFILE",
            help="The codes designated to this municipality: one per line, or a "
            "CSV/Parquet column.",
            show_default=False,
        ),
    ],
    ledger: LedgerOpt,
    municipality: MunicipalityOpt = None,
    column: CodeColumnOpt = None,
    encoding: EncodingOpt = Encoding.AUTO,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    operator: OperatorOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Record a pool of codes designated to this municipality (住民票コードの指定).

    Streams the file and checks every code: one that is invalid, already used
    (any status), already designated or listed twice stops the run with its
    record number, and nothing is designated. The designation is one ledger
    transaction. Designated codes are not used codes: each stays free until it
    is assigned. To draw only from the pool, run `rrnet ledger pool-mode on`
    (or give `rrnet assign --pool` for one run); `rrnet ledger stats` shows what
    is left.

    On a shared (PostgreSQL) ledger each municipality has its own pool: an
    office designates to its own; the ledger's owner gives -m.

    Example: `rrnet ledger designate designated_2024.csv --column 住民票コード --ledger ledger`
    """
    from rrnet_cli.pool import designate_codes
    from rrnet_cli.progress import Steps

    invocation = audit_invocation(ctx, operator)
    with Steps.for_terminal(quiet=as_json) as steps:
        result = designate_codes(
            open_ledger(ledger, writes=True),
            source,
            municipality=municipality,
            column=column,
            encoding=encoding.value,
            lock_timeout=lock_timeout,
            steps=steps,
            invocation=invocation,
            waiting=say_waiting,
        )
    finish(result, as_json, f"Designated in {result.ledger}", after=result.lines())


@ledger_app.command("fix-ids")
@handle_errors
def ledger_fix_ids(
    ctx: typer.Context,
    map_file: Annotated[
        Path,
        typer.Option(
            "--map",
            metavar="FILE",
            help="CSV or workbook with columns ledger_id,correct_id (or 台帳の宛名番号,"
            "正しい宛名番号): the id as the ledger holds it, and the correct one.",
            show_default=False,
        ),
    ],
    ledger: LedgerOpt,
    municipality: MunicipalityOpt = None,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    operator: OperatorOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Give resident ids in the ledger back the leading zeros an export lost.

    When an export went through Excel (000005974 became 5974), assign recorded
    its residents under the stripped ids, and the correct export is refused
    for them. This re-keys each resident's active code to the correct id, all
    residents in one transaction, in the audit trail with the map's SHA-256.
    Only leading zeros may differ; an id the ledger does not hold, a correct
    id it already knows or an id twice in the map refuses the whole map, and
    nothing is changed. Afterwards assign finds them under the correct ids
    (already assigned, same codes).

    Example: `rrnet ledger fix-ids --map ids.csv --ledger ledger`
    """
    from rrnet_cli.fix_ids import fix_resident_ids

    result = fix_resident_ids(
        open_ledger(ledger, writes=True),
        map_file,
        municipality=municipality,
        lock_timeout=lock_timeout,
        invocation=audit_invocation(ctx, operator),
        waiting=say_waiting,
        verbose=verbose,
    )
    finish(result, as_json, f"Resident ids fixed in {result.ledger}")


class PoolMode(StrEnum):
    """``rrnet ledger pool-mode`` values."""

    ON = "on"
    OFF = "off"


@ledger_app.command("pool-mode")
@handle_errors
def ledger_pool_mode(
    ctx: typer.Context,
    mode: Annotated[
        PoolMode,
        typer.Argument(
            metavar="on|off",
            help="on: assign and change draw new codes only from the designated pool; "
            "off: from the whole code space.",
            show_default=False,
        ),
    ],
    ledger: LedgerOpt,
    municipality: MunicipalityOpt = None,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    operator: OperatorOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Draw new codes only from the designated pool (on), or from the whole space (off).

    In pool mode every `rrnet assign` and `rrnet change` draws uniformly at random
    from the pool's codes that are not used yet, and refuses a run that needs
    more codes than are left before anything is written; `rrnet verify` then
    flags any code assigned here outside the pool. The switch is a ledger
    transaction of its own, in the audit trail. Turning it on needs a pool
    (`rrnet ledger designate`), and warns of codes assigned since the first
    designation that lie outside it (codes assigned before any pool was
    designated are not outside it). On a shared (PostgreSQL) ledger each municipality has its own
    mode: an office sets its own; the ledger's owner gives -m.

    Example: `rrnet ledger pool-mode on --ledger ledger`
    """
    from rrnet_cli.pool import set_pool_mode

    result = set_pool_mode(
        open_ledger(ledger, writes=True),
        mode is PoolMode.ON,
        municipality=municipality,
        lock_timeout=lock_timeout,
        invocation=audit_invocation(ctx, operator),
        waiting=say_waiting,
    )
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False, soft_wrap=True)
    finish(result, as_json, f"Pool mode of {result.ledger}")


@dataclass
class _Served:
    ledger: str
    municipality: str
    role: str | None
    transaction: int

    def to_json(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "municipality": self.municipality,
            "office_role": self.role,
            "transaction": self.transaction,
        }

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [
            ("municipality", self.municipality),
            ("office role", self.role or "- (only the ledger's owner writes for it)"),
            ("recorded as transaction", self.transaction),
        ]


def _database_only(location: str, what: str) -> Any:
    """The PostgreSQL ledger at ``location`` (not yet opened); a folder is refused."""
    from rrnet_cli.errors import UsageError
    from rrnet_cli.ledger import is_database_location

    if not is_database_location(location):
        raise UsageError(
            f"{what} is for a PostgreSQL ledger; a folder ledger serves the one "
            "municipality it was made for."
        )
    from rrnet_cli.ledger.postgres import PostgresLedger

    return PostgresLedger(location)


@ledger_app.command("add-municipality")
@handle_errors
def ledger_add_municipality(
    ctx: typer.Context,
    ledger: LedgerOpt,
    municipality: Annotated[
        str,
        typer.Option(
            "--municipality",
            "-m",
            help="The 6-digit local government code of the municipality to serve.",
            show_default=False,
        ),
    ],
    role: Annotated[
        str | None,
        typer.Option(
            "--role",
            help="The PostgreSQL role its office connects as (an existing, ordinary role). "
            "Row-level security lets it read and record only this municipality's "
            "residents. Given again for a municipality already served: changes its role.",
            show_default=False,
        ),
    ] = None,
    operator: OperatorOpt = None,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Let a shared PostgreSQL ledger serve another municipality (the owner only).

    One ledger for a designated city's wards, or for a prefecture's
    municipalities: every code is unique across all of them, because one table
    holds them all. Each office connects as its own role and sees only its own
    residents (docs/deployment.md shows the roles and grants).

    Example: `rrnet ledger add-municipality --ledger "service=rrnet" -m 131024 --role ward_131024`
    """
    from rrnet_cli.schema import validate_municipality_code

    code = validate_municipality_code(municipality)
    store = _database_only(ledger, "`rrnet ledger add-municipality`")
    number = store.add_municipality(
        code,
        role=role,
        invocation=audit_invocation(ctx, operator),
        timeout=lock_timeout,
    )
    finish(_Served(store.location, code, role, number), as_json, f"Ledger {store.location}")


@ledger_app.command("upgrade")
@handle_errors
def ledger_upgrade(
    ctx: typer.Context,
    ledger: LedgerOpt,
    operator: OperatorOpt = None,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Upgrade a PostgreSQL ledger made by an older rrnet to this version's schema.

    Run it once, as the ledger's owner, when every office has this rrnet or a
    later one. It takes the writers' lock and changes everything in one
    transaction: other runs wait, and see the old schema or the new, never half.
    At 100 million codes it rewrites the code tables, which takes minutes.

    Example: `rrnet ledger upgrade --ledger "service=rrnet"`
    """
    store = _database_only(ledger, "`rrnet ledger upgrade`")
    before, after = store.upgrade(invocation=audit_invocation(ctx, operator), timeout=lock_timeout)
    if as_json:
        import json

        out.print_json(json.dumps({"ledger": store.location, "from": before, "to": after}))
    elif before == after:
        out.print(
            f"The ledger {store.location} is at schema version {after} already.", markup=False
        )
    else:
        out.print(
            f"Upgraded the ledger {store.location} from schema version {before} to {after}.",
            markup=False,
        )


@ledger_app.command("stats")
@handle_errors(left="")
def ledger_stats(
    ledger: LedgerOpt,
    municipality: Annotated[
        str | None,
        typer.Option(
            "--municipality",
            "-m",
            help="On a shared ledger, whose designated pool to show as `pool` (the "
            "owner sees each one's under `pools`). Default: your own municipality's.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show how many codes the ledger holds, by status, and its size on disk.

    With a designated pool, also its size, how many of its codes are used and
    left, and whether pool mode is on. On a shared (PostgreSQL) ledger the
    counts of codes are every municipality's; the pool is one municipality's.
    Also how many codes drawn here (for your municipality) have no first
    notice yet: `rrnet notify` prints them; --json lists each one.

    Example: `rrnet ledger stats --ledger ledger`
    """
    from rrnet_cli.ledger import municipality_for

    store = open_ledger(ledger)
    stats = store.stats()
    if municipality is not None:
        chosen = municipality_for(store, municipality)
        stats["pool"] = (stats.get("pools") or {}).get(chosen, stats["pool"])
        stats["municipality"] = chosen
        stats.pop("pools", None)
        if "first_notice_due" in stats:
            codes = [c for c in stats["first_notice_due"]["codes"] if c["municipality"] == chosen]
            stats["first_notice_due"] = {"count": len(codes), "codes": codes}
    finish(_Stats(stats), as_json, f"Ledger {stats['ledger']}")


@ledger_app.command("log")
@handle_errors(left="")
def ledger_log(
    ledger: LedgerOpt,
    last: Annotated[
        int | None,
        typer.Option("--last", min=1, help="Show only the latest N records.", show_default=False),
    ] = None,
    as_json: JsonOpt = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show the office's reasons for code changes (they may hold personal data), "
            "and tracebacks of unexpected errors.",
        ),
    ] = False,
) -> None:
    """Show the audit trail: one hash-chained record per ledger transaction.

    Each record says when, who (operator), which command, the SHA-256 of the files
    read and written, and the counts by status; its hash covers all that and the
    hash of the record before it. The chain's hashes and links are checked here;
    `rrnet verify --ledger` also checks every segment against its record. Note the
    latest hash somewhere else: a trail rewritten from scratch would not end in it.

    Example: `rrnet ledger log --ledger ledger --last 20`
    """
    store = open_ledger(ledger)
    result = _Log(store.location, store.audit_log(), last=last, verbose=verbose)
    if not as_json:
        out.print(result.table())
    finish(result, as_json, f"Audit trail of {result.ledger}", after=result.lines())


@dataclass
class _Relocated:
    """What ``rrnet ledger relocate`` did (``folder.Relocation``)."""

    ledger: str
    ledger_id: str
    moved_from: str | None
    transaction: int | None
    original_in_place: bool
    closed_original: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "ledger": self.ledger,
            "ledger_id": self.ledger_id,
            "relocated": self.transaction is not None,
            "from": self.moved_from,
            "transaction": self.transaction,
            "original_in_place": self.original_in_place,
            "closed_original": self.closed_original,
        }

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [
            ("ledger", self.ledger),
            ("ledger id", self.ledger_id),
            ("bound before to", self.moved_from or "- (never bound: a ledger from before)"),
            ("recorded as transaction", self.transaction),
        ]

    def lines(self) -> list[str]:
        lines = [
            f"This folder is now the ledger {self.ledger_id}. Any other copy of it (the "
            "folder it was bound to before, backups, copies made by hand) must be retired: "
            "never assign, change or notify with one again. A folder cannot see its copies "
            "elsewhere, so two copies both relocated would both work and draw codes without "
            "seeing each other's (docs/reliability.md)."
        ]
        if self.closed_original:
            lines.append(
                f"{self.moved_from} is closed: it refuses every write and says where the "
                "ledger went; it can still be read (stats, log, verify)."
            )
        if self.original_in_place:
            lines.append(
                f"warning: {self.moved_from} still holds this ledger and still accepts writes. "
                "Retire it now: rename or remove that folder (it then refuses every write), "
                "or if you meant a second ledger, remove this folder and use `rrnet ledger "
                "copy` instead."
            )
        return lines


@ledger_app.command("relocate")
@handle_errors
def ledger_relocate(
    ctx: typer.Context,
    ledger: LedgerOpt,
    close_original: Annotated[
        bool,
        typer.Option(
            "--close-original",
            help="When the folder the ledger is bound to still holds it and accepts "
            "writes (this folder is a copy of it), close that folder for writing first "
            "(recorded in its audit trail; it stays readable). Without this, relocate "
            "refuses: two folders that both accept writes hand out second codes.",
        ),
    ] = False,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    operator: OperatorOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Make this folder the ledger after a move or a restore from backup (folder only).

    A folder ledger is bound to its folder: a folder copied, moved or restored by
    hand (cp, rsync, mv, tar) refuses every write, so that a copy can never draw
    codes beside the original. When this folder is to be the ledger from now on,
    run this once: it binds the ledger to this folder, recorded in the audit trail
    (`rrnet ledger log`), in one transaction under the lock. Every other copy of
    the ledger must then be retired. While the folder it was bound to still holds
    it and accepts writes, relocate refuses unless --close-original closes that
    folder. After a restore, first bring in the codes assigned since the backup
    was made (`rrnet ledger import`). To make a second, new ledger from an old
    one, use `rrnet ledger copy` instead.

    Example: `rrnet ledger relocate --ledger /srv/rrnet/ledger`
    """
    from rrnet_cli.errors import UsageError
    from rrnet_cli.ledger import Ledger, is_database_location

    if is_database_location(ledger):
        raise UsageError(
            "`rrnet ledger relocate` is for a folder ledger; a PostgreSQL ledger lives in "
            "its database and has no folder to bind."
        )
    done = Ledger.open(Path(ledger)).relocate(
        close_original=close_original,
        timeout=lock_timeout,
        invocation=audit_invocation(ctx, operator),
        waiting=say_waiting,
    )
    result = _Relocated(
        done.ledger,
        done.ledger_id,
        done.moved_from,
        done.transaction,
        done.original_in_place,
        done.closed_original,
    )
    if not done.changed:
        if as_json:
            finish(result, as_json, "")
        else:
            out.print(
                f"The ledger {done.ledger} is at its place already; nothing was recorded.",
                markup=False,
            )
        return
    finish(result, as_json, f"Relocated {result.ledger}", after=result.lines())


@ledger_app.command("copy")
@handle_errors(left="Nothing was written to the new ledger; the source was not changed.")
def ledger_copy(
    ctx: typer.Context,
    source: Annotated[
        str,
        typer.Argument(
            metavar="SRC",
            help="The ledger to copy: a folder, or a PostgreSQL database (as its owner).",
            show_default=False,
        ),
    ],
    target: Annotated[
        str,
        typer.Argument(
            metavar="DST",
            help="The new ledger: a folder that does not exist yet (or is empty), or a "
            "PostgreSQL database without an rrnet ledger (no schema `rrnet`).",
            show_default=False,
        ),
    ],
    move: Annotated[
        bool,
        typer.Option(
            "--move",
            help="Close SRC (a folder) once the copy is checked: it then refuses every run "
            "that writes, naming DST, so that nobody goes on assigning from it.",
        ),
    ] = False,
    operator: OperatorOpt = None,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Copy a ledger into a new one, folder to PostgreSQL or back, and check the copy.

    Every record ever made, the audit trail (each record as it was, its hash chain
    intact), the notices, the designated pools and the municipalities go across;
    the copy appends one audit record saying where it came from. SRC must pass
    its own check first. Office roles are not copied: grant them again with
    `rrnet ledger add-municipality --role`. SRC is held still (writers wait)
    while the copy runs. Use only one of the two ledgers afterwards: with --move
    a folder SRC is closed for writing (reads still work).

    Into a folder, the copy is a new ledger bound to that folder, writable at
    once (a copy made by hand with cp or rsync is not: it refuses writes).

    All or nothing: into PostgreSQL in one transaction, into a folder through a
    temporary folder renamed into place. At the end both ledgers are read again
    and compared (counts by status, audit records, notices and a content hash);
    any difference, and nothing is kept at DST (exit 1).

    Example: `rrnet ledger copy /srv/rrnet/ledger "service=rrnet-owner"`
    """
    from rrnet_cli.ledger.copy import copy_ledger
    from rrnet_cli.progress import Steps

    with Steps.for_terminal(quiet=as_json) as steps:
        result = copy_ledger(
            source,
            target,
            invocation=audit_invocation(ctx, operator),
            steps=steps,
            timeout=lock_timeout,
            move=move,
        )
    finish(result, as_json, f"Copied {result.source} to {result.target}", after=result.notes)
