"""Personal data at rest: every file rrnet writes is private (0600, folders 0700) and
every CSV is safe to open in Excel, checked in one sweep over a full run."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import polars as pl
from helpers import SAMPLE_MUNICIPALITY
from typer.testing import CliRunner

from rrnet_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent.parent
HOSTILE = [
    '=HYPERLINK("http://evil.example","x")',
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "\tleading tab",
    "\rleading cr",
]


def test_a_full_run_leaves_only_private_files_and_excel_safe_csv(tmp_path: Path) -> None:
    sample = pl.read_csv(ROOT / "sample_data" / "register_en_utf8.csv", infer_schema=False)
    rows = sample.head(len(HOSTILE) + 2).with_columns(
        pl.Series("note", [*HOSTILE, "fine", "fine"]),
        pl.Series("sex", ["M"] * (len(HOSTILE) + 1) + ["X"]),  # last row goes to rejects
    )
    export = tmp_path / "register.csv"
    rows.write_csv(export)
    runner = CliRunner()
    ledger = tmp_path / "ledger"
    init = runner.invoke(app, ["ledger", "init", str(ledger), "-m", SAMPLE_MUNICIPALITY])
    assert init.exit_code == 0, init.output
    for out, rejects in (("a.csv", "r.csv"), ("a.parquet", "r.parquet")):
        result = runner.invoke(
            app,
            [
                "assign",
                str(export),
                "-l",
                str(ledger),
                "-o",
                str(tmp_path / out),
                "--rejects",
                str(tmp_path / rejects),
            ],
        )
        assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "notify",
            str(tmp_path / "a.csv"),
            "-o",
            str(tmp_path / "sheets"),
            "--profile",
            str(ROOT / "sample_data" / "profile.toml"),
            "-l",
            str(ledger),
            "--per-resident",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output

    written = [p for p in tmp_path.rglob("*") if p != export]
    files = [p for p in written if p.is_file() and p.name != "lock"]
    kinds = {p.suffix for p in files}
    assert {".csv", ".parquet", ".pdf", ".json"} <= kinds
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in (
        ledger,
        ledger / "segments",
        tmp_path / "sheets",
        tmp_path / "sheets" / "residents",
    ):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder

    for path in (p for p in files if p.suffix == ".csv"):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for record in csv.reader(handle):
                for cell in record:
                    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (path, cell)
    assigned = pl.read_csv(tmp_path / "a.csv", infer_schema=False)
    assert sorted(assigned["note"].str.strip_prefix("'").to_list()[: len(HOSTILE)]) == sorted(
        HOSTILE
    )
