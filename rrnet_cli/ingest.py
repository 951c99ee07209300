"""Reading a register export and checking every row against SPEC §3.

``read_export`` turns a CSV (UTF-8, UTF-8 with BOM or CP932) or Parquet file into
a frame of text columns, recognised headers renamed to their canonical names and
a ``ROW`` column holding each row's number as a spreadsheet shows it (the CSV
header is row 1, so the first person is row 2; in Parquet the first person is
row 1). ``validate_register`` then returns the frame with normalised helper
columns and a frame of errors: one line per (row, column, reason).

Nothing here prints or keeps a person's data in an error message: errors name
the file, row and column; the value is kept apart (``value``) for ``--verbose``.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pycountry

from rrnet_cli import code as rcode
from rrnet_cli import schema
from rrnet_cli.errors import UsageError
from rrnet_cli.files import restore_formulas

ROW = "__row__"
ENCODINGS = ("auto", "utf-8", "utf-8-sig", "cp932")

# Helper columns added by validate_register; never written out.
N_RESIDENT_ID = "__resident_id__"
N_RESIDENT_CODE = "__resident_code__"
MOVE_OUT = "__move_out__"
HELPERS = (N_RESIDENT_ID, N_RESIDENT_CODE, MOVE_OUT)

ERROR_SCHEMA = {"row": pl.Int64, "column": pl.String, "reason": pl.String, "value": pl.String}

DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d")
DATE_HELP = "expected YYYY-MM-DD, YYYY/MM/DD or YYYYMMDD"
EARLIEST_BIRTH = date(1880, 1, 1)

_SEPARATORS = rcode.SEPARATOR_PATTERN


@dataclass
class Export:
    """A register export read into memory."""

    path: Path
    frame: pl.DataFrame
    encoding: str | None
    first_row: int
    #: original header -> canonical name, for the headers that were recognised
    recognised: dict[str, str] = field(default_factory=dict)

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
) -> Export:
    """Read a register export (or one of rrnet's own outputs when ``ours``)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path} does not exist.")
    if path.is_dir():
        raise UsageError(f"{path} is a folder; give the export file itself.")
    if encoding not in ENCODINGS:
        raise UsageError(f"Unknown encoding {encoding!r}; use one of {', '.join(ENCODINGS)}.")
    if path.suffix.lower() == ".parquet":
        table = _read_parquet(path)
        used_encoding, first_row = None, 1
    else:
        table, used_encoding = _read_csv(path, encoding)
        first_row = 2
    headers = table.column_names
    recognised = schema.resolve_headers(headers, mapping, source=str(path))
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    # Our own columns in the export (an earlier output fed back) are recomputed.
    frame = frame.rename(recognised)
    if ours:
        frame = restore_formulas(frame)
    else:
        # Status columns of an earlier output fed back in are recomputed, not kept.
        frame = frame.drop([c for c in schema.OUTPUT_COLUMNS[1:] if c in frame.columns])
    frame = frame.with_row_index(ROW, offset=first_row).with_columns(pl.col(ROW).cast(pl.Int64))
    return Export(
        path=path, frame=frame, encoding=used_encoding, first_row=first_row, recognised=recognised
    )


def _decode(data: bytes, encoding: str, path: Path) -> tuple[bytes, str]:
    """Return UTF-8 bytes (BOM removed) and the encoding the file was in."""
    if encoding in ("auto", "utf-8-sig", "utf-8") and data.startswith(b"\xef\xbb\xbf"):
        body = data[3:]
        _check_utf8(body, path, offset=3)
        return body, "utf-8-sig"
    if encoding in ("utf-8", "utf-8-sig"):
        _check_utf8(data, path)
        return data, encoding
    if encoding == "cp932":
        try:
            return data.decode("cp932").encode("utf-8"), "cp932"
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{path} is not valid CP932 near line {_line_at(data, exc.start)}; "
                "is it UTF-8? Try --encoding utf-8."
            ) from None
    # auto: UTF-8 is self-checking (random CP932 text is almost never valid UTF-8).
    try:
        data.decode("utf-8")
        return data, "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp932").encode("utf-8"), "cp932"
    except UnicodeDecodeError:
        raise UsageError(
            f"Cannot tell the encoding of {path}: it is neither valid UTF-8 nor valid CP932 "
            "(Shift_JIS as Windows writes it). Save it as UTF-8, or pass --encoding."
        ) from None


def _check_utf8(data: bytes, path: Path, offset: int = 0) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{path} is not valid UTF-8 near line {_line_at(data, exc.start)}; "
            "is it CP932 (Shift_JIS)? Try --encoding cp932 or --encoding auto."
        ) from None


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _read_csv(path: Path, encoding: str) -> tuple[pa.Table, str]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"Cannot read {path}: {exc.strerror}.") from None
    if b"\x00" in raw:
        raise UsageError(f"{path} does not look like a CSV file: it contains binary data.")
    data, used = _decode(raw, encoding, path)
    if not data.strip():
        raise UsageError(f"{path} is empty: a register export needs at least a header row.")
    headers = _header_row(data, path)
    names = [f"c{i}" for i in range(len(headers))]
    ragged: list[tuple[int, int]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        ragged.append((row.expected_columns, row.actual_columns))
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.BufferReader(data),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=16 << 20),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=on_invalid
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
    if ragged:
        raise UsageError(_ragged_message(data, path, len(headers), len(ragged)))
    return table.rename_columns(headers), used


def _header_row(data: bytes, path: Path) -> list[str]:
    head = data[: 1 << 20].decode("utf-8", errors="ignore")
    try:
        headers = next(csv.reader(io.StringIO(head)))
    except (StopIteration, csv.Error):
        raise UsageError(f"{path} has no readable header row.") from None
    headers = [h.strip() for h in headers]
    if headers and headers[0].startswith("\ufeff"):
        headers[0] = headers[0][1:]
    if not any(headers):
        raise UsageError(f"{path} has an empty header row.")
    seen: set[str] = set()
    for h in headers:
        if not h:
            raise UsageError(f"{path}: a column in the header row has no name.")
        if h in seen:
            raise UsageError(f"{path}: column {h!r} appears twice in the header row.")
        seen.add(h)
    return headers


def _strip_row_text(message: str) -> str:
    # Arrow quotes the offending row after a colon; that is personal data.
    return message.split(":", 1)[0] if "columns, got" in message else message


def _ragged_message(data: bytes, path: Path, width: int, count: int) -> str:
    """Find the first rows whose field count differs (slow path, error only)."""
    rows = []
    reader = csv.reader(io.StringIO(data.decode("utf-8")))
    next(reader, None)
    for number, record in enumerate(reader, start=2):
        if record and len(record) != width:
            rows.append(f"row {number} has {len(record)} fields")
            if len(rows) == 5:
                break
    listed = "; ".join(rows)
    return (
        f"{path}: {count} row(s) do not have the header's {width} fields ({listed}). "
        "A field with a comma or line break inside must be in double quotes."
    )


# Parquet columns whose integer or float type would already have eaten leading zeros.
_TEXT_ONLY = (
    "resident_code",
    "postal_code",
    "resident_id",
    "household_id",
    "residence_card_number",
)


def _read_parquet(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise UsageError(f"{path} cannot be read as Parquet: {exc}") from None
    recognised = schema.resolve_headers(table.column_names, None, source=str(path))
    columns = []
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
        else:
            why = (
                "codes and postal codes must be stored as text, or their leading zeros are lost"
                if canonical in _TEXT_ONLY
                else "store it as text"
            )
            raise UsageError(f"{path}: column {name!r} has type {column.type}; {why}.")
    return pa.table(columns, names=table.column_names)


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


def _clean(name: str) -> pl.Expr:
    """A column's value as validated: NFKC, trimmed, empty -> null."""
    text = pl.col(name).str.normalize("NFKC").str.strip_chars()
    return pl.when(text == "").then(None).otherwise(text)


def _compact_code(name: str) -> pl.Expr:
    text = pl.col(name).str.normalize("NFKC").str.replace_all(_SEPARATORS, "")
    return pl.when(text == "").then(None).otherwise(text)


def _parse_date(expr: pl.Expr) -> pl.Expr:
    return pl.coalesce([expr.str.to_date(f, strict=False) for f in DATE_FORMATS])


def _iso_countries() -> list[str]:
    codes = set()
    for country in pycountry.countries:
        codes.add(country.alpha_2)
        codes.add(country.alpha_3)
    return sorted(codes)


_SEX_VALUES = ["男", "女", "男性", "女性", "M", "F", "m", "f", "1", "2"]


def validate_register(
    export: Export, *, today: date | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Check every row; return (frame with helper columns, errors).

    The errors frame has ``row, column, reason, value`` and is empty when every
    row is good. Values are kept apart from reasons so that messages can leave
    personal data out.
    """
    require_columns(export)
    today = today or date.today()
    frame = export.frame
    cols = set(frame.columns)
    rules: list[tuple[str, pl.Expr, str]] = []  # (column, bad-mask, reason)

    for name in schema.REQUIRED:
        rules.append((name, _clean(name).is_null(), "required value is empty"))

    birth = _parse_date(_clean("birth_date"))
    rules += [
        (
            "birth_date",
            _clean("birth_date").is_not_null() & birth.is_null(),
            f"not a real date ({DATE_HELP})",
        ),
        ("birth_date", birth > pl.lit(today), "birth date is in the future"),
        ("birth_date", birth < pl.lit(EARLIEST_BIRTH), "birth date before 1880 is not plausible"),
        (
            "sex",
            _clean("sex").is_not_null() & ~_clean("sex").is_in(_SEX_VALUES),
            "sex must be 男/女, M/F or 1/2",
        ),
        (
            "nationality",
            _clean("nationality").str.contains(r"^[A-Za-z]{2,3}$")
            & ~_clean("nationality").str.to_uppercase().is_in(_iso_countries()),
            "not an ISO 3166 country code (use a code such as VNM or a country name)",
        ),
    ]
    if "postal_code" in cols:
        pc_ = _clean("postal_code").str.strip_prefix("〒")
        rules.append(
            (
                "postal_code",
                pc_.is_not_null() & ~pc_.str.contains(r"^[0-9]{3}-?[0-9]{4}$"),
                "postal code must be NNN-NNNN",
            )
        )
    if "foreign_resident_category" in cols:
        cat = _clean("foreign_resident_category")
        rules.append(
            (
                "foreign_resident_category",
                cat.is_not_null() & ~cat.is_in(list(schema.FOREIGN_RESIDENT_CATEGORIES)),
                "not one of the six categories of 住基法 第30条の45 ("
                + "、".join(schema.FOREIGN_RESIDENT_CATEGORIES)
                + ")",
            )
        )
    if "stay_expiry" in cols:
        rules.append(
            (
                "stay_expiry",
                _clean("stay_expiry").is_not_null() & _parse_date(_clean("stay_expiry")).is_null(),
                f"not a real date ({DATE_HELP})",
            )
        )
    if "residence_card_number" in cols:
        card = _clean("residence_card_number")
        rules.append(
            (
                "residence_card_number",
                card.is_not_null() & ~card.str.contains(r"^[A-Z]{2}[0-9]{8}[A-Z]{2}$"),
                "residence card number must be two capital letters, eight digits, "
                "two capital letters",
            )
        )
    if "alias" in cols:
        alias = _clean("alias")
        rules.append(
            (
                "alias",
                alias.is_not_null()
                & ~alias.str.contains(r"^[\p{Han}\p{Hiragana}\p{Katakana}ー々〆ヶ・\s]+$"),
                "an alias (通称) is written in kana and kanji only",
            )
        )
    if "alias_kana" in cols:
        kana = _clean("alias_kana")
        rules.append(
            (
                "alias_kana",
                kana.is_not_null() & ~kana.str.contains(r"^[\p{Hiragana}\p{Katakana}ー・\s]+$"),
                "the alias reading is written in kana only",
            )
        )
    if "language" in cols:
        lang = _clean("language")
        rules.append(
            (
                "language",
                lang.is_not_null()
                & ~lang.str.to_lowercase().is_in([x.lower() for x in schema.LANGUAGES]),
                "notice language must be one of " + ", ".join(schema.LANGUAGES),
            )
        )

    helpers = [_clean("resident_id").alias(N_RESIDENT_ID)]
    if "resident_code" in cols:
        helpers.append(_compact_code("resident_code").alias(N_RESIDENT_CODE))
    else:
        helpers.append(pl.lit(None, pl.String).alias(N_RESIDENT_CODE))
    if "planned_move_out_date" in cols:
        helpers.append(_clean("planned_move_out_date").is_not_null().alias(MOVE_OUT))
    else:
        helpers.append(pl.lit(False).alias(MOVE_OUT))
    frame = frame.with_columns(helpers)

    errors = [
        frame.filter(mask.fill_null(False)).select(
            pl.col(ROW).alias("row"),
            pl.lit(column).alias("column"),
            pl.lit(reason).alias("reason"),
            pl.col(column).cast(pl.String).alias("value"),
        )
        for column, mask, reason in rules
    ]
    errors.append(_code_errors(frame))
    errors.append(_duplicates(frame, N_RESIDENT_ID, "resident_id"))
    errors.append(_duplicates(frame, N_RESIDENT_CODE, "resident_code"))
    found = pl.concat([e.cast(ERROR_SCHEMA) for e in errors]).sort("row", maintain_order=True)
    return frame, found


def _code_errors(frame: pl.DataFrame) -> pl.DataFrame:
    codes = frame.select(ROW, N_RESIDENT_CODE).filter(pl.col(N_RESIDENT_CODE).is_not_null())
    if codes.height == 0:
        return pl.DataFrame(schema=ERROR_SCHEMA)
    reasons = rcode.validate_array(codes[N_RESIDENT_CODE].to_arrow())
    return (
        codes.with_columns(pl.Series("reason", reasons, dtype=pl.String))
        .filter(pl.col("reason").is_not_null())
        .select(
            pl.col(ROW).alias("row"),
            pl.lit("resident_code").alias("column"),
            pl.concat_str(pl.lit("existing code is not valid: "), pl.col("reason")).alias("reason"),
            pl.col(N_RESIDENT_CODE).alias("value"),
        )
    )


def _duplicates(frame: pl.DataFrame, key: str, column: str) -> pl.DataFrame:
    """Rows sharing a non-empty key, each pointing at the others' rows."""
    keyed = frame.select(ROW, key).filter(pl.col(key).is_not_null())
    dups = keyed.filter(pl.col(key).is_duplicated())
    if dups.height == 0:
        return pl.DataFrame(schema=ERROR_SCHEMA)
    groups = dups.group_by(key).agg(pl.col(ROW).sort().alias("rows"))
    out = dups.join(groups, on=key).with_columns(
        pl.col("rows").list.set_difference(pl.concat_list(pl.col(ROW))).alias("others")
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
