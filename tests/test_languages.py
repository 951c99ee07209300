"""Notice languages: the texts an office reviews, and which language each resident gets."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import polars as pl
import pytest

from rrnet_cli.errors import UsageError
from rrnet_cli.languages import (
    NOTICES,
    choose_languages,
    country_of,
    language_for_nationality,
    load_notice,
    load_notices,
    normalise_language,
)
from rrnet_cli.schema import LANGUAGES

# What every notice must tell the resident, by key.
NOTICE_POINTS = (
    "title",
    "written",
    "no_procedure",
    "keep_safe",
    "private_use",
    "change_request",
    "photo_id",
)


def test_there_is_one_notice_file_per_supported_language() -> None:
    assert sorted(p.stem for p in NOTICES.glob("*.toml")) == sorted(LANGUAGES)


def test_every_notice_says_every_point_and_labels_every_field() -> None:
    notices = load_notices()
    japanese = notices["ja"]
    for language, notice in notices.items():
        assert set(notice.text) == set(NOTICE_POINTS), language
        assert set(notice.labels) == set(japanese.labels), language
        assert notice.html_lang == language


def test_translations_are_not_copies_of_another_language() -> None:
    notices = load_notices()
    seen: dict[str, str] = {}
    for language, notice in notices.items():
        if language == "zh-Hant":  # shares some sentences' words with zh-Hans, not all
            continue
        assert notice.text["private_use"] not in seen, (
            language,
            seen.get(notice.text["private_use"]),
        )
        seen[notice.text["private_use"]] = language
    assert notices["zh-Hans"].text["title"] != notices["zh-Hant"].text["title"]


def test_each_language_names_a_font_made_for_it() -> None:
    fonts = {language: notice.font for language, notice in load_notices().items()}
    assert fonts["ja"] == "Noto Sans CJK JP"
    assert fonts["zh-Hans"] == "Noto Sans CJK SC"
    assert fonts["zh-Hant"] == "Noto Sans CJK TC"
    assert fonts["ko"] == "Noto Sans CJK KR"
    assert fonts["ne"] == "Noto Sans Devanagari"


def test_a_notice_with_a_missing_or_empty_key_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "notices"
    shutil.copytree(NOTICES, folder)
    text = (folder / "vi.toml").read_text(encoding="utf-8")
    (folder / "vi.toml").write_text(text.replace('keep_safe = "', 'keep_it = "'), encoding="utf-8")
    with pytest.raises(UsageError, match="missing: keep_safe; unexpected: keep_it"):
        load_notice("vi", folder)
    (folder / "vi.toml").write_text(
        text.replace('title = "Thông báo mã số phiếu cư trú"', 'title = " "'), encoding="utf-8"
    )
    with pytest.raises(UsageError, match="empty values: title"):
        load_notice("vi", folder)


def test_notice_files_parse_as_plain_toml() -> None:
    for path in NOTICES.glob("*.toml"):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert data["meta"]["language"] == path.stem


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        ("ja", "ja"),
        ("JA", "ja"),
        ("zh-hans", "zh-Hans"),
        ("zh_CN", "zh-Hans"),
        ("zh-TW", "zh-Hant"),
        ("zh-HK", "zh-Hant"),
        ("pt-BR", "pt"),
        ("fil", "tl"),
        ("ｖｉ", "vi"),
        ("ne", "ne"),
        ("id", "id"),
        ("", None),
        ("xx", None),
        (None, None),
    ],
)
def test_language_tags(tag: str | None, language: str | None) -> None:
    assert normalise_language(tag) == language


@pytest.mark.parametrize(
    ("nationality", "language"),
    [
        ("ベトナム", "vi"),
        ("中国", "zh-Hans"),
        ("韓国", "ko"),
        ("朝鮮", "ko"),
        ("台湾", "zh-Hant"),
        ("香港", "zh-Hant"),
        ("ブラジル", "pt"),
        ("ペルー", "es"),
        ("フィリピン", "tl"),
        ("ネパール", "ne"),
        ("インドネシア", "id"),
        ("大韓民国", "ko"),
        ("VNM", "vi"),
        ("vn", "vi"),
        ("TWN", "zh-Hant"),
        ("BRA", "pt"),
        ("Viet Nam", "vi"),
        ("Brazil", "pt"),
        ("米国", None),
        ("フランス", None),
        ("無国籍", None),
        ("", None),
    ],
)
def test_language_from_nationality(nationality: str, language: str | None) -> None:
    assert language_for_nationality(nationality) == language


def test_country_names_as_on_residence_cards() -> None:
    assert country_of("ミャンマー") == "MM"
    assert country_of("スリランカ") == "LK"
    assert country_of("英国") == "GB"


def test_row_language_wins_then_nationality_then_default() -> None:
    frame = pl.DataFrame(
        {
            # A blank cell names no language: the nationality decides. (A value that
            # names none rrnet recognises gets the default: test_language_tags.)
            "language": ["ko", None, None, "  ", None],
            "nationality": ["ベトナム", "ベトナム", "フランス", "BRA", None],
        }
    )
    assert choose_languages(frame).to_list() == ["ko", "vi", "en", "pt", "en"]
    assert choose_languages(frame, default="ja").to_list() == ["ko", "vi", "ja", "pt", "ja"]


def test_without_language_column_nationality_decides() -> None:
    frame = pl.DataFrame({"nationality": ["中国", "TWN"]})
    assert choose_languages(frame).to_list() == ["zh-Hans", "zh-Hant"]


def test_unknown_default_language_is_refused() -> None:
    with pytest.raises(UsageError, match="Unknown default language"):
        choose_languages(pl.DataFrame({"nationality": ["中国"]}), default="klingon")


def test_every_bundled_sample_resident_gets_a_supported_language() -> None:
    sample = pl.read_parquet(Path(__file__).parent.parent / "sample_data" / "register.parquet")
    chosen = choose_languages(sample)
    assert set(chosen.unique()) <= set(LANGUAGES)
    # The sample is mostly Chinese, Vietnamese and Korean residents.
    counts = dict(chosen.value_counts().iter_rows())
    assert counts.get("vi", 0) > 0 and counts.get("zh-Hans", 0) > 0 and counts.get("ko", 0) > 0
