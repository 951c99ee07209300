"""Proving that codes are valid and unique: ``rrnet verify``.

Checks, over any number of assigned registers (rrnet's own outputs or any file
with resident_id and resident_code columns) and optionally a ledger:

- every code is 11 digits with the right check digit;
- no code belongs to two residents, within a file or across files;
- no resident holds two different codes;
- no excluded row carries a code, and every row marked as coded has one;
- with a ledger: each code is known to it, belongs to that resident there and
  is not retired; and the ledger itself is sound (see ``LedgerStore.check_integrity``);
- partial outputs that stopped runs left beside the files given are named (a
  note, not a violation: see ``files.find_stale_parts``);
- for a municipality in pool mode: each code drawn for it (the ledger's status
  ``assigned``, by assign or by a code change) is in its designated pool. Codes
  carried over from other municipalities, or in use elsewhere, are exempt, and
  so are codes drawn before the municipality's first designation: there was no
  pool to draw from. A code drawn freely after it, before pool mode was turned
  on, is flagged: it lies outside the pool all the same (``rrnet ledger
  pool-mode on`` warns of them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from rrnet_cli import code as rcode
from rrnet_cli import schema
from rrnet_cli.errors import UsageError
from rrnet_cli.files import find_stale_parts
from rrnet_cli.ingest import EXCEL_SUFFIXES, clean_resident_ids, read_export, require_columns
from rrnet_cli.ledger import (
    LedgerStore,
    first_notices_due,
    municipality_for,
    ownership_problems,
)
from rrnet_cli.schema import ROW


@dataclass
class Violation:
    """One broken rule, located as precisely as possible."""

    file: str
    row: int | None
    check: str
    message: str
    value: str | None = None


@dataclass
class VerifyResult:
    """Everything verify looked at and found."""

    files: list[str] = field(default_factory=list)
    rows: int = 0
    codes: int = 0
    ledger: str | None = None
    ledger_records: int | None = None
    violations: list[Violation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: with a ledger: the codes drawn here with no first notice yet (not a violation)
    first_notice_due: list[dict[str, Any]] | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        return data

    def summary_rows(self) -> list[tuple[str, Any]]:
        rows: list[tuple[str, Any]] = [
            ("files", len(self.files)),
            ("rows", self.rows),
            ("codes", self.codes),
        ]
        if self.ledger:
            rows.append(("ledger records checked", self.ledger_records or 0))
        if self.first_notice_due is not None:
            rows.append(("drawn here, no first notice yet", len(self.first_notice_due)))
        rows.append(("violations", len(self.violations)))
        return rows

    def lines(self, limit: int = 200) -> list[str]:
        """One line per violation (the first ``limit``), then the notes."""
        lines = []
        for v in self.violations[:limit]:
            where = f"{v.file} row {v.row}" if v.row is not None else v.file
            extra = f" (value {v.value!r})" if v.value is not None else ""
            lines.append(f"{where}: [{v.check}] {v.message}{extra}")
        if len(self.violations) > limit:
            lines.append(f"... and {len(self.violations) - limit} more (use --json for all)")
        return lines + [f"note: {note}" for note in self.notes]


def _load(
    path: Path,
    encoding: str,
    mapping: dict[str, str] | None,
    sheet: str | None = None,
    delimiter: str = "auto",
) -> pl.DataFrame:
    # --sheet names the worksheet of every Excel file given; other files have none.
    if path.suffix.lower() not in EXCEL_SUFFIXES:
        sheet = None
    export = read_export(
        path, encoding=encoding, mapping=mapping, ours=True, sheet=sheet, delimiter=delimiter
    )
    require_columns(export, ("resident_id", "resident_code"))
    frame = export.frame
    status = pl.col("code_status") if "code_status" in frame.columns else pl.lit(None, pl.String)
    # Normalised exactly as assign keys residents and codes, so both agree on identity.
    return frame.select(
        pl.lit(str(path)).alias("file"),
        pl.col(ROW).alias("row"),
        clean_resident_ids(frame["resident_id"].cast(pl.String)).alias("resident_id"),
        pl.Series("code", rcode.compact_array(frame["resident_code"].cast(pl.String).to_arrow())),
        status.cast(pl.String).alias("code_status"),
    )


def verify(
    paths: list[Path],
    *,
    ledger: LedgerStore | None = None,
    municipality: str | None = None,
    encoding: str = "auto",
    mapping: dict[str, str] | None = None,
    verbose: bool = False,
    sheet: str | None = None,
    delimiter: str = "auto",
) -> VerifyResult:
    """Run every check; never raises for a violation, only for unusable input."""
    if not paths and ledger is None:
        raise UsageError("Give one or more assigned registers to verify, or --ledger DIR.")
    _refuse_repeated_files(paths)
    result = VerifyResult(files=[str(p) for p in paths])
    found: list[pl.DataFrame] = []
    if ledger is not None and municipality is not None:
        # A -m the ledger does not serve (for this role) is refused up front, as
        # every other command refuses it, even when only the ledger is checked.
        municipality = municipality_for(ledger, municipality)
    if ledger is not None:
        result.ledger = ledger.location
        integrity = ledger.check_integrity()
        result.ledger_records = integrity.records
        result.notes.extend(integrity.notes)
        for v in integrity.violations:
            result.violations.append(
                Violation(
                    file=f"{ledger.location}/{v['file']}",
                    row=None,
                    check="ledger",
                    message=v["reason"],
                )
            )
    if ledger is not None and not result.violations:
        _first_notices_due(result, ledger, municipality)
    if not paths:
        return result
    rows = pl.concat([_load(Path(p), encoding, mapping, sheet, delimiter) for p in paths])
    for part in find_stale_parts(Path(p).parent for p in paths):
        result.notes.append(
            f"{part} is a partial output (personal data) that a stopped rrnet run left "
            "beside the files given: the next assign, change or notify writing to that "
            "folder removes it, or delete it"
        )
    result.rows = rows.height
    coded = rows.filter(pl.col("code").is_not_null())
    result.codes = coded.height

    found.append(_format_violations(coded))
    found.append(_status_violations(rows))
    valid = coded.filter(pl.col("code").str.contains(r"^[0-9]{11}$"))
    found.append(_duplicate_codes(valid))
    found.append(_several_codes(valid))
    if ledger is not None and any(v.check == "ledger" and v.row is None for v in result.violations):
        result.notes.append(
            "codes were not compared with the ledger because the ledger itself is damaged"
        )
    elif ledger is not None:
        municipality = municipality_for(ledger, municipality)
        found.append(_ledger_violations(valid, ledger, municipality))
    table = pl.concat([f for f in found if f.height]) if any(f.height for f in found) else None
    if table is not None:
        table = table.sort(["file", "row"], maintain_order=True)
        for item in table.iter_rows(named=True):
            result.violations.append(
                Violation(
                    file=item["file"],
                    row=item["row"],
                    check=item["check"],
                    message=item["message"],
                    value=item["value"] if verbose else None,
                )
            )
    return result


def _refuse_repeated_files(paths: list[Path]) -> None:
    """Stop when one file is given twice (by the same path, or by two: ./f.csv and a
    link to it): its rows would be counted twice, and by the same path each of its
    codes reported as a duplicate of itself."""
    seen: dict[tuple[int, int] | Path, Path] = {}
    for path in map(Path, paths):
        try:
            stat = path.stat()
            key: tuple[int, int] | Path = (stat.st_dev, stat.st_ino)
        except OSError:  # not there: reading it says so
            key = path.absolute()
        first = seen.get(key)
        if first is None:
            seen[key] = path
        else:
            which = (
                f"{path} was given twice"
                if str(first) == str(path)
                else f"{first} and {path} are the same file, given twice"
            )
            raise UsageError(
                f"{which}: its rows would be counted, and its codes checked against each "
                "other, twice. Give each assigned register once."
            )


def _first_notices_due(result: VerifyResult, ledger: LedgerStore, municipality: str | None) -> None:
    """Say how many codes drawn here have no first notice yet (listed with --json).

    Not a violation: a notify run has not printed them yet. It is what a second
    assign over the same output, an output lost after its commit, or a
    migration in several runs leaves, and what notify on the latest assigned
    register prints.
    """
    served = (municipality,) if municipality is not None else ledger.municipalities
    with ledger.reading() as view:
        due = first_notices_due(view, served)
    result.first_notice_due = due["codes"]
    if due["count"]:
        result.notes.append(
            f"{due['count']} code(s) drawn here have no first notice yet: rrnet notify on the "
            "latest assigned register prints them (rrnet ledger stats --json lists them)"
        )


def _violations(frame: pl.DataFrame, check: str, message: pl.Expr | str) -> pl.DataFrame:
    msg = pl.lit(message) if isinstance(message, str) else message
    return frame.select(
        "file",
        "row",
        pl.lit(check).alias("check"),
        msg.alias("message"),
        pl.col("code").alias("value"),
    )


def _format_violations(coded: pl.DataFrame) -> pl.DataFrame:
    reasons = rcode.validate_array(coded["code"].to_arrow())
    with_reason = coded.with_columns(pl.Series("reason", reasons, dtype=pl.String))
    bad = with_reason.filter(pl.col("reason").is_not_null())
    return _violations(bad, "format", pl.col("reason"))


def _status_violations(rows: pl.DataFrame) -> pl.DataFrame:
    has_code = pl.col("code").is_not_null()
    status = pl.col("code_status")
    excluded = rows.filter((status == schema.CodeStatus.EXCLUDED) & has_code)
    missing = rows.filter(status.is_in(list(schema.CODED_STATUSES)) & ~has_code)
    unknown = rows.filter(status.is_not_null() & ~status.is_in(list(schema.CODE_STATUSES)))
    return pl.concat(
        [
            _violations(excluded, "excluded", "an excluded row (planned move-out) carries a code"),
            _violations(
                missing,
                "missing",
                pl.concat_str(
                    pl.lit("row is marked "), pl.col("code_status"), pl.lit(" but has no code")
                ),
            ),
            _violations(
                unknown, "status", "code_status is not one of " + ", ".join(schema.CODE_STATUSES)
            ),
        ]
    )


def _duplicate_codes(valid: pl.DataFrame) -> pl.DataFrame:
    """A code on rows of two different residents, or twice in one file."""
    located = valid.with_columns(
        pl.concat_str(pl.col("file"), pl.lit(" row "), pl.col("row").cast(pl.String)).alias("where")
    )
    groups = (
        located.group_by("code")
        .agg(
            pl.col("resident_id").n_unique().alias("residents"),
            pl.len().alias("n"),
            pl.col("file").n_unique().alias("files"),
            pl.col("where"),
        )
        .filter((pl.col("residents") > 1) | (pl.col("n") > pl.col("files")))
    )
    if groups.height == 0:
        return _violations(valid.clear(), "duplicate", "")
    clash = located.join(groups.select("code", pl.col("where").alias("all")), on="code")
    clash = clash.with_columns(
        pl.col("all")
        .list.set_difference(pl.concat_list("where"))
        .list.head(3)
        .list.join(", ")
        .alias("others")
    )
    return _violations(
        clash, "duplicate", pl.concat_str(pl.lit("the same code is also on "), pl.col("others"))
    )


def _several_codes(valid: pl.DataFrame) -> pl.DataFrame:
    """One resident with more than one distinct code across the files."""
    keyed = valid.filter(pl.col("resident_id").is_not_null())
    several = (
        keyed.group_by("resident_id")
        .agg(pl.col("code").n_unique().alias("k"))
        .filter(pl.col("k") > 1)
    )
    bad = keyed.join(several.select("resident_id"), on="resident_id")
    return _violations(
        bad, "one-code-per-resident", "this resident holds a different code on another row"
    )


def _ledger_violations(
    valid: pl.DataFrame, ledger: LedgerStore, municipality: str | None
) -> pl.DataFrame:
    """Each code against the ledger: its owner there, and the pool in pool mode.

    Asked through ``LedgerView`` (``reading``): the folder ledger answers from
    memory, a PostgreSQL ledger with a query joining the files' codes on the
    server, never loading the ledger.
    """
    reasons = pl.Series(rcode.validate_array(valid["code"].to_arrow()), dtype=pl.String)
    well_formed = valid.filter(reasons.is_null())
    ints = well_formed["code"].cast(pl.UInt64).to_numpy()
    with ledger.reading() as view:
        owners = view.lookup(ints)
        problems = ownership_problems(owners, well_formed["resident_id"], municipality)
        owned = well_formed.with_columns(problems, owners["status"].alias("l_status"))
        # codes drawn for a municipality in pool mode must come from its pool
        outside = owned.filter(pl.Series(view.outside_pool(ints)))
    return pl.concat(
        [
            _violations(owned.filter(pl.col("reason").is_not_null()), "ledger", pl.col("reason")),
            _violations(outside, "pool", "assigned outside the designated pool"),
        ]
    )
