"""Writing the assigned register so the register system can load it back.

A municipal system exports CP932 with its own Japanese headers and reads the
same form back: ``--headers original`` restores the export's header names,
writes every value as the export had it (no Excel prefix) and, unless
``--output-encoding`` says otherwise, in the export's own encoding.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import polars as pl
from helpers import SAMPLE_MUNICIPALITY
from typer.testing import CliRunner

from rrnet_cli.cli import app
from rrnet_cli.ledger import Ledger

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "register_ja_cp932.csv"


def _header(raw: bytes, encoding: str) -> list[str]:
    return next(csv.reader(io.StringIO(raw.decode(encoding))))


def test_original_headers_in_cp932_round_trip_into_verify(runner: CliRunner, tmp_path: Path):
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    out = tmp_path / "assigned.csv"
    result = runner.invoke(
        app,
        [
            *("assign", str(SAMPLE), "-l", str(ledger.path), "-o", str(out)),
            *("--encoding", "cp932", "--headers", "original"),
        ],
    )
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")  # CP932 has no byte-order mark
    assert b"\r\n" in raw  # as Windows systems write it
    header = _header(raw, "cp932")
    source_header = _header(SAMPLE.read_bytes(), "cp932")
    # The export's own headers, in its order, then rrnet's status columns.
    assert header[: len(source_header)] == source_header
    assert header[len(source_header) :] == ["code_status", "exclusion_reason"]
    assert "住民票コード" in header
    frame = pl.read_csv(io.BytesIO(raw.decode("cp932").encode()), infer_schema=False)
    codes = frame.filter(frame["code_status"] != "excluded")["住民票コード"]
    assert codes.str.len_chars().eq(11).all()  # leading zeros kept
    verified = runner.invoke(app, ["verify", str(out), "-l", str(ledger.path)])
    assert verified.exit_code == 0, verified.output


def test_canonical_headers_in_utf8_stay_the_default(runner: CliRunner, tmp_path: Path):
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    out = tmp_path / "assigned.csv"
    result = runner.invoke(app, ["assign", str(SAMPLE), "-l", str(ledger.path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert _header(raw[3:], "utf-8")[0] == "resident_id"


def test_a_value_cp932_cannot_hold_is_refused_with_its_row(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
):
    export = write_register(
        [resident("000001"), resident("000002", name="NGUYỄN VĂN AN")], name="vn.csv"
    )
    parquet = tmp_path / "vn.parquet"
    pl.read_csv(export, infer_schema=False).write_parquet(parquet)
    out = tmp_path / "assigned.csv"
    result = runner.invoke(
        app,
        [
            *("assign", str(parquet), "-l", str(ledger.path), "-o", str(out)),
            *("--output-encoding", "cp932"),
        ],
    )
    assert result.exit_code == 2
    assert "CP932" in result.output and "row 3, name" in result.output
    assert not out.exists()
    assert ledger.stats()["codes_used"] == 0


def _export_with_formula_like_values(path: Path) -> Path:
    """The sample export (CP932, CRLF, Japanese headers) with values Excel would take for
    formulas: 備考 of -1 and =SUM(A1), an address that starts with a hyphen."""
    rows = list(csv.reader(io.StringIO(SAMPLE.read_bytes().decode("cp932"))))
    header = rows[0]
    note, address = header.index("備考"), header.index("住所")
    rows[1][note] = "-1"
    rows[2][note] = "=SUM(A1)"
    rows[3][address] = "-" + rows[3][address]
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(rows)
    path.write_bytes(text.getvalue().encode("cp932"))
    return path


def _cells(raw: bytes, encoding: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(raw.decode(encoding))))


def test_original_headers_write_values_as_the_export_had_them(
    runner: CliRunner, tmp_path: Path
) -> None:
    """Back into the register system: CP932 in, CP932 out, and no ' before -1 or =SUM."""
    export = _export_with_formula_like_values(tmp_path / "export.csv")
    source = _cells(export.read_bytes(), "cp932")
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    out = tmp_path / "assigned.csv"
    args = ["assign", str(export), "-l", str(ledger.path), "--headers", "original"]
    result = runner.invoke(app, [*args, "-o", str(out)])
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf") and b"\r\n" in raw, "CP932 as it came in"
    cells = _cells(raw, "cp932")
    width = len(source[0])
    # Every value of the export, as it was (住民票コード aside: it gains the codes).
    code = source[0].index("住民票コード")
    for before, after in zip(source[1:4], cells[1:4], strict=True):
        assert [v for i, v in enumerate(after[:width]) if i != code] == [
            v for i, v in enumerate(before) if i != code
        ]
    assert cells[1][source[0].index("備考")] == "-1"
    assert cells[2][source[0].index("備考")] == "=SUM(A1)"
    assert cells[3][source[0].index("住所")].startswith("-愛知県")
    assert runner.invoke(app, ["verify", str(out), "-l", str(ledger.path)]).exit_code == 0

    # Another output encoding, asked for: the values are still as they were.
    utf8 = tmp_path / "assigned-utf8.csv"
    again = runner.invoke(app, [*args, "-o", str(utf8), "--output-encoding", "utf-8-sig"])
    assert again.exit_code == 0, again.output
    raw = utf8.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    assert _cells(raw[3:], "utf-8")[2][source[0].index("備考")] == "=SUM(A1)"


def test_canonical_output_keeps_the_excel_prefix(runner: CliRunner, tmp_path: Path) -> None:
    export = _export_with_formula_like_values(tmp_path / "export.csv")
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    out = tmp_path / "assigned.csv"
    result = runner.invoke(app, ["assign", str(export), "-l", str(ledger.path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "for staff: UTF-8 with a BOM, as before"
    cells = _cells(raw[3:], "utf-8")
    note = cells[0].index("備考")  # not one of rrnet's columns: kept under its own name
    assert (cells[1][note], cells[2][note]) == ("'-1", "'=SUM(A1)")
    assert cells[3][cells[0].index("address")].startswith("'-愛知県")
