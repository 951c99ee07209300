"""Reading a register export and checking every row against the column rules.

``read_export`` turns a CSV (UTF-8, UTF-8 with BOM or CP932), Parquet or Excel
file into a frame of text columns, recognised headers renamed to their canonical
names and a ``ROW`` column holding each row's number as a spreadsheet shows it
(the CSV or Excel header is row 1, so the first person is row 2; in Parquet the
first person is row 1). ``validate_register`` then returns the frame with normalised helper
columns and a frame of errors: one line per (row, column, reason).

Nothing here prints or keeps a person's data in an error message: errors name
the file, row and column; the value is kept apart (``value``) for ``--verbose``.
"""

from __future__ import annotations

import csv
import io
import posixpath
import sys
import zipfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pycountry

from rrnet_cli import code as rcode
from rrnet_cli import schema
from rrnet_cli.dates import date_problems, parse_dates
from rrnet_cli.errors import UsageError
from rrnet_cli.files import restore_formulas
from rrnet_cli.schema import MOVE_OUT, N_RESIDENT_CODE, N_RESIDENT_ID, ROW, parsed_date_column

if TYPE_CHECKING:
    import fastexcel

ENCODINGS = ("auto", "utf-8", "utf-8-sig", "cp932")

#: ``--delimiter`` values: a name or the character itself; ``auto`` goes by the extension.
DELIMITERS = {
    "comma": ",",
    "tab": "\t",
    "semicolon": ";",
    ",": ",",
    "\t": "\t",
    "\\t": "\t",
    ";": ";",
}
#: Text exports read as tab-separated when no delimiter is given.
TAB_SUFFIXES = (".tsv", ".tab")
_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon"}

ERROR_SCHEMA = pl.Schema(
    {"row": pl.Int64, "column": pl.String, "reason": pl.String, "value": pl.String}
)

#: The date columns checked as dates (``dates.parse_dates``). A planned move-out
#: date is not among them: any value there excludes the resident from a new
#: code, which is the safe reading of a value rrnet cannot parse.
DATE_COLUMNS = ("birth_date", "stay_expiry")
EARLIEST_BIRTH = date(1880, 1, 1)


@dataclass
class Export:
    """A register export read into memory."""

    path: Path
    frame: pl.DataFrame
    encoding: str | None
    first_row: int
    #: original header -> canonical name, for the headers that were recognised
    recognised: dict[str, str] = field(default_factory=dict)
    #: the worksheet read, for an Excel workbook
    sheet: str | None = None
    #: what a person should know about how the file was read (Excel cell types)
    warnings: list[str] = field(default_factory=list)
    #: rows with every cell empty (Excel leftovers such as ``,,,,``), anywhere, dropped
    blank_rows_skipped: int = 0
    #: row errors (``ERROR_SCHEMA``) for the ids Excel stored as numbers in a column
    #: whose other ids are text with leading zeros: those numbers lost their zeros
    zero_stripped: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=ERROR_SCHEMA))

    @property
    def rows(self) -> int:
        return self.frame.height


# ---------------------------------------------------------------------------
# Reading


def read_export(
    path: Path,
    *,
    encoding: str = "auto",
    mapping: dict[str, str] | None = None,
    ours: bool = False,
    sheet: str | None = None,
    delimiter: str = "auto",
) -> Export:
    """Read a register export (or one of rrnet's own outputs when ``ours``).

    ``sheet`` names the worksheet of an Excel workbook (default: the first).
    ``delimiter`` separates the fields of a text export: ``comma``, ``tab``,
    ``semicolon`` (or the character itself), or ``auto``: tab for ``.tsv`` and
    ``.tab`` files, else comma. Parquet and Excel files have none.
    """
    path = check_input_file(path, "the export file itself")
    suffix = path.suffix.lower()
    separator = resolve_delimiter(delimiter, suffix)
    if sheet is not None and suffix not in EXCEL_SUFFIXES:
        raise UsageError(
            f"{path} is not an Excel workbook; --sheet applies to "
            f"{', '.join(EXCEL_SUFFIXES)} files only."
        )
    worksheet: Worksheet | None = None
    blank_rows = 0
    warnings: list[str] = []
    if suffix == ".parquet":
        table, warnings = _read_parquet(path)
        used_encoding, first_row = None, 1
    elif suffix in EXCEL_SUFFIXES:
        worksheet = _read_excel(path, sheet, mapping)
        table = worksheet.table
        # Excel shows the header as row 1 (or wherever it is): the first person is the next row.
        used_encoding, first_row = None, worksheet.header_row + 1
        blank_rows = worksheet.blank_rows
        warnings = worksheet.warnings
    else:
        table, used_encoding, blank_rows = _read_csv(path, encoding, separator)
        first_row = 2
    headers = table.column_names
    # rrnet's working columns are named __like_this__; an export may not use such names.
    reserved = [h for h in headers if schema.is_working_column(h)]
    if reserved:
        raise UsageError(
            f"{path}: column name(s) {', '.join(reserved)} are reserved for rrnet's own "
            "use (names that start and end with two underscores); rename them in the export."
        )
    recognised = schema.resolve_headers(headers, mapping, source=str(path))
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    # Our own columns in the export (an earlier output fed back) are recomputed.
    frame = frame.rename(recognised)
    # rrnet's own CSV and Excel outputs (they carry code_status) had formula-like
    # cells neutralised on the way out; undo that so values round-trip unchanged.
    if ours or (suffix != ".parquet" and "code_status" in frame.columns):
        frame = restore_formulas(frame)
    if not ours:
        # Status columns of an earlier output fed back in are recomputed, not kept.
        frame = frame.drop([c for c in schema.OUTPUT_COLUMNS[1:] if c in frame.columns])
    frame = frame.with_row_index(ROW, offset=first_row).with_columns(pl.col(ROW).cast(pl.Int64))
    stripped = _number_id_errors(frame, worksheet, recognised)
    # A row with every cell empty (",,,," as Excel saves a cleared row, or an empty
    # row of a workbook) is no resident: skipped and counted wherever it is. The
    # rows keep the numbers a spreadsheet shows, counted before the skip.
    data_columns = [c for c in frame.columns if c != ROW]
    if data_columns and frame.height:
        blank = frame.select(pl.all_horizontal(pl.col(data_columns).is_null())).to_series()
        skipped = int(blank.sum())
        if skipped:
            frame = frame.filter(~blank)
            blank_rows += skipped
    return Export(
        path=path,
        frame=frame,
        encoding=used_encoding,
        first_row=first_row,
        recognised=recognised,
        sheet=worksheet.name if worksheet else None,
        warnings=warnings,
        blank_rows_skipped=blank_rows,
        zero_stripped=stripped,
    )


#: The reason of a row whose id Excel stored as a number among ids stored as text
#: with leading zeros (``Export.zero_stripped``).
NUMBER_ID_REASON = (
    "Excel stored this id as a number, while the column's other ids are text with "
    "leading zeros: its leading zeros were dropped"
)
#: The id columns whose numbers among zero-padded text are refused (``NUMBER_ID_REASON``).
_ID_COLUMNS = ("resident_id", "household_id")


def _number_id_errors(
    frame: pl.DataFrame, worksheet: Worksheet | None, recognised: dict[str, str]
) -> pl.DataFrame:
    """Row errors for the number cells of a workbook's id columns that mix them with
    zero-padded text (``Worksheet.number_ids``), by the rows' spreadsheet numbers."""
    if worksheet is None or not worksheet.number_ids:
        return pl.DataFrame(schema=ERROR_SCHEMA)
    found = [
        frame.filter(mask).select(
            pl.col(ROW).alias("row"),
            pl.lit(recognised[header]).alias("column"),
            pl.lit(NUMBER_ID_REASON).alias("reason"),
            pl.col(recognised[header]).alias("value"),
        )
        for header, mask in worksheet.number_ids.items()
    ]
    return pl.concat([f.cast(ERROR_SCHEMA) for f in found]).sort("row", maintain_order=True)


def resolve_delimiter(delimiter: str, suffix: str) -> str:
    """The field separator ``--delimiter`` names for a file with extension ``suffix``.

    >>> resolve_delimiter("auto", ".tsv") == chr(9), resolve_delimiter("semicolon", ".csv")
    (True, ';')
    """
    if delimiter == "auto":
        return "\t" if suffix in TAB_SUFFIXES else ","
    separator = DELIMITERS.get(delimiter.lower() if delimiter.isalpha() else delimiter)
    if separator is None:
        raise UsageError(
            f"Unknown delimiter {delimiter!r}; use auto, comma, tab or semicolon "
            "(or the character itself: , ;)."
        )
    return separator


_BOM = b"\xef\xbb\xbf"


def check_input_file(path: Path, what: str) -> Path:
    """``path`` when it is an existing file; else a message saying what to give."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist.")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give {what}.")
    _refuse_lock_file(path)
    return path


def _refuse_lock_file(path: Path) -> None:
    """Refuse the lock file Excel keeps beside an open workbook, naming the workbook.

    Excel names it ``~$`` + the workbook's name; it is a small binary file (165
    bytes; 162 on a Mac) that starts with the length of the user's name and the
    name, padded with spaces and zeros. Picked by mistake in a file dialog, it
    would otherwise be read as a damaged workbook or a CSV.
    """
    if not path.name.startswith("~$") or len(path.name) <= 2:
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(4097)
    except OSError:
        return  # reading it says why
    if len(head) > 4096 or not head or head.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
        return
    if not 0 < head[0] < len(head):  # the length of the user's name
        return
    workbook = path.with_name(path.name[2:])
    raise UsageError(
        f"{path} is Excel's lock file for {workbook.name} (the workbook is open in Excel), "
        f"not the workbook: give {workbook} itself, or close Excel."
    )


def detect_encoding(data: bytes, requested: str, source: Path, *, head: bool = False) -> str:
    """The encoding of a text file's bytes: ``utf-8-sig``, ``utf-8`` or ``cp932``.

    ``requested`` is ``auto`` (decide from the bytes: UTF-8 with or without a
    byte-order mark, else CP932, else say so) or an encoding to check. ``head``:
    ``data`` is only the start of a longer file, so a character cut at its end
    is not an error. The one place rrnet decides how to read a text file.

    >>> detect_encoding("氏名".encode("cp932"), "auto", Path("x.csv"))
    'cp932'
    >>> detect_encoding(b"\\xef\\xbb\\xbfid", "auto", Path("x.csv"))
    'utf-8-sig'
    """
    if requested not in ENCODINGS:
        raise UsageError(f"Unknown encoding {requested!r}; use one of {', '.join(ENCODINGS)}.")
    if requested == "cp932":
        bad = _first_bad_byte(data, "cp932", head)
        if bad is not None:
            raise UsageError(
                f"{source} is not valid CP932 near line {_line_at(data, bad)}; "
                "is it UTF-8? Try --encoding utf-8."
            )
        return "cp932"
    has_bom = data.startswith(_BOM)
    bad = _first_bad_byte(data, "utf-8", head)
    if bad is None:
        return "utf-8-sig" if has_bom else ("utf-8" if requested == "auto" else requested)
    if requested != "auto" or has_bom:
        raise UsageError(
            f"{source} is not valid UTF-8 near line {_line_at(data, bad)}; is it CP932 "
            "(Shift_JIS)? Try --encoding cp932 or --encoding auto."
        )
    if _first_bad_byte(data, "cp932", head) is None:
        return "cp932"
    raise UsageError(
        f"Cannot tell the encoding of {source}: it is neither valid UTF-8 nor valid "
        "CP932 (Shift_JIS as Windows writes it). Save it as UTF-8, or pass --encoding."
    )


def _first_bad_byte(data: bytes, encoding: str, head: bool) -> int | None:
    """Offset of the first byte that is not valid ``encoding``, or None."""
    if encoding == "utf-8" and not head:
        # Arrow checks UTF-8 in place (no copy, SIMD): ten times Python's decode
        # on a register of a million rows. Only a failure is located in Python.
        offsets = pa.py_buffer(np.array([0, len(data)], dtype=np.int64).tobytes())
        blob = pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), 1, [None, offsets, pa.py_buffer(data)]
        )
        try:
            blob.cast(pa.large_string())
            return None
        except pa.ArrowInvalid:
            pass
    try:
        data.decode(encoding)
        return None
    except UnicodeDecodeError as exc:
        if head and exc.start >= len(data) - 4:  # a character cut at the end of the head
            return None
        return exc.start


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _read_csv(path: Path, encoding: str, delimiter: str = ",") -> tuple[pa.Table, str, int]:
    """Read a CSV (or TSV) as text columns, in the encoding ``detect_encoding`` finds.

    Returns the table, the encoding and how many blank rows at the end were dropped.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror}.") from None
    if raw.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
        raise UsageError(
            f"{path} is not a CSV file: it looks like an Excel workbook. Give it its real "
            f"extension ({', '.join(EXCEL_SUFFIXES)}), or save it from Excel as CSV."
        )
    if b"\x00" in raw:
        if _looks_utf16(raw):
            raise UsageError(
                f'{path} is UTF-16 text (what Excel saves as "Unicode Text"), which rrnet '
                'does not read. Save it from Excel as "CSV UTF-8" (or as .xlsx) and give that.'
            )
        raise UsageError(f"{path} does not look like a CSV file: it contains binary data.")
    used = detect_encoding(raw, encoding, path)
    if used == "cp932":
        data = raw.decode("cp932").encode("utf-8")
    else:
        data = raw[len(_BOM) :] if raw.startswith(_BOM) else raw
    table, blank_rows = _parse_csv(data, path, delimiter)
    return table, used, blank_rows


def _looks_utf16(raw: bytes) -> bool:
    """Whether ``raw`` is UTF-16 text: a UTF-16 byte-order mark, or ASCII with NULs between."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    head = raw[:4096]
    odd, even = head[1::2], head[0::2]
    return len(head) >= 4 and (odd.count(0) == len(odd) or even.count(0) == len(even))


def _parse_csv(data: bytes, path: Path, delimiter: str = ",") -> tuple[pa.Table, int]:
    """Parse UTF-8 CSV bytes as text columns; also the count of blank rows dropped at the end.

    A column without a header name is dropped when it holds no value (what a
    spreadsheet leaves behind) and refused, by its position, when it does.
    """
    if not data[:65536].strip() and not data.strip():
        raise UsageError(f"{path} is empty: a register export needs at least a header row.")
    # Arrow cannot skip a header without a line ending, and trailing blank lines
    # are not rows anyone meant.
    if not data.endswith(b"\n") or data.endswith(b"\n\n") or data.endswith(b"\n\r\n"):
        data = data.rstrip(b"\r\n") + b"\n"
    headers = _header_row(data, path, delimiter)
    names = [f"c{i}" for i in range(len(headers))]
    quoted = b'"' in data
    ragged: list[tuple[int, int]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        ragged.append((row.expected_columns, row.actual_columns))
        return "skip"

    # Arrow decodes an invalid row's text for the handler; on bytes that are not
    # UTF-8 that fails inside Arrow and would be printed as an "ignored" traceback.
    # The failure is detected below all the same, so silence the printout.
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda _unraisable: None
    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=16 << 20),
            # Blank lines are kept (read_export skips them after numbering the
            # rows) so that row numbers stay those a spreadsheet shows.
            # Without any quote character no value can hold a line break, and
            # Arrow can split the file into blocks in parallel.
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=quoted,
                invalid_row_handler=on_invalid,
                ignore_empty_lines=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
                null_values=[""],
            ),
        )
    except pa.ArrowInvalid as exc:
        raise UsageError(f"{path} cannot be read as CSV: {_strip_row_text(str(exc))}") from None
    finally:
        sys.unraisablehook = previous_hook
    if ragged:
        raise UsageError(_ragged_message(data, path, len(headers), len(ragged), delimiter))
    # A quote left open swallows every later line into one cell; Arrow accepts
    # that at the end of the file, so check: closed quotes come in pairs ("" too).
    if quoted and data.count(b'"') % 2:
        raise UsageError(_unclosed_quote_message(data, path, delimiter))
    # Rows after the last one with a value (",,,," as Excel saves cleared rows)
    # are not rows anyone meant; blank rows in between stay until read_export has
    # numbered the rows, and are skipped there.
    blank_rows = _trailing_blank_rows(table)
    if blank_rows:
        table = table.slice(0, table.num_rows - blank_rows)
    unnamed = [i for i, h in enumerate(headers) if not h]
    if unnamed:
        filled = [bool(h) or _has_value(table.column(i)) for i, h in enumerate(headers)]
        _refuse_unnamed_with_values(headers, filled, path)
        table = table.select([names[i] for i, h in enumerate(headers) if h])
        headers = [h for h in headers if h]
    return table.rename_columns(headers), blank_rows


def _has_value(column: pa.ChunkedArray) -> bool:
    """Whether any cell of a text column has a character other than white space."""
    return bool(pc.any(pc.match_substring_regex(column, r"\S")).as_py())


def _trailing_blank_rows(table: pa.Table) -> int:
    """How many rows at the end of ``table`` have every cell empty (null)."""
    total, blank, window = table.num_rows, 0, 256
    while blank < total and table.num_columns:
        start = max(0, total - blank - window)
        tail = table.slice(start, total - blank - start)
        empty = pc.is_null(tail.column(0))
        for column in tail.columns[1:]:
            empty = pc.and_(empty, pc.is_null(column))
        flags = empty.to_pylist()
        run = len(flags) - 1 - max((i for i, e in enumerate(flags) if not e), default=-1)
        blank += run
        if run < len(flags):
            break
        window *= 4
    return blank


def _unclosed_quote_message(data: bytes, path: Path, delimiter: str = ",") -> str:
    """Name the row whose double quote never closes (slow path, error only)."""
    reader = csv.reader(
        io.StringIO(data.decode("utf-8", errors="replace"), newline=""), delimiter=delimiter
    )
    records = 0
    try:
        for _ in reader:
            records += 1
    except csv.Error:
        pass
    return (
        f'{path}: row {records} opens a double quote (") that is never closed, so every '
        "line after it would be read into one cell. Close the quote, or double a quote "
        'that belongs inside a value ("").'
    )


def _header_row(data: bytes, path: Path, delimiter: str = ",") -> list[str]:
    # The data is valid UTF-8: the slice can only cut a character at its end.
    head = data[: 1 << 20].decode("utf-8", errors="ignore")
    try:
        headers = next(csv.reader(io.StringIO(head), delimiter=delimiter))
    except (StopIteration, csv.Error):
        raise UsageError(f"{path} has no readable header row.") from None
    # str.strip() also trims full-width spaces (U+3000), as Japanese headers have them.
    headers = [h.strip() for h in headers]
    if headers and headers[0].startswith("\ufeff"):
        headers[0] = headers[0][1:].strip()
    _check_delimiter(headers, path, delimiter)
    return _check_headers(headers, path)


def _check_delimiter(headers: list[str], path: Path, delimiter: str) -> None:
    """Refuse a header row that was evidently split at the wrong character.

    A header read as one column that holds tabs, semicolons or commas, or as
    columns none of which rrnet knows that each hold one: the file uses that
    character instead.
    """
    if len(headers) > 1 and any(schema.header_key(h) in schema.ALIASES for h in headers):
        return
    text = "".join(headers)
    counts = {c: text.count(c) for c in _DELIMITER_NAMES if c != delimiter}
    seen, count = max(counts.items(), key=lambda item: item[1])
    if not count or (len(headers) > 1 and count < len(headers)):
        return
    name = _DELIMITER_NAMES[seen]
    read_as = _DELIMITER_NAMES[delimiter]
    what = "one column" if len(headers) == 1 else f"{len(headers)} columns rrnet does not know"
    plural = {"comma": "commas", "tab": "tabs", "semicolon": "semicolons"}[name]
    fix = {
        "tab": "name it .tsv or pass --delimiter tab",
        "comma": "name it .csv or pass --delimiter comma",
        "semicolon": "pass --delimiter semicolon",
    }[name]
    raise UsageError(
        f"{path}: split at each {read_as}, the header row is {what} that contains "
        f"{plural}, so the file looks {name}-separated; {fix}."
    )


def _check_headers(headers: list[str], path: Path) -> list[str]:
    """``headers`` (already trimmed) when every named column has a name of its own.

    Columns without a name ("") are the caller's: dropped when they hold no
    value, refused with ``_refuse_unnamed_with_values`` when they do.
    """
    if not any(headers):
        raise UsageError(f"{path} has an empty header row.")
    seen: set[str] = set()
    for h in headers:
        if not h:
            continue
        if h in seen:
            raise UsageError(f"{path}: column {h!r} appears twice in the header row.")
        seen.add(h)
    return headers


def _refuse_unnamed_with_values(headers: list[str], filled: list[bool], path: Path) -> None:
    """Refuse, by position, each column that has values but no header name.

    Positions count from 1, as a spreadsheet does, and name a neighbouring header:
    "column 20 (after 備考)".
    """
    bad = [_column_position(headers, i) for i, h in enumerate(headers) if not h and filled[i]]
    if not bad:
        return
    if len(bad) == 1:
        raise UsageError(f"{path}: {bad[0]} has values but no header name; name it or delete it.")
    listed = ", ".join(b.removeprefix("column ") for b in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise UsageError(
        f"{path}: columns {listed}{more} have values but no header name; name them or delete them."
    )


def _column_position(headers: list[str], index: int) -> str:
    """``column 20 (after 備考)``: a column by its 1-based position and a named neighbour."""
    before = next((h for h in reversed(headers[:index]) if h), None)
    if before is not None:
        return f"column {index + 1} (after {before})"
    after = next((h for h in headers[index + 1 :] if h), None)
    return f"column {index + 1} (before {after})"


def _strip_row_text(message: str) -> str:
    # Arrow quotes the offending row after a colon; that is personal data.
    return message.split(":", 1)[0] if "columns, got" in message else message


def _ragged_message(data: bytes, path: Path, width: int, count: int, delimiter: str = ",") -> str:
    """Find the first rows whose field count differs (slow path, error only)."""
    rows = []
    # newline="": let the csv module see CR, LF and CRLF as a spreadsheet does.
    reader = csv.reader(
        io.StringIO(data.decode("utf-8", errors="replace"), newline=""), delimiter=delimiter
    )
    try:
        next(reader, None)
        for number, record in enumerate(reader, start=2):
            if not record:
                rows.append(f"row {number} is blank")
            elif len(record) != width:
                rows.append(f"row {number} has {len(record)} fields")
                if len(rows) == 5:
                    break
    except csv.Error:
        rows.append("and the file's quoting cannot be followed further")
    listed = "; ".join(rows)
    return (
        f"{path}: {count} row(s) do not have the header's {width} fields ({listed}). "
        f"A field with a {_DELIMITER_NAMES.get(delimiter, 'delimiter')} or line break inside "
        "must be in double quotes; remove blank "
        "lines (row numbers count them, as a spreadsheet does)."
    )


# Parquet columns whose integer or float type would already have eaten leading zeros.
_TEXT_ONLY = (
    "resident_code",
    "postal_code",
    "resident_id",
    "household_id",
    "residence_card_number",
)


def _read_parquet(path: Path) -> tuple[pa.Table, list[str]]:
    """A Parquet export as text columns, and a warning for each id column of integers."""
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"{path} cannot be read as Parquet: {exc}") from None
    recognised = schema.resolve_headers(table.column_names, None, source=str(path))
    columns = []
    warnings = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        canonical = recognised.get(name)
        kind = column.type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
            column = column.cast(kind)
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            columns.append(column.cast(pa.string()))
        elif pa.types.is_null(kind):
            columns.append(column.cast(pa.string()))
        elif pa.types.is_date(kind) or pa.types.is_timestamp(kind):
            columns.append(column.cast(pa.date32()).cast(pa.string()))
        elif pa.types.is_integer(kind) and canonical not in ("resident_code", "postal_code"):
            columns.append(column.cast(pa.string()))
            if canonical in _TEXT_ONLY:
                label = canonical if name == canonical else f"{canonical} ({name})"
                warnings.append(
                    f"{label}: the column has type {kind} (integers, not text); leading "
                    "zeros cannot be stored in it and may already be lost (export the ids "
                    "as text)"
                )
        else:
            why = (
                "codes and postal codes must be stored as text, or their leading zeros are lost"
                if canonical in _TEXT_ONLY
                else "store it as text"
            )
            raise UsageError(f"{path}: column {name!r} has type {column.type}; {why}.")
    return pa.table(columns, names=table.column_names), warnings


#: Workbooks rrnet reads (through calamine, via fastexcel), whatever wrote them.
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
_ZIP_MAGIC = b"PK\x03\x04"  # .xlsx, .xlsm, .ods
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and any workbook with a password

#: How calamine writes a date cell as text; a date at midnight keeps only its date.
_EXCEL_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}$"


@dataclass
class Worksheet:
    """One worksheet read as text: the table (header row first), where it starts, warnings."""

    table: pa.Table
    name: str
    #: the row number Excel shows for the header row
    header_row: int
    warnings: list[str]
    #: rows after the last one with a value (formatted or cleared cells), dropped
    blank_rows: int = 0
    #: header -> which rows (of ``table``) hold a number in an id column whose other
    #: ids are text with leading zeros: ids whose zeros Excel dropped
    number_ids: dict[str, pl.Series] = field(default_factory=dict)


def _read_excel(path: Path, sheet: str | None, mapping: dict[str, str] | None) -> Worksheet:
    """Read one worksheet of a workbook as text columns, the way Excel shows the cells.

    Every cell becomes text: a number as Excel stores it (5974, not 5974.0), a
    date cell as YYYY-MM-DD (with its time only when it has one). Numbers in a
    column that must be text (ids, postal codes, codes) may have lost leading
    zeros inside Excel already; each such column gets a warning. Blank rows at
    the end are dropped; blank rows in between stay (``read_export`` skips them
    once the rows are numbered), so row numbers stay those Excel shows.
    """
    import fastexcel  # only when an Excel file is read

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror}.") from None
    if not raw.strip():
        raise UsageError(f"{path} is empty: a register export needs at least a header row.")
    if not raw.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
        first_line = raw[:4096].split(b"\n", 1)[0]
        if b"\x00" in raw[:4096]:
            looks, kind = "some other kind of file", "CSV"
        elif first_line.count(b"\t") > first_line.count(b","):
            looks, kind = "a tab-separated text file (TSV)", "TSV"
        else:
            looks, kind = "a text file (CSV?)", "CSV"
        raise UsageError(
            f"{path} is not an Excel workbook: it looks like {looks}. If it is {kind}, give it "
            f"the extension .{kind.lower()}; otherwise save it from Excel as .xlsx."
        )
    try:
        # From bytes, calamine tells the format from the content, not the extension.
        reader = fastexcel.read_excel(raw)
        names = reader.sheet_names
        if not names:
            raise UsageError(f"{path} has no worksheet.")
        name = names[0] if sheet is None else sheet
        if name not in names:
            listed = ", ".join(repr(n) for n in names)
            raise UsageError(f"{path} has no sheet {sheet!r}; its sheets are {listed}.")
        # No header row for fastexcel: rrnet reads and checks the header itself.
        batch = reader.load_sheet(name, header_row=None, dtypes="string").to_arrow()
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        frame = frame.cast(pl.String).rename({c: f"c{i}" for i, c in enumerate(frame.columns)})
        if frame.height == 0:
            raise UsageError(
                f"{path}: sheet {name!r} is empty: a register export needs at least a header row."
            )
        headers = [(h or "").strip() for h in frame.row(0)]
        body = frame.slice(1)
        has_value = [pl.col(c).str.contains(r"\S").fill_null(False) for c in body.columns]
        # A column without a header or a value is only formatting; a row after the
        # last one with a value is not a row anyone meant.
        filled = body.select([e.any() for e in has_value]).row(0)
        _check_headers(headers, path)
        _refuse_unnamed_with_values(headers, list(filled), path)
        keep = {i: h for i, h in enumerate(headers) if h}
        used = body.select(pl.any_horizontal(has_value)).to_series().arg_true()
        last = int(used[-1]) + 1 if len(used) else 0
        frame, warnings, number_ids = _excel_cell_types(reader, name, frame, keep, mapping, path)
    except fastexcel.FastExcelError as exc:
        # The first line names the failure; later lines are calamine's context.
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"{path} cannot be read as an Excel workbook ({reason}). Is it damaged, or "
            "protected with a password? Open it in Excel and save it again as .xlsx."
        ) from None
    body = frame.slice(1, last).select([f"c{i}" for i in keep])
    table = pa.table(
        [c.to_arrow().cast(pa.string()) for c in body.iter_columns()], names=list(keep.values())
    )
    header_row = _xlsx_first_row(raw, name) if raw.startswith(_ZIP_MAGIC) else 1
    return Worksheet(
        table=table,
        name=name,
        header_row=header_row,
        warnings=warnings,
        blank_rows=frame.height - 1 - last,
        number_ids={keep[i]: mask.slice(0, last) for i, mask in number_ids.items()},
    )


def _excel_cell_types(
    reader: fastexcel.ExcelReader,
    name: str,
    frame: pl.DataFrame,
    headers: dict[int, str],
    mapping: dict[str, str] | None,
    path: Path,
) -> tuple[pl.DataFrame, list[str], dict[int, pl.Series]]:
    """Date cells as dates; a warning for each text-only column that holds numbers.

    ``frame`` is the sheet as text, the header in its first row; ``headers`` the
    columns kept, by position. The cells' own types come from reading the sheet
    again with a type: a number or a boolean reads as a boolean and text never
    does; a date reads as a datetime and text never does (numbers do, but their
    text is not a date's).

    An id column (``_ID_COLUMNS``) whose numbers sit among ids stored as text with
    leading zeros is no warning: its numbers are ids whose zeros Excel dropped.
    Those come back by column position, as a mask over the rows below the header.
    A column of numbers only gets a warning that says so.
    """
    if frame.height < 2:
        return frame, [], {}
    recognised = schema.resolve_headers(list(headers.values()), mapping, source=str(path))
    warnings: list[str] = []
    number_ids: dict[int, pl.Series] = {}
    text_only = [
        (i, h, recognised[h]) for i, h in headers.items() if recognised.get(h) in _TEXT_ONLY
    ]
    if text_only:
        probe = reader.load_sheet(name, header_row=None, dtypes="boolean").to_arrow()
        for i, header, canonical in text_only:
            numbers = pl.Series(probe.column(i)).slice(1).is_not_null()
            # A boolean cell reads as one too; its text says which it is.
            numbers &= ~frame[f"c{i}"].slice(1).is_in(["true", "false"]).fill_null(False)
            count = int(numbers.sum())
            if not count:
                continue
            label = canonical if header == canonical else f"{canonical} ({header})"
            cells = frame[f"c{i}"].slice(1).str.strip_chars()
            text = cells.is_not_null() & (cells != "") & ~numbers
            padded = text & cells.str.contains(r"^0[0-9]+$").fill_null(False)
            if canonical in _ID_COLUMNS and bool(padded.any()):
                number_ids[i] = numbers
            elif not bool(text.any()):
                warnings.append(
                    f"{label}: all {count} cell(s) were stored by Excel as numbers (column "
                    "type Number, not Text); leading zeros may already be lost (format the "
                    "column as Text in Excel)"
                )
            else:
                warnings.append(
                    f"{label}: {count} cell(s) were stored by Excel as numbers; leading "
                    "zeros may already be lost (format the column as Text in Excel)"
                )
    looks_like_date = frame.select(pl.all().str.contains(_EXCEL_DATETIME).any()).row(0)
    date_like = [i for i, hit in enumerate(looks_like_date) if hit]
    if date_like:
        probe = reader.load_sheet(name, header_row=None, dtypes="datetime").to_arrow()
        fixes = []
        for i in date_like:
            column = pl.col(f"c{i}")
            is_date = pl.Series(probe.column(i)).is_not_null() & frame[f"c{i}"].str.contains(
                _EXCEL_DATETIME
            ).fill_null(False)
            fixes.append(
                pl.when(pl.lit(is_date))
                .then(column.str.strip_suffix(" 00:00:00"))
                .otherwise(column)
                .alias(f"c{i}")
            )
        frame = frame.with_columns(fixes)
    return frame, warnings, number_ids


def _xlsx_first_row(raw: bytes, sheet: str) -> int:
    """The row number Excel shows for the first row of ``sheet`` that has a value.

    calamine starts a sheet at its first row with a value and fastexcel does not
    say which row that is; with blank rows above the header, every row number
    would be off. Read it from the sheet's XML (.xlsx and .xlsm); 1 when it
    cannot be told.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as book:
            part = _xlsx_sheet_part(book, sheet)
            if part is None:
                return 1
            row = 0
            with book.open(part) as xml:
                for event, element in ElementTree.iterparse(xml, events=("start", "end")):
                    tag = element.tag.rsplit("}", 1)[-1]
                    if event == "start" and tag == "row":
                        row = int(element.get("r") or row + 1)
                    elif event == "end" and tag == "c":
                        if any(child.tag.rsplit("}", 1)[-1] in ("v", "is") for child in element):
                            ref = element.get("r") or ""
                            digits = ref.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
                            return int(digits) if digits.isdigit() else max(row, 1)
                    elif event == "end" and tag == "row":
                        element.clear()
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError, ValueError, OSError):
        return 1
    return 1


def _xlsx_sheet_part(book: zipfile.ZipFile, sheet: str) -> str | None:
    """The name of the XML part that holds ``sheet`` in an .xlsx package, or None."""
    ids = [
        value
        for element in ElementTree.fromstring(book.read("xl/workbook.xml")).iter()
        if element.tag.endswith("}sheet") and element.get("name") == sheet
        for key, value in element.attrib.items()
        if key.endswith("}id")
    ]
    if not ids:
        return None
    for rel in ElementTree.fromstring(book.read("xl/_rels/workbook.xml.rels")):
        if rel.get("Id") == ids[0]:
            target = rel.get("Target") or ""
            return target[1:] if target.startswith("/") else posixpath.normpath("xl/" + target)
    return None


# ---------------------------------------------------------------------------
# Validating


def require_columns(export: Export, required: tuple[str, ...] = schema.REQUIRED) -> None:
    """Stop with the list of required columns the export lacks."""
    missing = [c for c in required if c not in export.frame.columns]
    if missing:
        names = "; ".join(f"{c} ({' / '.join(schema.BY_NAME[c].aliases)})" for c in missing)
        raise UsageError(
            f"{export.path} lacks required column(s): {names}. "
            "Rename the header, or map it with --mapping."
        )


# Columns whose values are compared after NFKC (full-width digits, letters, dashes).
_NFKC_COLUMNS = (
    "resident_id",
    "birth_date",
    "sex",
    "nationality",
    "postal_code",
    "stay_expiry",
    "residence_card_number",
    "alias",
    "alias_kana",
    "language",
)


#: What people type between the parts of a residence card number (after NFKC):
#: spaces, hyphens, dashes and the long-vowel mark a Japanese IME may give for "-".
_CARD_SEPARATORS = "[\\s\\-\u2010-\u2015\u2212\u30fc]"

# Columns only checked for being empty: no need to build cleaned copies of them.
_PRESENCE_ONLY = ("name", "address")

#: 〓 (GETA MARK, U+3013): what a CP932 system writes in place of a 外字 it cannot
#: hold. It is a real character, so fonts print it; on a notice it would stand
#: in a resident's name or address instead of the character the register holds.
GETA = "\u3013"
GETA_REASON = (
    "〓 stands for a character (外字) the export could not carry; enter the real "
    "character in the register system and export again"
)
#: The text columns a notice prints, or that say who or where a resident is:
#: none may hold 〓.
GETA_COLUMNS = (
    "name",
    "name_kanji",
    "alias",
    "alias_kana",
    "address",
    "nationality",
    "residence_status",
)


def geta_column(name: str) -> str:
    """The working column: whether column ``name``'s raw value holds 〓."""
    return f"__geta_{name}__"


def geta_masks(frame: pl.DataFrame) -> pl.DataFrame:
    """Per text column of ``frame`` (``GETA_COLUMNS``): where its raw value holds 〓."""
    return frame.select(
        pl.col(name)
        .cast(pl.String)
        .str.contains(GETA, literal=True)
        .fill_null(False)
        .alias(geta_column(name))
        for name in GETA_COLUMNS
        if name in frame.columns
    )


def _has_non_ascii(column: pl.Series) -> bool:
    """Whether any value has a non-ASCII character (byte length differs from chars)."""
    return bool((column.str.len_bytes() != column.str.len_chars()).any())


def _clean_expr(name: str, non_ascii: bool) -> pl.Expr:
    """A column's value as validated: trimmed, empty -> null, NFKC where it matters.

    ``non_ascii`` says whether the column holds any non-ASCII value: NFKC is the
    identity on ASCII and the costliest string step, and Polars evaluates both
    branches of a when/then, so the choice is made per column, not per value.
    """
    text = pl.col(name)
    if name in _PRESENCE_ONLY:
        # Cheaper than trimming long strings: empty means no non-space character.
        return pl.when(text.str.contains(r"\S")).then(pl.lit("x")).otherwise(None).alias(name)
    if name in _NFKC_COLUMNS and non_ascii:
        text = text.str.normalize("NFKC")
    if name == "residence_card_number":
        # "ab 1234-5678 cd" is AB12345678CD: only the check sees this form.
        text = text.str.replace_all(_CARD_SEPARATORS, "").str.to_uppercase()
    text = text.str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text).alias(name)


def clean_resident_ids(column: pl.Series) -> pl.Series:
    """Resident ids as rrnet keys them (NFKC, trimmed, empty -> null)."""
    name = column.name
    return column.to_frame().select(_clean_expr(name, _has_non_ascii(column))).to_series()


def _iso_countries() -> list[str]:
    codes = set()
    for country in pycountry.countries:
        codes.add(country.alpha_2)
        codes.add(country.alpha_3)
    return sorted(codes)


def _rules(cols: set[str], today: date) -> list[tuple[str, pl.Expr, str]]:
    """(column, bad-row mask over cleaned values, reason) for every column rule (README: Input)."""

    c = pl.col
    rules: list[tuple[str, pl.Expr, str]] = [
        (name, c(name).is_null(), "required value is empty") for name in schema.REQUIRED
    ]
    birth = c(parsed_date_column("birth_date"))
    # Dates that are not dates are reported by _date_errors, each with its reason.
    rules += [
        ("birth_date", birth > pl.lit(today), "birth date is in the future"),
        ("birth_date", birth < pl.lit(EARLIEST_BIRTH), "birth date before 1880 is not plausible"),
        (
            "sex",
            c("sex").is_not_null() & ~c("sex").is_in(list(schema.SEX_VALUES)),
            "sex must be 男/女, M/F or 1/2",
        ),
        (
            "nationality",
            c("nationality").str.contains(r"^[A-Za-z]{2,3}$")
            & ~c("nationality").str.to_uppercase().is_in(_iso_countries()),
            "not an ISO 3166 country code (use a code such as VNM or a country name)",
        ),
    ]
    optional: list[tuple[str, pl.Expr, str]] = [
        (
            "postal_code",
            ~c("postal_code").str.strip_prefix("〒").str.contains(r"^[0-9]{3}-?[0-9]{4}$"),
            "postal code must be NNN-NNNN",
        ),
        (
            "foreign_resident_category",
            ~c("foreign_resident_category").is_in(list(schema.FOREIGN_RESIDENT_CATEGORIES)),
            "not one of the six categories of 住基法 第30条の45 ("
            + "、".join(schema.FOREIGN_RESIDENT_CATEGORIES)
            + ")",
        ),
        (
            "residence_card_number",
            ~c("residence_card_number").str.contains(r"^[A-Z]{2}[0-9]{8}[A-Z]{2}$"),
            "residence card number must be two capital letters, eight digits, two capital letters",
        ),
        (
            "alias",
            ~c("alias").str.contains(r"^[\p{Han}\p{Hiragana}\p{Katakana}ー々〆ヶ・\s]+$"),
            "an alias (通称) is written in kana and kanji only",
        ),
        (
            "alias_kana",
            ~c("alias_kana").str.contains(r"^[\p{Hiragana}\p{Katakana}ー・\s]+$"),
            "the alias reading is written in kana only",
        ),
    ]
    # A value holding 〓 gets that reason, not one about what it is written in.
    geta = {name: c(geta_column(name)) for name in GETA_COLUMNS if name in cols}
    rules += [(name, mask, GETA_REASON) for name, mask in geta.items()]
    # No rule for language: a value rrnet does not recognise must never block a code
    # (see ``unrecognised_languages``); its notice falls back to the nationality's
    # language, else the default one.
    # Optional columns are checked only where present and non-empty.
    rules += [
        (name, c(name).is_not_null() & bad & ~geta.get(name, pl.lit(False)), reason)
        for name, bad, reason in optional
        if name in cols
    ]
    return rules


def unrecognised_languages(frame: pl.DataFrame) -> pl.Series:
    """The rows (``ROW``) whose ``language`` names no language rrnet recognises.

    Not an error: notify prints such a resident's notice in their nationality's
    language, else the default one, and says so; assign warns, naming the rows,
    never the values.
    """
    from rrnet_cli import languages  # notify's language parser; here, not at import time

    if "language" not in frame.columns:
        return frame[ROW].clear()
    # The parser notify uses, once per distinct value (a register has few).
    known = languages.map_distinct(
        frame["language"].cast(pl.String),
        lambda tag: not (tag or "").strip() or languages.is_language(tag),
        pl.Boolean,
    )
    return frame[ROW].filter(~known.fill_null(True))


def validate_register(
    export: Export, *, today: date | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Check every row; return (frame with helper columns, errors).

    The errors frame has ``row, column, reason, value`` and is empty when every
    row is good. Values are kept apart from reasons so that messages can leave
    personal data out. All rules are evaluated in one parallel pass over the
    cleaned columns; only rules that fire are turned into error rows.
    """
    require_columns(export)
    frame = export.frame
    cols = set(frame.columns)
    rules = _rules(cols, today or date.today())
    checked = sorted({name for name, _, _ in rules})
    cleaned = frame.select(
        ROW, *[_clean_expr(name, _has_non_ascii(frame[name])) for name in checked]
    ).hstack(geta_masks(frame))
    cleaned = cleaned.with_columns(
        parse_dates(cleaned["birth_date"]).alias(parsed_date_column("birth_date"))
    )
    masks = cleaned.select(
        [mask.fill_null(False).alias(f"rule{i}") for i, (_, mask, _) in enumerate(rules)]
    )
    fired = masks.select(pl.all().any()).row(0)
    # A row with every cell empty is one error ("blank row"), not one per column.
    data_columns = [c for c in frame.columns if c != ROW]
    blank = frame.select(pl.all_horizontal(pl.col(data_columns).is_null())).to_series()
    any_blank = bool(blank.any())
    # So is a totals row (合計 in its first cell or its resident id).
    total, total_text = _totals_rows(frame, cleaned["resident_id"], data_columns[0])
    any_total = bool(total.any())
    skip = blank | total

    helpers = [cleaned["resident_id"].alias(N_RESIDENT_ID)]
    if "resident_code" in cols:
        helpers.append(
            pl.Series(N_RESIDENT_CODE, rcode.compact_array(frame["resident_code"].to_arrow()))
        )
    else:
        helpers.append(
            pl.repeat(None, frame.height, dtype=pl.String, eager=True).alias(N_RESIDENT_CODE)
        )
    if "planned_move_out_date" in cols:
        helpers.append(
            frame.select(pl.col("planned_move_out_date").str.strip_chars().fill_null("") != "")
            .to_series()
            .alias(MOVE_OUT)
        )
    else:
        helpers.append(pl.repeat(False, frame.height, eager=True).alias(MOVE_OUT))
    frame = frame.with_columns(helpers)

    errors = [
        frame.filter(masks[f"rule{i}"] & ~skip).select(
            pl.col(ROW).alias("row"),
            pl.lit(column).alias("column"),
            pl.lit(reason).alias("reason"),
            pl.col(column).cast(pl.String).alias("value"),
        )
        for i, (column, _, reason) in enumerate(rules)
        if fired[i]
    ]
    if any_blank:
        errors.append(
            frame.filter(blank).select(
                pl.col(ROW).alias("row"),
                pl.lit("*").alias("column"),
                pl.lit("row is blank; remove it").alias("reason"),
                pl.lit(None, pl.String).alias("value"),
            )
        )
    errors += [_date_errors(frame, name, skip) for name in DATE_COLUMNS if name in cols]
    errors.append(code_errors(frame[ROW], frame[N_RESIDENT_CODE]))
    errors.append(_duplicates(frame, N_RESIDENT_ID, "resident_id"))
    errors.append(_duplicates(frame, N_RESIDENT_CODE, "resident_code"))
    errors.append(export.zero_stripped)
    found = pl.concat([e.cast(ERROR_SCHEMA) for e in errors])
    if any_total:
        totals = frame.select(ROW, total_text.alias("value")).filter(total)
        # A totals row is one error: its codes and ids are counts, not residents'.
        found = pl.concat(
            [
                found.filter(~pl.col("row").is_in(totals[ROW].implode())),
                totals.select(
                    pl.col(ROW).alias("row"),
                    pl.lit("*").alias("column"),
                    pl.lit(TOTALS_ROW_REASON).alias("reason"),
                    "value",
                ).cast(ERROR_SCHEMA),
            ]
        )
    return frame, stripped_first(found.sort("row", maintain_order=True))


def stripped_first(
    errors: pl.DataFrame, reasons: tuple[str, ...] = (NUMBER_ID_REASON,)
) -> pl.DataFrame:
    """``errors`` with those of ``reasons`` (ids stripped of their leading zeros) first,
    each part in its own order: they explain the other errors, or make them moot."""
    later = ~pl.col("reason").is_in(list(reasons))
    return errors.sort(later, maintain_order=True)


TOTALS_ROW_REASON = "looks like a totals row (合計), not a resident; remove it"


def _totals_rows(frame: pl.DataFrame, ids: pl.Series, first: str) -> tuple[pl.Series, pl.Series]:
    """Which rows are a totals row (``schema.TOTAL_ROW_WORDS``), and the cell that says so.

    ``ids`` are the cleaned resident ids; ``first`` names the export's first column.
    Both are compared after NFKC, without any white space, case-folded, so "合　計"
    and "TOTAL" count.
    """
    words = list(schema.TOTAL_ROW_WORDS)

    def word(column: pl.Series) -> pl.Series:
        text = column.cast(pl.String)
        if _has_non_ascii(text):
            text = text.str.normalize("NFKC")
        return text.str.replace_all(r"\s", "").str.to_lowercase().is_in(words).fill_null(False)

    by_id = word(ids)
    cell = frame[first].cast(pl.String)
    by_first = by_id if first == "resident_id" else word(cell)
    total = by_id | by_first
    text = cell.zip_with(by_first, frame["resident_id"].cast(pl.String))
    return total.alias("total"), text


def _date_errors(frame: pl.DataFrame, name: str, blank: pl.Series) -> pl.DataFrame:
    """Row errors for the values of date column ``name`` that are not dates.

    The reason says why (no such day, past its era's end, no form fits) without
    the value itself, which stays in ``value`` for ``--verbose``.
    """
    problems = date_problems(frame[name].cast(pl.String))
    if problems.null_count() == len(problems):
        return pl.DataFrame(schema=ERROR_SCHEMA)
    return (
        frame.select(ROW, pl.col(name).cast(pl.String).alias("value"))
        .with_columns(problems.alias("reason"))
        .filter(pl.col("reason").is_not_null() & ~blank)
        .select(pl.col(ROW).alias("row"), pl.lit(name).alias("column"), "reason", "value")
    )


def code_errors(rows: pl.Series, codes: pl.Series) -> pl.DataFrame:
    """Row errors (``row, column, reason, value``) for the codes that are not valid.

    ``codes`` must already be compacted (``code.compact_array``); nulls are no
    code and no error. Every command that reads codes from a file checks them
    here first, so a bad code is a row error with its row number, never a crash.
    """
    codes_frame = pl.DataFrame({"row": rows, "value": codes.cast(pl.String)}).filter(
        pl.col("value").is_not_null()
    )
    if codes_frame.height == 0:
        return pl.DataFrame(schema=ERROR_SCHEMA)
    reasons = rcode.validate_array(codes_frame["value"].to_arrow())
    return (
        codes_frame.with_columns(pl.Series("reason", reasons, dtype=pl.String))
        .filter(pl.col("reason").is_not_null())
        .select(
            pl.col("row").cast(pl.Int64),
            pl.lit("resident_code").alias("column"),
            pl.concat_str(pl.lit("existing code is not valid: "), pl.col("reason")).alias("reason"),
            "value",
        )
    )


def _duplicates(frame: pl.DataFrame, key: str, column: str) -> pl.DataFrame:
    """Rows sharing a non-empty key, each pointing at the others' rows."""
    keyed = frame.select(ROW, key).filter(pl.col(key).is_not_null())
    # Hashes first (cheap); the exact comparison runs only on the few candidates.
    candidates = keyed.filter(pl.col(key).hash().is_duplicated())
    dups = candidates.filter(pl.col(key).is_duplicated())
    if dups.height == 0:
        return pl.DataFrame(schema=ERROR_SCHEMA)
    groups = dups.group_by(key).agg(pl.col(ROW).sort().alias("rows"))
    out = dups.join(groups, on=key).with_columns(
        pl.col("rows").list.set_difference(pl.concat_list(pl.col(ROW))).list.sort().alias("others")
    )
    return out.select(
        pl.col(ROW).alias("row"),
        pl.lit(column).alias("column"),
        pl.concat_str(
            pl.lit(f"same {column} as row "),
            pl.col("others").list.head(5).cast(pl.List(pl.String)).list.join(", "),
        ).alias("reason"),
        pl.col(key).alias("value"),
    )


def describe_errors(
    errors: pl.DataFrame, source: Path, *, limit: int = 20, verbose: bool = False
) -> list[str]:
    """Human lines 'FILE row N, column: reason' (values only when verbose)."""
    lines = []
    for row in errors.head(limit).iter_rows(named=True):
        line = f"{source} row {row['row']}, {row['column']}: {row['reason']}"
        if verbose and row["value"] is not None:
            line += f" (value {row['value']!r})"
        lines.append(line)
    if errors.height > limit:
        lines.append(f"... and {errors.height - limit} more")
    return lines
