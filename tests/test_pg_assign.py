"""`rrnet assign` on a PostgreSQL ledger, against a real server (the ``pg_server`` fixture).

What a user notices: the same export assigned on a folder ledger and on a
PostgreSQL ledger comes out the same, row for row (only the new codes differ,
being random); a code another office used meanwhile is redrawn, never
duplicated; a run that waits for another says so, and gives up at
--lock-timeout; a server that goes away mid-run is exit 2, naming the server,
with nothing written.

Elsewhere, on both backends through the ``backend`` fixture: a second run
assigns nothing new and a dry run writes nothing (tests/test_cli.py); runs at
once never share a code (tests/test_ledger.py, and 8 x 50,000 residents in
tests/reliability/test_concurrency.py); a run killed, or its server crashed,
at any point leaves the ledger as before or as after it, never half, and never
an output file (tests/reliability/test_crash_points.py and the random-kill
campaign, test_crash_campaign.py).
"""

from __future__ import annotations

import contextlib
import csv
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pytest
from backends import LedgerBackend, assert_no_duplicates, sql_one, sql_rows
from helpers import (
    MUNICIPALITY,
    assign_in_subprocess,
    cli_ok,
    run_cli,
    start_assign_in_subprocess,
    write_export,
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


def is_pg(location: str) -> bool:
    return location.startswith("postgresql://")


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


# -- conflicts: a used code is redrawn, never recorded twice ----------------------


#: Code bodies 0..TINY-1 only (tests only); most are used before the run.
TINY = 400


@pytest.mark.parametrize("used", [300, 340])
def test_codes_already_used_are_redrawn_never_duplicated(
    backend: LedgerBackend, tmp_path: Path, runner: CliRunner, used: int
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
    cli_ok(runner, "ledger", "import", source, "-l", backend.location)
    residents = 50
    export = write_export(tmp_path / "export.csv", residents)
    with tiny_code_space_for_tests(TINY):
        result = assign_register(
            export, ledger=open_store(backend.location), output=tmp_path / "out.csv", seed=used
        )
    assert result.newly_assigned == residents
    if backend.kind == "postgres":
        assert result.redraws >= residents, "most first candidates were used: redrawn"
    new = [r["resident_code"] for r in read_rows(tmp_path / "out.csv")]
    assert len(set(new)) == residents
    assert not set(new) & set(rcode.codes_to_strings(taken).to_pylist())
    assert set(new) <= set(rcode.codes_to_strings(space).to_pylist())
    assert assigned_codes(backend.location) == sorted(new)
    if backend.kind == "postgres":
        assert_no_duplicates(backend.location)
        assert sql_one(backend.location, "SELECT count(*) FROM rrnet.codes") == used + residents


# -- waiting for another run ------------------------------------------------------


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
    backend: LedgerBackend, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 20)
    out = tmp_path / "out.csv"
    with held(backend.location):
        busy = assign_in_subprocess(export, backend.location, out, "--lock-timeout", "2.5")
        assert busy.returncode == 2, busy.stderr
        assert "Waiting for the ledger" in busy.stderr and "--lock-timeout" in busy.stderr
        assert "in use by another run" in busy.stderr
        assert not out.exists()
        # Its messages go to a file, read while it waits: the hold ends only once it
        # has said that it waits (a fixed sleep raced the start-up of a loaded machine).
        said = tmp_path / "stderr.txt"
        with said.open("w") as sink:
            waiting = start_assign_in_subprocess(
                export, backend.location, out, "--lock-timeout", "60", stderr=sink.fileno()
            )
        deadline = time.monotonic() + 60
        while "Waiting for the ledger" not in said.read_text() and time.monotonic() < deadline:
            assert waiting.poll() is None, said.read_text()
            time.sleep(0.1)
        assert waiting.poll() is None, "it waits while the ledger is held"
    waiting.wait(timeout=60)
    err = said.read_text()
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
        assert "no designated pool" in output
    else:
        assert "host=127.0.0.1" in output and dbname in output
    assert not (tmp_path / "out.csv").exists()
    if case != "server down":
        pg_server.execute(f"UPDATE rrnet.meta SET schema_version = {SCHEMA_VERSION}", dbname)
    assert sql_one(pg_url, "SELECT count(*) FROM rrnet.transactions") == 1
