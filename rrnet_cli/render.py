"""Rendering notification sheets to PDF: the part that runs in worker processes.

Kept apart from ``notify`` so that a worker imports only Jinja2, WeasyPrint and
the notice texts, not Polars or Arrow: that keeps each worker's memory down
(about 70 MB less) when thousands of sheets are printed.
"""

from __future__ import annotations

import mimetypes
import os
import signal
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import jinja2

from rrnet_cli.errors import RrnetError
from rrnet_cli.files import PRIVATE_FILE
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
            raise SheetsOverflow(self._overflowing(sheets))
        return document

    def _overflowing(self, sheets: list[dict[str, Any]]) -> list[str]:
        """The resident_ids of the sheets that need more than one page (slow: one by one)."""
        from weasyprint import HTML

        found = []
        for sheet in sheets:
            html = HTML(
                string=self.html([sheet]),
                base_url=str(self.templates) + "/",
                url_fetcher=self.fetcher,
            )
            pages = html.render(stylesheets=self.stylesheets, font_config=self.font_config).pages
            if len(pages) != 1:
                found.append(str(sheet["resident_id"]))
        return found


class SheetsOverflow(RrnetError):
    """Sheets whose values are too long for one page; nothing is printed.

    Raised in a worker process and re-raised in the parent, so it pickles with
    its one argument: the resident_ids (office numbers, not personal data).
    """

    def __init__(self, resident_ids: list[str]) -> None:
        shown = ", ".join(resident_ids[:20]) + (" ..." if len(resident_ids) > 20 else "")
        super().__init__(
            f"{len(resident_ids)} sheet(s) would not fit on one A4 page, because a name, "
            f"alias or address is too long for the layout (resident_id {shown}). No sheet "
            "was printed. Shorten those values in the register (or print them by hand) "
            "and run notify again."
        )
        self.resident_ids = resident_ids

    def __reduce__(self) -> tuple[Any, ...]:
        return (SheetsOverflow, (self.resident_ids,))


_WORKER: SheetRenderer | None = None


def _init_worker(profile: Profile, notice_date: str, templates: str, worker: bool = True) -> None:
    """Build this process's renderer; a worker process leaves Ctrl-C to its parent.

    The parent cancels the batches not yet started, waits for the running ones
    and removes every partial file; a worker that died of the same SIGINT
    would only print a traceback and break the pool.
    """
    global _WORKER
    if worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER = SheetRenderer(profile, notice_date, Path(templates))


def _render_batch(task: tuple[list[dict[str, Any]], str, str | None]) -> int:
    """Render one batch to ``path`` (and one file per resident into ``per_dir``)."""
    sheets, path, per_dir = task
    assert _WORKER is not None
    document = _WORKER.document(sheets)
    _write_private(Path(path), document.write_pdf())
    if per_dir is not None:
        for index, sheet in enumerate(sheets):
            target = Path(per_dir) / f".{sheet['resident_id']}.pdf.part"
            _write_private(target, document.copy([document.pages[index]]).write_pdf())
    return len(sheets)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
