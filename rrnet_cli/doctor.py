"""``rrnet doctor``: is this machine ready to print notification sheets?

Sheets are rendered by WeasyPrint, which needs from the operating system:

- Pango (text layout), 1.44 or newer;
- HarfBuzz's subsetting library. Without it WeasyPrint quietly falls back to
  fontTools for font subsetting, and one sheet with Japanese text takes about
  6.7 s instead of about 0.12 s (measured on this project's 2-core machine);
- a font made for each notice language (``meta.font`` in its notice file)
  that has a glyph for every character of that file's wording.

Each failed check says the exact Debian command that fixes it. With a register
export (``--register``), doctor also reports the scripts its residents' names
and addresses are written in that none of the form's fonts covers (Arabic,
say): each script with example code points and the number of residents
affected, never a name.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import shutil
import subprocess
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rrnet_cli.languages import NOTICES, NoticeText, load_notices

if TYPE_CHECKING:
    import polars as pl

    from rrnet_cli.form import GlyphCheck

#: Debian packages behind each check (what `apt-get install` needs).
PANGO_PACKAGES = ("libpango-1.0-0", "libpangoft2-1.0-0")
HARFBUZZ_PACKAGES = ("libharfbuzz-subset0",)
FONT_PACKAGES = {
    "Noto Sans": "fonts-noto-core",
    "Noto Sans Devanagari": "fonts-noto-core",
    "Noto Sans CJK JP": "fonts-noto-cjk",
    "Noto Sans CJK SC": "fonts-noto-cjk",
    "Noto Sans CJK TC": "fonts-noto-cjk",
    "Noto Sans CJK KR": "fonts-noto-cjk",
}
MIN_PANGO = (1, 44)


@dataclass
class Check:
    """One readiness check."""

    name: str
    ok: bool
    detail: str
    packages: tuple[str, ...] = ()

    @property
    def fix(self) -> str | None:
        if self.ok or not self.packages:
            return None
        return "apt-get install -y " + " ".join(self.packages)


@dataclass
class UncoveredScript:
    """A script a register's names are written in that no font of the form has."""

    #: the script's name (``Arabic``)
    script: str
    #: some of its characters found, as code points (``U+0645``)
    examples: list[str]
    #: residents with a name or address in it (their sheets cannot be printed)
    residents: int
    #: installed font families that have its first example (for the layout's [fonts])
    installed_fonts: list[str]

    def detail(self) -> str:
        fonts = (
            f"installed in {', '.join(self.installed_fonts[:3])}: add one to the layout's "
            "[fonts] values"
            if self.installed_fonts
            else "no installed font has it"
        )
        return (
            f"{self.script} ({' '.join(self.examples)}): {self.residents} resident(s); "
            f"no font of the form has it, {fonts}"
        )


@dataclass
class DoctorReport:
    """All checks, and the one command that installs everything missing."""

    checks: list[Check]
    #: with a register: the scripts of its names that no font of the form covers
    scripts: list[UncoveredScript] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def fix(self) -> str | None:
        missing = sorted({p for c in self.checks if not c.ok for p in c.packages})
        return "apt-get install -y " + " ".join(missing) if missing else None

    def summary_rows(self) -> list[tuple[str, Any]]:
        return [
            (check.name, f"{'ok' if check.ok else 'MISSING'}: {check.detail}")
            for check in self.checks
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "fix": self.fix,
            "checks": [{**asdict(c), "fix": c.fix} for c in self.checks],
            "scripts": [asdict(s) for s in self.scripts],
        }


def _load(name: str) -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def check_pango() -> Check:
    """Pango is present and new enough for WeasyPrint."""
    pango = _load("libpango-1.0.so.0")
    if pango is None:
        return Check("Pango", False, "libpango-1.0 is not installed", PANGO_PACKAGES)
    pango.pango_version_string.restype = ctypes.c_char_p
    version = pango.pango_version_string().decode()
    parts = tuple(int(p) for p in version.split(".")[:2])
    if parts < MIN_PANGO:
        return Check("Pango", False, f"Pango {version} is older than 1.44", PANGO_PACKAGES)
    if _load("libpangoft2-1.0.so.0") is None:
        return Check("Pango", False, f"Pango {version} without PangoFT2", PANGO_PACKAGES)
    return Check("Pango", True, f"Pango {version}")


def check_harfbuzz_subset() -> Check:
    """HarfBuzz font subsetting is available (else sheets render ~60x slower)."""
    subset = _load("libharfbuzz-subset.so.0")
    harfbuzz = _load("libharfbuzz.so.0")
    if subset is None or harfbuzz is None or not hasattr(subset, "hb_subset_or_fail"):
        return Check(
            "HarfBuzz subsetting",
            False,
            "libharfbuzz-subset is missing: WeasyPrint would fall back to fontTools, "
            "about 60x slower per sheet",
            HARFBUZZ_PACKAGES,
        )
    harfbuzz.hb_version_string.restype = ctypes.c_char_p
    version = harfbuzz.hb_version_string().decode()
    if not harfbuzz.hb_version_atleast(4, 1, 0):
        return Check(
            "HarfBuzz subsetting", False, f"HarfBuzz {version} is older than 4.1", HARFBUZZ_PACKAGES
        )
    return Check("HarfBuzz subsetting", True, f"HarfBuzz {version} with hb-subset")


def font_file(family: str) -> tuple[Path, int] | None:
    """The file (and index in a collection) fontconfig uses for ``family``, if installed.

    fontconfig always answers with *some* font; the answer counts only when its
    family is the one asked for.
    """
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        return None
    out = subprocess.run(
        [fc_match, "--format=%{family}\n%{file}\n%{index}", family],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split("\n")
    if len(out) < 3 or family not in [f.strip() for f in out[0].split(",")]:
        return None
    return Path(out[1]), int(out[2] or 0)


def missing_characters(notice: NoticeText, font: tuple[Path, int]) -> list[str]:
    """Characters of the notice's wording that the font has no glyph for."""
    from fontTools.ttLib import TTFont  # WeasyPrint's own dependency

    path, index = font
    with TTFont(path, fontNumber=index, lazy=True) as ttfont:
        cmap = ttfont.getBestCmap() or {}
    wording = "".join(
        [notice.name, *notice.text.values(), *notice.labels.values(), *notice.change.values()]
    )
    # "{page}/{pages}" is filled in with digits: its placeholder names are never printed.
    wording = re.sub(r"\{pages?\}", "", wording)
    return sorted({ch for ch in wording if not ch.isspace() and ord(ch) not in cmap})


def check_fonts(notices: dict[str, NoticeText]) -> list[Check]:
    """One check per language: its font is installed and covers all its wording."""
    checks = []
    for language, notice in notices.items():
        package = FONT_PACKAGES.get(notice.font)
        packages = (package,) if package else ()
        name = f"Font for {language} ({notice.font})"
        font = font_file(notice.font)
        if font is None:
            checks.append(Check(name, False, "not installed", packages))
            continue
        missing = missing_characters(notice, font)
        if missing:
            shown = "".join(missing[:20])
            checks.append(
                Check(
                    name,
                    False,
                    f"{len(missing)} characters of {NOTICES.name}/{language}.toml have no glyph: "
                    f"{shown}",
                    packages,
                )
            )
        else:
            checks.append(Check(name, True, f"{font[0].name} covers every character"))
    return checks


#: The register's columns a sheet prints in the form's value fonts.
PRINTED_TEXT_COLUMNS = ("name", "name_kanji", "alias", "address")
#: Code points shown per script.
EXAMPLES = 5


def uncovered_scripts(frame: pl.DataFrame, check: GlyphCheck) -> list[UncoveredScript]:
    """The scripts of ``frame``'s printed text that no font of the form has, most
    residents first. Each distinct value is looked at once; the count of residents
    is one vectorised pass per script."""
    import polars as pl

    from rrnet_cli.form import code_point, is_variation_selector, script_of

    columns = [c for c in PRINTED_TEXT_COLUMNS if c in frame.columns]
    missing: dict[str, set[str]] = {}
    for column in columns:
        for value in frame[column].cast(pl.String).drop_nulls().unique().to_list():
            for char in set(value):
                category = unicodedata.category(char)
                if (
                    char.isspace()
                    or category in ("Cf", "Cc")
                    or is_variation_selector(ord(char))
                    or check.covers(ord(char))
                ):
                    continue
                script = "private use (外字)" if category == "Co" else script_of(char)
                missing.setdefault(script, set()).add(char)
    found = []
    for script, chars in missing.items():
        pattern = "[" + "".join(re.escape(c) for c in sorted(chars)) + "]"
        affected = frame.select(
            pl.any_horizontal(
                pl.col(c).cast(pl.String).str.contains(pattern).fill_null(False) for c in columns
            ).sum()
        ).item()
        examples = sorted(chars)[:EXAMPLES]
        found.append(
            UncoveredScript(
                script,
                [code_point(c) for c in examples],
                int(affected),
                fonts_with(examples[0]),
            )
        )
    return sorted(found, key=lambda s: (-s.residents, s.script))


def fonts_with(char: str) -> list[str]:
    """Installed font families (fontconfig) with a glyph for ``char``."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return []
    out = subprocess.run(
        [fc_list, f":charset={ord(char):x}", "family"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return sorted({line.split(",")[0].strip() for line in out.splitlines() if line.strip()})


def check_register(
    path: Path,
    *,
    encoding: str = "auto",
    sheet: str | None = None,
    delimiter: str = "auto",
    mapping: dict[str, str] | None = None,
) -> tuple[Check, list[UncoveredScript]]:
    """Whether the form's fonts cover every script of a register export's names.

    The export is read as ``assign`` reads it; the check names scripts, code
    points and counts of residents, never a name.
    """
    from rrnet_cli.form import GlyphCheck, load_layout
    from rrnet_cli.ingest import read_export

    export = read_export(path, encoding=encoding, sheet=sheet, delimiter=delimiter, mapping=mapping)
    scripts = uncovered_scripts(export.frame, GlyphCheck(load_layout().fonts))
    name = f"Scripts of {export.path.name}"
    if not scripts:
        return Check(name, True, "the form's fonts cover every name and address"), scripts
    return Check(name, False, "; ".join(s.detail() for s in scripts)), scripts


def run_doctor(register: Path | None = None, **reading: Any) -> DoctorReport:
    """Every check, in the order a person would fix them; with ``register``, also
    the scripts of its names that the form's fonts do not cover (``check_register``;
    ``reading`` are its encoding, sheet, delimiter and mapping)."""
    report = DoctorReport([check_pango(), check_harfbuzz_subset(), *check_fonts(load_notices())])
    if register is not None:
        check, report.scripts = check_register(register, **reading)
        report.checks.append(check)
    return report
