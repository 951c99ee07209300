"""Fuzz `rrnet assign` with random bytes and random cell values: it may refuse an
export (exit 2) but never crash with a traceback, and never change the ledger when
it refuses."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from helpers import REQUIRED_COLUMNS, SAMPLE_MUNICIPALITY, folder_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rrnet_cli.cli import app
from rrnet_cli.ledger import Ledger

HEADER = [*REQUIRED_COLUMNS, "resident_code", "planned_move_out_date", "postal_code"]
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def run_assign(tmp: Path, data: bytes, suffix: str = ".csv") -> None:
    ledger_path = tmp / "ledger"
    ledger = (
        Ledger.open(ledger_path)
        if ledger_path.exists()
        else Ledger.init(ledger_path, municipality=SAMPLE_MUNICIPALITY)
    )
    export = tmp / f"export{suffix}"
    export.write_bytes(data)
    out = tmp / "out.csv"
    out.unlink(missing_ok=True)
    before = folder_bytes(ledger.path)
    result = CliRunner().invoke(
        app, ["assign", str(export), "--ledger", str(ledger.path), "-o", str(out)]
    )
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    assert "unexpected internal error" not in result.output, result.output
    if result.exit_code == 2:
        assert folder_bytes(ledger.path) == before
        assert not out.exists()


@SETTINGS
@given(data=st.binary(max_size=400))
def test_random_bytes_never_crash(tmp_path_factory, data: bytes) -> None:
    run_assign(tmp_path_factory.mktemp("bytes"), data)


@SETTINGS
@given(data=st.binary(max_size=400))
def test_random_bytes_after_a_valid_header_never_crash(tmp_path_factory, data: bytes) -> None:
    run_assign(tmp_path_factory.mktemp("hdr"), (",".join(HEADER) + "\n").encode() + data)


cells = st.one_of(
    st.text(max_size=15),
    st.sampled_from(
        [
            "",
            " ",
            "=1+1",
            "０１２",
            "2020-02-30",
            "19900101",
            "M",
            "女",
            "VNM",
            "12345678903",
            "1234567890",
            "\u3000",
            '"',
            "\n",
            "123-4567",
        ]
    ),
)


@SETTINGS
@given(
    rows=st.lists(
        st.lists(cells, min_size=len(HEADER), max_size=len(HEADER)), min_size=0, max_size=6
    )
)
def test_random_cell_values_never_crash(tmp_path_factory, rows: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(rows)
    run_assign(tmp_path_factory.mktemp("cells"), buffer.getvalue().encode("utf-8"))
