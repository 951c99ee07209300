"""Notice wording for household sheets and the change notice (住民票コード変更通知書)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rrnet_cli.errors import UsageError
from rrnet_cli.languages import NOTICES, load_notice, load_notices
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
CHANGE_POINTS = ("title", "changed", "old_invalid", "old_code", "new_code", "changed_on")


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
