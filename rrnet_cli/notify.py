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
import shutil
import signal
import time
import unicodedata
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import polars as pl

from rrnet_cli import code as rcode
from rrnet_cli.dates import format_date, parse_dates
from rrnet_cli.errors import InputRowsError, RrnetError, UsageError
from rrnet_cli.files import PRIVATE_DIR, atomic_output, write_table
from rrnet_cli.form import format_postal_code
from rrnet_cli.ingest import (
    clean_resident_ids,
    code_errors,
    describe_errors,
    read_export,
    require_columns,
)
from rrnet_cli.languages import (
    NoticeText,
    choose_languages,
    english_name,
    languages_without_notice,
    load_notices,
    normalise_language,
)
from rrnet_cli.ledger import LedgerStore, ownership_problems
from rrnet_cli.profile import Profile
from rrnet_cli.progress import QUIET, Steps
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
    date_style: str = "iso",
    addressee: str = "name",
) -> list[dict[str, Any]]:
    """One plain dict per sheet, in ``frame``'s order, ready for the template.

    Dates print in ``date_style`` (iso, seireki or wareki, as the profile says);
    the address block names the registered name, or the alias where there is
    one when ``addressee`` is "alias".
    """
    ja = notices["ja"]
    births = parse_dates(frame["birth_date"].cast(pl.String))
    rows = frame.with_columns(births.alias(BIRTH_TEXT)).to_dicts()
    sheets = []
    for row in rows:
        notice = notices[row["language"]]
        code = rcode.validate(row["resident_code"])
        recorded = recorded_on if isinstance(recorded_on, str) else recorded_on.get(code, "")
        if recorded:
            recorded = format_date(date.fromisoformat(recorded), date_style)
        birth = row[BIRTH_TEXT]
        fields = [{"key": "name", "value": row["name"]}]
        for key in ("name_kanji", "alias"):
            if row.get(key):
                fields.append({"key": key, "value": row[key]})
        fields += [
            {
                "key": "birth_date",
                "value": format_date(birth, date_style) if birth else row["birth_date"],
            },
            {"key": "sex", "value": _sex(row.get("sex"), notice, ja)},
            {"key": "address", "value": row["address"]},
            {"key": "recorded_on", "value": recorded},
        ]
        sheets.append(
            {
                "resident_id": row["resident_id"],
                "household_id": row.get("household_id"),
                "name": row["name"],
                "addressee": (row.get("alias") or row["name"])
                if addressee == "alias"
                else row["name"],
                # NNN-NNNN, however it was typed; the form prints it after 〒.
                "postal_code": format_postal_code(row.get("postal_code")).removeprefix("〒")
                or None,
                "address": row["address"],
                "language": notice.language,
                "notice": notice,
                "code": code,
                "code_groups": rcode.format(code).split(" "),
                # The household table prints the sex in Japanese only (its headings say what).
                "sex_ja": _sex(row.get("sex"), ja, ja),
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
    #: envelopes in mailing.csv (one per sheet, or one per household)
    envelopes: int = 0
    #: one document and envelope per household
    per_household: bool = False
    by_language: dict[str, int] = field(default_factory=dict)
    #: residents whose language has no notice, by language name ({"Burmese": 23})
    without_notice: dict[str, int] = field(default_factory=dict)
    #: the language they got instead (--default-language)
    default_language: str = "en"
    workers: int = 1
    seconds: float = 0.0
    sheets_per_second: float = 0.0
    #: why nothing was printed (no folder was made), or None
    nothing_to_print: str | None = None
    #: sheets that could not be printed, set aside with --rejects
    rejected: int = 0
    rejects: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary_rows(self) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [
            ("sheets" if not self.per_household else "residents listed", self.sheets),
            ("envelopes" + (" (one per household)" if self.per_household else ""), self.envelopes),
            ("print-ready files", len(self.files)),
        ]
        if self.per_resident:
            rows.append(("per-resident files", self.per_resident))
        rows += [(f"  {language}", n) for language, n in self.by_language.items()]
        if self.rejects is not None:
            rows.append(("sheets set aside (rejects)", self.rejected))
        used = english_name(self.default_language)
        rows += [(f"no {name} notice, {used} used", n) for name, n in self.without_notice.items()]
        rows.append(("time", f"{self.seconds:.1f} s ({self.sheets_per_second} sheets/s)"))
        return rows


#: Japan's time: UTC+9 all year (no daylight saving since 1951). Every date a
#: sheet prints is a date in Japan, whatever the machine's own time zone.
JAPAN = timezone(timedelta(hours=9), "JST")


def today_in_japan() -> date:
    """Today's date in Japan (the date of notice unless --notice-date says otherwise)."""
    return datetime.now(JAPAN).date()


def check_against_ledger(
    frame: pl.DataFrame, ledger: LedgerStore, municipality: str, source: Path
) -> pl.Series:
    """Each row's recorded date (text, in Japan) once its code is proven to be its own.

    A code the ledger does not know, a retired code, a code in use elsewhere, or
    a code the ledger holds for another resident is a row error, and nothing is
    printed: two codes swapped in a spreadsheet must never reach an envelope.
    """
    state = ledger.snapshot()
    codes = rcode.strings_to_codes(frame["resident_code"].to_arrow())
    owners = state.lookup(codes)
    recorded = state.current_records().select("code", "recorded_at")
    reasons = ownership_problems(owners, clean_resident_ids(frame["resident_id"]), municipality)
    checked = frame.select(
        pl.col(ROW).alias("row"),
        pl.col("resident_code").alias("value"),
        owners["code"],
        reasons,
    ).join(recorded, on="code", how="left", maintain_order="left")
    errors = checked.filter(pl.col("reason").is_not_null()).select(
        "row", pl.lit("resident_code").alias("column"), "reason", "value"
    )
    if errors.height:
        raise InputRowsError(
            f"{errors.height} row(s) of {source} carry a code the ledger does not hold for "
            "that resident, so no sheet was printed (were cells moved or sorted in a "
            "spreadsheet?). Run rrnet verify on the file with the ledger to see every problem.",
            errors=errors.select("row", "column", "reason").to_dicts(),
            details=describe_errors(errors, source),
        )
    return (
        checked["recorded_at"]
        .dt.convert_time_zone("Asia/Tokyo")
        .dt.date()
        .cast(pl.String)
        .alias("recorded_on")
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
    rejects: Path | None = None,
    per_household: bool | None = None,
) -> NotifyResult:
    """Check every row against the ledger, then render and write the sheets.

    Nothing is printed unless every selected row's code is valid and is the
    ledger's for that resident. On any failure, or Ctrl-C, every file this run
    wrote is removed (and the output folder, when this run created it).
    """
    started = time.perf_counter()
    if per_household is None:
        per_household = profile.mailing == "household"
    if per_household and per_resident:
        raise UsageError(
            "--per-resident makes one file per resident, --per-household one document per "
            "household: give one of them (the profile's [sheet] mailing may set households)."
        )
    if batch_size < 1 or workers < 1:
        raise UsageError("--batch-size and --workers must be at least 1.")
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UsageError(f"{output} already exists and is not empty; give a new folder.")
    if ledger is None:
        raise UsageError(
            "Give --ledger: notify checks that every code is the ledger's for its resident "
            "before it prints anything."
        )
    if ledger.municipality and profile.code != ledger.municipality:
        raise UsageError(
            f"The profile is for municipality {profile.code}, the ledger for "
            f"{ledger.municipality}: the sheets would name the wrong sender. Give the "
            "profile of the ledger's municipality."
        )
    with steps.step("Reading the assigned register"):
        export = read_export(
            assigned, encoding=encoding, ours=True, sheet=sheet, delimiter=delimiter
        )
        require_columns(
            export, ("resident_id", "resident_code", "name", "birth_date", "sex", "address")
        )
        frame = select_residents(_checked_codes(export.frame, export.path), include_all)
    result = NotifyResult(
        assigned=str(assigned),
        output=str(output),
        default_language=normalise_language(default_language) or default_language,
        workers=workers,
        per_household=per_household,
    )
    if frame.height == 0:
        result.nothing_to_print = (
            "no row has a code"
            if include_all
            else "no row is newly assigned (use --all to print every coded row)"
        )
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    with steps.step("Checking codes against the ledger"):
        recorded = check_against_ledger(frame, ledger, profile.code, export.path)
    bad_ids = frame.filter(~pl.col("resident_id").str.contains(_SAFE_ID))
    if per_resident and bad_ids.height:
        raise UsageError(
            f"{bad_ids.height} resident_id value(s) cannot be file names (letters, digits, "
            "- and _ only); per-resident files are named by resident_id."
        )
    # Counted before the row's language is replaced by the one its notice is in.
    result.without_notice = languages_without_notice(frame)
    frame = mailing_order(frame.with_columns(choose_languages(frame, default_language), recorded))
    notices = load_notices()
    with steps.step("Preparing sheets"):
        dates: dict[str, str] | str = (
            recorded_on.isoformat()
            if recorded_on is not None
            else dict(zip(frame["resident_code"], frame["recorded_on"], strict=True))
        )
        sheets = build_sheets(
            frame,
            notices,
            recorded_on=dates,
            date_style=profile.date_style,
            addressee=profile.addressee,
        )
    result.sheets = len(sheets)
    when = format_date(notice_date or today_in_japan(), profile.date_style)
    created = not output.exists()
    try:
        _write_sheets(
            output,
            sheets,
            profile,
            when,
            result,
            per_resident,
            batch_size,
            steps,
            rejects,
            per_household,
        )
    except BaseException:
        _remove_output(output, created)
        raise
    result.seconds = round(time.perf_counter() - started, 3)
    result.sheets_per_second = round(len(sheets) / result.seconds, 1) if result.seconds else 0.0
    return result


def _remove_output(output: Path, created: bool) -> None:
    """Remove what a failed run wrote: the folder it made, or the files in the empty one."""
    if created:
        shutil.rmtree(output, ignore_errors=True)
    elif output.is_dir():
        for child in output.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)


def _init_form_worker(profile: Profile, static: Any, worker: bool = True) -> None:
    """Build this process's form renderer; a worker process leaves Ctrl-C to its parent.

    The parent cancels the batches not yet started, waits for the running ones
    and removes every partial file; a worker that died of the same SIGINT
    would only print a traceback and break the pool.
    """
    from rrnet_cli import form

    if worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    form.init_worker(profile, static)


def _split_pages(pdf: bytes, resident_ids: list[str], folder: Path) -> None:
    """One private file per resident, named by resident_id, from a batch's pages."""
    import io

    import pikepdf

    with pikepdf.open(io.BytesIO(pdf)) as batch:
        for page, resident_id in zip(batch.pages, resident_ids, strict=True):
            single = pikepdf.new()
            single.pages.append(page)
            buffer = io.BytesIO()
            single.save(buffer)
            with atomic_output(folder / f"{resident_id}.pdf") as tmp:
                tmp.write_bytes(buffer.getvalue())


def group_households(sheets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sheets (in mailing order) gathered by household_id, each household where its first is.

    A resident without a household_id is a household of one. Members keep the
    export's order, so the first (the addressee) is usually the householder.
    """
    households: dict[tuple[str, Any], dict[str, Any]] = {}
    for index, sheet in enumerate(sheets):
        household_id = sheet.get("household_id")
        key = ("household", household_id) if household_id else ("resident", index)
        if key not in households:
            households[key] = {
                "household_id": household_id,
                "reference": household_id or sheet["resident_id"],
                "members": [],
            }
        households[key]["members"].append(sheet)
    return list(households.values())


def _household_batches(
    households: list[dict[str, Any]], size: int
) -> Iterator[list[dict[str, Any]]]:
    """Whole households, about ``size`` members a batch (a household is never split)."""
    batch: list[dict[str, Any]] = []
    members = 0
    for household in households:
        batch.append(household)
        members += len(household["members"])
        if members >= size:
            yield batch
            batch, members = [], 0
    if batch:
        yield batch


@dataclass
class _Printed:
    """What the files hold: each resident's place, and each envelope."""

    #: (sheet, file, page, envelope) per resident, in mailing order
    residents: list[tuple[dict[str, Any], str, int, int]] = field(default_factory=list)
    envelopes: list[dict[str, Any]] = field(default_factory=list)

    def envelope(self, first: dict[str, Any], file: str, first_page: int, pages: int) -> int:
        """Add an envelope addressed as ``first``'s sheet; return its number."""
        number = len(self.envelopes) + 1
        self.envelopes.append(
            {
                "envelope": number,
                "postal_code": first["postal_code"],
                "address": first["address"],
                "addressee": first["addressee"],
                "household_id": first["household_id"],
                "sheets": pages,
                "file": file,
                "first_page": first_page,
                "last_page": first_page + pages - 1,
            }
        )
        return number


def _render_batches(
    batches: list[Any],
    render: Any,
    initializer: Any,
    initargs: tuple[Any, ...],
    workers: int,
    steps: Steps,
    total: int,
    size: Any = len,
) -> list[Any]:
    """Each batch through ``render`` (in worker processes when there are several)."""
    results: list[Any] = []
    with steps.step("Printing sheets", total=total) as advance:
        if workers == 1 or len(batches) == 1:
            initializer(*initargs, worker=False)
            for batch in batches:
                results.append(render(batch))
                advance(size(batch))
            return results
        # forkserver: workers start clean (no copy of this process's frames) and
        # import WeasyPrint themselves; each keeps its CSS and fonts for all batches.
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(batches)),
            mp_context=get_context("forkserver"),
            initializer=initializer,
            initargs=initargs,
        )
        try:
            for batch, result in zip(batches, pool.map(render, batches), strict=True):
                results.append(result)
                advance(size(batch))
        except BrokenProcessPool:
            pool.shutdown(wait=True, cancel_futures=True)
            raise RrnetError(
                "A rendering process stopped unexpectedly (out of memory, or killed). "
                "Try fewer --workers or a smaller --batch-size."
            ) from None
        except BaseException:
            # Batches not started are dropped; running ones finish before the
            # caller removes every partial file.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return results


def _static_pages(render: Any, *args: Any) -> Any:
    try:
        return render(*args)
    except BrokenProcessPool:
        raise RrnetError(
            "The process laying out the static pages stopped unexpectedly (out of "
            "memory, or killed)."
        ) from None


def _init_household_worker(profile: Profile, static: Any, worker: bool = True) -> None:
    """Build this process's household renderer; a worker leaves Ctrl-C to its parent."""
    from rrnet_cli import household

    if worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    household.init_worker(profile, static)


def _write_sheets(
    output: Path,
    sheets: list[dict[str, Any]],
    profile: Profile,
    when: str,
    result: NotifyResult,
    per_resident: bool,
    batch_size: int,
    steps: Steps,
    rejects: Path | None = None,
    per_household: bool = False,
) -> None:
    """Lay out and compose the sheets (the fixed form), publish them, write the lists.

    The static page of each language is laid out once, apart; the workers lay
    out only the values, fitted to their boxes, and put the static page under
    them. A sheet that cannot be printed (a value too long for its box at the
    smallest size, or a character no font of the form has) stops the run,
    naming the resident, field and reason, unless ``rejects`` takes it. With
    ``per_household``, each household gets one document and one envelope.
    """
    from rrnet_cli import form, household

    output.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(output, PRIVATE_DIR)
    languages = sorted({str(s["language"]) for s in sheets})
    with steps.step("Laying out the static page of each language"):
        if per_household:
            static = _static_pages(
                household.render_household_static_pages_apart, profile, languages, when
            )
        else:
            static = _static_pages(form.render_static_pages_apart, profile, languages, when)
    if per_household:
        batches: list[Any] = list(_household_batches(group_households(sheets), batch_size))
        layers: list[Any] = _render_batches(
            batches,
            household.render_batch,
            _init_household_worker,
            (profile, static),
            result.workers,
            steps,
            len(sheets),
            lambda batch: sum(len(h["members"]) for h in batch),
        )
    else:
        batches = list(_batches(sheets, batch_size))
        layers = _render_batches(
            batches,
            form.render_batch,
            _init_form_worker,
            (profile, static),
            result.workers,
            steps,
            len(sheets),
        )
    rejections = [r for layer in layers for r in layer.rejections]
    if rejections and rejects is None:
        raise InputRowsError(
            f"{len(rejections)} sheet(s) cannot be printed: a value does not fit its box even "
            "at the smallest size, or has a character none of the form's fonts has (外字?). "
            "No sheet was printed. Fix those values in the register, or pass --rejects FILE "
            "to set them aside and print the rest.",
            errors=[vars(r) for r in rejections],
            details=[f"resident_id {r.resident_id}, {r.field}: {r.reason}" for r in rejections[:20]]
            + ([f"... and {len(rejections) - 20} more"] if len(rejections) > 20 else []),
        )
    printed = _Printed()
    per_dir = output / "residents" if per_resident else None
    if per_dir is not None:
        per_dir.mkdir(mode=PRIVATE_DIR, exist_ok=True)
    number = 0
    for batch, layer in zip(batches, layers, strict=True):
        if not layer.pdf:
            continue
        number += 1
        name = f"sheets-{number:04d}.pdf"
        with atomic_output(output / name) as tmp:
            tmp.write_bytes(layer.pdf)
        result.files.append(name)
        if per_household:
            for done in layer.households:
                members = batch[done.batch_index]["members"]
                first = members[done.members[0][0]]
                envelope = printed.envelope(first, name, done.start + 1, done.pages)
                printed.residents += [
                    (members[member], name, done.start + page + 1, envelope)
                    for member, page in done.members
                ]
            continue
        for page, index in enumerate(layer.rendered, start=1):
            sheet = batch[index]
            printed.residents.append((sheet, name, page, printed.envelope(sheet, name, page, 1)))
        if per_dir is not None:
            _split_pages(layer.pdf, [str(batch[i]["resident_id"]) for i in layer.rendered], per_dir)
    result.per_resident = len(printed.residents) if per_dir is not None else 0
    result.sheets = len(printed.residents)
    result.envelopes = len(printed.envelopes)
    if rejects is not None:
        write_table(
            pl.DataFrame(
                [vars(r) for r in rejections],
                schema={"resident_id": pl.String, "field": pl.String, "reason": pl.String},
            ),
            rejects,
        )
        result.rejected = len(rejections)
        result.rejects = str(rejects)
    residents = printed.residents
    manifest = pl.DataFrame(
        {
            "sequence": list(range(1, len(residents) + 1)),
            "envelope": [r[3] for r in residents],
            "resident_id": [r[0]["resident_id"] for r in residents],
            "household_id": [r[0]["household_id"] for r in residents],
            "postal_code": [r[0]["postal_code"] for r in residents],
            "language": [r[0]["language"] for r in residents],
            "file": [r[1] for r in residents],
            "page": [r[2] for r in residents],
            "resident_file": [
                f"residents/{r[0]['resident_id']}.pdf" if per_resident else None for r in residents
            ],
        },
        schema_overrides={
            "household_id": pl.String,
            "postal_code": pl.String,
            "resident_file": pl.String,
        },
    )
    write_table(manifest, output / "manifest.csv")
    mailing = pl.DataFrame(
        printed.envelopes,
        schema={
            "envelope": pl.Int64,
            "postal_code": pl.String,
            "address": pl.String,
            "addressee": pl.String,
            "household_id": pl.String,
            "sheets": pl.Int64,
            "file": pl.String,
            "first_page": pl.Int64,
            "last_page": pl.Int64,
        },
    ).with_columns(
        pl.lit(profile.mail_class).alias("mail_class"),
        pl.lit(None, pl.String).alias("tracking_number"),
    )
    write_table(mailing, output / "mailing.csv")
    result.by_language = dict(
        sorted(manifest.group_by("language").len().iter_rows(), key=lambda kv: -kv[1])
    )
