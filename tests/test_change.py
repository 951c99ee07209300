"""`rrnet change`: a resident's code retired and a new one drawn, in one transaction."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from backends import LedgerBackend
from helpers import MUNICIPALITY, cli_ok, folder_bytes, run_cli, write_export
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rrnet_cli import assign as assign_module
from rrnet_cli import code as rcode
from rrnet_cli.assign import random_source, tiny_code_space_for_tests
from rrnet_cli.change import ChangeRequest, change_codes
from rrnet_cli.errors import LedgerError
from rrnet_cli.ledger import Ledger, check_integrity
from rrnet_cli.ledger import folder as folder_module
from rrnet_cli.ledger import postgres as postgres_module
from rrnet_cli.schema import ChangeReason, IdDocument

#: What the office wrote as its reason: personal data, never to be printed.
SECRET_REASON = "notice returned: ARAKI Kenta moved to his sister's"


@pytest.fixture
def assigned(runner: CliRunner, ledger: Ledger, tmp_path: Path) -> Path:
    """Residents 000000000..000000004 assigned in ``ledger``; the assigned register."""
    out = tmp_path / "assigned.csv"
    cli_ok(runner, "assign", write_export(tmp_path / "export.csv", 5), "-l", ledger.path, "-o", out)
    return out


def codes_of(path: Path) -> dict[str, str]:
    frame = pl.read_csv(path, infer_schema=False)
    return dict(zip(frame["resident_id"], frame["resident_code"], strict=True))


def lookup(ledger: Ledger, code: str) -> dict[str, str | None]:
    found = ledger.snapshot().lookup(rcode.strings_to_codes([code]))
    return found.drop("code").row(0, named=True)


def active_code(ledger: Ledger, resident: str) -> list[str]:
    active = ledger.snapshot().active_by_resident().filter(pl.col("resident_id") == resident)
    return rcode.codes_to_strings(active["code"].to_numpy()).to_pylist()


# -- one change ----------------------------------------------------------------------


def test_a_change_on_request_retires_the_code_and_draws_a_new_one(
    runner: CliRunner, ledger: Ledger, assigned: Path, tmp_path: Path
) -> None:
    resident = "000000002"
    old = codes_of(assigned)[resident]
    used_before = ledger.snapshot().codes
    changes = tmp_path / "changes.csv"

    output = cli_ok(
        runner,
        "change",
        "--resident",
        resident,
        "--id-document",
        "residence_card",
        "-l",
        ledger.path,
        "-o",
        changes,
        "--operator",
        "窓口 佐藤",
    )

    row = pl.read_csv(changes, infer_schema=False).row(0, named=True)
    new = row["new_code"]
    assert (row["resident_id"], row["old_code"]) == (resident, old)
    assert row["changed_at"].endswith("+09:00"), "Japan's time, with its offset"
    assert stat.S_IMODE(changes.stat().st_mode) == 0o600
    assert rcode.is_valid(new) and new != old
    assert not used_before.contains(rcode.strings_to_codes([new])).any(), "a used code"
    assert lookup(ledger, old) == {
        "status": "retired",
        "municipality": MUNICIPALITY,
        "resident_id": resident,
    }
    assert lookup(ledger, new)["status"] == "assigned"
    assert active_code(ledger, resident) == [new]
    assert check_integrity(ledger).violations == []
    assert f"{rcode.format(old)} retired, new code {rcode.format(new)}" in output

    manifest = json.loads(ledger.manifest_path.read_text())
    assert manifest["txn"] == 2, "the change is one transaction"
    record = manifest["transactions"][-1]
    assert record["operator"] == "窓口 佐藤"
    assert record["changes"] == [
        {
            "resident_id": resident,
            "old_code": old,
            "new_code": new,
            "reason": "request",
            "id_document": "residence_card",
        }
    ]


def test_after_a_change_assign_keeps_the_new_code_and_verify_calls_the_old_retired(
    runner: CliRunner, ledger: Ledger, assigned: Path, tmp_path: Path
) -> None:
    resident = "000000004"
    data = json.loads(
        cli_ok(
            runner,
            "change",
            "--resident",
            resident,
            "--id-document",
            "passport",
            "-l",
            ledger.path,
            "--json",
        )
    )
    [change] = data["changes"]
    assert change["old_code"] == codes_of(assigned)[resident]

    again = tmp_path / "again.csv"
    figures = json.loads(
        cli_ok(runner, "assign", tmp_path / "export.csv", "-l", ledger.path, "-o", again, "--json")
    )
    assert (figures["already_assigned"], figures["newly_assigned"]) == (5, 0)
    assert codes_of(again)[resident] == change["new_code"]
    assert run_cli(runner, "verify", again, "-l", ledger.path)[0] == 0

    code, output = run_cli(runner, "verify", assigned, "-l", ledger.path)
    assert code == 1
    assert "row 6: [ledger] the ledger says this code is retired" in output


def test_a_change_by_the_office_keeps_its_reason_but_never_prints_it(
    runner: CliRunner, ledger: Ledger, assigned: Path
) -> None:
    args = ["change", "--resident", "000000001", "--by-office", "--reason", SECRET_REASON]
    text = cli_ok(runner, *args, "-l", ledger.path)
    assert "by the office" in text and SECRET_REASON not in text
    data = json.loads(
        cli_ok(
            runner,
            "change",
            "--resident",
            "000000001",
            "--by-office",
            "--reason",
            "again",
            "-l",
            ledger.path,
            "--json",
        )
    )
    assert data["by_office"] == 1 and "again" not in json.dumps(data["changes"])

    first = json.loads(ledger.manifest_path.read_text())["transactions"][2]
    assert first["changes"][0]["reason"] == "office"
    assert first["changes"][0]["office_reason"] == SECRET_REASON
    assert SECRET_REASON not in " ".join(first["command"]), "argv keeps no personal data"
    assert "--reason" in first["command"]

    log = cli_ok(runner, "ledger", "log", "-l", ledger.path, "--json")
    assert SECRET_REASON not in log
    assert SECRET_REASON in cli_ok(
        runner, "ledger", "log", "-l", ledger.path, "--json", "--verbose"
    )
    assert check_integrity(ledger).violations == []


def test_a_carried_over_code_can_be_changed(
    runner: CliRunner, ledger: Ledger, resident, write_register, tmp_path: Path
) -> None:
    carried = "12345678903"
    register = write_register([resident("777", resident_code=carried)])
    cli_ok(runner, "assign", register, "-l", ledger.path, "-o", tmp_path / "out.csv")
    assert lookup(ledger, carried)["status"] == "carried_over"
    cli_ok(
        runner, "change", "--resident", "777", "--id-document", "my_number_card", "-l", ledger.path
    )
    assert lookup(ledger, carried)["status"] == "retired"
    assert len(active_code(ledger, "777")) == 1 and active_code(ledger, "777") != [carried]
    assert check_integrity(ledger).violations == []


# -- a batch -------------------------------------------------------------------------


def test_a_batch_changes_every_requested_code_in_one_transaction(
    runner: CliRunner, ledger: Ledger, assigned: Path, tmp_path: Path
) -> None:
    requests = tmp_path / "requests.csv"
    requests.write_bytes(
        "宛名番号,本人確認書類,職権理由\r\n"
        "000000000,在留カード,\r\n"
        "000000001,Drivers-License,\r\n"
        f"000000003,,{SECRET_REASON}\r\n".encode("cp932")
    )
    before = codes_of(assigned)
    changes = tmp_path / "changes.parquet"

    output = cli_ok(runner, "change", "--requests", requests, "-l", ledger.path, "-o", changes)

    assert SECRET_REASON not in output
    written = pl.read_parquet(changes)
    assert written.columns == ["resident_id", "old_code", "new_code", "changed_at"]
    assert written["resident_id"].to_list() == ["000000000", "000000001", "000000003"]
    assert written["old_code"].to_list() == [before[r] for r in written["resident_id"]]
    new = written["new_code"].to_list()
    assert len(set(new) | set(before.values())) == len(before) + 3, "new codes are all new"
    manifest = json.loads(ledger.manifest_path.read_text())
    assert manifest["txn"] == 2
    assert [s["rows"] for s in manifest["segments"] if s["txn"] == 2] == [6]
    record = manifest["transactions"][-1]
    assert [(c["reason"], c.get("id_document")) for c in record["changes"]] == [
        ("request", "residence_card"),
        ("request", "drivers_license"),
        ("office", None),
    ]
    assert record["inputs"][0]["path"] == str(requests)
    assert check_integrity(ledger).violations == []
    assert sorted(active_code(ledger, "000000003")) == [new[2]]


def test_a_requests_workbook_works_too(
    runner: CliRunner, ledger: Ledger, assigned: Path, tmp_path: Path
) -> None:
    requests = tmp_path / "requests.xlsx"
    pl.DataFrame({"resident_id": ["000000002"], "id_document": ["passport"]}).write_excel(requests)
    data = json.loads(cli_ok(runner, "change", "--requests", requests, "-l", ledger.path, "--json"))
    assert data["changed"] == 1 and data["on_request"] == 1


# -- refusals: a clear message, exit 2, nothing changed ---------------------------------


def _requests(path: Path, rows: list[str]) -> Path:
    path.write_text("resident_id,id_document,reason\n" + "".join(r + "\n" for r in rows))
    return path


#: Requests files of the refusal cases, by name: their rows.
REQUEST_FILES = {
    "requests": ["000000001,passport,"],
    "duplicates": ["000000001,passport,", "000000002,passport,", "000000001,,lost"],
    "unknown": ["000000001,passport,", "424242,passport,"],
    "bad_rows": [",passport,", "000000001,library card,", "000000002,passport,lost", "000000003,,"],
}


REFUSALS: dict[str, tuple[list[str], list[str]]] = {
    "unknown_resident": (
        ["--resident", "999999", "--id-document", "passport", "-o", "{tmp}/changes.csv"],
        ["999999", "the ledger does not know this resident"],
    ),
    "excluded_resident": (
        ["--resident", "move-out", "--id-document", "passport"],
        ["the ledger does not know this resident"],
    ),
    "zeros_lost": (
        ["--resident", "3", "--id-document", "passport"],
        ["without its leading zeros"],
    ),
    "retired_code": (
        ["--resident", "000000000", "--id-document", "passport"],
        ["has no active code"],
    ),
    "neither_id_nor_office": (["--resident", "000000001"], ["--id-document", "--by-office"]),
    "office_without_reason": (["--resident", "000000001", "--by-office"], ["needs --reason"]),
    "office_with_blank_reason": (
        ["--resident", "000000001", "--by-office", "--reason", "  "],
        ["needs --reason"],
    ),
    "both_id_and_office": (
        ["--resident", "000000001", "--id-document", "passport", "--by-office", "--reason", "x"],
        ["not both"],
    ),
    "reason_without_office": (
        ["--resident", "000000001", "--id-document", "passport", "--reason", SECRET_REASON],
        ["--reason goes with --by-office"],
    ),
    "bad_id_document": (
        ["--resident", "000000001", "--id-document", "library_card"],
        ["library_card"],
    ),
    "no_resident": (["--id-document", "passport"], ["--resident ID", "--requests FILE"]),
    "requests_and_resident": (
        ["--requests", "{requests}", "--resident", "000000001"],
        ["leave out --resident"],
    ),
    "duplicate_in_batch": (
        ["--requests", "{duplicates}"],
        ["row 4, resident_id: a second change of the same resident in this batch (first in row 2)"],
    ),
    "one_unknown_in_batch": (
        ["--requests", "{unknown}", "-o", "{tmp}/changes.csv"],
        ["row 3, resident_id: the ledger does not know this resident"],
    ),
    "bad_rows_in_batch": (
        ["--requests", "{bad_rows}"],
        [
            "row 2, resident_id: empty",
            "row 3, id_document: not a kind of ID rrnet knows",
            "row 4, id_document: give the kind of ID checked",
            "row 5, id_document: empty",
        ],
    ),
    "output_of_an_unknown_kind": (
        ["--resident", "000000001", "--id-document", "passport", "-o", "{tmp}/changes.txt"],
        [".csv, .parquet or .xlsx"],
    ),
}


@pytest.mark.parametrize("kind", list(REFUSALS))
def test_refusals_change_nothing(
    runner: CliRunner,
    ledger: Ledger,
    assigned: Path,
    resident,
    write_register,
    tmp_path: Path,
    kind: str,
) -> None:
    # A resident excluded for a planned move-out (never in the ledger) and one whose code
    # was retired with nothing in its place.
    register = write_register([resident("move-out", planned_move_out_date="2030-01-01")], "m.csv")
    cli_ok(runner, "assign", register, "-l", ledger.path, "-o", tmp_path / "m.out.csv")
    ledger.retire([codes_of(assigned)["000000000"]])
    files: dict[str, Path] = {"tmp": tmp_path}
    for name, rows in REQUEST_FILES.items():
        files[name] = _requests(tmp_path / f"{name}.csv", rows)
    args, expected = REFUSALS[kind]
    before = folder_bytes(ledger.path)
    listing = sorted(p.name for p in tmp_path.iterdir())

    code, output = run_cli(runner, "change", *[a.format(**files) for a in args], "-l", ledger.path)

    assert code == 2, output
    flat = " ".join(output.split())
    for text in expected:
        assert " ".join(text.split()) in flat, output
    assert SECRET_REASON not in output
    assert "Traceback" not in output
    assert folder_bytes(ledger.path) == before, "the ledger changed"
    assert sorted(p.name for p in tmp_path.iterdir()) == listing, "a file was written"


def test_an_unknown_resident_is_named_only_with_verbose_in_a_batch(
    runner: CliRunner, ledger: Ledger, assigned: Path, tmp_path: Path
) -> None:
    requests = _requests(tmp_path / "requests.csv", ["424242,passport,"])
    code, output = run_cli(runner, "change", "--requests", requests, "-l", ledger.path)
    assert code == 2 and "row 2" in output and "424242" not in output
    code, output = run_cli(runner, "change", "--requests", requests, "-l", ledger.path, "--verbose")
    assert code == 2 and "424242" in output


def test_another_municipality_is_refused(runner: CliRunner, ledger: Ledger, assigned: Path) -> None:
    before = folder_bytes(ledger.path)
    code, output = run_cli(
        runner,
        "change",
        "--resident",
        "000000001",
        "--id-document",
        "passport",
        "-l",
        ledger.path,
        "-m",
        "011002",
    )
    assert code == 2 and "wrong municipality" in output
    assert folder_bytes(ledger.path) == before


# -- drawing: the same CSPRNG path, never a used code -----------------------------------


def test_without_a_test_source_the_new_code_comes_from_the_os_csprng(
    ledger: Ledger, assigned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", counting)
    change_codes(ledger, [ChangeRequest("000000001", ChangeReason.REQUEST, IdDocument.PASSPORT)])
    assert calls


def test_a_used_up_code_space_is_refused_and_changes_nothing(ledger: Ledger) -> None:
    with tiny_code_space_for_tests(3):
        _assign_directly(ledger, 3, seed=1)
        before = folder_bytes(ledger.path)
        with pytest.raises(LedgerError, match="code space is used up"):
            change_codes(
                ledger,
                [ChangeRequest("r0", ChangeReason.OFFICE, office_reason="x")],
                random_bytes=random_source(2),
            )
    assert folder_bytes(ledger.path) == before
    assert assign_module._test_body_space is None, "the hook is reset after the block"


def _assign_directly(ledger: Ledger, n: int, seed: int) -> list[int]:
    """Give residents r0..r{n-1} codes drawn as assign draws them."""
    with ledger.transaction() as txn:
        codes, _ = assign_module.draw_codes(
            n, used=txn.state.codes, taken=np.empty(0, np.uint64), random_bytes=random_source(seed)
        )
        txn.add_records(
            pl.DataFrame(
                {
                    "code": codes,
                    "status": ["assigned"] * n,
                    "municipality": [MUNICIPALITY] * n,
                    "resident_id": [f"r{i}" for i in range(n)],
                }
            )
        )
    return [int(c) for c in codes]


TINY_SPACE = 48
RESIDENTS = 4


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    batches=st.lists(st.sets(st.integers(0, RESIDENTS - 1), min_size=1), min_size=1, max_size=10),
    seed=st.integers(0, 2**32),
)
def test_a_retired_code_is_never_drawn_again(
    tmp_path_factory: pytest.TempPathFactory, batches: list[set[int]], seed: int
) -> None:
    """Many changes in a tiny code space: no code is ever drawn twice, none comes back."""
    ledger = Ledger.init(tmp_path_factory.mktemp("l") / "ledger", municipality=MUNICIPALITY)
    random_bytes = random_source(seed)
    with tiny_code_space_for_tests(TINY_SPACE):
        ever = _assign_directly(ledger, RESIDENTS, seed)
        retired: set[int] = set()
        for batch in batches:
            requests = [
                ChangeRequest(f"r{i}", ChangeReason.REQUEST, IdDocument.OTHER)
                for i in sorted(batch)
            ]
            result = change_codes(ledger, requests, random_bytes=random_bytes)
            for change in result.changes:
                old, new = int(change["old_code"]), int(change["new_code"])
                assert old in ever and old not in retired
                assert new not in ever, "a code was drawn twice"
                assert new // 10 < TINY_SPACE  # the hook really narrowed the space
                ever.append(new)
                retired.add(old)
            now = ledger.snapshot()
            statuses = now.lookup(np.array(sorted(retired), dtype=np.uint64))["status"]
            assert set(statuses) == {"retired"}, "a retired code came back"
            assert now.active_by_resident().height == RESIDENTS
        assert len(ever) == len(set(ever)) == RESIDENTS + sum(map(len, batches))
        assert check_integrity(ledger).violations == []


# -- --id-document as a requests file spells it ------------------------------------------


def test_id_document_takes_the_japanese_names_a_requests_file_takes(
    runner: CliRunner, ledger: Ledger, assigned: Path
) -> None:
    args = ["change", "--resident", "000000002", "-l", ledger.path, "--json"]
    done = json.loads(cli_ok(runner, *args, "--id-document", "在留カード"))
    assert [c["id_document"] for c in done["changes"]] == ["residence_card"]
    done = json.loads(cli_ok(runner, *args, "--id-document", "Drivers-License"))
    assert [c["id_document"] for c in done["changes"]] == ["drivers_license"]

    before = folder_bytes(ledger.path)
    code, output = run_cli(runner, *args, "--id-document", "免許")
    flat = " ".join(output.replace("│", " ").split())
    assert code == 2 and "Value error" not in flat, flat
    assert "'免許' is not a kind of ID rrnet knows" in flat
    assert "residence_card" in flat and "マイナンバーカード" in flat
    assert folder_bytes(ledger.path) == before, "nothing changed"


# -- times as staff see them ---------------------------------------------------------


@pytest.fixture
def utc_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process runs in a machine set to UTC (TZ=UTC), as servers often are."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_times_staff_see_are_japans_whatever_the_machines_zone(
    runner: CliRunner,
    backend: LedgerBackend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    utc_machine: None,
) -> None:
    # 20:30 UTC tomorrow is 05:30 the day after in Japan: the dates differ.
    late = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=20, minute=30, second=0, microsecond=0
    )
    in_japan = late + timedelta(hours=9)
    monkeypatch.setattr(folder_module, "_now", lambda: late)
    monkeypatch.setattr(postgres_module, "_now", lambda: late)
    ledger = backend.location
    assigned = tmp_path / "assigned.csv"
    cli_ok(runner, "assign", write_export(tmp_path / "export.csv", 3), "-l", ledger, "-o", assigned)
    changes = tmp_path / "changes.csv"
    resident = "000000001"
    args = ["change", "--resident", resident, "--id-document", "residence_card", "-l", ledger]
    output = cli_ok(runner, *args, "-o", changes, "--json")

    stamp = f"{in_japan:%Y-%m-%dT%H:%M:%S}+09:00"
    assert pl.read_csv(changes, infer_schema=False)["changed_at"].to_list() == [stamp]
    assert json.loads(output)["changed_at"] == stamp
    log = cli_ok(runner, "ledger", "log", "-l", ledger)
    assert f"{in_japan:%Y-%m-%d %H:%M:%S}" in log and "time (Japan)" in log
    assert f"{late:%Y-%m-%d %H:%M}" not in log
