"""`rrnet verify --ledger` and `rrnet ledger log` on a PostgreSQL ledger (real server).

What a user notices: after assign, verify passes on both backends; a file with
a code the ledger does not know, or another resident's code, fails with the
same messages on both; `rrnet ledger log` lists each transaction with its
operator and command, as on a folder ledger. And what a person with SQL access
could do behind rrnet's back is caught: an audit record edited by hand breaks
the chain (naming the transaction), a code's row changed without its history
disagrees with it, and a dropped unique index or CHECK is reported, because
the database no longer guarantees what it did.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import psycopg
import pytest
from backends import LedgerBackend
from helpers import MUNICIPALITY, cli_ok, run_cli, write_export
from typer.testing import CliRunner

from rrnet_cli import code as rcode


def sql(url: str, statement: str) -> None:
    """Run SQL as the database's owner, as a person with psql would."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement.encode())


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def assigned(location: str, tmp_path: Path, runner: CliRunner, n: int = 20) -> Path:
    """Assign ``n`` residents on the ledger; the assigned register."""
    out = tmp_path / "assigned.csv"
    export = write_export(tmp_path / "export.csv", n)
    cli_ok(runner, "assign", export, "-l", location, "-o", out, "--operator", "tanaka")
    return out


def verify_json(runner: CliRunner, *args: object) -> tuple[int, dict[str, object]]:
    code, output = run_cli(runner, "verify", *args, "--json")
    return code, json.loads(output)


def messages(result: dict[str, object]) -> list[tuple[object, object, object]]:
    violations = result["violations"]
    assert isinstance(violations, list)
    return [(v["row"], v["check"], v["message"]) for v in violations]


# -- both backends -----------------------------------------------------------------


def test_verify_passes_after_assign_on_both_backends(
    backend: LedgerBackend, tmp_path: Path, runner: CliRunner
) -> None:
    out = assigned(backend.location, tmp_path, runner)
    code, result = verify_json(runner, out, "-l", backend.location)
    assert code == 0, result
    assert result["ok"] is True and result["codes"] == 20
    assert result["ledger_records"] == 20
    code, alone = verify_json(runner, "-l", backend.location)
    assert code == 0 and alone["ok"] is True, alone
    code, text = run_cli(runner, "verify", out, "-l", backend.location)
    assert code == 0 and "OK: no violations" in text, text


def test_unknown_and_foreign_codes_fail_with_the_same_messages_on_both_backends(
    pg_url: str, tmp_path: Path, runner: CliRunner
) -> None:
    unknown = "0000007000" + rcode.calc_check_digit("0000007000")
    seen = []
    for location in (str(tmp_path / "ledger"), pg_url):
        cli_ok(runner, "ledger", "init", location, "-m", MUNICIPALITY)
        folder = tmp_path / ("pg" if location == pg_url else "folder")
        folder.mkdir()
        rows = read_rows(assigned(location, folder, runner))
        rows[0]["resident_code"] = unknown  # a code the ledger never recorded
        rows[1]["resident_code"], rows[2]["resident_code"] = (  # two residents swapped
            rows[2]["resident_code"],
            rows[1]["resident_code"],
        )
        code, result = verify_json(runner, write_rows(folder / "edited.csv", rows), "-l", location)
        assert code == 1, result
        seen.append(messages(result))
    on_folder, on_pg = seen
    assert on_pg == on_folder
    assert on_folder == [
        (2, "ledger", "the ledger has no record of this code"),
        (3, "ledger", "the ledger holds this code for another resident"),
        (4, "ledger", "the ledger holds this code for another resident"),
    ]


def test_ledger_log_lists_each_transaction_with_operator_and_command(
    backend: LedgerBackend, tmp_path: Path, runner: CliRunner
) -> None:
    assigned(backend.location, tmp_path, runner)
    shown = json.loads(cli_ok(runner, "ledger", "log", "-l", backend.location, "--json"))
    assert shown["intact"] is True and shown["problems"] == []
    records = shown["transactions"]
    assert [r["txn"] for r in records] == [0, 1]
    assert records[0]["municipality"] == MUNICIPALITY
    assert records[0]["command"][:2] == ["rrnet", "ledger"]
    assert records[1]["operator"] == "tanaka"
    assert records[1]["command"][:2] == ["rrnet", "assign"]
    assert records[1]["counts"] == {"assigned": 20}
    assert records[1]["prev"] == records[0]["hash"] and shown["head"] == records[1]["hash"]
    table = cli_ok(runner, "ledger", "log", "-l", backend.location)
    assert "tanaka" in table and "assign" in table and "chain (hashes and links)" in table
    assert "intact" in table


# -- PostgreSQL: what SQL behind rrnet's back is caught ------------------------------


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE rrnet.transactions SET operator = 'someone else' WHERE id = 1",
        """UPDATE rrnet.transactions SET counts = '{"assigned": 19}' WHERE id = 1""",
    ],
)
def test_an_audit_record_edited_in_sql_breaks_the_chain(
    pg_url: str, tmp_path: Path, runner: CliRunner, edit: str
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    out = assigned(pg_url, tmp_path, runner)
    cli_ok(runner, "assign", write_export(tmp_path / "more.csv", 5, start=100), "-l", pg_url,
           "-o", tmp_path / "more-out.csv")  # fmt: skip
    sql(pg_url, edit)
    code, output = run_cli(runner, "ledger", "log", "-l", pg_url)
    assert code == 0, output  # the log shows the trail; verify is the check that fails
    assert "BROKEN" in output
    assert "transaction 1: the record does not match its hash" in output
    code, result = verify_json(runner, out, "-l", pg_url)
    assert code == 1, result
    reasons = [m for _, _, m in messages(result)]
    assert any("transaction 1: the record does not match its hash" in m for m in reasons)
    if "counts" in edit:
        assert any("transaction 1: its counts differ from the records stored" in m for m in reasons)


def test_a_code_changed_in_sql_without_its_history_is_caught(
    pg_url: str, tmp_path: Path, runner: CliRunner
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    out = assigned(pg_url, tmp_path, runner)
    sql(pg_url, "UPDATE rrnet.codes SET resident_id = 'x' WHERE resident_id = '000000003'")
    code, result = verify_json(runner, "-l", pg_url)
    assert code == 1, result
    assert [m for _, _, m in messages(result)] == [
        "1 codes differ from their latest record in rrnet.code_history (status, "
        "municipality, resident or transaction changed by hand)"
    ]
    code, result = verify_json(runner, out, "-l", pg_url)
    assert code == 1
    assert any("not compared with the ledger" in n for n in result["notes"])  # type: ignore[union-attr]


def test_a_retired_code_handed_out_again_in_sql_is_caught(
    pg_url: str, tmp_path: Path, runner: CliRunner
) -> None:
    """Both tables edited consistently, so only the history's order gives it away."""
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    assigned(pg_url, tmp_path, runner)
    changes = tmp_path / "changes.csv"
    cli_ok(
        runner,
        "change",
        "--resident",
        "000000003",
        "--id-document",
        "passport",
        "-l",
        pg_url,
        "-o",
        changes,
    )
    old = int(read_rows(changes)[0]["old_code"])
    sql(
        pg_url,
        "INSERT INTO rrnet.code_history VALUES "
        f"({old}, 'assigned', '{MUNICIPALITY}', '000000999', 3, now())",
    )
    sql(
        pg_url,
        "UPDATE rrnet.codes SET status = 'assigned', resident_id = '000000999', txn = 3 "
        f"WHERE code = {old}",
    )
    code, result = verify_json(runner, "-l", pg_url)
    assert code == 1, result
    found = [m for _, _, m in messages(result)]
    assert "1 codes were drawn as new while already used" in found, found
    assert "1 retired codes were made active again" in found, found
    assert not any("differ from their latest record" in m for m in found), found


@pytest.mark.parametrize(
    ("drop", "said"),
    [
        ("DROP INDEX rrnet.one_active_code_per_resident", "one_active_code_per_resident"),
        (
            "ALTER TABLE rrnet.codes DROP CONSTRAINT codes_code_check",
            "11 digits and a valid check digit is missing",
        ),
        ("ALTER TABLE rrnet.codes DROP CONSTRAINT codes_pkey", "primary key (code)"),
        (
            "CREATE OR REPLACE FUNCTION rrnet.is_resident_code(code bigint) RETURNS boolean "
            "LANGUAGE sql IMMUTABLE RETURN true",
            "no longer tells a valid code from an invalid one",
        ),
    ],
)
def test_a_dropped_guarantee_is_caught(
    pg_url: str, tmp_path: Path, runner: CliRunner, drop: str, said: str
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    out = assigned(pg_url, tmp_path, runner)
    code, result = verify_json(runner, out, "-l", pg_url)
    assert code == 0, result
    sql(pg_url, drop)
    code, output = run_cli(runner, "verify", out, "-l", pg_url)
    assert code == 1, output
    assert said in output and "FAILED" in output


def test_a_second_active_code_slipped_in_without_the_index_is_counted(
    pg_url: str, tmp_path: Path, runner: CliRunner
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    assigned(pg_url, tmp_path, runner)
    code = "0000007000" + rcode.calc_check_digit("0000007000")
    sql(pg_url, "DROP INDEX rrnet.one_active_code_per_resident")
    sql(
        pg_url,
        f"INSERT INTO rrnet.codes VALUES ('{code}', 'assigned', '{MUNICIPALITY}', '000000001', 1)",
    )
    sql(
        pg_url,
        "INSERT INTO rrnet.code_history VALUES "
        f"('{code}', 'assigned', '{MUNICIPALITY}', '000000001', 1, now())",
    )
    _, result = verify_json(runner, "-l", pg_url)
    reasons = [m for _, _, m in messages(result)]
    assert "1 residents hold more than one active code" in reasons
    assert "transaction 1: its counts differ from the records stored" in reasons
