"""Notices to residents: ``rrnet notify``.

From an assigned register, print the Resident Record Code Notification Sheet
(住民票コード通知票) of each resident who got a new code, in Japanese and in the
resident's language, as print-ready PDF batches sorted for mailing, with
``manifest.csv`` (each resident's envelope, file and page) and ``mailing.csv``
(one row per envelope, for the post office). The forms are fixed forms
(:mod:`rrnet_cli.form`): one sheet per resident, one document per household
with ``--per-household`` (:mod:`rrnet_cli.household`), or the change notice
(住民票コード変更通知書) with ``--changes`` (:mod:`rrnet_cli.change_notice`).

A notice is issued once. Every row's code is checked against the ledger
before anything prints; the ledger records every notice printed
(:mod:`rrnet_cli.ledger.notices`), so a second run prints nothing, a reprint
(``--reprint``, marked 再交付) is explicit and recorded, and a preview
(``--all``, marked 見本 / SAMPLE) records nothing. The files are written under a
hidden name, the notices committed, and only then is the folder renamed to
``-o``; ``recover_interrupted`` deals with what a killed run left.

Safety: the templates autoescape with StrictUndefined, so a name such as
``<img src="file:///etc/passwd">`` prints literally; and WeasyPrint's URL
fetcher serves only files under ``rrnet_cli/templates/`` (no other file, no
network, no ``data:``), so even a template mistake cannot pull anything else in.

Speed: static pages are laid out once per run; worker processes lay out only
the values, in batches, each building its CSS and fonts once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import polars as pl

from rrnet_cli import code as rcode
from rrnet_cli.dates import JAPAN, format_date, parse_dates
from rrnet_cli.errors import InputRowsError, RrnetError, UsageError
from rrnet_cli.files import (
    PRIVATE_DIR,
    PendingFile,
    atomic_output,
    check_table_suffix,
    fsync_dir,
    host_name,
    pid_alive,
    remove_stale_parts,
    stale_part_notes,
    write_table,
    write_table_to,
)
from rrnet_cli.form import Mark, format_postal_code, starting_processes
from rrnet_cli.ingest import (
    GETA_REASON,
    clean_resident_ids,
    code_errors,
    describe_errors,
    geta_column,
    geta_masks,
    read_export,
    require_columns,
)
from rrnet_cli.languages import (
    NOT_RECOGNISED,
    NOT_RECOGNISED_NATIONALITY,
    NoticeText,
    choose_languages,
    english_name,
    languages_without_notice,
    load_notices,
    normalise_language,
)
from rrnet_cli.ledger import (
    ACTIVE,
    Invocation,
    LedgerStore,
    LedgerView,
    NoticeKind,
    ReprintReason,
    Status,
    file_digest,
    ownership_problems,
    without_leading_zeros,
)
from rrnet_cli.ledger.interface import failpoint
from rrnet_cli.profile import Profile
from rrnet_cli.progress import QUIET, Steps
from rrnet_cli.schema import BIRTH_TEXT, FEMALE, MALE, ROW, SEX_VALUES, CodeStatus

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
    if notice.language == "ja" or notice.labels[key] == ja.labels[key]:
        return ja.labels[key]  # once: Chinese writes 男 and 女 as Japanese does
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


def select_residents(
    frame: pl.DataFrame,
    include_all: bool,
    residents: Sequence[str] = (),
    *,
    coded_only: bool = True,
) -> pl.DataFrame:
    """Rows to print: newly assigned ones; every row with a code (samples); or the
    rows of the given residents (a reprint), each of which must be in the file.

    Change notices take their codes from the ledger: ``coded_only=False`` keeps
    the given residents' rows whether the file has a code for them or not.
    """
    coded = pl.col("resident_code").is_not_null() & (pl.col("resident_code") != "")
    if not coded_only:
        coded = pl.lit(True)
    if residents:
        ids = clean_resident_ids(frame["resident_id"])
        wanted = set(residents)
        missing = sorted(wanted - set(ids.to_list()))
        if missing:
            shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
            raise UsageError(f"{len(missing)} resident(s) to reprint are not in the file: {shown}.")
        return frame.filter(coded & ids.is_in(list(wanted)))
    if include_all:
        return frame.filter(coded)
    if "code_status" not in frame.columns:
        raise UsageError("The file has no code_status column; is it an output of rrnet assign?")
    return frame.filter(coded & (pl.col("code_status") == CodeStatus.ASSIGNED))


def _check_dates(recorded_on: date | None, notice_date: date | None, recorded: pl.Series) -> None:
    """Refuse dates a sheet must not carry: a code recorded in the future, or a notice
    dated before the code it announces was recorded (both dates in Japan)."""
    today = today_in_japan()
    if recorded_on is not None and recorded_on > today:
        raise UsageError(
            f"--recorded-on {recorded_on.isoformat()} is after today in Japan "
            f"({today.isoformat()}): a code cannot have been recorded in the future."
        )
    if notice_date is None:
        return
    latest = recorded_on.isoformat() if recorded_on is not None else recorded.max()
    if isinstance(latest, str) and notice_date.isoformat() < latest:
        raise UsageError(
            f"--notice-date {notice_date.isoformat()} is before {latest}, when a code it "
            "announces was recorded: a notice cannot be dated before its code."
        )


def check_rows(frame: pl.DataFrame, source: Path) -> None:
    """Refuse, naming each row, what no notice may be printed from.

    A resident twice in the file would get two notices (and two records of
    one); a row without a name, an address, a real date of birth or a sex
    would give a sheet nobody can deliver or read, and a value holding 〓 (a
    外字 the export could not carry) would print the mark instead of the
    character. ``assign`` refuses such rows in an export; a file edited since,
    or made elsewhere, is checked again.
    """
    ids = clean_resident_ids(frame["resident_id"])
    rows = frame[ROW]
    problems: list[pl.DataFrame] = []

    def add(mask: pl.Series, column: str, reason: str, values: pl.Series) -> None:
        if mask.any():
            problems.append(
                pl.DataFrame(
                    {
                        "row": rows.filter(mask),
                        "column": column,
                        "reason": reason,
                        "value": values.cast(pl.String).filter(mask),
                    }
                )
            )

    add(ids.is_duplicated(), "resident_id", "the same resident is in the file more than once", ids)
    for column in ("name", "address"):
        text = frame[column].cast(pl.String).str.strip_chars()
        add(text.is_null() | (text == ""), column, "is empty", frame[column])
    birth = frame["birth_date"].cast(pl.String)
    add(parse_dates(birth).is_null(), "birth_date", "is not a date rrnet reads", birth)
    sex = frame["sex"].cast(pl.String).str.normalize("NFKC").str.strip_chars()
    add(~sex.is_in(list(SEX_VALUES)).fill_null(False), "sex", "is not 男/女, M/F or 1/2", sex)
    geta = geta_masks(frame)
    for column in frame.columns:
        if geta_column(column) in geta.columns:
            add(geta[geta_column(column)], column, GETA_REASON, frame[column])
    if not problems:
        return
    errors = pl.concat(problems).sort("row")
    raise InputRowsError(
        f"{errors.height} value(s) of {source} cannot go on a notice, so none was printed. "
        "Fix them in the file (rrnet assign checks an export the same way).",
        errors=errors.select("row", "column", "reason").to_dicts(),
        details=describe_errors(errors, source),
    )


def issued_notices(frame: pl.DataFrame, notices: pl.DataFrame) -> pl.DataFrame:
    """The notices already issued for each row's code and resident: ``row`` (of
    ``frame``), ``batch`` and ``issued_at`` of the latest one, rows without one left out.

    A notice is the row's when it names the row's code and resident. The resident
    id is compared without leading zeros: ``ledger fix-ids`` gives back the zeros
    an export lost, and the notices recorded before it name the stripped id.
    """
    keyed = frame.select(
        pl.col(ROW).alias("row"),
        pl.Series("code", rcode.strings_to_codes(frame["resident_code"].to_arrow())),
        clean_resident_ids(frame["resident_id"]).alias("resident_id"),
    ).with_columns(without_leading_zeros(pl.col("resident_id")))
    latest = (
        notices.with_columns(without_leading_zeros(pl.col("resident_id")))
        .sort("issued_at")
        .group_by("code", "resident_id", maintain_order=True)
        .agg(pl.col("batch").last(), pl.col("issued_at").last())
    )
    return keyed.join(latest, on=["code", "resident_id"], how="inner", maintain_order="left")


_DIGITS_RUN = re.compile(r"[0-9]+")


def _address_key(address: str | None) -> str | None:
    """An address as the post office walks it: numbers compared as numbers (302 before
    1104), full-width digits as ASCII ones.

    >>> sorted(["本町1104号室", "本町302号室"], key=_address_key)
    ['本町302号室', '本町1104号室']
    """
    if address is None:
        return None
    text = unicodedata.normalize("NFKC", address)
    return _DIGITS_RUN.sub(lambda m: m.group().lstrip("0").rjust(12, "0"), text)


def mailing_order(frame: pl.DataFrame, *, households: bool = False) -> pl.DataFrame:
    """Sort for mailing: postal code, address (numbers as numbers), household, then the
    export's own order. A blank postal code (empty, or spaces) is unknown and sorts last.

    With ``households`` (one envelope per household) a household is sorted as one,
    by its first member's postal code and address (the envelope's), and its members
    keep the export's order, so the first (usually the householder, the addressee)
    stays first whatever the others' postal codes or addresses are.
    """
    helpers = {
        # Few distinct postal codes: each is formatted once.
        "_postal": pl.Series(_column_text(frame, "postal_code"), dtype=pl.String).replace_strict(
            {p: format_postal_code(p) or None for p in set(_column_text(frame, "postal_code"))},
            return_dtype=pl.String,
        ),
        "_address": pl.Series(
            [_address_key(a) for a in _column_text(frame, "address")], dtype=pl.String
        ),
    }
    keyed = frame.with_columns(pl.Series(name, values) for name, values in helpers.items())
    keys = ["_postal", "_address", *(["household_id"] if "household_id" in frame.columns else [])]
    if households and "household_id" in frame.columns:
        household = pl.col("household_id").cast(pl.String).str.strip_chars()
        group = (
            pl.when(household.is_null() | (household == ""))
            .then(pl.concat_str(pl.lit("\0"), pl.col(ROW).cast(pl.String)))
            .otherwise(household)
        )
        first = pl.col(ROW) == pl.col(ROW).min().over("_group")
        keyed = keyed.with_columns(group.alias("_group")).with_columns(
            pl.col(key).filter(first).first().over("_group") for key in ("_postal", "_address")
        )
        keys[-1] = "_group"
    ordered = keyed.sort([*keys, ROW], nulls_last=True, maintain_order=True)
    return ordered.drop(c for c in ("_postal", "_address", "_group") if c in ordered.columns)


def _column_text(frame: pl.DataFrame, column: str) -> list[str | None]:
    """A column's values as text (all None when the frame has no such column)."""
    if column not in frame.columns:
        return [None] * frame.height
    return frame[column].cast(pl.String).to_list()


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
    #: the manifest and the mailing list, as written (.csv, or .xlsx with --lists xlsx)
    lists: list[str] = field(default_factory=lambda: ["manifest.csv", "mailing.csv"])
    #: one document and envelope per household
    per_household: bool = False
    by_language: dict[str, int] = field(default_factory=dict)
    #: residents whose language has no notice, by language name ({"Burmese": 23}); those
    #: whose language rrnet does not recognise under "not recognised" (the default
    #: language used) or "not recognised, nationality's language"
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
    #: the batch the ledger recorded the notices under (None: samples, nothing recorded)
    batch: str | None = None
    #: "new" (first notices), "reprint" (reissued, with reprint_reason) or "sample"
    issue: str = "new"
    reprint_reason: str | None = None
    #: rows without a code (the register export) printed with their resident's code
    #: from the ledger
    codes_from_ledger: int = 0
    #: rows skipped because their notice was already issued
    already_issued: int = 0
    #: rows the file says are newly assigned whose code this ledger did not draw here
    #: (carried over, or brought by a code change): no first notice
    not_drawn_here: int = 0
    #: what was done with the folder of an earlier run killed midway (nothing else ran)
    recovered: str | None = None
    #: things the office must know
    notes: list[str] = field(default_factory=list)
    #: sheets of killed runs given the folder the ledger records for them
    handed_over: list[str] = field(default_factory=list)
    #: notices recorded whose sheets are still under a hidden name (``stranded_warning``)
    stranded: list[dict[str, Any]] = field(default_factory=list)

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
        if self.codes_from_ledger:
            rows.append(("rows without a code: the ledger's code printed", self.codes_from_ledger))
        if self.already_issued:
            rows.append(("already issued, not printed again", self.already_issued))
        if self.not_drawn_here:
            rows.append(("code not drawn here (carried over or changed)", self.not_drawn_here))
        if self.batch is not None:
            what = "reprints" if self.issue == "reprint" else "notices"
            rows.append((f"{what} recorded in the ledger, batch", self.batch))
        elif self.issue == "sample":
            rows.append(("preview: pages marked 見本 / SAMPLE", "nothing recorded"))
        used = english_name(self.default_language)
        said = {
            NOT_RECOGNISED: f"language not recognised, {used} used",
            NOT_RECOGNISED_NATIONALITY: "language not recognised, nationality's language used",
        }
        rows += [
            (said.get(name, f"no {name} notice, {used} used"), n)
            for name, n in self.without_notice.items()
        ]
        rows.append(("time", f"{self.seconds:.1f} s ({self.sheets_per_second} sheets/s)"))
        return rows


def today_in_japan() -> date:
    """Today's date in Japan (the date of notice unless --notice-date says otherwise)."""
    return datetime.now(JAPAN).date()


#: Why a row set aside with --rejects was not printed: its code changed since the file.
CHANGED_SINCE = (
    "the ledger says this code is retired: it was changed (rrnet change) or retired since "
    "the file was written; print the change notice with --changes"
)


def check_against_ledger(
    frame: pl.DataFrame,
    view: LedgerView,
    municipality: str,
    source: Path,
    *,
    set_aside: bool = False,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows whose code is proven to be their resident's, each with its recorded
    date (``recorded_on``, text, in Japan); and the rows set aside.

    A code the ledger does not know, a retired code, a code in use elsewhere, or
    a code the ledger holds for another resident is a row error, and nothing is
    printed: two codes swapped in a spreadsheet must never reach an envelope.
    With ``set_aside`` (--rejects), a row whose code the ledger retired from that
    same resident (changed since the file was written) is set aside instead:
    ``resident_id, field, reason`` for the rejects file.
    """
    codes = rcode.strings_to_codes(frame["resident_code"].to_arrow())
    owners = view.lookup(codes)
    recorded = view.recorded_times(codes).unique(subset="code")
    ids = clean_resident_ids(frame["resident_id"])
    reasons = ownership_problems(owners, ids, municipality)
    checked = frame.select(
        pl.col(ROW).alias("row"),
        pl.col("resident_code").alias("value"),
        owners["code"],
        reasons,
        # The ledger retired this resident's own code: changed since the file was written.
        ((owners["status"] == Status.RETIRED.value) & (owners["resident_id"] == ids))
        .fill_null(False)
        .alias("changed"),
    ).join(recorded, on="code", how="left", maintain_order="left")
    aside = checked["changed"] & set_aside
    errors = checked.filter(pl.col("reason").is_not_null() & ~aside).select(
        "row", pl.lit("resident_code").alias("column"), "reason", "value"
    )
    if errors.height:
        raise InputRowsError(
            f"{errors.height} row(s) of {source} carry a code the ledger does not hold for "
            "that resident, so no sheet was printed (were cells moved or sorted in a "
            "spreadsheet, or resident ids stripped of their leading zeros? A code changed "
            "with rrnet change since the file was made is retired: pass --rejects FILE to "
            "set such rows aside and print the others, or take that resident's row out of "
            "the file, and print the change notice with --changes). Run rrnet verify on "
            "the file with the ledger to see every problem.",
            errors=errors.select("row", "column", "reason").to_dicts(),
            details=describe_errors(errors, source),
        )
    kept = frame.with_columns(
        checked["recorded_at"]
        .dt.convert_time_zone("Asia/Tokyo")
        .dt.date()
        .cast(pl.String)
        .alias("recorded_on")
    ).filter(~aside)
    set_apart = frame.filter(aside).select(
        pl.col("resident_id").cast(pl.String),
        pl.lit("resident_code").alias("field"),
        pl.lit(CHANGED_SINCE).alias("reason"),
    )
    return kept, set_apart


def _with_row_codes(frame: pl.DataFrame) -> pl.DataFrame:
    """The frame with its resident_code compacted (null when the file has none)."""
    if "resident_code" not in frame.columns:
        return frame.with_columns(pl.lit(None, pl.String).alias("resident_code"))
    codes = rcode.compact_array(frame["resident_code"].cast(pl.String).to_arrow())
    return frame.with_columns(pl.Series("resident_code", codes, dtype=pl.String))


def changed_rows(
    frame: pl.DataFrame, view: LedgerView, trail: list[Any], municipality: str, source: Path
) -> pl.DataFrame:
    """The rows of residents whose code was changed and is still their code.

    The change (rrnet change) is the ledger's: the latest one of each resident
    whose new code is the resident's active code here. Each row gets
    ``resident_code`` (the new code), ``old_code`` and ``changed_on`` (the date
    of change in Japan). The old code is the one the resident was last notified
    of (``notified_codes``), not an intermediate code of a second change they
    never received. A row whose file code is neither the new code nor one the
    change replaced is a row error: the file and the ledger disagree about who
    holds what.
    """
    from rrnet_cli.change import recorded_changes

    history = as_current_residents(recorded_changes(trail).sort("txn"), view)
    changes = history.group_by("resident_id", maintain_order=True).last()
    active = view.active_codes(municipality, changes["resident_id"])
    current = changes.join(
        active.select(
            "resident_id",
            pl.Series(rcode.codes_to_strings(active["code"].to_numpy())).alias("new_code"),
        ),
        on=["resident_id", "new_code"],
        how="semi",
    )
    notified = notified_codes(
        history.join(current.select("resident_id"), on="resident_id", how="semi"),
        current.select("resident_id", "new_code"),
        view,
        municipality,
    )
    current = (
        current.rename({"old_code": "_replaced"})
        .join(notified, on="resident_id", how="left", maintain_order="left")
        .with_columns(pl.col("old_code").fill_null(pl.col("_replaced")))
    )
    rows = frame.with_columns(clean_resident_ids(frame["resident_id"]).alias("_resident")).join(
        current.rename({"resident_id": "_resident"}),
        on="_resident",
        how="inner",
        maintain_order="left",
    )
    given = pl.col("resident_code")
    wrong = rows.filter(
        given.is_not_null()
        & (given != "")
        & (given != pl.col("new_code"))
        & (given != pl.col("old_code"))
        & (given != pl.col("_replaced"))
    )
    if wrong.height:
        errors = wrong.select(
            pl.col(ROW).alias("row"),
            pl.lit("resident_code").alias("column"),
            pl.lit("the code is neither the resident's current code nor the one it replaced").alias(
                "reason"
            ),
            given.alias("value"),
        )
        raise InputRowsError(
            f"{errors.height} row(s) of {source} carry a code that is not the resident's, "
            "before or after their change, so no notice was printed.",
            errors=errors.select("row", "column", "reason").to_dicts(),
            details=describe_errors(errors, source),
        )
    return rows.with_columns(
        pl.col("new_code").alias("resident_code"),
        pl.col("changed_at")
        .dt.convert_time_zone("Asia/Tokyo")
        .dt.date()
        .cast(pl.String)
        .alias("changed_on"),
    ).drop("_resident", "new_code", "_replaced", "reason", "changed_at", "txn")


def as_current_residents(history: pl.DataFrame, view: LedgerView) -> pl.DataFrame:
    """The code changes (``change.recorded_changes``, oldest first) with each one's
    resident named as the ledger names them now.

    The audit trail names a resident by the id of the day of the change; ``ledger
    fix-ids`` may since have given that id its leading zeros back. A resident's
    changes form a chain (each one's old code is the previous one's new code), so
    each chain is followed by its codes and named by the holder of its latest code.
    """
    if history.is_empty():
        return history
    chain_of: dict[str, int] = {}
    chains: list[int] = []
    for old, new in zip(history["old_code"], history["new_code"], strict=True):
        chain = chain_of.get(old, len(chains))
        chain_of[new] = chain
        chains.append(chain)
    chained = history.with_columns(pl.Series("_chain", chains, dtype=pl.Int64))
    latest = chained.group_by("_chain", maintain_order=True).agg(
        pl.col("new_code").last(), pl.col("resident_id").last().alias("_trail_id")
    )
    owners = view.lookup(rcode.strings_to_codes(latest["new_code"].to_arrow()))
    named = latest.with_columns(
        pl.coalesce(owners["resident_id"], pl.col("_trail_id")).alias("_holder")
    ).select("_chain", "_holder")
    return (
        chained.join(named, on="_chain", how="left", maintain_order="left")
        .with_columns(pl.col("_holder").alias("resident_id"))
        .drop("_chain", "_holder")
    )


def notified_codes(
    history: pl.DataFrame, current: pl.DataFrame, view: LedgerView, municipality: str
) -> pl.DataFrame:
    """``resident_id, old_code``: the code each changed resident was last notified of.

    ``history`` holds the residents' code changes (``change.recorded_changes``),
    ``current`` each one's code now (``new_code``). Of the codes the resident held
    before it, the one of their latest notice in the ledger (a first notice or a
    change notice, of this municipality) is the code they know. A resident never
    notified of any gets the code before their first change: the code the register
    gave them, and the one any paper they hold shows.
    """
    held = (
        pl.concat(
            [
                history.select("resident_id", pl.col("old_code").alias("code")),
                history.select("resident_id", pl.col("new_code").alias("code")),
            ]
        )
        .unique()
        .join(current, on="resident_id")
        .filter(pl.col("code") != pl.col("new_code"))
        .select("resident_id", "code")
    )
    notices = view.notices_of(rcode.strings_to_codes(held["code"].to_arrow()))
    ours = pl.col("municipality").is_null() | (pl.col("municipality") == municipality)
    ours_only = notices.filter(ours)
    # By code alone: the codes of ``held`` are the resident's by the ledger's own
    # changes, and a notice recorded before ``ledger fix-ids`` names the old id.
    latest = (
        ours_only.with_columns(
            pl.Series("code", rcode.codes_to_strings(ours_only["code"].to_numpy()), pl.String)
        )
        .drop("resident_id")
        .join(held, on="code", how="inner")
        .sort("issued_at", "txn")
        .group_by("resident_id", maintain_order=True)
        .last()
        .select("resident_id", pl.col("code").alias("notified"))
    )
    first = history.sort("txn").group_by("resident_id", maintain_order=True).first()
    return first.join(latest, on="resident_id", how="left").select(
        "resident_id", pl.coalesce("notified", "old_code").alias("old_code")
    )


#: Why a first-notice run prints nothing when no resident of the file is due one.
NOTHING_DUE = (
    "no resident of the file holds a code this ledger drew that has no first notice yet "
    "(a carried-over code gets none; a changed one gets a change notice, --changes; to "
    "print a notice again use --reprint REASON --resident ID; --all previews every coded row)"
)


def _keyed(frame: pl.DataFrame) -> pl.DataFrame:
    """``row, resident_id, code`` of each row: its id as the ledger keys it, its code."""
    return frame.select(
        pl.col(ROW).alias("row"),
        clean_resident_ids(frame["resident_id"]).alias("resident_id"),
        pl.Series("code", rcode.strings_to_codes(frame["resident_code"].to_arrow())),
    )


def first_notice_rows(
    frame: pl.DataFrame, view: LedgerView, municipality: str
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The rows that may need a first notice, and the residents' codes due one.

    Due: every resident of the file whose current code this ledger drew here and
    has no first notice yet (``LedgerView.first_notice_due``), whatever the
    file's code_status says: a second assign run over the same -o, an output
    lost after its commit, or a migration done in several runs leaves such
    residents ``already_assigned`` in the file. The rows the file says are
    ``assigned`` are kept too, so that a row whose code changed since is
    checked against the ledger rather than skipped in silence. A row due whose
    code is not the resident's current one is refused by
    ``check_against_ledger``.
    """
    ids = clean_resident_ids(frame["resident_id"])
    due = view.first_notice_due(municipality, ids.unique())
    wanted = ids.is_in(due["resident_id"].implode())
    if "code_status" in frame.columns:
        wanted = wanted | (frame["code_status"] == CodeStatus.ASSIGNED).fill_null(False)
    return frame.filter(wanted), due


def with_ledger_codes(
    frame: pl.DataFrame, due: pl.DataFrame, view: LedgerView, municipality: str, source: Path
) -> tuple[pl.DataFrame, int]:
    """The rows to print a first notice for, a row without a code given its resident's
    code due one (``first_notice_rows``) from the ledger; and how many were given one.

    The register export, given instead of what rrnet assign wrote, has no codes
    (or only those residents arrived with): the ledger holds the code drawn for
    each resident, found by the resident's id exactly as the ledger keys it (an
    id that lost its leading zeros finds nothing), and the file gives the name
    and address, as for a change notice. The code printed is the ledger's. A
    file that is not rrnet assign's (no code_status column) none of whose
    residents is due a notice, while codes drawn here wait for theirs, is
    refused: most likely the wrong register, and an office must not read
    "nothing to print" as "everyone has been notified".
    """
    given = pl.col("resident_code")
    missing = given.is_null() | (given == "")
    codes = pl.DataFrame(
        {
            "_resident": due["resident_id"],
            "_due": pl.Series(rcode.codes_to_strings(due["code"].to_numpy())),
        },
        schema={"_resident": pl.String, "_due": pl.String},
    )
    keyed = frame.with_columns(clean_resident_ids(frame["resident_id"]).alias("_resident")).join(
        codes, on="_resident", how="left", maintain_order="left"
    )
    filled = keyed.select((missing & pl.col("_due").is_not_null()).sum()).item()
    rows = (
        keyed.with_columns(
            pl.when(missing).then(pl.col("_due")).otherwise(given).alias("resident_code")
        )
        .filter(given.is_not_null() & (given != ""))
        .drop("_resident", "_due")
    )
    if rows.height == 0 and "code_status" not in frame.columns:
        waiting = view.first_notice_due(municipality).height
        if waiting:
            raise UsageError(
                f"{source} looks like the register export, not the output of rrnet assign "
                f"(it has no code_status column), and none of its residents has a code drawn "
                f"here that waits for its first notice, while {waiting} code(s) drawn here "
                "still have no first notice. Give the file rrnet assign wrote (its -o)."
            )
    return rows, int(filled)


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
    reprint: ReprintReason | None = None,
    residents: Sequence[str] = (),
    invocation: Invocation | None = None,
    changes: bool = False,
    mapping: dict[str, str] | None = None,
    lists: str = "csv",
    settled: Callable[[], None] | None = None,
) -> NotifyResult:
    """Check every row against the ledger, then render, record and publish the notices.

    Nothing is printed unless every selected row's code is valid and is the
    ledger's for that resident. A notice is issued once: by default only
    newly assigned residents whose code has no notice yet are printed, and the
    ledger records every notice printed (resident, code, batch, file, page) in
    one transaction. ``reprint`` (with ``residents``) reissues notices already
    issued, marked 再交付 and recorded as reprints; ``include_all`` prints
    samples marked 見本 / SAMPLE and records nothing.

    The files are written into a hidden folder beside ``output``, the notices
    are committed to the ledger, and only then is the folder renamed to
    ``output``. On any failure, or Ctrl-C, before the commit, the hidden folder
    is removed and the ledger is unchanged. ``settled`` is called once the
    notices are recorded (or the samples published): what is left is to name
    the folder, which Ctrl-C no longer stops.
    """
    started = time.perf_counter()
    if lists not in ("csv", "xlsx"):
        raise UsageError("--lists is csv or xlsx.")
    if include_all and reprint is not None:
        raise UsageError(
            "--all prints samples (marked 見本 / SAMPLE, recorded nowhere); --reprint "
            "reissues notices: give one of them."
        )
    if reprint is not None and not profile.reprint:
        raise UsageError(
            "This office does not reissue notices (the profile's [sheet] reprint = false: "
            "この通知書は再発行できません). Nothing was printed."
        )
    if reprint is not None and not residents:
        raise UsageError("--reprint needs the residents to reprint: --resident ID (repeatable).")
    if residents and reprint is None:
        raise UsageError("--resident names residents to reprint: give --reprint REASON with it.")
    if per_household is None:
        # Change notices go one per resident, whatever the office's usual mailing.
        per_household = profile.mailing == "household" and not changes
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
    serves = ledger.municipalities
    if serves and profile.code not in serves:
        raise UsageError(
            f"The profile is for municipality {profile.code}, the ledger for "
            f"{', '.join(serves)}: the sheets would name the wrong sender. Give the "
            "profile of the ledger's municipality."
            if len(serves) == 1
            else f"The profile is for municipality {profile.code}, which the ledger "
            f"{ledger.location} does not serve for you ({', '.join(serves)}). Give the "
            "profile of your municipality."
        )
    if rejects is not None:
        check_table_suffix(rejects, excel=True)
        if rejects.exists():
            # As the output folder must be new: a rejects file is never replaced unasked.
            raise UsageError(
                f"--rejects {rejects} already exists; give a new file name (the one there "
                "may be an earlier run's list of sheets to print by hand)."
            )
    if changes and per_household:
        raise UsageError(
            "Change notices go one per resident: --changes cannot be combined with --per-household."
        )
    # Refusals above leave every folder as it is; from here on, stopped runs are tidied.
    recovery = recover_interrupted(output, ledger, profile.code)
    stale = remove_stale_parts([output, rejects])
    stale_notes = stale_part_notes(stale.removed, stale.not_removed)
    if recovery.recovered is not None:
        result = NotifyResult(
            assigned=str(assigned), output=str(output), workers=workers, notes=stale_notes
        )
        result.recovered = recovery.recovered
        result.handed_over, result.stranded = recovery.handed_over, recovery.stranded
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    with steps.step("Reading the assigned register"):
        export = read_export(
            assigned,
            encoding=encoding,
            ours=True,
            sheet=sheet,
            delimiter=delimiter,
            mapping=mapping,
        )
        needed = ("resident_id", "name", "birth_date", "sex", "address")
        first_notices = not (changes or include_all or reprint is not None)
        # First notices take a row without a code (the register export itself, not
        # what rrnet assign wrote) to be the resident's, the code the ledger's (below).
        require_columns(export, needed if changes or first_notices else ("resident_code", *needed))
        if first_notices:
            frame = _checked_codes(_with_row_codes(export.frame), export.path)
        elif changes:
            frame = _with_row_codes(export.frame)
            if residents:
                frame = select_residents(frame, False, residents, coded_only=False)
        elif include_all or residents:
            frame = select_residents(
                _checked_codes(export.frame, export.path), include_all, residents
            )
    result = NotifyResult(
        assigned=str(assigned),
        output=str(output),
        default_language=normalise_language(default_language) or default_language,
        workers=workers,
        per_household=per_household,
        issue="sample" if include_all else "reprint" if reprint is not None else "new",
        reprint_reason=reprint.value if reprint is not None else None,
        notes=stale_notes,
        lists=[f"manifest.{lists}", f"mailing.{lists}"],
        handed_over=recovery.handed_over,
        stranded=recovery.stranded,
    )
    if frame.height == 0 and not changes:
        result.nothing_to_print = "no row has a code"
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    trail = ledger.audit_log().records if changes else []
    with steps.step("Checking codes against the ledger"), ledger.reading() as view:
        if changes:
            frame = changed_rows(frame, view, trail, profile.code, export.path)
            unchanged = sorted(set(residents) - set(clean_resident_ids(frame["resident_id"])))
            if unchanged:
                raise UsageError(
                    f"{len(unchanged)} resident(s) given with --resident have no code change "
                    f"in the ledger that is still their code: {', '.join(unchanged[:10])}."
                )
        due: pl.DataFrame | None = None
        if first_notices:
            frame, due = first_notice_rows(frame, view, profile.code)
            frame, result.codes_from_ledger = with_ledger_codes(
                frame, due, view, profile.code, export.path
            )
            if frame.height == 0:
                result.nothing_to_print = NOTHING_DUE
                result.seconds = round(time.perf_counter() - started, 3)
                return result
        check_rows(frame, export.path)
        if changes and frame.height == 0:
            result.nothing_to_print = (
                "no resident of the file has a code change recorded in the ledger "
                "(rrnet change) that is still their code"
            )
            result.seconds = round(time.perf_counter() - started, 3)
            return result
        # A notice of a new code and one of a change are different notices: each is
        # issued once, and a reprint reissues the kind the resident was sent.
        kind = NoticeKind.CHANGE if changes else NoticeKind.NEW
        notices_of = view.notices_of(rcode.strings_to_codes(frame["resident_code"].to_arrow()))
        # This municipality's notices only: on a shared ledger the owner's run for one
        # ward must not take another ward's file as printed (its rows are refused below).
        ours = pl.col("municipality").is_null() | (pl.col("municipality") == profile.code)
        issued = issued_notices(frame, notices_of.filter((pl.col("kind") == kind.value) & ours))
        if reprint is not None:
            never = frame.join(issued.select(pl.col("row").alias(ROW)), on=ROW, how="anti")
            if never.height:
                ids = ", ".join(never["resident_id"].cast(pl.String).head(10).to_list())
                raise UsageError(
                    f"{never.height} resident(s) have no notice issued for their current "
                    f"code yet ({ids}): that is a first notice, not a reprint. Print it "
                    "without --reprint."
                )
        elif not include_all and issued.height:
            # Rows whose notice was issued are left out before their codes are checked:
            # a file kept from an earlier run may hold a code changed since.
            frame = frame.filter(~frame[ROW].is_in(issued["row"].to_list()))
            result.already_issued = issued.height
            if frame.height == 0:
                last = issued.sort("issued_at").row(-1, named=True)
                when_issued = last["issued_at"].astimezone(JAPAN).date().isoformat()
                whose = (
                    "residents whose code changed"
                    if changes
                    else "residents with a code this ledger drew"
                )
                result.nothing_to_print = (
                    f"the notices of all {issued.height} {whose} were already issued (last "
                    f"in batch {last['batch']} on {when_issued}); a notice is issued once: "
                    "to print one again use --reprint REASON --resident ID"
                )
                result.seconds = round(time.perf_counter() - started, 3)
                return result
        aside = None
        if changes:
            frame = frame.with_columns(pl.col("changed_on").alias("recorded_on"))
        else:
            frame, aside = check_against_ledger(
                frame, view, profile.code, export.path, set_aside=rejects is not None
            )
        if due is not None:
            # A row the file says is newly assigned whose code the ledger did not draw
            # here (carried over, or brought by a code change) gets no first notice.
            drawn = _keyed(frame).join(due, on=["resident_id", "code"], how="semi")["row"]
            result.not_drawn_here = frame.height - drawn.len()
            frame = frame.filter(pl.col(ROW).is_in(drawn.implode()))
    if aside is not None and aside.height and frame.height == 0:
        assert rejects is not None
        write_table(aside, rejects)
        result.rejected, result.rejects = aside.height, str(rejects)
        result.nothing_to_print = f"every sheet was set aside; the reasons are in {rejects}"
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    if frame.height == 0:
        result.nothing_to_print = NOTHING_DUE
        result.seconds = round(time.perf_counter() - started, 3)
        return result
    recorded = frame["recorded_on"]
    _check_dates(recorded_on, notice_date, recorded)
    bad_ids = frame.filter(~pl.col("resident_id").str.contains(_SAFE_ID))
    if per_resident and bad_ids.height:
        raise UsageError(
            f"{bad_ids.height} resident_id value(s) cannot be file names (letters, digits, "
            "- and _ only); per-resident files are named by resident_id."
        )
    # Counted before the row's language is replaced by the one its notice is in.
    result.without_notice = languages_without_notice(frame)
    frame = mailing_order(
        frame.with_columns(choose_languages(frame, default_language)),
        households=per_household,
    )
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
        if changes:
            for notice, old, changed in zip(
                sheets, frame["old_code"], frame["changed_on"], strict=True
            ):
                notice["old_code"] = old
                notice["changed_on"] = format_date(date.fromisoformat(changed), profile.date_style)
    result.sheets = len(sheets)
    today = today_in_japan()
    when = format_date(notice_date or today, profile.date_style)
    mark = None
    if include_all:
        mark = Mark("sample")
    elif reprint is not None:
        mark = Mark("reissued", format_date(today, profile.date_style))
    # Written apart, then recorded, then published: a crash or Ctrl-C before the
    # commit leaves no output folder, no rejects file and no notice recorded.
    # Named by machine and process: a run on another machine sharing the folder (a
    # shared ledger) must never take this folder for a stopped run's.
    staging = output.parent / (
        f".{output.name}.rrnet-{host_name()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.part"
    )
    rejects_file: PendingFile | None = None
    published = False
    try:
        rejects_file = PendingFile(rejects) if rejects is not None else None
        printed = _write_sheets(
            staging,
            sheets,
            profile,
            when,
            result,
            per_resident,
            batch_size,
            steps,
            rejects_file,
            "household" if per_household else "change" if changes else "sheet",
            mark,
            aside=aside.to_dicts() if aside is not None else [],
        )
        if not include_all and printed.residents:
            with steps.step("Recording the notices in the ledger"):
                _record_notices(
                    ledger,
                    printed,
                    staging,
                    output,
                    assigned,
                    result,
                    profile.code,
                    invocation,
                    kind,
                )
            if settled is not None:
                settled()
        if not printed.residents:
            # Every sheet was set aside (--rejects): nothing to hand over, no folder.
            shutil.rmtree(staging, ignore_errors=True)
            if rejects_file is not None:
                rejects_file.publish()
            result.nothing_to_print = (
                f"every sheet was set aside; the reasons are in {rejects}"
                if rejects is not None
                else "no sheet could be printed"
            )
            result.seconds = round(time.perf_counter() - started, 3)
            return result
        failpoint("notify-after-commit")
        _publish(staging, output)
        published = True
        if settled is not None:
            settled()
        if rejects_file is not None:
            rejects_file.publish()
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        if not published and not _issued(staging, ledger):
            shutil.rmtree(staging, ignore_errors=True)
            if rejects_file is not None:
                rejects_file.discard()
            raise
        if not published and (not interrupted or not _hand_over(staging, output)):
            # The notices are recorded: their sheets are issued, and the next run
            # hands them over.
            raise RrnetError(
                f"The notices were recorded in the ledger (batch {result.batch or '?'}), "
                f"but their folder could not be named {output}: the sheets are in {staging}. "
                "Run notify again (with any -o) to have them handed over."
            ) from exc
        if not interrupted:
            if rejects_file is not None:
                rejects_file.discard()
            raise
        # Ctrl-C once the notices are recorded: the run finishes what is left.
        if rejects_file is not None and not rejects_file.published:
            rejects_file.publish()
    (output / BATCH_MARKER).unlink(missing_ok=True)
    result.seconds = round(time.perf_counter() - started, 3)
    result.sheets_per_second = round(len(sheets) / result.seconds, 1) if result.seconds else 0.0
    return result


#: In a folder being written: the batch its notices are recorded under, written
#: just before the ledger commit (see ``recover_interrupted``).
BATCH_MARKER = ".rrnet-batch"


@dataclass
class Recovery:
    """What ``recover_interrupted`` did with the folders killed notify runs left."""

    #: the folder of a run meant for this run's -o, now given that name (nothing else runs)
    recovered: str | None = None
    #: issued sheets of killed runs, now in the folder the ledger records for them
    handed_over: list[str] = field(default_factory=list)
    #: issued sheets still under a hidden name: batch, residents, where, meant for
    stranded: list[dict[str, Any]] = field(default_factory=list)


def notify_batches(ledger: LedgerStore, municipality: str) -> dict[str, tuple[Path, int | None]]:
    """The folder each notify batch of ``municipality`` went into, as the ledger's audit
    trail records it, and how many notices it recorded.

    A run records the folder whole (``notice_folder``); a record of an older rrnet
    has only its outputs' paths, as given on the command line (a relative one is
    taken from here: the marker in the hidden folder says whether it is the batch's).
    """
    from rrnet_cli.ledger.notices import output_folder

    found: dict[str, tuple[Path, int | None]] = {}
    for record in ledger.audit_log().records:
        if not isinstance(record, dict) or not isinstance(record.get("notice_batch"), str):
            continue
        if record.get("municipality") not in (None, municipality):
            continue
        folder = record.get("notice_folder") or output_folder(record.get("outputs"))
        if not isinstance(folder, str):
            continue
        counts = record.get("counts")
        count = counts.get("notice") if isinstance(counts, dict) else None
        found[record["notice_batch"]] = (Path(folder), count if isinstance(count, int) else None)
    return found


def _residents(count: int | None) -> str:
    return f"{count} resident(s)" if count is not None else "its residents"


def recover_interrupted(output: Path, ledger: LedgerStore, municipality: str) -> Recovery:
    """Finish or remove what killed notify runs left; say what.

    A run writes into a hidden folder ``.NAME.rrnet-PID-*.part`` beside its -o,
    writes the batch and the ledger into it (``BATCH_MARKER``), records its
    notices in the ledger (the audit record names the folder), then renames the
    hidden folder to NAME. So a folder of a run that is no longer alive, beside
    ``output`` or beside any folder the ledger records a batch of
    ``municipality`` went into, is:

    - without the marker, or with this ledger's marker and a batch the ledger
      does not hold: sheets never issued. Beside ``output`` it is removed (it
      holds personal data);
    - with a batch this ledger holds: sheets issued but never handed over. If
      the folder it was meant for is free, it gets that name (what the run
      would have done): for ``output`` nothing else runs; otherwise it is
      ``stranded``: which batch, how many residents, where the sheets are;
    - with another ledger's marker: left alone.
    """
    done = Recovery()
    batches = notify_batches(ledger, municipality)
    output = Path(os.path.abspath(output))
    places = {Path(os.path.abspath(f.parent)) for f, _ in batches.values()} | {output.parent}
    for place in sorted(places):
        here = place == output.parent
        for stale in sorted(place.glob(".*.rrnet-*.part")):
            name, _, rest = stale.name[1:].rpartition(".rrnet-")
            host, pid = _writer(rest)
            # Another machine's run cannot be seen; a live process's (this one's
            # included) is a run still at work.
            if not stale.is_dir() or host not in (None, host_name()):
                continue
            if pid.isdigit() and pid_alive(int(pid)):
                continue
            marker = stale / BATCH_MARKER
            try:
                said = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else {}
            except (OSError, ValueError):
                said = {}
            batch, where = said.get("batch"), said.get("ledger")
            if where is not None and where not in (ledger_key(ledger), ledger.location):
                continue
            if not here and batch not in batches:
                continue  # not this municipality's batch, nor beside this run's -o
            if not isinstance(batch, str) or not _batch_recorded(ledger, batch):
                if here:
                    shutil.rmtree(stale, ignore_errors=True)
                continue
            count = batches.get(batch, (None, None))[1]
            target = stale.parent / name
            free = not target.exists() or (target.is_dir() and not any(target.iterdir()))
            if free:
                _publish(stale, target)
                (target / BATCH_MARKER).unlink(missing_ok=True)
            if free and target == output:
                done.recovered = (
                    f"An earlier notify run was stopped after it recorded its notices (batch "
                    f"{batch}, {_residents(count)}) but before it named its folder: its "
                    f"sheets are now in {output}. Print those; run notify again with another "
                    "-o for anything not yet issued"
                )
            elif free:
                done.handed_over.append(
                    f"An earlier notify run was stopped after it recorded its notices (batch "
                    f"{batch}, {_residents(count)}) but before it named its folder: its "
                    f"sheets are now in {target}, the folder the ledger records. Print those"
                )
            else:
                done.stranded.append(
                    {
                        "batch": batch,
                        "residents": count,
                        "folder": str(stale),
                        "meant_for": str(target),
                    }
                )
    return done


def _writer(rest: str) -> tuple[str | None, str]:
    """(machine, process id) of a hidden folder's name after ``.rrnet-``: ``HOST-PID-X``,
    or ``PID-X`` as an older rrnet named it (no machine: taken as this one).

    >>> _writer("vm_1-4242-ab12cd34.part"), _writer("4242-ab12cd34.part")
    (('vm_1', '4242'), (None, '4242'))
    """
    first, _, after = rest.partition("-")
    if first.isdigit():
        return None, first
    return first, after.partition("-")[0]


def ledger_key(ledger: LedgerStore) -> str:
    """The ledger a batch marker names: a folder by its real path (``-l demo/ledger``
    and ``-l /srv/demo/ledger`` are one ledger), a database by its location."""
    from rrnet_cli.ledger import Ledger

    return os.path.realpath(ledger.path) if isinstance(ledger, Ledger) else ledger.location


def stranded_warning(stranded: dict[str, Any]) -> str:
    """What an office must do about issued sheets that nobody was given."""
    return (
        f"the notices of batch {stranded['batch']} ({_residents(stranded['residents'])}) "
        "are recorded as issued, but their sheets were never handed over: the notify run "
        "was stopped after it recorded them and before it named its folder, and "
        f"{stranded['meant_for']}, the folder meant for them, now holds other files. The "
        f"sheets are in {stranded['folder']}: move that folder to a new name and print "
        "them (notify warns and exits 1 until then)"
    )


def _write_list(frame: pl.DataFrame, destination: Path) -> None:
    """manifest or mailing list: CSV (UTF-8 with BOM) or an Excel workbook, whose cells
    are text, so that ids and postal codes keep their leading zeros in Excel."""
    suffix = check_table_suffix(destination, excel=True)
    with atomic_output(destination) as tmp:
        write_table_to(frame, tmp, suffix)


def _publish(staging: Path, output: Path) -> None:
    """Give the finished folder its name (an empty folder of that name is replaced)."""
    os.replace(staging, output)
    fsync_dir(output.parent)


def _issued(staging: Path, ledger: LedgerStore) -> bool:
    """Whether the folder being written holds notices the ledger recorded (its run
    stopped after the commit); True when the ledger cannot say (the next run, which
    asks again, removes the folder if not)."""
    marker = staging / BATCH_MARKER
    if not marker.is_file():  # not yet recording (or already named: the caller knows)
        return False
    try:
        batch = json.loads(marker.read_text(encoding="utf-8")).get("batch")
    except (OSError, ValueError):  # no batch written yet: nothing recorded
        return False
    try:
        return isinstance(batch, str) and _batch_recorded(ledger, batch)
    except Exception:  # the ledger cannot be read now: keep the folder
        return True


def _hand_over(staging: Path, output: Path) -> bool:
    """Give the finished folder its name; whether it has it now."""
    try:
        _publish(staging, output)
    except OSError:
        return False
    return True


def _batch_recorded(ledger: LedgerStore, batch: str) -> bool:
    """Whether the ledger records the notices of this notify batch."""
    with ledger.reading() as view:
        return view.has_batch(batch)


def _record_notices(
    ledger: LedgerStore,
    printed: _Printed,
    staging: Path,
    output: Path,
    assigned: Path,
    result: NotifyResult,
    municipality: str,
    invocation: Invocation | None,
    kind: NoticeKind = NoticeKind.NEW,
) -> None:
    """Record every notice printed, in one ledger transaction (the run's batch).

    Under the ledger's lock, the notices are checked again: a notice issued by
    another run since this one read the ledger stops this one, which then
    records nothing and keeps no file.
    """
    residents = printed.residents
    batch = f"{datetime.now(JAPAN):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
    notices = pl.DataFrame(
        {
            "code": rcode.strings_to_codes([str(r[0]["code"]) for r in residents]),
            "resident_id": [str(r[0]["resident_id"]) for r in residents],
            "municipality": municipality,
            "kind": kind.value,
            "reprint_reason": result.reprint_reason,
            "batch": batch,
            "file": [r[1] for r in residents],
            "page": [r[2] for r in residents],
        },
        schema_overrides={"reprint_reason": pl.String, "page": pl.Int32},
    )
    names = [*result.files, *result.lists]
    outputs = [file_digest(staging / name, name=output / name) for name in names]
    marker = staging / BATCH_MARKER
    marker.write_text(json.dumps({"batch": batch, "ledger": ledger_key(ledger)}), encoding="utf-8")
    os.chmod(marker, 0o600)
    with ledger.transaction() as txn:
        txn.describe(
            invocation,
            inputs=[file_digest(assigned)],
            outputs=outputs,
            details={"notice_batch": batch, "notice_folder": str(output.absolute())},
        )
        view = txn.view()
        current = view.lookup(notices["code"].to_numpy())
        moved = notices.filter(
            ~current["status"].is_in(list(ACTIVE)).fill_null(False)
            | (current["resident_id"] != notices["resident_id"]).fill_null(True)
        )
        if moved.height:
            raise RrnetError(
                f"{moved.height} of the codes printed stopped being their residents' codes "
                "while this run was printing (rrnet change?). Nothing was recorded and no file "
                "was kept; run notify again."
            )
        if result.issue == "new":
            clash = notices.join(
                view.notices_of(notices["code"].to_numpy()).select("code", "resident_id"),
                on=["code", "resident_id"],
                how="semi",
            )
            if clash.height:
                raise RrnetError(
                    f"{clash.height} of these notices were issued by another rrnet notify run "
                    "while this one was printing. Nothing was recorded and no file was kept; "
                    "run notify again to print the rest."
                )
        txn.add_notices(notices)
    result.batch = batch


def _init_worker(
    profile: Profile, static: Any, kind: str, parent: int, worker: bool = True
) -> None:
    """Build this process's renderer of form ``kind``; a worker leaves Ctrl-C to its
    parent, and ends when its parent (the run, ``parent``) ends, however it ended.

    The parent cancels the batches not yet started, waits for the running ones
    and removes every partial file; a worker that died of the same SIGINT
    would only print a traceback and break the pool.
    """
    from rrnet_cli import form

    if worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        form.exit_with(parent)
    form.init_worker(profile, static, kind)


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


def household_key(household_id: Any) -> str | None:
    """A household id as households are told apart: trimmed; blank is no household.

    >>> household_key(" H1 "), household_key("  "), household_key(None)
    ('H1', None, None)
    """
    text = "" if household_id is None else str(household_id).strip()
    return text or None


def group_households(sheets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sheets (in mailing order) gathered by household_id, each household where its first is.

    A resident without a household_id is a household of one. Members keep the
    export's order, so the first (the addressee) is usually the householder.
    """
    households: dict[tuple[str, Any], dict[str, Any]] = {}
    for index, sheet in enumerate(sheets):
        # As mailing_order keys a household: spaces around an id are not part of it,
        # and an id of spaces is none (each such resident is a household of one).
        household_id = household_key(sheet.get("household_id"))
        key = ("household", household_id) if household_id else ("resident", index)
        if key not in households:
            households[key] = {
                "household_id": household_id,
                "reference": household_id or sheet["resident_id"],
                "members": [],
            }
        households[key]["members"].append(sheet)
    return list(households.values())


def _shown(references: list[str], limit: int = 5) -> str:
    """The first ``limit`` references, comma-separated, "..." when there are more."""
    return ", ".join(references[:limit]) + (" ..." if len(references) > limit else "")


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
            with starting_processes():  # map starts the workers
                rendered = pool.map(render, batches)
            for batch, result in zip(batches, rendered, strict=True):
                results.append(result)
                advance(size(batch))
        except (BrokenProcessPool, BrokenPipeError, ConnectionResetError, EOFError):
            # A worker that dies mid-batch breaks the pool; the pipe to it can break
            # first (seen under load), which is the same failure, not a file problem.
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


def _write_sheets(
    output: Path,
    sheets: list[dict[str, Any]],
    profile: Profile,
    when: str,
    result: NotifyResult,
    per_resident: bool,
    batch_size: int,
    steps: Steps,
    rejects: PendingFile | None = None,
    form_kind: str = "sheet",
    mark: Mark | None = None,
    aside: Sequence[dict[str, Any]] = (),
) -> _Printed:
    """Lay out and compose the sheets (the fixed form), publish them, write the lists.

    The static page of each language is laid out once, apart; the workers lay
    out only the values, fitted to their boxes, and put the static page under
    them. A sheet that cannot be printed (a value too long for its box at the
    smallest size, or a character no font of the form has) stops the run,
    naming the resident, field and reason, unless ``rejects`` takes it. With
    ``per_household``, each household gets one document and one envelope.
    """
    from rrnet_cli import form

    per_household = form_kind == "household"
    output.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.chmod(output, PRIVATE_DIR)
    languages = sorted({str(s["language"]) for s in sheets})
    with steps.step("Laying out the static page of each language"):
        static = _static_pages(
            form.render_static_pages_apart, profile, languages, when, mark, form_kind
        )
    size: Any = len
    if per_household:
        households = group_households(sheets)
        # A blank postal code is unknown, not a different one.
        apart = [
            str(h["household_id"])
            for h in households
            if len({m["address"] for m in h["members"]}) > 1
            or len({m["postal_code"] for m in h["members"] if m["postal_code"]}) > 1
        ]
        if apart:
            result.notes.append(
                f"{len(apart)} household(s) have members registered at different addresses "
                f"({_shown(apart)}); each envelope goes to its first member's address. Check "
                "them before mailing."
            )
        # Named by the household's reference (its household_id, or the resident_id of a
        # household of one), never by a person's name.
        unposted = [str(h["reference"]) for h in households if not h["members"][0]["postal_code"]]
        if unposted:
            result.notes.append(
                f"{len(unposted)} envelope(s) have no postal code ({_shown(unposted)}): the "
                "addressee's postal code is blank in the register. Add it on the envelope "
                "(〒) before mailing."
            )
        batches: list[Any] = list(_household_batches(households, batch_size))

        def size(batch: list[dict[str, Any]]) -> int:
            return sum(len(h["members"]) for h in batch)

    else:
        batches = list(_batches(sheets, batch_size))
    layers: list[Any] = _render_batches(
        batches,
        form.render_batch,
        _init_worker,
        (profile, static, form_kind, os.getpid()),
        result.workers,
        steps,
        len(sheets),
        size,
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
    if rejects is not None:  # published by the caller, once the notices are recorded
        # Rows set aside before printing (a code changed since), then sheets that did not fit.
        rows = [*aside, *(vars(r) for r in rejections)]
        write_table_to(
            pl.DataFrame(
                rows, schema={"resident_id": pl.String, "field": pl.String, "reason": pl.String}
            ),
            rejects.path,
            check_table_suffix(rejects.destination, excel=True),
        )
        result.rejected = len(rows)
        result.rejects = str(rejects.destination)
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
    _write_list(manifest, output / result.lists[0])
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
    _write_list(mailing, output / result.lists[1])
    result.by_language = dict(
        # most sheets first; languages with as many in name order, the same every run
        sorted(manifest.group_by("language").len().iter_rows(), key=lambda kv: (-kv[1], kv[0]))
    )
    return printed
