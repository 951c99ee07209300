"""Notice languages: which language each resident's sheet is written in, and its text.

Each language's wording lives in its own file,
``rrnet_cli/templates/notices/<language>.toml``, apart from the sheet's layout, so
an office can have it reviewed and corrected without touching code. Every file has
the same keys as the Japanese one.

The language for a resident is chosen in this order:

1. the row's ``language`` column, when it names a supported language
   (``zh-CN``, ``pt-BR``, ``fil`` and similar tags are understood);
2. else the language of their nationality: a country name as residence cards
   print it (ベトナム, 中国, 韓国, 朝鮮, 台湾 ...), a Japanese or English country
   name that pycountry knows, or an ISO 3166 code;
3. else the default (``--default-language``, English unless told otherwise).

>>> normalise_language("ZH-tw")
'zh-Hant'
>>> language_for_nationality("ベトナム"), language_for_nationality("TWN")
('vi', 'zh-Hant')
>>> language_for_nationality("フランス") is None
True
"""

from __future__ import annotations

import gettext
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pycountry

from rrnet_cli.errors import RrnetError, UsageError
from rrnet_cli.schema import LANGUAGES

if TYPE_CHECKING:
    import polars as pl


def _template_folder() -> Path:
    """The package's ``templates`` folder as a real directory on disk.

    It ships inside the package (so the wheel carries it) and is found through
    ``importlib.resources``, whatever the install. Jinja's FileSystemLoader and
    WeasyPrint's restricted fetcher need a real folder, so a package imported
    from a zip file is refused with a clear message.
    """
    resource = files("rrnet_cli") / "templates"
    folder = Path(str(resource))
    if not folder.is_dir():
        raise RrnetError(
            f"rrnet's template folder is not a directory on disk ({resource}). "
            "Install rrnet with pip as a regular (not zipped) package, or reinstall it."
        )
    return folder.resolve()


#: The package's template folder (layout, notice texts, styles): the one place it is defined.
TEMPLATES = _template_folder()
NOTICES = TEMPLATES / "notices"
DEFAULT_LANGUAGE = "en"

# Language tags people write, mapped to the supported ones (compared case-folded).
_TAG_ALIASES = {
    "jp": "ja",
    "jpn": "ja",
    "japanese": "ja",
    "日本語": "ja",
    "en-us": "en",
    "en-gb": "en",
    "eng": "en",
    "english": "en",
    "kor": "ko",
    "ko-kr": "ko",
    "korean": "ko",
    "한국어": "ko",
    "韓国語": "ko",
    "zh": "zh-Hans",
    "zh-cn": "zh-Hans",
    "zh-sg": "zh-Hans",
    "zh-hans-cn": "zh-Hans",
    "chs": "zh-Hans",
    "zho": "zh-Hans",
    "中国語": "zh-Hans",
    "简体中文": "zh-Hans",
    "zh-tw": "zh-Hant",
    "zh-hk": "zh-Hant",
    "zh-mo": "zh-Hant",
    "zh-hant-tw": "zh-Hant",
    "cht": "zh-Hant",
    "繁體中文": "zh-Hant",
    "es-es": "es",
    "es-mx": "es",
    "es-pe": "es",
    "spa": "es",
    "spanish": "es",
    "español": "es",
    "pt-br": "pt",
    "pt-pt": "pt",
    "por": "pt",
    "portuguese": "pt",
    "português": "pt",
    "vi-vn": "vi",
    "vie": "vi",
    "vietnamese": "vi",
    "tiếng việt": "vi",
    "fil": "tl",
    "tl-ph": "tl",
    "tgl": "tl",
    "tagalog": "tl",
    "filipino": "tl",
    "ne-np": "ne",
    "nep": "ne",
    "nepali": "ne",
    "नेपाली": "ne",
    "id-id": "id",
    "ind": "id",
    "in": "id",
    "indonesian": "id",
    "bahasa indonesia": "id",
}

# Country (ISO 3166-1 alpha-2) to notice language; others get the default.
_COUNTRY_LANGUAGE = {
    "JP": "ja",
    "VN": "vi",
    "CN": "zh-Hans",
    "SG": "zh-Hans",
    "TW": "zh-Hant",
    "HK": "zh-Hant",
    "MO": "zh-Hant",
    "KR": "ko",
    "KP": "ko",
    "BR": "pt",
    "PT": "pt",
    "AO": "pt",
    "MZ": "pt",
    "CV": "pt",
    "GW": "pt",
    "ST": "pt",
    "PH": "tl",
    "NP": "ne",
    "ID": "id",
    **dict.fromkeys(
        [
            "ES",
            "MX",
            "PE",
            "AR",
            "BO",
            "CL",
            "CO",
            "EC",
            "PY",
            "UY",
            "VE",
            "CU",
            "DO",
            "GT",
            "HN",
            "NI",
            "PA",
            "SV",
            "CR",
            "PR",
            "GQ",
        ],
        "es",
    ),
}

# Names printed on residence cards that differ from pycountry's Japanese names.
_RESIDENCE_CARD_NAMES = {
    "韓国": "KR",
    "朝鮮": "KP",
    "台湾": "TW",
    "中国": "CN",
    "香港": "HK",
    "マカオ": "MO",
    "米国": "US",
    "アメリカ": "US",
    "アメリカ合衆国": "US",
    "英国": "GB",
    "イギリス": "GB",
    "ベトナム": "VN",
    "ブラジル": "BR",
    "フィリピン": "PH",
    "ネパール": "NP",
    "インドネシア": "ID",
    "ペルー": "PE",
    "ボリビア": "BO",
    "アルゼンチン": "AR",
    "メキシコ": "MX",
    "スペイン": "ES",
    "ポルトガル": "PT",
    "日本": "JP",
}


def _key(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip().casefold()


def normalise_language(tag: str | None) -> str | None:
    """The supported language a tag means, or None (unknown or empty)."""
    if tag is None or not tag.strip():
        return None
    key = _key(tag).replace("_", "-")
    for language in LANGUAGES:
        if key == language.casefold():
            return language
    return _TAG_ALIASES.get(key)


@cache
def _country_names() -> dict[str, str]:
    """Every name we recognise for a country (case-folded) -> alpha-2 code."""
    japanese = gettext.translation(
        "iso3166-1", pycountry.LOCALES_DIR, languages=["ja"], fallback=True
    )
    names: dict[str, str] = {}
    for country in pycountry.countries:
        code = country.alpha_2
        english = [
            country.name,
            getattr(country, "official_name", None),
            getattr(country, "common_name", None),
        ]
        for name in english:
            if name:
                names[_key(name)] = code
                # Japanese translation, e.g. "大韓民国 (韓国)": both forms count.
                translated = japanese.gettext(name)
                for part in translated.replace("（", "(").replace("）", ")").split("("):
                    part = part.strip(" )")
                    if part:
                        names.setdefault(_key(part), code)
        names[_key(country.alpha_2)] = code
        names[_key(country.alpha_3)] = code
    names.update({_key(k): v for k, v in _RESIDENCE_CARD_NAMES.items()})
    return names


def country_of(nationality: str | None) -> str | None:
    """ISO 3166-1 alpha-2 code for a nationality as written in a register, or None."""
    if nationality is None or not nationality.strip():
        return None
    return _country_names().get(_key(nationality))


def language_for_nationality(nationality: str | None) -> str | None:
    """The notice language for people of this nationality, or None (use the default)."""
    country = country_of(nationality)
    return _COUNTRY_LANGUAGE.get(country) if country else None


def choose_languages(frame: pl.DataFrame, default: str = DEFAULT_LANGUAGE) -> pl.Series:
    """Each row's notice language: its ``language``, else its nationality's, else default.

    Works per distinct value, so a million rows cost a few hundred lookups.
    """
    import polars as pl  # here, so that rendering workers never load Polars

    chosen_default = normalise_language(default)
    if chosen_default is None:
        raise UsageError(
            f"Unknown default language {default!r}; use one of {', '.join(LANGUAGES)}."
        )
    by_row = pl.repeat(None, frame.height, dtype=pl.String, eager=True)
    if "language" in frame.columns:
        by_row = _map_distinct(frame["language"], normalise_language)
    by_nationality = pl.repeat(None, frame.height, dtype=pl.String, eager=True)
    if "nationality" in frame.columns:
        by_nationality = _map_distinct(frame["nationality"], language_for_nationality)
    return by_row.fill_null(by_nationality).fill_null(chosen_default).alias("language")


def _map_distinct(column: pl.Series, lookup: Callable[[str], str | None]) -> pl.Series:
    import polars as pl

    values = column.cast(pl.String)
    distinct = values.drop_nulls().unique().to_list()
    mapping = {value: lookup(value) for value in distinct}
    return values.replace_strict(mapping, default=None, return_dtype=pl.String)


# ---------------------------------------------------------------------------
# Notice texts


@dataclass(frozen=True)
class NoticeText:
    """One language's wording for the notification sheet."""

    language: str
    name: str
    html_lang: str
    font: str
    text: dict[str, str]
    labels: dict[str, str]


def _read_notice(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"No notice text at {path}.") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"Notice text {path} is not valid TOML: {exc}") from None


def load_notice(language: str, folder: Path = NOTICES) -> NoticeText:
    """Read and check one language's notice file against the Japanese reference."""
    path = folder / f"{language}.toml"
    data = _read_notice(path)
    reference = _read_notice(folder / "ja.toml")
    for section in ("meta", "text", "labels"):
        want = set(reference.get(section, {}))
        have = set(data.get(section, {}))
        if want != have:
            missing = ", ".join(sorted(want - have)) or "-"
            extra = ", ".join(sorted(have - want)) or "-"
            raise UsageError(
                f"{path}: [{section}] must have the same keys as ja.toml "
                f"(missing: {missing}; unexpected: {extra})."
            )
        empty = [k for k, v in data[section].items() if not isinstance(v, str) or not v.strip()]
        if empty:
            raise UsageError(f"{path}: [{section}] has empty values: {', '.join(empty)}.")
    meta = data["meta"]
    if meta["language"] != language:
        raise UsageError(f"{path}: meta.language is {meta['language']!r}, not {language!r}.")
    return NoticeText(
        language=language,
        name=meta["name"],
        html_lang=meta["html_lang"],
        font=meta["font"],
        text=dict(data["text"]),
        labels=dict(data["labels"]),
    )


def load_notices(folder: Path = NOTICES) -> dict[str, NoticeText]:
    """Every supported language's notice text, checked."""
    return {language: load_notice(language, folder) for language in LANGUAGES}
