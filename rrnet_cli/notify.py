"""Resident Record Code Notification Sheets (住民票コード通知票): ``rrnet notify``.

From an assigned register, render one A4 sheet per resident who got a new code
(Jinja2 -> HTML -> WeasyPrint -> PDF), in Japanese and in the resident's
language, as print-ready batches sorted for mailing, plus a manifest that says
which file and page carries each resident.

Safety: the template autoescapes with StrictUndefined, so a name such as
``<img src="file:///etc/passwd">`` prints literally; and WeasyPrint's URL
fetcher serves only files under ``rrnet_cli/templates/`` (no other file, no network, no
``data:``), so even a template mistake cannot pull anything else in.

Speed: a document of many pages renders far faster per sheet than one document
per sheet, so sheets are rendered in batches; each worker process parses the CSS
and builds its FontConfiguration once and renders whole batches.
"""

from __future__ import annotations

import os
import time
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import polars as pl

from rrnet_cli import code as rcode
from rrnet_cli.dates import parse_dates
from rrnet_cli.errors import InputRowsError, UsageError
from rrnet_cli.files import PRIVATE_DIR, write_table
from rrnet_cli.ingest import (
    code_errors,
    describe_errors,
    read_export,
    require_columns,
)
from rrnet_cli.languages import (
    TEMPLATES,
    NoticeText,
    choose_languages,
    english_name,
    languages_without_notice,
    load_notices,
    normalise_language,
)
from rrnet_cli.ledger import LedgerStore
from rrnet_cli.profile import Profile
from rrnet_cli.progress import QUIET, Steps
from rrnet_cli.render import _init_worker, _render_batch
from rrnet_cli.schema import BIRTH_TEXT, FEMALE, MALE, ROW, CodeStatus

_SAFE_ID = r"^[0-9A-Za-z_-]{1,64}$"


# ---------------------------------------------------------------------------
# Building the sheets' data (frames in, plain dicts out)


def _sex(value: str | None, notice: NoticeText, ja: NoticeText) -> str:
    text = unicodedata.normalize("NFKC", value or "").strip()
    if text in MALE:
        key = "male"
    elif text in FEMALE:
        key = "female"
    else:
        return text
    if notice.language == "ja":
        return ja.labels[key]
    return f"{ja.labels[key]} / {notice.labels[key]}"


def _checked_codes(frame: pl.DataFrame, source: Path) -> pl.DataFrame:
    """The frame with its codes compacted; a row error for any code that is not valid."""
    codes = pl.Series(
        "resident_code", rcode.compact_array(frame["resident_code"].cast(pl.String).to_arrow())
    )
    errors = code_errors(frame[ROW], codes)
    if errors.height:
        raise InputRowsError(
            f"{errors.height} row(s) of {source} carry a code that is not valid, so no sheet "
            "was printed. Run rrnet verify on the file to see every problem.",
            errors=errors.select("row", "column", "reason").to_dicts(),
            details=describe_errors(errors, source),
        )
    return frame.with_columns(codes)


def select_residents(frame: pl.DataFrame, include_all: bool) -> pl.DataFrame:
    """Rows to print: newly assigned ones, or every row with a code (reprints)."""
    coded = pl.col("resident_code").is_not_null() & (pl.col("resident_code") != "")
    if include_all:
        return frame.filter(coded)
    if "code_status" not in frame.columns:
        raise UsageError("The file has no code_status column; is it an output of rrnet assign?")
    return frame.filter(coded & (pl.col("code_status") == CodeStatus.ASSIGNED))


def mailing_order(frame: pl.DataFrame) -> pl.DataFrame:
    """Sort for mailing: postal code, address, household, resident."""
    keys = [
        c for c in ("postal_code", "address", "household_id", "resident_id") if c in frame.columns
    ]
    return frame.sort(keys, nulls_last=True, maintain_order=True)


def build_sheets(
    frame: pl.DataFrame,
    notices: dict[str, NoticeText],
    *,
    recorded_on: dict[str, str] | str,
) -> list[dict[str, Any]]:
    """One plain dict per sheet, in ``frame``'s order, ready for the template."""
    ja = notices["ja"]
    births = parse_dates(frame["birth_date"].cast(pl.String))
    rows = frame.with_columns(births.dt.to_string("%Y-%m-%d").alias(BIRTH_TEXT)).to_dicts()
    sheets = []
    for row in rows:
        notice = notices[row["language"]]
        code = rcode.validate(row["resident_code"])
        recorded = recorded_on if isinstance(recorded_on, str) else recorded_on.get(code, "")
        fields = [{"key": "name", "value": row["name"]}]
        for key in ("name_kanji", "alias"):
            if row.get(key):
                fields.append({"key": key, "value": row[key]})
        fields += [
            {"key": "birth_date", "value": row[BIRTH_TEXT] or row["birth_date"]},
            {"key": "sex", "value": _sex(row.get("sex"), notice, ja)},
            {"key": "address", "value": row["address"]},
            {"key": "recorded_on", "value": recorded},
        ]
        sheets.append(
            {
                "resident_id": row["resident_id"],
                "household_id": row.get("household_id"),
                "name": row["name"],
                "postal_code": row.get("postal_code"),
                "address": row["address"],
                "language": notice.language,
                "notice": notice,
                "code": code,
                "code_groups": rcode.format(code).split(" "),
                "fields": fields,
            }
        )
    return sheets


# ---------------------------------------------------------------------------


@dataclass
class NotifyResult:
    """What one notify run produced."""

    assigned: str
    output: str
    sheets: int = 0
    files: list[str] = field(default_factory=list)
    per_resident: int = 0
    by_language: dict[str, int] = field(default_factory=dict)
    #: residents whose language has no notice, by language name ({"Burmese": 23})
    without_notice: dict[str, int] = field(default_factory=dict)
    #: the language they got instead (--default-language)
    default_language: str = "en"
    workers: int = 1
    seconds: float = 0.0
    sheets_per_second: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary_rows(self) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [
            ("sheets", self.sheets),
            ("print-ready files", len(self.files)),
        ]
        if self.per_resident:
            rows.append(("per-resident files", self.per_resident))
        rows += [(f"  {language}", n) for language, n in self.by_language.items()]
        used = english_name(self.default_language)
        rows += [(f"no {name} notice, {used} used", n) for name, n in self.without_notice.items()]
        rows.append(("time", f"{self.seconds:.1f} s ({self.sheets_per_second} sheets/s)"))
        return rows


def _recorded_dates(
    codes: list[str], ledger: LedgerStore | None, recorded_on: date | None
) -> dict[str, str] | str:
    if recorded_on is not None:
        return recorded_on.isoformat()
    if ledger is None:
        raise UsageError(
            "Say when the codes were recorded: give --ledger (dates come from it) "
            "or --recorded-on YYYY-MM-DD."
        )
    records = ledger.snapshot().current_records()
    wanted = pl.DataFrame({"code": rcode.strings_to_codes(codes)})
    found = wanted.join(records.select("code", "recorded_at"), on="code", how="left")
    missing = found.filter(pl.col("recorded_at").is_null()).height
    if missing:
        raise UsageError(
            f"{missing} code(s) of the file are not in the ledger {ledger.location}; "
            "run rrnet verify on the file with this ledger."
        )
    return dict(
        zip(
            rcode.codes_to_strings(found["code"].to_numpy()).to_pylist(),
            found["recorded_at"]
            .dt.convert_time_zone("Asia/Tokyo")
            .dt.date()
            .cast(pl.String)
            .to_list(),
            strict=True,
        )
    )


def _batches(items: list[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def notify(
    assigned: Path,
    output: Path,
    *,
    profile: Profile,
    ledger: LedgerStore | None = None,
    recorded_on: date | None = None,
    notice_date: date | None = None,
    include_all: bool = False,
    per_resident: bool = False,
    default_language: str = "en",
    batch_size: int = 50,
    workers: int = 2,
    encoding: str = "auto",
    sheet: str | None = None,
    steps: Steps = QUIET,
    delimiter: str = "auto",
) -> NotifyResult:
    """Render every sheet and write batches, per-resident files and the manifest."""
    started = time.perf_counter()
    if batch_size < 1 or workers < 1:
        raise UsageError("--batch-size and --workers must be at least 1.")
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"{output} already exists and is not empty; give a new folder.")
    with steps.step("Reading the assigned register"):
        export = read_export(
            assigned, encoding=encoding, ours=True, sheet=sheet, delimiter=delimiter
        )
        require_columns(
            export, ("resident_id", "resident_code", "name", "birth_date", "sex", "address")
        )
        frame = select_residents(_checked_codes(export.frame, export.path), include_all)
        bad_ids = frame.filter(~pl.col("resident_id").str.contains(_SAFE_ID))
        if per_resident and bad_ids.height:
            raise UsageError(
                f"{bad_ids.height} resident_id value(s) cannot be file names (letters, digits, "
                "- and _ only); per-resident files are named by resident_id."
            )
        # Counted before the row's language is replaced by the one its notice is in.
        without_notice = languages_without_notice(frame)
        frame = mailing_order(frame.with_columns(choose_languages(frame, default_language)))
    notices = load_notices()
    with steps.step("Preparing sheets"):
        dates = _recorded_dates(frame["resident_code"].to_list(), ledger, recorded_on)
        sheets = build_sheets(frame, notices, recorded_on=dates)
    result = NotifyResult(
        assigned=str(assigned),
        output=str(output),
        sheets=len(sheets),
        without_notice=without_notice,
        default_language=normalise_language(default_language) or default_language,
        workers=workers,
    )
    output.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(output, PRIVATE_DIR)
    per_dir = output / "residents" if per_resident else None
    if per_dir is not None:
        per_dir.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    batches = list(_batches(sheets, batch_size))
    names = [f"sheets-{i + 1:04d}.pdf" for i in range(len(batches))]
    tasks = [
        (batch, str(output / f".{name}.part"), str(per_dir) if per_dir else None)
        for batch, name in zip(batches, names, strict=True)
    ]
    when = (notice_date or date.today()).isoformat()
    with steps.step("Rendering sheets", total=len(sheets)) as advance:
        if workers == 1 or len(batches) == 1:
            _init_worker(profile, when, str(TEMPLATES))
            for task in tasks:
                advance(_render_batch(task))
        else:
            # forkserver: workers start clean (no copy of this process's frames) and
            # import WeasyPrint themselves; each keeps its CSS and fonts for all batches.
            with ProcessPoolExecutor(
                max_workers=min(workers, len(batches)),
                mp_context=get_context("forkserver"),
                initializer=_init_worker,
                initargs=(profile, when, str(TEMPLATES)),
            ) as pool:
                for done in pool.map(_render_batch, tasks):
                    advance(done)
    for task, name in zip(tasks, names, strict=True):
        os.replace(task[1], output / name)
        result.files.append(name)
    if per_dir is not None:
        for page in sheets:
            os.replace(
                per_dir / f".{page['resident_id']}.pdf.part",
                per_dir / f"{page['resident_id']}.pdf",
            )
        result.per_resident = len(sheets)
    manifest = pl.DataFrame(
        {
            "sequence": list(range(1, len(sheets) + 1)),
            "resident_id": [s["resident_id"] for s in sheets],
            "household_id": [s["household_id"] for s in sheets],
            "postal_code": [s["postal_code"] for s in sheets],
            "language": [s["language"] for s in sheets],
            "file": [names[i // batch_size] for i in range(len(sheets))],
            "page": [i % batch_size + 1 for i in range(len(sheets))],
            "resident_file": [
                f"residents/{s['resident_id']}.pdf" if per_resident else None for s in sheets
            ],
        },
        schema_overrides={
            "household_id": pl.String,
            "postal_code": pl.String,
            "resident_file": pl.String,
        },
    )
    write_table(manifest, output / "manifest.csv")
    result.by_language = dict(
        sorted(manifest.group_by("language").len().iter_rows(), key=lambda kv: -kv[1])
    )
    result.seconds = round(time.perf_counter() - started, 3)
    result.sheets_per_second = round(len(sheets) / result.seconds, 1) if result.seconds else 0.0
    return result
