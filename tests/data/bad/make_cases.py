"""Generate the bad-input corpus for ``rrnet assign`` (tests/test_bad_input.py).

Run it with rrnet's Python from anywhere; it empties and rewrites this folder
(or the new folder given as the only argument). It is deterministic: random
bytes come from a seeded ``random.Random`` and nothing depends on the date, so
every file comes out byte for byte the same, except that Parquet files name
the pyarrow version that wrote them (they are written without compression or
statistics, so their tables stay the same). tests/test_bad_input.py checks that
the committed files are what this script writes::

    python tests/data/bad/make_cases.py            # regenerate in place
    python tests/data/bad/make_cases.py /tmp/x     # write a copy elsewhere

What it writes:

- one input file per case (``<case>.csv``, ``<case>.parquet``, a folder for
  "a directory given as the export"; the "missing path" case has no file);
- ``setup/``: files that ``setup`` commands use to prepare a ledger first;
- ``cases.toml``: one ``[[case]]`` table per case, read by the test:

  ``name``          the case's id (also the pytest id)
  ``file``          the export, relative to this folder
  ``args``          extra command-line arguments for ``rrnet assign``
  ``exit``          expected exit code (2: unusable input; 0: the case is valid)
  ``expect``        substrings the output must contain (file name, ``row N``,
                    column, reason)
  ``forbid``        substrings it must not contain (personal data from the
                    file: cell values stay out of messages)
  ``setup``         optional: rrnet command lines run first on the same fresh
                    ledger; ``{data}``, ``{ledger}`` and ``{tmp}`` are replaced
                    by this folder, the ledger and a scratch folder
  ``output_rows``   optional (valid cases): rows in the written register
  ``output_values`` optional (valid cases): column -> the values expected in
                    the written register, in row order; ``"*"`` is any non-empty
                    value and ``"abc*"`` any value starting with ``abc``
  ``output_lengths`` optional (valid cases): column -> each value's length
  ``issue``         what the case is about, in one line

Every person in these files is synthetic. Row numbers in ``expect`` are as a
spreadsheet shows them: in a CSV the header is row 1, so the first person is
row 2; in Parquet the first person is row 1. Bad values sit on row 3 or later
where possible, so an off-by-one in row numbering shows.
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent

REQUIRED = ("resident_id", "name", "birth_date", "sex", "nationality", "address")
#: A valid carried-over code (a published check-digit test vector) and a second valid one.
CODE = "58026173947"
CODE2 = "12345678903"
ONE_MB = 1 << 20

# Synthetic residents; their names must never appear in an error message.
NAMES = (
    "NGUYEN VAN AN",
    "KIM MINJI",
    "SILVA JOAO PEDRO",
    "WANG FANG",
    "SANTOS MARIA CLARA",
)


def person(i: int, **overrides: str) -> dict[str, str]:
    """The i-th valid resident (required columns only); ``overrides`` add or replace."""
    row = {
        "resident_id": f"{100001 + i:06d}",
        "name": NAMES[i % len(NAMES)],
        "birth_date": f"{1950 + (7 * i) % 60}-0{1 + i % 9}-1{i % 10}",
        "sex": "MF"[i % 2],
        "nationality": ("VNM", "KOR", "BRA", "CHN", "PHL")[i % 5],
        "address": f"東京都千代田区九段南1-{i + 1}-1",
    }
    row.update(overrides)
    return row


def people(n: int, bad: dict[int, dict[str, str]] | None = None) -> list[dict[str, str]]:
    """``n`` valid residents; ``bad[i]`` overrides resident i (row i + 2 in a CSV)."""
    bad = bad or {}
    return [person(i, **bad.get(i, {})) for i in range(n)]


def csv_text(rows: list[dict[str, str]], headers: list[str] | None = None) -> str:
    """Rows as CSV text (LF line ends, minimal quoting)."""
    if headers is None:
        headers = list(REQUIRED)
        for row in rows:
            headers += [k for k in row if k not in headers]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([row.get(h, "") for h in headers])
    return buffer.getvalue()


def names_in(rows: list[dict[str, str]]) -> list[str]:
    return sorted({r["name"] for r in rows if r.get("name")})


def write_parquet(path: Path, table: pa.Table) -> None:
    pq.write_table(
        table,
        path,
        compression="none",
        write_statistics=False,
        use_dictionary=False,
        store_schema=False,
    )


def string_table(rows: list[dict[str, str]], **typed: pa.Array) -> pa.Table:
    """Rows as a Parquet table of strings, except the columns given in ``typed``."""
    headers = list(REQUIRED)
    for row in rows:
        headers += [k for k in row if k not in headers]
    headers += [k for k in typed if k not in headers]
    arrays = [typed.get(h, pa.array([r.get(h) for r in rows], pa.string())) for h in headers]
    return pa.table(arrays, names=headers)


@dataclass
class Case:
    name: str
    file: str
    issue: str
    expect: list[str]
    exit: int = 2
    args: list[str] = field(default_factory=list)
    forbid: list[str] = field(default_factory=list)
    setup: list[list[str]] = field(default_factory=list)
    output_rows: int | None = None
    output_values: dict[str, list[str]] = field(default_factory=dict)
    output_lengths: dict[str, list[int]] = field(default_factory=dict)
    #: writes the case's file into the folder given (None: no file, e.g. a missing path)
    write: Callable[[Path], None] | None = None


CASES: list[Case] = []


def case(**kwargs: object) -> None:
    CASES.append(Case(**kwargs))  # type: ignore[arg-type]


def text_file(name: str, text: str, encoding: str = "utf-8") -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(text.encode(encoding))


def bytes_file(name: str, data: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / name).write_bytes(data)


def csv_case(
    name: str,
    rows: list[dict[str, str]],
    *,
    issue: str,
    expect: list[str],
    headers: list[str] | None = None,
    forbid_values: tuple[str, ...] = (),
    **kwargs: object,
) -> None:
    """A UTF-8 CSV case; ``expect`` gets the file name added, ``forbid`` the names."""
    file = f"{name}.csv"
    case(
        name=name,
        file=file,
        issue=issue,
        # a failure names the export; a success names only the output
        expect=[file, *expect] if kwargs.get("exit", 2) != 0 else expect,
        forbid=[*names_in(rows), *forbid_values],
        write=text_file(file, csv_text(rows, headers)),
        **kwargs,
    )


# ---------------------------------------------------------------------------
# The cases


# -- every required column missing in turn -----------------------------------
for _column in REQUIRED:
    _rows = [{k: v for k, v in r.items() if k != _column} for r in people(3)]
    csv_case(
        f"missing_column_{_column}",
        _rows,
        issue=f"required column {_column} is missing from the header",
        expect=[f"lacks required column(s): {_column} ("],
        headers=[c for c in REQUIRED if c != _column],
    )

# -- row rules ---------------------------------------------------------------
csv_case(
    "duplicate_resident_id",
    people(4, {2: {"resident_id": "100002"}}),
    issue="two rows share one resident_id",
    expect=["row 4", "resident_id", "same resident_id as row 3"],
)
csv_case(
    "empty_required_value",
    people(3, {1: {"name": "   "}}),
    issue="a required value (name) is blank on one row",
    expect=["row 3", "name", "required value is empty"],
)
csv_case(
    "impossible_date",
    people(3, {1: {"birth_date": "2023-02-30"}}),
    issue="birth_date 2023-02-30 does not exist",
    expect=["row 3", "birth_date", "not a real date"],
    forbid_values=("2023-02-30",),
)
csv_case(
    "signed_date",
    people(3, {2: {"birth_date": "+1990-01-01"}}),
    issue="birth_date with a sign, which a date parser might tolerate",
    expect=["row 4", "birth_date", "not a date"],
)
csv_case(
    "future_birth_date",
    people(3, {1: {"birth_date": "2199-01-01"}}),
    issue="birth_date in the future",
    expect=["row 3", "birth_date", "in the future"],
    forbid_values=("2199-01-01",),
)
csv_case(
    "birth_before_1880",
    people(3, {1: {"birth_date": "1879-12-31"}}),
    issue="birth_date before 1880",
    expect=["row 3", "birth_date", "before 1880"],
    forbid_values=("1879-12-31",),
)
csv_case(
    "date_formats_valid",
    people(
        3,
        {
            0: {"birth_date": "1990-04-01"},
            1: {"birth_date": "1990/04/01"},
            2: {"birth_date": "19900401"},
        },
    ),
    issue="valid: the three accepted date formats",
    expect=["newly assigned"],
    exit=0,
    output_rows=3,
)
for _label, _bad, _reason in (
    ("code_too_short", "5802617394", "does not have 11 digits"),
    ("code_too_long", "580261739470", "does not have 11 digits"),
    ("code_non_digit", "5802617394X", "other than digits"),
    ("code_bad_check_digit", "58026173948", "check digit does not match"),
):
    csv_case(
        _label,
        people(3, {1: {"resident_code": _bad}}),
        issue=f"existing resident_code {_bad!r}: {_reason}",
        expect=["row 3", "resident_code", "existing code is not valid", _reason],
        forbid_values=(_bad,),
    )
csv_case(
    "same_code_two_rows",
    people(4, {1: {"resident_code": CODE}, 3: {"resident_code": CODE}}),
    issue="one carried-over code on two rows",
    expect=["row 3", "row 5", "resident_code", "same resident_code as row 3"],
    forbid_values=(CODE,),
)
csv_case(
    "fullwidth_code_valid",
    people(2, {1: {"resident_code": "５８０２６１７３９４７"}}),
    issue="valid: a carried-over code in full-width digits is normalised",
    expect=["carried over"],
    exit=0,
    output_rows=2,
    output_values={"resident_code": ["*", CODE], "code_status": ["assigned", "carried_over"]},
)
csv_case(
    "hyphenated_code_valid",
    people(2, {0: {"resident_code": "5802-6173-947"}}),
    issue="valid: a carried-over code written with hyphens is compacted",
    expect=["carried over"],
    exit=0,
    output_rows=2,
    output_values={"resident_code": [CODE, "*"], "code_status": ["carried_over", "assigned"]},
)
csv_case(
    "bad_sex",
    people(3, {1: {"sex": "X"}}),
    issue="sex is not 男/女, M/F or 1/2",
    expect=["row 3", "sex", "sex must be"],
)
csv_case(
    "bad_nationality_code",
    people(3, {2: {"nationality": "XQ"}}),
    issue="nationality looks like an ISO code but is not one",
    expect=["row 4", "nationality", "ISO 3166"],
)
csv_case(
    "bad_foreign_resident_category",
    people(3, {1: {"foreign_resident_category": "永住者"}}),
    issue="foreign_resident_category is not one of the six of 第30条の45",
    expect=["row 3", "foreign_resident_category", "not one of the six categories"],
)
csv_case(
    "bad_residence_card_number",
    people(3, {1: {"residence_card_number": "AB1234567CD"}}),
    issue="residence_card_number with seven digits (lower case and spaces are normalised)",
    expect=["row 3", "residence_card_number", "residence card number must be"],
    forbid_values=("AB1234567CD",),
)
csv_case(
    "bad_postal_code",
    people(3, {1: {"postal_code": "10-20304"}}),
    issue="postal_code not NNN-NNNN",
    expect=["row 3", "postal_code", "postal code must be NNN-NNNN"],
    forbid_values=("10-20304",),
)
csv_case(
    "alias_latin_letters",
    people(3, {1: {"alias": "Tanaka"}}),
    issue="alias (通称) written in Latin letters",
    expect=["row 3", "alias", "kana and kanji only"],
    forbid_values=("Tanaka",),
)
csv_case(
    "alias_kana_with_kanji",
    people(3, {1: {"alias": "田中", "alias_kana": "田中"}}),
    issue="alias_kana written in kanji",
    expect=["row 3", "alias_kana", "kana only"],
)
csv_case(
    "unknown_language",
    people(3, {1: {"language": "xx-Klingon"}}),
    issue="a notice language rrnet does not recognise never blocks a code",
    expect=["newly assigned", "does not recognise (row 3)", "default language"],
    forbid_values=("xx-Klingon",),
    exit=0,
    output_rows=3,
)
csv_case(
    "bad_stay_expiry",
    people(3, {1: {"stay_expiry": "2027-13-01"}}),
    issue="stay_expiry is not a real date",
    expect=["row 3", "stay_expiry", "not a real date"],
)
csv_case(
    "many_bad_rows",
    people(25, {i: {"sex": "?"} for i in range(25)}),
    issue="25 bad rows: the message lists 20 and says how many more",
    expect=["25 row(s)", "row 2, sex", "row 21, sex", "and 5 more"],
)

csv_case(
    "century_not_leap_year",
    people(3, {1: {"birth_date": "1900-02-29"}}),
    issue="birth_date 1900-02-29 (1900 was not a leap year)",
    expect=["row 3", "birth_date", "not a real date"],
)
csv_case(
    "duplicate_resident_id_fullwidth",
    people(3, {2: {"resident_id": "１００００２"}}),
    issue="two resident_ids equal after NFKC (full-width digits)",
    expect=["row 4", "resident_id", "same resident_id as row 3"],
)
csv_case(
    "same_code_two_rows_fullwidth",
    people(3, {0: {"resident_code": CODE}, 2: {"resident_code": "５８０２ ６１７３ ９４７"}}),
    issue="one code on two rows, once in full-width digits with spaces",
    expect=["row 2", "row 4", "resident_code", "same resident_code as row 2"],
    forbid_values=(CODE,),
)
csv_case(
    "leading_zero_code_valid",
    people(2, {1: {"resident_code": "00000000060"}}),
    issue="valid: a carried-over code with leading zeros keeps them",
    expect=["carried over"],
    exit=0,
    output_rows=2,
    output_values={"resident_code": ["*", "00000000060"]},
)
csv_case(
    "extra_column_named_row",
    people(2, {0: {"__row__": "7"}, 1: {"__row__": "8"}}),
    issue="an extra column named like rrnet's working columns (__row__) is refused by name",
    expect=["__row__", "reserved"],
)
csv_case(
    "extra_columns_named_like_helpers",
    people(
        2,
        {
            0: {"__resident_id__": "7", "__resident_code__": "x", "__move_out__": ""},
            1: {"__resident_id__": "7", "__resident_code__": "y", "__move_out__": ""},
        },
    ),
    issue="extra columns named like rrnet's working columns are refused, never overwritten",
    expect=["__resident_id__", "__resident_code__", "__move_out__", "reserved"],
)


def _lines(rows: list[dict[str, str]]) -> list[str]:
    return csv_text(rows).splitlines()


def _raw_case(
    name: str,
    lines: list[str],
    *,
    issue: str,
    expect: list[str],
    rows: list,
    end: str = "\n",
    **kwargs: object,
) -> None:
    """A CSV case whose lines are edited by hand (shapes csv.writer would not make)."""
    file = f"{name}.csv"
    case(
        name=name,
        file=file,
        issue=issue,
        expect=[file, *expect] if kwargs.get("exit", 2) != 0 else expect,
        forbid=names_in(rows),
        write=text_file(file, end.join(lines) + end),
        **kwargs,
    )


_header = ",".join(REQUIRED)
_three = people(3)
_rows = _lines(_three)
_raw_case(
    "ragged_too_many_fields",
    [*_rows[:2], _rows[2] + ",extra", *_rows[3:]],
    issue="a row with one field more than the header (an unquoted comma)",
    expect=["row 3", "7 fields", "header's 6 fields"],
    rows=_three,
)
_raw_case(
    "ragged_too_few_fields",
    [*_rows[:3], ",".join(_rows[3].split(",")[:5])],
    issue="a row with one field fewer than the header",
    expect=["row 4", "5 fields", "header's 6 fields"],
    rows=_three,
)
_raw_case(
    "blank_line_in_middle",
    [*_rows[:2], "", *_rows[2:]],
    issue="valid: an empty line between two residents is skipped and counted",
    expect=["blank rows (skipped)"],
    rows=_three,
    exit=0,
    output_rows=3,
)
_raw_case(
    "commas_only_row",
    [*_rows[:2], ",,,,,", *_rows[2:]],
    issue="valid: a row of empty fields (what a spreadsheet leaves after clearing a row) "
    "is skipped and counted",
    expect=["blank rows (skipped)"],
    rows=_three,
    exit=0,
    output_rows=3,
)
_five = people(5)
_rows5 = _lines(_five)
_opened = _rows5[2].rsplit(",", 1)
_raw_case(
    "unclosed_quote",
    [*_rows5[:2], _opened[0] + ',"' + _opened[1], *_rows5[3:]],
    issue="a quote opened on row 3 never closes: rows 4-6 must not vanish into its address",
    expect=["row 3", "quote"],
    rows=_five,
)
_raw_case(
    "crlf_line_ends_valid",
    _rows,
    end="\r\n",
    issue="valid: Windows line ends",
    expect=["newly assigned"],
    rows=[],
    exit=0,
    output_rows=3,
)
_multiline = people(3, {1: {"address": "東京都千代田区\n九段南1-2-1\n2階"}})
csv_case(
    "quoted_newline_in_address",
    _multiline,
    issue="valid: an address with line breaks inside double quotes",
    expect=["newly assigned"],
    exit=0,
    output_rows=3,
    output_values={
        "address": [
            _multiline[0]["address"],
            "東京都千代田区\n九段南1-2-1\n2階",
            _multiline[2]["address"],
        ]
    },
)
csv_case(
    "huge_extra_field_valid",
    people(2, {1: {"remarks": "x" * ONE_MB}}),
    issue="valid: a 1 MB value in an extra column is carried through",
    expect=["newly assigned"],
    exit=0,
    output_rows=2,
    output_values={"remarks": ["", "x" * 32 + "*"]},
    output_lengths={"remarks": [0, ONE_MB]},
)

# -- encodings -------------------------------------------------------------------
_ja_header = "宛名番号,氏名,生年月日,性別,国籍・地域,住所"
_ja_rows = "\n".join(
    ",".join(
        [p["resident_id"], p["name"], p["birth_date"], "男女"[i % 2], "ベトナム", p["address"]]
    )
    for i, p in enumerate(people(3))
)
_ja_text = _ja_header + "\n" + _ja_rows + "\n"
_utf8_lines = csv_text(people(3)).encode().splitlines(keepends=True)
case(
    name="invalid_utf8_forced",
    file="invalid_utf8_forced.csv",
    issue="a byte that is not UTF-8 on line 3, read with --encoding utf-8",
    args=["--encoding", "utf-8"],
    expect=["invalid_utf8_forced.csv", "not valid UTF-8", "line 3"],
    forbid=names_in(people(3)),
    write=bytes_file(
        "invalid_utf8_forced.csv",
        b"".join(
            [
                _utf8_lines[0],
                _utf8_lines[1],
                _utf8_lines[2].replace(b"-", b"\xff", 1),
                _utf8_lines[3],
            ]
        ),
    ),
)
case(
    name="invalid_utf8_with_bom",
    file="invalid_utf8_with_bom.csv",
    issue="a file with a UTF-8 BOM and a non-UTF-8 byte on line 4 (auto must not guess CP932)",
    expect=["invalid_utf8_with_bom.csv", "not valid UTF-8", "line 4"],
    forbid=names_in(people(3)),
    write=bytes_file(
        "invalid_utf8_with_bom.csv",
        b"\xef\xbb\xbf" + b"".join(_utf8_lines[:3]) + _utf8_lines[3].replace(b"-", b"\x81", 1),
    ),
)
case(
    name="cp932_read_as_utf8",
    file="cp932_read_as_utf8.csv",
    issue="a CP932 file (Japanese headers) read with --encoding utf-8",
    args=["--encoding", "utf-8"],
    expect=["cp932_read_as_utf8.csv", "not valid UTF-8", "--encoding cp932"],
    forbid=names_in(people(3)),
    write=text_file("cp932_read_as_utf8.csv", _ja_text.replace("\n", "\r\n"), "cp932"),
)
case(
    name="cp932_auto_valid",
    file="cp932_auto_valid.csv",
    issue="valid: the same CP932 file with --encoding auto",
    expect=["cp932", "newly assigned"],
    exit=0,
    output_rows=3,
    write=text_file("cp932_auto_valid.csv", _ja_text.replace("\n", "\r\n"), "cp932"),
)
case(
    name="utf8_read_as_cp932",
    file="utf8_read_as_cp932.csv",
    issue="a UTF-8 file with Japanese text read with --encoding cp932",
    args=["--encoding", "cp932"],
    expect=["utf8_read_as_cp932.csv", "not valid CP932", "--encoding utf-8"],
    forbid=names_in(people(3)),
    write=text_file("utf8_read_as_cp932.csv", _ja_text),
)
_latin1 = csv_text(
    [
        dict(p, address=f"1-{i + 1}-1 Kudan-minami, Chiyoda-ku, Tokyo")
        for i, p in enumerate(people(3, {1: {"remarks": "nacido en Bogotá"}}))
    ]
)
case(
    name="neither_utf8_nor_cp932",
    file="neither_utf8_nor_cp932.csv",
    issue="a Latin-1 file: neither UTF-8 nor CP932, under --encoding auto",
    expect=["neither_utf8_nor_cp932.csv", "neither valid UTF-8 nor valid CP932"],
    forbid=names_in(people(3)),
    write=text_file("neither_utf8_nor_cp932.csv", _latin1, "latin-1"),
)
case(
    name="binary_garbage",
    file="binary_garbage.csv",
    issue="binary bytes with NULs named .csv",
    expect=["binary_garbage.csv", "binary data"],
    write=bytes_file(
        "binary_garbage.csv", b"\x00" + random.Random(1).randbytes(4095) + b"\x00\x00"
    ),
)
case(
    name="empty_file",
    file="empty_file.csv",
    issue="a file of zero bytes",
    expect=["empty_file.csv", "is empty"],
    write=bytes_file("empty_file.csv", b""),
)
case(
    name="whitespace_only_file",
    file="whitespace_only_file.csv",
    issue="a file of blank lines",
    expect=["whitespace_only_file.csv", "is empty"],
    write=bytes_file("whitespace_only_file.csv", b"\n\r\n  \n\n"),
)
case(
    name="header_only_valid",
    file="header_only_valid.csv",
    issue="valid: a header and no residents",
    expect=["rows read"],
    exit=0,
    output_rows=0,
    write=text_file("header_only_valid.csv", _header + "\n"),
)
case(
    name="header_only_cp932_ja_valid",
    file="header_only_cp932_ja_valid.csv",
    issue="valid: Japanese headers only, in CP932, no line end",
    expect=["cp932"],
    exit=0,
    output_rows=0,
    write=text_file("header_only_cp932_ja_valid.csv", _ja_header, "cp932"),
)
case(
    name="unknown_encoding_option",
    file="unknown_encoding_option.csv",
    issue="--encoding latin-1 is not one rrnet reads",
    args=["--encoding", "latin-1"],
    expect=["--encoding", "latin-1", "is not one of"],
    write=text_file("unknown_encoding_option.csv", csv_text(people(2))),
)

# -- headers ---------------------------------------------------------------------
case(
    name="duplicate_header_names",
    file="duplicate_header_names.csv",
    issue="the header names one column twice",
    expect=["duplicate_header_names.csv", "'name'", "appears twice"],
    write=text_file(
        "duplicate_header_names.csv",
        "resident_id,name,birth_date,sex,nationality,address,name\n"
        "100001,KIM MINJI,1990-01-01,F,KOR,東京都千代田区九段南1-1-1,KIM MINJI\n",
    ),
)
case(
    name="two_headers_one_column",
    file="two_headers_one_column.csv",
    issue="resident_id and its Japanese name 宛名番号 both present",
    expect=["two_headers_one_column.csv", "宛名番号", "resident_id", "both mean"],
    write=text_file(
        "two_headers_one_column.csv",
        "resident_id,宛名番号,name,birth_date,sex,nationality,address\n"
        "100001,100001,KIM MINJI,1990-01-01,F,KOR,東京都千代田区九段南1-1-1\n",
    ),
)
case(
    name="empty_header_name",
    file="empty_header_name.csv",
    issue="a column with values but without a name in the header, named by its position",
    expect=[
        "empty_header_name.csv",
        "column 2 (after resident_id)",
        "has values but no header name",
    ],
    write=text_file(
        "empty_header_name.csv",
        "resident_id,,name,birth_date,sex,nationality,address\n"
        "100001,x,KIM MINJI,1990-01-01,F,KOR,東京都千代田区九段南1-1-1\n",
    ),
)

# -- Parquet ---------------------------------------------------------------------
_pq_rows = people(3)


def _parquet(name: str, table_of: Callable[[], pa.Table]) -> Callable[[Path], None]:
    return lambda folder: write_parquet(folder / name, table_of())


case(
    name="parquet_int_resident_code",
    file="parquet_int_resident_code.parquet",
    issue="Parquet resident_code stored as int64 (leading zeros already lost)",
    expect=["parquet_int_resident_code.parquet", "resident_code", "int64", "leading zeros"],
    forbid=names_in(_pq_rows),
    write=_parquet(
        "parquet_int_resident_code.parquet",
        lambda: string_table(_pq_rows, resident_code=pa.array([int(CODE), None, 60], pa.int64())),
    ),
)
case(
    name="parquet_float_postal_code",
    file="parquet_float_postal_code.parquet",
    issue="Parquet postal_code stored as float64",
    expect=["parquet_float_postal_code.parquet", "postal_code", "double", "leading zeros"],
    forbid=names_in(_pq_rows),
    write=_parquet(
        "parquet_float_postal_code.parquet",
        lambda: string_table(_pq_rows, postal_code=pa.array([1020074.0, 60001.0, None])),
    ),
)
case(
    name="parquet_float_birth_date",
    file="parquet_float_birth_date.parquet",
    issue="Parquet birth_date stored as float64",
    expect=["parquet_float_birth_date.parquet", "birth_date", "double", "store it as text"],
    forbid=names_in(_pq_rows),
    write=_parquet(
        "parquet_float_birth_date.parquet",
        lambda: string_table(_pq_rows, birth_date=pa.array([19900101.0, 19910101.0, 19920101.0])),
    ),
)
case(
    name="parquet_list_column",
    file="parquet_list_column.parquet",
    issue="Parquet extra column holding lists",
    expect=["parquet_list_column.parquet", "tags", "store it as text"],
    forbid=names_in(_pq_rows),
    write=_parquet(
        "parquet_list_column.parquet",
        lambda: string_table(
            [dict(r, tags="") for r in _pq_rows],
            tags=pa.array([["a"], [], None], pa.list_(pa.string())),
        ),
    ),
)
case(
    name="parquet_bad_sex",
    file="parquet_bad_sex.parquet",
    issue="a bad row in Parquet: the first person is row 1",
    expect=["parquet_bad_sex.parquet", "row 2", "sex", "sex must be"],
    forbid=names_in(_pq_rows),
    write=_parquet("parquet_bad_sex.parquet", lambda: string_table(people(3, {1: {"sex": "Q"}}))),
)
case(
    name="parquet_missing_column",
    file="parquet_missing_column.parquet",
    issue="Parquet without the address column",
    expect=["parquet_missing_column.parquet", "address", "lacks required column"],
    write=_parquet(
        "parquet_missing_column.parquet",
        lambda: string_table(_pq_rows).drop_columns(["address"]),
    ),
)
case(
    name="parquet_typed_valid",
    file="parquet_typed_valid.parquet",
    issue="valid: Parquet with an integer resident_id and a date32 birth_date",
    expect=["parquet", "newly assigned"],
    exit=0,
    output_rows=3,
    output_values={
        "resident_id": ["100001", "100002", "100003"],
        "birth_date": ["1990-01-01", "1991-02-03", "2000-12-31"],
    },
    write=_parquet(
        "parquet_typed_valid.parquet",
        lambda: string_table(
            _pq_rows,
            resident_id=pa.array([100001, 100002, 100003], pa.int32()),
            birth_date=pa.array(
                [date(1990, 1, 1), date(1991, 2, 3), date(2000, 12, 31)],
                pa.date32(),
            ),
        ),
    ),
)
case(
    name="parquet_duplicate_column",
    file="parquet_duplicate_column.parquet",
    issue="Parquet with two columns called name",
    expect=["parquet_duplicate_column.parquet", "name"],
    forbid=names_in(_pq_rows),
    write=_parquet(
        "parquet_duplicate_column.parquet",
        lambda: pa.table(
            [*string_table(_pq_rows).columns, pa.array(["A", "B", "C"])],
            names=[*REQUIRED, "name"],
        ),
    ),
)
case(
    name="unreadable_parquet",
    file="unreadable_parquet.parquet",
    issue="random bytes named .parquet",
    expect=["unreadable_parquet.parquet", "cannot be read as Parquet"],
    write=bytes_file("unreadable_parquet.parquet", random.Random(2).randbytes(2048)),
)
case(
    name="empty_parquet_file",
    file="empty_parquet_file.parquet",
    issue="a zero-byte .parquet",
    expect=["empty_parquet_file.parquet", "cannot be read as Parquet"],
    write=bytes_file("empty_parquet_file.parquet", b""),
)

# -- paths -------------------------------------------------------------------------


def _directory(folder: Path) -> None:
    target = folder / "directory_export.csv"
    target.mkdir()
    (target / "README.txt").write_text(
        "This folder is an input of the bad-input tests: a folder given as the export.\n"
    )


case(
    name="directory_export",
    file="directory_export.csv",
    issue="a folder given as the export",
    expect=["directory_export.csv", "is a folder"],
    write=_directory,
)
case(
    name="missing_path",
    file="no_such_export.csv",
    issue="an export path that does not exist",
    expect=["no_such_export.csv", "does not exist"],
)

# -- against a prepared ledger ---------------------------------------------------
_ASSIGN_OWNER = [
    "assign",
    "{data}/setup/code_owner.csv",
    "--ledger",
    "{ledger}",
    "-o",
    "{tmp}/setup-out.csv",
    "--seed",
    "7",
]
csv_case(
    "code_held_for_someone_else",
    people(3, {1: {"resident_code": CODE}}),
    issue="the ledger holds the carried-over code for another resident",
    expect=["row 3", "resident_code", "the ledger holds this code for another resident"],
    forbid_values=(CODE,),
    setup=[_ASSIGN_OWNER],
)
csv_case(
    "known_resident_different_code",
    [person(0, resident_id="900001", resident_code=CODE2), *people(2)[1:]],
    issue="a resident the ledger knows arrives with a different code",
    expect=["row 2", "resident_code", "holds a different code for this resident"],
    forbid_values=(CODE2,),
    setup=[_ASSIGN_OWNER],
)
csv_case(
    "known_resident_same_code_valid",
    [person(0, resident_id="900001", resident_code=CODE), *people(2)[1:]],
    issue="valid: a resident the ledger knows, with the code it holds",
    expect=["already assigned"],
    exit=0,
    output_rows=2,
    output_values={"resident_code": [CODE, "*"], "code_status": ["already_assigned", "assigned"]},
    setup=[_ASSIGN_OWNER],
)
csv_case(
    "retired_code",
    people(3, {2: {"resident_code": CODE2}}),
    issue="a carried-over code the ledger has retired",
    expect=["row 4", "resident_code", "retired"],
    forbid_values=(CODE2,),
    setup=[["ledger", "import", "{data}/setup/retired.txt", "--retired", "--ledger", "{ledger}"]],
)


def write_setup(folder: Path) -> None:
    setup = folder / "setup"
    setup.mkdir()
    (setup / "code_owner.csv").write_text(
        csv_text([person(0, resident_id="900001", resident_code=CODE)]), encoding="utf-8"
    )
    (setup / "retired.txt").write_text(CODE2 + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------
# Writing


def _toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }"
    raise TypeError(type(value))


def cases_toml() -> str:
    lines = [
        "# Bad-input corpus for `rrnet assign`: generated by make_cases.py, do not edit.",
        "# Fields are described at the top of make_cases.py.",
        "",
    ]
    for c in CASES:
        lines.append("[[case]]")
        for key in ("name", "file", "issue", "args", "exit", "expect", "forbid"):
            lines.append(f"{key} = {_toml_value(getattr(c, key))}")
        if c.setup:
            lines.append(f"setup = {_toml_value(c.setup)}")
        if c.output_rows is not None:
            lines.append(f"output_rows = {c.output_rows}")
        if c.output_values:
            lines.append(f"output_values = {_toml_value(c.output_values)}")
        if c.output_lengths:
            lines.append(f"output_lengths = {_toml_value(c.output_lengths)}")
        lines.append("")
    return "\n".join(lines)


def generate(folder: Path) -> None:
    """Write every case's file, ``setup/`` and ``cases.toml`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()) and not (folder / "cases.toml").exists():
        # It is about to empty the folder: only ever one it wrote itself.
        raise SystemExit(f"{folder} is not empty and holds no cases.toml; give a new folder.")
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    keep = {Path(__file__).name}
    for entry in folder.iterdir():  # start clean, so a removed case leaves nothing behind
        if entry.name in keep or entry.name == "__pycache__":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    write_setup(folder)
    for c in CASES:
        if c.write is not None:
            c.write(folder)
        else:
            assert not (folder / c.file).exists()
    (folder / "cases.toml").write_text(cases_toml(), encoding="utf-8")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
    print(f"{len(CASES)} cases")
