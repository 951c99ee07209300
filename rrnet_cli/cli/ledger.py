"""``rrnet ledger``: create, fill and inspect the ledger."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from rrnet_cli.cli._common import (
    Encoding,
    EncodingOpt,
    JsonOpt,
    LedgerOpt,
    LockTimeoutOpt,
    VerboseOpt,
    finish,
    handle_errors,
    open_ledger,
    out,
    size_text,
)
from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT

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
            ("codes used", stats["codes_used"]),
        ]
        rows += [(f"  {status}", n) for status, n in stats["by_status"].items()]
        rows += [
            ("transactions", stats["transactions"]),
            ("segments", stats["segments"]),
            ("size on disk", size_text(stats["bytes_on_disk"])),
        ]
        return rows


@ledger_app.command("init")
@handle_errors
def ledger_init(
    path: Annotated[
        Path,
        typer.Argument(
            metavar="LEDGER",
            help="Folder to create (must not exist yet, or be empty).",
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
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Create a new, empty ledger (once per municipality, then back it up).

    Every other command refuses a path that is not a ledger, so a mistyped path
    can never start a second, empty ledger.

    Example: `rrnet ledger init /srv/rrnet/ledger --municipality 131016`
    """
    from rrnet_cli.ledger import Ledger
    from rrnet_cli.schema import validate_municipality_code

    code = validate_municipality_code(municipality)
    Ledger.init(path, municipality=code)
    if as_json:
        finish(_Created(str(path), code), as_json, "")
    else:  # one sentence says it better than a table
        out.print(f"Created ledger {path} for municipality {code}.", markup=False)


@ledger_app.command("import")
@handle_errors
def ledger_import(
    source: Annotated[
        Path,
        typer.Argument(
            metavar="CODES",
            help="Codes: one per line, or a CSV/Parquet column.",
            show_default=False,
        ),
    ],
    ledger: LedgerOpt,
    column: Annotated[
        str | None,
        typer.Option(
            "--column",
            help="Column holding the codes (CSV with header, or Parquet).",
            show_default=False,
        ),
    ] = None,
    retired: Annotated[
        bool,
        typer.Option(
            "--retired",
            help="The codes are retired (never to be issued again) rather than in use elsewhere.",
        ),
    ] = False,
    encoding: EncodingOpt = Encoding.AUTO,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
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

    with Steps.for_terminal(quiet=as_json) as steps:
        result = import_codes(
            open_ledger(ledger),
            source,
            column=column,
            status=Status.RETIRED if retired else Status.IMPORTED,
            encoding=encoding.value,
            lock_timeout=lock_timeout,
            steps=steps,
        )
    finish(result, as_json, f"Imported into {result.ledger}")


@ledger_app.command("stats")
@handle_errors(left="")
def ledger_stats(
    ledger: LedgerOpt,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show how many codes the ledger holds, by status, and its size on disk.

    Example: `rrnet ledger stats --ledger ledger`
    """
    stats = open_ledger(ledger).stats()
    finish(_Stats(stats), as_json, f"Ledger {stats['ledger']}")
