"""The municipality profile: who sends the notification sheets, where on the page
the address block goes (millimetres, so it fits the office's window envelope), and
how the office writes dates and addresses its mail. ``[sheet] layout`` names the
office's own copy of the sheet's layout (``templates/form/layout.toml``); a
relative path is relative to the profile file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rrnet_cli.errors import UsageError
from rrnet_cli.schema import read_toml, validate_municipality_code

MUNICIPALITY_KEYS = ("name", "code", "mayor_title", "department", "phone", "postal_code", "address")
LAYOUT_KEYS = ("address_top", "address_left", "address_width", "address_height")
#: How dates print on a sheet: 2002-09-06, 2002年9月6日 or 平成14年9月6日.
DATE_STYLES = ("iso", "seireki", "wareki")
#: Who the address block names: the registered name, or the alias (通称) where there is one.
ADDRESSEES = ("name", "alias")
#: How the office sends the sheets: 簡易書留, 特定記録, or handed over at the counter
#: after an ID check (窓口交付). mailing.csv carries it for the post office.
MAIL_CLASSES = ("kani_kakitome", "tokutei_kiroku", "counter")
#: One envelope per resident (a sheet each), or per household (世帯ごと: one document
#: listing the members who get a code, with the notice in each of their languages).
MAILINGS = ("person", "household")


@dataclass(frozen=True)
class Profile:
    """A municipality's sender details and sheet layout."""

    name: str
    code: str
    mayor_title: str
    department: str
    phone: str
    postal_code: str
    address: str
    address_top: float
    address_left: float
    address_width: float
    address_height: float
    #: ``[sheet] date_style``: one of DATE_STYLES
    date_style: str = "iso"
    #: ``[sheet] addressee``: one of ADDRESSEES
    addressee: str = "name"
    #: ``[sheet] mail_class``: one of MAIL_CLASSES
    mail_class: str = "kani_kakitome"
    #: ``[sheet] mailing``: one of MAILINGS
    mailing: str = "person"
    #: ``[sheet] reprint``: whether this office reissues notices (再交付) at all
    reprint: bool = True
    #: ``[sheet] layout`` (or ``rrnet notify --layout``): the office's own copy of the
    #: sheet's layout file; None: the one rrnet ships (``form.DEFAULT_LAYOUT``)
    layout_file: Path | None = None


#: Every key a profile may have, by section: a misspelt key (``reprnt = false``)
#: would otherwise be ignored, and an office's policy lost without a word.
KNOWN_KEYS = {
    "municipality": MUNICIPALITY_KEYS,
    "layout": LAYOUT_KEYS,
    "sheet": ("date_style", "addressee", "mail_class", "mailing", "reprint", "layout"),
}


def _refuse_unknown_keys(path: Path, data: dict[str, Any]) -> None:
    for section, table in data.items():
        if section not in KNOWN_KEYS:
            raise UsageError(
                f"Profile {path}: unknown section [{section}] "
                f"(known: {', '.join(f'[{k}]' for k in KNOWN_KEYS)})."
            )
        if not isinstance(table, dict):
            raise UsageError(f"Profile {path}: [{section}] must be a table.")
        unknown = sorted(set(table) - set(KNOWN_KEYS[section]))
        if unknown:
            raise UsageError(
                f"Profile {path}: unknown key(s) in [{section}]: {', '.join(unknown)} "
                f"(known: {', '.join(KNOWN_KEYS[section])})."
            )


def load_profile(path: Path) -> Profile:
    """Read and check a profile TOML file (see ``sample_data/profile.toml``)."""
    path = Path(path)
    data = read_toml(path, "Profile")
    _refuse_unknown_keys(path, data)
    municipality = data.get("municipality", {})
    layout = data.get("layout", {})
    missing = [
        f"municipality.{k}" for k in MUNICIPALITY_KEYS if not str(municipality.get(k, "")).strip()
    ]
    missing += [f"layout.{k}" for k in LAYOUT_KEYS if k not in layout]
    if missing:
        raise UsageError(f"Profile {path} lacks: {', '.join(missing)}.")
    for key in LAYOUT_KEYS:
        value = layout[key]
        if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 297:
            raise UsageError(f"Profile {path}: layout.{key} must be millimetres (0-297).")
    values: dict[str, Any] = {k: str(municipality[k]).strip() for k in MUNICIPALITY_KEYS}
    values["code"] = validate_municipality_code(values["code"])
    values.update({k: float(layout[k]) for k in LAYOUT_KEYS})
    sheet = data.get("sheet", {})
    if not isinstance(sheet, dict):
        raise UsageError(f"Profile {path}: [sheet] must be a table.")
    for key, allowed, default in (
        ("date_style", DATE_STYLES, "iso"),
        ("addressee", ADDRESSEES, "name"),
        ("mail_class", MAIL_CLASSES, "kani_kakitome"),
        ("mailing", MAILINGS, "person"),
    ):
        value = sheet.get(key, default)
        if value not in allowed:
            raise UsageError(
                f"Profile {path}: sheet.{key} must be one of {', '.join(allowed)} "
                f"(it is {value!r})."
            )
        values[key] = value
    reprint = sheet.get("reprint", True)
    if not isinstance(reprint, bool):
        raise UsageError(
            f"Profile {path}: sheet.reprint must be true or false (it is {reprint!r})."
        )
    values["reprint"] = reprint
    layout_file = sheet.get("layout")
    if layout_file is not None:
        if not isinstance(layout_file, str) or not layout_file.strip():
            raise UsageError(
                f"Profile {path}: sheet.layout must be the path of a layout file, in quotes "
                f"(it is {layout_file!r})."
            )
        # Relative to the profile, wherever rrnet is run from.
        values["layout_file"] = (path.parent / Path(layout_file.strip()).expanduser()).absolute()
        if not values["layout_file"].is_file():
            raise UsageError(
                f"Profile {path}: sheet.layout names {values['layout_file']}, which is not a file."
            )
    return Profile(**values)
