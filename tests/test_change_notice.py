"""The change notice (住民票コード変更通知書) on the fixed form: fit, placement, wording.

Rendered for real (WeasyPrint, pikepdf) and read back with pypdf, as the sheet's
form is in test_form: every language with ordinary and with the longest values
an office allows, every text fragment inside its box, neither code in the
envelope window, a value that cannot fit refused naming the resident and field.
"""

from __future__ import annotations

import dataclasses
import io
import random
import re
import tomllib
from typing import Any

import pikepdf
import pytest
from pypdf import PdfReader
from test_form import (
    LONG_ADDRESS,
    LONG_ALIAS,
    LONG_KANJI,
    LONG_NAME,
    PROFILE,
    TOLERANCE_PT,
    form_xobjects,
    fragments,
    make_sheet,
    squash,
)

from rrnet_cli import change_notice, form
from rrnet_cli import code as rcode
from rrnet_cli.errors import UsageError
from rrnet_cli.languages import NoticeText, load_notices
from rrnet_cli.profile import Profile, load_profile
from rrnet_cli.schema import LANGUAGES

CHANGED_ON = "2026-11-30"


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile(PROFILE)


@pytest.fixture(scope="module")
def notices() -> dict[str, NoticeText]:
    return load_notices()


@pytest.fixture(scope="module")
def layout(profile: Profile) -> form.FormLayout:
    return change_notice.load_change_layout(profile=profile)


@pytest.fixture(scope="module")
def renderer(profile: Profile, layout: form.FormLayout) -> change_notice.ChangeRenderer:
    return change_notice.ChangeRenderer(profile, layout)


@pytest.fixture(scope="module")
def static(
    profile: Profile, notices: dict[str, NoticeText], layout: form.FormLayout
) -> form.StaticPages:
    return change_notice.render_change_static_pages(
        profile, notices, LANGUAGES, "2026-12-01", layout
    )


def groups(code: str) -> list[str]:
    return rcode.format(code).split(" ")


def window_text(sheet: dict[str, Any]) -> str:
    values = form.sheet_values(sheet)
    return squash(values["postal_code"] + values["address"] + values["addressee"] + "様")


def fresh_code(rng: random.Random, avoid: str) -> str:
    """A valid code none of whose 4-4-3 groups appears in ``avoid``."""
    while True:
        body = "".join(rng.choice("123456789") for _ in range(10))
        code = body + rcode.calc_check_digit(body)
        if not any(group in avoid for group in groups(code)):
            return code


def change_sheet(
    number: int, language: str, notices: dict[str, NoticeText], **values: Any
) -> dict[str, Any]:
    """A sheet as notify.build_sheets makes it (new code), plus old_code and changed_on."""
    sheet = make_sheet(number, language, notices, **values)
    rng = random.Random(number)
    new = fresh_code(rng, window_text(sheet))
    old = fresh_code(rng, window_text(sheet) + new)
    sheet.update(code=new, code_groups=groups(new), old_code=old, changed_on=CHANGED_ON)
    return sheet


def language_sheets(language: str, notices: dict[str, NoticeText], start: int) -> list[dict]:
    """Ordinary values (without and with the optional names), then the longest of all."""
    return [
        change_sheet(start, language, notices),
        change_sheet(start + 1, language, notices, name_kanji="王小明", alias="山田"),
        change_sheet(
            start + 2,
            language,
            notices,
            name=LONG_NAME,
            name_kanji=LONG_KANJI,
            alias=LONG_ALIAS,
            address=LONG_ADDRESS,
        ),
    ]


@pytest.fixture(scope="module")
def batch(
    renderer: change_notice.ChangeRenderer, static: form.StaticPages, notices
) -> dict[str, Any]:
    """One batch of every language's sheets, laid out and composed."""
    sheets = [
        sheet
        for number, language in enumerate(LANGUAGES)
        for sheet in language_sheets(language, notices, start=number * 10 + 1)
    ]
    layer = renderer.render_layer(sheets)
    languages = [sheets[i]["language"] for i in layer.rendered]
    composed = form.compose(layer.pdf, static, languages)
    return {"sheets": sheets, "layer": layer, "composed": composed}


def spaced(code: str) -> re.Pattern[str]:
    """The code as read back: its three groups, with the spaces between them."""
    return re.compile(r"\s+".join(groups(code)))


# -- every language ----------------------------------------------------------


def test_every_sheet_renders_one_page(batch) -> None:
    layer, sheets = batch["layer"], batch["sheets"]
    assert layer.rejections == []
    assert layer.rendered == list(range(len(sheets)))
    assert len(PdfReader(io.BytesIO(batch["composed"])).pages) == len(sheets)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_notice_reads_back_in_full(batch, notices, language: str) -> None:
    ja, notice = notices["ja"], notices[language]
    reader = PdfReader(io.BytesIO(batch["composed"]))
    pages = [
        (reader.pages[page], batch["sheets"][index])
        for page, index in enumerate(batch["layer"].rendered)
        if batch["sheets"][index]["language"] == language
    ]
    assert len(pages) == 3
    for page, sheet in pages:
        raw = page.extract_text()
        text = squash(raw)
        assert "住民票コード変更通知書" in text
        assert squash(ja.change["old_invalid"]) in text
        assert squash(ja.change["new_code"]) in text and squash(ja.change["old_code"]) in text
        # Kept safe in its own words: the sheet's keep_safe names the first notice.
        assert squash(ja.change["keep_safe"]) in text
        assert squash(ja.text["keep_safe"]) not in text
        if language == "ne":
            # Shaped Devanagari reads back lossily (see test_form): only see that it is there.
            assert len(re.findall("[\u0900-\u097f]", text)) > 200
        elif language != "ja":
            assert squash(notice.change["title"]) in text
            assert squash(notice.change["old_invalid"]) in text
            assert squash(notice.change["keep_safe"]) in text
            assert squash(notice.text["keep_safe"]) not in text
        # Both codes, in 4-4-3 groups, and the name.
        assert spaced(sheet["code"]).search(raw), sheet["resident_id"]
        assert spaced(sheet["old_code"]).search(raw), sheet["resident_id"]
        assert squash(sheet["name"]) in text
        assert CHANGED_ON in text and sheet["resident_id"] in text


# -- placement -----------------------------------------------------------------


def test_no_text_is_drawn_outside_its_box(batch, layout) -> None:
    height = layout.page_height
    boxes = {"window": layout.window.rect.to_pt(height)}
    boxes.update({name: box.rect.to_pt(height) for name, box in layout.boxes.items()})
    del boxes["notice_date"]  # on the static page
    reader = PdfReader(io.BytesIO(batch["layer"].pdf))
    for number, page in enumerate(reader.pages):
        found = fragments(page)
        assert found
        for fragment in found:
            owners = [name for name, rect in boxes.items() if fragment.starts_in(rect)]
            assert owners, (number, fragment)
            assert any(fragment.inside(boxes[name], TOLERANCE_PT) for name in owners), (
                number,
                owners,
                fragment,
            )


def test_neither_code_shows_through_the_window(batch, layout) -> None:
    height = layout.page_height
    window = layout.window.rect.to_pt(height)
    code_boxes = [layout.boxes[name].rect.to_pt(height) for name in ("code", "old_code")]
    reader = PdfReader(io.BytesIO(batch["composed"]))
    monospace = 0
    for page, index in zip(reader.pages, batch["layer"].rendered, strict=True):
        sheet = batch["sheets"][index]
        digit_groups = groups(sheet["code"]) + groups(sheet["old_code"])
        allowed = window_text(sheet)
        assert not any(group in allowed for group in digit_groups)  # the test can tell
        for fragment in fragments(page):
            if fragment.mono:
                monospace += 1
                assert not fragment.overlaps(window), fragment
                assert any(fragment.inside(box, TOLERANCE_PT) for box in code_boxes), fragment
            if fragment.overlaps(window):
                text = squash(fragment.text)
                assert text in allowed, fragment
                assert not any(group in text for group in digit_groups), fragment
    assert monospace >= 2 * len(batch["layer"].rendered)


def test_the_file_stores_each_languages_static_page_once(batch) -> None:
    with pikepdf.open(io.BytesIO(batch["composed"])) as pdf:
        drawn, stored = form_xobjects(pdf)
        assert len(drawn) == stored == len(LANGUAGES)


# -- rejections ------------------------------------------------------------------


def test_a_value_too_long_for_any_size_is_a_rejection_and_the_rest_renders(
    renderer, static, notices
) -> None:
    sheets = [
        change_sheet(1, "vi", notices),
        change_sheet(2, "vi", notices, address="愛知県さくら市本町" + "桜" * 391),
        change_sheet(3, "pt", notices, name=LONG_NAME),
        {**change_sheet(4, "en", notices), "changed_on": "30 November 2026 " * 12},
        {**change_sheet(5, "ja", notices), "old_code": "1234 5678 900"},  # bad check digit
        change_sheet(6, "ko", notices),
    ]
    layer = renderer.render_layer(sheets)
    assert layer.rendered == [0, 2, 5]
    assert [(r.resident_id, r.field) for r in layer.rejections] == [
        ("000000002", "address"),
        ("000000004", "changed_on"),
        ("000000005", "old_code"),
    ]
    for rejection in layer.rejections:
        assert "桜" not in rejection.reason and "November" not in rejection.reason
    assert "too long" in layer.rejections[0].reason
    assert "check digit" in layer.rejections[2].reason
    composed = form.compose(layer.pdf, static, [sheets[i]["language"] for i in layer.rendered])
    assert len(PdfReader(io.BytesIO(composed)).pages) == 3


def test_the_old_code_is_never_broken(profile, notices) -> None:
    # A box too narrow for the code even at its smallest size: refused, not broken.
    data = tomllib.loads(change_notice.CHANGE_LAYOUT.read_text(encoding="utf-8"))
    data["boxes"]["old_code"]["width"] = 20
    narrow = change_notice.ChangeRenderer(
        profile, form.parse_layout(data, value_boxes=change_notice.CHANGE_BOXES)
    )
    layer = narrow.render_layer([change_sheet(1, "en", notices)])
    assert layer.rendered == [] and len(layer.rejections) == 1
    rejection = layer.rejections[0]
    assert (rejection.resident_id, rejection.field) == ("000000001", "old_code")
    assert "too long for its box (old_code: 1 line)" in rejection.reason


def test_characters_no_font_has_are_rejections(renderer, notices) -> None:
    sheets = [
        {**change_sheet(1, "en", notices), "changed_on": "令和8年\ue000月"},
        change_sheet(2, "en", notices),
    ]
    layer = renderer.render_layer(sheets)
    assert layer.rendered == [1]
    assert [(r.resident_id, r.field) for r in layer.rejections] == [("000000001", "changed_on")]


# -- the layout and the workers ---------------------------------------------------


def test_the_layout_keeps_both_codes_out_of_the_window(layout, profile) -> None:
    assert set(layout.boxes) == set(change_notice.CHANGE_BOXES)
    for name, rect in layout.areas():
        assert not rect.intersects(layout.window.rect), name
    assert layout.boxes["old_code"].fit.font == "code"
    moved = dataclasses.replace(profile, address_top=170, address_height=30)
    with pytest.raises(UsageError, match=r"boxes\.old_code.*envelope window"):
        change_notice.load_change_layout(profile=moved)


def test_the_workers_render_and_compose_a_batch(profile, notices) -> None:
    static = form.render_static_pages_apart(profile, ["ja", "tl"], "2026-12-01", kind="change")
    assert sorted(static) == ["ja", "tl"]
    form.init_worker(profile, static, "change")
    sheets = [change_sheet(1, "tl", notices), change_sheet(2, "ja", notices)]
    layer = form.render_batch(sheets)
    assert layer.rejections == [] and layer.rendered == [0, 1]
    reader = PdfReader(io.BytesIO(layer.pdf))
    assert len(reader.pages) == 2
    assert squash(notices["tl"].change["title"]) in squash(reader.pages[0].extract_text())
