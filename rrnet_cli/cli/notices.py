"""``rrnet ledger notices``: the notices issued, as the ledger recorded them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rrnet_cli.cli._common import (
    JsonOpt,
    LedgerOpt,
    VerboseOpt,
    finish,
    handle_errors,
    open_ledger,
    out,
)
from rrnet_cli.cli.ledger import ledger_app
from rrnet_cli.schema import NoticeKind

#: Notices printed on the terminal; -o FILE holds them all.
SHOWN = 50
DATE_FORMATS = ["%Y-%m-%d"]


@dataclass
class _Notices:
    ledger: str
    rows: list[dict[str, Any]]
    output: str | None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"ledger": self.ledger, "notices": len(self.rows)}
        if self.output is None:
            data["issued"] = self.rows
        else:
            data["output"] = self.output
        return data

    def summary_rows(self) -> list[tuple[str, Any]]:
        by_kind: dict[str, int] = {}
        for row in self.rows:
            key = row["kind"] + (" (reprint)" if row["reprint_reason"] else "")
            by_kind[key] = by_kind.get(key, 0) + 1
        rows: list[tuple[str, Any]] = [("notices", len(self.rows))]
        rows += [(f"  {kind}", n) for kind, n in sorted(by_kind.items())]
        rows.append(("batches", len({r["batch"] for r in self.rows})))
        if self.output:
            rows.append(("written to", self.output))
        return rows


@ledger_app.command("notices")
@handle_errors(left="")
def ledger_notices(
    ledger: LedgerOpt,
    since: Annotated[
        datetime | None,
        typer.Option(
            "--since",
            formats=DATE_FORMATS,
            metavar="YYYY-MM-DD",
            help="Only notices issued on or after this date (in Japan).",
            show_default=False,
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            "--until",
            formats=DATE_FORMATS,
            metavar="YYYY-MM-DD",
            help="Only notices issued on or before this date (in Japan).",
            show_default=False,
        ),
    ] = None,
    batch: Annotated[
        str | None,
        typer.Option(
            "--batch",
            help="Only this batch (one notify run): its id, or the beginning of it "
            "(20261208-1002) when that names one batch.",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[
        NoticeKind | None,
        typer.Option(
            "--kind", help="Only new-code notices, or only change notices.", show_default=False
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write every notice listed to this file (.csv, .parquet or .xlsx), "
            "private and Excel-safe, instead of printing them.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """List the notices issued: when, which batch and kind, for which resident and
    code, in which folder, file and page, and by whom.

    rrnet notify records every notice it prints (previews with --all are not
    notices and are not recorded). Reprints show their reason. Dates are Japan's.

    Example: `rrnet ledger notices --ledger ledger --since 2026-12-01 -o notices.xlsx`
    """
    from rrnet_cli.files import atomic_output, check_table_suffix, write_table_to
    from rrnet_cli.ledger.notices import notice_listing

    store = open_ledger(ledger)
    notices, trail = store.notice_records()
    listing = notice_listing(
        notices,
        trail,
        since=since.date() if since else None,
        until=until.date() if until else None,
        batch=batch,
        kind=kind,
    )
    if output is not None:
        suffix = check_table_suffix(output, excel=True)
        with atomic_output(output) as tmp:
            write_table_to(listing, tmp, suffix)
    result = _Notices(store.location, listing.to_dicts(), str(output) if output else None)
    if not as_json and output is None and listing.height:
        shown = listing.head(SHOWN)
        # A shared ledger's owner sees several municipalities, whose resident ids repeat.
        several = "municipality" in listing.columns and listing["municipality"].n_unique() > 1
        out.print(f"Notices issued ({listing.height})", markup=False)
        for rows in _by_batch(shown.to_dicts()):
            out.print(_notice_table(rows, several))
        if listing.height > SHOWN:
            out.print(f"... and {listing.height - SHOWN} more: -o FILE writes them all.")
    finish(result, as_json, f"Notices in {store.location}")


def _by_batch(rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows (oldest first) in runs of one batch each."""
    runs: list[list[dict[str, Any]]] = []
    for row in rows:
        if runs and runs[-1][0]["batch"] == row["batch"]:
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


def _shown_folder(folder: str | None) -> str:
    """A batch's folder as a person at this terminal would type it: relative to here
    when it lies below here (the ledger records it whole; --json gives it so)."""
    if not folder:
        return "?"
    import os

    here = os.getcwd()
    if os.path.isabs(folder) and os.path.commonpath([here, folder]) == here:
        return os.path.relpath(folder, here)
    return folder


def _notice_table(rows: list[dict[str, Any]], several: bool) -> Table:
    """One batch's notices: the batch id whole in the title (it is what --batch takes
    back), with who printed them into which folder; one line per notice below.

    A batch per table keeps the table narrow enough for an 80-column terminal; a
    long folder or operator name folds onto more lines, never loses characters.
    """
    first = rows[0]
    title = Text(f"batch {first['batch']}", style="bold")
    title.append(f"  by {first['operator'] or '?'}", style="")
    title.append(f"  into {_shown_folder(first['folder'])}", style="")
    grid = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD)
    headings = ["issued (JST)", "kind", "resident_id", "file", "page"]
    if several:
        headings.insert(2, "municipality")
    for heading in headings:
        whole = heading in ("issued (JST)", "page")
        grid.add_column(heading, no_wrap=whole, overflow="ellipsis" if whole else "fold")
    for r in rows:
        kind = r["kind"] + (f", reprint: {r['reprint_reason']}" if r["reprint_reason"] else "")
        cells = [
            r["issued_at"][:16].replace("T", " "),
            kind,
            r["resident_id"],
            r["file"] or "",
            r["page"] if r["page"] is not None else "",
        ]
        if several:
            cells.insert(2, r["municipality"])
        grid.add_row(*(escape(str(v)) for v in cells))
    return grid
