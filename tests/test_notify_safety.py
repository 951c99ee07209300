"""What a new user hit with notify, each as they met it.

Codes swapped in a spreadsheet, a re-run with nothing new, Ctrl-C and a killed
worker in the middle, a sheet too long for its page, the clock of a machine
in UTC, postal codes typed without their hyphen, and the profile of another
municipality. Each ends with a plain message and the promised exit code, and
never leaves a half-written folder behind.
"""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from helpers import (
    MUNICIPALITY,
    SAMPLE_MUNICIPALITY,
    SAMPLE_PROFILE,
    profile_for,
    rrnet_command,
)
from pypdf import PdfReader
from typer.testing import CliRunner

from rrnet_cli.cli import app
from rrnet_cli.dates import format_date
from rrnet_cli.ledger import Ledger
from rrnet_cli.notify import today_in_japan

SAMPLE = Path(__file__).resolve().parent.parent / "sample_data" / "register_ja_cp932.csv"


def _assigned(runner: CliRunner, ledger: Ledger, export: Path, out: Path) -> Path:
    result = runner.invoke(app, ["assign", str(export), "-l", str(ledger.path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out


def _notify(runner: CliRunner, assigned: Path, ledger: Ledger, sheets: Path, *extra: str):
    profile = profile_for(ledger.municipality or "", sheets.parent)
    return runner.invoke(
        app,
        [
            *("notify", str(assigned), "-l", str(ledger.path), "--profile", str(profile)),
            *("-o", str(sheets), *extra),
        ],
    )


def _swap_codes(path: Path, first: int, second: int) -> None:
    """Swap the resident_code cells of two spreadsheet rows, as sorting one column does."""
    records = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline="")))
    column = records[0].index("resident_code")
    a, b = records[first - 1], records[second - 1]
    a[column], b[column] = b[column], a[column]
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL).writerows(records)
    path.write_text(buffer.getvalue(), encoding="utf-8-sig")


def test_codes_swapped_in_a_spreadsheet_print_nothing(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    export = write_register([resident(f"{i:06d}") for i in range(1, 6)])
    assigned = _assigned(runner, ledger, export, tmp_path / "assigned.csv")
    _swap_codes(assigned, 2, 5)
    sheets = tmp_path / "sheets"
    result = _notify(runner, assigned, ledger, sheets)
    assert result.exit_code == 2, result.output
    assert "row 2, resident_code: the ledger holds this code for another resident" in result.output
    assert "row 5, resident_code" in result.output
    assert "internal error" not in result.output
    assert not sheets.exists()


def test_nothing_new_to_print_says_so_and_makes_no_folder(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    export = write_register([resident(f"{i:06d}") for i in range(1, 4)])
    _assigned(runner, ledger, export, tmp_path / "first.csv")
    again = _assigned(runner, ledger, export, tmp_path / "again.csv")  # all already_assigned
    sheets = tmp_path / "sheets"
    result = _notify(runner, again, ledger, sheets)
    assert result.exit_code == 0, result.output
    assert "Nothing to print" in result.output and "--all" in result.output
    assert not sheets.exists()
    as_json = _notify(runner, again, ledger, sheets, "--json")
    assert as_json.exit_code == 0 and '"sheets": 0' in as_json.output
    assert not sheets.exists()


def test_a_profile_of_another_municipality_is_refused(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    export = write_register([resident("000001")])
    assigned = _assigned(runner, ledger, export, tmp_path / "assigned.csv")
    sheets = tmp_path / "sheets"
    result = runner.invoke(
        app,
        [
            *("notify", str(assigned), "-l", str(ledger.path)),
            *("--profile", str(SAMPLE_PROFILE), "-o", str(sheets)),
        ],
    )
    assert result.exit_code == 2
    assert f"profile is for municipality {SAMPLE_MUNICIPALITY}, the ledger for" in result.output
    assert not sheets.exists()


def test_postal_codes_print_with_their_hyphen_and_dates_are_japans(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    export = write_register([resident("000001", postal_code="4870802")])
    assigned = _assigned(runner, ledger, export, tmp_path / "assigned.csv")
    sheets = tmp_path / "sheets"
    result = _notify(runner, assigned, ledger, sheets, "--workers", "1")
    assert result.exit_code == 0, result.output
    text = PdfReader(sheets / "sheets-0001.pdf").pages[0].extract_text()
    assert "〒487-0802" in text
    # The date of notice is today in Japan, written as the profile says (和暦 in the sample).
    assert format_date(today_in_japan(), "wareki") in text
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    assert manifest["postal_code"].to_list() == ["487-0802"]


def test_today_in_japan_is_utc_plus_nine() -> None:
    expected = (datetime.now(UTC) + timedelta(hours=9)).date()
    assert today_in_japan() in (expected, expected - timedelta(days=1))  # across midnight


def test_a_sheet_too_long_for_its_page_is_named_and_nothing_is_printed(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    long_address = (
        "愛知県さくら市桜台三丁目二十四番地十二号 " + "サンライズマンション" * 12 + "307号室"
    )
    rows = [
        resident("000001"),
        resident(
            "000002",
            name="SITI NURHALIZA BINTI TARUDIN " * 3,
            name_kanji="西蒂·努尔哈丽扎" * 3,
            alias="山田花子",
            language="id",
            address=long_address * 3,
        ),
    ]
    assigned = _assigned(runner, ledger, write_register(rows), tmp_path / "assigned.csv")
    sheets = tmp_path / "sheets"
    result = _notify(runner, assigned, ledger, sheets, "--workers", "1")
    assert result.exit_code == 2, result.output
    assert "would not fit on one A4 page" in result.output
    assert "000002" in result.output and "000001" not in result.output
    assert "internal error" not in result.output
    assert not sheets.exists()


@pytest.fixture
def big_assigned(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The 300-resident sample, assigned: enough sheets for notify to be stopped midway."""
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    out = tmp_path / "assigned.csv"
    runner = CliRunner(env={"RRNET_LEDGER": None, "RRNET_MUNICIPALITY": None})
    result = runner.invoke(app, ["assign", str(SAMPLE), "-l", str(ledger.path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    return out, ledger.path, tmp_path / "sheets"


def _start_notify(assigned: Path, ledger: Path, sheets: Path) -> subprocess.Popen[str]:
    command = rrnet_command(
        *("notify", assigned, "-l", ledger, "--profile", SAMPLE_PROFILE, "-o", sheets),
        *("--batch-size", "10", "--workers", "2"),
    )
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _wait_for_rendering(sheets: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if sheets.exists() and any(sheets.glob(".sheets-*.part")):
            return
        time.sleep(0.05)
    pytest.fail("notify finished or stalled before it began writing sheets")


@pytest.mark.slow
def test_ctrl_c_in_the_middle_leaves_no_part_file_and_no_folder(big_assigned) -> None:
    assigned, ledger, sheets = big_assigned
    process = _start_notify(assigned, ledger, sheets)
    _wait_for_rendering(sheets, process)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C sends: the whole process group
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Interrupted. No sheet was written" in stderr
    assert "Traceback" not in stderr
    assert not sheets.exists()


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_leaves_nothing(big_assigned) -> None:
    assigned, ledger, sheets = big_assigned
    process = _start_notify(assigned, ledger, sheets)
    _wait_for_rendering(sheets, process)
    # The workers are children of the forkserver; kill every process below notify.
    descendants = _descendants(process.pid)
    assert descendants
    for pid in descendants:
        os.kill(pid, signal.SIGKILL)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "rendering process stopped unexpectedly" in stderr
    assert not sheets.exists()


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            kids = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(k) for k in kids]
        pending += [int(k) for k in kids]
    return found


def test_the_profile_chooses_the_date_style_and_the_addressee(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    export = write_register([resident("000001", alias="山田花子", birth_date="H2.4.1")])
    assigned = _assigned(runner, ledger, export, tmp_path / "assigned.csv")
    profile = profile_for(MUNICIPALITY, tmp_path)
    text = profile.read_text(encoding="utf-8")
    profile.write_text(
        text.replace('date_style = "wareki"', 'date_style = "seireki"').replace(
            'addressee = "name"', 'addressee = "alias"'
        ),
        encoding="utf-8",
    )
    sheets = tmp_path / "sheets"
    result = runner.invoke(
        app,
        [
            *("notify", str(assigned), "-l", str(ledger.path), "--profile", str(profile)),
            *("-o", str(sheets), "--workers", "1", "--notice-date", "2026-12-01"),
        ],
    )
    assert result.exit_code == 0, result.output
    page = PdfReader(sheets / "sheets-0001.pdf").pages[0].extract_text()
    assert "山田花子 様" in page  # the alias, on the envelope's address block
    assert "1990年4月1日" in page and "2026年12月1日" in page
    assert "1990-04-01" not in page


def test_a_profile_with_an_unknown_date_style_is_refused(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    export = write_register([resident("000001")])
    assigned = _assigned(runner, ledger, export, tmp_path / "assigned.csv")
    profile = profile_for(MUNICIPALITY, tmp_path)
    profile.write_text(
        profile.read_text(encoding="utf-8").replace('"wareki"', '"japanese"'), encoding="utf-8"
    )
    sheets = tmp_path / "sheets"
    result = runner.invoke(
        app,
        [
            *("notify", str(assigned), "-l", str(ledger.path), "--profile", str(profile)),
            *("-o", str(sheets)),
        ],
    )
    assert result.exit_code == 2
    assert "sheet.date_style must be one of iso, seireki, wareki" in result.output
    assert not sheets.exists()


def test_mailing_list_agrees_with_the_manifest_and_the_pdfs(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    rows = [resident(f"{i:06d}", postal_code=f"10000{i:02d}") for i in range(1, 8)]
    assigned = _assigned(runner, ledger, write_register(rows), tmp_path / "assigned.csv")
    sheets = tmp_path / "sheets"
    result = _notify(runner, assigned, ledger, sheets, "--workers", "1", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    mailing = pl.read_csv(sheets / "mailing.csv", infer_schema=False)
    assert (sheets / "mailing.csv").stat().st_mode & 0o777 == 0o600
    assert mailing.columns == [
        *("envelope", "postal_code", "address", "addressee", "household_id", "sheets"),
        *("file", "first_page", "last_page", "mail_class", "tracking_number"),
    ]
    assert mailing["envelope"].to_list() == manifest["envelope"].to_list()
    assert set(mailing["mail_class"]) == {"kani_kakitome"}
    assert mailing["tracking_number"].fill_null("").eq("").all()
    for envelope in mailing.iter_rows(named=True):
        mine = manifest.filter(pl.col("envelope") == envelope["envelope"])
        assert int(envelope["sheets"]) == mine.height
        assert (envelope["file"], envelope["first_page"]) == (mine["file"][0], mine["page"][0])
        page = PdfReader(sheets / envelope["file"]).pages[int(envelope["first_page"]) - 1]
        text = page.extract_text()
        assert f"〒{envelope['postal_code']}" in text
        assert f"{envelope['addressee']} 様" in text
