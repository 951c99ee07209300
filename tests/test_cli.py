"""End-to-end: the ``rrnet`` command line as staff use it, through CliRunner."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import polars as pl
import pytest
import typer.main
from backends import LedgerBackend
from helpers import MUNICIPALITY, SAMPLE_MUNICIPALITY, rrnet
from polars.testing import assert_frame_equal

from rrnet_cli.cli import app
from rrnet_cli.ledger import Ledger

# the published check-digit test vectors: (body, code).
SPEC_VECTORS = [
    ("1234567890", "12345678903"),
    ("5802617394", "58026173947"),
    ("7093537819", "70935378190"),
    ("0000000006", "00000000060"),
]
CARRIED = "58026173947"
EXCEL_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
HYPERLINK = '=HYPERLINK("http://evil.example/x","click")'


def spec_check_digit(body: str) -> str:
    """the published check-digit formula, written out independently of rrnet_cli.code."""
    r = sum(int(d) * w for d, w in zip(body, (5, 4, 3, 2, 7, 6, 5, 4, 3, 2), strict=True)) % 11
    return "0" if r <= 1 else str(11 - r)


def is_valid_code(code: str | None) -> bool:
    return (
        isinstance(code, str)
        and len(code) == 11
        and code.isascii()
        and code.isdigit()
        and spec_check_digit(code[:10]) == code[10]
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def manifest_bytes(ledger: Ledger) -> bytes:
    return (ledger.path / "manifest.json").read_bytes()


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def read_csv_text(path: Path) -> pl.DataFrame:
    """Read a CSV with every cell as text, as a careful reader would.

    rrnet quotes every cell, so an empty cell comes back as "" rather than null;
    both mean "empty" to staff, so both become null here.
    """
    frame = pl.read_csv(path, infer_schema=False)
    return frame.with_columns(pl.when(pl.all() != "").then(pl.all()).name.keep())


def run_json(runner, args: list[str]) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def export(write_register, resident) -> Path:
    """A small register: two new residents, a move-out, an arrival with a code.

    Also an Excel formula as a name, leading zeros in ids and an extra column.
    """
    return write_register(
        [
            resident("000123", household_id="0042", memo="first"),
            resident("000124", household_id="0042", name=HYPERLINK, memo="=1+1"),
            resident("000125", planned_move_out_date="2030-03-31", memo=""),
            resident("000126", resident_code=CARRIED, memo="arrived with a code"),
        ]
    )


def assign(runner, export: Path, ledger: Ledger | LedgerBackend, output: Path, *extra: str):
    """``rrnet assign EXPORT --ledger LEDGER -o OUTPUT``: a folder ledger or either backend."""
    return runner.invoke(
        app, ["assign", str(export), "--ledger", ledger.location, "-o", str(output), *extra]
    )


# -- check ---------------------------------------------------------------------


def test_check_accepts_the_spec_vectors(runner) -> None:
    result = runner.invoke(app, ["check", *(code for _, code in SPEC_VECTORS)])
    assert result.exit_code == 0, result.output
    for _, code in SPEC_VECTORS:
        assert f"{code}  valid" in result.stdout


def test_check_accepts_full_width_digits_and_separators(runner) -> None:
    result = runner.invoke(app, ["check", "１２３４５６７８９０３", "0000-0000-060", "--json"])
    assert result.exit_code == 0, result.output
    codes = [c["code"] for c in json.loads(result.stdout)["codes"]]
    assert codes == ["12345678903", "00000000060"]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("12345678904", "check digit"),
        ("1234567890", "10 digits"),
        ("123456789033", "12 digits"),
        ("1234567890A", "other than digits"),
    ],
)
def test_check_rejects_invalid_codes_saying_why(runner, code: str, reason: str) -> None:
    result = runner.invoke(app, ["check", "12345678903", code])
    assert result.exit_code == 1
    assert "INVALID" in result.stdout and reason in result.stdout
    assert "12345678903  valid" in result.stdout


def test_check_json_shape(runner) -> None:
    result = runner.invoke(app, ["check", "12345678903", "12345678904", "--json"])
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["codes"][0] == {"code": "12345678903", "valid": True, "reason": None}
    bad = data["codes"][1]
    assert (bad["code"], bad["valid"]) == ("12345678904", False)
    assert "check digit" in bad["reason"]


# -- ledger init and refusing non-ledgers --------------------------------------


def test_ledger_init_creates_a_private_folder(runner, tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    result = runner.invoke(app, ["ledger", "init", str(path), "--municipality", MUNICIPALITY])
    assert result.exit_code == 0, result.output
    assert path.is_dir()
    assert mode(path) == 0o700
    stats = run_json(runner, ["ledger", "stats", "--ledger", str(path)])
    assert (stats["municipality"], stats["codes_used"]) == (MUNICIPALITY, 0)


def test_ledger_init_refuses_a_bad_municipality_code(runner, tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    result = runner.invoke(app, ["ledger", "init", str(path), "--municipality", "131017"])
    assert result.exit_code == 2
    assert "131017" in result.output
    assert not path.exists()


@pytest.mark.parametrize("kind", ["non-empty folder", "file"])
def test_ledger_init_refuses_an_existing_path(runner, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "ledger"
    if kind == "file":
        path.write_text("keep me", encoding="utf-8")
    else:
        path.mkdir()
        (path / "notes.txt").write_text("keep me", encoding="utf-8")
    before = files_under(tmp_path)
    result = runner.invoke(app, ["ledger", "init", str(path), "--municipality", MUNICIPALITY])
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert files_under(tmp_path) == before
    kept = path if kind == "file" else path / "notes.txt"
    assert kept.read_text(encoding="utf-8") == "keep me"


NOT_A_LEDGER = {
    "missing": ("There is no ledger", None),
    "file": ("is a file", "file"),
    "empty folder": ("not an rrnet ledger", "folder"),
}


@pytest.mark.parametrize("case", list(NOT_A_LEDGER))
@pytest.mark.parametrize("command", ["assign", "verify", "ledger stats", "ledger import"])
def test_commands_refuse_a_path_that_is_not_a_ledger(
    runner, tmp_path: Path, export: Path, command: str, case: str
) -> None:
    message, make = NOT_A_LEDGER[case]
    target = tmp_path / "typo" / "ledgr" if case == "missing" else tmp_path / "ledgr"
    if make == "file":
        target.write_text("not a ledger", encoding="utf-8")
    elif make == "folder":
        target.mkdir()
    codes = tmp_path / "codes.txt"
    codes.write_text("12345678903\n", encoding="utf-8")
    before = files_under(tmp_path)
    args = {
        "assign": ["assign", str(export), "-o", str(tmp_path / "out.csv")],
        "verify": ["verify", str(export)],
        "ledger stats": ["ledger", "stats"],
        "ledger import": ["ledger", "import", str(codes)],
    }[command]
    result = runner.invoke(app, [*args, "--ledger", str(target)])
    assert result.exit_code == 2
    assert message in result.output
    assert str(target) in result.output
    assert "Traceback" not in result.output
    assert files_under(tmp_path) == before  # no folder, no output


# -- assign --------------------------------------------------------------------


def test_assign_happy_path(runner, export: Path, backend: LedgerBackend, tmp_path: Path) -> None:
    output = tmp_path / "assigned.csv"
    result = assign(runner, export, backend, output, "--json")
    assert result.exit_code == 0, result.output

    summary = json.loads(result.stdout)
    assert summary["rows_read"] == 4
    assert summary["newly_assigned"] == 2
    assert summary["carried_over"] == 1
    assert summary["excluded"] == {"planned_move_out": 1}
    assert summary["already_assigned"] == 0

    given = read_csv_text(export)
    got = read_csv_text(output)
    assert mode(output) == 0o600
    assert got.columns == [*given.columns, "code_status", "exclusion_reason"]
    assert got["resident_id"].to_list() == given["resident_id"].to_list()
    untouched = [c for c in given.columns if c not in ("name", "memo", "resident_code")]
    assert_frame_equal(got.select(untouched), given.select(untouched))

    by_id = {row["resident_id"]: row for row in got.iter_rows(named=True)}
    for rid in ("000123", "000124"):
        assert by_id[rid]["code_status"] == "assigned"
        assert is_valid_code(by_id[rid]["resident_code"]), by_id[rid]["resident_code"]
        assert by_id[rid]["exclusion_reason"] is None
    assert by_id["000123"]["resident_code"] != by_id["000124"]["resident_code"]
    assert CARRIED not in (by_id["000123"]["resident_code"], by_id["000124"]["resident_code"])

    moving = by_id["000125"]
    assert (moving["resident_code"], moving["code_status"]) == (None, "excluded")
    assert moving["exclusion_reason"] == "planned_move_out"

    arrived = by_id["000126"]
    assert (arrived["resident_code"], arrived["code_status"]) == (CARRIED, "carried_over")

    stats = run_json(runner, ["ledger", "stats", "--ledger", backend.location])
    assert stats["codes_used"] == 3
    assert (stats["by_status"]["assigned"], stats["by_status"]["carried_over"]) == (2, 1)


def test_ledger_stats_counts_the_transactions_ledger_log_lists(
    runner, backend, export: Path, tmp_path: Path
) -> None:
    """`ledger log` lists init as record 0 and each run after it; `ledger stats` says
    that its count is of the runs after init, so the two agree."""

    def table(*args: str) -> set[str]:
        result = runner.invoke(app, ["ledger", *args, "--ledger", backend.location])
        assert result.exit_code == 0, result.output
        return {" ".join(line.replace("│", " ").split()) for line in result.stdout.splitlines()}

    assert "transactions (after init) 0" in table("stats")
    assert "records 1" in table("log")
    for run in (1, 2):
        assert assign(runner, export, backend, tmp_path / f"out{run}.csv").exit_code == 0
    # The second run drew nothing new: no transaction.
    log = table("log")
    assert "records 2" in log
    assert "transactions (after init) 1" in table("stats")
    logged = run_json(runner, ["ledger", "log", "--ledger", backend.location])["transactions"]
    assert [record["txn"] for record in logged] == [0, 1]
    assert run_json(runner, ["ledger", "stats", "--ledger", backend.location])["transactions"] == 1


def test_assign_table_output_shows_the_figures(
    runner, export: Path, ledger: Ledger, tmp_path: Path
) -> None:
    result = assign(runner, export, ledger, tmp_path / "assigned.csv")
    assert result.exit_code == 0, result.output
    lines = {" ".join(line.replace("│", " ").split()) for line in result.stdout.splitlines()}
    assert "newly assigned 2" in lines
    assert "carried over (existing code kept) 1" in lines
    assert "excluded: planned_move_out 1" in lines


def test_assign_twice_assigns_nothing_new(
    runner, export: Path, backend: LedgerBackend, tmp_path: Path
) -> None:
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    assert assign(runner, export, backend, first).exit_code == 0
    before_ledger = backend.contents()

    result = assign(runner, export, backend, second, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["newly_assigned"] == 0
    assert summary["carried_over"] == 0
    assert summary["already_assigned"] == 3
    assert summary["excluded"] == {"planned_move_out": 1}

    codes_before = read_csv_text(first).select("resident_id", "resident_code")
    codes_after = read_csv_text(second).select("resident_id", "resident_code")
    assert_frame_equal(codes_after, codes_before)
    statuses = read_csv_text(second)["code_status"].to_list()
    assert statuses == ["already_assigned", "already_assigned", "excluded", "already_assigned"]
    assert summary["transaction"] is None, "nothing new: nothing committed"
    assert backend.contents() == before_ledger
    assert backend.transactions() == 1
    stats = backend.store().stats()
    assert (stats["codes_used"], stats["by_status"]["assigned"]) == (3, 2)


def test_assign_on_its_own_csv_output_keeps_every_cell(
    runner, export: Path, ledger: Ledger, tmp_path: Path
) -> None:
    # Staff re-run on last run's output (its status columns are recomputed); the
    # residents' data must come out as it went in, not gain an apostrophe per run.
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    assert assign(runner, export, ledger, first).exit_code == 0
    result = assign(runner, first, ledger, second, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["newly_assigned"] == 0
    data = [c for c in read_csv_text(first).columns if c != "code_status"]
    assert_frame_equal(read_csv_text(second).select(data), read_csv_text(first).select(data))


@pytest.fixture
def bad_export(write_register, resident) -> Path:
    """Row 3 (the second resident) has an impossible birth date."""
    return write_register(
        [
            resident("000201"),
            resident("000202", name="ZZSECRETNAME", birth_date="1990-02-30"),
            resident("000203"),
        ]
    )


def test_assign_stops_on_a_bad_row_and_writes_nothing(
    runner, bad_export: Path, backend: LedgerBackend, tmp_path: Path
) -> None:
    before_ledger = backend.contents()
    before = files_under(tmp_path)
    result = assign(runner, bad_export, backend, tmp_path / "assigned.csv")
    assert result.exit_code == 2
    assert f"{bad_export} row 3, birth_date" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "assigned.csv").exists()
    assert files_under(tmp_path) == before
    assert backend.contents() == before_ledger


@pytest.mark.parametrize("as_json", [False, True])
def test_bad_row_messages_hold_no_personal_data(
    runner, bad_export: Path, ledger: Ledger, tmp_path: Path, as_json: bool
) -> None:
    extra = ["--json"] if as_json else []
    result = assign(runner, bad_export, ledger, tmp_path / "assigned.csv", *extra)
    assert result.exit_code == 2
    assert "row 3" in result.output or '"row": 3' in result.output
    assert "ZZSECRETNAME" not in result.output
    assert "1990-02-30" not in result.output


def test_verbose_shows_the_bad_value(
    runner, bad_export: Path, ledger: Ledger, tmp_path: Path
) -> None:
    result = assign(runner, bad_export, ledger, tmp_path / "assigned.csv", "--verbose")
    assert result.exit_code == 2
    assert "1990-02-30" in result.output


def test_assign_with_rejects_sets_bad_rows_aside(
    runner, write_register, resident, ledger: Ledger, tmp_path: Path
) -> None:
    export = write_register(
        [
            resident("000301"),
            resident("000302", birth_date="1990-02-30"),
            resident("000303", sex="X"),
            resident("000304"),
        ]
    )
    output, rejects = tmp_path / "assigned.csv", tmp_path / "rejects.csv"
    result = assign(runner, export, ledger, output, "--rejects", str(rejects), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["rows_rejected"], summary["newly_assigned"]) == (2, 2)

    assigned = read_csv_text(output)
    assert assigned["resident_id"].to_list() == ["000301", "000304"]
    assert all(is_valid_code(c) for c in assigned["resident_code"])

    set_aside = read_csv_text(rejects)
    assert mode(rejects) == 0o600
    assert set_aside["resident_id"].to_list() == ["000302", "000303"]
    assert set_aside["row"].to_list() == ["3", "4"]
    errors = set_aside["errors"].to_list()
    assert errors[0].startswith("birth_date:") and errors[1].startswith("sex:")
    assert set_aside["birth_date"].to_list() == ["1990-02-30", "1990-04-01"]
    assert "resident_code" not in set_aside.columns


def test_dry_run_writes_nothing_and_leaves_the_ledger_alone(
    runner, export: Path, backend: LedgerBackend, tmp_path: Path
) -> None:
    before_ledger = backend.contents()
    before = files_under(tmp_path)
    result = assign(runner, export, backend, tmp_path / "assigned.csv", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["dry_run"], summary["newly_assigned"]) == (True, 2)
    assert files_under(tmp_path) == before
    assert backend.contents() == before_ledger


def test_csv_output_is_excel_safe_and_keeps_leading_zeros(
    runner, export: Path, ledger: Ledger, tmp_path: Path
) -> None:
    output = tmp_path / "assigned.csv"
    assert assign(runner, export, ledger, output).exit_code == 0
    got = read_csv_text(output)
    for column in got.columns:
        for cell in got[column].drop_nulls():
            assert not cell.startswith(EXCEL_TRIGGERS), (column, cell)
    row = got.row(1, named=True)
    assert row["name"] == "'" + HYPERLINK
    assert row["memo"] == "'=1+1"
    assert got["resident_id"].to_list() == ["000123", "000124", "000125", "000126"]
    assert got["household_id"].to_list()[:2] == ["0042", "0042"]
    # Excel shows Japanese correctly only with a byte-order mark.
    assert output.read_bytes().startswith(b"\xef\xbb\xbf")


def test_parquet_output_keeps_codes_as_text(
    runner, export: Path, ledger: Ledger, tmp_path: Path
) -> None:
    output = tmp_path / "assigned.parquet"
    result = assign(runner, export, ledger, output)
    assert result.exit_code == 0, result.output
    assert mode(output) == 0o600
    got = pl.read_parquet(output)
    assert got.schema["resident_code"] == pl.String
    assert got.schema["resident_id"] == pl.String
    assert got["resident_id"][0] == "000123"
    codes = got["resident_code"].drop_nulls().to_list()
    assert len(codes) == 3 and all(is_valid_code(c) for c in codes)
    check = runner.invoke(app, ["verify", str(output), "--ledger", str(ledger.path)])
    assert check.exit_code == 0, check.output


def test_seed_makes_assignment_reproducible(runner, export: Path, tmp_path: Path) -> None:
    def codes_with(seed: str, name: str) -> list[str | None]:
        ledger = Ledger.init(tmp_path / f"ledger-{name}", municipality=MUNICIPALITY)
        output = tmp_path / f"{name}.csv"
        result = assign(runner, export, ledger, output, "--seed", seed)
        assert result.exit_code == 0, result.output
        return read_csv_text(output)["resident_code"].to_list()

    first, again, other = codes_with("7", "a"), codes_with("7", "b"), codes_with("8", "c")
    assert first == again
    assert first != other


def test_carried_code_the_ledger_holds_for_another_resident_is_refused(
    runner, write_register, resident, backend: LedgerBackend, tmp_path: Path
) -> None:
    first = write_register([resident("000401")], name="first.csv")
    assert assign(runner, first, backend, tmp_path / "first-out.csv").exit_code == 0
    (code,) = read_csv_text(tmp_path / "first-out.csv")["resident_code"].to_list()

    before_ledger = backend.contents()
    second = write_register(
        [resident("000402"), resident("000403", resident_code=code)], name="second.csv"
    )
    output = tmp_path / "second-out.csv"
    result = assign(runner, second, backend, output)
    assert result.exit_code == 2
    assert f"{second} row 3, resident_code" in result.output
    assert "another resident" in result.output
    assert not output.exists()
    assert backend.contents() == before_ledger


def test_error_message_keeps_brackets_in_file_names(runner, ledger: Ledger, tmp_path: Path) -> None:
    # Paths are data, not Rich markup: "[copy]" must not vanish from the message.
    missing = tmp_path / "register [copy].csv"
    result = assign(runner, missing, ledger, tmp_path / "out.csv")
    assert result.exit_code == 2
    assert "register [copy].csv" in result.output


# -- verify ------------------------------------------------------------------------


@pytest.fixture
def assigned_csv(runner, export: Path, backend: LedgerBackend, tmp_path: Path) -> Path:
    output = tmp_path / "assigned.csv"
    result = assign(runner, export, backend, output, "--seed", "3")
    assert result.exit_code == 0, result.output
    return output


def _tamper_one_code(path: Path) -> str:
    """Change the first digit of the first resident's code; return the new code."""
    frame = read_csv_text(path)
    code = frame["resident_code"][0]
    changed = str((int(code[0]) + 1) % 10) + code[1:]
    text = path.read_text(encoding="utf-8-sig")
    assert text.count(code) == 1
    path.write_text(text.replace(code, changed), encoding="utf-8-sig")
    return changed


def test_verify_tampered_output_fails_listing_the_row(
    runner, assigned_csv: Path, backend: LedgerBackend
) -> None:
    _tamper_one_code(assigned_csv)
    result = runner.invoke(app, ["verify", str(assigned_csv), "--ledger", backend.location])
    assert result.exit_code == 1
    assert f"{assigned_csv} row 2:" in result.stdout
    assert "FAILED" in result.stdout


def test_verify_json_lists_violations(runner, assigned_csv: Path, backend: LedgerBackend) -> None:
    changed = _tamper_one_code(assigned_csv)
    args = ["verify", str(assigned_csv), "--ledger", backend.location, "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert data["violations"]
    assert {(v["file"], v["row"]) for v in data["violations"]} == {(str(assigned_csv), 2)}
    assert all(v["check"] in ("format", "ledger") for v in data["violations"])
    assert changed not in result.stdout  # the code itself only with --verbose


def test_verify_missing_file_is_unusable_input(runner, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.csv"
    result = runner.invoke(app, ["verify", str(missing)])
    assert result.exit_code == 2
    assert "does not exist" in result.output


# -- help -------------------------------------------------------------------------


def _command_tree(command, path: tuple[str, ...] = ()):
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_tree(sub, (*path, name))


COMMANDS = list(_command_tree(typer.main.get_command(app)))


def test_the_command_tree_is_complete() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    expected = {"", "check", "assign", "verify", "ledger", "ledger init", "ledger import"}
    assert {*expected, "ledger stats"} <= paths


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "rrnet" for p, _ in COMMANDS]
)
def test_every_command_has_help(runner, path: tuple[str, ...], command) -> None:
    assert (command.help or "").strip(), f"{' '.join(path)} has no help text"
    for param in command.params:
        if param.name != "help":
            assert (getattr(param, "help", None) or "").strip(), f"{path} {param.name} lacks help"
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    result = rrnet("--help", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "assign" in result.stdout and "verify" in result.stdout


# -- the bundled samples and quiet output -------------------------------------------

SAMPLE_DATA = Path(__file__).parent.parent / "sample_data"
#: The 300-resident samples (register_with_mistakes.csv is the README's bad example).
SAMPLES = sorted(p for p in SAMPLE_DATA.glob("register*") if "mistakes" not in p.name)


def test_samples_are_bundled() -> None:
    assert {p.suffix for p in SAMPLES} == {".csv", ".parquet"} and len(SAMPLES) == 4


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_bundled_sample_assigns_and_verifies(runner, tmp_path: Path, sample: Path) -> None:
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    out = tmp_path / "assigned.csv"
    figures = run_json(
        runner, ["assign", str(sample), "--ledger", str(ledger.path), "-o", str(out)]
    )
    assert figures["rows_read"] == 300
    assert figures["newly_assigned"] > 250 and figures["carried_over"] > 0
    assert figures["excluded"]["planned_move_out"] > 0
    verified = runner.invoke(app, ["verify", str(out), "--ledger", str(ledger.path)])
    assert verified.exit_code == 0, verified.output


def test_the_readme_bad_example_names_its_two_rows_and_rejects_only_them(
    runner, tmp_path: Path
) -> None:
    sample = SAMPLE_DATA / "register_with_mistakes.csv"
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    out = tmp_path / "out.csv"
    refused = runner.invoke(app, ["assign", str(sample), "-l", str(ledger.path), "-o", str(out)])
    assert refused.exit_code == 2
    assert "row 4, birth_date: not a real date (平成 ended on 2019-04-30" in refused.output
    assert "row 6, sex:" in refused.output
    assert not out.exists()
    rejects = tmp_path / "rejects.csv"
    figures = run_json(
        runner,
        ["assign", str(sample), "-l", str(ledger.path), "-o", str(out), "--rejects", str(rejects)],
    )
    assert (figures["rows_rejected"], figures["newly_assigned"]) == (2, 4)
    assigned = read_csv_text(out)
    # The 和暦, era-initial, era-code and 西暦 dates were accepted and kept as written.
    assert assigned["birth_date"].to_list() == [
        "平成14年9月6日",
        "H15.10.2",
        "4040315",
        "1998年3月21日",
    ]


def test_piped_output_has_no_progress_or_control_characters(
    runner, export: Path, ledger: Ledger, tmp_path: Path
) -> None:
    result = assign(runner, export, ledger, tmp_path / "o.csv")
    assert result.exit_code == 0
    assert "\x1b[" not in result.output, "no ANSI escapes when not on a terminal"
    assert "Reading export" not in result.output, "no progress display when piped"


def test_sample_command_writes_a_file_assign_accepts(runner, tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    made = run_json(
        runner,
        [
            "sample",
            str(path),
            "--rows",
            "50",
            "--headers",
            "ja",
            "--encoding",
            "cp932",
            "--seed",
            "3",
        ],
    )
    assert made["rows"] == 50 and mode(path) == 0o600
    ledger = Ledger.init(tmp_path / "ledger", municipality=SAMPLE_MUNICIPALITY)
    figures = run_json(runner, ["assign", str(path), "--ledger", str(ledger.path), "--dry-run"])
    assert figures["encoding"] == "cp932" and figures["rows_read"] == 50
