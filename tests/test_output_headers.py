"""Writing the assigned register so the register system can load it back.

A municipal system exports CP932 with its own Japanese headers and reads the
same form back: ``--headers original`` restores the export's header names and
``--encoding cp932`` writes CP932.
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
        ["assign", str(parquet), "-l", str(ledger.path), "-o", str(out), "--encoding", "cp932"],
    )
    assert result.exit_code == 2
    assert "CP932" in result.output and "row 3, name" in result.output
    assert not out.exists()
    assert ledger.stats()["codes_used"] == 0
