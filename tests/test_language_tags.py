"""One language parser for ``assign`` and ``notify``.

``assign`` accepts in the ``language`` column every tag ``notify`` understands
(``zh-CN``, ``pt-BR``, ``fil``, ``Vietnamese``, ``日本語`` ...) and every real
language rrnet has no notice for (``my``, ``th``); ``notify`` gives the latter the
default language's notice and counts them ("no Burmese notice, English used").
A value that names no language rrnet recognises (ไทย) never blocks a code either:
assign warns, and notify gives it the nationality's language, else the default.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import polars as pl
import pytest
from helpers import MUNICIPALITY, profile_for, run_cli
from test_households import member, write_cp932
from typer.testing import CliRunner

from rrnet_cli.cli import app
from rrnet_cli.languages import (
    LANGUAGE_NAMES,
    LANGUAGE_NAMES_WRITTEN,
    choose_languages,
    english_name,
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


#: (the 通知言語 cell as municipal systems print it, the notice language). All of
#: them fit in CP932.
WRITTEN = [
    ("ネパール語", "ne"),
    ("Nepalese", "ne"),
    ("フィリピノ語", "tl"),
    ("フィリピン語", "tl"),
    ("ﾀｶﾞﾛｸﾞ語", "tl"),  # half-width katakana
    ("韓国・朝鮮語", "ko"),
    ("朝鮮語", "ko"),
    ("中国語（簡体字）", "zh-Hans"),
    ("中国語(繁体字)", "zh-Hant"),
    ("中国語（繁体字）", "zh-Hant"),
    ("簡体字", "zh-Hans"),
    ("繁体字", "zh-Hant"),
    ("中文", "zh-Hans"),
    ("ポルトガル語（ブラジル）", "pt"),
    ("スペイン語", "es"),
    ("インドネシア語", "id"),
    ("ベトナム語", "vi"),
    ("英語", "en"),
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
    ("written", "language"),
    [
        *WRITTEN,
        ("ネパール語（ネパール）", "ne"),
        ("中文(简体)", "zh-Hans"),
        ("中文（繁體）", "zh-Hant"),
        ("中国語【繁体字】", "zh-Hant"),
        ("中国語・繁体字", "zh-Hant"),
        ("中国語 (台湾)", "zh-Hant"),
        ("中国語(TW)", "zh-Hant"),
        ("中国語(簡)", "zh-Hans"),
        ("Chinese (Simplified)", "zh-Hans"),
        ("Chinese (Traditional)", "zh-Hant"),
        ("Mandarin (Taiwan)", "zh-Hant"),
        ("繁體中文", "zh-Hant"),
        ("広東語", "zh-Hant"),
        ("한국어", "ko"),
        ("조선어", "ko"),
        ("ＫＯＲＥＡＮ", "ko"),
        ("Portuguese (Brazil)", "pt"),
        ("Portuguese (BR)", "pt"),
        ("Brazilian Portuguese", "pt"),
        ("Português", "pt"),
        ("英語（米国）", "en"),
        ("Español", "es"),
        ("Filipino", "tl"),
        ("Pilipino", "tl"),
        ("Tagalog / Filipino", "tl"),
        ("नेपाली", "ne"),
        ("Bahasa Indonesia", "id"),
        ("Tiếng Việt", "vi"),
        # two languages, or none: not recognised
        ("英語/日本語", None),
        ("英語/タイ語", None),
        ("ネパール", None),
        ("ビルマ語（ミャンマー）", None),
    ],
)
def test_names_registers_write_name_a_notice_language(written: str, language: str | None) -> None:
    assert normalise_language(written) == language


def test_every_written_name_means_its_language_whatever_its_width_or_bracket() -> None:
    for language, names in LANGUAGE_NAMES_WRITTEN.items():
        # Each language has its Japanese name with 語 (or 字); its English name counts.
        assert any(name.endswith(("語", "字")) for name in names), language
        assert normalise_language(english_name(language)) == language
        for name in names:
            assert normalise_language(name) == language, name
            wide = unicodedata.normalize("NFKC", name).translate(WIDE)
            assert normalise_language(wide) == language, wide
            assert normalise_language(f"{name}（ブラジル）") == language, name
            assert normalise_language(f" {name.upper()} (US) ") == language, name
    # No name is written for two languages.
    written = [name for names in LANGUAGE_NAMES_WRITTEN.values() for name in names]
    assert len(written) == len(set(written))


# ASCII to full width, as a register system may write it.
WIDE = {code: code + 0xFEE0 for code in range(0x21, 0x7F)}


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
            "language": ["my", "th-TH", "vi", None, "bogus", "bogus"],
            "nationality": ["ベトナム", "BRA", "CHN", "KOR", "BRA", "フランス"],
        }
    )
    # "bogus" names no language rrnet knows: the nationality's, else the default.
    assert choose_languages(frame).to_list() == ["en", "en", "vi", "ko", "pt", "en"]
    assert choose_languages(frame, default="ja").to_list() == ["ja", "ja", "vi", "ko", "pt", "ja"]
    assert languages_without_notice(frame) == {
        "Burmese": 1,
        "Thai": 1,
        "not recognised": 1,
        "not recognised, nationality's language": 1,
    }
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
    prints that resident's notice in their nationality's language, else in English,
    and says so."""
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
    assert report["without_notice"] == {
        "Thai": 1,
        "not recognised": 1,
        "not recognised, nationality's language": 1,
    }
    manifest = pl.read_csv(tmp_path / "sheets" / "manifest.csv", infer_schema=False)
    chosen = dict(zip(manifest["resident_id"], manifest["language"], strict=True))
    # 000002's nationality is Vietnamese; rrnet has no Thai notice for 000004's.
    assert chosen == {"000001": "pt", "000002": "vi", "000003": "en", "000004": "en"}
    preview = _notify(runner, output, ledger, tmp_path / "preview", "--all")
    assert preview.exit_code == 0, preview.output
    said = " ".join(preview.output.split())
    assert "language not recognised, English used" in said
    assert "language not recognised, nationality's language used" in said


def test_japanese_language_names_choose_the_notice_through_the_cli(
    runner, ledger, tmp_path: Path
) -> None:
    """A CP932, CRLF register with Japanese headers, one resident per way a register
    writes a language; French by nationality, so only the 通知言語 cell can choose. A
    Nepali whose cell rrnet cannot read (a typo) gets Nepali from the nationality."""
    rows = [
        member(f"{i:06d}", "", f"RESIDENT {i}", language=value, nationality="フランス")
        for i, (value, _) in enumerate(WRITTEN, start=1)
    ]
    rows.append(member("000099", "", "GURUNG RAM", language="ネパール後", nationality="ネパール"))
    export = write_cp932(tmp_path / "register.csv", rows)
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", assigned)
    assert code == 0, output
    said = " ".join(output.split())
    # Only the typo is warned about, by its row (header is row 1), never its value.
    assert f"1 row(s) name a notice language rrnet does not recognise (row {len(rows) + 1})" in said
    assert "nationality's language" in said and "ネパール後" not in output

    sheets = tmp_path / "sheets"
    code, output = run_cli(
        runner,
        *("notify", assigned, "-l", ledger.path, "-o", sheets, "--workers", "1", "--json"),
        *("--profile", profile_for(MUNICIPALITY, tmp_path)),
    )
    assert code == 0, output
    assert json.loads(output)["without_notice"] == {"not recognised, nationality's language": 1}
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    chosen = dict(zip(manifest["resident_id"], manifest["language"], strict=True))
    expected = {f"{i:06d}": language for i, (_, language) in enumerate(WRITTEN, start=1)}
    assert chosen == {**expected, "000099": "ne"}
