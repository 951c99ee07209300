"""The notification sheet as a printed form (rrnet_cli.form): fit, placement, composition.

Every value is read back from the PDF with pypdf, and the position of every text
fragment (its text matrix times the CTM) is compared with the boxes of the
layout: 1 mm = 72/25.4 pt, PDF origin at the bottom left.
"""

from __future__ import annotations

import dataclasses
import io
import re
import subprocess
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from fontTools.ttLib import TTFont
from pypdf import PdfReader

from rrnet_cli import form
from rrnet_cli.errors import RrnetError, UsageError
from rrnet_cli.languages import NoticeText, load_notices
from rrnet_cli.profile import Profile, load_profile
from rrnet_cli.schema import LANGUAGES

ROOT = Path(__file__).parent.parent
PROFILE = ROOT / "sample_data" / "profile.toml"
PT_PER_MM = 72 / 25.4
TOLERANCE_PT = 1.0
#: Ascent and descent of the fonts, as a share of the font size (Noto Sans CJK).
ASCENT, DESCENT = 0.88, 0.12
#: The code box's letter and word spacing (templates/form/form.css), for its width.
CODE_LETTER_SPACING_EM, CODE_WORD_SPACING_PT = 0.08, 4 * PT_PER_MM

# The longest values an office allows, and ordinary ones.
LONG_NAME = "Maria da Conceição Gonçalves Ferreira dos Santos Oliveira Pereira Nascimento Luz"
LONG_KANJI = "東西南北春夏秋冬松竹梅桜菊蘭山川海森林田中村上下左右前後高橋"
LONG_ALIAS = "サンチェス・トーレス・ホセ・ルイス・山田"
LONG_ADDRESS = (
    "北海道札幌市中央区南一条西二十丁目1番地の23 グランドメゾン円山公園フォレストテラス北館"
    " 1203号室 サンライズマンション307号室 ノースゲートビルディング札幌駅前通り東側"
    " 5F 管理人室 気付"
)
ORDINARY = {
    "name": "Nguyễn Văn An",
    "name_kanji": "王小明",
    "alias": "山田",
    "address": "愛知県さくら市本町2-20-11 コスモ新田605",
}
LONGEST = {
    "name": LONG_NAME,
    "name_kanji": LONG_KANJI,
    "alias": LONG_ALIAS,
    "address": LONG_ADDRESS,
}
#: Which optional fields a sheet has: none, alias, kanji name, both.
OPTIONALS = [(), ("alias",), ("name_kanji",), ("name_kanji", "alias")]


def test_the_longest_values_are_as_long_as_an_office_allows() -> None:
    assert (len(LONG_NAME), len(LONG_KANJI), len(LONG_ADDRESS), len(LONG_ALIAS)) == (
        80,
        30,
        100,
        20,
    )


# -- helpers -----------------------------------------------------------------


@pytest.fixture(scope="module")
def profile() -> Profile:
    return load_profile(PROFILE)


@pytest.fixture(scope="module")
def notices() -> dict[str, NoticeText]:
    return load_notices()


@pytest.fixture(scope="module")
def layout(profile: Profile) -> form.FormLayout:
    return form.load_layout(profile=profile)


@pytest.fixture(scope="module")
def renderer(profile: Profile, layout: form.FormLayout) -> form.FormRenderer:
    return form.FormRenderer(profile, layout)


@pytest.fixture(scope="module")
def static(
    profile: Profile, notices: dict[str, NoticeText], layout: form.FormLayout
) -> form.StaticPages:
    return form.render_static_pages(profile, notices, LANGUAGES, "2026-12-01", layout)


def code_for(number: int) -> str:
    return f"9{number:010d}"


def make_sheet(
    number: int,
    language: str,
    notices: dict[str, NoticeText],
    *,
    name: str = ORDINARY["name"],
    name_kanji: str | None = None,
    alias: str | None = None,
    address: str = ORDINARY["address"],
    postal_code: str | None = "4870801",
) -> dict[str, Any]:
    """A sheet as notify.build_sheets makes it."""
    notice, ja = notices[language], notices["ja"]
    sex = ja.labels["female"]
    if language != "ja":
        sex += f" / {notice.labels['female']}"
    fields = [{"key": "name", "value": name}]
    if name_kanji:
        fields.append({"key": "name_kanji", "value": name_kanji})
    if alias:
        fields.append({"key": "alias", "value": alias})
    fields += [
        {"key": "birth_date", "value": "1998-10-31"},
        {"key": "sex", "value": sex},
        {"key": "address", "value": address},
        {"key": "recorded_on", "value": "2026-11-28"},
    ]
    code = code_for(number)
    return {
        "resident_id": f"{number:09d}",
        "household_id": None,
        "name": name,
        "postal_code": postal_code,
        "address": address,
        "language": language,
        "notice": notice,
        "code": code,
        "code_groups": [code[:4], code[4:8], code[8:]],
        "fields": fields,
    }


def matrix_sheets(language: str, notices: dict[str, NoticeText], start: int) -> list[dict]:
    """Every combination of optional fields, with ordinary and with the longest values."""
    sheets = []
    for values in (ORDINARY, LONGEST):
        for optional in OPTIONALS:
            extra = {key: values[key] for key in optional}
            sheets.append(
                make_sheet(
                    start + len(sheets),
                    language,
                    notices,
                    name=values["name"],
                    address=values["address"],
                    **extra,
                )
            )
    return sheets


def squash(text: str) -> str:
    """Text without whitespace and break controls; Devanagari's ि is lost by extraction."""
    return re.sub(r"[\s\u200b\u2060]+", "", text).replace("\u093f", "")


@dataclasses.dataclass
class Fragment:
    text: str
    x0: float
    x1: float
    baseline: float
    size: float
    mono: bool

    def inside(self, rect: tuple[float, float, float, float], tolerance: float) -> bool:
        left, bottom, right, top = rect
        return (
            self.x0 >= left - tolerance
            and self.x1 <= right + tolerance
            and self.baseline - DESCENT * self.size >= bottom - tolerance
            and self.baseline + ASCENT * self.size <= top + tolerance
        )

    def starts_in(self, rect: tuple[float, float, float, float]) -> bool:
        left, bottom, right, top = rect
        return (
            left - TOLERANCE_PT <= self.x0 <= right + TOLERANCE_PT
            and bottom - TOLERANCE_PT <= self.baseline <= top + TOLERANCE_PT
        )

    def overlaps(self, rect: tuple[float, float, float, float]) -> bool:
        left, bottom, right, top = rect
        return (
            self.x0 < right
            and left < self.x1
            and self.baseline - DESCENT * self.size < top
            and bottom < self.baseline + ASCENT * self.size
        )


@cache
def font_metrics(base_font: str) -> tuple[dict[int, int], int]:
    """Advance widths by character, and units per em, of a PDF font's file."""
    name = base_font.lstrip("/").split("+", 1)[-1]
    bold = name.endswith("-Bold")
    family = name.removesuffix("-Bold").replace("-", " ")
    pattern = f"{family}:bold" if bold else family
    path, index = subprocess.run(
        ["fc-match", "--format=%{file}\n%{index}", pattern],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    with TTFont(path, fontNumber=int(index or 0), lazy=True) as font:
        cmap = font.getBestCmap()
        hmtx = font["hmtx"]
        widths = {code: hmtx[glyph][0] for code, glyph in cmap.items()}
        return widths, font["head"].unitsPerEm


def _multiply(a: list[float], b: list[float]) -> list[float]:
    return [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]


def fragments(
    page: Any,
    *,
    code_word_spacing_mm: float = CODE_WORD_SPACING_PT / PT_PER_MM,
    code_letter_spacing_em: float = CODE_LETTER_SPACING_EM,
) -> list[Fragment]:
    """Every text fragment drawn on a pypdf page, with where it starts and ends (pt).

    A code's width includes its letter and word spacing (form.css), given for
    the code style of the page (the sheet's, unless told).
    """
    found: list[Fragment] = []

    def visit(text: str, cm: Any, tm: Any, font: Any, size: float) -> None:
        text = text.strip("\n")
        if not text.strip() or font is None:
            return
        matrix = _multiply([float(v) for v in tm], [float(v) for v in cm])
        scale = abs(matrix[3]) or abs(matrix[0])
        points = float(size) * scale
        base_font = str(font.get("/BaseFont"))
        widths, units = font_metrics(base_font)
        width = sum(widths.get(ord(ch), units) for ch in text) / units * points
        mono = "Mono" in base_font
        if mono:
            width += len(text) * code_letter_spacing_em * points
            width += text.count(" ") * code_word_spacing_mm * PT_PER_MM
        found.append(Fragment(text, matrix[4], matrix[4] + width, matrix[5], points, mono))

    page.extract_text(visitor_text=visit)
    return found


def value_boxes(layout: form.FormLayout) -> dict[str, tuple[float, float, float, float]]:
    """The layer's boxes in PDF points: the window, and every value box."""
    height = layout.page_height
    boxes = {"window": layout.window.rect.to_pt(height)}
    boxes.update({name: box.rect.to_pt(height) for name, box in layout.boxes.items()})
    del boxes["notice_date"]  # on the static page
    return boxes


def page_values(sheet: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(field, text) of every value a sheet's page must show."""
    values = form.sheet_values(sheet)
    for key in ("postal_code", "name", "name_kanji", "alias", "birth_date", "sex"):
        if values[key]:
            yield key, values[key]
    yield from (
        ("address", values["address"]),
        ("recorded_on", values["recorded_on"]),
        ("resident_id", values["resident_id"]),
        ("resident_code", values["resident_code"]),
    )


# -- the fit matrix ------------------------------------------------------------


@pytest.fixture(scope="module")
def matrix(
    renderer: form.FormRenderer, static: form.StaticPages, notices: dict[str, NoticeText]
) -> dict[str, dict[str, Any]]:
    """Every language x {no alias, alias, kanji, both} x {ordinary, longest}: one batch each."""
    results = {}
    for number, language in enumerate(LANGUAGES):
        sheets = matrix_sheets(language, notices, start=number * 100 + 1)
        layer = renderer.render_layer(sheets)
        languages = [sheets[i]["language"] for i in layer.rendered]
        results[language] = {
            "sheets": sheets,
            "layer": layer,
            "composed": form.compose(layer.pdf, static, languages),
        }
    return results


@pytest.mark.parametrize("language", LANGUAGES)
def test_matrix_page_count_is_sheets_minus_rejections(matrix, language: str) -> None:
    result = matrix[language]
    layer, sheets = result["layer"], result["sheets"]
    rejected = {r.resident_id for r in layer.rejections}
    assert len(PdfReader(io.BytesIO(result["composed"])).pages) == len(sheets) - len(rejected)
    assert len(layer.rendered) == len(sheets) - len(rejected)
    # The longest values an office allows all fit: nobody is left out.
    assert layer.rejections == []
    assert layer.rendered == list(range(len(sheets)))


@pytest.mark.parametrize("language", LANGUAGES)
def test_matrix_every_value_is_printed_in_full(matrix, notices, language: str) -> None:
    result = matrix[language]
    reader = PdfReader(io.BytesIO(result["composed"]))
    for page, index in zip(reader.pages, result["layer"].rendered, strict=True):
        sheet = result["sheets"][index]
        text = squash(page.extract_text())
        for field, value in page_values(sheet):
            assert squash(value) in text, (language, sheet["resident_id"], field)
        # ... over the static page of its language.
        assert squash(notices["ja"].text["private_use"]) in text
        if language == "ne":
            # Text read back from shaped Devanagari is lossy (WeasyPrint's ToUnicode
            # maps a conjunct's glyphs to one cluster): only see that it is there.
            assert len(re.findall("[\u0900-\u097f]", text)) > 300
        else:
            assert squash(notices[language].text["keep_safe"]) in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_matrix_no_value_is_drawn_outside_its_box(matrix, layout, language: str) -> None:
    boxes = value_boxes(layout)
    reader = PdfReader(io.BytesIO(matrix[language]["layer"].pdf))
    for number, page in enumerate(reader.pages):
        found = fragments(page)
        assert found
        for fragment in found:
            owners = [name for name, rect in boxes.items() if fragment.starts_in(rect)]
            assert owners, (language, number, fragment)
            assert any(fragment.inside(boxes[name], TOLERANCE_PT) for name in owners), (
                language,
                number,
                owners,
                fragment,
            )


def test_no_digit_of_the_code_shows_through_the_window(matrix, layout) -> None:
    window = layout.window.rect.to_pt(layout.page_height)
    code_box = layout.boxes["code"].rect.to_pt(layout.page_height)
    for result in matrix.values():
        reader = PdfReader(io.BytesIO(result["composed"]))
        for page, index in zip(reader.pages, result["layer"].rendered, strict=True):
            values = form.sheet_values(result["sheets"][index])
            allowed = squash(values["postal_code"] + values["address"] + values["name"] + "様")
            code = squash(values["resident_code"])
            for fragment in fragments(page):
                if fragment.mono:
                    assert not fragment.overlaps(window)
                    assert fragment.inside(code_box, TOLERANCE_PT)
                if fragment.overlaps(window):
                    # Only the postal code, address and addressee are in the window.
                    assert squash(fragment.text) in allowed, fragment
                    assert code not in squash(fragment.text)


def test_a_long_value_shrinks_in_its_box_and_only_its_sheet_is_laid_out_again(
    renderer, notices, layout
) -> None:
    sheets = [
        make_sheet(1, "en", notices),
        make_sheet(2, "en", notices, address=LONG_ADDRESS),
        make_sheet(3, "en", notices),
    ]
    layer = renderer.render_layer(sheets)
    assert layer.rendered == [0, 1, 2] and layer.rejections == []
    assert renderer.rounds > 1
    address = layout.boxes["address"].rect.to_pt(layout.page_height)
    reader = PdfReader(io.BytesIO(layer.pdf))
    sizes = [
        {round(f.size, 1) for f in fragments(page) if f.starts_in(address)} for page in reader.pages
    ]
    normal = layout.boxes["address"].fit.font_size
    assert sizes[0] == sizes[2] == {normal}
    assert max(sizes[1]) < normal


def test_a_word_longer_than_its_box_at_any_size_is_broken_as_the_last_resort(
    renderer, notices
) -> None:
    token = "X" * 80
    layer = renderer.render_layer([make_sheet(1, "en", notices, name=token)])
    assert layer.rejections == [] and layer.rendered == [0]
    assert squash(token) in squash(PdfReader(io.BytesIO(layer.pdf)).pages[0].extract_text())


# -- rejections ------------------------------------------------------------------


def test_a_value_too_long_for_any_size_is_a_rejection_and_the_rest_renders(
    renderer, notices
) -> None:
    too_long = "愛知県さくら市本町" + "桜" * 391
    sheets = [
        make_sheet(1, "vi", notices),
        make_sheet(2, "vi", notices, address=too_long),
        make_sheet(3, "pt", notices, name=LONG_NAME),
    ]
    layer = renderer.render_layer(sheets)
    assert layer.rendered == [0, 2]
    assert [(r.resident_id, r.field) for r in layer.rejections] == [("000000002", "address")]
    reason = layer.rejections[0].reason
    assert "too long" in reason and "桜" not in reason and "さくら" not in reason
    assert len(PdfReader(io.BytesIO(layer.pdf)).pages) == 2


def test_characters_no_font_of_the_form_has_are_rejections(renderer, notices) -> None:
    sheets = [
        make_sheet(1, "en", notices, name="Tanaka \ue000"),  # private use (外字)
        make_sheet(2, "en", notices, alias="\U00013000"),  # a hieroglyph: in no font
        make_sheet(3, "ja", notices, name_kanji="葛\U000e0100飾"),  # IVS the font has
        make_sheet(4, "en", notices, address="東京都\U000f0001"),  # supplementary private use
        make_sheet(5, "en", notices),
    ]
    layer = renderer.render_layer(sheets)
    assert layer.rendered == [2, 4]
    found = {(r.resident_id, r.field): r.reason for r in layer.rejections}
    assert found == {
        ("000000001", "name"): "private-use character U+E000 (外字)",
        ("000000002", "alias"): (
            "character U+13000 (Egyptian Hieroglyphs) not in any of the form's fonts (外字?)"
        ),
        ("000000004", "address"): "private-use character U+F0001 (外字)",
    }


def test_glyph_check_uses_the_fonts_fontconfig_resolves(layout) -> None:
    check = form.GlyphCheck(layout.fonts)
    assert check.problem("Nguyễn Thị Hương 王小明 महिला") is None
    assert check.problem("1234 5678 901", "code") is None
    assert check.problem("A\ufe00") == (
        "character U+0041 with variation selector U+FE00 not in any of the form's fonts (外字?)"
    )


# -- static pages and composition -------------------------------------------------


def test_every_static_page_is_one_page(static) -> None:
    assert sorted(static) == sorted(LANGUAGES)
    for language, pdf in static.items():
        assert len(PdfReader(io.BytesIO(pdf)).pages) == 1, language
    assert len(PdfReader(io.BytesIO(static.combined)).pages) == len(LANGUAGES)
    assert static.order == list(LANGUAGES)


def test_a_static_page_that_does_not_fit_names_its_language(profile, notices, layout) -> None:
    long = dict(notices)
    ne = notices["ne"]
    long["ne"] = dataclasses.replace(
        ne, text={**ne.text, "photo_id": " ".join([ne.text["photo_id"]] * 12)}
    )
    with pytest.raises(RrnetError, match="static page of 'ne' does not fit on one page"):
        form.render_static_pages(profile, long, ["en", "ne"], "2026-12-01", layout)


def test_a_static_label_wider_than_its_area_is_refused_naming_it(profile, notices, layout) -> None:
    """A word that cannot wrap (no space in it) must not run out of its label's area."""
    wide = dict(notices)
    pt = notices["pt"]
    wide["pt"] = dataclasses.replace(
        pt, labels={**pt.labels, "name": "Nomecompletoconformeconstanocartãoderesidência" * 2}
    )
    with pytest.raises(RrnetError, match=r"'pt'.*label\.name has a line wider than its area"):
        form.render_static_pages(profile, wide, ["ja", "pt"], "2026-12-01", layout)
    # The date of notice has its own box: a date too long for it is refused too.
    with pytest.raises(RrnetError, match="notice_date"):
        form.render_static_pages(profile, notices, ["ja"], "令和10年12月31日" * 3, layout)


def form_xobjects(pdf: pikepdf.Pdf) -> tuple[set[tuple[int, int]], int]:
    """Form XObjects the pages draw (by object), and how many the file holds."""
    drawn = {
        xobject.objgen
        for page in pdf.pages
        for xobject in page.Resources.get("/XObject", {}).values()
    }
    stored = sum(
        1
        for obj in pdf.objects
        if isinstance(obj, pikepdf.Stream) and obj.get("/Subtype") == "/Form"
    )
    return drawn, stored


def test_a_50_page_file_stores_its_static_page_once_and_is_small(renderer, static, notices) -> None:
    sheets = []
    for number in range(50):
        values = LONGEST if number % 5 == 0 else ORDINARY
        sheets.append(
            make_sheet(number + 1, "vi", notices, name=values["name"], address=values["address"])
        )
    layer = renderer.render_layer(sheets)
    assert len(layer.rendered) == 50
    composed = form.compose(layer.pdf, static, ["vi"] * 50, max_kb_per_page=12)
    with pikepdf.open(io.BytesIO(composed)) as pdf:
        assert len(pdf.pages) == 50
        drawn, stored = form_xobjects(pdf)
        assert len(drawn) == 1 and stored == 1
    assert len(composed) / 50 < 12 * 1024


def test_a_mixed_file_stores_each_language_once_and_shares_fonts(renderer, static, notices) -> None:
    languages = [LANGUAGES[i % len(LANGUAGES)] for i in range(33)]
    sheets = [make_sheet(i + 1, language, notices) for i, language in enumerate(languages)]
    layer = renderer.render_layer(sheets)
    composed = form.compose(layer.pdf, static, languages)
    with pikepdf.open(io.BytesIO(composed)) as pdf:
        drawn, stored = form_xobjects(pdf)
        assert len(drawn) == stored == len(LANGUAGES)
        japanese = [
            obj
            for obj in pdf.objects
            if isinstance(obj, pikepdf.Dictionary)
            and obj.get("/Type") == "/FontDescriptor"
            and str(obj.get("/FontName", "")).endswith("+Noto-Sans-CJK-JP")
        ]
        # One for the static pages (shared by the eleven), one for the values.
        assert len(japanese) == 2
        # Compacted: bare CFF, each glyph under its CID.
        assert all(d.FontFile3.get("/Subtype") == "/CIDFontType0C" for d in japanese)


def test_compose_takes_plain_single_page_pdfs_too(renderer, static, notices) -> None:
    languages = ["en", "ja", "en"]
    sheets = [make_sheet(i + 1, language, notices) for i, language in enumerate(languages)]
    layer = renderer.render_layer(sheets)
    composed = form.compose(layer.pdf, dict(static), languages)
    with pikepdf.open(io.BytesIO(composed)) as pdf:
        drawn, stored = form_xobjects(pdf)
        assert len(pdf.pages) == 3 and len(drawn) == stored == 2
    text = squash(PdfReader(io.BytesIO(composed)).pages[2].extract_text())
    assert squash(notices["en"].text["keep_safe"]) in text


def test_compose_checks_its_input(static) -> None:
    with pytest.raises(RrnetError, match="languages were given"):
        form.compose(static["ja"], static, ["ja", "en"])
    with pytest.raises(RrnetError, match="No static page"):
        form.compose(static["ja"], {"en": static["en"]}, ["ja"])


# -- postal codes and addresses ----------------------------------------------------


@pytest.mark.parametrize(
    ("entered", "printed"),
    [
        ("4870802", "〒487-0802"),
        ("487-0802", "〒487-0802"),
        ("〒487-0802", "〒487-0802"),
        ("４８７－０８０２", "〒487-0802"),
        ("〒４８７０８０２", "〒487-0802"),
        (" 487 0802 ", "〒487-0802"),
        ("48708", "48708"),
        ("PO Box 12", "PO Box 12"),
        ("", ""),
        (None, ""),
    ],
)
def test_postal_codes(entered: str | None, printed: str) -> None:
    assert form.format_postal_code(entered) == printed


@pytest.mark.parametrize(
    ("address", "parts"),
    [
        (
            "愛知県さくら市本町2-20-11 サンライズマンション307号室",
            ["愛知県", "さくら市", "本町", "2-20-11", " ", "サンライズマンション", "307号室"],
        ),
        (
            "東京都千代田区九段南1丁目2番1号",
            ["東京都", "千代田区", "九段南", "1丁目", "2番", "1号"],
        ),
        (
            "神奈川県足柄下郡箱根町湯本２５６番地の３",
            ["神奈川県", "足柄下郡", "箱根町", "湯本", "２５６番地の", "３"],
        ),
        ("Flat 3, 12 Baker Street", ["Flat", " ", "3,", " ", "12", " ", "Baker", " ", "Street"]),
        ("大阪府大阪市北区梅田1-1、2F", ["大阪府", "大阪市", "北区", "梅田", "1-1、", "2F"]),
    ],
)
def test_address_break_points(address: str, parts: list[str]) -> None:
    assert form.address_segments(address) == parts
    assert "".join(form.address_segments(address)) == address


def test_addresses_break_between_parts_not_inside_words(renderer, notices) -> None:
    # At 11 pt a line of the window holds about 23 characters; the break must come
    # after 11号, not inside サンライズマンション.
    address = "愛知県さくら市本町二丁目20番11号サンライズマンション307号室"
    layer = renderer.render_layer([make_sheet(1, "ja", notices, address=address)])
    lines = PdfReader(io.BytesIO(layer.pdf)).pages[0].extract_text().split("\n")
    whole = [line for line in lines if "サンライズマンション307号室" in squash(line)]
    assert len(whole) >= 1
    assert not any(squash(line).endswith(("サンライズ", "サンライズマン")) for line in lines)
    assert form.address_markup(address).count("\u200b") == 7


# -- the layout table ------------------------------------------------------------


def layout_data() -> dict[str, Any]:
    return tomllib.loads(form.DEFAULT_LAYOUT.read_text(encoding="utf-8"))


def test_the_default_layout_loads_and_keeps_everything_out_of_the_window(layout) -> None:
    assert layout.window.rect == form.Rect(42, 22, 90, 40)  # from the profile
    assert set(layout.boxes) == set(form.VALUE_BOXES)
    for name, rect in layout.areas():
        assert not rect.intersects(layout.window.rect), name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["boxes"]["name"].update(min_font_size=12), "min_font_size must be"),
        (lambda d: d["boxes"]["name"].update(max_lines=0), "max_lines must be"),
        (lambda d: d["boxes"]["name"].update(top="12"), "name.top must be"),
        (lambda d: d["boxes"]["name"].update(colour="red"), "unknown keys: colour"),
        (lambda d: d["boxes"]["sex"].update(align="justify"), "align must be one of"),
        (lambda d: d["boxes"].pop("reference"), "lacks reference"),
        (lambda d: d["boxes"]["code"].update(left=150), "is not inside"),
        (lambda d: d["boxes"]["code"].update(height=2), "height must be"),
        (lambda d: d["static"]["title"].update(top=50), "static.title .* envelope window"),
        (lambda d: d["fonts"].update(values=[]), "fonts.values must be"),
    ],
)
def test_bad_layouts_are_refused_with_a_clear_message(change, message: str) -> None:
    data = layout_data()
    change(data)
    with pytest.raises(UsageError, match=message):
        form.parse_layout(data, "layout.toml")


def test_a_profile_whose_window_covers_the_code_is_refused(profile) -> None:
    moved = dataclasses.replace(profile, address_top=95)
    with pytest.raises(UsageError, match=r"boxes\.code.*envelope window"):
        form.load_layout(profile=moved)


def test_an_office_can_point_at_its_own_layout_file(tmp_path: Path, profile) -> None:
    text = form.DEFAULT_LAYOUT.read_text(encoding="utf-8")
    custom = tmp_path / "layout.toml"
    custom.write_text(text.replace("font_size = 24", "font_size = 22"), encoding="utf-8")
    layout = form.load_layout(custom, profile)
    assert layout.boxes["code"].fit.font_size == 22
    with pytest.raises(UsageError, match="does not exist"):
        form.load_layout(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("[page\n", encoding="utf-8")
    with pytest.raises(UsageError, match="not valid TOML"):
        form.load_layout(tmp_path / "bad.toml")
