"""`rrnet assign` on a PostgreSQL ledger, against a real server (the ``pg_server`` fixture).

What a user notices: the same export assigned on a folder ledger and on a
PostgreSQL ledger comes out the same, row for row (only the new codes differ,
being random); a second run assigns nothing new; a code another office used
meanwhile is redrawn, never duplicated; a run killed at any point leaves the
ledger as before or as after it, never half, and never an output file; runs
at once from several processes never share a code; a run that waits for
another says so, and gives up at --lock-timeout; a server that goes away
mid-run is exit 2, naming the server, with nothing written.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pytest
from helpers import (
    MUNICIPALITY,
    assign_in_subprocess,
    cli_ok,
    rrnet_command,
    run_cli,
    start_assign_in_subprocess,
    write_export,
    write_exports,
)
from pgserver import PgServer
from typer.testing import CliRunner

from rrnet_cli import code as rcode
from rrnet_cli.assign import assign_register, tiny_code_space_for_tests
from rrnet_cli.errors import LedgerBusy, LedgerError
from rrnet_cli.ledger import Ledger, open_store
from rrnet_cli.ledger.postgres import LOCK_KEY, SCHEMA_VERSION
from rrnet_cli.progress import Steps

Resident = Callable[..., dict[str, str]]
WriteRegister = Callable[..., Path]


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A URL (loopback TCP, with the superuser's password) of a fresh, empty database."""
    return pg_server.url(pg_server.create_database())


@pytest.fixture(params=["folder", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, runner: CliRunner) -> str:
    """A new, empty ledger for municipality 131016 on each backend: its location."""
    if request.param == "folder":
        location = str(tmp_path / "ledger")
    else:
        location = str(request.getfixturevalue("pg_url"))
    cli_ok(runner, "ledger", "init", location, "-m", MUNICIPALITY)
    return location


def is_pg(location: str) -> bool:
    return location.startswith("postgresql://")


def sql_rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(query.encode(), params or None).fetchall()


def sql_one(url: str, query: str, *params: Any) -> Any:
    (row,) = sql_rows(url, query, *params)
    return row[0]


def valid_code(body: int) -> str:
    text = f"{body:010d}"
    return text + rcode.calc_check_digit(text)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def assigned_codes(location: str) -> list[str]:
    """Every active code of the ledger, as text (both backends)."""
    if is_pg(location):
        rows = sql_rows(location, "SELECT code FROM rrnet.codes WHERE status = 'assigned'")
        return sorted(f"{r[0]:011d}" for r in rows)
    active = Ledger.open(Path(location)).snapshot().active_by_resident()
    codes = active.filter(pl.col("status") == "assigned")["code"].to_numpy()
    return sorted(rcode.codes_to_strings(codes).to_pylist())


def assert_no_duplicates(url: str) -> None:
    """The database's own view: one row per code, one active code per resident, and
    the history holds every code and exactly the records the audit trail counts."""
    total, distinct = sql_rows(url, "SELECT count(*), count(DISTINCT code) FROM rrnet.codes")[0]
    assert total == distinct
    assert sql_one(url, "SELECT count(DISTINCT code) FROM rrnet.code_history") == total
    assert sql_one(url, "SELECT count(*) FROM rrnet.code_history") == sql_one(
        url,
        "SELECT coalesce(sum(c.value::bigint), 0) FROM rrnet.transactions t, "
        "jsonb_each_text(t.counts) c",
    )
    doubled = sql_rows(
        url,
        "SELECT municipality, resident_id FROM rrnet.codes "
        "WHERE status IN ('assigned', 'carried_over') GROUP BY 1, 2 HAVING count(*) > 1",
    )
    assert doubled == []


def wait_for_rrnet_sessions_to_end(url: str, timeout: float = 20) -> None:
    """Until the server has noticed that every rrnet client is gone (and rolled back)."""
    deadline = time.monotonic() + timeout
    while sql_one(url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rrnet'"):
        assert time.monotonic() < deadline, "a killed client's session never ended"
        time.sleep(0.05)


def advisory_lock_holders(url: str) -> int:
    return int(
        sql_one(
            url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid = %s AND objid = %s",
            LOCK_KEY >> 32,
            LOCK_KEY & 0xFFFFFFFF,
        )
    )


# -- the same export, both backends -----------------------------------------------


def scenario(
    location: str, tmp_path: Path, runner: CliRunner, write: WriteRegister, make: Resident
) -> dict[str, Any]:
    """Assign the same exports on the ledger at ``location``; what a person sees of it.

    First run: residents 000001..000005. Then a national extract is imported
    (two codes). Second run, every kind of row: residents already assigned, one
    with a planned move-out, one arriving with an unused code, one with an
    imported code, one carrying another resident's code, one whose id lost its
    leading zeros, one with a bad birth date, and new residents. Bad rows go
    to --rejects.
    """
    folder = tmp_path / ("pg" if is_pg(location) else "folder")
    folder.mkdir()
    first = write([make(f"00000{i}") for i in range(1, 6)], folder / "first.csv")
    cli_ok(runner, "assign", first, "-l", location, "-o", folder / "first-out.csv")
    someone_elses = read_rows(folder / "first-out.csv")[0]["resident_code"]
    imported, unused = valid_code(7_000_001), valid_code(7_000_002)
    (folder / "extract.txt").write_text(f"{imported}\n{valid_code(7_000_003)}\n")
    cli_ok(runner, "ledger", "import", folder / "extract.txt", "-l", location)
    rows = [
        *(make(f"00000{i}") for i in range(1, 4)),  # 000004, 000005 departed
        make("000010", planned_move_out_date="2030-01-01"),
        make("000011", resident_code=unused),
        make("000012", resident_code=imported),
        make("000013", resident_code=someone_elses),
        make("2"),  # 000002 without its zeros: a second row for that resident
        make("000014", birth_date="not a date"),
        *(make(f"0001{i:02d}") for i in range(20)),
    ]
    second = write(rows, folder / "second.csv")
    summary = cli_ok(
        runner, "assign", second, "-l", location, "-o", folder / "out.csv",
        "--rejects", folder / "rejects.csv", "--departed", folder / "departed.csv", "--json",
    )  # fmt: skip
    figures = json.loads(summary)
    out = read_rows(folder / "out.csv")
    return {
        "figures": {
            k: figures[k]
            for k in (
                "rows_read",
                "rows_rejected",
                "excluded",
                "carried_over",
                "already_assigned",
                "newly_assigned",
                "departed",
                "ledger_records_before",
                "ledger_records_after",
            )
        },
        "statuses": [(r["resident_id"], r["code_status"], r["exclusion_reason"]) for r in out],
        "kept_codes": {
            r["resident_id"]: r["resident_code"]
            for r in out
            if r["code_status"] in ("carried_over", "excluded")
        },
        "new_codes": [r["resident_code"] for r in out if r["code_status"] == "assigned"],
        "rejects": [(r["row"], r["errors"]) for r in read_rows(folder / "rejects.csv")],
        "departed": [r["resident_id"] for r in read_rows(folder / "departed.csv")],
        "already": {
            r["resident_id"]: r["resident_code"]
            for r in out
            if r["code_status"] == "already_assigned"
        },
        "first_out": {
            r["resident_id"]: r["resident_code"] for r in read_rows(folder / "first-out.csv")
        },
    }


def test_the_same_export_comes_out_the_same_on_both_backends(
    pg_url: str,
    tmp_path: Path,
    runner: CliRunner,
    write_register: WriteRegister,
    resident: Resident,
) -> None:
    folder = str(tmp_path / "ledger")
    for location in (folder, pg_url):
        cli_ok(runner, "ledger", "init", location, "-m", MUNICIPALITY)
    on_folder = scenario(folder, tmp_path, runner, write_register, resident)
    on_pg = scenario(pg_url, tmp_path, runner, write_register, resident)
    for key in ("figures", "statuses", "kept_codes", "rejects", "departed"):
        assert on_pg[key] == on_folder[key], key
    assert on_folder["figures"] == {
        "rows_read": 29, "rows_rejected": 3, "excluded": {"planned_move_out": 1},
        "carried_over": 2, "already_assigned": 3, "newly_assigned": 20, "departed": 2,
        "ledger_records_before": 7, "ledger_records_after": 29,
    }  # fmt: skip
    reasons = " ".join(reason for _, reason in on_pg["rejects"])
    assert "another resident" in reasons and "leading zeros" in reasons
    assert on_pg["departed"] == ["000004", "000005"]
    for result in (on_folder, on_pg):
        # Residents the ledger knew keep their codes; new codes are new and valid.
        assert result["already"] == {k: result["first_out"][k] for k in result["already"]}
        new = result["new_codes"]
        assert len(set(new)) == len(new) == 20
        assert not set(new) & set(result["first_out"].values())
        assert all(rcode.is_valid(c) for c in new)
    assert set(on_pg["new_codes"]) != set(on_folder["new_codes"]), "codes are random"
    # The imported code is now the carried-over resident's, in the database too.
    imported = valid_code(7_000_001)
    assert sql_rows(
        pg_url, "SELECT status, resident_id FROM rrnet.codes WHERE code = %s", imported
    ) == [("carried_over", "000012")]
    assert sql_rows(
        pg_url, "SELECT status, txn FROM rrnet.code_history WHERE code = %s ORDER BY txn", imported
    ) == [("imported", 2), ("carried_over", 3)]
    assert_no_duplicates(pg_url)


def test_a_second_assign_of_the_same_export_assigns_nothing_new(
    backend: str, tmp_path: Path, runner: CliRunner
) -> None:
    export = write_export(tmp_path / "export.csv", 300)
    first = cli_ok(runner, "assign", export, "-l", backend, "-o", tmp_path / "a.csv", "--json")
    assert '"newly_assigned": 300' in first and '"transaction": 1' in first
    again = cli_ok(runner, "assign", export, "-l", backend, "-o", tmp_path / "b.csv", "--json")
    assert '"already_assigned": 300' in again and '"newly_assigned": 0' in again
    assert '"transaction": null' in again, "nothing new: nothing committed"
    codes = [r["resident_code"] for r in read_rows(tmp_path / "a.csv")]
    assert codes == [r["resident_code"] for r in read_rows(tmp_path / "b.csv")]
    assert assigned_codes(backend) == sorted(codes)
    assert open_store(backend).stats()["transactions"] == 1


def test_a_dry_run_writes_nothing(backend: str, tmp_path: Path, runner: CliRunner) -> None:
    export = write_export(tmp_path / "export.csv", 50)
    dry = cli_ok(runner, "assign", export, "-l", backend, "--dry-run", "--json")
    assert '"newly_assigned": 50' in dry and '"transaction": null' in dry
    assert open_store(backend).stats()["codes_used"] == 0


# -- conflicts: a used code is redrawn, never recorded twice ----------------------


#: Code bodies 0..TINY-1 only (tests only); most are used before the run.
TINY = 400


@pytest.mark.parametrize("used", [300, 340])
def test_codes_already_used_are_redrawn_never_duplicated(
    backend: str, tmp_path: Path, runner: CliRunner, used: int
) -> None:
    """A nearly full code space: most candidates are used, and must be redrawn.

    On PostgreSQL the client knows no used code, so the INSERT refuses most
    candidates and assign redraws only those, round after round; the folder
    ledger draws against its used codes up front. Either way every resident
    gets a code nobody has, and no code is recorded twice.
    """
    rng = np.random.default_rng(used)
    space = rcode.codes_from_bodies(np.arange(TINY, dtype=np.uint64))
    taken = rng.choice(space, used, replace=False)
    source = tmp_path / "used.txt"
    source.write_text("".join(f"{c}\n" for c in rcode.codes_to_strings(taken).to_pylist()))
    cli_ok(runner, "ledger", "import", source, "-l", backend)
    residents = 50
    export = write_export(tmp_path / "export.csv", residents)
    with tiny_code_space_for_tests(TINY):
        result = assign_register(
            export, ledger=open_store(backend), output=tmp_path / "out.csv", seed=used
        )
    assert result.newly_assigned == residents
    if is_pg(backend):
        assert result.redraws >= residents, "most first candidates were used: redrawn"
    new = [r["resident_code"] for r in read_rows(tmp_path / "out.csv")]
    assert len(set(new)) == residents
    assert not set(new) & set(rcode.codes_to_strings(taken).to_pylist())
    assert set(new) <= set(rcode.codes_to_strings(space).to_pylist())
    assert assigned_codes(backend) == sorted(new)
    if is_pg(backend):
        assert_no_duplicates(backend)
        assert sql_one(backend, "SELECT count(*) FROM rrnet.codes") == used + residents


# -- crashes: a killed client leaves 0 or 1 transaction, never a duplicate ---------


@pytest.mark.parametrize(
    ("failpoint", "committed"),
    [
        ("pg-mid-copy:rrnet_ids", False),  # classifying: the export's ids half sent
        ("pg-mid-copy:rrnet_new", False),  # the new codes half sent
        ("pg-before-commit", False),  # everything inserted, audit record too; no COMMIT
        ("pg-after-commit", True),  # committed; the output not yet renamed into place
    ],
)
def test_a_client_killed_mid_run_leaves_the_ledger_before_or_after_it(
    pg_url: str, tmp_path: Path, runner: CliRunner, failpoint: str, committed: bool
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    export = write_export(tmp_path / "export.csv", 500)
    out = tmp_path / "assigned.csv"
    crashed = assign_in_subprocess(export, pg_url, out, env={"RRNET_FAILPOINT": failpoint})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert not out.exists(), "the output never appears before the ledger commits"
    wait_for_rrnet_sessions_to_end(pg_url)
    assert advisory_lock_holders(pg_url) == 0, "the server rolled back and let go"
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.transactions") == 1 + committed
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.codes") == 500 * committed
    assert_no_duplicates(pg_url)

    rerun = assign_in_subprocess(export, pg_url, out, "--json", "--lock-timeout", "10")
    assert rerun.returncode == 0, rerun.stderr
    expected = (500, 0) if committed else (0, 500)
    assert f'"already_assigned": {expected[0]}' in rerun.stdout
    assert f'"newly_assigned": {expected[1]}' in rerun.stdout
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.codes") == 500
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.transactions") == 2
    assert_no_duplicates(pg_url)


@pytest.mark.slow
def test_a_server_crash_mid_run_applies_nothing_and_a_rerun_completes(
    pg_server: PgServer, pg_url: str, tmp_path: Path, runner: CliRunner
) -> None:
    """The database server crashes (pg_ctl stop -m immediate) while a run holds every
    new code in its open transaction; after a restart, nothing of it is there."""
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    export = write_export(tmp_path / "export.csv", 500)
    out = tmp_path / "assigned.csv"
    env = {
        **os.environ,
        "RRNET_FAILPOINT": "pause:pg-before-commit",
        "RRNET_FAILPOINT_PAUSE": "6",
    }
    process = subprocess.Popen(
        rrnet_command("assign", export, "--ledger", pg_url, "-o", out),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # Waiting at its commit: idle in its transaction, its audit record the last thing sent.
    in_transaction = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'rrnet' "
        "AND state = 'idle in transaction' AND query LIKE 'INSERT INTO %%transactions%%'"
    )
    deadline = time.monotonic() + 60
    while not sql_one(pg_url, in_transaction):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never reached its commit"
        time.sleep(0.05)
    started = time.monotonic()
    pg_server.stop("immediate")  # a crash: no checkpoint, open transactions lost
    pg_server.start()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr
    assert "Lost the connection to the PostgreSQL server" in stderr
    assert time.monotonic() - started < 60
    assert "Traceback" not in stderr and pg_server.password not in stderr
    assert not out.exists()
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.transactions") == 1  # init only
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.codes") == 0
    assert_no_duplicates(pg_url)
    rerun = assign_in_subprocess(export, pg_url, out, "--json")
    assert rerun.returncode == 0, rerun.stderr
    assert '"newly_assigned": 500' in rerun.stdout
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.transactions") == 2
    assert_no_duplicates(pg_url)


# -- many writers at once ---------------------------------------------------------

PROCESSES = 4
ROWS = 2_000


def test_assign_processes_at_once_never_share_a_code(
    pg_server: PgServer, pg_url: str, tmp_path: Path, runner: CliRunner
) -> None:
    """Several offices' runs at once over loopback TCP: each waits its turn, all recorded."""
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    exports = write_exports(tmp_path, PROCESSES, ROWS)
    outputs = [tmp_path / f"out{p}.csv" for p in range(PROCESSES)]
    procs = [
        start_assign_in_subprocess(e, pg_url, o, "--lock-timeout", "120", stderr=subprocess.PIPE)
        for e, o in zip(exports, outputs, strict=True)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert pg_server.password not in err
    codes = [r["resident_code"] for o in outputs for r in read_rows(o)]
    assert len(codes) == len(set(codes)) == PROCESSES * ROWS
    assert_no_duplicates(pg_url)
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.codes WHERE status = 'assigned'") == len(
        codes
    )
    in_db = {f"{r[0]:011d}" for r in sql_rows(pg_url, "SELECT code FROM rrnet.codes")}
    assert in_db == set(codes)
    assert sql_rows(pg_url, "SELECT id FROM rrnet.transactions ORDER BY id") == [
        (i,) for i in range(PROCESSES + 1)
    ], "one transaction per run, numbered without gaps"
    chain = sql_rows(pg_url, "SELECT prev, hash FROM rrnet.transactions ORDER BY id")
    assert all(chain[i][0] == chain[i - 1][1] for i in range(1, len(chain)))


@contextlib.contextmanager
def held(location: str) -> Iterator[None]:
    """Hold the ledger as a writing run would: the folder's flock, the database's lock."""
    if not is_pg(location):
        with Ledger.open(Path(location)).lock():
            yield
        return
    with psycopg.connect(location, application_name="test-holder") as conn:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        yield


def test_a_waiting_run_says_so_and_gives_up_at_the_lock_timeout(
    backend: str, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 20)
    out = tmp_path / "out.csv"
    with held(backend):
        busy = assign_in_subprocess(export, backend, out, "--lock-timeout", "2.5")
        assert busy.returncode == 2, busy.stderr
        assert "Waiting for the ledger" in busy.stderr and "--lock-timeout" in busy.stderr
        assert "in use by another run" in busy.stderr
        assert not out.exists()
        waiting = start_assign_in_subprocess(
            export, backend, out, "--lock-timeout", "60", stderr=subprocess.PIPE
        )
        time.sleep(2)
        assert waiting.poll() is None, "it waits while the ledger is held"
    _, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert "Waiting for the ledger" in err
    assert len(read_rows(out)) == 20


# -- a server that fails mid-run --------------------------------------------------


class CutAt(Steps):
    """Progress steps that end the run's database session when ``step`` begins.

    As a server restart or a network cut would, at a known point of the run:
    the server terminates every rrnet session (not this test's own).
    """

    def __init__(self, server: PgServer, step: str) -> None:
        super().__init__(enabled=False)
        self.server, self.cut_at = server, step

    @contextlib.contextmanager
    def step(self, description: str, total: float | None = None) -> Iterator[Any]:
        if description == self.cut_at:
            self.server.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'rrnet' AND pid <> pg_backend_pid()"
            )
        with super().step(description, total) as advance:
            yield advance


@pytest.mark.parametrize(
    "cut_at",
    [
        "Checking against the ledger",
        "Recording codes in the ledger",
        "Writing the assigned register",
    ],
)
def test_a_connection_lost_mid_run_writes_nothing(
    pg_server: PgServer, pg_url: str, tmp_path: Path, runner: CliRunner, cut_at: str
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    export = write_export(tmp_path / "export.csv", 100)
    out = tmp_path / "out.csv"
    with pytest.raises(LedgerError, match="Lost the connection") as raised:
        assign_register(
            export, ledger=open_store(pg_url), output=out, steps=CutAt(pg_server, cut_at)
        )
    assert not isinstance(raised.value, LedgerBusy)
    assert f"port={pg_server.port}" in raised.value.message
    assert pg_server.password not in raised.value.message
    assert not out.exists() and not list(tmp_path.glob(".*out*")), "no output, no temp file"
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.codes") == 0
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.transactions") == 1


@pytest.mark.parametrize("case", ["server down", "schema too new", "pool"])
def test_assign_refusals_are_exit_2_with_the_server_named_and_no_output(
    pg_server: PgServer, pg_url: str, tmp_path: Path, runner: CliRunner, case: str
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    export = write_export(tmp_path / "export.csv", 10)
    location, extra = pg_url, []
    dbname = pg_url.rsplit("/", 1)[1]
    if case == "server down":
        from pgserver import free_port

        location = pg_url.replace(f":{pg_server.port}/", f":{free_port()}/")
    elif case == "schema too new":
        pg_server.execute(f"UPDATE rrnet.meta SET schema_version = {SCHEMA_VERSION + 1}", dbname)
    else:
        extra = ["--pool"]
    code, output = run_cli(
        runner, "assign", export, "-l", location, "-o", tmp_path / "out.csv", *extra
    )
    assert code == 2, output
    assert "Traceback" not in output and pg_server.password not in output
    if case == "pool":
        assert "not yet supported on a PostgreSQL ledger" in output
    else:
        assert "host=127.0.0.1" in output and dbname in output
    assert not (tmp_path / "out.csv").exists()
    if case != "server down":
        pg_server.execute(f"UPDATE rrnet.meta SET schema_version = {SCHEMA_VERSION}", dbname)
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.transactions") == 1
