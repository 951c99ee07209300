"""The register export's columns: canonical names, the Japanese headers municipal
systems print, and which columns are required.

A header is recognised after NFKC normalisation, trimming and case folding, so
``Resident_ID``, ``resident_id`` and full-width ``ｒｅｓｉｄｅｎｔ＿ｉｄ`` all match.
"""

from __future__ import annotations

import tomllib
import unicodedata
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from rrnet_cli.errors import UsageError


@dataclass(frozen=True)
class Column:
    """One recognised column of a register export."""

    name: str
    aliases: tuple[str, ...]
    required: bool
    description: str


COLUMNS: tuple[Column, ...] = (
    Column(
        "resident_id",
        ("宛名番号", "住民番号", "識別番号"),
        True,
        "office's resident number, unique within the municipality",
    ),
    Column("household_id", ("世帯番号",), False, "household number; groups mail"),
    Column(
        "name",
        ("氏名", "氏名_外国人ローマ字", "氏名（アルファベット）", "氏名(アルファベット)"),
        True,
        "alphabet name as on the residence card",
    ),
    Column("name_kanji", ("氏名_外国人漢字", "漢字氏名"), False, "name in kanji"),
    Column("alias", ("通称",), False, "registered alias (kana/kanji only)"),
    Column("alias_kana", ("通称_フリガナ", "通称カナ"), False, "reading of the alias in kana"),
    Column("birth_date", ("生年月日",), True, "date of birth"),
    Column("sex", ("性別",), True, "男/女, M/F or 1/2"),
    Column("nationality", ("国籍・地域", "国籍名等", "国籍"), True, "name or ISO 3166 code"),
    Column("postal_code", ("郵便番号",), False, "NNN-NNNN"),
    Column("address", ("住所",), True, "address in the municipality"),
    Column(
        "foreign_resident_category",
        ("外国人住民区分", "30条45規定区分"),
        False,
        "one of the six categories of 住基法 第30条の45",
    ),
    Column("residence_status", ("在留資格",), False, "status of residence"),
    Column("stay_expiry", ("在留期間の満了の日", "在留期間満了日"), False, "date"),
    Column(
        "residence_card_number",
        ("在留カード番号", "在留カード等の番号"),
        False,
        "two letters, eight digits, two letters",
    ),
    Column(
        "planned_move_out_date",
        ("転出予定日", "転出予定年月日"),
        False,
        "any value excludes the resident from getting a new code",
    ),
    Column("resident_code", ("住民票コード",), False, "an existing code: validated, kept"),
    Column("language", ("通知言語", "言語"), False, "preferred notice language"),
)

BY_NAME = {c.name: c for c in COLUMNS}
REQUIRED = tuple(c.name for c in COLUMNS if c.required)

#: The six categories of 住民基本台帳法 第30条の45.
FOREIGN_RESIDENT_CATEGORIES = (
    "中長期在留者",
    "特別永住者",
    "一時庇護許可者",
    "仮滞在許可者",
    "出生による経過滞在者",
    "国籍喪失による経過滞在者",
)

#: What the first cell or the resident id of a totals row says (compared after NFKC,
#: without spaces, case-folded): a register printed with its count at the bottom.
TOTAL_ROW_WORDS = ("合計", "計", "総計", "小計", "件数", "total", "合計件数")

#: Notice languages: the national leaflets' set plus the largest groups today.
LANGUAGES = ("ja", "en", "ko", "zh-Hans", "zh-Hant", "es", "pt", "vi", "tl", "ne", "id")

#: Columns the assign step adds to every output row.
OUTPUT_COLUMNS = ("resident_code", "code_status", "exclusion_reason")


class CodeStatus(StrEnum):
    """What ``rrnet assign`` did with a row: the ``code_status`` column of its output."""

    #: a new random code was drawn and recorded
    ASSIGNED = "assigned"
    #: the resident arrived with a valid code and keeps it
    CARRIED_OVER = "carried_over"
    #: the ledger already holds a code for this resident, who keeps it
    ALREADY_ASSIGNED = "already_assigned"
    #: no code: the resident plans to move out (転出予定者)
    EXCLUDED = "excluded"


CODE_STATUSES = tuple(status.value for status in CodeStatus)
#: Statuses whose row carries a code.
CODED_STATUSES = (CodeStatus.ASSIGNED, CodeStatus.CARRIED_OVER, CodeStatus.ALREADY_ASSIGNED)
#: The ``exclusion_reason`` of an excluded row.
EXCLUDED_MOVE_OUT = "planned_move_out"

#: The values the ``sex`` column accepts (compared after NFKC and trimming).
MALE = ("男", "男性", "M", "m", "1")
FEMALE = ("女", "女性", "F", "f", "2")
SEX_VALUES = (*MALE, *FEMALE)

# ---------------------------------------------------------------------------
# Working columns: the helper columns modules pass to each other in frames.
# They are named __like_this__, a form an export may not use (ingest refuses
# such headers), and are never written to an output file.

#: Each row's number as a spreadsheet shows it. Written by ``ingest.read_export``;
#: read by every step that reports a row (validate, classify, rejects, verify).
ROW = "__row__"
#: The resident id as rrnet keys residents (NFKC, trimmed). Written by
#: ``ingest.validate_register``; read by ``assign.classify`` and the ledger records.
N_RESIDENT_ID = "__resident_id__"
#: The export's own code, compacted (text). Written by ``ingest.validate_register``;
#: read by ``assign.classify``.
N_RESIDENT_CODE = "__resident_code__"
#: True where a planned move-out date is given. Written by
#: ``ingest.validate_register``; read by ``assign.classify``.
MOVE_OUT = "__move_out__"
#: The row's code as uint64 (kept, known or drawn). Written by ``assign.classify``
#: and ``assign`` drawing; read by ``assign.build_output`` and the ledger records.
CODE = "__code__"
#: The ledger's active code for the row's resident. Written and dropped inside
#: ``assign.classify``.
KNOWN_CODE = "__known__"
#: The export's code as uint64. Written and dropped inside ``assign.classify``.
INCOMING_CODE = "__in__"
#: What the ledger records for the incoming code: status, municipality, resident.
#: Written and dropped inside ``assign.classify``.
LEDGER_STATUS = "__l_status__"
LEDGER_MUNICIPALITY = "__l_muni__"
LEDGER_RESIDENT = "__l_rid__"
#: Whether the row's id equals a known resident's id once leading zeros are
#: ignored, the row's being the shorter. Written and dropped inside ``assign.classify``.
ZEROS_LOST = "__zeros_lost__"
#: Whether the ledger holds the row's resident under the row's id stripped of
#: leading zeros (the ledger's id is the shorter). Written and dropped inside
#: ``assign.classify``.
LEDGER_ZEROS_LOST = "__ledger_zeros_lost__"
#: The birth date as printed on a sheet. Written and read inside ``notify.build_sheets``.
BIRTH_TEXT = "__birth__"


def is_working_column(name: str) -> bool:
    """Whether ``name`` has the form of a working column (``__like_this__``)."""
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def parsed_date_column(name: str) -> str:
    """The working column holding ``name`` parsed as a date (``ingest.validate_register``)."""
    return f"__date_{name}__"


def header_key(header: str) -> str:
    """How headers are compared: NFKC, trimmed, case-folded, spaces removed."""
    text = unicodedata.normalize("NFKC", header).strip().casefold()
    return "".join(text.split())


def _alias_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for column in COLUMNS:
        for alias in (column.name, *column.aliases):
            table[header_key(alias)] = column.name
    return table


ALIASES = _alias_table()


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file an office writes (mapping, profile, layout), or a UsageError naming it.

    ``what`` names the file in the message: "Profile", "Layout", "Mapping file".
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist.") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {path} is not valid TOML: {exc}") from None


def load_mapping(path: Path) -> dict[str, str]:
    """Read a ``--mapping`` TOML file: ``[columns]`` maps export headers to canonical names.

    Example::

        [columns]
        "宛名コード" = "resident_id"
        "ローマ字氏名" = "name"
    """
    data = read_toml(path, "Mapping file")
    columns = data.get("columns")
    if not isinstance(columns, dict) or not columns:
        raise UsageError(f"Mapping file {path} needs a [columns] table of header = canonical name.")
    mapping: dict[str, str] = {}
    for header, canonical in columns.items():
        if canonical not in BY_NAME:
            known = ", ".join(BY_NAME)
            raise UsageError(
                f"Mapping file {path}: {header!r} maps to unknown column {canonical!r}; "
                f"known columns are {known}."
            )
        mapping[header_key(header)] = canonical
    return mapping


def resolve_headers(
    headers: list[str], mapping: dict[str, str] | None = None, source: str = "the export"
) -> dict[str, str]:
    """Map an export's headers to canonical names; raise when two map to one name.

    Returns ``{original_header: canonical_name}`` for recognised headers only;
    the others are carried through untouched.
    """
    table = {**ALIASES, **(mapping or {})}
    resolved: dict[str, str] = {}
    seen: dict[str, str] = {}
    for header in headers:
        canonical = table.get(header_key(header))
        if canonical is None:
            continue
        if canonical in seen:
            raise UsageError(
                f"{source}: columns {seen[canonical]!r} and {header!r} both mean "
                f"{canonical!r}; keep one, or rename one with --mapping."
            )
        seen[canonical] = header
        resolved[header] = canonical
    return resolved


def validate_municipality_code(value: str) -> str:
    """Check a 全国地方公共団体コード: 5 digits and a check digit.

    The check digit is the ones digit of 11 - (sum of the digits weighted
    6, 5, 4, 3, 2) mod 11.

    >>> validate_municipality_code('131016')
    '131016'
    >>> validate_municipality_code('131017')
    Traceback (most recent call last):
        ...
    rrnet_cli.errors.UsageError: 131017 is not a valid local government code (check digit).
    """
    text = unicodedata.normalize("NFKC", value).strip()
    if len(text) != 6 or not text.isascii() or not text.isdigit():
        raise UsageError(
            f"{value} is not a local government code: give the 6-digit 全国地方公共団体コード "
            "(for example 131016)."
        )
    total = sum(int(d) * w for d, w in zip(text[:5], (6, 5, 4, 3, 2), strict=True))
    if (11 - total % 11) % 10 != int(text[5]):
        raise UsageError(f"{value} is not a valid local government code (check digit).")
    return text


# ---------------------------------------------------------------------------
# Code changes (住民票コードの変更): ``rrnet change``


class NoticeKind(StrEnum):
    """What a notice tells its resident (the ledger records every notice issued)."""

    NEW = "new"  # 住民票コード通知票: a code was written on the resident record
    CHANGE = "change"  # 住民票コード変更通知書: the code was changed


class ReprintReason(StrEnum):
    """Why a notice was printed again (再交付)."""

    RETURNED_MAIL = "returned_mail"
    LOST = "lost"
    ADDRESS_CORRECTED = "address_corrected"


class ChangeReason(StrEnum):
    """Why a resident's code was changed."""

    #: the resident asked for a new code (変更請求), showing official ID
    REQUEST = "request"
    #: the office changed it on its own authority (職権), e.g. after a notice went astray
    OFFICE = "office"


class IdDocument(StrEnum):
    """The kind of ID checked for a change on request (its number is never recorded)."""

    RESIDENCE_CARD = "residence_card"
    SPECIAL_PERMANENT_RESIDENT_CERTIFICATE = "special_permanent_resident_certificate"
    PASSPORT = "passport"
    DRIVERS_LICENSE = "drivers_license"
    HEALTH_INSURANCE_CARD = "health_insurance_card"
    MY_NUMBER_CARD = "my_number_card"
    OTHER = "other"


#: The Japanese names of each kind of ID that a requests file may use instead.
ID_DOCUMENT_NAMES: dict[str, IdDocument] = {
    "在留カード": IdDocument.RESIDENCE_CARD,
    "特別永住者証明書": IdDocument.SPECIAL_PERMANENT_RESIDENT_CERTIFICATE,
    "旅券": IdDocument.PASSPORT,
    "パスポート": IdDocument.PASSPORT,
    "運転免許証": IdDocument.DRIVERS_LICENSE,
    "健康保険証": IdDocument.HEALTH_INSURANCE_CARD,
    "被保険者証": IdDocument.HEALTH_INSURANCE_CARD,
    "保険証": IdDocument.HEALTH_INSURANCE_CARD,
    "マイナンバーカード": IdDocument.MY_NUMBER_CARD,
    "個人番号カード": IdDocument.MY_NUMBER_CARD,
    "その他": IdDocument.OTHER,
}


#: Every spelling of a kind of ID that ``id_document_kind`` takes, for messages.
ID_DOCUMENT_CHOICES = (
    ", ".join(k.value for k in IdDocument)
    + " (or in Japanese: "
    + ", ".join(ID_DOCUMENT_NAMES)
    + ")"
)


def id_document_kind(value: str) -> IdDocument | None:
    """The kind of ID a requests file names (``passport``, ``Drivers-License``, ``旅券``...).

    >>> id_document_kind("Drivers License"), id_document_kind("在留カード")
    (<IdDocument.DRIVERS_LICENSE: 'drivers_license'>, <IdDocument.RESIDENCE_CARD: 'residence_card'>)
    >>> id_document_kind("library card") is None
    True
    """
    text = unicodedata.normalize("NFKC", value).strip()
    key = "_".join(text.casefold().replace("-", " ").replace("'", "").split())
    try:
        return IdDocument(key)
    except ValueError:
        return ID_DOCUMENT_NAMES.get(text.replace(" ", ""))
