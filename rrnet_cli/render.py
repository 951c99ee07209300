"""The restricted URL fetcher every WeasyPrint rendering uses, and the flowing sheet.

``make_fetcher`` serves WeasyPrint only the files of the template folder: the
fixed form (``rrnet_cli.form``), which notify prints with, builds its renderers
on it.

``SheetRenderer`` is the sheet as rrnet first printed it: one flowing HTML
document laid out whole for every resident (``templates/sheet.html.j2``). notify
no longer prints with it; it is kept as the naive baseline that
``benchmarks/bench_notify.py`` and ``benchmarks/bench_form.py`` measure the form
against. This module imports no Polars or Arrow, so worker processes stay small.
"""

from __future__ import annotations

import mimetypes
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import jinja2

from rrnet_cli.errors import RrnetError
from rrnet_cli.languages import TEMPLATES, NoticeText, load_notices
from rrnet_cli.profile import Profile

SHEET_TEMPLATE = "sheet.html.j2"
SHEET_CSS = "sheet.css"


def make_fetcher(root: Path = TEMPLATES) -> Any:
    """A WeasyPrint URL fetcher serving only regular files inside ``root``.

    Links are resolved first, so neither ``..`` nor a symlink leads out. No
    other scheme is served: no network, no ``data:``. Its ``requests`` list
    records every URL asked for, served or refused, for tests and audits. Built
    here rather than at import so that the module loads without WeasyPrint.
    """
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    base = Path(root).resolve(strict=True)

    class _Fetcher(URLFetcher):
        def __init__(self) -> None:
            super().__init__()
            self.requests: list[str] = []

        def fetch(self, url: str, headers: Any = None) -> Any:
            self.requests.append(url)
            parts = urllib.parse.urlsplit(url)
            if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
                raise ValueError(f"refused: only the template folder may be read ({url})")
            path = Path(urllib.request.url2pathname(parts.path)).resolve()
            if not path.is_relative_to(base) or not path.is_file():
                raise ValueError(f"refused: outside the template folder ({url})")
            kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            return URLFetcherResponse(path.as_uri(), path.read_bytes(), {"Content-Type": kind})

    return _Fetcher()


def _fonts_css(notices: dict[str, NoticeText]) -> str:
    """Each language set in its own font (CJK in its regional forms, Devanagari ...).

    Class selectors, not ``:lang()``: WeasyPrint indexes classes, and matching
    eleven ``:lang()`` rules against every element costs a visible share of
    layout time at thousands of pages.
    """
    rules = []
    for notice in notices.values():
        family = f'"{notice.font}", "Noto Sans", sans-serif'
        rules.append(f".lang-{notice.language} {{ font-family: {family}; }}")
    return "\n".join(rules)


class SheetRenderer:
    """Renders batches of sheets to PDF; build one per process and reuse it."""

    def __init__(self, profile: Profile, notice_date: str, templates: Path = TEMPLATES) -> None:
        from weasyprint import CSS
        from weasyprint.text.fonts import FontConfiguration

        self.templates = Path(templates)
        self.profile = profile
        self.notice_date = notice_date
        self.notices = load_notices(self.templates / "notices")
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(self.templates),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.template = self.env.get_template(SHEET_TEMPLATE)
        self.font_config = FontConfiguration()
        self.fetcher = make_fetcher(self.templates)
        self.stylesheets = [
            CSS(
                filename=str(self.templates / SHEET_CSS),
                font_config=self.font_config,
                url_fetcher=self.fetcher,
            ),
            CSS(
                string=_fonts_css(self.notices),
                font_config=self.font_config,
                url_fetcher=self.fetcher,
            ),
        ]

    def html(self, sheets: list[dict[str, Any]]) -> str:
        ja = self.notices["ja"]
        return self.template.render(
            sheets=sheets,
            ja=ja,
            profile=self.profile,
            notice_date=self.notice_date,
            notice_date_label=ja.labels["notice_date"],
        )

    def document(self, sheets: list[dict[str, Any]]) -> Any:
        """A laid-out WeasyPrint document, one page per sheet."""
        from weasyprint import HTML

        html = HTML(
            string=self.html(sheets), base_url=str(self.templates) + "/", url_fetcher=self.fetcher
        )
        document = html.render(stylesheets=self.stylesheets, font_config=self.font_config)
        if len(document.pages) != len(sheets):
            raise RrnetError(
                f"the flowing sheet needed {len(document.pages)} pages for {len(sheets)} sheets"
            )
        return document
