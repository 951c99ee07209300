"""The ``rrnet`` command line: options in, library call, result out.

Every command is a thin wrapper: it parses options, calls one library function
and ends with ``finish``, which prints the result object as a Rich table, or as
JSON with ``--json``. Shared options, error handling and output live in
``_common``; the ``rrnet ledger`` sub-commands in ``ledger``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from rrnet_cli import __version__
from rrnet_cli import code as rcode
from rrnet_cli.cli._common import (
    DelimiterOpt,
    Encoding,
    EncodingOpt,
    JsonOpt,
    LedgerOpt,
    LockTimeoutOpt,
    MappingOpt,
    MunicipalityOpt,
    OperatorOpt,
    OutputEncoding,
    OverwriteOpt,
    PoolOpt,
    SheetOpt,
    VerboseOpt,
    VerboseRowsOpt,
    audit_invocation,
    err,
    finish,
    handle_errors,
    load_mapping,
    open_ledger,
    out,
    say_stale_parts,
    say_waiting,
    work_done,
)
from rrnet_cli.cli.ledger import ledger_app
from rrnet_cli.cli.notices import ledger_notices  # noqa: F401  (registers `rrnet ledger notices`)
from rrnet_cli.errors import DEFAULT_LOCK_TIMEOUT, EXIT_CHECK_FAILED, UsageError
from rrnet_cli.progress import Steps
from rrnet_cli.schema import ID_DOCUMENT_CHOICES, IdDocument, ReprintReason, id_document_kind

app = typer.Typer(
    name="rrnet",
    help=(
        "Give a municipality's foreign residents their resident record codes "
        "(住民票コード) and prove that no code is duplicated.\n\n"
        "Typical run: `rrnet ledger init LEDGER --municipality 131016`, then "
        "`rrnet assign register.csv --ledger LEDGER -o assigned.csv`, then "
        "`rrnet notify assigned.csv --ledger LEDGER --profile profile.toml -o sheets`, then "
        "`rrnet verify assigned.csv --ledger LEDGER`.\n\n"
        "Exit codes: 0 success, 1 a check failed, 2 bad usage or unusable input."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
app.add_typer(ledger_app, name="ledger")

#: The one form dates take on the command line.
DATE_FORMATS = ["%Y-%m-%d"]


def version_callback(value: bool) -> None:
    if value:
        out.print(f"rrnet {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
) -> None:
    """rrnet: resident record codes for foreign residents."""


# -- check -------------------------------------------------------------------


@dataclass
class CheckResult:
    """Each code given to ``rrnet check``, with why it is not valid."""

    codes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c["valid"] for c in self.codes)

    def to_json(self) -> dict[str, Any]:
        return {"codes": self.codes}

    def summary_rows(self) -> list[tuple[str, Any]]:
        valid = sum(c["valid"] for c in self.codes)
        return [("valid", valid), ("not valid", len(self.codes) - valid)]

    def lines(self) -> list[str]:
        return [
            f"{c['code']}  valid  ({rcode.format(c['code'])})"
            if c["valid"]
            else f"{c['code']}  INVALID: {c['reason']}"
            for c in self.codes
        ]


@app.command()
@handle_errors(left="")
def check(
    codes: Annotated[
        list[str],
        typer.Argument(
            metavar="CODE",
            help="One or more codes; full-width digits, spaces and hyphens are accepted.",
        ),
    ],
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check resident record codes: 11 digits with the right check digit.

    Exits 0 when every code is valid, 1 when any is not (saying why).

    Example: `rrnet check 12345678903 58026173947`
    """
    result = CheckResult()
    for given in codes:
        try:
            result.codes.append({"code": rcode.validate(given), "valid": True, "reason": None})
        except rcode.InvalidCode as exc:
            result.codes.append({"code": given, "valid": False, "reason": str(exc)})
    finish(result, as_json, "Codes checked", before=result.lines(), ok=result.ok)


# -- assign ------------------------------------------------------------------


class ListsFormat(StrEnum):
    """How notify writes manifest and mailing list."""

    CSV = "csv"
    XLSX = "xlsx"


class OutputHeaders(StrEnum):
    """Which header names ``rrnet assign`` writes."""

    CANONICAL = "canonical"
    ORIGINAL = "original"


@app.command()
@handle_errors
def assign(
    ctx: typer.Context,
    export: Annotated[
        Path,
        typer.Argument(
            metavar="EXPORT",
            help="The register export: .csv, .parquet or Excel (.xlsx, .xlsm, .xls, .ods).",
            show_default=False,
        ),
    ],
    ledger: LedgerOpt,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the assigned register (.csv, .parquet or .xlsx by extension; "
            "created 0600; an existing file is refused unless --overwrite). Required, unless "
            "--dry-run.",
            show_default=False,
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            help="Set bad rows aside in this file (.csv/.parquet/.xlsx) with "
            "their reasons and go on with the rest. Without it, any bad row stops "
            "the run and nothing is written.",
            show_default=False,
        ),
    ] = None,
    departed: Annotated[
        Path | None,
        typer.Option(
            "--departed",
            help="Write here (.csv/.parquet/.xlsx) the residents the ledger holds a code "
            "for in this municipality whom the export no longer lists: moved away, died "
            "or removed, or the wrong export. The summary always counts them.",
            show_default=False,
        ),
    ] = None,
    encoding: Annotated[
        Encoding,
        typer.Option(
            "--encoding",
            help="The export's CSV encoding: auto (UTF-8, UTF-8 with BOM or CP932, "
            "detected), utf-8, utf-8-sig or cp932. The output's is --output-encoding.",
        ),
    ] = Encoding.AUTO,
    output_encoding: Annotated[
        OutputEncoding,
        typer.Option(
            "--output-encoding",
            help="The CSV output's encoding: auto (with --headers original the export's "
            "own, e.g. CP932 in, CP932 with CRLF out; else UTF-8 with a BOM, which Excel "
            "reads), utf-8-sig, utf-8 or cp932.",
        ),
    ] = OutputEncoding.AUTO,
    headers: Annotated[
        OutputHeaders,
        typer.Option(
            "--headers",
            help="Header names of the output: canonical (resident_id, name, ...) or "
            "original (the export's own, e.g. 宛名番号, with 住民票コード for the code), "
            "to load the result back into the register system: values are then written "
            "exactly as the export had them, without the ' that keeps Excel from running "
            "a cell such as =SUM(A1) or -1 as a formula.",
        ),
    ] = OutputHeaders.CANONICAL,
    delimiter: DelimiterOpt = "auto",
    mapping: MappingOpt = None,
    sheet: SheetOpt = None,
    municipality: MunicipalityOpt = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed",
            help="FOR TESTS ONLY: draw codes from a seeded, predictable "
            "generator instead of the operating system's secure random source. "
            "Never use it for real residents.",
            show_default=False,
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Do everything but write: no output file, no ledger change."
        ),
    ] = False,
    pool: PoolOpt = False,
    overwrite: OverwriteOpt = False,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    operator: OperatorOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseRowsOpt = False,
) -> None:
    """Give every eligible resident of EXPORT a resident record code.

    Residents with a planned move-out get none (excluded); residents arriving with
    a valid code keep it (carried over); residents the ledger already knows keep
    theirs (already assigned); everyone else gets a new random code, recorded in
    the ledger in one all-or-nothing transaction. The output keeps every input row
    and column and adds resident_code, code_status and exclusion_reason.

    Example: `rrnet assign register.csv --ledger ledger -o assigned.csv`
    """
    from rrnet_cli.assign import assign_register

    invocation = audit_invocation(ctx, operator)
    with Steps.for_terminal(quiet=as_json) as steps:
        result = assign_register(
            export,
            ledger=open_ledger(ledger, writes=not dry_run),
            output=output,
            rejects=rejects,
            departed=departed,
            encoding=encoding.value,
            output_encoding=output_encoding.value,
            headers=headers.value,
            mapping=load_mapping(mapping),
            municipality=municipality,
            seed=seed,
            dry_run=dry_run,
            lock_timeout=lock_timeout,
            steps=steps,
            verbose=verbose,
            sheet=sheet,
            delimiter=delimiter,
            invocation=invocation,
            pool=pool,
            waiting=say_waiting,
            overwrite=overwrite,
        )
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False, soft_wrap=True)
    say_stale_parts(result.stale_parts_removed, result.stale_parts_not_removed, as_json)
    finish(
        result,
        as_json,
        "Dry run: nothing written" if dry_run else f"Assigned register: {result.output}",
        after=[
            *([f"Rejected rows and their reasons: {result.rejects}"] if result.rejects else []),
            *(
                [f"Residents no longer in the export: {result.departed_file}"]
                if result.departed_file
                else []
            ),
        ],
    )


# -- change ------------------------------------------------------------------


def _id_document(value: str) -> IdDocument:
    """--id-document: any spelling a requests file may use (``schema.id_document_kind``)."""
    kind = id_document_kind(value)
    if kind is None:
        raise typer.BadParameter(
            f"{value!r} is not a kind of ID rrnet knows; use one of {ID_DOCUMENT_CHOICES}."
        )
    return kind


@app.command()
@handle_errors
def change(
    ctx: typer.Context,
    ledger: LedgerOpt,
    resident: Annotated[
        str | None,
        typer.Option(
            "--resident",
            metavar="ID",
            help="The resident_id whose code changes (one change).",
            show_default=False,
        ),
    ] = None,
    id_document: Annotated[
        IdDocument | None,
        typer.Option(
            "--id-document",
            metavar="KIND",
            parser=_id_document,
            help="The resident asked for the change and showed this kind of official ID "
            "(its number is not recorded): residence_card, "
            "special_permanent_resident_certificate, passport, drivers_license, "
            "health_insurance_card, my_number_card or other, or its Japanese name as a "
            "requests file may give it (在留カード, 旅券, マイナンバーカード ...).",
            show_default=False,
        ),
    ] = None,
    by_office: Annotated[
        bool,
        typer.Option(
            "--by-office",
            help="The office changes the code on its own authority (職権), e.g. after a "
            "notice went astray. Needs --reason.",
        ),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            metavar="TEXT",
            help="Why the office changes the code. Kept in the ledger's audit trail, never "
            "printed.",
            show_default=False,
        ),
    ] = None,
    requests: Annotated[
        Path | None,
        typer.Option(
            "--requests",
            metavar="FILE",
            help="A batch instead of --resident: one request per row (.csv, .xlsx or "
            ".parquet) with resident_id and either id_document (the kind of ID shown) or "
            "reason (a change by the office).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Also write the changes (resident_id, old_code, new_code, changed_at: "
            "Japan's time with its offset, 2026-04-01T09:30:00+09:00) to this .csv, "
            ".parquet or .xlsx file (created 0600, after the ledger commits; an existing "
            "file is refused unless --overwrite).",
            show_default=False,
        ),
    ] = None,
    municipality: MunicipalityOpt = None,
    encoding: EncodingOpt = Encoding.AUTO,
    delimiter: DelimiterOpt = "auto",
    sheet: SheetOpt = None,
    pool: PoolOpt = False,
    overwrite: OverwriteOpt = False,
    lock_timeout: LockTimeoutOpt = DEFAULT_LOCK_TIMEOUT,
    operator: OperatorOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseRowsOpt = False,
) -> None:
    """Change a resident's code: retire it and draw a new one at random (住民票コードの変更).

    On request, the resident shows official ID (--id-document KIND); or the office
    changes the code on its own authority (--by-office --reason TEXT). The new code
    is drawn like every new code: never the old one nor any code ever used, and
    nobody chooses it. Retiring and drawing are one ledger transaction, whose
    audit record keeps the old and new code, the reason, the kind of ID (not its
    number) and the operator. A resident the ledger does not know, one without an
    active code, or a resident twice in one batch refuses the whole run: nothing
    is changed.

    Example: `rrnet change --resident 000123 --id-document residence_card --ledger ledger`
    """
    from rrnet_cli.change import ChangeRequest, change_codes, read_requests
    from rrnet_cli.schema import ChangeReason

    invocation = audit_invocation(ctx, operator)
    if requests is not None:
        if resident is not None or id_document is not None or by_office or reason is not None:
            raise UsageError(
                "--requests FILE gives every request in its rows; leave out --resident, "
                "--id-document, --by-office and --reason."
            )
        batch = read_requests(
            requests, encoding=encoding.value, sheet=sheet, delimiter=delimiter, verbose=verbose
        )
    elif resident is None:
        raise UsageError("Give --resident ID for one change, or --requests FILE for a batch.")
    else:
        if by_office and id_document is not None:
            raise UsageError(
                "Give --id-document (the resident asked) or --by-office (the office "
                "decided), not both."
            )
        if reason is not None and not by_office:
            raise UsageError("--reason goes with --by-office (a change by the office).")
        if by_office and not (reason or "").strip():
            raise UsageError(
                "--by-office needs --reason TEXT: why the office changes the code (kept in "
                "the ledger's audit trail)."
            )
        if not by_office and id_document is None:
            raise UsageError(
                "Say how the change came about: --id-document KIND (the resident asked and "
                "showed this kind of ID) or --by-office --reason TEXT (the office decided)."
            )
        batch = [
            ChangeRequest(
                resident,
                ChangeReason.OFFICE if by_office else ChangeReason.REQUEST,
                id_document=id_document,
                office_reason=reason if by_office else None,
            )
        ]
    with Steps.for_terminal(quiet=as_json) as steps:
        result = change_codes(
            open_ledger(ledger, writes=True),
            batch,
            municipality=municipality,
            output=output,
            source=requests,
            invocation=invocation,
            lock_timeout=lock_timeout,
            verbose=verbose,
            steps=steps,
            pool=pool,
            waiting=say_waiting,
            overwrite=overwrite,
        )
    for warning in result.warnings if not as_json else ():
        err.print(f"warning: {warning}", markup=False, soft_wrap=True)
    say_stale_parts(result.stale_parts_removed, result.stale_parts_not_removed, as_json)
    finish(
        result,
        as_json,
        f"Codes changed in ledger transaction {result.transaction}",
        before=result.lines(),
        after=[f"Changes written to {result.output}"] if result.output else [],
    )


# -- verify ------------------------------------------------------------------


@app.command()
@handle_errors(left="")
def verify(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="FILE",
            help="Assigned registers (.csv/.parquet/.xlsx) with resident_id and resident_code "
            "columns.",
            show_default=False,
        ),
    ] = None,
    ledger: Annotated[
        str | None,
        typer.Option(
            "--ledger",
            "-l",
            envvar="RRNET_LEDGER",
            help="Also check every code against this ledger, and the ledger's own "
            "integrity. Alone, checks only the ledger.",
            show_default=False,
        ),
    ] = None,
    municipality: MunicipalityOpt = None,
    encoding: EncodingOpt = Encoding.AUTO,
    delimiter: DelimiterOpt = "auto",
    mapping: MappingOpt = None,
    sheet: SheetOpt = None,
    as_json: JsonOpt = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Include the offending values (personal data) in the violations, and "
            "tracebacks of unexpected errors. Off by default.",
        ),
    ] = False,
) -> None:
    """Prove that codes are valid and unique; list every violation.

    Checks format and check digit, duplicates within and across all FILEs, one
    code per resident, no code on an excluded row, and with --ledger that each
    code is recorded for that resident and not retired, plus the ledger's own
    integrity. Exits 0 when clean, 1 on any violation, 2 on unusable input.

    Example: `rrnet verify assigned.csv --ledger ledger`
    """
    from rrnet_cli.verify import verify as run_verify

    with Steps.for_terminal(quiet=as_json) as steps, steps.step("Verifying"):
        result = run_verify(
            list(files or []),
            ledger=open_ledger(ledger) if ledger else None,
            municipality=municipality,
            encoding=encoding.value,
            mapping=load_mapping(mapping),
            verbose=verbose,
            sheet=sheet,
            delimiter=delimiter,
        )
    verdict = "OK: no violations" if result.ok else "FAILED"
    finish(result, as_json, f"Verify: {verdict}", before=result.lines(), ok=result.ok)


# -- notify ------------------------------------------------------------------


@app.command()
@handle_errors(left="No sheet was written, and no partial file was left behind.")
def notify(
    ctx: typer.Context,
    profile: Annotated[
        Path,
        typer.Option(
            "--profile",
            envvar="RRNET_PROFILE",
            help="Municipality profile TOML: sender details "
            "and the address block's position in mm.",
            show_default=False,
        ),
    ],
    layout: Annotated[
        Path | None,
        typer.Option(
            "--layout",
            metavar="FILE",
            help="The office's own copy of the sheet's layout.toml (every box in mm), "
            "instead of the profile's [sheet] layout or the one rrnet ships. The household "
            "and change notices keep their own layouts.",
            show_default=False,
        ),
    ] = None,
    assigned: Annotated[
        Path | None,
        typer.Argument(
            metavar="ASSIGNED",
            help="An assigned register written by `rrnet assign` (.csv, .parquet or .xlsx); "
            "for first notices, the register export will do: a row without a code gets the "
            "code the ledger drew for its resident.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="New folder for the sheets (created 0700; must not exist or be empty); "
            "with --test-page, the PDF file to write.",
            show_default=False,
        ),
    ] = Path("."),
    ledger: Annotated[
        str | None,
        typer.Option(
            "--ledger",
            "-l",
            envvar="RRNET_LEDGER",
            help="The ledger (required to print): every code is checked against it before "
            "anything prints, and the recorded dates come from it.",
            show_default=False,
        ),
    ] = None,
    recorded_on: Annotated[
        datetime | None,
        typer.Option(
            "--recorded-on",
            formats=DATE_FORMATS,
            metavar="YYYY-MM-DD",
            help="Print this date on every sheet as the date its code was recorded "
            "(記載日), instead of each code's date in the ledger. It cannot be after today "
            "in Japan. --ledger is still needed: every code is checked against it.",
            show_default=False,
        ),
    ] = None,
    notice_date: Annotated[
        datetime | None,
        typer.Option(
            "--notice-date",
            formats=DATE_FORMATS,
            metavar="YYYY-MM-DD",
            help="Date printed as the date of notice; default today.",
            show_default=False,
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            help="Set aside in this file (.csv/.parquet/.xlsx) the sheets that cannot be "
            "printed (a value too long for its box even at the smallest size, or a "
            "character no font of the form has), and the rows whose code was changed "
            "(rrnet change) since the file was written, with resident_id, field and "
            "reason, and print the rest. Without it, such a sheet or row stops the run and "
            "nothing is printed.",
            show_default=False,
        ),
    ] = None,
    include_all: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Preview: print every row that has a code, each page marked 見本 / SAMPLE; "
            "nothing is recorded as issued.",
        ),
    ] = False,
    changes: Annotated[
        bool,
        typer.Option(
            "--changes",
            help="Print change notices (住民票コード変更通知書) instead: for each resident of "
            "the file whose code was changed (rrnet change) and is still their code, and "
            "who has had no change notice for it yet. The notice gives the new code and "
            "the old one, and says the old code is no longer valid. The file needs "
            "resident_id, name, birth_date, sex and address (a register export will do); "
            "the codes come from the ledger.",
        ),
    ] = False,
    reprint: Annotated[
        ReprintReason | None,
        typer.Option(
            "--reprint",
            help="Reissue (再交付) the notices of the residents given with --resident, "
            "each already issued once: every page is marked 再交付 (Reissued) and today's "
            "date, and the ledger records the reprint and its reason. Refused when the "
            "profile says [sheet] reprint = false.",
            show_default=False,
        ),
    ] = None,
    residents: Annotated[
        list[str] | None,
        typer.Option(
            "--resident",
            metavar="ID",
            help="A resident_id to reprint (repeat it for several); with --reprint.",
            show_default=False,
        ),
    ] = None,
    operator: OperatorOpt = None,
    per_resident: Annotated[
        bool,
        typer.Option(
            "--per-resident",
            help="Also write residents/<resident_id>.pdf for each sheet (never named by name).",
        ),
    ] = False,
    per_household: Annotated[
        bool | None,
        typer.Option(
            "--per-household/--per-person",
            help="One envelope per household (世帯ごと): a document listing the members who "
            "get a code, continued on further pages for a large household, with the notice "
            "in Japanese and in each member's language; or one sheet and envelope per "
            "resident. Default: the profile's [sheet] mailing (person unless it says "
            "household). Members are grouped by household_id; a resident without one is a "
            "household of one.",
            show_default=False,
        ),
    ] = None,
    default_language: Annotated[
        str,
        typer.Option(
            "--default-language",
            help="Language for residents whose language and nationality say nothing usable.",
        ),
    ] = "en",
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size",
            min=1,
            help="Sheets per print-ready PDF (with --per-household: residents, whole "
            "households each).",
        ),
    ] = 50,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Rendering processes.")] = 2,
    sheet: SheetOpt = None,
    delimiter: DelimiterOpt = "auto",
    mapping: MappingOpt = None,
    lists: Annotated[
        ListsFormat,
        typer.Option(
            "--lists",
            help="Write manifest and mailing list as csv (UTF-8 with BOM) or xlsx (an Excel "
            "workbook whose cells are text: ids and postal codes keep their leading zeros "
            "when opened in Excel).",
        ),
    ] = ListsFormat.CSV,
    slow_ok: Annotated[
        bool,
        typer.Option(
            "--slow-ok", help="Render even without HarfBuzz font subsetting (about 60x slower)."
        ),
    ] = False,
    test_page: Annotated[
        bool,
        typer.Option(
            "--test-page",
            help="Write one page to hold against your window envelope before printing: "
            "the profile's window outline with a sample address, the code box (which must "
            "not show through) and millimetre rulers. Needs only --profile and -o FILE.pdf.",
        ),
    ] = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Print a Resident Record Code Notification Sheet for each resident given a code.

    A notice is issued once: notify prints each resident of the file whose code
    this ledger drew and has no first notice yet, whatever the file's
    code_status says (not a carried-over code, nor one from rrnet change: that
    is --changes), and records each notice in the ledger (batch, file, page); a
    second run on the same file prints nothing and says why. --reprint reissues
    on purpose; --all previews (marked 見本 / SAMPLE, recorded nowhere).

    One A4 page per resident, in Japanese and in the resident's language (their
    row's language, else their nationality's, else --default-language), sorted
    for mailing into sheets-0001.pdf, sheets-0002.pdf ..., with manifest.csv
    saying which envelope, file and page carries each resident, and mailing.csv
    listing the envelopes for the post office. With --per-household, one
    document and envelope per household instead.

    Example: `rrnet notify assigned.csv -o sheets --profile profile.toml --ledger ledger`
    """
    from rrnet_cli.doctor import check_harfbuzz_subset
    from rrnet_cli.notify import notify as run_notify
    from rrnet_cli.profile import load_profile

    harfbuzz = check_harfbuzz_subset()
    if not harfbuzz.ok and not slow_ok:
        raise UsageError(f"{harfbuzz.detail}. Install it ({harfbuzz.fix}) or pass --slow-ok.")
    office = _with_layout(load_profile(profile), layout)
    if test_page:
        _write_test_page(office, output)
        return
    if assigned is None or output == Path("."):
        raise UsageError(
            "Give the assigned register to print and -o FOLDER for the sheets "
            "(or --test-page -o FILE.pdf for the window test page)."
        )
    with Steps.for_terminal(quiet=as_json) as steps:
        result = run_notify(
            assigned,
            output,
            profile=office,
            ledger=open_ledger(ledger, writes=True) if ledger else None,
            recorded_on=recorded_on.date() if recorded_on else None,
            notice_date=notice_date.date() if notice_date else None,
            include_all=include_all,
            per_resident=per_resident,
            per_household=per_household,
            reprint=reprint,
            residents=tuple(residents or ()),
            invocation=audit_invocation(ctx, operator),
            changes=changes,
            default_language=default_language,
            batch_size=batch_size,
            workers=workers,
            rejects=rejects,
            steps=steps,
            sheet=sheet,
            delimiter=delimiter,
            mapping=load_mapping(mapping),
            lists=lists.value,
            settled=work_done,
        )
    work_done(_what_notify_did(result))
    _say_notify(result, as_json)


def _what_notify_did(result: Any) -> str:
    """notify's work in a few words, for a Ctrl-C that comes once it is done."""
    if result.recovered:
        return "the sheets of an earlier run were handed over"
    if result.nothing_to_print:
        return "nothing to print"
    if result.batch is not None:
        return (
            f"{result.sheets} notice(s) recorded (batch {result.batch}), sheets in {result.output}"
        )
    return f"{result.sheets} sheet(s) in {result.output}"


def _say_notify(result: Any, as_json: bool) -> None:
    """notify's ending. Notices recorded whose sheets nobody was given (a run killed
    before it named its folder, whose folder could not be handed over) are a warning
    on every run and exit code 1, even when the run itself did all it had to."""
    from rrnet_cli.notify import stranded_warning

    ok = not result.stranded
    if as_json:
        finish(result, as_json, "", ok=ok)
        return
    for line in [result.recovered, *result.handed_over]:
        if line:
            out.print(f"{line}.", markup=False, soft_wrap=True)
    for note in result.notes:
        err.print(f"note: {note}", markup=False)
    if result.nothing_to_print:
        out.print(f"Nothing to print: {result.nothing_to_print}. No folder was made.", markup=False)
    elif not result.recovered:
        finish(result, as_json, f"Notification sheets in {result.output}")
    for stranded in result.stranded:
        err.print(f"[bold red]warning:[/] {escape(stranded_warning(stranded))}.", soft_wrap=True)
    if not ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


def _with_layout(profile: Any, layout: Path | None) -> Any:
    """The profile with --layout as its sheet layout; the layout is read and checked
    against the profile's window here, before anything is laid out."""
    import dataclasses

    from rrnet_cli.form import load_layout

    if layout is not None:
        profile = dataclasses.replace(profile, layout_file=layout.absolute())
    load_layout(profile.layout_file, profile)
    return profile


def _write_test_page(profile: Any, output: Path) -> None:
    from rrnet_cli.files import atomic_output
    from rrnet_cli.form import render_test_page

    if output.suffix.lower() != ".pdf":
        raise UsageError("With --test-page, -o names the PDF to write, e.g. -o test-page.pdf.")
    data = render_test_page(profile)
    with atomic_output(output) as tmp:
        tmp.write_bytes(data)
    out.print(
        f"Window test page: {output}. Print it on the sheets' paper, fold it as they will "
        "be folded and hold it in an envelope: only the solid frame may show.",
        markup=False,
    )


# -- doctor ------------------------------------------------------------------


@app.command()
@handle_errors(left="")
def doctor(
    register: Annotated[
        Path | None,
        typer.Option(
            "--register",
            metavar="FILE",
            help="Also check a register export (.csv, .xlsx or .parquet, read as assign "
            "reads it): report each script its names and addresses are written in that no "
            "font of the form has, with example code points and the number of residents "
            "affected (never a name).",
            show_default=False,
        ),
    ] = None,
    encoding: EncodingOpt = Encoding.AUTO,
    delimiter: DelimiterOpt = "auto",
    sheet: SheetOpt = None,
    mapping: MappingOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check that this machine can print notification sheets, and say how to fix it.

    Checks Pango, HarfBuzz font subsetting (without it each sheet takes ~60x
    longer) and, for every notice language, that its font is installed and has a
    glyph for every character of its wording. With --register FILE, also that the
    form's fonts cover every script of the register's names and addresses. Exits 0
    when all is well, 1 when something is missing (a library, a font, or a script
    of the register's names: those residents' sheets cannot be printed), printing
    the apt-get command that installs what a package can.

    Example: `rrnet doctor --register export.csv`
    """
    from rrnet_cli.doctor import run_doctor

    report = run_doctor(
        register,
        encoding=encoding.value,
        sheet=sheet,
        delimiter=delimiter,
        mapping=load_mapping(mapping),
    )
    finish(
        report,
        as_json,
        "rrnet doctor",
        after=[f"Fix (as root): {report.fix}"] if report.fix else [],
        ok=report.ok,
    )


# -- sample ------------------------------------------------------------------


class Headers(StrEnum):
    """Which header names a synthetic export uses."""

    EN = "en"
    JA = "ja"


class SampleEncoding(StrEnum):
    """How a synthetic CSV export is encoded."""

    UTF8 = "utf-8"
    UTF8_SIG = "utf-8-sig"
    CP932 = "cp932"


@app.command()
@handle_errors(left="No file was written.")
def sample(
    output: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="File to write: .csv or .parquet.", show_default=False),
    ],
    rows: Annotated[int, typer.Option("--rows", "-n", min=0, help="How many residents.")] = 300,
    headers: Annotated[
        Headers,
        typer.Option(
            "--headers",
            help="en (canonical names) or ja (Japanese headers as municipal systems print them).",
        ),
    ] = Headers.EN,
    encoding: Annotated[
        SampleEncoding, typer.Option("--encoding", help="CSV encoding: utf-8, utf-8-sig or cp932.")
    ] = SampleEncoding.UTF8,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Same seed, same file.", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Write a realistic synthetic register export for demos and tests.

    Multinational names (with diacritics where the encoding allows), households,
    about 3% planned move-outs and 5% residents arriving with a code.
    No real person's data.

    Example: `rrnet sample demo.csv --rows 1000 --headers ja --encoding cp932`
    """
    from rrnet_cli.sample import write_sample

    result = write_sample(output, rows, seed=seed, headers=headers.value, encoding=encoding.value)
    if as_json:
        finish(result, as_json, "")
    else:  # one sentence says it better than a table
        out.print(
            f"Wrote {result.rows:,} synthetic residents to {escape(str(result.path))} "
            f"({result.headers} headers, {result.encoding})."
        )


def main() -> None:
    """Console-script entry point."""
    app()
