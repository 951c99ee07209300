"""Notice languages: which language each resident's sheet is written in, and its text.

Each language's wording lives in its own file,
``rrnet_cli/templates/notices/<language>.toml``, apart from the sheet's layout, so
an office can have it reviewed and corrected without touching code. Every file has
the same keys as the Japanese one.

The language for a resident is chosen in this order:

1. the row's ``language`` column, when it names a supported language: a tag
   (``zh-CN``, ``pt-BR``, ``fil``) or a name as a register writes it
   (``Vietnamese``, ``ネパール語``, ``中国語（繁体字）``, ``한국어``: see
   ``LANGUAGE_NAMES_WRITTEN``); when it names a language rrnet has no notice for
   (``my``, ``th``, ``Burmese``), the default, and the run counts them by language;
2. else (no language, or one rrnet does not recognise) the language of their
   nationality: a country name as residence cards print it (ベトナム, 中国, 韓国,
   朝鮮, 台湾 ...), a Japanese or English country name that pycountry knows, or an
   ISO 3166 code;
3. else the default (``--default-language``, English unless told otherwise).

``assign`` accepts in the ``language`` column exactly what :func:`is_language` does.

>>> normalise_language("ZH-tw")
'zh-Hant'
>>> language_for_nationality("ベトナム"), language_for_nationality("TWN")
('vi', 'zh-Hant')
>>> language_for_nationality("フランス") is None
True
"""

from __future__ import annotations

import gettext
import re
import string
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

# Language tags and codes people write, mapped to the supported ones (compared case-folded).
_TAG_ALIASES = {
    "jp": "ja",
    "jpn": "ja",
    "en-us": "en",
    "en-gb": "en",
    "eng": "en",
    "kor": "ko",
    "ko-kr": "ko",
    "zh": "zh-Hans",
    "zh-cn": "zh-Hans",
    "zh-sg": "zh-Hans",
    "zh-hans-cn": "zh-Hans",
    "chs": "zh-Hans",
    "cmn": "zh-Hans",
    "zho": "zh-Hans",
    "zh-tw": "zh-Hant",
    "zh-hk": "zh-Hant",
    "zh-mo": "zh-Hant",
    "zh-hant-tw": "zh-Hant",
    "cht": "zh-Hant",
    "yue": "zh-Hant",
    "es-es": "es",
    "es-mx": "es",
    "es-pe": "es",
    "spa": "es",
    "pt-br": "pt",
    "pt-pt": "pt",
    "por": "pt",
    "vi-vn": "vi",
    "vie": "vi",
    "fil": "tl",
    "tl-ph": "tl",
    "tgl": "tl",
    "ne-np": "ne",
    "nep": "ne",
    "id-id": "id",
    "ind": "id",
    "in": "id",
}

# Chinese, without saying which script (simplified, unless a bracket says otherwise).
_CHINESE = (
    *("中国語", "中文", "汉语", "漢語", "華語", "华语", "普通話", "普通话", "北京語"),
    *("標準中国語", "chinese", "mandarin", "mandarin chinese", "putonghua"),
)
# Chinese in simplified characters, however it is said.
_SIMPLIFIED = (
    *("簡体字", "簡体", "简体字", "简体", "簡化字", "简化字", "简体中文", "簡体中文"),
    *("中国語簡体字", "簡体字中国語", "中文简体", "simplified chinese", "chinese simplified"),
    "simplified",
)
# Chinese in traditional characters; Cantonese and Taiwanese are written in them.
_TRADITIONAL = (
    *("繁体字", "繁体", "繁體字", "繁體", "正體字", "正体字", "繁體中文", "繁体中文"),
    *("中国語繁体字", "繁体字中国語", "中文繁體", "中文繁体", "正體中文"),
    *("traditional chinese", "chinese traditional", "traditional"),
    *("広東語", "廣東話", "广东话", "粤語", "粵語", "cantonese", "台湾語", "臺灣話", "台湾華語"),
)

#: The names a register writes for each supported language: the Japanese names
#: municipal systems print (with 語; a variant in brackets, such as 中国語（簡体字）,
#: is understood from its parts), the English names and the language's own names.
#: Compared after NFKC (full- and half-width alike) and case-folding.
LANGUAGE_NAMES_WRITTEN: dict[str, tuple[str, ...]] = {
    "ja": ("日本語", "にほんご", "japanese", "nihongo", "日语", "일본어"),
    "en": ("英語", "えいご", "english", "英语", "영어"),
    "ko": (
        *("韓国語", "朝鮮語", "韓国・朝鮮語", "韓国朝鮮語", "韓国/朝鮮語", "コリア語", "ハングル"),
        *("korean", "한국어", "한국말", "조선어", "조선말", "韩语", "韓語", "朝鲜语"),
    ),
    "zh-Hans": (*_CHINESE, *_SIMPLIFIED),
    "zh-Hant": _TRADITIONAL,
    "es": ("スペイン語", "spanish", "español", "espanol", "castellano", "castilian", "西班牙语"),
    "pt": (
        *("ポルトガル語", "ブラジルポルトガル語", "ブラジル・ポルトガル語", "portuguese"),
        *("brazilian portuguese", "português", "portugues", "português brasileiro"),
    ),
    "vi": ("ベトナム語", "ヴェトナム語", "vietnamese", "tiếng việt", "tieng viet", "越南语"),
    "tl": (
        *("タガログ語", "フィリピノ語", "フィリピン語", "ピリピノ語", "tagalog", "filipino"),
        *("pilipino", "wikang filipino", "wikang tagalog"),
    ),
    "ne": ("ネパール語", "ネパリ語", "nepali", "nepalese", "नेपाली", "नेपाली भाषा", "尼泊尔语"),
    "id": (
        *("インドネシア語", "indonesian", "bahasa indonesia", "indonesia", "bahasa indonesian"),
        "印尼语",
    ),
}

# Where a Chinese name's bracket says which Chinese: the place, or one character.
_CHINESE_PLACES = {
    **dict.fromkeys(
        ["台湾", "臺灣", "台灣", "香港", "マカオ", "澳門", "澳门", "taiwan", "hong kong"],
        "zh-Hant",
    ),
    **dict.fromkeys(["macau", "macao", "tw", "hk", "mo", "繁", "正"], "zh-Hant"),
    **dict.fromkeys(
        ["中国", "中国大陸", "大陸", "大陆", "中国大陆", "china", "mainland", "prc", "cn"],
        "zh-Hans",
    ),
    **dict.fromkeys(["シンガポール", "新加坡", "singapore", "sg", "簡", "简"], "zh-Hans"),
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


# ISO 639-1 code of each supported language's language (Chinese: simplified by default).
_NOTICE_BY_ISO = {
    "ja": "ja",
    "en": "en",
    "ko": "ko",
    "zh": "zh-Hans",
    "es": "es",
    "pt": "pt",
    "vi": "vi",
    "tl": "tl",
    "ne": "ne",
    "id": "id",
}

# Regions whose Chinese is written in traditional characters (zh-TW, zh-HK, zh-MO).
_TRADITIONAL_REGIONS = {"tw", "hk", "mo"}

#: English name of each supported language, for messages ("no Burmese notice, English used").
LANGUAGE_NAMES = {
    "ja": "Japanese",
    "en": "English",
    "ko": "Korean",
    "zh-Hans": "Chinese (Simplified)",
    "zh-Hant": "Chinese (Traditional)",
    "es": "Spanish",
    "pt": "Portuguese",
    "vi": "Vietnamese",
    "tl": "Tagalog",
    "ne": "Nepali",
    "id": "Indonesian",
}

# A tag with subtags (th-TH, sr-Latn-RS, es-419): its first subtag is a language code.
_SUBTAGS = re.compile(r"^([a-z]{2,3})(-[a-z0-9]{1,8})+$")


@cache
def _language_index() -> dict[str, Any]:
    """Every code and name pycountry knows for a language (case-folded) -> the language.

    Codes (ISO 639-1, 639-3, 639-2/B), English names (also without
    " (macrolanguage)"), and their Japanese translations (タイ語, ビルマ語).
    """
    japanese = gettext.translation(
        "iso639-3", pycountry.LOCALES_DIR, languages=["ja"], fallback=True
    )
    index: dict[str, Any] = {}
    for language in pycountry.languages:
        for attribute in ("alpha_2", "alpha_3", "bibliographic"):
            code = getattr(language, attribute, None)
            if code:
                index.setdefault(_key(code), language)
    for language in pycountry.languages:
        names = [
            getattr(language, attribute, None)
            for attribute in ("name", "common_name", "inverted_name")
        ]
        for name in filter(None, names):
            index.setdefault(_key(name), language)
            index.setdefault(_key(name.removesuffix(" (macrolanguage)")), language)
            index.setdefault(_key(japanese.gettext(name)), language)
    return index


def _known_language(key: str) -> Any:
    """The pycountry language a case-folded tag or name means, or None.

    ``th``, ``tha``, ``Thai`` and ``タイ語`` name Thai; ``th-TH`` does through its
    first subtag.
    """
    index = _language_index()
    found = index.get(key)
    if found is None and (match := _SUBTAGS.match(key)):
        found = index.get(match.group(1))
    return found


@cache
def _written_names() -> dict[str, str]:
    """Every name in ``LANGUAGE_NAMES_WRITTEN`` (as ``_key`` makes it) -> its language."""
    return {
        _key(name): language for language, names in LANGUAGE_NAMES_WRITTEN.items() for name in names
    }


def _supported(key: str) -> str | None:
    """The supported language a whole case-folded tag or name means, or None."""
    for language in LANGUAGES:
        if key == language.casefold():
            return language
    if key in _TAG_ALIASES:
        return _TAG_ALIASES[key]
    if key in _written_names():
        return _written_names()[key]
    found = _language_index().get(key)
    return _NOTICE_BY_ISO.get(getattr(found, "alpha_2", "")) if found is not None else None


# Brackets of every kind (after NFKC) become round ones; these split a name's parts.
_BRACKETS = str.maketrans(
    dict.fromkeys("[{【〔〈《「『", "(") | dict.fromkeys("]}】〕〉》」』", ")")
)
_PARTS = re.compile(r"[()・/,、;|]+")


def _parts(key: str) -> list[str]:
    """A name's parts: what is in and outside its brackets, split at ・ / , and the like.

    >>> _parts("中国語(簡体字)"), _parts("韓国・朝鮮語"), _parts("vi")
    (['中国語', '簡体字'], ['韓国', '朝鮮語'], ['vi'])
    """
    text = " ".join(key.translate(_BRACKETS).split())
    return [part.strip() for part in _PARTS.split(text) if part.strip()]


def _by_parts(key: str) -> str | None:
    """The supported language a name with variants means, from its parts, or None.

    Each part is a name or tag (``中国語``, ``pt-BR``), or else its words are
    (``Brazilian Portuguese``); a part that names no language (``ブラジル``, ``米国``,
    ``BR``) only qualifies. The parts must name one language: Chinese in the
    script a part says (``簡体字``, ``繁體``, ``台湾``), simplified when none does.
    A value that names two languages (``英語/日本語``, ``英語/タイ語``) is not
    recognised.

    >>> _by_parts("中国語(繁体字)"), _by_parts("ポルトガル語(ブラジル)"), _by_parts("英語/日本語")
    ('zh-Hant', 'pt', None)
    """
    named, scripts = _named_in_parts(key)
    if len(named) != 1 or not isinstance(language := next(iter(named)), str):
        return None
    if language != "zh":
        return language
    return "zh-Hant" if scripts - {""} == {"zh-Hant"} else "zh-Hans"


def _named_in_parts(key: str) -> tuple[set[Any], set[str]]:
    """The languages a name's parts name (supported ones by tag, all Chinese as
    ``zh``; others as pycountry's language), and the Chinese scripts they say.

    Nothing when the name has a single part (a whole name is looked up whole).
    """
    parts = _parts(key)
    if len(parts) == 1 and " " in parts[0]:
        parts = parts[0].split()
    named: set[Any] = set()
    scripts: set[str] = set()
    if len(parts) < 2:
        return named, scripts
    for part in parts:
        words = [part] if _supported(part) else part.split()
        for word in words:
            found = _supported(word)
            if found is not None:
                named.add("zh" if found.startswith("zh") else found)
                scripts.add(_script_said(word, found))
            elif word in _CHINESE_PLACES:
                scripts.add(_CHINESE_PLACES[word])
            elif not _CODE.fullmatch(word) and (other := _known_language(word)) is not None:
                named.add(other)  # a language rrnet has no notice for (タイ語)
    return named, scripts


# A short code in a bracket (BR, US) is a region more often than a language.
_CODE = re.compile(r"[a-z]{2,3}")


def _script_said(key: str, language: str) -> str:
    """The Chinese script a name or tag of ``language`` says: "" for one that says
    none (``中国語``, ``Chinese``, ``zh``)."""
    if language == "zh-Hant":
        return language
    specific = key.startswith("zh-") or key == "chs" or key in _simplified_names()
    return language if language == "zh-Hans" and specific else ""


@cache
def _simplified_names() -> frozenset[str]:
    return frozenset(map(_key, _SIMPLIFIED))


@cache
def normalise_language(tag: str | None) -> str | None:
    """The supported language a tag means, or None (unknown, empty, or no notice).

    Besides the supported tags and the aliases people write, a tag whose first
    subtag is a supported language counts as that language (``es-419``,
    ``en-IN``; ``zh-Hant-*`` and Chinese of Taiwan, Hong Kong and Macao are
    traditional), and so does a language name or code that pycountry knows
    (``Chinese``, ``ベトナム語``, ``kor``).

    >>> normalise_language("es-419"), normalise_language("zh-Hant-HK"), normalise_language("my")
    ('es', 'zh-Hant', None)
    """
    if tag is None or not tag.strip():
        return None
    key = _key(tag).replace("_", "-")
    found = _supported(key) or _by_parts(key)
    if found is not None or not _SUBTAGS.match(key):
        return found
    first, *rest = key.split("-")
    primary = _supported(first)
    if primary == "zh-Hans":
        simplified = "hans" in rest or not ("hant" in rest or _TRADITIONAL_REGIONS & set(rest))
        return "zh-Hans" if simplified else "zh-Hant"
    return primary


@cache
def language_name(tag: str | None) -> str | None:
    """The English name of a language tag rrnet has no notice for, else None.

    ``my`` and ``th-TH`` are real languages (Burmese, Thai) that a register may
    name; their residents get the default language, and the run says so. A
    supported tag, or a string that names no language, gives None.

    >>> language_name("my"), language_name("th-TH"), language_name("vi"), language_name("xx")
    ('Burmese', 'Thai', None, None)
    >>> language_name("Burmese"), language_name("タイ語"), language_name("ms")
    ('Burmese', 'Thai', 'Malay')
    """
    if tag is None or not tag.strip() or normalise_language(tag) is not None:
        return None
    key = _key(tag).replace("_", "-")
    found = _known_language(key)
    if found is None:  # ビルマ語（ミャンマー）
        named = _named_in_parts(key)[0]
        found = next(iter(named)) if len(named) == 1 else None
    return str(found.name).removesuffix(" (macrolanguage)") if found is not None else None


def is_language(tag: str | None) -> bool:
    """Whether ``tag`` names a language: one with a notice, or one rrnet knows without one."""
    return normalise_language(tag) is not None or language_name(tag) is not None


def english_name(language: str) -> str:
    """The English name of a supported language (``en`` -> ``English``)."""
    return LANGUAGE_NAMES.get(language, language)


#: ``languages_without_notice``'s name for values that name no language rrnet knows
#: (``ไทย``, a typo) of residents whose nationality gives none either: their notice
#: is in the default language. The value itself is not repeated, as it may be anything.
NOT_RECOGNISED = "not recognised"
#: ... and of residents whose notice is in their nationality's language instead.
NOT_RECOGNISED_NATIONALITY = "not recognised, nationality's language"


def _without_notice(tag: str | None) -> str | None:
    """The name a row's language is counted under when it has no notice, else None."""
    if tag is None or not tag.strip() or normalise_language(tag) is not None:
        return None
    return language_name(tag) or NOT_RECOGNISED


def languages_without_notice(frame: pl.DataFrame) -> dict[str, int]:
    """Residents per language named in ``language`` that has no notice (e.g. Burmese: 23);
    those whose value names no language rrnet knows under ``NOT_RECOGNISED``, or
    ``NOT_RECOGNISED_NATIONALITY`` when their nationality's language is used.

    Most residents first, then by name.
    """
    import polars as pl

    if "language" not in frame.columns:
        return {}
    names = map_distinct(frame["language"], _without_notice)
    if "nationality" in frame.columns:
        by_nationality = map_distinct(frame["nationality"], language_for_nationality)
        names = pl.select(
            pl.when((names == NOT_RECOGNISED) & by_nationality.is_not_null())
            .then(pl.lit(NOT_RECOGNISED_NATIONALITY))
            .otherwise(names)
        ).to_series()
    counts = names.drop_nulls().value_counts().iter_rows()
    return dict(sorted(counts, key=lambda kv: (-kv[1], kv[0])))


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

    A row whose ``language`` names a language with no notice (``my``) gets the
    default, whatever its nationality (the resident reads neither). One whose
    ``language`` names none rrnet recognises (``ไทย``, a typo) gets its
    nationality's language, else the default. A language cell never blocks a
    notice, and the run counts such rows (``languages_without_notice``). Works per
    distinct value, so a million rows cost a few hundred lookups.
    """
    import polars as pl  # here, so that rendering workers never load Polars

    chosen_default = normalise_language(default)
    if chosen_default is None:
        raise UsageError(
            f"Unknown default language {default!r}; use one of {', '.join(LANGUAGES)}."
        )
    by_row = pl.repeat(None, frame.height, dtype=pl.String, eager=True)
    if "language" in frame.columns:
        by_row = map_distinct(
            frame["language"],
            lambda tag: normalise_language(tag) or (chosen_default if language_name(tag) else None),
        )
    by_nationality = pl.repeat(None, frame.height, dtype=pl.String, eager=True)
    if "nationality" in frame.columns:
        by_nationality = map_distinct(frame["nationality"], language_for_nationality)
    return by_row.fill_null(by_nationality).fill_null(chosen_default).alias("language")


def map_distinct(
    column: pl.Series, lookup: Callable[[str], Any], return_dtype: Any = None
) -> pl.Series:
    """``lookup`` applied once per distinct value of ``column`` (nulls stay null).

    ``return_dtype`` is the result's Polars type (text unless told).
    """
    import polars as pl

    values = column.cast(pl.String)
    distinct = values.drop_nulls().unique().to_list()
    mapping = {value: lookup(value) for value in distinct}
    return values.replace_strict(mapping, default=None, return_dtype=return_dtype or pl.String)


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
    #: Wording of the change notice (住民票コード変更通知書).
    change: dict[str, str]


#: The sections a notice file has, each with the same keys as ja.toml.
NOTICE_SECTIONS = ("meta", "text", "labels", "change")


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
    for section in NOTICE_SECTIONS:
        if not isinstance(data.get(section, {}), dict):
            raise UsageError(f"{path}: [{section}] must be a table.")
        want = set(reference.get(section, {}))
        have = set(data.get(section, {}))
        if want != have:
            missing = ", ".join(sorted(want - have)) or "-"
            extra = ", ".join(sorted(have - want)) or "-"
            raise UsageError(
                f"{path}: [{section}] must have the same keys as ja.toml "
                f"(missing: {missing}; unexpected: {extra})."
            )
        values = data.get(section, {})
        empty = [k for k, v in values.items() if not isinstance(v, str) or not v.strip()]
        if empty:
            raise UsageError(f"{path}: [{section}] has empty values: {', '.join(empty)}.")
        for key, value in values.items():
            if (section, key) != ("labels", "page"):  # checked on its own, below
                _check_placeholders(path, f"{section}.{key}", value, reference[section][key])
    meta = data["meta"]
    if meta["language"] != language:
        raise UsageError(f"{path}: meta.language is {meta['language']!r}, not {language!r}.")
    _check_page_label(path, data["labels"].get("page"))
    return NoticeText(
        language=language,
        name=meta["name"],
        html_lang=meta["html_lang"],
        font=meta["font"],
        text=dict(data["text"]),
        labels=dict(data["labels"]),
        change=dict(data.get("change", {})),
    )


def placeholders(text: str) -> set[str]:
    """The ``{name}`` fields of a wording (``{{`` and ``}}`` are literal braces).

    >>> sorted(placeholders("Page {page} of {pages}"))
    ['page', 'pages']
    >>> placeholders("{{not one}}")
    set()
    """
    return {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}


def _check_placeholders(path: Path, key: str, value: str, reference: object) -> None:
    """A translation fills in exactly the fields the Japanese wording does: a field
    left out drops a value from the sheet, an unknown one stops the run mid-print."""
    try:
        have = placeholders(value)
    except ValueError as exc:
        raise UsageError(f"{path}: {key} has a stray brace ({exc}).") from None
    want = placeholders(reference) if isinstance(reference, str) else set()
    if have != want:
        shown = ", ".join(f"{{{name}}}" for name in sorted(want)) or "no {…} fields"
        raise UsageError(f"{path}: {key} must have the fields ja.toml has: {shown}.")


def _check_page_label(path: Path, page: object) -> None:
    """labels.page must say "{page}" and "{pages}", and nothing else in braces."""
    if not isinstance(page, str) or "{page}" not in page or "{pages}" not in page:
        raise UsageError(f'{path}: labels.page must contain both "{{page}}" and "{{pages}}".')
    try:
        page.format(page=1, pages=1)
    except (KeyError, IndexError, ValueError) as exc:
        raise UsageError(
            f'{path}: labels.page has braces other than "{{page}}" and "{{pages}}": {exc!r}.'
        ) from None


def load_notices(folder: Path = NOTICES) -> dict[str, NoticeText]:
    """Every supported language's notice text, checked."""
    return {language: load_notice(language, folder) for language in LANGUAGES}
