"""Notification sheets: read the PDFs back and check what a resident would see."""

from __future__ import annotations

import re
import stat
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import typer
from helpers import SAMPLE_MUNICIPALITY
from pypdf import PdfReader
from typer.testing import CliRunner

from rrnet_cli import code as rcode
from rrnet_cli.assign import assign_register
from rrnet_cli.cli import app
from rrnet_cli.dates import format_date
from rrnet_cli.errors import UsageError
from rrnet_cli.languages import TEMPLATES, load_notices
from rrnet_cli.ledger import Ledger
from rrnet_cli.notify import notify
from rrnet_cli.profile import load_profile
from rrnet_cli.render import make_fetcher

ROOT = Path(__file__).parent.parent
PROFILE = ROOT / "sample_data" / "profile.toml"
HOSTILE_NAME = '<img src="file:///etc/passwd">'
HOSTILE_ADDRESS = '<link rel="stylesheet" href="http://evil.example/x.css">さくら市1-1'


def squash(text: str) -> str:
    """Compare text without whitespace; Devanagari's ि is dropped by PDF text extraction."""
    return re.sub(r"\s+", "", text).replace("\u093f", "")


@pytest.fixture(scope="module")
def printed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Assign 16 sample residents plus two hostile ones, then print their sheets."""
    work = tmp_path_factory.mktemp("notify")
    sample = pl.read_csv(ROOT / "sample_data" / "register_en_utf8.csv", infer_schema=False)
    rows = sample.filter(
        pl.col("resident_code").is_null() & pl.col("planned_move_out_date").is_null()
    ).head(16)
    hostile = rows.head(2).with_columns(
        pl.Series("resident_id", ["900000001", "900000002"]),
        pl.Series("name", [HOSTILE_NAME, "<b style='font-size:80pt'>X</b>"]),
        pl.Series("address", [HOSTILE_ADDRESS, "<script>alert(1)</script>"]),
        pl.Series("residence_card_number", ["ZZ00000001ZZ", "ZZ00000002ZZ"]),
        pl.Series("language", ["en", "ja"]),
    )
    export = work / "register.csv"
    pl.concat([rows, hostile]).write_csv(export)
    ledger = Ledger.init(work / "ledger", municipality=SAMPLE_MUNICIPALITY)
    assign_register(export, ledger=ledger, output=work / "assigned.csv", seed=3)
    out = work / "sheets"
    result = notify(
        work / "assigned.csv",
        out,
        profile=load_profile(PROFILE),
        ledger=ledger,
        batch_size=7,
        workers=1,
        per_resident=True,
    )
    assigned = pl.read_csv(work / "assigned.csv", infer_schema=False)
    return {
        "work": work,
        "out": out,
        "result": result,
        "assigned": assigned,
        "manifest": pl.read_csv(out / "manifest.csv", infer_schema=False),
        "ledger": ledger,
    }


def page_text(out: Path, file: str, page: str) -> str:
    return PdfReader(out / file).pages[int(page) - 1].extract_text()


def test_every_manifest_page_carries_that_residents_code_name_and_notice(printed) -> None:
    notices = load_notices()
    assigned = {r["resident_id"]: r for r in printed["assigned"].iter_rows(named=True)}
    manifest = printed["manifest"]
    assert manifest.height == 18 == printed["result"].sheets
    for row in manifest.iter_rows(named=True):
        resident = assigned[row["resident_id"]]
        text = squash(page_text(printed["out"], row["file"], row["page"]))
        assert resident["resident_code"] in text
        assert squash(resident["name"].lstrip("'")) in text
        notice = notices[row["language"]]
        if row["language"] == "ne":
            # Text read back from Devanagari in WeasyPrint's PDFs loses some vowel
            # signs (the glyphs are right on the page): check the script is there.
            assert any("\u0900" <= ch <= "\u097f" for ch in text)
        else:
            assert squash(notice.text["keep_safe"]) in text, row["language"]
        assert squash(notices["ja"].text["private_use"]) in text  # Japanese always
        # The office reference: its label is on the form, the value in its box.
        assert "整理番号" in text and row["resident_id"] in text


def test_languages_follow_row_then_nationality(printed) -> None:
    manifest = printed["manifest"]
    by_id = dict(zip(manifest["resident_id"], manifest["language"], strict=True))
    assert by_id["900000001"] == "en" and by_id["900000002"] == "ja"
    assert len(set(manifest["language"])) > 2


def test_sheets_are_sorted_for_mailing_and_batched(printed) -> None:
    manifest = printed["manifest"]
    postal = [p or "~" for p in manifest["postal_code"].to_list()]
    assert postal == sorted(postal)
    assert printed["result"].files == ["sheets-0001.pdf", "sheets-0002.pdf", "sheets-0003.pdf"]
    assert [len(PdfReader(printed["out"] / f).pages) for f in printed["result"].files] == [7, 7, 4]


def test_hostile_names_print_literally(printed) -> None:
    manifest = printed["manifest"]
    row = manifest.filter(pl.col("resident_id") == "900000001").row(0, named=True)
    text = page_text(printed["out"], row["file"], row["page"])
    assert squash(HOSTILE_NAME) in squash(text)
    assert squash('<link rel="stylesheet"') in squash(text)
    row = manifest.filter(pl.col("resident_id") == "900000002").row(0, named=True)
    assert squash("<script>alert(1)</script>") in squash(
        page_text(printed["out"], row["file"], row["page"])
    )


def test_rendering_fetches_nothing_outside_the_templates(printed) -> None:
    from rrnet_cli.form import FormRenderer

    renderer = FormRenderer(load_profile(PROFILE))
    renderer.fetcher.requests.clear()
    frame = printed["assigned"].filter(pl.col("resident_id").str.starts_with("9000"))
    from rrnet_cli.notify import build_sheets

    sheets = build_sheets(
        frame.with_columns(pl.lit("en").alias("language")), load_notices(), recorded_on="2026-11-28"
    )
    layer = renderer.render_layer(sheets)
    assert len(layer.rendered) == len(sheets)
    assert renderer.fetcher.requests == [], "escaped hostile markup must trigger no fetch"


def test_even_unescaped_markup_could_not_fetch_outside(tmp_path: Path) -> None:
    """Defence in depth: if a template ever let markup through, the fetcher refuses it."""
    import io

    from weasyprint import HTML

    fetcher = make_fetcher(TEMPLATES)
    html = (
        '<img src="file:///etc/passwd"><img src="http://evil.example/a.png">'
        '<link rel="attachment" href="file:///etc/passwd"><p>x</p>'
    )
    pdf = HTML(string=html, base_url=str(TEMPLATES) + "/", url_fetcher=fetcher).write_pdf()
    assert "file:///etc/passwd" in fetcher.requests
    assert "http://evil.example/a.png" in fetcher.requests
    page = PdfReader(io.BytesIO(pdf)).pages[0]
    assert len(page.images) == 0
    assert b"root:" not in pdf


def test_the_fetcher_refuses_everything_outside_its_folder(tmp_path: Path) -> None:
    fetcher = make_fetcher(TEMPLATES)
    for url in (
        "file:///etc/passwd",
        (TEMPLATES / ".." / "__init__.py").as_uri(),  # the package itself, next door
        "http://evil.example/x.css",
        "data:text/css,body{}",
    ):
        with pytest.raises(ValueError, match="refused"):
            fetcher.fetch(url)
    served = fetcher.fetch((TEMPLATES / "sheet.css").as_uri())  # a file inside is served
    assert b"@page" in served.read()


def test_outputs_are_private_and_named_by_resident_id(printed) -> None:
    out = printed["out"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    files = [*out.glob("*.pdf"), out / "manifest.csv", *(out / "residents").glob("*.pdf")]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    names = {p.stem for p in (out / "residents").glob("*.pdf")}
    assert names == set(printed["manifest"]["resident_id"])
    one = PdfReader(out / "residents" / "900000001.pdf")
    assert len(one.pages) == 1 and squash(HOSTILE_NAME) in squash(one.pages[0].extract_text())


def test_recorded_date_comes_from_the_ledger(printed) -> None:
    row = printed["manifest"].row(0, named=True)
    code = printed["assigned"].filter(pl.col("resident_id") == row["resident_id"])["resident_code"][
        0
    ]
    recorded = printed["ledger"].snapshot().lookup(rcode.strings_to_codes([code]))
    assert recorded["status"][0] == "assigned"
    text = page_text(printed["out"], row["file"], row["page"])
    # The ledger's recorded time, as a date in Japan, written as the profile says.
    current = printed["ledger"].snapshot().current_records()
    at = current.filter(pl.col("code") == int(code))["recorded_at"]
    when = at.dt.convert_time_zone("Asia/Tokyo").dt.date()[0]
    expected = format_date(when, load_profile(PROFILE).date_style)
    assert re.search(f"記載日.*{expected}", text.replace("\n", " "))


def test_recorded_on_help_says_what_it_does(printed, tmp_path: Path, runner: CliRunner) -> None:
    """--recorded-on replaces the ledger's dates on the sheets, not the ledger itself."""
    notify_command = getattr(typer.main.get_command(app), "commands", {})["notify"]
    option = next(p for p in notify_command.params if p.name == "recorded_on")
    help_text = getattr(option, "help", "") or ""
    assert "instead of each code's date in the ledger" in help_text
    assert "--ledger is still needed" in help_text
    assigned = str(printed["work"] / "assigned.csv")
    args = ["notify", assigned, "--profile", str(PROFILE), "--recorded-on", "2020-01-02"]
    refused = runner.invoke(app, [*args, "-o", str(tmp_path / "none")])
    assert refused.exit_code == 2 and "Give --ledger" in refused.output
    out = tmp_path / "samples"
    ledger = str(printed["ledger"].path)
    done = runner.invoke(app, [*args, "-o", str(out), "--ledger", ledger, "--all"])
    assert done.exit_code == 0, done.output
    row = pl.read_csv(out / "manifest.csv", infer_schema=False).row(0, named=True)
    expected = format_date(date(2020, 1, 2), load_profile(PROFILE).date_style)
    assert re.search(
        f"記載日.*{expected}", page_text(out, row["file"], row["page"]).replace("\n", " ")
    )


def test_refuses_a_used_folder_and_a_missing_recorded_date(printed, tmp_path: Path) -> None:
    assigned = printed["work"] / "assigned.csv"
    with pytest.raises(UsageError, match="not empty"):
        notify(
            assigned,
            printed["out"],
            profile=load_profile(PROFILE),
            recorded_on=None,
            ledger=printed["ledger"],
        )
    # Without a ledger nothing proves a code is its resident's: refused, nothing made.
    with pytest.raises(UsageError, match="Give --ledger"):
        notify(assigned, tmp_path / "new", profile=load_profile(PROFILE), workers=1)
    assert not (tmp_path / "new").exists()


def test_cli_refuses_without_harfbuzz_unless_slow_ok(
    printed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rrnet_cli import doctor

    monkeypatch.setattr(doctor, "_load", lambda name: None)
    runner = CliRunner()
    args = [
        "notify",
        str(printed["work"] / "assigned.csv"),
        "-o",
        str(tmp_path / "s"),
        "--profile",
        str(PROFILE),
        "--recorded-on",
        "2026-11-28",
    ]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--slow-ok" in refused.output
    assert not (tmp_path / "s").exists()


def test_all_prints_every_coded_row_including_carried_over(printed, tmp_path: Path) -> None:
    assigned = printed["assigned"]
    # A resident who arrived with a code: the ledger holds it as theirs.
    carried_id = assigned["resident_id"][0]
    carried = assigned.head(1).with_columns(pl.lit("carried_over").alias("code_status"))
    assigned = assigned.slice(1)
    excluded = assigned.head(1).with_columns(
        pl.lit("800000002").alias("resident_id"),
        pl.lit("excluded").alias("code_status"),
        pl.lit(None, pl.String).alias("resident_code"),
    )
    path = tmp_path / "mixed.parquet"
    pl.concat([assigned, carried, excluded]).write_parquet(path)
    result = notify(
        path,
        tmp_path / "all",
        profile=load_profile(PROFILE),
        ledger=printed["ledger"],
        workers=1,
        include_all=True,
        recorded_on=__import__("datetime").date(2026, 11, 28),
    )
    manifest = pl.read_csv(tmp_path / "all" / "manifest.csv", infer_schema=False)
    assert result.sheets == assigned.height + 1
    assert carried_id in manifest["resident_id"].to_list()
    assert "800000002" not in manifest["resident_id"].to_list()


# -- an office's own copy of the sheet's layout ---------------------------------------


def office_layout(path: Path, left: float = 40, width: float = 150) -> Path:
    """A copy of the layout rrnet ships with the code box moved (by default its left
    edge 20 mm and its middle 10 mm to the right)."""
    from rrnet_cli.form import DEFAULT_LAYOUT

    text = DEFAULT_LAYOUT.read_text(encoding="utf-8")
    box = "[boxes.code]\ntop = 107.5\nleft = {:g}\nwidth = {:g}\n"
    moved = text.replace(box.format(20, 170), box.format(left, width))
    assert moved != text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(moved, encoding="utf-8")
    return path


def text_starts(page: Any) -> dict[str, tuple[float, float]]:
    """Where each text drawn on a pypdf page starts: (left, top) in mm from the top-left."""
    starts: dict[str, tuple[float, float]] = {}

    def visit(text: str, cm: list[float], tm: list[float], *_: object) -> None:
        if text.strip():
            x = tm[4] * cm[0] + cm[4]
            y = tm[5] * cm[3] + cm[5]
            starts.setdefault(text.strip(), (x * 25.4 / 72, 297 - y * 25.4 / 72))

    page.extract_text(visitor_text=visit)
    return starts


def test_the_profile_names_the_offices_own_layout_relative_to_itself(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    office = tmp_path / "office"
    office_layout(office / "forms" / "sheet.toml")
    profile = office / "profile.toml"
    text = PROFILE.read_text(encoding="utf-8")
    profile.write_text(text.replace("[sheet]\n", '[sheet]\nlayout = "forms/sheet.toml"\n'))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the path is the profile's, not the working folder's

    def code_box_tag(profile: Path, name: str) -> tuple[float, float]:
        page_file = tmp_path / name
        args = ["notify", "--test-page", "--profile", str(profile), "-o", str(page_file)]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        starts = text_starts(PdfReader(page_file).pages[0])
        return next(v for k, v in starts.items() if k.startswith("住民票コードの欄"))

    default_left, default_top = code_box_tag(PROFILE, "default.pdf")
    left, top = code_box_tag(profile, "office.pdf")
    assert left == pytest.approx(default_left + 20, abs=0.2) and top == pytest.approx(default_top)


def test_notify_layout_moves_the_code_on_every_sheet(
    printed, runner: CliRunner, tmp_path: Path
) -> None:
    one = tmp_path / "one.csv"
    printed["assigned"].head(1).write_csv(one)
    code = printed["assigned"]["resident_code"][0]
    first_group = code[:4]
    args = ["notify", str(one), "--profile", str(PROFILE), "--all", "--workers", "1"]
    args += ["--ledger", str(printed["ledger"].path)]

    def code_start(out: Path, *extra: str) -> tuple[float, float]:
        result = runner.invoke(app, [*args, "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        row = pl.read_csv(out / "manifest.csv", infer_schema=False).row(0, named=True)
        starts = text_starts(PdfReader(out / row["file"]).pages[int(row["page"]) - 1])
        return next(v for k, v in starts.items() if k.startswith(first_group))

    default_left, default_top = code_start(tmp_path / "default")
    layout = office_layout(tmp_path / "office-layout.toml")
    left, top = code_start(tmp_path / "office", "--layout", str(layout))
    # Centred in a box whose middle moved 10 mm to the right.
    assert left == pytest.approx(default_left + 10, abs=0.5) and top == pytest.approx(default_top)


def test_a_bad_layout_file_is_named_in_a_clean_error(runner: CliRunner, tmp_path: Path) -> None:
    def refused(*extra: str, profile: Path = PROFILE) -> str:
        args = ["notify", "--test-page", "--profile", str(profile), "-o", str(tmp_path / "t.pdf")]
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and not (tmp_path / "t.pdf").exists()
        return " ".join(result.output.split())

    missing = tmp_path / "missing.toml"
    assert f"Layout {missing} does not exist" in refused("--layout", str(missing))
    broken = tmp_path / "broken.toml"
    broken.write_text("[boxes.code\n", encoding="utf-8")
    assert f"Layout {broken} is not valid TOML" in refused("--layout", str(broken))
    wrong = office_layout(tmp_path / "wrong.toml", width=-5)
    assert f"Layout {wrong}: boxes.code.width must be" in refused("--layout", str(wrong))
    profile = tmp_path / "profile.toml"
    text = PROFILE.read_text(encoding="utf-8")
    profile.write_text(text.replace("[sheet]\n", '[sheet]\nlayout = "nowhere.toml"\n'))
    message = refused(profile=profile)
    assert f"Profile {profile}: sheet.layout names {tmp_path / 'nowhere.toml'}" in message
