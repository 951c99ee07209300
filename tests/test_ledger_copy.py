"""`rrnet ledger copy SRC DST`: a folder ledger into PostgreSQL and back, whole and checked.

The ledger is made as an office makes one, through the CLI: init, an import of
codes in use elsewhere (leading zeros), retired codes, an assign of a CP932
register, a resident arriving with an imported code (carried over), the notices
printed, and a code change. It is copied into a fresh database and back into a
folder; on each side the records ever made, the audit log, the stats, the
notices and `rrnet verify --ledger` are compared with the original, and an
assign on the copy finds its residents already assigned. Designated pools and
pool mode go across too (folder to database and back, and a shared database
with each ward's pool into another database), and the copies go on drawing
from what is left. Refusals leave nothing behind; tampering with a copy is
still caught; a copy killed before its end leaves no ledger at DST.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import polars as pl
import psycopg
import pytest
from backends import sql_rows
from helpers import MUNICIPALITY, cli_ok, profile_for, rrnet, run_cli
from test_households import register_rows, write_cp932
from typer.testing import CliRunner

from rrnet_cli import code as rcode
from rrnet_cli.ledger import Ledger
from rrnet_cli.ledger import copy as copy_module
from rrnet_cli.ledger.audit import COPIED_FROM, TRANSACTIONS, record_hash

#: Codes in use elsewhere: every one has leading zeros.
IMPORTED = [f"{i:010d}" + rcode.calc_check_digit(f"{i:010d}") for i in range(5000, 5100)]
#: Codes retired elsewhere, imported with --retired.
RETIRED = [f"{i:010d}" + rcode.calc_check_digit(f"{i:010d}") for i in range(7000, 7010)]


def json_of(runner: CliRunner, *args: object) -> dict[str, Any]:
    return json.loads(cli_ok(runner, *args, "--json"))


def build_folder_ledger(runner: CliRunner, tmp_path: Path) -> tuple[Path, Path]:
    """A folder ledger with real history, made through the CLI; (ledger, register)."""
    ledger = tmp_path / "ledger"
    cli_ok(runner, "ledger", "init", ledger, "-m", MUNICIPALITY, "--operator", "sato")
    (tmp_path / "codes.txt").write_text("\n".join(IMPORTED) + "\n", encoding="utf-8")
    cli_ok(runner, "ledger", "import", tmp_path / "codes.txt", "-l", ledger)
    (tmp_path / "retired.txt").write_text("\n".join(RETIRED) + "\n", encoding="utf-8")
    cli_ok(runner, "ledger", "import", tmp_path / "retired.txt", "-l", ledger, "--retired")
    register = write_cp932(tmp_path / "register.csv", register_rows())
    assigned = tmp_path / "assigned.csv"
    cli_ok(runner, "assign", register, "-l", ledger, "-o", assigned, "--operator", "tanaka")
    # A resident moving in with a code that was in use elsewhere: carried over.
    arrival = tmp_path / "arrival.csv"
    arrival.write_text(
        "resident_id,name,birth_date,sex,nationality,address,resident_code\n"
        f"900001,ARRIVING PERSON,1980-02-03,M,PHL,東京都千代田区1-1,{IMPORTED[7]}\n",
        encoding="utf-8",
    )
    cli_ok(runner, "assign", arrival, "-l", ledger, "-o", tmp_path / "arrival-out.csv")
    cli_ok(
        runner,
        *("notify", assigned, "-l", ledger, "--profile", profile_for(MUNICIPALITY, tmp_path)),
        *("-o", tmp_path / "sheets", "--workers", "1"),
    )
    cli_ok(
        runner, "change", "--resident", "100001", "--id-document", "residence_card", "-l", ledger
    )
    return ledger, register


def folder_records(path: Path) -> list[tuple[Any, ...]]:
    """Every record a folder ledger ever made: (code, status, municipality, resident, txn)."""
    manifest = Ledger.open(path).read_manifest()
    rows: list[tuple[Any, ...]] = []
    for info in manifest["segments"]:
        statuses = list(info["statuses"])
        if statuses in (["notice"], ["designated"]):
            continue
        frame = pl.read_parquet(path / info["file"])
        if "status" not in frame.columns:
            frame = frame.with_columns(
                status=pl.lit(statuses[0]),
                municipality=pl.lit(None, pl.String),
                resident_id=pl.lit(None, pl.String),
                txn=pl.lit(info["txn"], pl.UInt64),
            )
        for code, status, municipality, resident, txn in frame.select(
            "code", "status", "municipality", "resident_id", "txn"
        ).iter_rows():
            rows.append((f"{code:011d}", status, municipality, resident, int(txn)))
    return sorted(rows, key=repr)


def pg_records(url: str) -> list[tuple[Any, ...]]:
    rows = sql_rows(
        url,
        "SELECT lpad(code::text, 11, '0'), status, municipality::text, resident_id, txn "
        "FROM rrnet.code_history",
    )
    return sorted(rows, key=repr)


def pg_notices(url: str) -> list[tuple[Any, ...]]:
    rows = sql_rows(
        url,
        "SELECT lpad(code::text, 11, '0'), resident_id, kind, reprint_reason, batch, file, "
        "page, txn FROM rrnet.notices",
    )
    return sorted(rows, key=repr)


def listed_notices(runner: CliRunner, ledger: Path) -> list[tuple[Any, ...]]:
    issued = json_of(runner, "ledger", "notices", "-l", ledger)["issued"]
    return sorted(
        (
            (n["code"], n["resident_id"], n["kind"], n["reprint_reason"], n["batch"], n["file"],
             n["page"], n["txn"], n["issued_at"], n["operator"])
            for n in issued
        ),
        key=repr,
    )  # fmt: skip


def log_of(runner: CliRunner, location: object) -> dict[str, Any]:
    return json_of(runner, "ledger", "log", "-l", location, "--verbose")


def verify_clean(runner: CliRunner, location: object) -> dict[str, Any]:
    code, output = run_cli(runner, "verify", "--ledger", location, "--json")
    result = json.loads(output)
    assert code == 0 and result["violations"] == [], output
    return result


def stats_of(runner: CliRunner, location: object) -> dict[str, Any]:
    return json_of(runner, "ledger", "stats", "-l", location)


def pg_schema_exists(url: str) -> bool:
    return bool(sql_rows(url, "SELECT 1 FROM pg_namespace WHERE nspname = 'rrnet'"))


# -- the round trip ------------------------------------------------------------------


def test_a_folder_ledger_goes_into_postgresql_and_back_whole(
    runner: CliRunner, tmp_path: Path, pg_url: str, pg_server: Any
) -> None:
    source, register = build_folder_ledger(runner, tmp_path)
    original_log = log_of(runner, source)
    original_records = folder_records(source)
    original_stats = stats_of(runner, source)
    original_notices = listed_notices(runner, source)
    assert len(original_notices) == 16
    assert {r[1] for r in original_records} == {"imported", "retired", "assigned", "carried_over"}

    # -- into PostgreSQL ----------------------------------------------------------
    result = json_of(runner, "ledger", "copy", source, pg_url, "--operator", "suzuki")
    assert result["ok"] and result["matches"]
    assert result["records"] == len(original_records)
    assert result["notices"] == 16
    assert result["transactions"] == original_log["transactions"][-1]["txn"]
    assert result["audit_records"] == len(original_log["transactions"])
    assert len(result["content_sha256"]) == 64
    assert "Office roles are not copied" in " ".join(result["notes"])
    assert f"{source} still works as a ledger" in " ".join(result["notes"])
    assert "@" not in result["target"] and pg_server.password not in json.dumps(result)
    assert not (tmp_path / "ledger.copy").exists()

    pg_log = log_of(runner, pg_url)
    assert pg_log["intact"], pg_log["problems"]
    # Every record as it was, byte for byte (its hash still holds), then the copy's own.
    assert pg_log["transactions"][:-1] == original_log["transactions"]
    copied = pg_log["transactions"][-1]
    assert copied["operator"] == "suzuki" and copied["counts"] == {}
    assert copied["prev"] == original_log["head"]
    assert copied[COPIED_FROM]["content_sha256"] == result["content_sha256"]
    assert copied[COPIED_FROM]["ledger"] == str(source)
    assert pg_records(pg_url) == original_records
    assert pg_notices(pg_url) == sorted(
        (n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]) for n in original_notices
    )
    pg_stats = stats_of(runner, pg_url)
    assert pg_stats["by_status"] == original_stats["by_status"]
    assert pg_stats["codes_used"] == original_stats["codes_used"]
    assert pg_stats["municipality"] == MUNICIPALITY
    assert pg_stats["transactions"] == original_stats["transactions"] + 1
    verify_clean(runner, pg_url)

    # -- and back into a folder -----------------------------------------------------
    back = tmp_path / "back"
    result = json_of(runner, "ledger", "copy", pg_url, back)
    assert result["records"] == len(original_records) and result["notices"] == 16
    back_log = log_of(runner, back)
    assert back_log["intact"], back_log["problems"]
    assert back_log["transactions"][:-1] == pg_log["transactions"]
    assert back_log["transactions"][-1][COPIED_FROM]["ledger"].startswith("PostgreSQL host=")
    assert folder_records(back) == original_records
    assert listed_notices(runner, back) == original_notices
    back_stats = stats_of(runner, back)
    assert back_stats["by_status"] == original_stats["by_status"]
    assert back_stats["municipality"] == MUNICIPALITY
    report = verify_clean(runner, back)
    assert report["ledger_records"] == len(original_records)

    # -- the copies work as ledgers: the register's residents are assigned already --
    for location, name in ((back, "again-folder.csv"), (pg_url, "again-pg.csv")):
        again = tmp_path / name
        cli_ok(runner, "assign", register, "-l", location, "-o", again)
        frame = pl.read_csv(again, infer_schema=False)
        assert set(frame["code_status"]) == {"already_assigned"}, frame["code_status"].to_list()
        assert stats_of(runner, location)["by_status"] == original_stats["by_status"]
    # And the folder copy goes on as a folder: a new run is an ordinary, checked record.
    more = tmp_path / "more.csv"
    more.write_text(
        "resident_id,name,birth_date,sex,nationality,address\n"
        "400001,NEW PERSON,1999-09-09,F,VNM,東京都千代田区2-2\n",
        encoding="utf-8",
    )
    cli_ok(runner, "assign", more, "-l", back, "-o", tmp_path / "more-out.csv")
    assert "segments" in log_of(runner, back)["transactions"][-1]
    verify_clean(runner, back)


def test_a_folder_ledger_copies_into_another_folder_whole(
    runner: CliRunner, tmp_path: Path
) -> None:
    """A move to a new disk or server: the copy is the same ledger, and goes on."""
    source, register = build_folder_ledger(runner, tmp_path)
    target = tmp_path / "moved"
    result = json_of(runner, "ledger", "copy", source, target)
    assert result["matches"] and result["records"] == len(folder_records(source))
    assert folder_records(target) == folder_records(source)
    assert listed_notices(runner, target) == listed_notices(runner, source)
    moved_log = log_of(runner, target)
    assert moved_log["intact"], moved_log["problems"]
    assert moved_log["transactions"][:-1] == log_of(runner, source)["transactions"]
    assert stats_of(runner, target)["by_status"] == stats_of(runner, source)["by_status"]
    verify_clean(runner, target)
    again = tmp_path / "again.csv"
    cli_ok(runner, "assign", register, "-l", target, "-o", again)
    assert set(pl.read_csv(again, infer_schema=False)["code_status"]) == {"already_assigned"}


def test_a_database_ledger_made_by_assign_copies_into_a_folder(
    runner: CliRunner, tmp_path: Path, pg_url: str, pg_server: Any
) -> None:
    """Records made on the database (no segments in their audit records) verify in a folder."""
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    (tmp_path / "codes.txt").write_text("\n".join(IMPORTED) + "\n", encoding="utf-8")
    cli_ok(runner, "ledger", "import", tmp_path / "codes.txt", "-l", pg_url)
    register = write_cp932(tmp_path / "register.csv", register_rows())
    cli_ok(runner, "assign", register, "-l", pg_url, "-o", tmp_path / "out.csv")
    cli_ok(runner, "ledger", "add-municipality", "-l", pg_url, "-m", "131024")
    # A folder ledger serves one municipality: a database serving two is refused.
    code, output = run_cli(runner, "ledger", "copy", pg_url, tmp_path / "two")
    assert code == 2 and "serves 2 municipalities" in output, output
    assert not (tmp_path / "two").exists()

    one = pg_server.url(pg_server.create_database())
    cli_ok(runner, "ledger", "init", one, "-m", MUNICIPALITY)
    cli_ok(runner, "ledger", "import", tmp_path / "codes.txt", "-l", one)
    cli_ok(runner, "assign", register, "-l", one, "-o", tmp_path / "out1.csv")
    # Setting the office role of its own municipality is a transaction with no records.
    with psycopg.connect(one, autocommit=True) as conn:
        conn.execute("CREATE ROLE ward_copy_test LOGIN")
    cli_ok(runner, "ledger", "add-municipality", "-l", one, "-m", MUNICIPALITY, "--role",
           "ward_copy_test")  # fmt: skip
    target = tmp_path / "folder"
    target.mkdir()  # an empty folder is a new ledger's place too
    result = json_of(runner, "ledger", "copy", one, target)
    assert result["records"] == len(IMPORTED) + 16
    log = log_of(runner, target)
    assert log["intact"] and all("segments" not in r for r in log["transactions"][:-1])
    assert pg_records(one) == folder_records(target)
    verify_clean(runner, target)
    again = tmp_path / "again.csv"
    cli_ok(runner, "assign", register, "-l", target, "-o", again)
    assert set(pl.read_csv(again, infer_schema=False)["code_status"]) == {"already_assigned"}


# -- refusals ---------------------------------------------------------------------------


def test_an_existing_ledger_is_never_overwritten(
    runner: CliRunner, tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "src"
    cli_ok(runner, "ledger", "init", source, "-m", MUNICIPALITY)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "something.txt").write_text("keep me", encoding="utf-8")
    code, output = run_cli(runner, "ledger", "copy", source, taken)
    assert code == 2 and "already exists and is not an empty folder" in output, output
    assert [p.name for p in taken.iterdir()] == ["something.txt"]
    cli_ok(runner, "ledger", "init", pg_url, "-m", "131024")
    code, output = run_cli(runner, "ledger", "copy", source, pg_url)
    assert code == 2 and "already has a schema 'rrnet'" in output, output
    assert stats_of(runner, pg_url)["municipality"] == "131024"
    assert pg_url.split(":")[2].split("@")[0] not in output  # never the password
    # Copying a ledger onto itself is the same refusal.
    code, output = run_cli(runner, "ledger", "copy", source, source)
    assert code == 2 and "already exists" in output, output


def test_what_cannot_be_copied_is_refused_before_anything_is_written(
    runner: CliRunner, tmp_path: Path, pg_url: str
) -> None:
    code, output = run_cli(runner, "ledger", "copy", tmp_path / "nothing", pg_url)
    assert code == 2 and "There is no ledger at" in output, output
    (tmp_path / "plain").mkdir()
    code, output = run_cli(runner, "ledger", "copy", tmp_path / "plain", tmp_path / "x")
    assert code == 2 and "is not an rrnet ledger" in output, output


def pool_file(path: Path, first: int, n: int) -> Path:
    """``n`` valid codes, one per line, from body ``first`` on (leading zeros kept)."""
    bodies = [f"{i:010d}" for i in range(first, first + n)]
    path.write_text("\n".join(b + rcode.calc_check_digit(b) for b in bodies) + "\n", "utf-8")
    return path


def assigned_codes(path: Path) -> set[str]:
    frame = pl.read_csv(path, infer_schema=False)
    return set(frame.filter(pl.col("code_status") == "assigned")["resident_code"].to_list())


def test_designated_pools_and_pool_mode_go_across_and_keep_working(
    runner: CliRunner, tmp_path: Path, pg_url: str
) -> None:
    source = tmp_path / "ledger"
    cli_ok(runner, "ledger", "init", source, "-m", MUNICIPALITY)
    pool = set(pool_file(tmp_path / "pool.txt", 9000, 40).read_text().split())
    cli_ok(runner, "ledger", "designate", tmp_path / "pool.txt", "-l", source)
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", source)
    first = tmp_path / "first.csv"
    cli_ok(runner, "assign", write_cp932(tmp_path / "r.csv", register_rows()[:10]),
           "-l", source, "-o", first)  # fmt: skip
    drawn = assigned_codes(first)
    assert len(drawn) == 10 and drawn <= pool
    cli_ok(runner, "ledger", "pool-mode", "off", "-l", source)
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", source)
    folder_pool = stats_of(runner, source)["pool"]
    assert folder_pool == {"mode": "on", "designated": 40, "used": 10, "left": 30}

    result = json_of(runner, "ledger", "copy", source, pg_url)
    assert result["matches"] and result["designated"] == 40
    assert result["pool_mode"] == [MUNICIPALITY]
    verify_clean(runner, pg_url)
    assert stats_of(runner, pg_url)["pool"] == folder_pool

    back = tmp_path / "back"
    result = json_of(runner, "ledger", "copy", pg_url, back)
    assert result["matches"] and result["designated"] == 40
    verify_clean(runner, back)
    assert stats_of(runner, back)["pool"] == folder_pool
    assert Ledger.open(back).read_manifest()["pool_mode"] is True

    # Both copies go on drawing from what is left of the pool, never a code drawn before.
    for location, name in ((pg_url, "pg.csv"), (back, "back.csv")):
        out = tmp_path / name
        more = write_cp932(tmp_path / f"more-{name}", register_rows()[10:15])
        cli_ok(runner, "assign", more, "-l", location, "-o", out)
        fresh = assigned_codes(out)
        assert len(fresh) == 5 and fresh <= pool - drawn, (location, fresh)
        assert stats_of(runner, location)["pool"]["left"] == 25
        verify_clean(runner, location)


def test_a_shared_database_with_each_wards_pool_copies_into_another_database(
    runner: CliRunner, tmp_path: Path, pg_server: Any
) -> None:
    source = pg_server.url(pg_server.create_database())
    target = pg_server.url(pg_server.create_database())
    cli_ok(runner, "ledger", "init", source, "-m", MUNICIPALITY)
    cli_ok(runner, "ledger", "add-municipality", "-l", source, "-m", "131024")
    cli_ok(runner, "ledger", "designate", pool_file(tmp_path / "a.txt", 7000, 30),
           "-l", source, "-m", MUNICIPALITY)  # fmt: skip
    cli_ok(runner, "ledger", "designate", pool_file(tmp_path / "b.txt", 8000, 20),
           "-l", source, "-m", "131024")  # fmt: skip
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", source, "-m", "131024")
    register = write_cp932(tmp_path / "r.csv", register_rows()[:6])
    cli_ok(runner, "assign", register, "-l", source, "-m", "131024", "-o", tmp_path / "b.csv")
    cli_ok(runner, "assign", register, "-l", source, "-m", MUNICIPALITY, "-o", tmp_path / "a.csv")
    before = stats_of(runner, source)
    result = json_of(runner, "ledger", "copy", source, target)
    assert result["matches"] and result["designated"] == 50 and result["pool_mode"] == ["131024"]
    after = stats_of(runner, target)
    assert after["pools"] == before["pools"]
    assert after["pools"]["131024"] == {"mode": "on", "designated": 20, "used": 6, "left": 14}
    assert after["by_status"] == before["by_status"]
    assert log_of(runner, target)["transactions"][:-1] == log_of(runner, source)["transactions"]
    verify_clean(runner, target)


def test_a_damaged_source_is_not_copied(runner: CliRunner, tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "src"
    cli_ok(runner, "ledger", "init", source, "-m", MUNICIPALITY)
    (tmp_path / "codes.txt").write_text("\n".join(IMPORTED) + "\n", encoding="utf-8")
    cli_ok(runner, "ledger", "import", tmp_path / "codes.txt", "-l", source)
    manifest_path = source / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest[TRANSACTIONS][1]["operator"] = "someone else"
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    code, output = run_cli(runner, "ledger", "copy", source, pg_url)
    assert code == 2 and "fails its own check" in " ".join(output.split()), output
    assert not pg_schema_exists(pg_url)


# -- all or nothing -------------------------------------------------------------------


@pytest.mark.parametrize("into", ["folder", "postgres"])
def test_a_copy_that_reads_back_differently_leaves_nothing(
    runner: CliRunner, tmp_path: Path, pg_url: str, into: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = build_small_ledger(runner, tmp_path)
    real = copy_module._record_table if into == "folder" else copy_module._pg_history_lines

    def lossy(*args: Any) -> Any:  # a bug that drops one resident's id on the way
        if into == "folder":
            frame = args[0]
            return real(frame.with_columns(resident_id=pl.col("resident_id").str.replace("1", "7")))
        return real(*args).replace(b"\t100001\t", b"\t199999\t")

    name = "_record_table" if into == "folder" else "_pg_history_lines"
    monkeypatch.setattr(copy_module, name, lossy)
    target = str(tmp_path / "dst") if into == "folder" else pg_url
    code, output = run_cli(runner, "ledger", "copy", source, target)
    assert code == 1, output
    flat = " ".join(output.split())
    assert "differs from its source; nothing was kept there" in flat
    assert "content_sha256" in flat
    if into == "folder":
        assert not (tmp_path / "dst").exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dst")]
    else:
        assert not pg_schema_exists(pg_url)


def build_small_ledger(runner: CliRunner, tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "src"
    cli_ok(runner, "ledger", "init", source, "-m", MUNICIPALITY)
    (tmp_path / "codes.txt").write_text("\n".join(IMPORTED) + "\n", encoding="utf-8")
    cli_ok(runner, "ledger", "import", tmp_path / "codes.txt", "-l", source)
    register = write_cp932(tmp_path / "register.csv", register_rows())
    cli_ok(runner, "assign", register, "-l", source, "-o", tmp_path / "assigned.csv")
    return source, register


@pytest.mark.parametrize("into", ["folder", "postgres"])
def test_a_copy_killed_before_its_end_leaves_no_ledger(
    runner: CliRunner, tmp_path: Path, pg_url: str, pg_server: Any, into: str
) -> None:
    source, _ = build_small_ledger(runner, tmp_path)
    target = str(tmp_path / "dst") if into == "folder" else pg_url
    point = "copy-before-rename" if into == "folder" else "copy-before-commit"
    killed = rrnet("ledger", "copy", source, target, env={"RRNET_FAILPOINT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if into == "folder":
        assert not (tmp_path / "dst").exists()
        # The killed copy's temporary folder holds residents' records.
        (left,) = [p for p in tmp_path.iterdir() if p.name.startswith(".dst.copying-")]
        assert (left / "manifest.json").exists()
        # One that a copy on another machine left is named, never removed.
        elsewhere = tmp_path / ".dst.copying-otherhost-4242-0123abcd"
        elsewhere.mkdir()
    else:
        deadline = 0
        while pg_schema_exists(pg_url) and deadline < 100:  # the server rolls back
            import time

            time.sleep(0.1)
            deadline += 1
        assert not pg_schema_exists(pg_url)
    # And the copy runs again, whole, and clears what the killed one left on this machine.
    result = json.loads(rrnet("ledger", "copy", source, target, "--json", check=True).stdout)
    assert result["ok"] and result["records"] == len(IMPORTED) + 16
    if into == "folder":
        notes = " ".join(result["notes"])
        assert f"Removed {left}" in notes and not left.exists()
        assert f"{elsewhere} is an unfinished copy" in notes and elsewhere.exists()
        assert sorted(p.name for p in tmp_path.iterdir() if ".copying-" in p.name) == [
            elsewhere.name
        ]


# -- tampering with a copy is still caught -----------------------------------------------


def test_tampering_with_a_folder_copy_is_caught(
    runner: CliRunner, tmp_path: Path, pg_url: str
) -> None:
    source, _ = build_small_ledger(runner, tmp_path)
    cli_ok(runner, "ledger", "copy", source, pg_url)
    back = tmp_path / "back"
    cli_ok(runner, "ledger", "copy", pg_url, back)
    verify_clean(runner, back)
    manifest_path = back / "manifest.json"
    pristine = manifest_path.read_text(encoding="utf-8")

    def problems() -> str:
        code, output = run_cli(runner, "verify", "--ledger", back, "--json")
        assert code in (1, 2), output  # 2: the manifest itself is refused as damaged
        return " ".join(output.split())

    # 1. A segment rewritten (a resident's code given to another) with the manifest's
    #    checksum updated to match: the copy record names every segment.
    manifest = json.loads(pristine)
    info = next(
        s for s in manifest["segments"] if s["has_residents"] and "assigned" in s["statuses"]
    )
    path = back / info["file"]
    frame = pl.read_parquet(path)
    frame = frame.with_columns(resident_id=pl.col("resident_id").reverse())
    frame.write_parquet(path)
    from rrnet_cli.ledger.interface import file_sha256

    info["sha256"], info["bytes"] = file_sha256(path), path.stat().st_size
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert "the segments it names differ from the manifest's segments" in problems()

    # 2. A copied record edited (its operator): its hash no longer holds.
    shutil_copy_back(tmp_path, pg_url, back)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest[TRANSACTIONS][2]["operator"] = "nobody"
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert "transaction 2: the record does not match its hash" in problems()

    # 3. The copy record's segments key removed and the record resealed (a forged
    #    ordinary record): the records before it must then name their own segments.
    shutil_copy_back(tmp_path, pg_url, back)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    last = manifest[TRANSACTIONS][-1]
    del last["segments"]
    last["hash"] = record_hash(last)
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    flat = problems()
    assert "the segments do not account for transactions" in flat or "lacks a valid" in flat

    # 4. Codes of a transaction removed from its segment set: counts differ.
    shutil_copy_back(tmp_path, pg_url, back)
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    gone = next(s for s in manifest["segments"] if s["txn"] == 2)
    manifest["segments"].remove(gone)
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert "its counts differ" in problems()


def shutil_copy_back(tmp_path: Path, pg_url: str, back: Path) -> None:
    """A fresh copy of the database ledger at ``back``."""
    import shutil

    shutil.rmtree(back)
    cli_ok(CliRunner(env={"RRNET_LEDGER": None}), "ledger", "copy", pg_url, back)


def test_tampering_with_a_database_copy_is_caught(
    runner: CliRunner, tmp_path: Path, pg_url: str
) -> None:
    source, _ = build_small_ledger(runner, tmp_path)
    cli_ok(runner, "ledger", "copy", source, pg_url)
    verify_clean(runner, pg_url)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        # A copied folder record's segments (kept in details) edited: its hash breaks.
        conn.execute(
            "UPDATE rrnet.transactions SET details = jsonb_set(details, '{segments,0,rows}', "
            "'1') WHERE id = 1"
        )
        # A record of the assign given to another resident, in both tables.
        conn.execute(
            "UPDATE rrnet.code_history SET resident_id = 'X' WHERE txn = 2 AND resident_id = "
            "(SELECT min(resident_id) FROM rrnet.code_history WHERE txn = 2)"
        )
    code, output = run_cli(runner, "verify", "--ledger", pg_url, "--json")
    assert code == 1, output
    flat = " ".join(output.split())
    assert "transaction 1: the record does not match its hash" in flat
    assert "differ from their latest record" in flat


def test_a_folder_moved_into_the_database_is_closed_for_writing(
    runner: CliRunner, tmp_path: Path, pg_url: str
) -> None:
    """`copy --move`: the office cannot go on assigning from the old folder by mistake,
    which would issue codes the database never sees."""
    source, register = build_small_ledger(runner, tmp_path)
    result = json_of(runner, "ledger", "copy", source, pg_url, "--move")
    assert result["matches"] and f"{source} is closed" in " ".join(result["notes"])
    code, output = run_cli(runner, "assign", register, "-l", source, "-o", tmp_path / "x.csv")
    flat = " ".join(output.split())
    assert code == 2 and f"The ledger {source} was moved to PostgreSQL" in flat, output
    assert not (tmp_path / "x.csv").exists()
    code, output = run_cli(
        runner, "change", "--resident", "100001", "--id-document", "passport", "-l", source
    )
    assert code == 2 and "was moved to" in output
    # Reading still works: stats, the log (which says so) and verify.
    stats_of(runner, source)
    log = log_of(runner, source)
    assert log["intact"] and log["transactions"][-1]["moved_to"]["ledger"].startswith("PostgreSQL")
    verify_clean(runner, source)
    assert Ledger.open(source).read_manifest()["version"] == 5
    # The closed folder is not copied again (that copy would be a second open ledger).
    code, output = run_cli(runner, "ledger", "copy", source, tmp_path / "again")
    assert code == 2 and "copy that one instead" in output and not (tmp_path / "again").exists()
    # The database goes on: the register's residents are assigned already there.
    again = tmp_path / "again.csv"
    cli_ok(runner, "assign", register, "-l", pg_url, "-o", again)
    assert set(pl.read_csv(again, infer_schema=False)["code_status"]) == {"already_assigned"}
    # Reopening the folder by hand (the manifest's key removed) breaks its check.
    manifest_path = source / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    del manifest["moved_to"]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    code, output = run_cli(runner, "verify", "--ledger", source)
    assert code == 1 and "reopened by hand" in output, output


def test_move_is_refused_for_a_database_source_before_anything_is_written(
    runner: CliRunner, tmp_path: Path, pg_url: str
) -> None:
    cli_ok(runner, "ledger", "init", pg_url, "-m", MUNICIPALITY)
    code, output = run_cli(runner, "ledger", "copy", pg_url, tmp_path / "dst", "--move")
    assert code == 2 and "--move closes a folder ledger" in output, output
    assert not (tmp_path / "dst").exists()
