"""The ``rrnet`` command line: options in, library call, result out.

Every command is a thin wrapper: it parses options, calls one library function
and prints the result object as a Rich table, or as JSON with ``--json``.
Expected failures (``RrnetError``) become one clear message and exit code 2;
a failed check exits 1.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rrnet_cli import __version__
from rrnet_cli import code as rcode
from rrnet_cli.errors import (
    EXIT_CHECK_FAILED,
    EXIT_USAGE,
    InputRowsError,
    RrnetError,
    UsageError,
)
from rrnet_cli.progress import Steps

app = typer.Typer(
    name="rrnet",
    help=(
        "Give a municipality's foreign residents their resident record codes "
        "(住民票コード) and prove that no code is duplicated.\n\n"
        "Typical run: `rrnet ledger init LEDGER --municipality 131016`, then "
        "`rrnet assign register.csv --ledger LEDGER -o assigned.csv`, then "
        "`rrnet verify assigned.csv --ledger LEDGER`.\n\n"
        "Exit codes: 0 success, 1 a check failed, 2 bad usage or unusable input."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
ledger_app = typer.Typer(
    help="Create, fill and inspect the ledger: the set of every code ever used.",
    no_args_is_help=True,
)
app.add_typer(ledger_app, name="ledger")

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

# -- shared options ----------------------------------------------------------

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON for scripts.")]
VerboseOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Include personal data (values of bad cells) in messages, and "
        "tracebacks of unexpected errors. Off by default.",
    ),
]
LedgerOpt = Annotated[
    Path,
    typer.Option(
        "--ledger",
        "-l",
        envvar="RRNET_LEDGER",
        help="The ledger folder (made once with `rrnet ledger init`).",
        show_default=False,
    ),
]
EncodingOpt = Annotated[
    str,
    typer.Option(
        "--encoding",
        help="CSV encoding: auto (UTF-8, UTF-8 with BOM or CP932, detected), "
        "utf-8, utf-8-sig or cp932.",
    ),
]
MappingOpt = Annotated[
    Path | None,
    typer.Option(
        "--mapping",
        help="TOML file mapping your export's headers to rrnet's column names, "
        'e.g. [columns] "宛名コード" = "resident_id".',
        show_default=False,
    ),
]
MunicipalityOpt = Annotated[
    str | None,
    typer.Option(
        "--municipality",
        "-m",
        envvar="RRNET_MUNICIPALITY",
        help="6-digit local government code (全国地方公共団体コード), e.g. 131016. "
        "Defaults to the ledger's.",
        show_default=False,
    ),
]
LockTimeoutOpt = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        help="Seconds to wait while another run holds the ledger before giving up.",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def handle_errors(func: F) -> F:
    """Turn expected failures into a message and exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        verbose = bool(kwargs.get("verbose"))
        try:
            return func(*args, **kwargs)
        except RrnetError as exc:
            if as_json:
                payload: dict[str, Any] = {"ok": False, "error": exc.message}
                if isinstance(exc, InputRowsError):
                    payload["row_errors"] = exc.errors
                _emit_json(payload)
            else:
                err.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
                for line in exc.details:
                    err.print(f"  {line}", soft_wrap=True, markup=False)
            raise typer.Exit(exc.exit_code) from None
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            err.print("Interrupted: nothing was committed to the ledger.")
            raise typer.Exit(130) from None
        except Exception as exc:
            reason = _io_failure(exc)
            if reason is not None:
                message = (
                    f"a file could not be read or written ({escape(reason)}). The ledger was "
                    "left as it was before this run; free disk space or fix the path, then "
                    "run again."
                )
            else:  # a bug: say so without echoing data the exception may hold
                message = (
                    f"unexpected internal error ({type(exc).__name__}). The ledger was left "
                    "as it was before this run. "
                    + ("" if verbose else "Run again with --verbose for details.")
                )
            err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
            if verbose:
                err.print(traceback.format_exc(), markup=False)
            raise typer.Exit(EXIT_USAGE) from None

    return wrapper  # type: ignore[return-value]


def _io_failure(exc: BaseException) -> str | None:
    """The operating system's reason when ``exc`` is a failed read or write, else None.

    Polars and Arrow wrap OS errors in their own exception types; their text ends
    with the OS reason, e.g. "File too large (os error 27)".
    """
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc)
    match = re.search(r"([A-Za-z][A-Za-z ,']+) \(os error \d+\)", text)
    return match.group(1).strip() if match else None


def _table(title: str, rows: list[tuple[str, Any]]) -> Table:
    table = Table(title=escape(title), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, value in rows:
        table.add_row(escape(key), f"{value:,}" if isinstance(value, int) else escape(str(value)))
    return table


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


def _open_ledger(path: Path):
    from rrnet_cli.ledger import Ledger

    return Ledger.open(path)


def _mapping(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    from rrnet_cli.schema import load_mapping

    return load_mapping(path)


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


@app.command()
@handle_errors
def check(
    codes: Annotated[
        list[str],
        typer.Argument(
            help="One or more codes; full-width digits, spaces and hyphens are accepted."
        ),
    ],
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check resident record codes: 11 digits with the right check digit.

    Exits 0 when every code is valid, 1 when any is not (saying why).

    Example: `rrnet check 12345678903 58026173947`
    """
    results = []
    for given in codes:
        try:
            results.append({"code": rcode.validate(given), "valid": True, "reason": None})
        except rcode.InvalidCode as exc:
            results.append({"code": given, "valid": False, "reason": str(exc)})
    if as_json:
        _emit_json({"ok": all(r["valid"] for r in results), "codes": results})
    else:
        for r in results:
            if r["valid"]:
                out.print(f"{r['code']}  valid  ({rcode.format(r['code'])})", markup=False)
            else:
                out.print(f"{r['code']}  INVALID: {r['reason']}", markup=False)
    if not all(r["valid"] for r in results):
        raise typer.Exit(EXIT_CHECK_FAILED)


# -- assign ------------------------------------------------------------------


@app.command()
@handle_errors
def assign(
    export: Annotated[
        Path, typer.Argument(help="The register export: .csv or .parquet.", show_default=False)
    ],
    ledger: LedgerOpt,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the assigned register "
            "(.csv or .parquet by extension; created 0600).",
            show_default=False,
        ),
    ] = None,
    rejects: Annotated[
        Path | None,
        typer.Option(
            "--rejects",
            help="Set bad rows aside in this file (.csv/.parquet) with "
            "their reasons and go on with the rest. Without it, any bad row stops "
            "the run and nothing is written.",
            show_default=False,
        ),
    ] = None,
    encoding: EncodingOpt = "auto",
    mapping: MappingOpt = None,
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
    lock_timeout: LockTimeoutOpt = 600.0,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
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

    with Steps.for_terminal(quiet=as_json) as steps:
        result = assign_register(
            export,
            ledger=_open_ledger(ledger),
            output=output,
            rejects=rejects,
            encoding=encoding,
            mapping=_mapping(mapping),
            municipality=municipality,
            seed=seed,
            dry_run=dry_run,
            lock_timeout=lock_timeout,
            steps=steps,
            verbose=verbose,
        )
    if as_json:
        _emit_json({"ok": True, **result.to_json()})
        return
    rows: list[tuple[str, Any]] = [("rows read", result.rows_read), ("read as", result.encoding)]
    if rejects is not None:
        rows.append(("rows set aside (rejects)", result.rows_rejected))
    for reason, n in sorted(result.excluded.items()) or [("planned_move_out", 0)]:
        rows.append((f"excluded: {reason}", n))
    rows += [
        ("carried over (existing code kept)", result.carried_over),
        ("already assigned (ledger)", result.already_assigned),
        ("newly assigned", result.newly_assigned),
        ("ledger records after the run", result.ledger_records_after),
        ("time", f"{result.seconds:.2f} s"),
    ]
    title = "Dry run: nothing written" if dry_run else f"Assigned register: {result.output}"
    out.print(_table(title, rows))
    if result.rejects:
        out.print(f"Rejected rows and their reasons: {result.rejects}", markup=False)


# -- verify ------------------------------------------------------------------


@app.command()
@handle_errors
def verify(
    files: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Assigned registers (.csv/.parquet) with resident_id and resident_code columns.",
            show_default=False,
        ),
    ] = None,
    ledger: Annotated[
        Path | None,
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
    encoding: EncodingOpt = "auto",
    mapping: MappingOpt = None,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Prove that codes are valid and unique; list every violation.

    Checks format and check digit, duplicates within and across all FILES, one
    code per resident, no code on an excluded row, and with --ledger that each
    code is recorded for that resident and not retired, plus the ledger's own
    integrity. Exits 0 when clean, 1 on any violation, 2 on unusable input.

    Example: `rrnet verify assigned.csv --ledger ledger`
    """
    from rrnet_cli.verify import verify as run_verify

    with Steps.for_terminal(quiet=as_json) as steps, steps.step("Verifying"):
        result = run_verify(
            list(files or []),
            ledger=_open_ledger(ledger) if ledger else None,
            municipality=municipality,
            encoding=encoding,
            mapping=_mapping(mapping),
            verbose=verbose,
        )
    if as_json:
        _emit_json(result.to_json())
    else:
        for v in result.violations[:200]:
            where = f"{v.file} row {v.row}" if v.row is not None else v.file
            extra = f" (value {v.value!r})" if v.value is not None else ""
            out.print(f"{where}: [{v.check}] {v.message}{extra}", markup=False, soft_wrap=True)
        if len(result.violations) > 200:
            out.print(f"... and {len(result.violations) - 200} more (use --json for all)")
        for note in result.notes:
            out.print(f"note: {note}", markup=False)
        rows: list[tuple[str, Any]] = [
            ("files", len(result.files)),
            ("rows", result.rows),
            ("codes", result.codes),
        ]
        if result.ledger:
            rows.append(("ledger records checked", result.ledger_records or 0))
        rows.append(("violations", len(result.violations)))
        verdict = "OK: no violations" if result.ok else "FAILED"
        out.print(_table(f"Verify: {verdict}", rows))
    if not result.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


# -- ledger ------------------------------------------------------------------


@ledger_app.command("init")
@handle_errors
def ledger_init(
    path: Annotated[
        Path,
        typer.Argument(
            help="Folder to create (must not exist yet, or be empty).", show_default=False
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
        _emit_json({"ok": True, "ledger": str(path), "municipality": code})
    else:
        out.print(f"Created ledger {path} for municipality {code}.", markup=False)


@ledger_app.command("import")
@handle_errors
def ledger_import(
    source: Annotated[
        Path,
        typer.Argument(help="Codes: one per line, or a CSV/Parquet column.", show_default=False),
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
    lock_timeout: LockTimeoutOpt = 600.0,
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

    with Steps.for_terminal(quiet=as_json) as steps:
        result = import_codes(
            _open_ledger(ledger),
            source,
            column=column,
            status=Status.RETIRED if retired else Status.IMPORTED,
            lock_timeout=lock_timeout,
            steps=steps,
        )
    if as_json:
        _emit_json({"ok": True, **result.to_json()})
        return
    out.print(
        _table(
            f"Imported into {result.ledger}",
            [
                ("codes read", result.codes_read),
                ("added to the ledger", result.imported),
                ("already in the ledger", result.already_in_ledger),
                ("repeated in the file", result.repeated_in_file),
                ("status", result.status),
                ("time", f"{result.seconds:.1f} s"),
            ],
        )
    )


@ledger_app.command("stats")
@handle_errors
def ledger_stats(
    ledger: LedgerOpt,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Show how many codes the ledger holds, by status, and its size on disk.

    Example: `rrnet ledger stats --ledger ledger`
    """
    stats = _open_ledger(ledger).stats()
    if as_json:
        _emit_json(stats)
        return
    rows: list[tuple[str, Any]] = [
        ("municipality", stats["municipality"] or "-"),
        ("codes used", stats["codes_used"]),
    ]
    rows += [(f"  {status}", n) for status, n in stats["by_status"].items()]
    rows += [
        ("transactions", stats["transactions"]),
        ("segments", stats["segments"]),
        ("size on disk", _size(stats["bytes_on_disk"])),
    ]
    out.print(_table(f"Ledger {stats['ledger']}", rows))


# -- notify ------------------------------------------------------------------


@app.command()
@handle_errors
def notify(
    assigned: Annotated[
        Path,
        typer.Argument(
            help="An assigned register written by `rrnet assign` (.csv or .parquet).",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="New folder for the sheets (created 0700; must not exist or be empty).",
            show_default=False,
        ),
    ],
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
    ledger: Annotated[
        Path | None,
        typer.Option(
            "--ledger",
            "-l",
            envvar="RRNET_LEDGER",
            help="Ledger to take each code's recorded date from.",
            show_default=False,
        ),
    ] = None,
    recorded_on: Annotated[
        str | None,
        typer.Option(
            "--recorded-on",
            help="Date the codes were recorded (YYYY-MM-DD), instead of --ledger.",
            show_default=False,
        ),
    ] = None,
    notice_date: Annotated[
        str | None,
        typer.Option(
            "--notice-date",
            help="Date printed as the date of notice (YYYY-MM-DD); default today.",
            show_default=False,
        ),
    ] = None,
    include_all: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Print every row that has a code (reprints), not only newly assigned ones.",
        ),
    ] = False,
    per_resident: Annotated[
        bool,
        typer.Option(
            "--per-resident",
            help="Also write residents/<resident_id>.pdf for each sheet (never named by name).",
        ),
    ] = False,
    default_language: Annotated[
        str,
        typer.Option(
            "--default-language",
            help="Language for residents whose language and nationality say nothing usable.",
        ),
    ] = "en",
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Sheets per print-ready PDF.")
    ] = 50,
    workers: Annotated[int, typer.Option("--workers", help="Rendering processes.")] = 2,
    slow_ok: Annotated[
        bool,
        typer.Option(
            "--slow-ok", help="Render even without HarfBuzz font subsetting (about 60x slower)."
        ),
    ] = False,
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Print a Resident Record Code Notification Sheet for each newly assigned resident.

    One A4 page per resident, in Japanese and in the resident's language (their
    row's language, else their nationality's, else --default-language), sorted
    for mailing into sheets-0001.pdf, sheets-0002.pdf ..., with manifest.csv
    saying which file and page carries each resident.

    Example: `rrnet notify assigned.csv -o sheets --profile profile.toml --ledger ledger`
    """
    from datetime import date

    from rrnet_cli.doctor import check_harfbuzz_subset
    from rrnet_cli.notify import notify as run_notify
    from rrnet_cli.profile import load_profile

    harfbuzz = check_harfbuzz_subset()
    if not harfbuzz.ok and not slow_ok:
        raise UsageError(f"{harfbuzz.detail}. Install it ({harfbuzz.fix}) or pass --slow-ok.")

    def parse_day(value: str | None, option: str) -> date | None:
        if value is None:
            return None
        try:
            return date.fromisoformat(value)
        except ValueError:
            raise UsageError(f"{option} must be a date like 2026-12-01.") from None

    with Steps.for_terminal(quiet=as_json) as steps:
        result = run_notify(
            assigned,
            output,
            profile=load_profile(profile),
            ledger=_open_ledger(ledger) if ledger else None,
            recorded_on=parse_day(recorded_on, "--recorded-on"),
            notice_date=parse_day(notice_date, "--notice-date"),
            include_all=include_all,
            per_resident=per_resident,
            default_language=default_language,
            batch_size=batch_size,
            workers=workers,
            steps=steps,
        )
    if as_json:
        _emit_json({"ok": True, **result.to_json()})
        return
    rows: list[tuple[str, Any]] = [
        ("sheets", result.sheets),
        ("print-ready files", len(result.files)),
    ]
    if per_resident:
        rows.append(("per-resident files", result.per_resident))
    rows += [(f"  {language}", n) for language, n in result.by_language.items()]
    rows += [("time", f"{result.seconds:.1f} s ({result.sheets_per_second} sheets/s)")]
    out.print(_table(f"Notification sheets in {result.output}", rows))


# -- doctor ------------------------------------------------------------------


@app.command()
@handle_errors
def doctor(
    as_json: JsonOpt = False,
    verbose: VerboseOpt = False,
) -> None:
    """Check that this machine can print notification sheets, and say how to fix it.

    Checks Pango, HarfBuzz font subsetting (without it each sheet takes ~60x
    longer) and, for every notice language, that its font is installed and has a
    glyph for every character of its wording. Exits 0 when all is well, 1 when
    something is missing, printing the apt-get command that installs it.

    Example: `rrnet doctor`
    """
    from rrnet_cli.doctor import run_doctor

    report = run_doctor()
    if as_json:
        _emit_json(report.to_json())
    else:
        table = Table(show_header=True, title="rrnet doctor", title_justify="left")
        table.add_column("")
        table.add_column("check")
        table.add_column("detail")
        for check in report.checks:
            table.add_row("ok" if check.ok else "MISSING", escape(check.name), escape(check.detail))
        out.print(table)
        if report.fix:
            out.print(f"Fix (as root): {report.fix}", markup=False)
    if not report.ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


# -- sample ------------------------------------------------------------------


@app.command()
@handle_errors
def sample(
    output: Annotated[
        Path, typer.Argument(help="File to write: .csv or .parquet.", show_default=False)
    ],
    rows: Annotated[int, typer.Option("--rows", "-n", help="How many residents.")] = 300,
    headers: Annotated[
        str,
        typer.Option(
            "--headers",
            help="en (canonical names) or ja (Japanese headers as municipal systems print them).",
        ),
    ] = "en",
    encoding: Annotated[
        str, typer.Option("--encoding", help="CSV encoding: utf-8, utf-8-sig or cp932.")
    ] = "utf-8",
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

    if headers not in ("en", "ja"):
        raise typer.BadParameter("use en or ja", param_hint="--headers")
    result = write_sample(output, rows, seed=seed, headers=headers, encoding=encoding)
    if as_json:
        _emit_json(
            {
                "ok": True,
                **{k: str(v) if isinstance(v, Path) else v for k, v in result.__dict__.items()},
            }
        )
    else:
        out.print(
            f"Wrote {result.rows:,} synthetic residents to {result.path} "
            f"({result.headers} headers, {result.encoding})."
        )


def main() -> None:
    """Console-script entry point."""
    app()
