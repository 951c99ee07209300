"""Bad input for ``rrnet assign``: every case of tests/data/bad/cases.toml.

Each case runs ``rrnet assign <file> --ledger <fresh ledger> -o <tmp>/out/out.csv
[args]`` through CliRunner and checks what a user sees and what is left on disk:

- the exit code (2 for unusable input, 0 where the case is valid);
- every expected substring (file name, ``row N``, column, reason) in the output,
  and none of the case's personal data (no cell values in messages);
- no traceback and no "unexpected internal error" (that is a bug report, not a
  message), on the CLI's streams or on the process's own file descriptors;
- on failure: no output file (not even a leftover temporary file) and the ledger
  folder byte-for-byte as before (every file but ``lock``, which each writer
  stamps with its pid);
- on success: the output exists, and has the rows and values the case lists.

Cases with ``setup`` run those rrnet commands on the fresh ledger first (for
example an ``assign`` that gives a code to someone else). Ledgers that are
themselves broken (a file, a damaged manifest, a missing segment) have their own
tests at the end. To add a case, edit tests/data/bad/make_cases.py and run it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from helpers import MUNICIPALITY, folder_bytes
from typer.testing import CliRunner, Result

from rrnet_cli.cli import app
from rrnet_cli.ledger import Ledger

DATA = Path(__file__).parent / "data" / "bad"
CASES: list[dict[str, Any]] = tomllib.loads((DATA / "cases.toml").read_text(encoding="utf-8"))[
    "case"
]
#: A valid export for the tests whose point is a broken ledger.
GOOD_EXPORT = DATA / "date_formats_valid.csv"

# Unraisable exceptions (e.g. inside Arrow callbacks) are bugs too, even when hidden.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")


def assert_no_crash(result: Result, capfd: pytest.CaptureFixture[str]) -> str:
    """The CLI's whole output, after checking that nothing crashed along the way."""
    output = result.output
    fds = capfd.readouterr()
    everything = output + fds.out + fds.err
    assert "Traceback" not in everything, everything
    assert "unexpected internal error" not in everything, everything
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return output


def read_output(path: Path) -> pl.DataFrame:
    frame = pl.read_csv(path, infer_schema=False, encoding="utf8")
    return frame.with_columns(pl.all().fill_null(""))


def value_matches(expected: str, actual: str) -> bool:
    """``"*"``: any non-empty value; ``"abc*"``: starts with abc; else exact."""
    if expected == "*":
        return actual != ""
    if expected.endswith("*"):
        return actual.startswith(expected[:-1])
    return actual == expected


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input(
    case: dict[str, Any],
    tmp_path: Path,
    runner: CliRunner,
    capfd: pytest.CaptureFixture[str],
) -> None:
    ledger = Ledger.init(tmp_path / "ledger", municipality=MUNICIPALITY)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    for command in case.get("setup", []):
        args = [a.format(data=DATA, ledger=ledger.path, tmp=scratch) for a in command]
        prepared = runner.invoke(app, args)
        assert prepared.exit_code == 0, f"setup {args} failed:\n{prepared.output}"
    capfd.readouterr()
    before = folder_bytes(ledger.path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "out.csv"

    result = runner.invoke(
        app,
        ["assign", str(DATA / case["file"]), "--ledger", str(ledger.path), "-o", str(out)]
        + case["args"],
    )

    output = assert_no_crash(result, capfd)
    assert result.exit_code == case["exit"], output
    missing = [s for s in case["expect"] if s not in output]
    assert not missing, f"expected {missing} in:\n{output}"
    leaked = [s for s in case["forbid"] if s in output]
    assert not leaked, f"personal data {leaked} in:\n{output}"
    if case["exit"] != 0:
        assert sorted(p.name for p in out_dir.iterdir()) == [], "output written on failure"
        assert folder_bytes(ledger.path) == before, "the ledger changed on failure"
        return
    assert out.is_file(), output
    assert sorted(p.name for p in out_dir.iterdir()) == ["out.csv"]
    written = read_output(out)
    if "output_rows" in case:
        assert written.height == case["output_rows"]
    for column, values in case.get("output_values", {}).items():
        actual = written[column].to_list()
        assert len(actual) == len(values), (column, actual)
        for want, got in zip(values, actual, strict=True):
            assert value_matches(want, got), (column, want, got[:80])
    for column, lengths in case.get("output_lengths", {}).items():
        assert [len(v) for v in written[column].to_list()] == lengths, column


def test_corpus_has_the_cases_asked_for() -> None:
    names = {c["name"] for c in CASES}
    assert len(CASES) >= 40
    assert len(names) == len(CASES)
    for column in ("resident_id", "name", "birth_date", "sex", "nationality", "address"):
        assert f"missing_column_{column}" in names
    for c in CASES:
        assert c["exit"] in (0, 2), c["name"]
        assert c["expect"], c["name"]
        if c["name"] != "missing_path":
            assert (DATA / c["file"]).exists(), c["name"]
    assert not (DATA / "no_such_export.csv").exists()


def test_corpus_is_what_make_cases_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed files are exactly what make_cases.py generates (Parquet: same table)."""
    spec = importlib.util.spec_from_file_location("make_cases", DATA / "make_cases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is built
    monkeypatch.setitem(sys.modules, "make_cases", module)
    spec.loader.exec_module(module)
    fresh = tmp_path / "bad"
    module.generate(fresh)

    def listing(folder: Path) -> list[str]:
        return sorted(
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if "__pycache__" not in p.parts and p.name != "make_cases.py"
        )

    assert listing(fresh) == listing(DATA)
    for name in listing(fresh):
        ours, theirs = fresh / name, DATA / name
        if ours.is_dir():
            continue
        if ours.read_bytes() == theirs.read_bytes():
            continue
        # Parquet bytes name the writing library's version; the tables must match.
        assert name.endswith(".parquet"), f"{name} differs from what make_cases.py writes"
        assert pq.ParquetFile(ours).read().equals(pq.ParquetFile(theirs).read()), name


# ---------------------------------------------------------------------------
# Broken ledgers: a clear message, exit 2, nothing changed anywhere.


def run_assign(runner: CliRunner, ledger: Path, out: Path) -> Result:
    return runner.invoke(app, ["assign", str(GOOD_EXPORT), "--ledger", str(ledger), "-o", str(out)])


def committed_ledger(tmp_path: Path, runner: CliRunner) -> Ledger:
    """A ledger with one committed transaction (so it has a segment)."""
    ledger = Ledger.init(tmp_path / "ledger", municipality=MUNICIPALITY)
    first = run_assign(runner, ledger.path, tmp_path / "first.csv")
    assert first.exit_code == 0, first.output
    assert list((ledger.path / "segments").iterdir())
    return ledger


def test_ledger_path_is_a_file(
    tmp_path: Path, runner: CliRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ledger"
    path.write_text("not a ledger\n")
    before = path.read_bytes()
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    result = run_assign(runner, path, out_dir / "out.csv")

    output = assert_no_crash(result, capfd)
    assert result.exit_code == 2, output
    assert str(path) in output and "is a file, not a ledger folder" in output
    assert path.read_bytes() == before
    assert list(out_dir.iterdir()) == []


def test_ledger_path_missing_is_not_created(
    tmp_path: Path, runner: CliRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "nowhere"
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    result = run_assign(runner, path, out_dir / "out.csv")

    output = assert_no_crash(result, capfd)
    assert result.exit_code == 2, output
    assert "There is no ledger at" in output and "rrnet ledger init" in output
    assert not path.exists()
    assert list(out_dir.iterdir()) == []


def test_ledger_path_is_an_empty_folder(
    tmp_path: Path, runner: CliRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ledger"
    path.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    result = run_assign(runner, path, out_dir / "out.csv")

    output = assert_no_crash(result, capfd)
    assert result.exit_code == 2, output
    assert "is not an rrnet ledger" in output and "manifest.json" in output
    assert list(path.iterdir()) == []
    assert list(out_dir.iterdir()) == []


def _truncate(manifest: Path) -> None:
    data = manifest.read_bytes()
    manifest.write_bytes(data[: len(data) // 2])


def _not_utf8(manifest: Path) -> None:
    manifest.write_bytes(b"\xff\xfe" + manifest.read_bytes())


def _a_list(manifest: Path) -> None:
    manifest.write_text("[1, 2, 3]\n")


def _segments_not_a_list(manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    data["segments"] = "segments/"
    manifest.write_text(json.dumps(data))


def _segment_entry_not_a_dict(manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    data["segments"] = [*data["segments"], "segments/extra.parquet"]
    manifest.write_text(json.dumps(data))


def _segment_entry_without_fields(manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    data["segments"] = [{"file": s["file"]} for s in data["segments"]]
    manifest.write_text(json.dumps(data))


def _segments_emptied(manifest: Path) -> None:
    """Committed transactions but no segments: the list was lost, the files are there."""
    data = json.loads(manifest.read_text())
    assert data["txn"] >= 1
    data["segments"] = []
    manifest.write_text(json.dumps(data))


def _txn_not_a_number(manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    data["txn"] = "one"
    manifest.write_text(json.dumps(data))


def _empty(manifest: Path) -> None:
    manifest.write_bytes(b"")


def _segment_missing(manifest: Path) -> None:
    for segment in (manifest.parent / "segments").iterdir():
        segment.unlink()


def _segment_garbage(manifest: Path) -> None:
    for segment in (manifest.parent / "segments").iterdir():
        segment.write_bytes(b"PAR1" + b"\x00garbage" * 50 + b"PAR1")


CORRUPTIONS = {
    "truncated_json": (_truncate, "cannot be read"),
    "empty_manifest": (_empty, "cannot be read"),
    "not_utf8": (_not_utf8, "cannot be read"),
    "json_list": (_a_list, "not an rrnet ledger"),
    "segments_not_a_list": (_segments_not_a_list, "damaged"),
    "txn_not_a_number": (_txn_not_a_number, "damaged"),
    "segments_list_emptied": (_segments_emptied, "damaged"),
    "segment_entry_not_a_dict": (_segment_entry_not_a_dict, "damaged"),
    "segment_entry_without_fields": (_segment_entry_without_fields, "damaged"),
    "segment_file_missing": (_segment_missing, "cannot be read"),
    "segment_file_garbage": (_segment_garbage, "cannot be read"),
}


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_corrupted_ledger(
    kind: str, tmp_path: Path, runner: CliRunner, capfd: pytest.CaptureFixture[str]
) -> None:
    ledger = committed_ledger(tmp_path, runner)
    damage, reason = CORRUPTIONS[kind]
    damage(ledger.manifest_path)
    capfd.readouterr()
    before = folder_bytes(ledger.path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    result = run_assign(runner, ledger.path, out_dir / "out.csv")

    output = assert_no_crash(result, capfd)
    assert result.exit_code == 2, output
    assert reason in output, output
    assert "ledger" in output.lower()
    assert folder_bytes(ledger.path) == before, "the damaged ledger was changed"
    assert list(out_dir.iterdir()) == []
