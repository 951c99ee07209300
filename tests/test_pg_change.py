"""`rrnet change` and `rrnet notify --changes` on a shared PostgreSQL ledger.

What an office notices: a change request retires the resident's code and gives a
new one nobody has ever held, in one transaction; the next assign keeps the new
code and verify calls the old one retired; the change notice goes out once; a
resident of the other ward cannot be changed from here; and when another office
took the drawn code meanwhile (forced here with a nearly full code space) the
new code is drawn again, never shared. The folder ledger's change rules are
tests/test_change.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
from backends import WARD_A, WARD_B, Shared
from helpers import cli_ok, profile_for, run_cli, write_export
from typer.testing import CliRunner

from rrnet_cli import code as rcode
from rrnet_cli.assign import tiny_code_space_for_tests


def codes_of(path: Path) -> dict[str, str]:
    frame = pl.read_csv(path, infer_schema=False)
    return dict(zip(frame["resident_id"], frame["resident_code"], strict=True))


def test_a_change_retires_the_code_and_its_notice_goes_out_once(
    runner: CliRunner, shared: Shared, tmp_path: Path
) -> None:
    office = shared.url(shared.roles[WARD_A])
    export = write_export(tmp_path / "export.csv", 5)
    assigned = tmp_path / "assigned.csv"
    cli_ok(runner, "assign", export, "-l", office, "-o", assigned)
    resident, old = "000000002", codes_of(assigned)["000000002"]
    changes = tmp_path / "changes.csv"
    cli_ok(
        runner, "change", "--resident", resident, "--id-document", "residence_card",
        "-l", office, "-o", changes,
    )  # fmt: skip
    row = pl.read_csv(changes, infer_schema=False).row(0, named=True)
    new = row["new_code"]
    assert (row["resident_id"], row["old_code"]) == (resident, old)
    assert rcode.is_valid(new) and new != old
    held = shared.rows(
        shared.owner,
        "SELECT lpad(code::text, 11, '0'), status FROM rrnet.codes WHERE resident_id = %s "
        "AND municipality = %s ORDER BY status",
        resident,
        WARD_A,
    )
    assert held == [(new, "assigned"), (old, "retired")]
    log = json.loads(cli_ok(runner, "ledger", "log", "-l", shared.owner, "--json"))
    last = log["transactions"][-1]
    assert last["counts"] == {"retired": 1, "assigned": 1}
    assert last["changes"][0]["new_code"] == new
    # The next assign keeps the new code; the old file's code is now retired.
    again = tmp_path / "again.csv"
    figures = json.loads(cli_ok(runner, "assign", export, "-l", office, "-o", again, "--json"))
    assert (figures["already_assigned"], figures["newly_assigned"]) == (5, 0)
    assert codes_of(again)[resident] == new
    code, output = run_cli(runner, "verify", assigned, "-l", office)
    assert code == 1 and "the ledger says this code is retired" in output
    assert run_cli(runner, "verify", "-l", shared.owner)[0] == 0
    # The change notice, once.
    profile = profile_for(WARD_A, tmp_path)
    notify = ("notify", again, "-l", office, "--profile", profile, "--workers", "1", "--changes")
    first = json.loads(cli_ok(runner, *notify, "-o", tmp_path / "change-notices", "--json"))
    assert first["sheets"] == 1
    code, output = run_cli(runner, *notify, "-o", tmp_path / "again-notices")
    assert code == 0 and "already issued" in " ".join(output.split())


def test_an_office_cannot_change_another_wards_resident(
    runner: CliRunner, shared: Shared, tmp_path: Path
) -> None:
    export = write_export(tmp_path / "export.csv", 3)
    ward_b = shared.url(shared.roles[WARD_B])
    cli_ok(runner, "assign", export, "-l", ward_b, "-o", tmp_path / "b.csv")
    code, output = run_cli(
        runner, "change", "--resident", "000000001", "--id-document", "passport",
        "-l", shared.url(shared.roles[WARD_A]),
    )  # fmt: skip
    assert code == 2 and "does not know this resident" in " ".join(output.split())
    assert shared.rows(
        shared.owner, "SELECT count(*) FROM rrnet.codes WHERE status = 'retired'"
    ) == [(0,)]


def test_new_codes_refused_by_the_database_are_drawn_again(
    runner: CliRunner, shared: Shared, tmp_path: Path
) -> None:
    """A nearly full code space: most candidate new codes are in use, and the client
    knows none of them (it never loads the ledger), so the INSERT refuses them."""
    tiny = 400
    space = rcode.codes_from_bodies(np.arange(tiny, dtype=np.uint64))
    taken = np.random.default_rng(7).choice(space, 300, replace=False)
    source = tmp_path / "used.txt"
    source.write_text("".join(f"{c}\n" for c in rcode.codes_to_strings(taken).to_pylist()))
    cli_ok(runner, "ledger", "import", source, "-l", shared.owner)
    office = shared.url(shared.roles[WARD_A])
    requests = tmp_path / "requests.csv"
    requests.write_text(
        "resident_id,id_document\n" + "".join(f"{i:09d},passport\n" for i in range(20)),
        encoding="utf-8",
    )
    with tiny_code_space_for_tests(tiny):
        cli_ok(runner, "assign", write_export(tmp_path / "e.csv", 40), "-l", office, "-o",
               tmp_path / "a.csv")  # fmt: skip
        result = json.loads(
            cli_ok(runner, "change", "--requests", requests, "-l", office, "--json")
        )
    assert result["changed"] == 20 and result["redraws"] > 0
    new = [c["new_code"] for c in result["changes"]]
    everything = shared.rows(shared.owner, "SELECT count(*), count(DISTINCT code) FROM rrnet.codes")
    assert everything == [(300 + 40 + 20, 300 + 40 + 20)], "every code once"
    used_before = set(rcode.codes_to_strings(taken).to_pylist()) | set(
        codes_of(tmp_path / "a.csv").values()
    )
    assert len(set(new)) == 20 and not set(new) & used_before
    active = shared.rows(
        shared.owner,
        "SELECT lpad(code::text, 11, '0') FROM rrnet.codes WHERE status = 'assigned' "
        "AND resident_id < '000000020'",
    )
    assert sorted(c for (c,) in active) == sorted(new), "the recorded codes are the ones reported"
    assert run_cli(runner, "verify", "-l", shared.owner)[0] == 0
