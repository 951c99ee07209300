"""What every command shares: consoles, options, error handling and the ending.

Every command ends the same way, through ``finish``: a result object that has
``to_json()`` and ``summary_rows()`` is printed as JSON (``--json``) or as a
Rich table. Expected failures (``RrnetError``) become one clear message and
their exit code in ``handle_errors``; a failed check exits 1.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from datetime import date, datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar, overload

import typer
import typer.core
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rrnet_cli.errors import (
    EXIT_CHECK_FAILED,
    EXIT_USAGE,
    InputRowsError,
    RrnetError,
)

if TYPE_CHECKING:
    from rrnet_cli.ledger import Invocation, LedgerStore

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


# A flag takes no value, so the help should show none: Typer labels every
# option with its type, which puts a misleading "<bool>" beside --json or
# --dry-run. Flags (and --help) get no label; everything else keeps its own.
_display_type_rich = typer.core.TyperOption.display_type_rich


def _no_label_for_flags(self: typer.core.TyperOption, ctx: Any) -> str | None:
    if self.is_flag:
        return None
    return _display_type_rich(self, ctx)


def _usage_name(self: typer.core.TyperArgument) -> str:
    # Typer writes a required argument as {EXPORT}; the usual form, and the one
    # the examples use, is the bare name (optional ones stay in brackets).
    name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
    return name + ("..." if self.nargs != 1 else "")


# Both hooks exist in the Typer this project pins (see pyproject); an older one
# simply keeps its own labels.
if hasattr(typer.core.TyperOption, "display_type_rich"):
    typer.core.TyperOption.display_type_rich = _no_label_for_flags  # type: ignore[method-assign]
if hasattr(typer.core.TyperArgument, "_usage_display_name"):
    typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]


# -- shared options ----------------------------------------------------------


class Encoding(StrEnum):
    """How a CSV export is encoded."""

    AUTO = "auto"
    UTF8 = "utf-8"
    UTF8_SIG = "utf-8-sig"
    CP932 = "cp932"


class OutputEncoding(StrEnum):
    """How assign's CSV output is encoded (``assign.OUTPUT_ENCODINGS``)."""

    AUTO = "auto"
    UTF8_SIG = "utf-8-sig"
    UTF8 = "utf-8"
    CP932 = "cp932"


JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON for scripts.")]
VerboseRowsOpt = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Include personal data (the values of bad cells) in messages, and "
        "tracebacks of unexpected errors. Off by default.",
    ),
]
VerboseOpt = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Show tracebacks of unexpected errors."),
]
LedgerOpt = Annotated[
    str,
    typer.Option(
        "--ledger",
        "-l",
        envvar="RRNET_LEDGER",
        help="The ledger (made once with `rrnet ledger init`): a folder, or a PostgreSQL "
        "database as a postgresql:// URL or a libpq connection string.",
        show_default=False,
    ),
]
EncodingOpt = Annotated[
    Encoding,
    typer.Option(
        "--encoding",
        help="CSV encoding: auto (UTF-8, UTF-8 with BOM or CP932, detected), "
        "utf-8, utf-8-sig or cp932.",
    ),
]
#: ``--delimiter`` values (``ingest.DELIMITERS`` and auto), checked before any work starts.
_DELIMITER_VALUES = ("auto", "comma", "tab", "semicolon", ",", "\t", "\\t", ";")


def _delimiter_value(value: str) -> str:
    if value.lower() not in _DELIMITER_VALUES:
        raise typer.BadParameter(
            f"{value!r} is not one of auto, comma, tab, semicolon (or the character: , ;)."
        )
    return value


DelimiterOpt = Annotated[
    str,
    typer.Option(
        "--delimiter",
        metavar="auto|comma|tab|semicolon",
        callback=_delimiter_value,
        help="Field separator of a text export: auto (tab for .tsv/.tab files, else "
        "comma), comma, tab or semicolon.",
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
SheetOpt = Annotated[
    str | None,
    typer.Option(
        "--sheet",
        metavar="NAME",
        help="Worksheet to read from an Excel file (default: the first).",
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
PoolOpt = Annotated[
    bool,
    typer.Option(
        "--pool",
        help="Draw the new codes only from the designated pool (`rrnet ledger designate`) "
        "for this run, as `rrnet ledger pool-mode on` does for every run. A run that "
        "needs more codes than the pool has left is refused before anything is written.",
    ),
]
OperatorOpt = Annotated[
    str | None,
    typer.Option(
        "--operator",
        metavar="NAME",
        help="Who runs this, as the ledger's audit trail records it (default: the "
        "operating-system user).",
        show_default=False,
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace output files that exist already (without it, an existing file is "
        "refused before anything is done).",
    ),
]


# -- results -----------------------------------------------------------------


class Report(Protocol):
    """A command's result: JSON for scripts, a summary table for people."""

    def to_json(self) -> dict[str, Any]: ...

    def summary_rows(self) -> list[tuple[str, Any]]: ...


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n")


def table(title: str, rows: Iterable[tuple[str, Any]]) -> Table:
    """A two-column summary: name, value (integers with thousands separators)."""
    result = Table(title=escape(title), show_header=False, title_justify="left")
    result.add_column(style="bold")
    result.add_column(justify="right")
    for key, value in rows:
        result.add_row(escape(key), f"{value:,}" if isinstance(value, int) else escape(str(value)))
    return result


def finish(
    result: Report,
    as_json: bool,
    title: str,
    *,
    before: Iterable[str] = (),
    after: Iterable[str] = (),
    ok: bool = True,
) -> None:
    """End a command: JSON or the summary table (with plain lines around it).

    ``ok=False`` means a check failed: the output is printed, then exit 1.
    """
    if as_json:
        emit_json({"ok": ok, **result.to_json()})
    else:
        for line in before:
            out.print(line, markup=False, soft_wrap=True)
        out.print(table(title, result.summary_rows()))
        for line in after:
            out.print(line, markup=False, soft_wrap=True)
    if not ok:
        raise typer.Exit(EXIT_CHECK_FAILED)


def size_text(n: int) -> str:
    """A byte count as a person reads it: 12.3 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


# -- errors ------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


#: What a failed or interrupted command left behind, for commands that write the ledger.
LEDGER_UNCHANGED = "The ledger was left as it was before this run."


#: What a command whose work is done says when Ctrl-C comes after it (``work_done``).
_done: list[str] = []
_late: list[int] = []


def work_done(said: str = "") -> None:
    """The command's work is done (recorded, or published): from here on, Ctrl-C no
    longer turns it into a failure. Called again, it says what was done (``said``).

    Until the command ends (it may still be naming its files, and prints its
    summary), Ctrl-C is noted and said after it; afterwards, it ends rrnet at
    once, with the command's own exit code and a line saying the work was done.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if not _done:
        signal.signal(signal.SIGINT, lambda signum, _frame: _late.append(signum))
    _done[:] = [said]


def _after_the_work(code: int) -> None:
    """Ctrl-C once the command has ended, its work done: exit ``code``, not 130."""
    said = _done[0] or "it is complete"

    def stop(_signum: int, _frame: object) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # a stream closed or busy: nothing more to save
                pass
        os.write(2, f"Interrupted after the work was done: {said}.\n".encode())
        os._exit(code)

    if _late:
        err.print(f"Interrupted after the work was done: {said}.", markup=False)
    signal.signal(signal.SIGINT, stop)


@overload
def handle_errors(func: F) -> F: ...


@overload
def handle_errors(*, left: str = LEDGER_UNCHANGED) -> Callable[[F], F]: ...


def handle_errors(func: F | None = None, *, left: str = LEDGER_UNCHANGED) -> Any:
    """Turn expected failures into a message and exit code, never a traceback.

    ``left`` says what a failure leaves behind, in the command's own terms
    (``@handle_errors(left="No sheet was written.")``); plain ``@handle_errors``
    speaks of the ledger.
    """
    if func is None:
        return functools.partial(handle_errors, left=left)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        verbose = bool(kwargs.get("verbose"))
        # Ctrl-C raises KeyboardInterrupt inside the command, so that what it started
        # is cleaned up and reported below (``rrnet_cli.__main__`` handles it before
        # and after).
        main_thread = threading.current_thread() is threading.main_thread()
        before = signal.signal(signal.SIGINT, signal.default_int_handler) if main_thread else None
        _done.clear()
        _late.clear()
        code = 0
        try:
            return func(*args, **kwargs)
        except typer.Exit as exc:
            code = exc.exit_code
            raise
        except RrnetError as exc:
            if as_json:
                payload: dict[str, Any] = {"ok": False, "error": exc.message}
                if isinstance(exc, InputRowsError):
                    payload["row_errors"] = exc.errors
                emit_json(payload)
            else:
                err.print(f"[bold red]error:[/] {escape(exc.message)}", soft_wrap=True)
                for line in exc.details:
                    err.print(f"  {line}", soft_wrap=True, markup=False)
            code = exc.exit_code
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            code = 130
            err.print(f"Interrupted. {left}", markup=False)
            raise typer.Exit(130) from None
        except Exception as exc:
            # Set first: a failure after the work was done must not end as a success.
            code = EXIT_USAGE
            reason = io_failure(exc)
            if reason is not None:
                message = f"{escape(reason)}. {escape(left)} {_io_advice(exc)}"
            else:  # a bug: say so without echoing data the exception may hold
                message = f"unexpected internal error ({type(exc).__name__}). {escape(left)} " + (
                    "" if verbose else "Run again with --verbose for details."
                )
            err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
            if verbose:
                err.print(traceback.format_exc(), markup=False)
            raise typer.Exit(EXIT_USAGE) from None
        finally:
            if before is not None and _done:
                _after_the_work(code)
            elif before is not None:
                signal.signal(signal.SIGINT, before)

    return wrapper


def io_failure(exc: BaseException) -> str | None:
    """The operating system's reason when ``exc`` is a failed read or write, and the
    file it was about when known ("read-only file system: OUT/assigned.csv"), else None.

    Polars, Arrow and xlsxwriter wrap OS errors in their own exception types; their
    text holds the OS error number, e.g. "File too large (os error 27)".
    """
    from rrnet_cli.files import os_errno, os_reason, shown_path

    if isinstance(exc, OSError) and (exc.strerror or exc.errno):
        reason = os_reason(exc)
        return f"{reason}: {shown_path(exc.filename)}" if exc.filename else reason
    number = os_errno(exc)
    return None if number is None else os_reason(OSError(number, os.strerror(number)))


def _io_advice(exc: BaseException) -> str:
    """What to do about a failed read or write, by its cause."""
    from rrnet_cli.files import os_errno

    number = os_errno(exc)
    if number in (errno.ENOSPC, errno.EDQUOT):
        return "Free disk space (or write elsewhere), then run again."
    if number in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "Write to a folder you may write to (or ask for the rights), then run again."
    return "Free disk space or fix the path, then run again."


# -- the audit trail ---------------------------------------------------------

#: Options whose values may hold personal data: the command line recorded in the
#: audit trail keeps the option but not its value (the record keeps it apart).
_VALUES_NOT_RECORDED = {"reason": "(in the change record)"}


def _word(value: Any) -> str:
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def audit_invocation(ctx: typer.Context, operator: str | None) -> Invocation:
    """Who runs the command of ``ctx``, and its command line, for the audit record.

    The command line is rebuilt from what the command was given (on the command
    line or through an environment variable; defaults are left out), so it reads
    the same however rrnet was started: ``rrnet assign export.csv --ledger L -o
    out.csv``. Values that may hold personal data are left out (see
    ``_VALUES_NOT_RECORDED``), and so is a password in a PostgreSQL location.
    """
    from rrnet_cli.ledger import Invocation, check_operator, default_operator, without_password

    names: list[str] = []
    level: Any = ctx  # the parents are the framework's own Context class
    while level.parent is not None:
        names.insert(0, level.info_name or "")
        level = level.parent
    words = ["rrnet", *names]
    for param in ctx.command.params:
        name = param.name
        source = ctx.get_parameter_source(name) if name is not None else None
        if name is None or source is None or source.name not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        value = ctx.params.get(name)
        values = list(value) if isinstance(value, list | tuple) else [value]
        if param.param_type_name == "argument":
            words += [_word(v) for v in values]
            continue
        flag = max(param.opts, key=len)
        if getattr(param, "is_flag", False):
            if value:
                words.append(flag)
            continue
        for v in values:
            words += [flag, _VALUES_NOT_RECORDED.get(name, _word(v))]
    return Invocation(
        operator=default_operator() if operator is None else check_operator(operator),
        command=tuple(without_password(w) for w in words),
    )


# -- loading what options name ----------------------------------------------


def say_stale_parts(removed: list[str], not_removed: list[str], as_json: bool) -> None:
    """Tell the person at the terminal which partial outputs of stopped runs were
    removed, and which could not be (stderr; ``--json`` has them in the result)."""
    from rrnet_cli.files import stale_part_notes

    if not as_json:
        for note in stale_part_notes(removed, not_removed):
            err.print(f"note: {note}.", markup=False, soft_wrap=True)


def say_waiting(message: str) -> None:
    """Tell the person at the terminal that the run waits for another (stderr)."""
    err.print(message, markup=False, soft_wrap=True)


def open_ledger(location: str | Path, *, writes: bool = False) -> LedgerStore:
    """The ledger an option names (a folder or a PostgreSQL database), refusing
    anything that is not a ledger.

    A folder that is not its ledger's place (copied, moved or restored by hand:
    ``Ledger.misplaced``) is refused at once for a command that ``writes`` (its
    transaction would refuse it anyway, after the command's work), and read
    with a warning otherwise.
    """
    from rrnet_cli.ledger import Ledger, open_store

    store = open_store(location)
    if isinstance(store, Ledger):
        if writes:
            store.refuse_misplaced()
        else:
            problem = store.misplaced()
            if problem is not None:
                err.print(f"warning: {problem.warning()}", markup=False, soft_wrap=True)
    return store


def load_mapping(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    from rrnet_cli.schema import load_mapping as load

    return load(path)
