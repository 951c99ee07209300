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
    first = _assigned(runner, ledger, export, tmp_path / "first.csv")
    printed = _notify(runner, first, ledger, tmp_path / "printed")
    assert printed.exit_code == 0, printed.output
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


def test_the_resident_who_overflowed_the_old_sheet_now_prints(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    # What a new user's export held: an alias, a kanji name and a 40-character
    # address with a building and room, in Indonesian. The flowing sheet overflowed.
    address = "愛知県さくら市桜台三丁目二十四番地十二号 サンライズマンション307号室"
    rows = [
        resident(
            f"{i:06d}",
            alias="山田花子",
            name_kanji="西蒂努尔哈丽扎",
            language=language,
            address=address,
        )
        for i, language in enumerate(("id", "es", "pt", "tl", "ne"), start=1)
    ]
    assigned = _assigned(runner, ledger, write_register(rows), tmp_path / "assigned.csv")
    sheets = tmp_path / "sheets"
    result = _notify(runner, assigned, ledger, sheets, "--workers", "1", "--json")
    assert result.exit_code == 0, result.output
    reader = PdfReader(sheets / "sheets-0001.pdf")
    assert len(reader.pages) == 5
    text = reader.pages[0].extract_text()
    assert "サンライズマンション307号室" in text.replace("\n", "").replace(" ", "")


def test_a_value_too_long_for_any_size_is_named_and_nothing_is_printed(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    rows = [
        resident("000001"),
        resident("000002", address="愛知県さくら市桜台" + "サンライズマンション" * 40),
        resident("000003"),
    ]
    assigned = _assigned(runner, ledger, write_register(rows), tmp_path / "assigned.csv")
    sheets = tmp_path / "sheets"
    result = _notify(runner, assigned, ledger, sheets, "--workers", "1")
    assert result.exit_code == 2, result.output
    assert "resident_id 000002, address: too long for its box" in result.output
    assert "サンライズ" not in result.output  # no personal data without --verbose
    assert "internal error" not in result.output
    assert not sheets.exists()
    # With --rejects the sheet is set aside, with its reason, and the others print.
    rejects = tmp_path / "unprintable.csv"
    kept = _notify(runner, assigned, ledger, sheets, "--workers", "1", "--rejects", str(rejects))
    assert kept.exit_code == 0, kept.output
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    assert manifest["resident_id"].to_list() == ["000001", "000003"]
    assert manifest["page"].to_list() == ["1", "2"]
    assert len(PdfReader(sheets / "sheets-0001.pdf").pages) == 2
    set_aside = pl.read_csv(rejects, infer_schema=False)
    assert set_aside["resident_id"].to_list() == ["000002"]
    assert set_aside["field"].to_list() == ["address"]


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


def _workers(pid: int) -> list[int]:
    """notify's rendering workers: the children of its forkserver process."""
    for child in _children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"forkserver" in command:
            return _children(child)
    return []


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _staging(sheets: Path) -> list[Path]:
    """The hidden folder notify writes into before it records and publishes the sheets."""
    return list(sheets.parent.glob(f".{sheets.name}.rrnet-*.part"))


def _left_nothing(sheets: Path, ledger: Path) -> None:
    assert not sheets.exists()
    assert _staging(sheets) == []
    assert Ledger.open(ledger).snapshot().notices.height == 0


def _wait_for_rendering(sheets: Path, process: subprocess.Popen[str]) -> list[int]:
    """Wait until notify has made its folder and both rendering workers run."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if _staging(sheets) and len(_workers(process.pid)) >= 2:
            # The static pages are laid out first by a worker of their own, which
            # has ended a moment later: then only the two printing workers remain.
            time.sleep(1.0)
            return sorted(_workers(process.pid), reverse=True)
        time.sleep(0.05)
    pytest.fail("notify finished or stalled before it began printing sheets")


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
    _left_nothing(sheets, ledger)


@pytest.mark.slow
def test_a_worker_killed_in_the_middle_leaves_nothing(big_assigned) -> None:
    assigned, ledger, sheets = big_assigned
    process = _start_notify(assigned, ledger, sheets)
    workers = _wait_for_rendering(sheets, process)
    os.kill(workers[0], signal.SIGKILL)  # one worker dies, as the OOM killer would do it
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "rendering process stopped unexpectedly" in stderr
    _left_nothing(sheets, ledger)


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
    # A date of notice after the code's recording (today in Japan), whenever this runs.
    notice = today_in_japan() + timedelta(days=1)
    result = runner.invoke(
        app,
        [
            *("notify", str(assigned), "-l", str(ledger.path), "--profile", str(profile)),
            *("-o", str(sheets), "--workers", "1", "--notice-date", notice.isoformat()),
        ],
    )
    assert result.exit_code == 0, result.output
    page = PdfReader(sheets / "sheets-0001.pdf").pages[0].extract_text()
    assert "山田花子 様" in page  # the alias, on the envelope's address block
    assert "1990年4月1日" in page and f"{notice.year}年{notice.month}月{notice.day}日" in page
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


def test_the_window_test_page_outlines_the_profiles_window(
    runner: CliRunner, tmp_path: Path
) -> None:
    page_file = tmp_path / "window-test.pdf"
    result = runner.invoke(
        app, ["notify", "--test-page", "--profile", str(SAMPLE_PROFILE), "-o", str(page_file)]
    )
    assert result.exit_code == 0, result.output
    assert page_file.stat().st_mode & 0o777 == 0o600
    reader = PdfReader(page_file)
    assert len(reader.pages) == 1
    # Where the sample address's first line starts, in mm from the top-left corner.
    starts: dict[str, tuple[float, float]] = {}

    def visit(text: str, cm: list[float], tm: list[float], *_: object) -> None:
        if text.strip():
            x = tm[4] * cm[0] + cm[4]
            y = tm[5] * cm[3] + cm[5]
            starts.setdefault(text.strip(), (x * 25.4 / 72, 297 - y * 25.4 / 72))

    text = reader.pages[0].extract_text(visitor_text=visit)
    assert "window: 22.0 mm from the left, 42.0 mm from the top, 90.0 × 40.0 mm" in text
    assert "must NOT show through the window" in text
    left, top = next(v for k, v in starts.items() if k.startswith("〒123-4567"))
    assert 22 <= left <= 22 + 90 and 42 <= top <= 42 + 40  # inside the profile's window


def test_the_test_page_wants_a_pdf_file_name(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["notify", "--test-page", "--profile", str(SAMPLE_PROFILE), "-o", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "-o names the PDF to write" in result.output


def test_a_hidden_folder_of_another_machine_is_left_alone(
    runner: CliRunner, ledger: Ledger, write_register, resident, tmp_path: Path
) -> None:
    """On a ledger shared by machines whose -o folders sit under one parent, a run never
    takes another machine's hidden folder for a stopped run's: that process may be at
    work. One of this machine's stopped runs (named as an older rrnet named it, without
    a machine) is removed."""
    export = write_register([resident(f"{i:06d}") for i in range(1, 4)])
    assigned = _assigned(runner, ledger, export, tmp_path / "assigned.csv")
    sheets = tmp_path / "sheets"
    elsewhere = tmp_path / ".sheets.rrnet-otherhost-999999-ab12cd34.part"
    stopped_here = tmp_path / ".sheets.rrnet-999999-ef56ab78.part"
    for folder in (elsewhere, stopped_here):
        folder.mkdir()
        (folder / "sheets-0001.pdf").write_bytes(b"%PDF- being written")
    result = _notify(runner, assigned, ledger, sheets, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert (elsewhere / "sheets-0001.pdf").exists()
    assert not stopped_here.exists()


def test_a_batch_marker_names_a_folder_ledger_however_its_path_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """-l demo/ledger today and -l /srv/demo/ledger tomorrow are one ledger: a stranded
    batch of the first run is the second run's to hand over."""
    from rrnet_cli.notify import ledger_key

    Ledger.init(tmp_path / "demo" / "ledger", municipality="131016")
    monkeypatch.chdir(tmp_path)
    relative = Ledger.open(Path("demo") / "ledger")
    absolute = Ledger.open(tmp_path / "demo" / "ledger")
    assert ledger_key(relative) == ledger_key(absolute) == os.path.realpath(absolute.path)


def test_a_folder_is_kept_when_the_ledger_cannot_say_whether_its_notices_are_recorded(
    tmp_path: Path,
) -> None:
    """A stopped run's folder whose marker names a batch: if the ledger cannot be read
    just now, the folder may hold sheets recorded as issued, and is kept (a later run
    asks again). Without a marker, or with one that cannot be read, nothing was
    recorded, and it may go."""
    import contextlib

    from rrnet_cli.notify import BATCH_MARKER, _issued

    class Unreadable:
        location = str(tmp_path / "ledger")

        @contextlib.contextmanager
        def reading(self):  # type: ignore[no-untyped-def]
            raise OSError(5, "Input/output error", self.location)
            yield

    staging = tmp_path / ".sheets.rrnet-host-1-ab12cd34.part"
    staging.mkdir()
    assert _issued(staging, Unreadable()) is False  # type: ignore[arg-type]
    (staging / BATCH_MARKER).write_text("{not json", encoding="utf-8")
    assert _issued(staging, Unreadable()) is False  # type: ignore[arg-type]
    (staging / BATCH_MARKER).write_text('{"batch": "20261208-100200-ea4a42"}', encoding="utf-8")
    assert _issued(staging, Unreadable()) is True  # type: ignore[arg-type]
