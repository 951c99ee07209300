"""Notification sheets as a printed form (帳票): a static page under a layer of values.

A sheet is two layers:

- the **static page** of its language: sender, title, labels, lines, the
  Japanese notice, the translated notice and the footer. WeasyPrint lays it
  out once per run (:func:`render_static_pages`);
- the **value layer**: postal code, address and addressee in the envelope
  window, the code, the particulars, the office reference. WeasyPrint lays out
  only these, a batch at a time, each value in its own fixed box
  (:class:`FormRenderer`).

:func:`compose` puts each layer page over its language's static page with
pikepdf (qpdf), as a Form XObject stored once per file, so a 50-page file
holds each static page once.

Every box (position and size in mm, font size, smallest font size, most lines)
is in ``templates/form/layout.toml`` (:func:`load_layout`), of which an office can
use its own copy, adjusted to its envelope and paper (the profile's ``[sheet]
layout``, or ``rrnet notify --layout``); the window's rectangle comes from the
municipality profile. Values fit by construction: each is set at its normal
size; if WeasyPrint's layout shows that it overflows its box (more lines than
allowed, a line wider than the box, or taller than the box), only that sheet is
laid out again with that value 0.5 pt smaller (or straight at the size the
measurement calls for), down to the box's smallest size. Words are kept whole
as long as shrinking can fit them; only a word too long for any allowed size
is broken anywhere. A value that cannot fit at all, or that has a character no
font of the form can print (外字), is a :class:`Rejection` naming the
resident_id, the field and the reason, and that sheet is left out.

>>> format_postal_code("4870802"), format_postal_code("〒４８７－０８０２")
('〒487-0802', '〒487-0802')
>>> address_segments("愛知県さくら市本町2-20-11 サンライズマンション307号室")
['愛知県', 'さくら市', '本町', '2-20-11', ' ', 'サンライズマンション', '307号室']
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import signal
import threading
import unicodedata
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any, NamedTuple

import jinja2

from rrnet_cli.errors import RrnetError, UsageError
from rrnet_cli.languages import TEMPLATES, NoticeText
from rrnet_cli.profile import Profile
from rrnet_cli.schema import read_toml

FORM_FOLDER = "form"
LAYER_TEMPLATE = "form/layer.html.j2"
STATIC_TEMPLATE = "form/static.html.j2"
FORM_CSS = "form/form.css"
TEST_PAGE_TEMPLATE = "form/test_page.html.j2"
#: The layout an office gets unless its profile (``[sheet] layout``) or ``rrnet notify
#: --layout`` names its own copy.
DEFAULT_LAYOUT = TEMPLATES / FORM_FOLDER / "layout.toml"

PX_PER_MM = 96 / 25.4
PX_PER_PT = 96 / 72
#: A value that overflows shrinks by at least this much per try (points).
STEP_PT = 0.5
#: Slack when comparing laid-out sizes with a box (CSS px, about 0.03 mm).
EPSILON_PX = 0.1

#: Value boxes a layout must have (the window is a group of three, below).
VALUE_BOXES = (
    "code",
    "name",
    "name_kanji",
    "alias",
    "birth_date",
    "sex",
    "address",
    "recorded_on",
    "notice_date",
    "reference",
)
WINDOW_PARTS = ("postal", "address", "addressee")
STATIC_BOXES = (
    "sender",
    "title",
    "title_translation",
    "notice_ja",
    "notice_translation",
    "mayor",
    "contact",
)
#: Labels printed in Japanese only, with a colon (the footer).
FOOTER_LABELS = ("notice_date", "reference")
#: The notice's points, in order, after its first sentence.
NOTICE_POINTS = ("no_procedure", "keep_safe", "private_use", "change_request", "photo_id")

#: The register field behind each box of the layer (what a Rejection names).
FIELD_OF_BOX = {
    "window": "address",
    "window.postal": "postal_code",
    "window.address": "address",
    "window.addressee": "name",
    "code": "resident_code",
    "name": "name",
    "name_kanji": "name_kanji",
    "alias": "alias",
    "birth_date": "birth_date",
    "sex": "sex",
    "address": "address",
    "recorded_on": "recorded_on",
    "reference": "resident_id",
}
#: Which font list of the layout's [fonts] each field is printed in.
FONT_OF_FIELD = {"resident_code": "code", "old_code": "code"}

ALIGNS = ("left", "center", "right")
RULE_STYLES = ("solid", "dashed")


@dataclass(frozen=True)
class Mark:
    """What every page of a run carries besides the notice.

    ``sample``: 見本 / SAMPLE across the page (a preview, recorded nowhere);
    ``reissued``: 再交付 (Reissued) and the date, near the top (a reprint).
    """

    kind: str
    date: str = ""


# ---------------------------------------------------------------------------
# The layout table


@dataclass(frozen=True)
class Rect:
    """A rectangle on the page, in mm from the top-left corner."""

    top: float
    left: float
    width: float
    height: float

    @property
    def bottom(self) -> float:
        return self.top + self.height

    @property
    def right(self) -> float:
        return self.left + self.width

    def intersects(self, other: Rect) -> bool:
        """Whether the two overlap (sharing an edge is not overlapping)."""
        return (
            self.left < other.right
            and other.left < self.right
            and self.top < other.bottom
            and other.top < self.bottom
        )

    def to_pt(self, page_height_mm: float) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in PDF points, origin at the bottom-left of the page."""
        k = 72 / 25.4
        return (
            self.left * k,
            (page_height_mm - self.bottom) * k,
            self.right * k,
            (page_height_mm - self.top) * k,
        )


@dataclass(frozen=True)
class Fit:
    """How a value is set in its box."""

    font_size: float
    min_font_size: float
    max_lines: int
    line_height: float = 1.25
    align: str = "left"
    bold: bool = False
    font: str = "values"


@dataclass(frozen=True)
class TextArea:
    """A static text (or a label): where it goes and how it is set."""

    name: str
    rect: Rect
    font_size: float
    line_height: float = 1.25
    align: str = "left"
    bold: bool = False


@dataclass(frozen=True)
class ValueBox:
    """A variable value's box, and its label on the static page."""

    name: str
    rect: Rect
    fit: Fit
    label: TextArea | None = None


@dataclass(frozen=True)
class Window:
    """The envelope window: postal code, address and addressee, one under the other."""

    rect: Rect
    gap: float
    parts: Mapping[str, Fit]


@dataclass(frozen=True)
class Rule:
    """A horizontal line (mm)."""

    top: float
    left: float
    width: float
    weight: float
    style: str = "solid"
    translation_only: bool = False

    @property
    def rect(self) -> Rect:
        return Rect(self.top, self.left, self.width, self.weight)


@dataclass(frozen=True)
class Frame:
    """A rectangle drawn round something (the code)."""

    rect: Rect
    weight: float


@dataclass(frozen=True)
class FormLayout:
    """The whole form: page size, fonts, value boxes, window, static texts, lines."""

    source: str
    page_width: float
    page_height: float
    fonts: Mapping[str, tuple[str, ...]]
    window: Window
    boxes: Mapping[str, ValueBox]
    static: Mapping[str, TextArea]
    rules: tuple[Rule, ...] = ()
    frames: tuple[Frame, ...] = ()

    def for_profile(self, profile: Profile) -> FormLayout:
        """This layout with the profile's window rectangle, checked against it."""
        rect = Rect(
            profile.address_top,
            profile.address_left,
            profile.address_width,
            profile.address_height,
        )
        layout = replace(self, window=replace(self.window, rect=rect))
        layout.check()
        return layout

    def fit(self, key: str) -> Fit:
        """The fit of a layer box: ``name``, ``code``, ``window.address`` ..."""
        if key.startswith("window."):
            return self.window.parts[key.removeprefix("window.")]
        return self.boxes[key].fit

    def areas(self) -> Iterable[tuple[str, Rect]]:
        """Every rectangle printed on the page except the window's own."""
        for box in self.boxes.values():
            yield f"boxes.{box.name}", box.rect
            if box.label is not None:
                yield f"boxes.{box.name}.label", box.label.rect
        for area in self.static.values():
            yield f"static.{area.name}", area.rect
        for index, rule in enumerate(self.rules):
            yield f"rules[{index}]", rule.rect
        for index, frame in enumerate(self.frames):
            yield f"frames[{index}]", frame.rect

    def check(self) -> None:
        """Every box on the page; nothing but the window's three values in the window.

        The code, the name and every other box and line must lie outside the
        window's rectangle, or they would show through the envelope.
        """
        page = Rect(0, 0, self.page_width, self.page_height)
        window = self.window.rect
        for name, rect in [("boxes.window", window), *self.areas()]:
            if (
                rect.top < 0
                or rect.left < 0
                or rect.bottom > page.bottom + 1e-9
                or rect.right > page.right + 1e-9
            ):
                raise UsageError(
                    f"Layout {self.source}: {name} ({_describe(rect)}) is not inside the "
                    f"{self.page_width:g} x {self.page_height:g} mm page."
                )
        inside = [name for name, rect in self.areas() if rect.intersects(window)]
        if inside:
            raise UsageError(
                f"Layout {self.source}: {', '.join(inside)} would show through the envelope "
                f"window ({_describe(window)}, from the profile's [layout]); only the postal "
                "code, address and addressee may lie inside it. Move those boxes or the window."
            )


def _describe(rect: Rect) -> str:
    return f"top {rect.top:g}, left {rect.left:g}, {rect.width:g} x {rect.height:g} mm"


class _Table:
    """Reads one TOML table of the layout, with messages that say where it went wrong."""

    def __init__(self, source: str, where: str, data: Any, known: Iterable[str]) -> None:
        if not isinstance(data, dict):
            raise UsageError(f"Layout {source}: [{where}] must be a table.")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise UsageError(
                f"Layout {source}: [{where}] has unknown keys: {', '.join(unknown)} "
                f"(known: {', '.join(known)})."
            )
        self.source, self.where, self.data = source, where, data

    def fail(self, key: str, wanted: str) -> UsageError:
        return UsageError(f"Layout {self.source}: {self.where}.{key} must be {wanted}.")

    def number(self, key: str, low: float, high: float, default: float | None = None) -> float:
        value = self.data.get(key, default)
        if value is None:
            raise UsageError(f"Layout {self.source}: [{self.where}] lacks {key}.")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or not low <= value <= high
        ):
            raise self.fail(key, f"a number from {low:g} to {high:g}")
        return float(value)

    def positive(self, key: str, high: float, default: float | None = None) -> float:
        value = self.number(key, 0, high, default)
        if value <= 0:
            raise self.fail(key, f"a number above 0 and at most {high:g}")
        return value

    def whole(self, key: str, low: int, high: int) -> int:
        value = self.data.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"a whole number from {low} to {high}")
        return value

    def choice(self, key: str, choices: Sequence[str], default: str) -> str:
        value = self.data.get(key, default)
        if value not in choices:
            raise self.fail(key, "one of " + ", ".join(choices))
        return str(value)

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false")
        return value


_RECT_KEYS = ("top", "left", "width", "height")
_FIT_KEYS = ("font_size", "min_font_size", "max_lines", "line_height", "align", "bold", "font")


def _rect(table: _Table, default: Rect | None = None) -> Rect:
    values = [
        table.number(key, 0, 1000, None if default is None else getattr(default, key))
        for key in _RECT_KEYS
    ]
    if values[2] <= 0 or values[3] <= 0:
        raise table.fail("width and height", "above 0")
    return Rect(*values)


def _fit(table: _Table, fonts: Mapping[str, tuple[str, ...]]) -> Fit:
    size = table.positive("font_size", 200)
    smallest = table.positive("min_font_size", 200)
    if smallest > size:
        raise table.fail("min_font_size", f"at most its font_size ({size:g})")
    font = table.choice("font", sorted(fonts), "values")
    return Fit(
        font_size=size,
        min_font_size=smallest,
        max_lines=table.whole("max_lines", 1, 50),
        line_height=table.number("line_height", 0.8, 4, 1.25),
        align=table.choice("align", ALIGNS, "left"),
        bold=table.flag("bold"),
        font=font,
    )


def _check_holds_a_line(table: _Table, rect: Rect, fit: Fit) -> None:
    """A box must hold at least one line at its smallest size, or nothing ever fits."""
    line_mm = fit.min_font_size * fit.line_height * 25.4 / 72
    if line_mm > rect.height + 1e-6:
        raise table.fail(
            "height", f"at least {line_mm:.1f} mm (one line at {fit.min_font_size:g} pt)"
        )


def _text_area(table: _Table, name: str, default: Rect | None = None) -> TextArea:
    return TextArea(
        name=name,
        rect=_rect(table, default),
        font_size=table.positive("font_size", 200),
        line_height=table.number("line_height", 0.8, 4, 1.25),
        align=table.choice("align", ALIGNS, "left"),
        bold=table.flag("bold"),
    )


#: Static texts a layout may place; without them, where they go by default.
OPTIONAL_STATIC = ("mark",)
#: The reprint mark (再交付 and its date): top left, above the window.
DEFAULT_MARK = TextArea("mark", Rect(14, 18, 88, 6), font_size=10, bold=True)


def parse_layout(
    data: Mapping[str, Any],
    source: str = "<layout>",
    *,
    value_boxes: Sequence[str] = VALUE_BOXES,
    static_boxes: Sequence[str] = STATIC_BOXES,
) -> FormLayout:
    """A :class:`FormLayout` from the parsed TOML of a layout file, checked.

    ``value_boxes`` and ``static_boxes`` are the boxes and static texts the form
    must have (the single sheet's by default; the household notice has its own).
    """
    _Table(source, "layout", dict(data), ("page", "fonts", "boxes", "static", "rules", "frames"))
    page = _Table(source, "page", data.get("page", {}), ("width", "height"))
    width, height = page.positive("width", 1000), page.positive("height", 1000)
    fonts_data = data.get("fonts", {})
    _Table(source, "fonts", fonts_data, list(fonts_data))
    fonts: dict[str, tuple[str, ...]] = {}
    for key, families in fonts_data.items():
        if (
            not isinstance(families, list)
            or not families
            or not all(isinstance(f, str) and f.strip() for f in families)
        ):
            raise UsageError(f"Layout {source}: fonts.{key} must be a list of font family names.")
        fonts[key] = tuple(f.strip() for f in families)
    for needed in ("values", "code"):
        if needed not in fonts:
            raise UsageError(f"Layout {source}: [fonts] lacks {needed}.")

    boxes_data = data.get("boxes", {})
    _Table(source, "boxes", boxes_data, ("window", *value_boxes))
    missing = [name for name in ("window", *value_boxes) if name not in boxes_data]
    if missing:
        raise UsageError(f"Layout {source}: [boxes] lacks {', '.join(missing)}.")

    window_table = _Table(
        source, "boxes.window", boxes_data["window"], (*_RECT_KEYS, "gap", *WINDOW_PARTS)
    )
    window_rect = _rect(window_table)
    parts: dict[str, Fit] = {}
    for part in WINDOW_PARTS:
        if part not in boxes_data["window"]:
            raise UsageError(f"Layout {source}: [boxes.window] lacks [boxes.window.{part}].")
        part_table = _Table(source, f"boxes.window.{part}", boxes_data["window"][part], _FIT_KEYS)
        parts[part] = _fit(part_table, fonts)
        _check_holds_a_line(part_table, window_rect, parts[part])
    window = Window(window_rect, window_table.number("gap", 0, 50, 0), parts)

    boxes: dict[str, ValueBox] = {}
    for name in value_boxes:
        raw = boxes_data[name]
        table = _Table(source, f"boxes.{name}", raw, (*_RECT_KEYS, *_FIT_KEYS, "label"))
        rect = _rect(table)
        fit = _fit(table, fonts)
        _check_holds_a_line(table, rect, fit)
        label = None
        if "label" in raw:
            label_table = _Table(
                source,
                f"boxes.{name}.label",
                raw["label"],
                (*_RECT_KEYS, "font_size", "line_height", "align", "bold"),
            )
            # Unless told, the label's baseline is the value's (at its normal size).
            offset = max(0.0, fit.font_size - float(raw["label"].get("font_size", 0))) * 25.4 / 72
            label = _text_area(
                label_table, name, default=Rect(rect.top + offset, 0, 0, rect.height)
            )
        boxes[name] = ValueBox(name, rect, fit, label)

    static_data = data.get("static", {})
    _Table(source, "static", static_data, (*static_boxes, *OPTIONAL_STATIC))
    missing = [name for name in static_boxes if name not in static_data]
    if missing:
        raise UsageError(f"Layout {source}: [static] lacks {', '.join(missing)}.")
    static = {
        name: _text_area(
            _Table(
                source,
                f"static.{name}",
                static_data[name],
                (*_RECT_KEYS, "font_size", "line_height", "align", "bold"),
            ),
            name,
        )
        for name in (*static_boxes, *(n for n in OPTIONAL_STATIC if n in static_data))
    }
    static.setdefault("mark", DEFAULT_MARK)

    rules = []
    for index, raw in enumerate(_array(source, data, "rules")):
        table = _Table(
            source,
            f"rules[{index}]",
            raw,
            ("top", "left", "width", "weight", "style", "translation_only"),
        )
        rules.append(
            Rule(
                top=table.number("top", 0, 1000),
                left=table.number("left", 0, 1000),
                width=table.positive("width", 1000),
                weight=table.positive("weight", 10),
                style=table.choice("style", RULE_STYLES, "solid"),
                translation_only=table.flag("translation_only"),
            )
        )
    frames = []
    for index, raw in enumerate(_array(source, data, "frames")):
        table = _Table(source, f"frames[{index}]", raw, (*_RECT_KEYS, "weight"))
        frames.append(Frame(_rect(table), table.positive("weight", 10)))
    layout = FormLayout(
        source=source,
        page_width=width,
        page_height=height,
        fonts=fonts,
        window=window,
        boxes=boxes,
        static=static,
        rules=tuple(rules),
        frames=tuple(frames),
    )
    layout.check()
    return layout


def _array(source: str, data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise UsageError(f"Layout {source}: {key} must be an array of tables ([[{key}]]).")
    return value


def load_layout(path: Path | None = None, profile: Profile | None = None) -> FormLayout:
    """Read and check a layout file (default: the package's ``form/layout.toml``).

    With a profile, the window's rectangle is the profile's ``[layout]`` one,
    and the layout is checked against it.
    """
    path = Path(path) if path is not None else DEFAULT_LAYOUT
    layout = parse_layout(read_toml(path, "Layout"), str(path))
    return layout.for_profile(profile) if profile is not None else layout


def layout_css(layout: FormLayout, notices: Iterable[NoticeText] = ()) -> str:
    """The stylesheet that puts every element where the layout says."""

    def place(rect: Rect, with_height: bool = False) -> str:
        css = f"top: {rect.top:g}mm; left: {rect.left:g}mm; width: {rect.width:g}mm;"
        return css + (f" height: {rect.height:g}mm;" if with_height else "")

    def families(key: str) -> str:
        generic = "monospace" if key == "code" else "sans-serif"
        return ", ".join([*(f'"{f}"' for f in layout.fonts[key]), generic])

    def setting(size: float, line_height: float, align: str, bold: bool) -> str:
        css = f"font-size: {size:g}pt; line-height: {line_height:g}; text-align: {align};"
        return css + (" font-weight: bold;" if bold else "")

    rules = [
        f"@page {{ size: {layout.page_width:g}mm {layout.page_height:g}mm; }}",
        f".p {{ width: {layout.page_width:g}mm; height: {layout.page_height:g}mm; }}",
        f".win {{ {place(layout.window.rect)} font-family: {families('values')}; }}",
    ]
    for part, fit in layout.window.parts.items():
        gap = f" margin-top: {layout.window.gap:g}mm;" if part == "addressee" else ""
        rules.append(
            f".w-{part} {{ {setting(fit.font_size, fit.line_height, fit.align, fit.bold)}"
            f" font-family: {families(fit.font)};{gap} }}"
        )
    for box in layout.boxes.values():
        fit = box.fit
        rules.append(
            f".b-{box.name} {{ {place(box.rect)} "
            f"{setting(fit.font_size, fit.line_height, fit.align, fit.bold)} "
            f"font-family: {families(fit.font)}; }}"
        )
        if box.label is not None:
            label = box.label
            rules.append(
                f".l-{box.name} {{ {place(label.rect)} "
                f"{setting(label.font_size, label.line_height, label.align, label.bold)} }}"
            )
    for area in layout.static.values():
        rules.append(
            f".s-{area.name} {{ {place(area.rect)} "
            f"{setting(area.font_size, area.line_height, area.align, area.bold)} }}"
        )
    for index, rule in enumerate(layout.rules):
        rules.append(
            f".r-{index} {{ top: {rule.top:g}mm; left: {rule.left:g}mm; width: {rule.width:g}mm;"
            f" border-top-width: {rule.weight:g}mm; border-top-style: {rule.style}; }}"
        )
    for index, frame in enumerate(layout.frames):
        rules.append(
            f".fr-{index} {{ {place(frame.rect, True)} border-width: {frame.weight:g}mm; }}"
        )
    for notice in notices:
        rules.append(
            f'.lang-{notice.language} {{ font-family: "{notice.font}", "Noto Sans", sans-serif; }}'
        )
    return "\n".join(rules)


# ---------------------------------------------------------------------------
# Values: postal codes, address break points, glyphs


_POSTAL = re.compile(r"^〒?\s*([0-9]{3})\s*[-‐‑–—−ー]?\s*([0-9]{4})$")


def format_postal_code(value: str | None) -> str:
    """A postal code as printed: ``〒NNN-NNNN``, however it was entered; else as given.

    >>> format_postal_code("487-0802"), format_postal_code("〒487-0802")
    ('〒487-0802', '〒487-0802')
    >>> format_postal_code("Box 12"), format_postal_code(None)
    ('Box 12', '')
    """
    if value is None:
        return ""
    text = str(value).strip()
    match = _POSTAL.match(unicodedata.normalize("NFKC", text))
    if match is None:
        return text
    return f"〒{match.group(1)}-{match.group(2)}"


_PREFECTURE = re.compile(r"^(北海道|東京都|京都府|大阪府|[^\s0-9０-９]{2,3}?県)")
_COUNTY = re.compile(r"^([^\s0-9０-９]{1,5}?郡)")
_MUNICIPALITY = re.compile(r"^([^\s0-9０-９]{1,6}?[市区町村])")
_WARD = re.compile(r"^([^\s0-9０-９]{1,4}?区)")
_DIGITS = "0-9０-９"
_KANJI_NUMBER = "一二三四五六七八九十百"
#: A number with what follows it in an address: 2-20-11, 1丁目, 3番, 4号, 307号室, 5F.
_ADDRESS_TOKEN = re.compile(
    rf"(?P<space>\s+)"
    rf"|(?P<number>(?:[{_DIGITS}]+(?:[-‐‑–—−－ー][{_DIGITS}]+)*|[{_KANJI_NUMBER}]+(?=丁目))"
    rf"(?:丁目|番地の?|番|号室|号棟|号館|号|階|室|棟|[FfＦ])?)"
    rf"|(?P<word>[^\s{_DIGITS}]+?(?=\s|[{_DIGITS}]|[{_KANJI_NUMBER}]+丁目|$))"
)


def _split_place(word: str) -> list[str]:
    """The first word of an address split after its prefecture, county, city and ward."""
    parts = []
    for pattern in (_PREFECTURE, _COUNTY):
        match = pattern.match(word)
        if match and match.end() < len(word):
            parts.append(match.group(1))
            word = word[match.end() :]
    match = _MUNICIPALITY.match(word)
    if match:
        parts.append(match.group(1))
        word = word[match.end() :]
        ward = _WARD.match(word) if parts[-1].endswith("市") else None
        if ward and ward.end() < len(word):
            parts.append(ward.group(1))
            word = word[ward.end() :]
    return [*parts, word] if word else parts


def _is_punctuation(text: str) -> bool:
    return all(unicodedata.category(ch).startswith("P") for ch in text)


def address_segments(address: str) -> list[str]:
    """An address cut where a line may break: between its parts, never inside one.

    Parts are: the prefecture, county, city and ward; each number with its
    unit (``2-20-11``, ``3番``, ``4号``, ``307号室``, ``一丁目``); each run of
    other text (``本町``, ``サンライズマンション``); and spaces, kept as their
    own parts. Joined, the parts give the address back unchanged.

    >>> address_segments("東京都千代田区九段南1丁目2番1号")
    ['東京都', '千代田区', '九段南', '1丁目', '2番', '1号']
    >>> address_segments("名古屋市中区栄三丁目5-12 コーポ栄 2F")
    ['名古屋市', '中区', '栄', '三丁目', '5-12', ' ', 'コーポ栄', ' ', '2F']
    """
    segments: list[str] = []
    first_word = True
    for match in _ADDRESS_TOKEN.finditer(address):
        text = match.group(0)
        if match.lastgroup == "word" and first_word:
            segments.extend(_split_place(text))
        elif _is_punctuation(text) and segments and not segments[-1].isspace():
            segments[-1] += text  # "3," and "1-1、" stay whole: no line starts with a comma
        else:
            segments.append(text)
        if match.lastgroup != "space":
            first_word = False
    if "".join(segments) != address:  # never lose a character, whatever the input
        return [address]
    return segments


WORD_JOINER = "\u2060"
ZERO_WIDTH_SPACE = "\u200b"


def address_markup(address: str, breakable: Collection[int] = (), anywhere: bool = False) -> str:
    """The address as laid out: no line break inside a part, one allowed between parts.

    WeasyPrint has no ``word-break: keep-all``, and Japanese text may break
    between any two characters. So the characters of each part are joined by
    WORD JOINERs (U+2060, invisible, no break on either side), and a ZERO WIDTH
    SPACE (U+200B) between two parts is the break opportunity (a space is one
    already). This keeps the address one text run, which lays out faster than
    one ``white-space: nowrap`` element per part. ``breakable`` are the parts
    (counted without spaces) that may break inside, because they are longer
    than a line; with ``anywhere`` the address is returned as it is (the last
    resort). Neither character shows in the PDF's text.

    >>> address_markup("さくら市1-2 A") == "さ\u2060く\u2060ら\u2060市\u200b1-2 A"
    True
    """
    if anywhere:
        return address
    out: list[str] = []
    previous_space = True
    index = 0
    for segment in address_segments(address):
        if segment.isspace():
            out.append(segment)
            previous_space = True
            continue
        if not previous_space:
            out.append(ZERO_WIDTH_SPACE)
        out.append(segment if index in breakable else _unbreakable(segment))
        previous_space = False
        index += 1
    return "".join(out)


def _unbreakable(part: str) -> str:
    """``part`` with a WORD JOINER wherever a line could break inside it.

    Between two ASCII letters, digits or hyphens no line breaks anyway
    (``2-20-11``, ``5F``), so none is needed there.
    """
    out = [part[:1]]
    for before, after in pairwise(part):
        if not (_NO_BREAK_ASCII.match(before) and _NO_BREAK_ASCII.match(after)):
            out.append(WORD_JOINER)
        out.append(after)
    return "".join(out)


_NO_BREAK_ASCII = re.compile(r"[0-9A-Za-z-]")


def _unjoined(text: str) -> str:
    """Text without the break controls :func:`address_markup` adds, nor spaces."""
    return "".join(
        ch for ch in text if ch not in (WORD_JOINER, ZERO_WIDTH_SPACE) and not ch.isspace()
    )


def _is_private_use(char: str) -> bool:
    return unicodedata.category(char) == "Co"


def is_variation_selector(code: int) -> bool:
    """Whether code point ``code`` is a variation selector (standard or ideographic)."""
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF


class _FontFace(NamedTuple):
    cmap: frozenset[int]
    #: variation selector -> base characters with a glyph for that sequence
    sequences: Mapping[int, frozenset[int]]


@cache
def _font_face(family: str) -> _FontFace | None:
    """The characters (and variation sequences) of the file fontconfig uses for ``family``."""
    from fontTools.ttLib import TTFont

    from rrnet_cli.doctor import font_file

    found = font_file(family)
    if found is None:
        return None
    path, index = found
    with TTFont(path, fontNumber=index, lazy=True) as font:
        cmap = frozenset((font.getBestCmap() or {}).keys())
        sequences: dict[int, frozenset[int]] = {}
        for table in font["cmap"].tables:
            if table.format == 14:
                for selector, pairs in table.uvsDict.items():
                    sequences[selector] = frozenset(base for base, _glyph in pairs)
    return _FontFace(cmap, sequences)


class GlyphCheck:
    """Whether every character of a value can be printed in its box's fonts.

    The fonts are the families the layout lists for the box (``[fonts]``), each
    resolved by fontconfig to a file, whose character map fontTools reads.
    """

    def __init__(self, fonts: Mapping[str, tuple[str, ...]]) -> None:
        self.faces: dict[str, list[_FontFace]] = {}
        for key, families in fonts.items():
            faces = [_font_face(family) for family in families]
            if faces[0] is None:
                raise UsageError(
                    f"The font {families[0]!r} of the form's {key} is not installed; "
                    "run rrnet doctor."
                )
            self.faces[key] = [face for face in faces if face is not None]

    def problem(self, text: str, font: str = "values") -> str | None:
        """Why ``text`` cannot be printed in the ``font`` list, or None.

        The reason names the character by its code point and script (never the
        value around it): ``character U+0645 (Arabic) not in any of the form's
        fonts (外字?)``.
        """
        faces = self.faces[font]
        previous = 0
        for char in text:
            code = ord(char)
            category = unicodedata.category(char)
            if _is_private_use(char):
                return f"private-use character {code_point(char)} (外字)"
            if category == "Cc" and not char.isspace():
                return f"control character {code_point(char)}"
            if is_variation_selector(code):
                if not any(previous in face.sequences.get(code, ()) for face in faces):
                    return (
                        f"character {code_point(chr(previous))} with variation selector "
                        f"{code_point(char)} not in any of the form's fonts (外字?)"
                    )
                continue
            previous = code
            if char.isspace() or category == "Cf":
                continue
            if not self.covers(code, font):
                return (
                    f"character {code_point(char)} ({script_of(char)}) not in any of the "
                    "form's fonts (外字?)"
                )
        return None

    def covers(self, code: int, font: str = "values") -> bool:
        """Whether one of the ``font`` list's fonts has a glyph for code point ``code``."""
        return any(code in face.cmap for face in self.faces[font])


def code_point(char: str) -> str:
    """``U+0645``: how a character is named in a message (its value is never shown)."""
    return f"U+{ord(char):04X}"


def script_of(char: str) -> str:
    """The Unicode script a character is written in, by name: ``Arabic``, ``Linear B``.

    >>> script_of("م"), script_of("\U00010000"), script_of("漢")
    ('Arabic', 'Linear B', 'Han')
    """
    from fontTools import unicodedata as font_unicodedata

    return str(font_unicodedata.script_name(font_unicodedata.script(char)))


# ---------------------------------------------------------------------------
# The value layer


@dataclass(frozen=True)
class Rejection:
    """A sheet that was not printed: which resident, which field, why (no personal data)."""

    resident_id: str
    field: str
    reason: str


class Layer(NamedTuple):
    """One batch's value layer."""

    #: the PDF, one page per rendered sheet (b"" when none was)
    pdf: bytes
    #: the sheets left out, and why
    rejections: list[Rejection]
    #: indexes (into the batch) of the sheets rendered, in page order
    rendered: list[int]


def sheet_values(sheet: Mapping[str, Any]) -> dict[str, str]:
    """A sheet (as ``notify.build_sheets`` makes them) as the text of each field.

    >>> sheet_values({"resident_id": "1", "name": "A", "postal_code": "4870802",
    ...     "address": "X", "code": "12345678901",
    ...     "fields": [{"key": "sex", "value": "男"}]})["postal_code"]
    '〒487-0802'
    """
    fields = {f["key"]: f["value"] for f in sheet.get("fields", ())}

    def text(value: Any) -> str:
        return "" if value is None else str(value)

    groups = sheet.get("code_groups")
    if not groups:
        code = text(sheet.get("code"))
        groups = [code[:4], code[4:8], code[8:]] if len(code) == 11 else [code]
    return {
        "postal_code": format_postal_code(sheet.get("postal_code")),
        "address": text(sheet.get("address", fields.get("address"))),
        "name": text(sheet.get("name", fields.get("name"))),
        # Who the envelope names: the registered name, or the alias if the profile says so.
        "addressee": text(sheet.get("addressee") or sheet.get("name", fields.get("name"))),
        "name_kanji": text(fields.get("name_kanji")),
        "alias": text(fields.get("alias")),
        "birth_date": text(fields.get("birth_date")),
        "sex": text(fields.get("sex")),
        "recorded_on": text(fields.get("recorded_on")),
        "resident_code": " ".join(text(g) for g in groups),
        "resident_id": text(sheet.get("resident_id")),
    }


@dataclass
class _Setting:
    """How one sheet's values are set: sizes that differ from normal, last-resort breaks."""

    values: dict[str, str]
    sizes: dict[str, float] = field(default_factory=dict)
    #: values that may break anywhere (the last resort)
    anywhere: set[str] = field(default_factory=set)
    #: address parts (by index) that may break inside, being longer than a line
    breakable: dict[str, set[int]] = field(default_factory=dict)
    #: box -> which of the page's people the value is of (household pages)
    owners: dict[str, int] = field(default_factory=dict)

    def allow_breaks(self, key: str, parts: Sequence[int]) -> bool:
        """Let the value break inside a word next time; False if it already may.

        A code is never broken: the sheet's ``code``, a household member's
        ``m3-code``, the change notice's ``old_code`` (any box named ``code`` or
        ending in ``-code`` or ``_code``). It prints whole or not at all.
        """
        if key == "code" or key.endswith(("-code", "_code")):
            return False
        new = set(parts) - self.breakable.get(key, set())
        if new:
            self.breakable.setdefault(key, set()).update(new)
            return True
        if key in self.anywhere:
            return False
        self.anywhere.add(key)
        return True


class _Overflow(NamedTuple):
    key: str
    #: "lines", "width" or "height"
    kind: str
    #: the factor the font size should be multiplied by, as far as the layout tells
    factor: float
    #: unbreakable address parts (by index) wider than the box
    wide_parts: tuple[int, ...] = ()


def _line_boxes(box: Any) -> list[Any]:
    from weasyprint.formatting_structure.boxes import LineBox

    lines, stack = [], [box]
    while stack:
        current = stack.pop()
        for child in reversed(getattr(current, "children", ())):
            if isinstance(child, LineBox):
                lines.append(child)
            else:
                stack.append(child)
    lines.sort(key=lambda line: line.position_y)
    return lines


def _tagged_boxes(page: Any, attribute: str) -> dict[str, Any]:
    """The laid-out boxes of a page's elements that carry ``attribute`` (data-f, data-s)."""
    found: dict[str, Any] = {}
    stack = [page._page_box]
    while stack:
        box = stack.pop()
        element = getattr(box, "element", None)
        name = element.get(attribute) if element is not None else None
        if name is not None and name not in found:
            found[name] = box
        if name is None or name == "window":
            stack.extend(getattr(box, "children", ()))
    return found


def _overflow(
    key: str, box: Any, width_px: float, height_px: float, max_lines: int | None
) -> _Overflow | None:
    """How the laid-out ``box`` overflows a box of this size and line limit, if it does.

    Measured on WeasyPrint's box tree: the box's line boxes (how many, how wide)
    and its laid-out height (the box has no set height, so it is its content's).
    """
    lines = _line_boxes(box)
    widest = max((line.width for line in lines), default=0.0)
    if widest > width_px + EPSILON_PX:
        return _Overflow(key, "width", width_px / widest, _wide_parts(box, lines, width_px))
    if max_lines is not None and len(lines) > max_lines:
        total = sum(line.width for line in lines) or 1.0
        return _Overflow(key, "lines", max_lines * width_px / total)
    height = box.height
    if height > height_px + EPSILON_PX:
        return _Overflow(key, "height", height_px / height)
    return None


def _line_text(line: Any) -> str:
    texts, stack = [], [line]
    while stack:
        box = stack.pop()
        if hasattr(box, "text"):
            texts.append(box.text)
        stack.extend(reversed(getattr(box, "children", ())))
    return "".join(texts)


def _wide_parts(box: Any, lines: list[Any], width_px: float) -> tuple[int, ...]:
    """Indexes of the address parts that make a line wider than the box.

    A line may break between any two parts, so a line that is too wide holds a
    single part; it is found by its text.
    """
    element = getattr(box, "element", None)
    if element is None or element.get("data-f") not in ("address", "window.address"):
        return ()
    parts = [_unjoined(segment) for segment in address_segments(_unjoined_keep_spaces(element))]
    parts = [part for part in parts if part]
    wide = set()
    for line in lines:
        if line.width > width_px + EPSILON_PX:
            text = _unjoined(_line_text(line))
            if text in parts:
                wide.add(parts.index(text))
    return tuple(sorted(wide))


def _unjoined_keep_spaces(element: Any) -> str:
    """The text of an element without the break controls (its original value)."""
    text = "".join(element.itertext())
    return "".join(ch for ch in text if ch not in (WORD_JOINER, ZERO_WIDTH_SPACE))


def _floor_step(size: float) -> float:
    return math.floor(size / STEP_PT + 1e-9) * STEP_PT


def _environment(templates: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


class FormRenderer:
    """Lays out batches of value layers; build one per process and reuse it.

    One FontConfiguration, the stylesheets parsed once, the restricted URL
    fetcher of :mod:`rrnet_cli.render`, and the glyph maps of the form's fonts.
    """

    def __init__(
        self,
        profile: Profile,
        layout: FormLayout | None = None,
        templates: Path = TEMPLATES,
        *,
        max_rounds: int = 60,
    ) -> None:
        from weasyprint import CSS
        from weasyprint.text.fonts import FontConfiguration

        from rrnet_cli.render import make_fetcher

        self.templates = Path(templates)
        self.profile = profile
        self.layout = (layout or load_layout(profile.layout_file)).for_profile(profile)
        self.max_rounds = max_rounds
        self.env = _environment(self.templates)
        self.template = self.env.get_template(LAYER_TEMPLATE)
        self.font_config = FontConfiguration()
        self.fetcher = make_fetcher(self.templates)
        self.stylesheets = [
            CSS(
                filename=str(self.templates / FORM_CSS),
                font_config=self.font_config,
                url_fetcher=self.fetcher,
            ),
            CSS(
                string=layout_css(self.layout),
                font_config=self.font_config,
                url_fetcher=self.fetcher,
            ),
        ]
        self.glyphs = GlyphCheck(self.layout.fonts)
        #: layout rounds of the last render_layer call (1 when every value fit at once)
        self.rounds = 0

    # -- HTML ---------------------------------------------------------------

    def _item(self, setting: _Setting, key: str, content: Any, classes: str = "") -> dict[str, Any]:
        size = setting.sizes.get(key)
        if key in setting.anywhere or key in setting.breakable:
            classes += " any"
        return {
            "box": key.removeprefix("window."),
            "key": key,
            "content": content,
            "classes": classes,
            "size": f"{size:g}" if size is not None else None,
        }

    @staticmethod
    def _address(setting: _Setting, key: str) -> str:
        return address_markup(
            setting.values["address"],
            setting.breakable.get(key, ()),
            anywhere=key in setting.anywhere,
        )

    def _window_items(self, setting: _Setting) -> list[dict[str, Any]]:
        """The envelope window: postal code, address and addressee (様)."""
        values = setting.values
        window = []
        if values["postal_code"]:
            window.append(self._item(setting, "window.postal", values["postal_code"]))
        window.append(
            self._item(setting, "window.address", self._address(setting, "window.address"))
        )
        window.append(self._item(setting, "window.addressee", f"{values['addressee']} 様"))
        return window

    def _page_data(self, setting: _Setting) -> dict[str, Any]:
        values = setting.values
        window = self._window_items(setting)
        code = values["resident_code"]
        items = [
            self._item(setting, "code", code, " code"),
            self._item(setting, "name", values["name"]),
        ]
        for key in ("name_kanji", "alias"):
            if values[key]:
                items.append(self._item(setting, key, values[key]))
        items += [
            self._item(setting, "birth_date", values["birth_date"]),
            self._item(setting, "sex", values["sex"]),
            self._item(setting, "address", self._address(setting, "address")),
            self._item(setting, "recorded_on", values["recorded_on"]),
            self._item(setting, "reference", values["resident_id"]),
        ]
        return {"window": window, "boxes": items}

    def html(self, settings: Sequence[_Setting]) -> str:
        return self.template.render(sheets=[self._page_data(s) for s in settings])

    def _document(self, settings: Sequence[_Setting]) -> Any:
        from weasyprint import HTML

        html = HTML(
            string=self.html(settings),
            base_url=str(self.templates) + "/",
            url_fetcher=self.fetcher,
        )
        document = html.render(stylesheets=self.stylesheets, font_config=self.font_config)
        if len(document.pages) != len(settings):
            raise RrnetError(
                f"The form's layer gave {len(document.pages)} pages for {len(settings)} sheets; "
                "check the [page] size of the layout."
            )
        return document

    # -- fitting ------------------------------------------------------------

    def overflows(self, page: Any, setting: _Setting) -> list[_Overflow]:
        """Every value of a laid-out page that does not fit its box."""
        layout = self.layout
        found = _tagged_boxes(page, "data-f")
        problems = []
        window = layout.window
        width = window.rect.width * PX_PER_MM
        for part, fit in window.parts.items():
            key = f"window.{part}"
            if key in found:
                problem = _overflow(key, found[key], width, math.inf, fit.max_lines)
                if problem is not None:
                    problems.append(problem)
        if not problems:
            height = window.rect.height * PX_PER_MM
            problem = _overflow("window", found["window"], math.inf, height, None)
            if problem is not None:
                problems.append(problem)
        for name, box in layout.boxes.items():
            if name in found:
                rect = box.rect
                problem = _overflow(
                    name,
                    found[name],
                    rect.width * PX_PER_MM,
                    rect.height * PX_PER_MM,
                    box.fit.max_lines,
                )
                if problem is not None:
                    problems.append(problem)
        return problems

    def _window_part_to_shrink(self, setting: _Setting, page: Any) -> str | None:
        """The window part to make smaller when the window as a whole is too tall."""
        found = _tagged_boxes(page, "data-f")
        candidates = [
            (found[f"window.{part}"].height, f"window.{part}")
            for part in ("address", "addressee", "postal")
            if f"window.{part}" in found
            and setting.sizes.get(f"window.{part}", self.layout.window.parts[part].font_size)
            > self.layout.window.parts[part].min_font_size
        ]
        return max(candidates)[1] if candidates else None

    def _adjust(self, setting: _Setting, problems: list[_Overflow], page: Any) -> list[str]:
        """Set the next try's sizes; return the boxes that cannot be made to fit.

        A value shrinks (by the factor its measurement calls for, at least one
        step) down to its smallest size. Words are broken only when no allowed
        size keeps them whole: a word wider than the box even at the smallest
        size, or a value that overflows at the smallest size.
        """
        failed = []
        for problem in problems:
            key = problem.key
            if key == "window":
                part = self._window_part_to_shrink(setting, page)
                if part is None:
                    if not setting.allow_breaks("window.address", ()):
                        failed.append(key)
                    continue
                key = part
            fit = self.layout.fit(key)
            size = setting.sizes.get(key, fit.font_size)
            at_smallest = size <= fit.min_font_size + 1e-9
            wanted = _floor_step(size * problem.factor)
            too_wide = problem.kind == "width" and wanted < fit.min_font_size
            if (at_smallest or too_wide) and setting.allow_breaks(key, problem.wide_parts):
                continue
            if at_smallest:
                failed.append(key)
                continue
            setting.sizes[key] = max(fit.min_font_size, min(size - STEP_PT, wanted))
        return failed

    def _reason(self, key: str, setting: _Setting) -> str:
        if key == "window":
            rect = self.layout.window.rect
            return (
                f"postal code, address and addressee do not fit the envelope window "
                f"({rect.width:g} x {rect.height:g} mm) even at their smallest sizes"
            )
        fit = self.layout.fit(key)
        lines = "1 line" if fit.max_lines == 1 else f"{fit.max_lines} lines"
        return f"too long for its box ({key}: {lines}) even at {fit.min_font_size:g} pt"

    def fit_pages(
        self, settings: Mapping[int, _Setting]
    ) -> tuple[dict[int, Any], list[Any], list[tuple[int, str]]]:
        """Lay out pages until every value fits its box, or cannot.

        All pages are laid out at normal sizes; the pages with a value that
        overflows its box are laid out again (only those) with smaller sizes
        for those values until they fit or reach their smallest size. Returns
        the laid-out pages that fit (by index), the documents they belong to,
        and ``(index, box)`` for every box that cannot fit (``"sheet"`` when
        the rounds ran out, which shrinking in steps makes impossible).
        """
        pages: dict[int, Any] = {}
        documents: list[Any] = []
        failures: list[tuple[int, str]] = []
        pending = list(settings)
        self.rounds = 0
        while pending:
            self.rounds += 1
            if self.rounds > self.max_rounds:
                failures += [(index, "sheet") for index in pending]
                break
            document = self._document([settings[i] for i in pending])
            documents.append(document)
            retry = []
            for index, page in zip(pending, document.pages, strict=True):
                setting = settings[index]
                problems = self.overflows(page, setting)
                if not problems:
                    pages[index] = page
                    continue
                failed = self._adjust(setting, problems, page)
                if failed:
                    failures += [(index, key) for key in failed]
                else:
                    retry.append(index)
            pending = retry
        return pages, documents, failures

    def failure_reason(self, key: str, setting: _Setting) -> str:
        """Why box ``key`` could not be printed (``"sheet"``: the rounds ran out)."""
        if key == "sheet":
            return f"values did not fit after {self.max_rounds} layouts"
        return self._reason(key, setting)

    def values_of(self, sheet: Mapping[str, Any]) -> dict[str, str]:
        """The text of each field of a sheet (:func:`sheet_values`; a form may add its own)."""
        return sheet_values(sheet)

    def render_layer(self, sheets: Sequence[Mapping[str, Any]]) -> Layer:
        """The value layer of a batch: one page per sheet that fits, in order."""
        rejections: list[tuple[int, Rejection]] = []
        settings: dict[int, _Setting] = {}
        for index, sheet in enumerate(sheets):
            values = self.values_of(sheet)
            bad = [
                Rejection(values["resident_id"], name, reason)
                for name, text in values.items()
                # The addressee repeats the name (or the alias): reported once, there.
                if name != "addressee"
                and (reason := self.glyphs.problem(text, FONT_OF_FIELD.get(name, "values")))
            ]
            if bad:
                rejections += [(index, r) for r in bad]
            else:
                settings[index] = _Setting(values)
        pages, documents, failures = self.fit_pages(settings)
        rejections += [
            (
                index,
                Rejection(
                    settings[index].values["resident_id"],
                    FIELD_OF_BOX.get(key, key),
                    self.failure_reason(key, settings[index]),
                ),
            )
            for index, key in failures
        ]
        rendered = sorted(pages)
        rejections = _one_per_field(rejections)
        if not rendered:
            return Layer(b"", [r for _, r in rejections], [])
        pdf = documents[0].copy([pages[i] for i in rendered]).write_pdf()
        return Layer(pdf, [r for _, r in rejections], rendered)

    def render_composed(
        self, sheets: Sequence[Mapping[str, Any]], static_pages: Mapping[str, bytes]
    ) -> Layer:
        """:meth:`render_layer`, each page composed over its language's static page."""
        layer = self.render_layer(sheets)
        languages = [str(sheets[i]["language"]) for i in layer.rendered]
        return layer._replace(pdf=compose(layer.pdf, static_pages, languages))


def _one_per_field(rejections: list[tuple[int, Rejection]]) -> list[tuple[int, Rejection]]:
    """The rejections in page order, one per resident and field (the window and the row)."""
    rejections = sorted(rejections, key=lambda item: item[0])
    seen = set()
    unique = []
    for index, rejection in rejections:
        if (rejection.resident_id, rejection.field) not in seen:
            seen.add((rejection.resident_id, rejection.field))
            unique.append((index, rejection))
    return unique


# ---------------------------------------------------------------------------
# PDF post-processing: smaller fonts, per-page font resources


def _cids_of_widths(widths: Any) -> set[int]:
    """The CIDs a CIDFont's /W array lists: ``[c [w ...] c_first c_last w ...]``."""
    import pikepdf

    cids: set[int] = set()
    items = list(widths)
    index = 0
    while index + 1 < len(items):
        first = int(items[index])
        if isinstance(items[index + 1], pikepdf.Array):
            cids.update(range(first, first + len(items[index + 1])))
            index += 2
        else:
            cids.update(range(first, int(items[index + 1]) + 1))
            index += 3
    return cids


def _compact_cff(program: bytes, cids: Collection[int]) -> bytes | None:
    """A CID-keyed CFF font program holding only the glyphs of ``cids``, or None.

    ``program`` is an OpenType (CFF) font whose glyph numbers are its CIDs, as
    WeasyPrint embeds Noto Sans CJK. The result is a bare CFF in which each glyph
    kept is still found under its CID, through the CFF charset.
    """
    from fontTools.cffLib import CFFFontSet
    from fontTools.ttLib import TTFont

    with TTFont(io.BytesIO(program), lazy=True, recalcBBoxes=False) as font:
        if "CFF " not in font.reader:
            return None
        cff = CFFFontSet()
        cff.decompile(io.BytesIO(font.reader["CFF "]), font)
        top = cff[cff.fontNames[0]]
        strings = top.CharStrings
        if not hasattr(top, "ROS") or not strings.charStringsAreIndexed:
            return None  # not CID-keyed: a glyph's number would change
        keep = {".notdef", *(f"cid{cid:05d}" for cid in cids)}
        charset = top.charset
        indices = [index for index, name in enumerate(charset) if name in keep]
        index = strings.charStringsIndex
        index.items = [index[i] for i in indices]
        del index.file, index.offsets
        strings.charStrings = {charset[i]: new for new, i in enumerate(indices)}
        if hasattr(top, "FDSelect"):
            select = top.FDSelect
            select.format = None
            select.gidArray = [select.gidArray[i] for i in indices]
        top.charset = [charset[i] for i in indices]
        top.numGlyphs = len(indices)
        out = io.BytesIO()
        cff.compile(out, font)
    return out.getvalue()


def compact_fonts(pdf: Any) -> int:
    """Shrink the embedded CJK fonts of ``pdf`` (a pikepdf.Pdf); return how many.

    WeasyPrint subsets fonts keeping each glyph's number, so a subset of Noto
    Sans CJK still carries empty slots up to the highest kanji it uses (about
    160 KB compressed per font and file, whatever the text). Its fonts are
    CID-keyed CFF (Adobe-Identity-0, CID = glyph number), so the glyphs the
    text uses (those in the font's /W widths) can be kept alone, each still
    under its CID in the CFF charset: the font is embedded as a bare CFF
    (``/FontFile3 /CIDFontType0C``), and the text of the pages is unchanged.
    Typically 240 KB -> 25 KB for a static page.
    """
    import pikepdf

    done = 0
    for obj in pdf.objects:
        if not isinstance(obj, pikepdf.Dictionary) or obj.get("/Subtype") != "/CIDFontType0":
            continue
        descriptor = obj.get("/FontDescriptor")
        if descriptor is None:
            continue
        program = descriptor.get("/FontFile3")
        if program is None or program.get("/Subtype") != "/OpenType" or "/W" not in obj:
            continue
        data = _compact_cff(program.read_bytes(), _cids_of_widths(obj.W))
        if data is None:
            continue
        descriptor.FontFile3 = pikepdf.Stream(pdf, data, Subtype=pikepdf.Name.CIDFontType0C)
        if "/CIDToGIDMap" in obj:
            del obj["/CIDToGIDMap"]
        done += 1
    return done


def _own_fonts(pdf: Any) -> None:
    """Give each page a resource dictionary naming only the fonts its text uses.

    WeasyPrint gives every page of a document the same resources, so the
    static page of one language would carry the fonts of all eleven into
    every file it is copied into.
    """
    import pikepdf

    for page in pdf.pages:
        used = {
            str(instruction.operands[0])
            for instruction in pikepdf.parse_content_stream(page, "Tf")
            if isinstance(instruction, pikepdf.ContentStreamInstruction) and instruction.operands
        }
        resources = pikepdf.Dictionary(dict(page.Resources.items()))
        fonts = page.Resources.get("/Font", pikepdf.Dictionary())
        resources.Font = pikepdf.Dictionary({name: fonts[name] for name in used if name in fonts})
        page.Resources = pdf.make_indirect(resources)


def _save(pdf: Any) -> bytes:
    import pikepdf

    buffer = io.BytesIO()
    pdf.save(
        buffer,
        compress_streams=True,
        object_stream_mode=pikepdf.ObjectStreamMode.generate,
    )
    return buffer.getvalue()


# ---------------------------------------------------------------------------
# Static pages


class StaticPages(dict[str, bytes]):
    """One single-page PDF per language, and the same pages in one PDF.

    The mapping is what :func:`render_static_pages` promises; ``combined`` (one
    page per language, in ``order``) shares its fonts between languages, and
    :func:`compose` copies from it, so that a file mixing languages stores the
    Japanese font once.
    """

    def __init__(self, pages: Mapping[str, bytes], combined: bytes, order: Sequence[str]) -> None:
        super().__init__(pages)
        self.combined = combined
        self.order = list(order)


def _static_problems(page: Any, layout: FormLayout) -> list[str]:
    """Static texts of a laid-out page that overflow their areas, described."""
    found = _tagged_boxes(page, "data-s")
    areas: dict[str, tuple[Rect, int | None]] = {
        name: (area.rect, None) for name, area in layout.static.items()
    }
    for box in layout.boxes.values():
        if box.label is not None:
            areas[f"label.{box.name}"] = (box.label.rect, None)
    if "notice_date" in layout.boxes:
        notice_date = layout.boxes["notice_date"]
        areas["notice_date"] = (notice_date.rect, notice_date.fit.max_lines)
    problems = []
    for name, (rect, max_lines) in areas.items():
        if name not in found:
            continue
        problem = _overflow(
            name, found[name], rect.width * PX_PER_MM, rect.height * PX_PER_MM, max_lines
        )
        if problem is None:
            continue
        if problem.kind == "height":
            needed = found[name].height / PX_PER_MM
            problems.append(f"{name} needs {needed:.1f} mm, its area is {rect.height:.1f} mm high")
        elif problem.kind == "width":
            problems.append(f"{name} has a line wider than its area ({rect.width:g} mm)")
        else:
            problems.append(f"{name} takes more than {max_lines} line(s)")
    return problems


def render_static_pages(
    profile: Profile,
    notices: Mapping[str, NoticeText],
    languages: Iterable[str],
    notice_date_text: str,
    layout: FormLayout | None = None,
    templates: Path = TEMPLATES,
    mark: Mark | None = None,
    *,
    template_name: str = STATIC_TEMPLATE,
    points: Sequence[str] | Sequence[tuple[str, str]] = NOTICE_POINTS,
    context: Mapping[str, Any] | None = None,
) -> StaticPages:
    """One single-page PDF per language: the part of the sheet that is the same for all.

    Japanese alone for ``ja``; Japanese and the translation for the others.
    The date of notice (the same for the whole run) is set here, in its box.
    A text that overflows its area (a notice too long for the layout) is an
    RrnetError naming the language. A form laid out like the sheet (the change
    notice) gives its own ``template_name``, notice ``points`` and ``context``.
    """
    layout = (layout or load_layout(profile.layout_file)).for_profile(profile)
    wanted = list(dict.fromkeys(languages))
    unknown = [language for language in wanted if language not in notices]
    if unknown:
        raise UsageError(f"No notice text for {', '.join(unknown)}.")
    template = _environment(Path(templates)).get_template(template_name)

    def html(languages: list[str]) -> str:
        return template.render(
            notices=[notices[language] for language in languages],
            ja=notices["ja"],
            profile=profile,
            sender_postal_code=format_postal_code(profile.postal_code),
            notice_date=notice_date_text,
            frames=layout.frames,
            rules=layout.rules,
            labels=[name for name, box in layout.boxes.items() if box.label is not None],
            footer_labels=FOOTER_LABELS,
            points=points,
            mark=mark,
            **(context or {}),
        )

    return static_page_set(layout, notices, wanted, html, templates)


def static_page_set(
    layout: FormLayout,
    notices: Mapping[str, NoticeText],
    keys: list[str],
    html: Callable[[list[str]], str],
    templates: Path = TEMPLATES,
) -> StaticPages:
    """Lay out ``html(keys)`` (one page per key), check it and store it as :class:`StaticPages`.

    Every static text must fit its area (checked on WeasyPrint's layout), and
    each key must give exactly one page, or the layout is refused naming the key.
    """
    import pikepdf
    from weasyprint import CSS, HTML
    from weasyprint.text.fonts import FontConfiguration

    from rrnet_cli.render import make_fetcher

    if not keys:
        return StaticPages({}, b"", [])
    templates = Path(templates)
    font_config = FontConfiguration()
    fetcher = make_fetcher(templates)
    stylesheets = [
        CSS(filename=str(templates / FORM_CSS), font_config=font_config, url_fetcher=fetcher),
        CSS(
            string=layout_css(layout, notices.values()),
            font_config=font_config,
            url_fetcher=fetcher,
        ),
    ]

    def document(subset: list[str]) -> Any:
        return HTML(string=html(subset), base_url=str(templates) + "/", url_fetcher=fetcher).render(
            stylesheets=stylesheets, font_config=font_config
        )

    def does_not_fit(key: str, detail: str) -> RrnetError:
        return RrnetError(
            f"the static page of {key!r} does not fit on one page: shorten its notice "
            f"text or the layout ({detail})"
        )

    rendered = document(keys)
    if len(rendered.pages) != len(keys):
        for key in keys:
            count = len(document([key]).pages)
            if count != 1:
                raise does_not_fit(key, f"{count} pages")
        raise RrnetError(f"The static pages gave {len(rendered.pages)} pages for {len(keys)}.")
    for key, page in zip(keys, rendered.pages, strict=True):
        problems = _static_problems(page, layout)
        if problems:
            raise does_not_fit(key, "; ".join(problems))
    with pikepdf.open(io.BytesIO(rendered.write_pdf())) as pdf:
        compact_fonts(pdf)
        _own_fonts(pdf)
        combined = _save(pdf)
    pages = {}
    with pikepdf.open(io.BytesIO(combined)) as source:
        for index, key in enumerate(keys):
            with pikepdf.new() as single:
                single.pages.append(source.pages[index])
                pages[key] = _save(single)
            with pikepdf.open(io.BytesIO(pages[key])) as check:
                if len(check.pages) != 1:
                    raise does_not_fit(key, f"{len(check.pages)} pages")
    return StaticPages(pages, combined, keys)


# ---------------------------------------------------------------------------
# Composition


def compose(
    layer_pdf: bytes,
    static_pages: Mapping[str, bytes],
    languages: Sequence[str],
    *,
    max_kb_per_page: float | None = None,
) -> bytes:
    """Each page of the layer over the static page of its language, as one PDF.

    Page ``i`` gets ``static_pages[languages[i]]`` underneath, as a Form
    XObject copied into the file once per language and drawn by every page of
    that language (from :class:`StaticPages`' combined PDF when it is one, so
    that the languages share their fonts). The layer's fonts are compacted
    (:func:`compact_fonts`). The output is checked: as many pages as the
    layer, and (with ``max_kb_per_page``) no bigger than that per page.
    """
    import pikepdf

    if not layer_pdf:
        if languages:
            raise RrnetError(f"An empty layer cannot carry {len(languages)} pages.")
        return b""
    combined = static_pages.combined if isinstance(static_pages, StaticPages) else None
    with ExitStack() as stack:
        out = stack.enter_context(pikepdf.open(io.BytesIO(layer_pdf)))
        if len(out.pages) != len(languages):
            raise RrnetError(
                f"The layer has {len(out.pages)} pages but {len(languages)} languages were given."
            )
        shared = stack.enter_context(pikepdf.open(io.BytesIO(combined))) if combined else None
        forms: dict[str, tuple[pikepdf.Name, pikepdf.Object]] = {}
        for number, language in enumerate(dict.fromkeys(languages)):
            if language not in static_pages:
                raise RrnetError(f"No static page for language {language!r}.")
            if shared is not None and isinstance(static_pages, StaticPages):
                source, page = shared, shared.pages[static_pages.order.index(language)]
            else:
                source = stack.enter_context(pikepdf.open(io.BytesIO(static_pages[language])))
                if len(source.pages) != 1:
                    raise RrnetError(
                        f"The static page of {language!r} has {len(source.pages)} pages, not 1."
                    )
                page = source.pages[0]
            form = source.make_indirect(page.as_form_xobject())
            forms[language] = (pikepdf.Name(f"/RrnetStatic{number}"), out.copy_foreign(form))
        for page, language in zip(out.pages, languages, strict=True):
            name, form = forms[language]
            page.add_resource(form, pikepdf.Name.XObject, name)
            placement = page.calc_form_xobject_placement(
                form, name, pikepdf.Rectangle(page.mediabox)
            )
            page.contents_add(placement, prepend=True)
        compact_fonts(out)
        data = _save(out)
    with pikepdf.open(io.BytesIO(data)) as check:
        if len(check.pages) != len(languages):
            raise RrnetError(
                f"The composed file has {len(check.pages)} pages instead of {len(languages)}."
            )
    if max_kb_per_page is not None and len(data) / len(languages) / 1024 > max_kb_per_page:
        raise RrnetError(
            f"The composed file takes {len(data) / len(languages) / 1024:.1f} KB per page "
            f"(at most {max_kb_per_page:g})."
        )
    return data


# ---------------------------------------------------------------------------
# Worker processes


def form_of(kind: str) -> tuple[Callable[..., StaticPages], Callable[[Profile], FormRenderer]]:
    """A form's static-page function and its renderer: ``sheet`` (the notification
    sheet), ``household`` (the household notice) or ``change`` (the change notice).

    The household and change forms are built on this module, so they are
    imported when asked for.
    """
    if kind == "sheet":
        return render_static_pages, FormRenderer
    if kind == "household":
        from rrnet_cli import household
        from rrnet_cli.languages import load_notices

        return household.render_household_static_pages, lambda profile: household.HouseholdRenderer(
            profile, load_notices()
        )
    if kind == "change":
        from rrnet_cli import change_notice

        return change_notice.render_change_static_pages, change_notice.ChangeRenderer
    raise ValueError(f"unknown form {kind!r}")


def _static_job(
    kind: str, profile: Profile, languages: list[str], notice_date_text: str, mark: Mark | None
) -> StaticPages:
    from rrnet_cli.languages import load_notices

    render = form_of(kind)[0]
    return render(profile, load_notices(), languages, notice_date_text, mark=mark)


@contextlib.contextmanager
def starting_processes() -> Iterator[None]:
    """Hold Ctrl-C while worker processes start; the processes never see it.

    A SIGINT that strikes while a ProcessPoolExecutor starts a worker, after the
    worker exists but before the executor knows it, leaves a worker the
    executor cannot wait for: it fails and prints a traceback. Inside this
    block Ctrl-C is held and raised as KeyboardInterrupt when it ends. The
    processes started inside it (among them the forkserver, which starts every
    later worker) inherit SIGINT blocked: Ctrl-C at the terminal reaches the
    whole process group, and is the parent's to handle (it stops the workers
    and removes every partial file).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: held.append(signum))
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a SIGINT pending here is raised
    if held:
        raise KeyboardInterrupt


def exit_with(parent: int) -> None:
    """End this process as soon as ``parent`` (the rrnet run that started it) ends.

    A rendering process is the forkserver's child, not the run's, and waits on a
    queue it holds both ends of: when the run is killed (kill -9, the OOM killer)
    nothing tells it, and it would stay, holding residents' data in memory, with
    the forkserver and the resource tracker it keeps alive. A thread here waits
    on the run's process (a pidfd, readable once the run has ended; polled
    where pidfds are missing) and ends this process at once.
    """
    if parent == os.getpid():  # rendering in the run's own process
        return

    def watch() -> None:
        import select
        import time

        try:
            fd = os.pidfd_open(parent)
        except ProcessLookupError:
            os._exit(1)
        except (AttributeError, OSError):  # no pidfd here: look every half second
            while True:
                try:
                    os.kill(parent, 0)
                except ProcessLookupError:
                    os._exit(1)
                except OSError:
                    pass
                time.sleep(0.5)
        select.select([fd], [], [])
        os._exit(1)

    threading.Thread(target=watch, name="rrnet-parent-watch", daemon=True).start()


def run_apart(job: Callable[..., StaticPages], *args: Any) -> StaticPages:
    """``job(*args)`` in a process of its own, which then ends.

    Laying out the static pages of eleven languages loads every CJK font (about
    230 MB at its peak); done apart, that memory is not added to the parent's,
    which holds the register, and goes away before the workers start.
    """
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    with ProcessPoolExecutor(
        max_workers=1,
        mp_context=get_context("forkserver"),
        initializer=exit_with,
        initargs=(os.getpid(),),
    ) as pool:
        with starting_processes():
            laid_out = pool.submit(job, *args)
        return laid_out.result()


def render_static_pages_apart(
    profile: Profile,
    languages: Iterable[str],
    notice_date_text: str,
    mark: Mark | None = None,
    kind: str = "sheet",
) -> StaticPages:
    """The static pages of form ``kind`` (:func:`form_of`), laid out in a process of
    its own (:func:`run_apart`)."""
    return run_apart(_static_job, kind, profile, list(languages), notice_date_text, mark)


def render_test_page(profile: Profile, layout: FormLayout | None = None) -> bytes:
    """One page to hold against the office's window envelope before printing sheets.

    It shows the profile's window (solid outline, with a sample address inside),
    the code box (dashed: it must not show through the window), and millimetre
    rulers along the top and left edges.
    """
    from weasyprint import HTML

    from rrnet_cli.render import make_fetcher

    layout = (layout or load_layout(profile.layout_file)).for_profile(profile)
    code = layout.boxes["code"].rect
    html = (
        _environment(TEMPLATES)
        .get_template(TEST_PAGE_TEMPLATE)
        .render(
            page_width=layout.page_width,
            page_height=layout.page_height,
            window=layout.window.rect,
            code=code,
        )
    )
    fetcher = make_fetcher(TEMPLATES)
    document = HTML(string=html, base_url=str(TEMPLATES) + "/", url_fetcher=fetcher).render()
    return bytes(document.write_pdf())


_WORKER: FormRenderer | None = None
_STATIC: Mapping[str, bytes] = {}


def init_worker(profile: Profile, static_pages: Mapping[str, bytes], kind: str = "sheet") -> None:
    """Build this process's renderer of form ``kind`` (a ProcessPoolExecutor initializer)."""
    global _WORKER, _STATIC
    _WORKER = form_of(kind)[1](profile)
    # Keep StaticPages whole: compose() copies from its combined PDF, so a file that
    # mixes languages stores the Japanese font once.
    _STATIC = static_pages


def render_batch(batch: Sequence[Mapping[str, Any]]) -> Any:
    """A batch in a worker, composed over the static pages (:meth:`FormRenderer.render_composed`).

    The result's ``pdf`` is the finished file (static pages included).
    """
    assert _WORKER is not None, "init_worker was not called in this process"
    return _WORKER.render_composed(batch, _STATIC)
