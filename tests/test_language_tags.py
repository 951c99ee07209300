"""One language parser for ``assign`` and ``notify``.

``assign`` accepts in the ``language`` column every tag ``notify`` understands
(``zh-CN``, ``pt-BR``, ``fil``, ``Vietnamese``, ``日本語`` ...) and every real
language rrnet has no notice for (``my``, ``th``); ``notify`` gives the latter the
default language's notice and counts them ("no Burmese notice, English used").
A value that names no language rrnet recognises (ไทย) never blocks a code either:
assign warns, and notify gives it the default language too.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from helpers import MUNICIPALITY, profile_for
from typer.testing import CliRunner

from rrnet_cli.cli import app
from rrnet_cli.languages import (
    LANGUAGE_NAMES,
    choose_languages,
    is_language,
    language_name,
    languages_without_notice,
    map_distinct,
    normalise_language,
)
from rrnet_cli.ledger import Ledger
from rrnet_cli.notify import NotifyResult
from rrnet_cli.schema import LANGUAGES

#: (language column as written, the notice language notify must choose).
TAGS = [
    ("zh-CN", "zh-Hans"),
    ("pt-BR", "pt"),
    ("fil", "tl"),
    ("zh", "zh-Hans"),
    ("Vietnamese", "vi"),
    ("日本語", "ja"),
    ("ZH-tw", "zh-Hant"),
    ("pt_BR", "pt"),
    ("ｖｉ", "vi"),  # full-width
    ("my", "en"),  # Burmese: no notice, the default
    ("th", "en"),  # Thai: no notice, the default
    ("Burmese", "en"),
]


# -- the parser --------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        *TAGS[:9],
        ("zh-Hant-HK", "zh-Hant"),
        ("zh-Hans-TW", "zh-Hans"),
        ("es-419", "es"),
        ("en-IN", "en"),
        ("Chinese", "zh-Hans"),
        ("ベトナム語", "vi"),
        ("kor", "ko"),
        ("my", None),
        ("th-TH", None),
        ("klingon-xx", None),
    ],
)
def test_tags_people_write_name_a_notice_language(tag: str, language: str | None) -> None:
    assert normalise_language(tag) == language


@pytest.mark.parametrize(
    ("tag", "name"),
    [
        ("my", "Burmese"),
        ("MY", "Burmese"),
        ("mya", "Burmese"),
        ("Burmese", "Burmese"),
        ("ビルマ語", "Burmese"),
        ("th", "Thai"),
        ("th-TH", "Thai"),
        ("th_TH", "Thai"),
        ("tha", "Thai"),
        ("タイ語", "Thai"),
        ("ms", "Malay"),
        ("fr", "French"),
        # supported, or not a language at all
        ("vi", None),
        ("en-XX", None),
        ("xx", None),
        ("klingon-xx", None),
        ("abc123", None),
        ("", None),
        (None, None),
    ],
)
def test_languages_without_a_notice_are_named_in_english(tag: str | None, name: str | None) -> None:
    assert language_name(tag) == name


@pytest.mark.parametrize("tag", [tag for tag, _ in TAGS])
def test_every_tag_notify_understands_is_a_language(tag: str) -> None:
    assert is_language(tag)


@pytest.mark.parametrize("tag", ["klingon-xx", "abc123", "xx", "xx-Klingon", "bogus", "", None])
def test_strings_that_name_no_language_are_not_languages(tag: str | None) -> None:
    assert not is_language(tag)


def test_every_supported_language_has_an_english_name() -> None:
    assert set(LANGUAGE_NAMES) == set(LANGUAGES)
    assert LANGUAGE_NAMES["en"] == "English"
    assert LANGUAGE_NAMES["zh-Hant"] == "Chinese (Traditional)"


def test_map_distinct_gives_booleans_and_keeps_nulls() -> None:
    column = pl.Series("language", ["vi", "klingon-xx", None, "vi", "my"])
    mask = map_distinct(column, is_language, pl.Boolean)
    assert mask.dtype == pl.Boolean
    assert mask.to_list() == [True, False, None, True, True]


def test_a_language_without_notice_gets_the_default_not_the_nationality() -> None:
    frame = pl.DataFrame(
        {
            "language": ["my", "th-TH", "vi", None, "bogus"],
            "nationality": ["ベトナム", "BRA", "CHN", "KOR", "BRA"],
        }
    )
    # "bogus" names no language: the default too (a language was named, not recognised).
    assert choose_languages(frame).to_list() == ["en", "en", "vi", "ko", "en"]
    assert choose_languages(frame, default="ja").to_list() == ["ja", "ja", "vi", "ko", "ja"]
    assert languages_without_notice(frame) == {"Burmese": 1, "Thai": 1, "not recognised": 1}
    assert languages_without_notice(frame.drop("language")) == {}


def test_summary_counts_residents_without_a_notice() -> None:
    result = NotifyResult(
        assigned="a.csv",
        output="sheets",
        sheets=25,
        by_language={"en": 25},
        without_notice={"Burmese": 23, "Thai": 2},
        default_language="en",
    )
    rows = dict(result.summary_rows())
    assert rows["no Burmese notice, English used"] == 23
    assert rows["no Thai notice, English used"] == 2
    assert result.to_json()["without_notice"] == {"Burmese": 23, "Thai": 2}
    assert result.to_json()["default_language"] == "en"
    nothing = NotifyResult(assigned="a.csv", output="sheets")
    assert not any("notice" in key for key, _ in nothing.summary_rows())


# -- assign and notify, end to end -------------------------------------------


def _assign(runner: CliRunner, export: Path, ledger: Ledger, output: Path):
    return runner.invoke(
        app, ["assign", str(export), "--ledger", str(ledger.path), "-o", str(output)]
    )


def _notify(runner: CliRunner, assigned: Path, ledger: Ledger, output: Path, *extra: str):
    return runner.invoke(
        app,
        [
            "notify",
            str(assigned),
            "--ledger",
            str(ledger.path),
            "--profile",
            str(profile_for(MUNICIPALITY, output.parent)),
            "-o",
            str(output),
            "--workers",
            "1",
            *extra,
        ],
    )


def test_assign_accepts_what_notify_understands_and_notify_counts_the_rest(
    runner, ledger, write_register, resident, tmp_path: Path
) -> None:
    # Every resident is Vietnamese by nationality: the row's language decides.
    rows = [resident(f"{i:06d}", language=tag) for i, (tag, _) in enumerate(TAGS, start=1)]
    assigned = tmp_path / "assigned.csv"
    result = _assign(runner, write_register(rows), ledger, assigned)
    assert result.exit_code == 0, result.output

    sheets = tmp_path / "sheets"
    result = _notify(runner, assigned, ledger, sheets, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sheets"] == len(TAGS)
    assert report["without_notice"] == {"Burmese": 2, "Thai": 1}
    assert report["default_language"] == "en"

    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    chosen = dict(zip(manifest["resident_id"], manifest["language"], strict=True))
    expected = {f"{i:06d}": language for i, (_, language) in enumerate(TAGS, start=1)}
    assert chosen == expected


def test_the_summary_says_which_language_was_used_instead(
    runner, ledger, write_register, resident, tmp_path: Path
) -> None:
    rows = [
        resident("000001", language="my"),
        resident("000002", language="Burmese"),
        resident("000003", language="th-TH"),
        resident("000004", language="vi"),
    ]
    assigned = tmp_path / "assigned.csv"
    assert _assign(runner, write_register(rows), ledger, assigned).exit_code == 0
    result = _notify(runner, assigned, ledger, tmp_path / "sheets")
    assert result.exit_code == 0, result.output
    assert "no Burmese notice, English used" in result.output
    assert "no Thai notice, English used" in result.output

    # The notices are issued now: a preview (--all) shows the other default language.
    result = _notify(
        runner,
        *(assigned, ledger, tmp_path / "sheets-ja"),
        *("--default-language", "ja", "--all", "--json"),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["without_notice"] == {"Burmese": 2, "Thai": 1}
    assert report["default_language"] == "ja"
    manifest = pl.read_csv(tmp_path / "sheets-ja" / "manifest.csv", infer_schema=False)
    assert sorted(manifest["language"]) == ["ja", "ja", "ja", "vi"]


@pytest.mark.parametrize("bad", ["ไทย", "klingon-xx"])
def test_a_language_rrnet_does_not_recognise_never_blocks_a_code(
    runner, ledger, write_register, resident, tmp_path: Path, bad: str
) -> None:
    """A language cell rrnet does not recognise (Thai written in Thai, a typo) is no
    reason to withhold a code: assign gives it and warns, naming the rows; notify
    prints that resident's notice in English, whatever the nationality, and says so."""
    rows = [
        resident("000001", language="pt-BR"),
        resident("000002", language=bad),
        resident("000003", language="th"),
        resident("000004", language=bad, nationality="タイ"),
    ]
    output = tmp_path / "assigned.csv"
    result = _assign(runner, write_register(rows), ledger, output)
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "does not recognise (row 3, 5)" in flat and "default language" in flat
    assert bad not in result.output
    frame = pl.read_csv(output, infer_schema=False)
    assert frame["code_status"].to_list() == ["assigned"] * 4
    assert frame["resident_code"].str.len_chars().to_list() == [11] * 4

    result = _notify(runner, output, ledger, tmp_path / "sheets", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["sheets"] == 4
    assert report["without_notice"] == {"not recognised": 2, "Thai": 1}
    manifest = pl.read_csv(tmp_path / "sheets" / "manifest.csv", infer_schema=False)
    chosen = dict(zip(manifest["resident_id"], manifest["language"], strict=True))
    # English, not the Vietnamese of 000002's nationality: the row named a language.
    assert chosen == {"000001": "pt", "000002": "en", "000003": "en", "000004": "en"}
    preview = _notify(runner, output, ledger, tmp_path / "preview", "--all")
    assert preview.exit_code == 0, preview.output
    assert "language not recognised, English used" in " ".join(preview.output.split())
