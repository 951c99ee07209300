"""rrnet doctor: readiness to print sheets, and the exact fix when not ready."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import rrnet
from test_characters import arabic_register, person, write_cp932
from typer.testing import CliRunner

from rrnet_cli import doctor
from rrnet_cli.cli import app
from rrnet_cli.languages import load_notices


def test_this_machine_is_ready_after_set_up() -> None:
    """The set-up (make / .ci/run) installs what sheets need; doctor agrees."""
    report = doctor.run_doctor()
    failed = [(c.name, c.detail) for c in report.checks if not c.ok]
    assert report.ok, f"{failed}; fix with: {report.fix}"


def test_every_language_file_is_covered_by_the_font_chosen_for_it() -> None:
    for language, notice in load_notices().items():
        font = doctor.font_file(notice.font)
        assert font is not None, f"{notice.font} for {language} is not installed"
        assert doctor.missing_characters(notice, font) == [], language


def test_a_character_the_font_lacks_is_named() -> None:
    notice = load_notices()["en"]
    hieroglyph = "\U00013000"
    broken = replace(notice, text={**notice.text, "title": "Notice " + hieroglyph})
    check = doctor.check_fonts({"en": broken})[0]
    assert not check.ok
    assert hieroglyph in check.detail and "1 characters" in check.detail
    assert check.fix == "apt-get install -y fonts-noto-core"


def test_a_font_that_is_not_installed_is_reported_with_its_package() -> None:
    notice = load_notices()["ja"]
    missing = replace(notice, font="Noto Sans CJK XX")
    assert doctor.font_file("Noto Sans CJK XX") is None
    check = doctor.check_fonts({"ja": missing})[0]
    assert not check.ok and check.detail == "not installed"


def test_missing_harfbuzz_subsetting_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    real = doctor._load
    monkeypatch.setattr(doctor, "_load", lambda name: None if "subset" in name else real(name))
    check = doctor.check_harfbuzz_subset()
    assert not check.ok and "60x slower" in check.detail
    assert check.fix == "apt-get install -y libharfbuzz-subset0"


def test_missing_pango_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "_load", lambda name: None)
    report = doctor.DoctorReport([doctor.check_pango(), doctor.check_harfbuzz_subset()])
    assert not report.ok
    assert report.fix == ("apt-get install -y libharfbuzz-subset0 libpango-1.0-0 libpangoft2-1.0-0")


def test_cli_reports_and_exits_by_outcome(monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True and len(data["checks"]) == 2 + 11
    monkeypatch.setattr(doctor, "_load", lambda name: None)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 1
    assert "Fix (as root): apt-get install -y" in result.output


def test_a_script_no_font_has_fails_doctor_in_a_shell(tmp_path: Path) -> None:
    """Run as an office runs it (the rrnet command, its exit code read by a script):
    a register whose names need a script the form has no font for fails the check
    (exit 1, as `rrnet verify` does for violations); one without passes (exit 0)."""
    arabic = arabic_register(tmp_path / "arabic.csv")
    done = rrnet("doctor", "--register", arabic)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "MISSING: Arabic (U+" in " ".join(done.stdout.split())
    plain = write_cp932(tmp_path / "plain.csv", [person("000001"), person("000002")])
    done = rrnet("doctor", "--register", plain)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MISSING" not in done.stdout
