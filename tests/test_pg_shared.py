"""One PostgreSQL ledger shared by several municipalities, each office in its own role.

What an office notices: its role assigns and verifies for its own municipality
only, sees none of another municipality's residents (row-level security, enforced
by the server, not by rrnet), and yet never receives a code another municipality
holds; the ledger's owner adds municipalities and checks everything. Offices
connect without a password on the command line (a password file, PGPASSFILE).
Also: a ledger made by an older rrnet (schema version 1) is refused until
`rrnet ledger upgrade`, which keeps every record.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import psycopg
import pytest
from backends import WARD_A, WARD_B, Shared
from helpers import cli_ok, profile_for, run_cli, start_assign_in_subprocess, write_export
from pgserver import PgServer
from typer.testing import CliRunner

from rrnet_cli import code as rcode
from rrnet_cli.cli import app
from rrnet_cli.ledger import open_store
from rrnet_cli.ledger.audit import record_hash
from rrnet_cli.ledger.postgres import LOCK_KEY, MIGRATIONS, SCHEMA_VERSION
from rrnet_cli.verify import verify


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_two_wards_assign_the_same_resident_ids_and_never_share_a_code(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 200)  # the same ids in both wards
    for ward in (WARD_A, WARD_B):
        office = shared.url(shared.roles[ward])
        text = cli_ok(runner, "assign", export, "-l", office, "-o", tmp_path / f"{ward}.csv")
        assert shared.server.password not in text
    a = [r["resident_code"] for r in read_rows(tmp_path / f"{WARD_A}.csv")]
    b = [r["resident_code"] for r in read_rows(tmp_path / f"{WARD_B}.csv")]
    assert len(set(a) | set(b)) == 400, "every resident of both wards has a code of their own"
    # Each office's role defaults to its own municipality: no -m needed, and the
    # other ward's -m is refused before anything is read.
    code, text = run_cli(
        runner,
        "assign",
        export,
        "-l",
        shared.url(shared.roles[WARD_A]),
        "-m",
        WARD_B,
        "-o",
        tmp_path / "wrong.csv",
    )
    assert code == 2 and f"Your role may not read or record municipality {WARD_B}'s" in text
    assert not (tmp_path / "wrong.csv").exists()
    # The owner serves both, so must say which.
    code, text = run_cli(runner, "assign", export, "-l", shared.owner, "-o", tmp_path / "o.csv")
    assert code == 2 and "give --municipality" in text and WARD_B in text
    # verify: each office's file against the ledger, as that office; everything as the owner.
    for ward in (WARD_A, WARD_B):
        office = shared.url(shared.roles[ward])
        cli_ok(runner, "verify", tmp_path / f"{ward}.csv", "-l", office)
        checked = cli_ok(runner, "verify", "-l", office, "--json")
        assert json.loads(checked)["ok"] is True
    whole = json.loads(cli_ok(runner, "verify", "-l", shared.owner, "--json"))
    assert whole["ok"] is True
    stats = json.loads(
        cli_ok(runner, "ledger", "stats", "-l", shared.url(shared.roles[WARD_A]), "--json")
    )
    assert stats["codes_used"] == 400, "an office's uniqueness view counts every code"
    assert stats["municipalities"] == [WARD_A]


def test_an_office_role_cannot_read_or_write_another_wards_residents(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 50)
    for ward in (WARD_A, WARD_B):
        cli_ok(
            runner,
            "assign",
            export,
            "-l",
            shared.url(shared.roles[ward]),
            "-o",
            tmp_path / f"{ward}.csv",
        )
    office_a = shared.url(shared.roles[WARD_A])
    # Its own residents only, in both tables that name residents.
    for table in ("codes", "code_history"):
        seen = shared.rows(office_a, f"SELECT DISTINCT municipality FROM rrnet.{table}")
        assert seen == [(WARD_A,)], table
    # Every code's owner, never a resident: the view its uniqueness checks use.
    owners = shared.rows(
        office_a, "SELECT municipality, count(*) FROM rrnet.code_owners GROUP BY 1 ORDER BY 1"
    )
    assert owners == [(WARD_A, 50), (WARD_B, 50)]
    with pytest.raises(psycopg.errors.UndefinedColumn):
        shared.rows(office_a, "SELECT resident_id FROM rrnet.code_owners")
    # Writing for the other ward is refused by the server itself.
    free = rcode.codes_to_strings(rcode.codes_from_bodies(np.array([4242], dtype=np.uint64)))[0]
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        shared.rows(
            office_a,
            "INSERT INTO rrnet.codes (code, status, municipality, resident_id, txn) "
            "VALUES (%s, 'assigned', %s, 'x', 99) RETURNING code",
            int(free),
            WARD_B,
        )
    b_code = read_rows(tmp_path / f"{WARD_B}.csv")[0]["resident_code"]
    assert (
        shared.rows(
            office_a,
            "UPDATE rrnet.codes SET resident_id = 'stolen' WHERE code = %s RETURNING code",
            int(b_code),
        )
        == []
    ), "another ward's rows are invisible to an UPDATE"
    assert shared.rows(
        shared.owner, "SELECT resident_id FROM rrnet.codes WHERE code = %s", int(b_code)
    ) != [("stolen",)]
    # Only the owner adds municipalities.
    code, text = run_cli(runner, "ledger", "add-municipality", "-l", office_a, "-m", "132012")
    assert code == 2 and "Only the ledger's owner" in text


def test_an_office_cannot_read_another_wards_audit_records(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    """A code change's record names the resident, both codes and the office's own reason
    (a DV-support measure, say): only that ward, and the owner, may read it."""
    office_a, office_b = (shared.url(shared.roles[w]) for w in (WARD_A, WARD_B))
    export = write_export(tmp_path / "export.csv", 10)
    for ward, office in ((WARD_A, office_a), (WARD_B, office_b)):
        cli_ok(runner, "assign", export, "-l", office, "-o", tmp_path / f"{ward}.csv")
    reason = "DV支援措置のため職権変更"
    cli_ok(
        runner,
        "change",
        "--resident",
        "000000004",
        "--by-office",
        "--reason",
        reason,
        "-l",
        office_b,
    )
    # Not through SQL: the rows are not there for ward A's role...
    assert (
        shared.rows(office_a, "SELECT id FROM rrnet.transactions WHERE municipality = %s", WARD_B)
        == []
    )
    # ...only the chain's fields, which name nobody.
    chain = shared.rows(office_a, "SELECT * FROM rrnet.audit_chain WHERE municipality = %s", WARD_B)
    assert len(chain) == 2 and reason not in repr(chain) and "000000004" not in repr(chain)
    # Not through rrnet either: the log shows B's runs as runs, without their contents.
    log = json.loads(cli_ok(runner, "ledger", "log", "-l", office_a, "--verbose", "--json"))
    assert log["intact"] is True, log["problems"]
    assert reason not in json.dumps(log, ensure_ascii=False) and "000000004" not in json.dumps(log)
    theirs = [r for r in log["transactions"] if r.get("municipality") == WARD_B]
    assert [sorted(r) for r in theirs] == [
        ["at", "counts", "hash", "municipality", "prev", "txn"]
    ] * 2
    assert any("not shown to this role" in n for n in log["notes"])
    text = cli_ok(runner, "ledger", "log", "-l", office_a)
    assert f"(a run for {WARD_B}: not shown to your role)" in " ".join(text.split())
    # Ward B reads its own reason with --verbose; the owner reads everything.
    own = json.loads(cli_ok(runner, "ledger", "log", "-l", office_b, "--verbose", "--json"))
    assert reason in json.dumps(own, ensure_ascii=False)
    assert json.loads(cli_ok(runner, "verify", "-l", office_a, "--json"))["ok"] is True
    assert json.loads(cli_ok(runner, "verify", "-l", shared.owner, "--json"))["ok"] is True
    # Ward A goes on appending to the chain after B's hidden records.
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "more.csv", 3, start=50),
        "-l",
        office_a,
        "-o",
        tmp_path / "more-out.csv",
    )
    assert json.loads(cli_ok(runner, "ledger", "log", "-l", shared.owner, "--json"))["intact"]


def test_a_code_held_by_another_ward_is_a_row_error_not_a_second_holder(
    shared: Shared, runner: CliRunner, tmp_path: Path, write_register: Any, resident: Any
) -> None:
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "b.csv", 5),
        "-l",
        shared.url(shared.roles[WARD_B]),
        "-o",
        tmp_path / "b-out.csv",
    )
    taken = read_rows(tmp_path / "b-out.csv")[0]["resident_code"]
    register = write_register([resident("A-1", resident_code=taken), resident("A-2")])
    code, text = run_cli(
        runner,
        "assign",
        register,
        "-l",
        shared.url(shared.roles[WARD_A]),
        "-o",
        tmp_path / "a.csv",
        "--rejects",
        tmp_path / "rejects.csv",
    )
    assert code == 0, text
    rejected = read_rows(tmp_path / "rejects.csv")
    assert [r["resident_id"] for r in rejected] == ["A-1"]
    assert "a resident of another municipality that shares this ledger" in rejected[0]["errors"]
    assigned = read_rows(tmp_path / "a.csv")
    assert [r["resident_id"] for r in assigned] == ["A-2"]
    assert assigned[0]["resident_code"] != taken


def test_adding_municipalities_refuses_what_would_weaken_the_ledger(
    shared: Shared, pg_server: PgServer, runner: CliRunner, tmp_path: Path
) -> None:
    for role, refusal in (
        ("nobody_here", "has no role 'nobody_here'"),
        (pg_server.superuser, "superuser or may bypass row-level security"),
    ):
        code, text = run_cli(
            runner, "ledger", "add-municipality", "-l", shared.owner, "-m", "132012",
            "--role", role,
        )  # fmt: skip
        assert code == 2 and refusal in text, role
    code, text = run_cli(runner, "ledger", "add-municipality", "-l", shared.owner, "-m", WARD_B)
    assert code == 2 and "already serves" in text
    cli_ok(runner, "ledger", "init", tmp_path / "folder", "-m", WARD_A)
    code, text = run_cli(
        runner, "ledger", "add-municipality", "-l", tmp_path / "folder", "-m", WARD_B
    )
    assert code == 2 and "folder ledger serves the one municipality" in text
    log = json.loads(cli_ok(runner, "ledger", "log", "-l", shared.owner, "--json"))
    added = [r.get("added_municipality") for r in log["transactions"]]
    assert added == [None, WARD_A, WARD_B], "each addition is in the audit trail"
    assert log["intact"]


def test_row_level_security_turned_off_by_hand_is_a_violation(
    shared: Shared, runner: CliRunner
) -> None:
    shared.server.execute("ALTER TABLE rrnet.codes DISABLE ROW LEVEL SECURITY", shared.dbname)
    code, text = run_cli(runner, "verify", "-l", shared.owner)
    assert code == 1 and "row-level security is off on rrnet.codes" in text


# -- a ledger made by an older rrnet --------------------------------------------------


def _version_1_ledger(server: PgServer, municipality: str) -> tuple[str, list[str]]:
    """A ledger exactly as rrnet's schema version 1 left it: 3 imported codes, then an
    assign of 2 residents (one carrying an imported code over), each with its audit record
    and history rows. Its URL and the codes."""
    dbname = server.create_database()
    bodies = np.array([11, 22, 33, 44], dtype=np.uint64)
    codes = rcode.codes_to_strings(rcode.codes_from_bodies(bodies)).to_pylist()
    records = []
    prev = ""
    for number, details, counts in (
        (0, {"municipality": municipality}, {}),
        (1, {}, {"imported": 3}),
        (2, {}, {"assigned": 1, "carried_over": 1}),
    ):
        record: dict[str, Any] = {
            "txn": number,
            "at": f"2026-01-0{number + 1}T00:00:00+00:00",
            "operator": "clerk",
            "command": ["rrnet"],
            "inputs": [],
            "outputs": [],
            **details,
            "counts": counts,
            "prev": prev,
        }
        record["hash"] = record_hash(record)
        prev = record["hash"]
        records.append(record)
    url = server.url(dbname)
    with psycopg.connect(url) as conn:
        conn.execute(MIGRATIONS[0].encode())
        conn.execute(
            "INSERT INTO rrnet.meta (schema_version, municipality, created_at) "
            "VALUES (1, %s, now())",
            (municipality,),
        )
        for r in records:
            extra = {
                k: v
                for k, v in r.items()
                if k
                not in {
                    "txn",
                    "at",
                    "operator",
                    "command",
                    "inputs",
                    "outputs",
                    "counts",
                    "prev",
                    "hash",
                }
            }
            conn.execute(
                "INSERT INTO rrnet.transactions VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    r["txn"],
                    r["at"],
                    r["operator"],
                    json.dumps(r["command"]),
                    "[]",
                    "[]",
                    json.dumps(r["counts"]),
                    json.dumps(extra),
                    r["prev"],
                    r["hash"],
                ),
            )
        rows = [
            (codes[0], "imported", None, None, 1),
            (codes[1], "imported", None, None, 1),
            (codes[2], "imported", None, None, 1),
            (codes[2], "carried_over", municipality, "000000001", 2),
            (codes[3], "assigned", municipality, "000000002", 2),
        ]
        for code, status, muni, rid, txn in rows:
            conn.execute(
                "INSERT INTO rrnet.code_history VALUES (%s, %s, %s, %s, %s, now())",
                (code, status, muni, rid, txn),
            )
            conn.execute(
                "INSERT INTO rrnet.codes VALUES (%s, %s, %s, %s, %s) ON CONFLICT (code) DO UPDATE "
                "SET status = EXCLUDED.status, municipality = EXCLUDED.municipality, "
                "resident_id = EXCLUDED.resident_id, txn = EXCLUDED.txn",
                (code, status, muni, rid, txn),
            )
    return url, codes


def test_a_version_1_ledger_is_refused_until_upgraded_and_keeps_every_record(
    pg_server: PgServer, runner: CliRunner, tmp_path: Path
) -> None:
    url, codes = _version_1_ledger(pg_server, WARD_A)
    export = write_export(tmp_path / "export.csv", 3, start=1)  # residents 1, 2 and 3
    code, text = run_cli(runner, "assign", export, "-l", url, "-o", tmp_path / "early.csv")
    assert code == 2 and "schema version 1" in text and "rrnet ledger upgrade" in text
    assert not (tmp_path / "early.csv").exists()
    done = json.loads(cli_ok(runner, "ledger", "upgrade", "-l", url, "--json"))
    assert (done["from"], done["to"]) == (1, SCHEMA_VERSION)
    assert "already" in cli_ok(runner, "ledger", "upgrade", "-l", url)
    assert json.loads(cli_ok(runner, "verify", "-l", url, "--json"))["ok"] is True
    stats = json.loads(cli_ok(runner, "ledger", "stats", "-l", url, "--json"))
    assert stats["by_status"] == {"assigned": 1, "carried_over": 1, "imported": 2, "retired": 0}
    with psycopg.connect(url) as conn:
        kept = conn.execute("SELECT count(*) FROM rrnet.code_history").fetchone()
        leading = conn.execute("SELECT code FROM rrnet.codes ORDER BY code LIMIT 1").fetchone()
    assert kept == (5,), "every record ever made is still there"
    assert leading is not None and f"{leading[0]:011d}" == min(codes)
    # Residents 1 and 2 keep their codes; resident 3 is new.
    cli_ok(runner, "assign", export, "-l", url, "-o", tmp_path / "out.csv")
    got = {r["resident_id"]: r["resident_code"] for r in read_rows(tmp_path / "out.csv")}
    assert got["000000001"] == codes[2] and got["000000002"] == codes[3]
    assert got["000000003"] not in codes
    log = json.loads(cli_ok(runner, "ledger", "log", "-l", url, "--json"))
    upgrade = log["transactions"][3]["schema_upgrade"]
    assert log["intact"] and upgrade == {"from": 1, "to": SCHEMA_VERSION}


# -- many offices at once ---------------------------------------------------------------


@pytest.mark.slow
def test_eight_processes_for_four_wards_at_once_get_400000_distinct_codes(
    pg_server: PgServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: CliRunner
) -> None:
    """8 `rrnet assign` processes over loopback TCP, 2 per ward, 50,000 residents each."""
    wards = ["131016", "131024", "131032", "131041"]
    ledger = Shared(pg_server, tmp_path, monkeypatch)
    ledger.create(runner, tuple(wards))
    rows = 50_000
    procs, outputs = [], []
    for n in range(8):
        ward = wards[n % 4]
        export = write_export(tmp_path / f"export{n}.csv", rows, start=(n // 4) * rows)
        output = tmp_path / f"out{n}.parquet"
        outputs.append((ward, output))
        procs.append(
            start_assign_in_subprocess(
                export,
                ledger.url(ledger.roles[ward]),
                output,
                "--lock-timeout",
                "900",
                stderr=subprocess.PIPE,
            )
        )
    for proc in procs:
        _, err = proc.communicate(timeout=1500)
        assert proc.returncode == 0, err
    codes = pl.concat([pl.read_parquet(o, columns=["resident_code"]) for _, o in outputs])
    assert codes.height == 400_000 and codes["resident_code"].n_unique() == 400_000
    store = open_store(ledger.owner)
    for ward in wards:  # resident ids repeat across wards: each ward's files together
        result = verify([o for w, o in outputs if w == ward], ledger=store, municipality=ward)
        assert result.ok and result.codes == 2 * rows, result.violations[:5]
    assert store.check_integrity().violations == []
    assert store.stats()["transactions"] == 4 + 8, "after init (0): 4 additions, one per run"


def test_an_office_connects_through_a_service_file_and_a_password_file(
    shared: Shared, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/deployment.md's way: RRNET_LEDGER="service=rrnet", nothing secret on a command line."""
    services = tmp_path / "pg_service.conf"
    services.write_text(
        f"[rrnet]\nhost=127.0.0.1\nport={shared.server.port}\ndbname={shared.dbname}\n"
        f"user={shared.roles[WARD_B]}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    env = {"RRNET_LEDGER": "service=rrnet"}
    export = write_export(tmp_path / "export.csv", 20)
    result = runner.invoke(app, ["assign", str(export), "-o", str(tmp_path / "out.csv")], env=env)
    assert result.exit_code == 0, result.output
    held = shared.rows(shared.owner, "SELECT municipality, count(*) FROM rrnet.codes GROUP BY 1")
    assert held == [(WARD_B, 20)]
    stats = runner.invoke(app, ["ledger", "stats", "--json"], env=env)
    assert json.loads(stats.output)["municipalities"] == [WARD_B]
    # A wrong password in the password file: exit 2, the server named, the password never.
    shared.passfile.write_text(
        f"127.0.0.1:{shared.server.port}:{shared.dbname}:{shared.roles[WARD_B]}:wrong-secret\n",
        encoding="utf-8",
    )
    refused = runner.invoke(app, ["ledger", "stats"], env=env)
    assert refused.exit_code == 2
    assert "refused the password" in refused.output and "wrong-secret" not in refused.output
    # The message names the server the service file points at, not libpq's defaults.
    named = " ".join(refused.output.split())
    assert f"port={shared.server.port} dbname={shared.dbname} (service rrnet)" in named


def test_an_office_cannot_forge_or_misplace_a_record_in_the_shared_audit_trail(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    """An INSERT into rrnet.transactions by an office's role could cut the chain for
    every office. The server refuses a record out of order, one claiming another
    ward, and one written without the writers' lock."""
    office_a = shared.url(shared.roles[WARD_A])
    cli_ok(runner, "assign", write_export(tmp_path / "a.csv", 5), "-l", office_a, "-o",
           tmp_path / "out.csv")  # fmt: skip
    (last, head) = shared.rows(
        shared.owner, "SELECT id, hash FROM rrnet.transactions ORDER BY id DESC LIMIT 1"
    )[0]
    insert = (
        "INSERT INTO rrnet.transactions (id, at, operator, command, inputs, outputs, counts,"
        " details, prev, hash, municipality)"
        " VALUES (%s, now(), 'x', '[]', '[]', '[]', '{}', '{}', %s, 'forged', %s) RETURNING id"
    )
    for number, prev, ward in (
        (9999, "x", WARD_B),  # out of order, another ward's
        (last + 1, head, WARD_B),  # in order, but another ward's
        (last + 1, head, WARD_A),  # in order, its own, but without the writers' lock
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            shared.rows(office_a, insert, number, prev, ward)
    log = json.loads(cli_ok(runner, "ledger", "log", "-l", office_a, "--json"))
    assert log["intact"] and log["transactions"][-1]["txn"] == last


def test_an_office_role_must_be_one_offices_alone(
    shared: Shared, pg_server: PgServer, runner: CliRunner
) -> None:
    """A role through which one office would read another's residents is refused."""

    def add(municipality: str, role: str) -> tuple[int, str]:
        return run_cli(
            runner,
            "ledger",
            "add-municipality",
            "-l",
            shared.owner,
            "-m",
            municipality,
            "--role",
            role,
        )

    # Ward A's role for a third ward: A would read that ward's residents.
    code, text = add("132012", shared.roles[WARD_A])
    assert code == 2 and f"already serves municipality {WARD_A}" in text, text
    # A group both wards' roles belong to: each member would read the new ward.
    pg_server.execute("CREATE ROLE rrnet_wards NOLOGIN")
    pg_server.execute(f"GRANT rrnet_wards TO {shared.roles[WARD_A]}, {shared.roles[WARD_B]}")
    code, text = add("132012", "rrnet_wards")
    assert code == 2 and "already serves municipality" in text, text
    pg_server.execute("CREATE ROLE rrnet_clerks NOLOGIN")
    pg_server.execute("CREATE ROLE clerk_1 LOGIN")
    pg_server.execute("GRANT rrnet_clerks TO clerk_1")
    code, text = add("132012", "rrnet_clerks")
    assert code == 2 and "has member roles (clerk_1)" in text, text
    # A member of the ledger's owner: row-level security does not bind the owner.
    pg_server.execute("CREATE ROLE owner_friend LOGIN")
    pg_server.execute(f"GRANT {pg_server.superuser} TO owner_friend")
    code, text = add("132012", "owner_friend")
    assert code == 2 and "owns the ledger" in text, text
    # Nothing was added by any of these.
    stats = json.loads(cli_ok(runner, "ledger", "stats", "-l", shared.owner, "--json"))
    assert stats["municipalities"] == [WARD_A, WARD_B]


def test_office_mistakes_get_plain_refusals(
    shared: Shared, pg_server: PgServer, runner: CliRunner, tmp_path: Path
) -> None:
    office_a = shared.url(shared.roles[WARD_A])
    # verify of the ledger alone, with another ward's -m: refused like every command.
    code, text = run_cli(runner, "verify", "-l", office_a, "-m", WARD_B)
    assert code == 2 and f"may not read or record municipality {WARD_B}'s" in text, text
    # Only the owner upgrades.
    pg_server.execute("UPDATE rrnet.meta SET schema_version = 2", shared.dbname)
    try:
        code, text = run_cli(runner, "ledger", "upgrade", "-l", office_a)
        assert code == 2 and "Only the ledger's owner may upgrade" in text, text
    finally:
        pg_server.execute("UPDATE rrnet.meta SET schema_version = 3", shared.dbname)
    # A role never added to the ledger is told who grants it.
    stranger = shared.office("132012")
    code, text = run_cli(runner, "ledger", "stats", "-l", stranger)
    assert code == 2 and "rrnet ledger add-municipality" in text, text


def test_another_wards_m_is_a_matter_of_permission_not_of_second_codes(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    """An office's read-only `ledger stats -m OTHER` (and any run with another ward's
    -m) is told its role may not, not that it would give residents second codes."""
    office_a = shared.url(shared.roles[WARD_A])
    export = write_export(tmp_path / "export.csv", 5)
    for command in (
        ("ledger", "stats", "-m", WARD_B),
        ("ledger", "stats", "-m", WARD_B, "--json"),
        ("assign", export, "-m", WARD_B, "-o", tmp_path / "out.csv"),
    ):
        code, text = run_cli(runner, *command, "-l", office_a)
        assert code == 2, (command, text)
        assert f"Your role may not read or record municipality {WARD_B}'s residents" in text
        assert f"sees only its own municipality ({WARD_A})" in text
        assert f"Connect as {WARD_B}'s office role, or as the ledger's owner" in text
        assert "second" not in text and "Traceback" not in text, text
    assert not (tmp_path / "out.csv").exists()
    # A code the ledger does not serve at all is still a mistyped municipality.
    code, text = run_cli(runner, "ledger", "stats", "-m", "132012", "-l", office_a)
    assert code == 2 and "not 132012 (wrong municipality?)" in text, text
    # The owner reads each ward's.
    stats = json.loads(
        cli_ok(runner, "ledger", "stats", "-l", shared.owner, "-m", WARD_B, "--json")
    )
    assert stats["municipality"] == WARD_B


def test_an_office_cannot_record_or_probe_another_wards_notices(
    shared: Shared, runner: CliRunner, tmp_path: Path
) -> None:
    office_a, office_b = (shared.url(shared.roles[w]) for w in (WARD_A, WARD_B))
    out_b = tmp_path / "b.csv"
    cli_ok(runner, "assign", write_export(tmp_path / "e.csv", 5), "-l", office_b, "-o", out_b)
    theirs = int(read_rows(out_b)[0]["resident_code"])
    # A notice of ward B's code, written by ward A's role (even under the lock): refused,
    # so it can neither block B's notify nor learn from the unique index.
    with psycopg.connect(office_a) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        conn.execute(
            "INSERT INTO rrnet.notices (code, resident_id, municipality, kind, batch, txn, "
            "issued_at) VALUES (%s, 'x', %s, 'change', 'probe', 0, now())",
            (theirs, WARD_A),
        )
    # The owner printing ward B's file as ward A: refused, not "already printed".
    cli_ok(
        runner,
        "notify",
        out_b,
        "-l",
        office_b,
        "--profile",
        profile_for(WARD_B, tmp_path),
        "-o",
        tmp_path / "sheets-b",
        "--workers",
        "1",
    )
    code, text = run_cli(
        runner,
        "notify",
        out_b,
        "-l",
        shared.owner,
        "--profile",
        profile_for(WARD_A, tmp_path),  # the profile says whose run it is
        "-o",
        tmp_path / "sheets-a",
        "--workers",
        "1",
    )
    assert code != 0 and "Nothing to print" not in text, text
    assert "another resident" in " ".join(text.split()), text
