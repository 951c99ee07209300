"""Designated pools on a shared PostgreSQL ledger: one pool and one pool mode per ward.

What an office notices: it designates the codes J-LIS sent it (a CP932 CSV with
a Japanese header and CRLF line ends, as municipal systems write them), turns
pool mode on for its own ward, and from then on its assign and change runs
draw only from its pool, while the other ward keeps drawing freely and never
takes a code designated to someone else. An office cannot designate to, or
switch the mode of, another ward; the ledger's owner sees every ward's pool.
A pool mode changed by hand, or a code designated while in use, is a
violation of `rrnet verify --ledger`. A version-2 ledger is refused until
upgraded, and the upgrade grants the existing office roles what pools need.
"""

from __future__ import annotations

import csv
import json
import signal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pytest
from backends import WARD_A, WARD_B, Shared, advisory_lock_holders, settle_sessions, sql_one
from helpers import cli_ok, rrnet, run_cli, write_export
from pgserver import PgServer
from typer.testing import CliRunner

from rrnet_cli import code as rcode
from rrnet_cli.ledger import open_store
from rrnet_cli.ledger.postgres import LOCK_KEY, MIGRATIONS


def pool_codes(n: int, seed: int) -> list[str]:
    """``n`` distinct valid codes as 11-digit strings (some with leading zeros)."""
    bodies = np.random.default_rng(seed).choice(rcode.BODY_SPACE, size=n, replace=False)
    return rcode.codes_to_strings(rcode.codes_from_bodies(bodies.astype(np.uint64))).to_pylist()


def jlis_file(path: Path, codes: list[str]) -> Path:
    """A designation file as a municipal system writes one: CP932, CRLF, Japanese header."""
    lines = ["連番,住民票コード,備考"] + [f"{i},{c}," for i, c in enumerate(codes, 1)]
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp932"))
    return path


#: `rrnet ledger designate` of a J-LIS file (``jlis_file``): its codes' column.
DESIGNATE = ("ledger", "designate", "--column", "住民票コード")


def designate(runner: CliRunner, source: Path, *args: object) -> tuple[int, str]:
    """`rrnet ledger designate SOURCE --column 住民票コード ARGS`: exit code and output."""
    return run_cli(runner, *DESIGNATE, source, *args)


def designate_ok(runner: CliRunner, source: Path, *args: object) -> str:
    """``designate``, which must succeed (``cli_ok``); its output."""
    return cli_ok(runner, *DESIGNATE, source, *args)


def new_codes(assigned: Path) -> set[str]:
    frame = pl.read_csv(assigned, infer_schema=False)
    return set(frame.filter(pl.col("code_status") == "assigned")["resident_code"].to_list())


def stats(runner: CliRunner, url: str, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cli_ok(runner, "ledger", "stats", "-l", url, "--json", *args))
    return data


def test_each_ward_designates_its_own_pool_and_draws_only_from_it(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    office_a, office_b = (shared.url(shared.roles[w]) for w in (WARD_A, WARD_B))
    pool_a, pool_b = pool_codes(300, 1), pool_codes(200, 2)
    done = json.loads(
        designate_ok(
            runner,
            jlis_file(tmp_path / "a.csv", pool_a),
            "-l",
            office_a,
            "--json",
        )
    )
    assert (done["municipality"], done["designated"], done["pool_left"]) == (WARD_A, 300, 300)
    designate_ok(
        runner,
        jlis_file(tmp_path / "b.csv", pool_b),
        "-l",
        office_b,
    )

    # A code already designated to the other ward is refused, naming its record.
    clash = jlis_file(tmp_path / "clash.csv", [*pool_codes(5, 3), pool_b[7]])
    code, output = designate(runner, clash, "-l", office_a)
    assert code == 2, output
    flat = " ".join(output.split())
    assert "record 7: already in a designated pool" in flat and "nothing was designated" in flat

    # Pool mode is per ward: A turns it on, B stays off.
    output = cli_ok(runner, "ledger", "pool-mode", "on", "-l", office_a)
    assert WARD_A in output and "warning" not in output
    assert stats(runner, office_a)["pool"] == {
        "mode": "on",
        "designated": 300,
        "used": 0,
        "left": 300,
    }
    assert stats(runner, office_b)["pool"]["mode"] == "off"  # type: ignore[index]

    out_a = tmp_path / "out_a.csv"
    result = json.loads(
        cli_ok(
            runner,
            "assign",
            write_export(tmp_path / "e.csv", 120),
            "-l",
            office_a,
            "-o",
            out_a,
            "--json",
        )
    )
    assert result["from_pool"] is True
    drawn = new_codes(out_a)
    assert len(drawn) == 120 and drawn <= set(pool_a)
    assert json.loads(cli_ok(runner, "verify", out_a, "-l", office_a, "--json"))["ok"] is True
    # A code change in pool mode takes its new code from the pool too.
    changes = tmp_path / "changes.csv"
    cli_ok(
        runner,
        "change",
        "--resident",
        "000000007",
        "--id-document",
        "passport",
        "-l",
        office_a,
        "-o",
        changes,
    )
    with open(changes, encoding="utf-8-sig", newline="") as handle:
        (change,) = list(csv.DictReader(handle))
    assert change["new_code"] in set(pool_a) - drawn

    out_b = tmp_path / "out_b.csv"
    cli_ok(runner, "assign", write_export(tmp_path / "e.csv", 120), "-l", office_b, "-o", out_b)
    assert not new_codes(out_b) & (set(pool_a) | set(pool_b)), "B draws freely"

    assert stats(runner, office_a)["pool"] == {
        "mode": "on",
        "designated": 300,
        "used": 121,
        "left": 179,
    }
    # The owner sees each ward's pool.
    owner = stats(runner, shared.owner)
    assert owner["pools"] == {
        WARD_A: {"mode": "on", "designated": 300, "used": 121, "left": 179},
        WARD_B: {"mode": "off", "designated": 200, "used": 0, "left": 200},
    }
    text = cli_ok(runner, "ledger", "stats", "-l", shared.owner)
    assert f"designated pool of {WARD_A}" in text and f"designated pool of {WARD_B}" in text

    # The ledger checks out.
    assert json.loads(cli_ok(runner, "verify", "-l", shared.owner, "--json"))["ok"] is True
    log = json.loads(cli_ok(runner, "ledger", "log", "-l", shared.owner, "--json"))
    modes = [r for r in log["transactions"] if "pool_mode" in r]
    assert [(r["pool_mode"], r["municipality"]) for r in modes] == [(True, WARD_A)]
    designations = [r for r in log["transactions"] if "designated" in r["counts"]]
    assert [(r["counts"]["designated"], r["municipality"]) for r in designations] == [
        (300, WARD_A),
        (200, WARD_B),
    ]


def test_pool_mode_on_flags_codes_drawn_outside_the_pool_and_verify_names_them(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    office_a = shared.url(shared.roles[WARD_A])
    before = tmp_path / "before.csv"  # drawn before the ward had a pool: no violation
    cli_ok(runner, "assign", write_export(tmp_path / "e.csv", 3), "-l", office_a, "-o", before)
    designate_ok(
        runner,
        jlis_file(tmp_path / "a.csv", pool_codes(20, 4)),
        "-l",
        office_a,
    )
    free = tmp_path / "free.csv"  # drawn freely after the designation: outside the pool
    export = write_export(tmp_path / "f.csv", 4, start=10)
    cli_ok(runner, "assign", export, "-l", office_a, "-o", free)
    code, output = run_cli(runner, "ledger", "pool-mode", "on", "-l", office_a)
    assert code == 0 and "warning: 4 code(s) assigned here lie outside" in output
    check = json.loads(run_cli(runner, "verify", free, "-l", office_a, "--json")[1])
    assert sorted(v["row"] for v in check["violations"] if v["check"] == "pool") == [2, 3, 4, 5]
    assert json.loads(cli_ok(runner, "verify", before, "-l", office_a, "--json"))["ok"] is True
    # The other ward is not in pool mode: its own free codes pass.
    office_b = shared.url(shared.roles[WARD_B])
    free_b = tmp_path / "free_b.csv"
    cli_ok(runner, "assign", write_export(tmp_path / "e.csv", 4), "-l", office_b, "-o", free_b)
    assert json.loads(cli_ok(runner, "verify", free_b, "-l", office_b, "--json"))["ok"] is True


def test_an_office_cannot_designate_or_switch_pool_mode_for_another_ward(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    office_a = shared.url(shared.roles[WARD_A])
    source = jlis_file(tmp_path / "p.csv", pool_codes(10, 5))
    code, output = designate(
        runner,
        source,
        "-l",
        office_a,
        "-m",
        WARD_B,
    )
    assert code == 2 and f"may not read or record municipality {WARD_B}'s" in output, output
    code, output = run_cli(runner, "ledger", "pool-mode", "on", "-l", office_a, "-m", WARD_B)
    assert code == 2 and f"may not read or record municipality {WARD_B}'s" in output, output
    # Behind rrnet's back, the server refuses it too.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        shared.rows(
            office_a,
            "INSERT INTO rrnet.pool (code, municipality, txn, designated_at) "
            "VALUES (%s, %s, 99, now()) RETURNING code",
            int(pool_codes(1, 6)[0]),
            WARD_B,
        )
    assert (
        shared.rows(
            office_a,
            "UPDATE rrnet.municipalities SET pool_mode = true WHERE code = %s RETURNING code",
            WARD_B,
        )
        == []
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        shared.rows(office_a, "UPDATE rrnet.municipalities SET office_role = 'x' RETURNING code")
    # Its own ward's pool and mode too, but only as rrnet does it: under the writers' lock
    # (which a designation and a mode switch hold), and never designating a used code.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        shared.rows(
            office_a,
            "INSERT INTO rrnet.pool (code, municipality, txn, designated_at) "
            "VALUES (%s, %s, 99, now()) RETURNING code",
            int(pool_codes(1, 6)[0]),
            WARD_A,
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        shared.rows(
            office_a,
            "UPDATE rrnet.municipalities SET pool_mode = true WHERE code = %s RETURNING code",
            WARD_A,
        )
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "e.csv", 2),
        "-l",
        office_a,
        "-o",
        tmp_path / "o.csv",
    )
    used = int(new_codes(tmp_path / "o.csv").pop())
    with psycopg.connect(office_a) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(
            "INSERT INTO rrnet.pool (code, municipality, txn, designated_at) "
            "VALUES (%s, %s, 99, now())",
            (used, WARD_A),
        )
    # The owner designates for either ward, naming it; without -m it must say which.
    code, output = designate(runner, source, "-l", shared.owner)
    assert code == 2 and "give --municipality" in output, output
    designate_ok(
        runner,
        source,
        "-l",
        shared.owner,
        "-m",
        WARD_B,
    )
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", shared.owner, "-m", WARD_B)
    assert stats(runner, shared.url(shared.roles[WARD_B]))["pool"]["mode"] == "on"  # type: ignore[index]
    assert stats(runner, office_a)["pool"]["mode"] == "off"  # type: ignore[index]


def test_a_code_designated_to_another_ward_is_never_recorded_as_drawn_here(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    theirs = pool_codes(3, 7)
    designate_ok(
        runner,
        jlis_file(tmp_path / "b.csv", theirs),
        "-l",
        shared.url(shared.roles[WARD_B]),
    )
    store = open_store(shared.url(shared.roles[WARD_A]))
    records = pl.DataFrame(
        {
            "code": rcode.strings_to_codes(theirs),
            "status": ["assigned", "assigned", "carried_over"],
            "municipality": [WARD_A] * 3,
            "resident_id": ["1", "2", "3"],
        }
    )

    class Undo(Exception):
        pass

    with pytest.raises(Undo), store.transaction() as txn:
        refused = txn.record_new(records)
        # Drawn here: refused (assign redraws them). Carried over: the resident brought it.
        assert sorted(refused.tolist()) == sorted(int(c) for c in theirs[:2])
        raise Undo


def test_exhaustion_on_postgres_is_refused_before_anything_is_written(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    office_a = shared.url(shared.roles[WARD_A])
    code, output = run_cli(runner, "ledger", "pool-mode", "on", "-l", office_a)
    assert code == 2 and "no designated pool" in output
    designate_ok(
        runner,
        jlis_file(tmp_path / "a.csv", pool_codes(50, 8)),
        "-l",
        office_a,
    )
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", office_a)
    before = shared.rows(shared.owner, "SELECT max(id) FROM rrnet.transactions")
    out = tmp_path / "o.csv"
    code, output = run_cli(
        runner, "assign", write_export(tmp_path / "e.csv", 60), "-l", office_a, "-o", out
    )
    assert code == 2 and "needs 60 codes, the pool has 50 left" in output, output
    assert not out.exists()
    assert shared.rows(shared.owner, "SELECT max(id) FROM rrnet.transactions") == before
    cli_ok(runner, "assign", write_export(tmp_path / "e.csv", 50), "-l", office_a, "-o", out)
    code, output = run_cli(
        runner, "change", "--resident", "000000001", "--id-document", "passport", "-l", office_a
    )
    assert code == 2 and "needs 1 code, the pool has 0 left" in output, output


def test_pool_tampering_is_a_violation(shared: Shared, runner: CliRunner, tmp_path: Path) -> None:
    office_a = shared.url(shared.roles[WARD_A])
    out = tmp_path / "o.csv"
    cli_ok(runner, "assign", write_export(tmp_path / "e.csv", 3), "-l", office_a, "-o", out)
    assert json.loads(cli_ok(runner, "verify", "-l", shared.owner, "--json"))["ok"] is True
    # A pool mode switched on by hand, with no transaction saying so.
    shared.rows(
        shared.owner,
        "UPDATE rrnet.municipalities SET pool_mode = true WHERE code = %s RETURNING code",
        WARD_B,
    )
    # A code in use designated by hand, as if by a later transaction.
    used = next(iter(new_codes(out)))
    shared.rows(
        shared.owner,
        "INSERT INTO rrnet.pool VALUES (%s, %s, 1000, now()) RETURNING code",
        int(used),
        WARD_A,
    )
    code, output = run_cli(runner, "verify", "-l", shared.owner, "--json")
    assert code == 1, output
    messages = [v["message"] for v in json.loads(output)["violations"]]
    assert any(
        f"municipality {WARD_B}'s pool mode is on, but in the audit trail no transaction "
        "ever turned it on" in m
        for m in messages
    ), messages
    early = (
        "1 records of designated codes predate their designation (designated while already "
        f"in use): {used} ({WARD_A}, transaction"
    )
    assert any(early in m for m in messages), messages
    # A code designated to ward B, recorded by ward A's role as drawn, by hand (the
    # database lets an office write its own rows; rrnet's insert never does this).
    theirs = pool_codes(1, 11)[0]
    designate_ok(
        runner,
        jlis_file(tmp_path / "b.csv", [theirs]),
        "-l",
        shared.url(shared.roles[WARD_B]),
    )
    last = shared.rows(shared.owner, "SELECT max(id) FROM rrnet.transactions")[0][0]
    for table, extra in (("codes", ""), ("code_history", ", now()")):
        shared.rows(
            office_a,
            f"INSERT INTO rrnet.{table} VALUES (%s, 'assigned', %s, '000000777', %s{extra}) "
            "RETURNING code",
            int(theirs),
            WARD_A,
            last + 1,
        )
    code, output = run_cli(runner, "verify", "-l", shared.owner, "--json")
    messages = [v["message"] for v in json.loads(output)["violations"]]
    drawn = (
        f"1 codes designated to one municipality were drawn as new by another: {theirs} "
        f"({WARD_A}, transaction {last + 1}, designated to {WARD_B})"
    )
    assert drawn in messages, messages
    # Row-level security switched off on the pool is reported like on any other table.
    shared.server.execute("ALTER TABLE rrnet.pool DISABLE ROW LEVEL SECURITY", shared.dbname)
    code, output = run_cli(runner, "verify", "-l", shared.owner)
    assert code == 1 and "row-level security is off on rrnet.pool" in output, output


def _back_to_version_2(shared: Shared) -> None:
    """Undo version 3's step by hand: the ledger as a version-2 rrnet left it."""
    v2_appends = MIGRATIONS[1][MIGRATIONS[1].index("CREATE POLICY office_appends") :]
    v2_appends = v2_appends[: v2_appends.index(";") + 1]
    for statement in (
        "DROP POLICY office_appends ON rrnet.transactions",
        "DROP POLICY office_reads ON rrnet.transactions",
        "DROP VIEW rrnet.audit_chain",
        "CREATE POLICY everyone_reads ON rrnet.transactions FOR SELECT USING (true)",
        v2_appends,
        "DROP TABLE rrnet.pool",
        "DROP POLICY everyone_reads ON rrnet.municipalities",
        "DROP POLICY office_sets_pool_mode ON rrnet.municipalities",
        "ALTER TABLE rrnet.municipalities DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE rrnet.municipalities DROP COLUMN pool_mode",
        "UPDATE rrnet.meta SET schema_version = 2",
    ):
        shared.server.execute(statement, shared.dbname)


def test_upgrading_a_version_2_ledger_lets_existing_offices_use_pools(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    office_a = shared.url(shared.roles[WARD_A])
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "e.csv", 5),
        "-l",
        office_a,
        "-o",
        tmp_path / "o.csv",
    )
    _back_to_version_2(shared)
    source = jlis_file(tmp_path / "a.csv", pool_codes(10, 9))
    code, output = designate(runner, source, "-l", office_a)
    assert code == 2 and "schema version 2" in output and "rrnet ledger upgrade" in output
    done = json.loads(cli_ok(runner, "ledger", "upgrade", "-l", shared.owner, "--json"))
    assert (done["from"], done["to"]) == (2, 3)
    # The office's role, granted before pools existed, may now designate and switch.
    designate_ok(runner, source, "-l", office_a)
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", office_a)
    assert json.loads(cli_ok(runner, "verify", "-l", shared.owner, "--json"))["ok"] is True


@pytest.mark.parametrize(
    ("point", "committed"),
    [("pg-mid-copy:rrnet_pool", False), ("pg-before-commit", False), ("pg-after-commit", True)],
)
def test_a_designation_killed_midway_is_whole_or_absent_and_runs_again(
    pg_url: str, runner: CliRunner, tmp_path: Path, point: str, committed: bool
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", WARD_A)
    codes = pool_codes(300, 10)
    source = jlis_file(tmp_path / "a.csv", codes)
    killed = rrnet(
        "ledger",
        "designate",
        source,
        "--column",
        "住民票コード",
        "-l",
        pg_url,
        env={"RRNET_FAILPOINT": point},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    settle_sessions(pg_url)
    assert advisory_lock_holders(pg_url) == 0
    designated = sql_one(pg_url, "SELECT count(*) FROM rrnet.pool")
    assert designated == (300 if committed else 0)
    assert sql_one(pg_url, "SELECT max(id) FROM rrnet.transactions") == (1 if committed else 0)
    assert json.loads(cli_ok(runner, "verify", "-l", pg_url, "--json"))["ok"] is True
    again = designate(runner, source, "-l", pg_url)
    if committed:  # the same file again: every code is designated already
        assert again[0] == 2 and "already in a designated pool" in again[1], again
    else:
        assert again[0] == 0, again
    assert stats(runner, pg_url)["pool"] == {
        "mode": "off",
        "designated": 300,
        "used": 0,
        "left": 300,
    }
    # Pool mode, killed before and after its commit: off, or on, never half.
    killed = rrnet(
        "ledger", "pool-mode", "on", "-l", pg_url, env={"RRNET_FAILPOINT": "pg-before-commit"}
    )
    assert killed.returncode == -signal.SIGKILL
    settle_sessions(pg_url)
    assert stats(runner, pg_url)["pool"]["mode"] == "off"  # type: ignore[index]
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", pg_url)
    assert json.loads(cli_ok(runner, "verify", "-l", pg_url, "--json"))["ok"] is True


def test_a_pool_mode_changed_by_hand_stops_drawing_until_it_is_recorded(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    office_a = shared.url(shared.roles[WARD_A])
    pool = pool_codes(40, 12)
    designate_ok(
        runner,
        jlis_file(tmp_path / "a.csv", pool),
        "-l",
        office_a,
    )
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", office_a)
    # Switched off behind rrnet's back (as the owner, who may write anything).
    shared.rows(
        shared.owner,
        "UPDATE rrnet.municipalities SET pool_mode = false WHERE code = %s RETURNING code",
        WARD_A,
    )
    out = tmp_path / "o.csv"
    code, output = run_cli(
        runner, "assign", write_export(tmp_path / "e.csv", 5), "-l", office_a, "-o", out
    )
    flat = " ".join(output.split())
    assert code == 2 and "the audit trail last set it on: it was changed outside rrnet" in flat
    assert not out.exists()
    # Recording the mode wanted (even the one stored) puts things right.
    result = json.loads(cli_ok(runner, "ledger", "pool-mode", "off", "-l", office_a, "--json"))
    assert result["changed"] is True
    assert json.loads(cli_ok(runner, "verify", "-l", shared.owner, "--json"))["ok"] is True
    cli_ok(runner, "assign", write_export(tmp_path / "e.csv", 5), "-l", office_a, "-o", out)
    assert not new_codes(out) & set(pool), "off: drawn from the whole space"


def test_the_owner_chooses_whose_pool_stats_shows(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    designate_ok(
        runner,
        jlis_file(tmp_path / "b.csv", pool_codes(7, 13)),
        "-l",
        shared.owner,
        "-m",
        WARD_B,
    )
    every = stats(runner, shared.owner)
    assert every["pool"] is None, "the owner serves several: no single pool"
    assert every["pools"][WARD_B]["designated"] == 7  # type: ignore[index]
    one = stats(runner, shared.owner, "-m", WARD_B)
    assert one["pool"] == {"mode": "off", "designated": 7, "used": 0, "left": 7}
    assert one["municipality"] == WARD_B and "pools" not in one
    text = cli_ok(runner, "ledger", "stats", "-l", shared.owner, "-m", WARD_B)
    assert "designated pool" in text and " 7 " in f" {' '.join(text.split())} "
    # The log names whose each run was, on a ledger that serves several.
    log = cli_ok(runner, "ledger", "log", "-l", shared.owner)
    header = log.splitlines()[1]
    assert "┃ for " in header and header.index(" for ") < header.index("operator")
    designation = next(line for line in log.splitlines() if "designate" in line)
    assert f"│ {WARD_B} " in designation


def test_a_copied_folder_ledgers_records_stay_its_own_wards(
    runner: CliRunner, tmp_path: Path, pg_server: PgServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ward's folder ledger moved into a shared database: its code changes (resident,
    codes, the office's reason) stay hidden from the wards added later."""
    folder = tmp_path / "ward-ledger"
    cli_ok(runner, "ledger", "init", folder, "-m", WARD_A)
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "e.csv", 5),
        "-l",
        folder,
        "-o",
        tmp_path / "o.csv",
    )
    reason = "DV支援措置"
    cli_ok(
        runner, "change", "--resident", "000000002", "--by-office", "--reason", reason, "-l", folder
    )
    shared = Shared(pg_server, tmp_path, monkeypatch)
    cli_ok(runner, "ledger", "copy", folder, shared.owner)
    office_b = shared.office(WARD_B)
    cli_ok(
        runner,
        "ledger",
        "add-municipality",
        "-l",
        shared.owner,
        "-m",
        WARD_B,
        "--role",
        shared.roles[WARD_B],
    )
    log = json.loads(cli_ok(runner, "ledger", "log", "-l", office_b, "--verbose", "--json"))
    assert log["intact"], log["problems"]
    assert reason not in json.dumps(log, ensure_ascii=False)
    assert "000000002" not in json.dumps(log)
    office_a = shared.office(WARD_A)
    cli_ok(
        runner,
        "ledger",
        "add-municipality",
        "-l",
        shared.owner,
        "-m",
        WARD_A,
        "--role",
        shared.roles[WARD_A],
    )
    own = json.loads(cli_ok(runner, "ledger", "log", "-l", office_a, "--verbose", "--json"))
    assert reason in json.dumps(own, ensure_ascii=False)
