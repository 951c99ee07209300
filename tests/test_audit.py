"""The ledger's audit trail: one hash-chained record per transaction, and tampering shown."""

from __future__ import annotations

import getpass
import hashlib
import itertools
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from helpers import MUNICIPALITY, cli_ok, rrnet, write_export
from typer.testing import CliRunner

from rrnet_cli import code as rcode
from rrnet_cli.cli import app
from rrnet_cli.ledger import (
    Ledger,
    check_chain,
    check_integrity,
    default_operator,
    record_hash,
)

Manifest = dict[str, Any]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest_of(ledger: Path) -> Manifest:
    data: Manifest = json.loads((ledger / "manifest.json").read_text(encoding="utf-8"))
    return data


def write_manifest(ledger: Path, data: Manifest) -> None:
    (ledger / "manifest.json").write_text(json.dumps(data, ensure_ascii=False, indent=1))


def codes_file(path: Path, n: int, seed: int) -> Path:
    bodies = np.random.default_rng(seed).choice(rcode.BODY_SPACE, size=n, replace=False)
    codes = rcode.codes_to_strings(rcode.codes_from_bodies(bodies.astype(np.uint64)))
    path.write_text("\n".join(codes.to_pylist()) + "\n", encoding="utf-8")
    return path


def first_resident(assigned: Path) -> str:
    return str(pl.read_csv(assigned, infer_schema=False)["resident_id"][0])


@pytest.fixture
def busy_ledger(runner: CliRunner, tmp_path: Path) -> Path:
    """A ledger with transactions 0 (init), 1 (import), 2 and 3 (assign), 4 (change)."""
    path = tmp_path / "ledger"
    cli_ok(runner, "ledger", "init", path, "-m", MUNICIPALITY, "--operator", "admin")
    cli_ok(runner, "ledger", "import", codes_file(tmp_path / "in_use.txt", 30, 1), "-l", path)
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "a.csv", 5),
        "-l",
        path,
        "-o",
        tmp_path / "a.out.csv",
    )
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "b.csv", 4, start=100),
        "-l",
        path,
        "-o",
        tmp_path / "b.out.csv",
    )
    resident = first_resident(tmp_path / "a.out.csv")
    cli_ok(runner, "change", "--resident", resident, "--id-document", "passport", "-l", path)
    assert manifest_of(path)["txn"] == 4
    return path


# -- what each transaction records --------------------------------------------------


def test_every_command_that_commits_records_its_transaction(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "ledger"
    in_use = codes_file(tmp_path / "in_use.txt", 25, 2)
    export = write_export(tmp_path / "export.csv", 6)
    assigned = tmp_path / "assigned.csv"
    changes = tmp_path / "changes.csv"
    cli_ok(runner, "ledger", "init", path, "-m", MUNICIPALITY, "--operator", "鈴木 (admin)")
    cli_ok(runner, "ledger", "import", in_use, "-l", path, "--operator", "clerk-1")
    cli_ok(runner, "assign", export, "-l", path, "-o", assigned)
    resident = first_resident(assigned)
    cli_ok(
        runner,
        "change",
        "--resident",
        resident,
        "--id-document",
        "residence_card",
        "-l",
        path,
        "-o",
        changes,
        "--operator",
        "clerk-2",
    )

    records = manifest_of(path)["transactions"]
    assert [r["txn"] for r in records] == [0, 1, 2, 3]
    # A hash chain: each record's hash covers it, and each links to the one before.
    assert records[0]["prev"] == ""
    for before, record in itertools.pairwise(records):
        assert record["prev"] == before["hash"]
    for record in records:
        assert record["hash"] == record_hash(record)
        assert record["at"].endswith("+00:00")  # UTC

    init, imported, assign, change = records
    assert init["operator"] == "鈴木 (admin)"
    assert init["municipality"] == MUNICIPALITY
    assert init["command"] == [
        "rrnet",
        "ledger",
        "init",
        str(path),
        "--municipality",
        MUNICIPALITY,
        "--operator",
        "鈴木 (admin)",
    ]
    assert (init["inputs"], init["outputs"], init["counts"]) == ([], [], {})

    assert imported["operator"] == "clerk-1"
    assert imported["command"][:4] == ["rrnet", "ledger", "import", str(in_use)]
    assert imported["inputs"] == [{"path": str(in_use), "sha256": sha256(in_use)}]
    assert imported["counts"] == {"imported": 25}

    assert assign["operator"] == getpass.getuser() == default_operator()
    assert assign["command"] == [
        "rrnet",
        "assign",
        str(export),
        "--ledger",
        str(path),
        "--output",
        str(assigned),
    ]
    assert assign["inputs"] == [{"path": str(export), "sha256": sha256(export)}]
    # The output was hashed before the commit, in its temporary file: the same bytes.
    assert assign["outputs"] == [{"path": str(assigned), "sha256": sha256(assigned)}]
    assert assign["counts"] == {"assigned": 6}

    assert change["operator"] == "clerk-2"
    assert change["outputs"] == [{"path": str(changes), "sha256": sha256(changes)}]
    assert change["counts"] == {"retired": 1, "assigned": 1}
    [entry] = change["changes"]
    row = pl.read_csv(changes, infer_schema=False).row(0, named=True)
    assert entry == {
        "resident_id": resident,
        "old_code": row["old_code"],
        "new_code": row["new_code"],
        "reason": "request",
        "id_document": "residence_card",
    }

    # Every segment is named, with its checksum, by the record of its transaction.
    manifest = manifest_of(path)
    for record in records:
        mine = [s for s in manifest["segments"] if s["txn"] == record["txn"]]
        assert record["segments"] == [
            {"file": s["file"], "sha256": s["sha256"], "rows": s["rows"]} for s in mine
        ]
    assert rrnet("verify", "--ledger", path).returncode == 0


def test_the_rejects_file_is_an_output_too(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    cli_ok(runner, "ledger", "init", path, "-m", MUNICIPALITY)
    export = write_export(tmp_path / "export.csv", 3)
    export.write_text(export.read_text() + "bad,X,not a date,F,VNM,さくら市\n")
    out, rejects = tmp_path / "out.csv", tmp_path / "rejects.csv"
    cli_ok(runner, "assign", export, "-l", path, "-o", out, "--rejects", rejects)
    record = manifest_of(path)["transactions"][-1]
    assert record["outputs"] == [
        {"path": str(out), "sha256": sha256(out)},
        {"path": str(rejects), "sha256": sha256(rejects)},
    ]


def test_a_run_that_records_nothing_adds_no_record(runner: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "ledger"
    cli_ok(runner, "ledger", "init", path, "-m", MUNICIPALITY)
    export = write_export(tmp_path / "export.csv", 3)
    cli_ok(runner, "assign", export, "-l", path, "-o", tmp_path / "one.csv")
    cli_ok(runner, "assign", export, "-l", path, "-o", tmp_path / "two.csv")  # nothing new
    assert [r["txn"] for r in manifest_of(path)["transactions"]] == [0, 1]


def test_the_operator_defaults_to_the_os_user_or_the_uid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(getpass, "getuser", lambda: "tanaka")
    assert default_operator() == "tanaka"

    def no_name() -> str:
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_name)
    assert default_operator() == f"uid {os.getuid()}"


@pytest.mark.parametrize("name", ["", "   ", "two\nlines", "x" * 201])
def test_a_bad_operator_name_is_refused(runner: CliRunner, tmp_path: Path, name: str) -> None:
    path = tmp_path / "ledger"
    result = runner.invoke(
        app, ["ledger", "init", str(path), "-m", MUNICIPALITY, "--operator", name]
    )
    assert result.exit_code == 2, result.output
    assert "--operator" in result.output
    assert not path.exists()


def test_library_transactions_record_a_default_operator(ledger: Ledger) -> None:
    with ledger.transaction() as txn:
        txn.add_records(
            pl.DataFrame(
                {
                    "code": rcode.strings_to_codes(["12345678903"]),
                    "status": ["assigned"],
                    "municipality": [MUNICIPALITY],
                    "resident_id": ["1"],
                }
            )
        )
    record = manifest_of(ledger.path)["transactions"][-1]
    assert (record["operator"], record["command"]) == (default_operator(), [])
    assert check_integrity(ledger).violations == []


def test_details_may_not_replace_the_records_own_fields(ledger: Ledger) -> None:
    with pytest.raises(ValueError, match="counts"), ledger.transaction() as txn:
        txn.describe(details={"counts": {"assigned": 10**6}})


# -- rrnet ledger log ----------------------------------------------------------------


def test_ledger_log_shows_the_chain(runner: CliRunner, busy_ledger: Path) -> None:
    text = cli_ok(runner, "ledger", "log", "-l", busy_ledger)
    records = manifest_of(busy_ledger)["transactions"]
    for record in records:
        assert record["hash"][:12] in text
    assert "admin" in text and "rrnet ledger import" in text and "rrnet change" in text
    assert "assigned 5" in text and "retired 1" in text
    assert "intact" in text
    assert f"latest hash: {records[-1]['hash']}" in text

    data = json.loads(cli_ok(runner, "ledger", "log", "-l", busy_ledger, "--json"))
    assert data["ok"] is True and data["intact"] is True
    assert data["transactions"] == records
    assert data["head"] == records[-1]["hash"]
    assert (data["problems"], data["notes"]) == ([], [])

    last_two = json.loads(
        cli_ok(runner, "ledger", "log", "-l", busy_ledger, "--json", "--last", "2")
    )
    assert [r["txn"] for r in last_two["transactions"]] == [3, 4]


def test_ledger_log_names_a_broken_link(runner: CliRunner, busy_ledger: Path) -> None:
    data = manifest_of(busy_ledger)
    data["transactions"][2]["operator"] = "someone else"
    write_manifest(busy_ledger, data)
    text = cli_ok(runner, "ledger", "log", "-l", busy_ledger)
    assert "BROKEN" in text and "transaction 2" in text
    shown = json.loads(cli_ok(runner, "ledger", "log", "-l", busy_ledger, "--json"))
    assert shown["intact"] is False
    assert any(p.startswith("transaction 2:") for p in shown["problems"])


# -- tampering -----------------------------------------------------------------------


def _edit_counts(data: Manifest) -> None:
    data["transactions"][2]["counts"] = {"assigned": 4}


def _edit_operator(data: Manifest) -> None:
    data["transactions"][2]["operator"] = "not the one who ran it"


def _edit_command(data: Manifest) -> None:
    data["transactions"][2]["command"][2] = "another.csv"


def _edit_input_hash(data: Manifest) -> None:
    data["transactions"][2]["inputs"][0]["sha256"] = "0" * 64


def _delete_record(data: Manifest) -> None:
    del data["transactions"][2]


def _reorder_records(data: Manifest) -> None:
    records = data["transactions"]
    records[2], records[3] = records[3], records[2]


def _rehash_edited_record(data: Manifest) -> None:
    """An edit whose author also recomputed the record's own hash: its successor's link breaks."""
    record = data["transactions"][2]
    record["operator"] = "someone else"
    record["hash"] = record_hash(record)


TAMPERING: dict[str, Callable[[Manifest], None]] = {
    "counts_edited": _edit_counts,
    "operator_edited": _edit_operator,
    "command_edited": _edit_command,
    "input_hash_edited": _edit_input_hash,
    "record_deleted": _delete_record,
    "records_reordered": _reorder_records,
    "record_edited_and_rehashed": _rehash_edited_record,
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_an_old_record_edited_by_hand_fails_verify_naming_the_transaction(
    runner: CliRunner, busy_ledger: Path, kind: str
) -> None:
    assert runner.invoke(app, ["verify", "--ledger", str(busy_ledger)]).exit_code == 0
    data = manifest_of(busy_ledger)
    TAMPERING[kind](data)
    write_manifest(busy_ledger, data)

    result = runner.invoke(app, ["verify", "--ledger", str(busy_ledger)])
    assert result.exit_code == 1, result.output
    assert "transaction 2" in result.output, result.output
    assert "manifest.json" in result.output
    shown = json.loads(
        runner.invoke(app, ["verify", "--ledger", str(busy_ledger), "--json"]).output
    )
    assert shown["ok"] is False
    assert any("transaction 2" in v["message"] for v in shown["violations"])


def test_each_kind_of_tampering_says_what_happened(busy_ledger: Path) -> None:
    def problems(kind: str) -> list[str]:
        data = manifest_of(busy_ledger)
        TAMPERING[kind](data)
        return check_chain(data).problems

    assert problems("counts_edited") == [
        "transaction 2: the record does not match its hash (it was changed after it was written)",
        "transaction 2: its counts differ from its segments' records",
    ]
    assert problems("operator_edited") == [
        "transaction 2: the record does not match its hash (it was changed after it was written)"
    ]
    deleted = problems("record_deleted")
    assert "transaction 2: no record in the audit trail (removed?)" in deleted
    assert any(p.startswith("transaction 3: its link to the record before it") for p in deleted)
    moved = problems("records_reordered")
    assert "transaction 2: out of order in the audit trail (after transaction 3)" in moved
    rehashed = problems("record_edited_and_rehashed")
    assert rehashed == [
        "transaction 3: its link to the record before it (transaction 2) is broken (a record "
        "was changed, removed, inserted or moved)"
    ]


def test_removing_the_first_records_or_the_whole_trail_is_caught(busy_ledger: Path) -> None:
    data = manifest_of(busy_ledger)
    data["transactions"] = data["transactions"][2:]
    assert any(
        p.startswith("transaction 2: it links to an earlier record that is not in")
        for p in check_chain(data).problems
    )
    data = manifest_of(busy_ledger)
    del data["transactions"]
    assert check_chain(data).problems == [
        "the manifest has no audit trail (its records were removed)"
    ]
    data = manifest_of(busy_ledger)
    data["municipality"] = "011002"
    assert any(
        p.startswith("transaction 0: the ledger was created for")
        for p in check_chain(data).problems
    )


def test_a_replaced_segment_no_longer_matches_its_record(busy_ledger: Path) -> None:
    """Swap a segment for another and fix the manifest's checksum: the record still knows."""
    data = manifest_of(busy_ledger)
    entry = next(s for s in data["segments"] if s["txn"] == 2)
    path = busy_ledger / entry["file"]
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)  # one record fewer
    entry.update(bytes=path.stat().st_size, sha256=sha256(path), rows=table.num_rows - 1)
    entry["statuses"] = {"assigned": table.num_rows - 1}
    write_manifest(busy_ledger, data)

    reasons = [v["reason"] for v in check_integrity(Ledger.open(busy_ledger)).violations]
    assert any(
        r.startswith("transaction 2: the segments it names differ from the manifest's")
        for r in reasons
    ), reasons
    assert "transaction 2: its counts differ from its segments' records" in reasons


# -- ledgers from before the audit trail -----------------------------------------------


def _as_version_1(ledger: Path) -> None:
    """What the previous rrnet wrote: the same manifest, without the audit trail."""
    data = manifest_of(ledger)
    data["version"] = 1
    del data["transactions"]
    write_manifest(ledger, data)


def test_a_ledger_from_before_the_audit_trail_is_a_note_not_a_failure(
    runner: CliRunner, tmp_path: Path
) -> None:
    path = tmp_path / "ledger"
    cli_ok(runner, "ledger", "init", path, "-m", MUNICIPALITY)
    for name, start in (("a", 0), ("b", 10)):
        export = write_export(tmp_path / f"{name}.csv", 3, start=start)
        cli_ok(runner, "assign", export, "-l", path, "-o", tmp_path / f"{name}.out.csv")
    _as_version_1(path)

    result = runner.invoke(app, ["verify", "--ledger", str(path)])
    assert result.exit_code == 0, result.output
    assert "note: transactions 1..2 predate the audit trail" in result.output
    log = cli_ok(runner, "ledger", "log", "-l", path)
    assert "transactions 1..2 predate the audit trail" in log and "intact" in log

    # The next write keeps working, upgrades the manifest and starts the trail.
    export = write_export(tmp_path / "c.csv", 3, start=20)
    cli_ok(runner, "assign", export, "-l", path, "-o", tmp_path / "c.out.csv")
    data = manifest_of(path)
    assert data["version"] == 2
    assert [(r["txn"], r["prev"]) for r in data["transactions"]] == [(3, "")]
    result = runner.invoke(app, ["verify", "--ledger", str(path), "--json"])
    assert result.exit_code == 0, result.output
    notes = json.loads(result.output)["notes"]
    assert notes[0] == "transactions 1..2 predate the audit trail: they have no record"
    # Nobody was sent a notice in this test: the nine codes are due one, said apart.
    assert notes[1:] == [
        "9 code(s) drawn here have no first notice yet: rrnet notify on the latest "
        "assigned register prints them (rrnet ledger stats --json lists them)"
    ]


def test_an_unknown_manifest_version_is_still_refused(ledger: Ledger) -> None:
    data = manifest_of(ledger.path)
    # 3: a designated pool (test_pool.py); 4: notices (test_notices_issued.py); 5: moved
    # (test_ledger_copy.py); 6: relocated (test_ledger_place.py)
    data["version"] = 7
    write_manifest(ledger.path, data)
    with pytest.raises(Exception, match="version 7 ledger"):
        Ledger.open(ledger.path)


# -- crashes -------------------------------------------------------------------------

FAILPOINTS = [
    ("before-manifest-write", False),
    ("before-manifest-replace", False),
    ("after-manifest-replace", True),
]


def _chain_whole(ledger: Path, txn: int) -> None:
    data = manifest_of(ledger)
    assert data["txn"] == txn
    log = check_chain(data)
    assert log.intact, log.problems
    assert [r["txn"] for r in data["transactions"]] == list(range(txn + 1))
    assert check_integrity(Ledger.open(ledger)).violations == []


@pytest.mark.parametrize(("failpoint", "committed"), FAILPOINTS)
def test_kill_at_each_commit_step_keeps_the_chain_whole(
    runner: CliRunner, tmp_path: Path, failpoint: str, committed: bool
) -> None:
    path = tmp_path / "ledger"
    cli_ok(runner, "ledger", "init", path, "-m", MUNICIPALITY)
    export = write_export(tmp_path / "export.csv", 50)
    env = {"RRNET_FAILPOINT": failpoint}

    crashed = rrnet("assign", export, "-l", path, "-o", tmp_path / "out.csv", env=env)
    assert crashed.returncode == -signal.SIGKILL
    _chain_whole(path, 1 if committed else 0)
    if not committed:
        cli_ok(runner, "assign", export, "-l", path, "-o", tmp_path / "out.csv")
    _chain_whole(path, 1)

    resident = f"{7:09d}"
    crashed = rrnet(
        "change",
        "--resident",
        resident,
        "--by-office",
        "--reason",
        "notice returned",
        "-l",
        path,
        env=env,
    )
    assert crashed.returncode == -signal.SIGKILL
    _chain_whole(path, 2 if committed else 1)
    cli_ok(runner, "change", "--resident", resident, "--id-document", "passport", "-l", path)
    _chain_whole(path, 3 if committed else 2)
    assert rrnet("verify", "--ledger", path).returncode == 0


def test_a_damaged_trail_that_is_not_a_list_is_refused_like_a_damaged_manifest(
    ledger: Ledger,
) -> None:
    data = manifest_of(ledger.path)
    data["transactions"] = {"0": "x"}
    write_manifest(ledger.path, data)
    with pytest.raises(Exception, match="damaged"):
        Ledger.open(ledger.path)
