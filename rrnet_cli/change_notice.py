"""The change notice (住民票コード変更通知書), printed after a resident's code was changed.

A resident may ask for a new code, and an office may change one on its own
authority (:mod:`rrnet_cli.change`). Either way the resident is told, on paper,
which code is now theirs and that the old one is no longer valid. The notice is
built on the notification sheet's fixed form (:mod:`rrnet_cli.form`), as the
household notice is: a static page laid out once per run and language, a layer
of values laid out in batches, each value fitted to its own box, composed with
pikepdf (one shared Form XObject per language and file).

Its layout (``templates/form/change.toml``) is the sheet's, except that:

- the framed code is the **new** code, labelled 変更後の住民票コード ([change]
  ``new_code`` of the notice files);
- the particulars end with the **previous** code (``old_code``: in the code's
  font, in 4-4-3 groups, never broken) and the date of change (``changed_on``)
  instead of the date of record.

Its static page (``templates/form/change_static.html.j2``) has the change
notice's title, and a notice that says the code was changed and that the old
code is no longer valid, then the points a resident must know (keep the notice
safe, no private business may ask for or use the code, an official photo ID is
needed to ask for a change), in Japanese and in the resident's language.

A sheet is what :func:`rrnet_cli.notify.build_sheets` makes (its ``code`` is the
new code), with two more keys: ``old_code`` (the 11 digits of the previous code)
and ``changed_on`` (the date of change, already formatted in the profile's
date style). A value that cannot be printed (too long for its box even at its
smallest size, a character no font of the form has, a previous code that is not
a valid resident record code) is a :class:`rrnet_cli.form.Rejection` naming the
resident_id and the field (``old_code``, ``changed_on``, ``address`` ...), and
only that sheet is left out.

>>> change_values({"resident_id": "7", "name": "A", "code": "12345678903",
...     "old_code": "98765432109", "changed_on": "2026-12-01"})["old_code"]
'9876 5432 109'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rrnet_cli import code as rcode
from rrnet_cli.form import (
    STATIC_BOXES,
    FormLayout,
    FormRenderer,
    Layer,
    Mark,
    Rejection,
    StaticPages,
    _Setting,
    parse_layout,
    render_static_pages,
    sheet_values,
)
from rrnet_cli.languages import TEMPLATES, NoticeText
from rrnet_cli.profile import Profile
from rrnet_cli.schema import read_toml

CHANGE_LAYOUT = TEMPLATES / "form" / "change.toml"
CHANGE_STATIC_TEMPLATE = "form/change_static.html.j2"

#: Value boxes the change notice's layout must have (and the window).
CHANGE_BOXES = (
    "code",
    "name",
    "name_kanji",
    "alias",
    "birth_date",
    "sex",
    "address",
    "old_code",
    "changed_on",
    "notice_date",
    "reference",
)
#: Its static texts: the same areas as the sheet's.
CHANGE_STATIC = STATIC_BOXES
#: The points the notice gives after [change] changed and old_invalid, each as
#: (section, key) of the notice files: the change notice is kept safe in words of
#: its own (the sheet's keep_safe names the sheet), the rest as on the sheet.
CHANGE_POINTS = (("change", "keep_safe"), ("text", "private_use"), ("text", "photo_id"))
#: Labels taken from the notice files' [change] section: box -> (section, key).
#: Every other label is [labels] of the box's name.
LABEL_OF_BOX = {
    "code": ("change", "new_code"),
    "old_code": ("change", "old_code"),
    "changed_on": ("change", "changed_on"),
}


def load_change_layout(path: Path | None = None, profile: Profile | None = None) -> FormLayout:
    """Read and check a change notice layout (default: the package's ``form/change.toml``).

    With a profile, the window's rectangle is the profile's ``[layout]`` one,
    and the layout is checked against it (neither code may show through it).
    """
    path = Path(path) if path is not None else CHANGE_LAYOUT
    layout = parse_layout(
        read_toml(path, "Layout"),
        str(path),
        value_boxes=CHANGE_BOXES,
        static_boxes=CHANGE_STATIC,
    )
    return layout.for_profile(profile) if profile is not None else layout


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def change_values(sheet: Mapping[str, Any]) -> dict[str, str]:
    """A change sheet as the text of each field: the sheet's, the old code and the date.

    The previous code is printed in 4-4-3 groups, like the new one; a value
    that is not an 11-digit code is kept as given (and refused by
    :class:`ChangeRenderer`). The date of record is not printed on this form.
    """
    values = sheet_values(sheet)
    del values["recorded_on"]
    old = rcode.compact(_text(sheet.get("old_code")))
    values["old_code"] = (
        rcode.format(old) if len(old) == rcode.LENGTH else _text(sheet.get("old_code"))
    )
    values["changed_on"] = _text(sheet.get("changed_on"))
    return values


def old_code_problem(sheet: Mapping[str, Any]) -> str | None:
    """Why a sheet's previous code cannot be printed, or None."""
    try:
        rcode.validate(_text(sheet.get("old_code")))
    except rcode.InvalidCode as error:
        return f"the previous code is not a valid resident record code: {error}"
    return None


# ---------------------------------------------------------------------------
# Static pages


def render_change_static_pages(
    profile: Profile,
    notices: Mapping[str, NoticeText],
    languages: Iterable[str],
    notice_date_text: str,
    layout: FormLayout | None = None,
    templates: Path = TEMPLATES,
    mark: Mark | None = None,
) -> StaticPages:
    """One single-page PDF per language: the part of the change notice that is the same for all.

    Japanese alone for ``ja``; Japanese and the translation for the others.
    Every text must fit its area (checked on WeasyPrint's layout), or the
    layout is refused naming the language (:func:`rrnet_cli.form.static_page_set`).
    """
    return render_static_pages(
        profile,
        notices,
        languages,
        notice_date_text,
        layout or load_change_layout(),
        templates,
        mark,
        template_name=CHANGE_STATIC_TEMPLATE,
        points=CHANGE_POINTS,
        context={"label_of": LABEL_OF_BOX},
    )


# ---------------------------------------------------------------------------
# The value layer


class ChangeRenderer(FormRenderer):
    """Lays out batches of change notices' value layers; build one per process and reuse it."""

    def __init__(
        self,
        profile: Profile,
        layout: FormLayout | None = None,
        templates: Path = TEMPLATES,
    ) -> None:
        super().__init__(profile, layout or load_change_layout(), templates)

    def values_of(self, sheet: Mapping[str, Any]) -> dict[str, str]:
        return change_values(sheet)

    def _page_data(self, setting: _Setting) -> dict[str, Any]:
        values = setting.values
        items = [
            # Both codes in the code's style: 4-4-3 groups, never broken.
            self._item(setting, "code", values["resident_code"], " code"),
            self._item(setting, "name", values["name"]),
        ]
        for key in ("name_kanji", "alias"):
            if values[key]:
                items.append(self._item(setting, key, values[key]))
        items += [
            self._item(setting, "birth_date", values["birth_date"]),
            self._item(setting, "sex", values["sex"]),
            self._item(setting, "address", self._address(setting, "address")),
            self._item(setting, "old_code", values["old_code"], " code"),
            self._item(setting, "changed_on", values["changed_on"]),
            self._item(setting, "reference", values["resident_id"]),
        ]
        return {"window": self._window_items(setting), "boxes": items}

    def render_layer(self, sheets: Sequence[Mapping[str, Any]]) -> Layer:
        """The value layer of a batch: one page per sheet that fits, in order.

        A sheet whose previous code is not a valid code is refused before
        layout; the rest are fitted as the sheet's form does.
        """
        refused: list[tuple[int, Rejection]] = []
        kept: list[int] = []
        for index, sheet in enumerate(sheets):
            problem = old_code_problem(sheet)
            if problem is None:
                kept.append(index)
            else:
                resident = _text(sheet.get("resident_id"))
                refused.append((index, Rejection(resident, "old_code", problem)))
        layer = super().render_layer([sheets[i] for i in kept])
        # The layer's rejections in batch order (each resident_id is one sheet of the batch).
        index_of: dict[str, int] = {}
        for i in kept:
            index_of.setdefault(_text(sheets[i].get("resident_id")), i)
        rejections = refused + [(index_of.get(r.resident_id, -1), r) for r in layer.rejections]
        rejections.sort(key=lambda item: item[0])
        return Layer(layer.pdf, [r for _, r in rejections], [kept[i] for i in layer.rendered])
