"""Writing files that hold personal data: private (0600), atomic, Excel-safe.

Every output goes to a temporary file beside its destination, created 0600
whatever the umask, is flushed to disk, and only then renamed into place: a
reader sees the old file, no file, or the complete new one, never a truncated
one.

A temporary file is named ``.NAME.rrnet-HOST-PID-XXXXXXXX.part`` (NAME the
destination's, HOST and PID the writing run's), so that a run killed before it
could remove its own is recognised later: ``remove_stale_parts`` removes those
in the folders a run writes to (whatever output they were for) of runs on this
machine that are no longer alive, and never one a live run (of this or another
machine) is writing, nor any file not named so.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import socket
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rrnet_cli.errors import RrnetError, UsageError

if TYPE_CHECKING:  # imported where used, so sheet-rendering workers never load Polars
    import polars as pl

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700

#: Characters that make Excel (and LibreOffice) read a cell as a formula or
#: command, plus the apostrophe itself so that neutralising can be undone.
_FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def host_name() -> str:
    """This machine's name as a temporary file's name carries it (letters, digits, _)."""
    return "".join(c if c.isalnum() else "_" for c in socket.gethostname()) or "host"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is running (another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


_PART_MARK = ".rrnet-"
#: A temporary file of an older rrnet: ``.NAME.`` + 8 random characters + ``.part``.
_OLD_PART = re.compile(r"[a-z0-9_]{8}\.part")
#: A temporary file's or folder's name: its destination's name is the first group.
_PART_NAME = re.compile(r"\.(.+)\.rrnet-(?:[A-Za-z0-9_]+-)?\d+-[^/]*\.part")


def part_prefix(destination: Path) -> str:
    """How the name of this run's temporary file for ``destination`` begins."""
    return f".{Path(destination).name}{_PART_MARK}{host_name()}-{os.getpid()}-"


def shown_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a person knows it: a temporary file or folder of a run is named
    by its destination (``OUT/.assigned.csv.rrnet-host-12-ab.part`` is
    ``OUT/assigned.csv``)."""
    parts = Path(path).parts
    return str(Path(*[m.group(1) if (m := _PART_NAME.fullmatch(p)) else p for p in parts]))


@dataclass
class StaleParts:
    """What ``remove_stale_parts`` found: removed, and left in place with the reason."""

    removed: list[str] = field(default_factory=list)
    not_removed: list[str] = field(default_factory=list)


def stale_part_notes(removed: Iterable[str], not_removed: Iterable[str]) -> list[str]:
    """One line for a person per partial output of a stopped run found."""
    return [
        f"removed {p}, a partial output (personal data) left by an earlier run that was stopped"
        for p in removed
    ] + [f"not removed: {p}" for p in not_removed]


#: A temporary file of a run: ``.NAME.rrnet-HOST-PID-XXXXXXXX.part`` (the random
#: part as ``tempfile.mkstemp`` makes it). Stricter than ``_PART_NAME``, which only
#: names files and folders for a person and also reads older forms: only a name
#: that says exactly which machine and process wrote it may be removed.
_RUN_PART = re.compile(r"\.(?P<name>.+)\.rrnet-(?P<host>[^-/]+)-(?P<pid>\d+)-[a-z0-9_]{8}\.part")


def find_stale_parts(folders: Iterable[Path]) -> list[Path]:
    """The temporary files in ``folders`` that stopped runs of this machine left.

    Whatever destination a file was for: its name says it is an rrnet run's
    temporary file (``.NAME.rrnet-HOST-PID-XXXXXXXX.part``), written on this
    machine by a run that is no longer alive. A file of a live run or of
    another machine, a folder (notify's, which notify itself recovers) and any
    other file are never among them.
    """
    host = host_name()
    stale: list[Path] = []
    seen: set[Path] = set()
    for folder in folders:
        folder = Path(folder)
        if folder.absolute() in seen:
            continue
        seen.add(folder.absolute())
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:  # not there, or not readable: writing there says why
            continue
        for entry in entries:
            match = _RUN_PART.fullmatch(entry.name)
            if match is None or match["host"] != host or pid_alive(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                if entry.is_file(follow_symlinks=False):
                    stale.append(folder / entry.name)
    return stale


def remove_stale_parts(destinations: Iterable[Path | None]) -> StaleParts:
    """Remove the temporary files that stopped runs left in the folders of ``destinations``.

    Every one ``find_stale_parts`` finds there, whichever output it was for (a
    run killed while writing ``assigned.csv`` leaves its part beside the
    ``assigned_retry.csv`` of the next): it is removed, or named with the reason
    it could not be. One of a live run, or of another machine's run, is left
    alone. One of an older rrnet (whose name says no run) beside a destination
    is left in place and named: whether a run still writes it cannot be told.
    """
    found = StaleParts()
    named = [Path(d) for d in destinations if d is not None]
    for part in find_stale_parts(d.parent for d in named):
        try:
            os.unlink(part)
        except FileNotFoundError:
            continue
        except OSError as exc:
            found.not_removed.append(f"{part} ({os_reason(exc)})")
            continue
        found.removed.append(str(part))
    for destination in named:
        old = glob.escape(f".{destination.name}.") + "*.part"
        for part in sorted(destination.parent.glob(old)):
            if _OLD_PART.fullmatch(part.name[len(destination.name) + 2 :]):
                found.not_removed.append(
                    f"{part} (a partial output of an older rrnet, which cannot say whether a "
                    "run still writes it; it holds personal data: delete it once no run is "
                    "writing to this folder)"
                )
    for folder in {Path(p).parent for p in found.removed}:
        with contextlib.suppress(OSError):
            fsync_dir(folder)
    return found


def os_reason(exc: OSError) -> str:
    """The operating system's reason for ``exc`` in plain words ("read-only file system").

    By its error number where it has one: Arrow's text for a full disk is "Error
    writing bytes to file. Detail: [errno 28] No space left on device".
    """
    reason = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc))
    return reason[:1].lower() + reason[1:]


@contextlib.contextmanager
def naming(path: Path | str) -> Iterator[None]:
    """Name ``path`` in an operating system's error that escapes without a file name.

    A ``write()`` on a full disk, Polars, Arrow and xlsxwriter report the error
    without the file ("No space left on device (os error 28)"): it is raised
    again as an ``OSError`` of the same number that names ``path``. An error
    that names its file already, is no operating system's, or is rrnet's own
    message, goes on as it is.
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, RrnetError):
            raise
        number = os_errno(exc)
        if number is None or (isinstance(exc, OSError) and exc.filename):
            raise
        raise OSError(number, os.strerror(number), str(path)) from exc


def refuse_existing(
    targets: Iterable[tuple[str, Path | None]], overwrite: bool, nothing: str
) -> None:
    """Refuse a file an option names that exists already, unless ``overwrite``.

    ``targets``: (option, path) pairs; ``nothing`` says what the refusal left
    undone ("Nothing was written and no code was recorded.").
    """
    if overwrite:
        return
    for option, path in targets:
        if path is not None and os.path.lexists(path) and not Path(path).is_dir():
            raise UsageError(
                f"{path} (given with {option}) already exists. Give a new file name, or pass "
                f"--overwrite to replace it. {nothing}"
            )


class PendingFile:
    """A private temporary file that becomes ``destination`` only on ``publish()``.

    Lets a run write its output first and publish it only after the ledger has
    committed: a crash in between leaves no output rather than an output whose
    codes the ledger never recorded.
    """

    def __init__(self, destination: Path) -> None:
        destination = Path(destination)
        parent = destination.parent
        if destination.is_dir():
            raise UsageError(f"{destination} is a folder; give a file name for the output.")
        if not parent.is_dir():
            raise UsageError(f"Cannot write {destination}: folder {parent} does not exist.")
        fd, tmp_name = tempfile.mkstemp(prefix=part_prefix(destination), suffix=".part", dir=parent)
        os.close(fd)
        os.chmod(tmp_name, PRIVATE_FILE)
        self.destination = destination
        self.path = Path(tmp_name)
        self.published = False

    def publish(self) -> None:
        """Flush the temporary file to disk and rename it into place."""
        with naming(self.path), open(self.path, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(self.path, PRIVATE_FILE)
        os.replace(self.path, self.destination)
        fsync_dir(self.destination.parent)
        self.published = True

    def discard(self) -> None:
        """Remove the temporary file (no-op once published)."""
        if not self.published:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def __enter__(self) -> PendingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


@contextlib.contextmanager
def atomic_output(destination: Path) -> Iterator[Path]:
    """Yield a private temporary path; on success rename it onto ``destination``.

    On any exception the temporary file is removed and ``destination`` is left
    as it was.
    """
    with PendingFile(destination) as pending:
        with naming(pending.path):
            yield pending.path
        pending.publish()


def neutralise_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Prefix an apostrophe to string cells Excel would run as formulas.

    Reversible with ``restore_formulas``: a cell that already starts with an
    apostrophe gets a second one.
    """
    import polars as pl

    exprs = []
    for name, dtype in frame.schema.items():
        if dtype == pl.String:
            col = pl.col(name)
            starts = pl.lit(False)
            for trigger in _FORMULA_TRIGGERS:
                starts = starts | col.str.starts_with(trigger)
            exprs.append(pl.when(starts).then(pl.lit("'") + col).otherwise(col).alias(name))
    return frame.with_columns(exprs) if exprs else frame


def restore_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """Undo ``neutralise_formulas`` on a frame read back from one of our CSVs."""
    import polars as pl

    exprs = []
    for name, dtype in frame.schema.items():
        if dtype == pl.String:
            col = pl.col(name)
            guarded = pl.lit(False)
            for trigger in _FORMULA_TRIGGERS:
                guarded = guarded | col.str.starts_with("'" + trigger)
            exprs.append(pl.when(guarded).then(col.str.slice(1)).otherwise(col).alias(name))
    return frame.with_columns(exprs) if exprs else frame


def write_table(frame: pl.DataFrame, destination: Path) -> None:
    """Write ``frame`` as Parquet or CSV (by extension), private and atomic.

    CSV is UTF-8 with a byte-order mark so Excel shows Japanese correctly, every
    cell is written as text (leading zeros stay in the file) and formula-like
    cells are neutralised.
    """
    suffix = check_table_suffix(destination)
    with atomic_output(destination) as tmp:
        write_table_to(frame, tmp, suffix)


def check_table_suffix(destination: Path, *, excel: bool = False) -> str:
    """The output format an extension asks for; refuse anything else.

    ``excel``: ``.xlsx`` is accepted too (where the writer supports it).
    """
    suffix = Path(destination).suffix.lower()
    allowed = (".csv", ".parquet", ".xlsx") if excel else (".csv", ".parquet")
    if suffix not in allowed:
        names = ".csv, .parquet or .xlsx" if excel else ".csv or .parquet"
        raise UsageError(f"{destination}: write {names} (the extension decides).")
    return suffix


#: The most rows and characters per cell an Excel worksheet holds.
EXCEL_MAX_ROWS = 1_048_576
EXCEL_MAX_CELL = 32_767


def write_table_to(
    frame: pl.DataFrame,
    path: Path,
    suffix: str,
    *,
    encoding: str = "utf-8-sig",
    excel_safe: bool = True,
) -> None:
    """Write ``frame`` to an already private ``path`` as ``.csv``, ``.parquet`` or ``.xlsx``.

    CSV is UTF-8 with a byte-order mark (what Excel reads correctly), UTF-8
    without one (``encoding="utf-8"``), or CP932 with CRLF line ends
    (``encoding="cp932"``) for register systems that read nothing else; a value
    CP932 cannot hold stops the write with its row and column. ``excel_safe``:
    a text cell Excel would run as a formula gets a ``'`` before it
    (``neutralise_formulas``); without it every value is written as it is, for
    a file that goes back into a register system rather than into Excel.
    """
    with naming(path):
        _write_table_to(frame, path, suffix, encoding, excel_safe)


def os_errno(exc: BaseException) -> int | None:
    """The operating system's error number behind ``exc``, however it was wrapped."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno:
            return seen.errno
        match = re.search(r"\(os error (\d+)\)|\[Errno (\d+)\]", str(seen))
        if match is not None:
            return int(match.group(1) or match.group(2))
        seen = seen.__cause__ or seen.__context__
    return None


def _write_table_to(
    frame: pl.DataFrame, path: Path, suffix: str, encoding: str, excel_safe: bool
) -> None:
    import polars as pl

    def text_of(frame: pl.DataFrame) -> pl.DataFrame:
        text = frame.with_columns(pl.all().cast(pl.String))
        return neutralise_formulas(text) if excel_safe else text

    if suffix == ".parquet":
        frame.write_parquet(path, compression="zstd")
    elif suffix == ".xlsx":
        _write_xlsx(text_of(frame), path)
    elif encoding == "cp932":
        text = text_of(frame)
        _check_cp932(text)
        data = text.write_csv(quote_style="always", null_value="", line_terminator="\r\n")
        with open(path, "wb") as handle:
            handle.write(data.encode("cp932"))
    else:
        text_of(frame).write_csv(
            path, include_bom=encoding != "utf-8", quote_style="always", null_value=""
        )


def _check_cp932(text: pl.DataFrame) -> None:
    """Refuse, naming the first cells, values that CP932 has no code for."""
    bad: list[str] = []
    for name in text.columns:
        try:
            name.encode("cp932")
        except UnicodeEncodeError:
            bad.append(f"the header {name!r}")
        for value in text[name].drop_nulls().unique().to_list():
            try:
                value.encode("cp932")
            except UnicodeEncodeError:
                rows = text.with_row_index("i").filter(text[name] == value)["i"].head(3)
                where = ", ".join(str(int(i) + 2) for i in rows)  # row 1 is the header
                bad.append(f"row {where}, {name}")
                break
        if len(bad) >= 5:
            break
    if bad:
        raise UsageError(
            "Some values have characters that CP932 (Shift_JIS) cannot hold, such as "
            "letters with diacritics (" + "; ".join(bad) + "). Write UTF-8 instead "
            "(--output-encoding utf-8-sig), or .xlsx."
        )


def _write_xlsx(text: pl.DataFrame, path: Path) -> None:
    """Write a frame of text columns as an Excel workbook in which every cell is text.

    Strings are never turned into numbers, formulas or links; every column has
    the Text format (@), so a code typed over in Excel keeps its zeros too, and
    Excel's "number stored as text" marks are switched off. The header row is
    bold, frozen and has an autofilter.
    """
    import polars as pl
    import xlsxwriter  # type: ignore[import-untyped]  # ships no type hints

    if text.height + 1 > EXCEL_MAX_ROWS:
        raise UsageError(
            f"{text.height:,} rows do not fit in an Excel worksheet "
            f"({EXCEL_MAX_ROWS - 1:,} at most); write .csv or .parquet."
        )
    longest = text.select(pl.all().str.len_chars().max()).row(0)
    too_long = [c for c, n in zip(text.columns, longest, strict=True) if (n or 0) > EXCEL_MAX_CELL]
    if too_long:
        raise UsageError(
            f"column(s) {', '.join(too_long)} hold values longer than an Excel cell takes "
            f"({EXCEL_MAX_CELL:,} characters); write .csv or .parquet."
        )
    workbook = xlsxwriter.Workbook(
        str(path),
        {
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
            # No temporary files with the register's data outside ``path``.
            "in_memory": True,
        },
    )
    try:
        sheet = workbook.add_worksheet("Sheet1")
        text.write_excel(
            workbook,
            sheet,
            table_style=None,
            dtype_formats={pl.String: "@"},
            header_format={"bold": True, "num_format": "@"},
            autofilter=True,
            autofit=text.height <= 10_000,  # autofit measures every cell
            column_widths=None if text.height <= 10_000 else 120,
            freeze_panes=(1, 0),
        )
        sheet.ignore_errors({"number_stored_as_text": f"A1:XFD{EXCEL_MAX_ROWS}"})
    finally:
        workbook.close()
