"""Notice wording for household sheets and the change notice (住民票コード変更通知書)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from rrnet_cli.errors import UsageError
from rrnet_cli.languages import NOTICES, load_notice, load_notices, placeholders
from rrnet_cli.schema import LANGUAGES

# Labels that household sheets, continuation pages, reissues and samples print.
HOUSEHOLD_LABELS = (
    "household",
    "household_reference",
    "householder",
    "members",
    "page",
    "continued",
    "reissued",
    "sample",
)

# What the change notice tells the resident, by key.
CHANGE_POINTS = (
    "title",
    "changed",
    "old_invalid",
    "old_code",
    "new_code",
    "changed_on",
    "keep_safe",
)


def test_every_language_has_the_household_labels_and_the_change_notice() -> None:
    notices = load_notices()
    assert sorted(notices) == sorted(LANGUAGES)
    for language, notice in notices.items():
        for key in HOUSEHOLD_LABELS:
            assert notice.labels.get(key, "").strip(), (language, key)
        assert set(notice.change) == set(CHANGE_POINTS), language
        for key, value in notice.change.items():
            assert value.strip(), (language, key)


def test_japanese_change_notice_uses_the_offices_wording() -> None:
    ja = load_notices()["ja"]
    assert ja.change["title"] == "住民票コード変更通知書"
    assert ja.change["old_code"] == "変更前の住民票コード"
    assert ja.change["new_code"] == "変更後の住民票コード"
    assert ja.labels["householder"] == "世帯主"
    assert ja.labels["reissued"] == "再交付"


def test_change_notice_is_translated_not_left_in_english() -> None:
    notices = load_notices()
    english = notices["en"].change
    for language, notice in notices.items():
        if language == "en":
            continue
        for key in CHANGE_POINTS:
            assert notice.change[key] != english[key], (language, key)


def test_page_label_numbers_the_sheets_in_every_language() -> None:
    for language, notice in load_notices().items():
        page = notice.labels["page"].format(page=2, pages=3)
        assert "2" in page and "3" in page, (language, page)
        assert "{" not in page, (language, page)


@pytest.fixture
def notices_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "notices"
    shutil.copytree(NOTICES, folder)
    return folder


def test_a_notice_missing_a_change_key_is_refused(notices_copy: Path) -> None:
    path = notices_copy / "ko.toml"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("old_invalid = ")]
    assert len(kept) == len(lines) - 1
    path.write_text("".join(kept), encoding="utf-8")
    with pytest.raises(UsageError, match=r"ko\.toml: \[change\].*missing: old_invalid") as caught:
        load_notice("ko", notices_copy)
    assert str(path) in str(caught.value)


def test_a_page_label_without_both_numbers_is_refused(notices_copy: Path) -> None:
    path = notices_copy / "pt.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(
        text.replace('page = "Página {page} de {pages}"', 'page = "Página {page}"'),
        encoding="utf-8",
    )
    with pytest.raises(UsageError, match=r"pt\.toml: labels\.page must contain both"):
        load_notice("pt", notices_copy)
    path.write_text(
        text.replace('page = "Página {page} de {pages}"', 'page = "Página {page} de {pages} {x}"'),
        encoding="utf-8",
    )
    with pytest.raises(UsageError, match=r"pt\.toml: labels\.page has braces"):
        load_notice("pt", notices_copy)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_notice_file_has_the_keys_and_fields_of_ja(language: str) -> None:
    """Read the files themselves, as a translator edits them, not through the loader."""
    reference = tomllib.loads((NOTICES / "ja.toml").read_text(encoding="utf-8"))
    notice = tomllib.loads((NOTICES / f"{language}.toml").read_text(encoding="utf-8"))
    assert set(notice) == set(reference)
    for section, wording in reference.items():
        assert set(notice[section]) == set(wording), (language, section)
        for key, text in wording.items():
            if section == "meta":
                continue
            assert placeholders(notice[section][key]) == placeholders(text), (section, key)


def test_a_translation_that_drops_or_invents_a_field_is_refused(notices_copy: Path) -> None:
    path = notices_copy / "vi.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('sample = "', 'sample = "{resident} '), encoding="utf-8")
    with pytest.raises(UsageError, match=r"vi\.toml: labels\.sample must have the fields"):
        load_notice("vi", notices_copy)
    path.write_text(text.replace('sample = "', 'sample = "{'), encoding="utf-8")
    with pytest.raises(UsageError, match=r"vi\.toml: labels\.sample has a stray brace"):
        load_notice("vi", notices_copy)


# What a review of the translations against ja.toml asked for, so that no later
# edit brings the misleading wording back.
@pytest.mark.parametrize(
    ("language", "section", "key", "wanted", "unwanted"),
    [
        # 通称 is a registered name, not a nickname (उपनाम).
        ("ne", "labels", "alias", "प्रचलित नाम (त्सुशो)", None),
        # The law is the agent: कानुनले ... निषेध गरेको छ, not a passive with ले.
        ("ne", "text", "private_use", "कानुनले", "द्वारा"),
        # 受理 implies an application was received; the number only files the record.
        ("zh-Hans", "labels", "reference", "整理编号", "受理"),
        ("zh-Hant", "labels", "reference", "整理編號", "受理"),
        # Reexpedición is mail forwarding in Spain.
        ("es", "labels", "reissued", "Duplicado", "Reexpedición"),
        # Towns and villages issue codes too, not only cities.
        ("id", "text", "change_request", "pemerintah daerah (kota/kabupaten/desa)", None),
        # 今後は使用できません: a fact, not an order.
        ("en", "change", "old_invalid", "It can no longer be used.", "Do not use it"),
    ],
)
def test_reviewed_wording_stays(
    language: str, section: str, key: str, wanted: str, unwanted: str | None
) -> None:
    text = getattr(load_notices()[language], section)[key]
    assert wanted in text
    if unwanted is not None:
        assert unwanted not in text


def test_english_labels_name_the_code_as_the_title_does() -> None:
    en = load_notices()["en"]
    assert "Resident Record Code" in en.text["title"]
    assert en.labels["code"] == "Resident Record Code"
    assert en.labels["birth_date"] == "Date of Birth"
    assert en.labels["alias"] == "Registered Alias"
    assert en.change["new_code"].endswith("Resident Record Code")


def test_the_change_notice_is_kept_safe_in_its_own_words() -> None:
    for language, notice in load_notices().items():
        assert notice.change["keep_safe"] != notice.text["keep_safe"], language
    assert load_notices()["ja"].change["keep_safe"] == "この変更通知書は大切に保管してください。"
