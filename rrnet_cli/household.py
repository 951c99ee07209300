"""The household notice (世帯ごと): one envelope and one document per household.

Many offices mail one envelope per household. Its document is built on the same
fixed form as the single sheet (:mod:`rrnet_cli.form`): a static page laid out
once per run, a layer of values laid out in batches, each value fitted to its
own box, composed with pikepdf. It has two kinds of page
(``templates/form/household.toml``):

- **member pages**: the envelope window (postal code, address and addressee:
  the first member in the export's order, usually the householder), the
  household reference, the page number, and a table of the members who get a
  code in this run (name, alias, birth date, sex, code) over the notice in
  Japanese. A household with more members than the table's rows continues on
  further member pages, each marked "2/3枚目" with the household reference;
- **translation pages**: one for each other language its members' notices are
  in, with the notice in that language and what the table's headings mean.

A member whose value cannot be printed (too long for its column even at the
smallest size, or a character no font has) is set aside with the reason, and
the household is laid out again without them; a household whose address does
not fit the window sets every member aside. Nothing is ever clipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from rrnet_cli.errors import UsageError
from rrnet_cli.form import (
    _FIT_KEYS,
    FIELD_OF_BOX,
    NOTICE_POINTS,
    FormLayout,
    FormRenderer,
    Mark,
    Rejection,
    StaticPages,
    _environment,
    _one_per_field,
    _Setting,
    _Table,
    compose,
    format_postal_code,
    parse_layout,
    sheet_values,
    static_page_set,
)
from rrnet_cli.languages import TEMPLATES, NoticeText
from rrnet_cli.profile import Profile
from rrnet_cli.schema import read_toml

HOUSEHOLD_LAYOUT = TEMPLATES / "form" / "household.toml"
HOUSEHOLD_STATIC_TEMPLATE = "form/household_static.html.j2"

#: The members table's columns, in order, and the register field of each.
MEMBER_COLUMNS = ("name", "alias", "birth_date", "sex", "code")
FIELD_OF_COLUMN = {
    "name": "name",
    "alias": "alias",
    "birth_date": "birth_date",
    "sex": "sex",
    "code": "resident_code",
}
#: The label (in the notice files) of each column's heading.
LABEL_OF_COLUMN = {
    "name": "name",
    "alias": "alias",
    "birth_date": "birth_date",
    "sex": "sex",
    "code": "code",
}
HOUSEHOLD_BOXES = ("reference", "page")
HOUSEHOLD_STATIC = (
    "sender",
    "title",
    "caption",
    "notice_ja",
    "issued",
    "contact",
    "translation_title_ja",
    "translation_title",
    "translation_notice",
    "translation_legend",
)
#: The space (mm) between one row's boxes and the next row's.
ROW_GAP = 0.8
#: Static page keys: the member page, and a translation page per language.
MEMBERS_PAGE = "household"


def translation_page(language: str) -> str:
    """The static page key of a household's translation page in ``language``."""
    return f"household:{language}"


@dataclass(frozen=True)
class HouseholdLayout:
    """The household form, and where its members table's rows are."""

    form: FormLayout
    top: float
    row_height: float
    rows: int

    @staticmethod
    def box(row: int, column: str) -> str:
        """The box of ``column`` in table row ``row`` (1-based): ``m3-name``."""
        return f"m{row}-{column}"

    def row_lines(self) -> list[float]:
        """Where the line under each row is drawn (mm from the top)."""
        return [
            round(self.top + row * self.row_height - ROW_GAP / 2, 2)
            for row in range(1, self.rows + 1)
        ]


def parse_household_layout(data: Mapping[str, Any], source: str = "<layout>") -> HouseholdLayout:
    """A :class:`HouseholdLayout` from the parsed TOML of a household layout, checked.

    The members table's columns become one value box per row and column, and
    their headings static texts, so that every check of the single sheet's
    layout (inside the page, nothing in the window, room for a line at the
    smallest size) applies to each of them.
    """
    data = dict(data)
    if "members" not in data:
        raise UsageError(f"Layout {source}: [members] is missing (the members table).")
    members = data.pop("members")
    table = _Table(source, "members", members, ("top", "row_height", "rows", "columns"))
    top = table.number("top", 0, 1000)
    row_height = table.positive("row_height", 1000)
    rows = table.whole("rows", 1, 50)
    if row_height <= ROW_GAP:
        raise table.fail("row_height", f"above {ROW_GAP:g}")
    columns = members.get("columns", {})
    _Table(source, "members.columns", columns, MEMBER_COLUMNS)
    missing = [column for column in MEMBER_COLUMNS if column not in columns]
    if missing:
        raise UsageError(f"Layout {source}: [members.columns] lacks {', '.join(missing)}.")
    boxes = dict(data.get("boxes", {}))
    static = dict(data.get("static", {}))
    for column in MEMBER_COLUMNS:
        raw = dict(columns[column])
        where = f"members.columns.{column}"
        _Table(source, where, raw, ("left", "width", "label", *_FIT_KEYS))
        heading = raw.pop("label", None)
        if heading is None:
            raise UsageError(f"Layout {source}: [{where}] lacks its heading ([{where}.label]).")
        _Table(source, f"{where}.label", heading, ("top", "height", "font_size", "line_height"))
        for row in range(1, rows + 1):
            boxes[HouseholdLayout.box(row, column)] = {
                **raw,
                "top": round(top + (row - 1) * row_height, 3),
                "height": round(row_height - ROW_GAP, 3),
            }
        static[f"heading_{column}"] = {
            "left": raw.get("left"),
            "width": raw.get("width"),
            **heading,
        }
    data["boxes"], data["static"] = boxes, static
    member_boxes = [
        HouseholdLayout.box(row, column) for row in range(1, rows + 1) for column in MEMBER_COLUMNS
    ]
    form = parse_layout(
        data,
        source,
        value_boxes=(*HOUSEHOLD_BOXES, *member_boxes),
        static_boxes=(*HOUSEHOLD_STATIC, *(f"heading_{c}" for c in MEMBER_COLUMNS)),
    )
    return HouseholdLayout(form, top, row_height, rows)


def load_household_layout(
    path: Path | None = None, profile: Profile | None = None
) -> HouseholdLayout:
    """Read and check a household layout (default: the package's ``form/household.toml``)."""
    path = Path(path) if path is not None else HOUSEHOLD_LAYOUT
    layout = parse_household_layout(read_toml(path, "Layout"), str(path))
    if profile is None:
        return layout
    form = layout.form.for_profile(profile)
    return HouseholdLayout(form, layout.top, layout.row_height, layout.rows)


# ---------------------------------------------------------------------------
# Static pages


def render_household_static_pages(
    profile: Profile,
    notices: Mapping[str, NoticeText],
    languages: Sequence[str],
    notice_date_text: str,
    layout: HouseholdLayout | None = None,
    templates: Path = TEMPLATES,
    mark: Mark | None = None,
) -> StaticPages:
    """The member page, and a translation page for each language but Japanese."""
    layout = layout or load_household_layout()
    form = layout.form.for_profile(profile)
    unknown = [language for language in languages if language not in notices]
    if unknown:
        raise UsageError(f"No notice text for {', '.join(unknown)}.")
    translations = [language for language in dict.fromkeys(languages) if language != "ja"]
    keys = [MEMBERS_PAGE, *(translation_page(language) for language in translations)]
    template = _environment(Path(templates)).get_template(HOUSEHOLD_STATIC_TEMPLATE)
    name = form.boxes[HouseholdLayout.box(1, "name")].rect
    code = form.boxes[HouseholdLayout.box(1, "code")].rect

    def html(subset: list[str]) -> str:
        return template.render(
            pages=[
                {"notice": None if key == MEMBERS_PAGE else notices[key.partition(":")[2]]}
                for key in subset
            ],
            ja=notices["ja"],
            en=notices["en"],
            profile=profile,
            sender_postal_code=format_postal_code(profile.postal_code),
            notice_date=notice_date_text,
            rules=form.rules,
            row_lines=layout.row_lines(),
            table_left=name.left,
            table_width=round(code.right - name.left, 3),
            headings=[(column, LABEL_OF_COLUMN[column]) for column in MEMBER_COLUMNS],
            legend=[
                *(LABEL_OF_COLUMN[c] for c in MEMBER_COLUMNS),
                "household_reference",
                "reference",
            ],
            points=NOTICE_POINTS,
            mark=mark,
        )

    return static_page_set(form, notices, keys, html, templates)


# ---------------------------------------------------------------------------
# The value layer


class PrintedHousehold(NamedTuple):
    """Where one household's document is in a batch's PDF."""

    #: where the household is in the batch
    batch_index: int
    #: first page (0-based) of its document in the batch's PDF
    start: int
    #: its number of pages
    pages: int
    #: (index of the member in the household, 0-based page within the document)
    members: list[tuple[int, int]]


class HouseholdLayer(NamedTuple):
    """One batch of household documents."""

    pdf: bytes
    rejections: list[Rejection]
    households: list[PrintedHousehold]
    #: the static page key of every page, in order
    keys: list[str]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def reference_text(household: Mapping[str, Any], ja: NoticeText) -> str:
    """What the reference box says: 世帯番号 and the household_id, or, for a resident
    without one (a household of one), 整理番号 and their resident_id."""
    if household.get("household_id"):
        return f"{ja.labels['household_reference']} {household['household_id']}"
    return f"{ja.labels['reference']} {_text(household.get('reference'))}"


class HouseholdRenderer(FormRenderer):
    """Lays out batches of household documents; build one per process and reuse it."""

    def __init__(
        self,
        profile: Profile,
        notices: Mapping[str, NoticeText],
        layout: HouseholdLayout | None = None,
        templates: Path = TEMPLATES,
    ) -> None:
        household = layout or load_household_layout()
        super().__init__(profile, household.form, templates)
        self.household = HouseholdLayout(
            self.layout, household.top, household.row_height, household.rows
        )
        self.notices = notices

    # -- HTML ---------------------------------------------------------------

    def _page_data(self, setting: _Setting) -> dict[str, Any]:
        values = setting.values
        window = self._window_items(setting) if "address" in values else []
        items = [self._item(setting, key, values[key]) for key in HOUSEHOLD_BOXES]
        for key, text in values.items():
            if key.startswith("m") and "-" in key and text:
                items.append(
                    self._item(setting, key, text, " mcode" if key.endswith("-code") else "")
                )
        return {"window": window, "boxes": items}

    def _reason(self, key: str, setting: _Setting) -> str:
        if "-" not in key:
            return super()._reason(key, setting)
        column = key.partition("-")[2]
        fit = self.layout.fit(key)
        lines = "1 line" if fit.max_lines == 1 else f"{fit.max_lines} lines"
        return (
            f"too long for the members table's {column} column ({lines}) "
            f"even at {fit.min_font_size:g} pt"
        )

    # -- pages --------------------------------------------------------------

    def member_values(self, sheet: Mapping[str, Any]) -> dict[str, str]:
        """A member's row in the table: column -> text."""
        values = sheet_values(sheet)
        return {
            "name": values["name"],
            "alias": values["alias"],
            "birth_date": values["birth_date"],
            "sex": _text(sheet.get("sex_ja", values["sex"])),
            "code": values["resident_code"],
        }

    def pages(
        self, household: Mapping[str, Any], members: Sequence[tuple[int, Mapping[str, Any]]]
    ) -> list[tuple[_Setting, str, list[tuple[int, int]]]]:
        """The household's pages: (setting, static key, [(member, position in members)])."""
        ja = self.notices["ja"]
        rows = self.household.rows
        chunks = [members[start : start + rows] for start in range(0, len(members), rows)]
        languages = list(
            dict.fromkeys(str(m["language"]) for _, m in members if m["language"] != "ja")
        )
        total = len(chunks) + len(languages)
        first = sheet_values(members[0][1])
        reference = reference_text(household, ja)
        out: list[tuple[_Setting, str, list[tuple[int, int]]]] = []
        position = 0
        for number, chunk in enumerate(chunks, start=1):
            values = {
                "postal_code": first["postal_code"],
                "address": first["address"],
                "addressee": first["addressee"],
                "reference": reference,
                "page": ja.labels["page"].format(page=number, pages=total),
            }
            setting = _Setting(values)
            placed = []
            for row, (member, sheet) in enumerate(chunk, start=1):
                for column, text in self.member_values(sheet).items():
                    box = HouseholdLayout.box(row, column)
                    values[box] = text
                    setting.owners[box] = position
                placed.append((member, position))
                position += 1
            out.append((setting, MEMBERS_PAGE, placed))
        for number, language in enumerate(languages, start=len(chunks) + 1):
            notice = self.notices[language]
            values = {
                "reference": reference,
                "page": notice.labels["page"].format(page=number, pages=total),
            }
            out.append((_Setting(values), translation_page(language), []))
        return out

    def _glyph_problems(
        self, household: Mapping[str, Any], members: Sequence[Mapping[str, Any]]
    ) -> tuple[list[tuple[str, str]], dict[int, list[tuple[str, str]]]]:
        """(household-wide problems, {member: problems}), each as (field, reason)."""
        first = sheet_values(members[0]) if members else {}
        shared = [
            (field, reason)
            for field, text in (
                ("postal_code", first.get("postal_code", "")),
                ("address", first.get("address", "")),
                ("household_id", _text(household.get("reference"))),
            )
            if (reason := self.glyphs.problem(text))
        ]
        own: dict[int, list[tuple[str, str]]] = {}
        for index, sheet in enumerate(members):
            for column, text in self.member_values(sheet).items():
                reason = self.glyphs.problem(text, "code" if column == "code" else "values")
                if reason:
                    own.setdefault(index, []).append((FIELD_OF_COLUMN[column], reason))
        return shared, own

    def render_households(self, households: Sequence[Mapping[str, Any]]) -> HouseholdLayer:
        """A batch of households: each one's document, in order, and who was set aside."""
        rejections: list[tuple[int, Rejection]] = []
        left: dict[int, list[tuple[int, Mapping[str, Any]]]] = {}

        def reject(h: int, sheet: Mapping[str, Any], field: str, reason: str) -> None:
            rejections.append((h, Rejection(_text(sheet.get("resident_id")), field, reason)))

        for h, household in enumerate(households):
            members = list(household["members"])
            shared, own = self._glyph_problems(household, members)
            if shared:
                for sheet in members:
                    for field, reason in shared:
                        reject(h, sheet, field, reason)
                continue
            for index, problems in own.items():
                for field, reason in problems:
                    reject(h, members[index], field, reason)
            kept = [(index, sheet) for index, sheet in enumerate(members) if index not in own]
            if kept:
                left[h] = kept
        done: dict[int, list[tuple[Any, str, list[tuple[int, int]]]]] = {}
        documents: list[Any] = []
        todo = sorted(left)
        while todo:
            settings: dict[int, _Setting] = {}
            where: dict[int, tuple[int, str, list[tuple[int, int]]]] = {}
            for h in todo:
                for setting, key, placed in self.pages(households[h], left[h]):
                    where[len(settings)] = (h, key, placed)
                    settings[len(settings)] = setting
            pages, new_documents, failures = self.fit_pages(settings)
            documents += new_documents
            out: dict[int, set[int]] = {}
            for index, box in failures:
                h = where[index][0]
                setting = settings[index]
                position = setting.owners.get(box)
                reason = self.failure_reason(box, setting)
                if position is None:  # the window, the reference: the whole household
                    field = "household_id" if box == "reference" else FIELD_OF_BOX.get(box, box)
                    if box.startswith("window"):
                        # Every member is in this envelope: say whose name and address it is.
                        addressee = _text(left[h][0][1].get("resident_id"))
                        field = "address"
                        reason = (
                            f"the household's envelope window (postal code, address, and "
                            f"resident_id {addressee} as addressee): {reason}"
                        )
                    for _, sheet in left[h]:
                        reject(h, sheet, field, reason)
                    out[h] = set(range(len(left[h])))
                else:
                    column = box.partition("-")[2]
                    reject(h, left[h][position][1], FIELD_OF_COLUMN[column], reason)
                    out.setdefault(h, set()).add(position)
            for index in sorted(pages):
                h, key, placed = where[index]
                if h not in out:
                    done.setdefault(h, []).append((pages[index], key, placed))
            todo = []
            for h, positions in out.items():
                left[h] = [item for i, item in enumerate(left[h]) if i not in positions]
                if left[h]:
                    todo.append(h)
        all_pages: list[Any] = []
        keys: list[str] = []
        printed: list[PrintedHousehold] = []
        for h in sorted(done):
            start = len(all_pages)
            places: list[tuple[int, int]] = []
            for number, (page, key, placed) in enumerate(done[h]):
                all_pages.append(page)
                keys.append(key)
                places += [(left[h][position][0], number) for _, position in placed]
            printed.append(PrintedHousehold(h, start, len(done[h]), places))
        unique = [r for _, r in _one_per_field(rejections)]
        if not all_pages:
            return HouseholdLayer(b"", unique, [], [])
        pdf = documents[0].copy(all_pages).write_pdf()
        return HouseholdLayer(pdf, unique, printed, keys)

    def render_composed(  # type: ignore[override]
        self, households: Sequence[Mapping[str, Any]], static_pages: Mapping[str, bytes]
    ) -> HouseholdLayer:
        """:meth:`render_households`, each page composed over its static page."""
        layer = self.render_households(households)
        return layer._replace(pdf=compose(layer.pdf, static_pages, layer.keys))
