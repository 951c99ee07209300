"""Every resident gets their notice: notify asks the ledger, not the file's code_status.

Three ways an office ends up with a register whose rows all say
``already_assigned`` although nobody was sent a notice, each reproduced as a
user meets it (CP932, CRLF register with Japanese headers, on both ledger
backends): assign run twice over the same -o; an assign killed after its
commit, before its output was written; a migration in three runs (rejects,
fixes, final). In each, notify on the final file prints a first notice for
every resident whose code this ledger drew and who has none yet, never for a
carried-over code or one brought by a code change, and a second notify prints
nothing. ``ledger stats`` and ``verify --ledger`` say how many such codes there
are (and list them with --json) without failing.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
from backends import LedgerBackend
from helpers import MUNICIPALITY, assign_in_subprocess, profile_for, run_cli
from pypdf import PdfReader
from test_households import HEADERS, register_rows

from rrnet_cli import code as rcode

#: Two residents who arrive from another municipality with their code (carried over).
CARRIED = {
    "400001": rcode.codes_to_strings(rcode.codes_from_bodies(np.array([3141592653]))).to_pylist()[
        0
    ],
    "400002": rcode.codes_to_strings(rcode.codes_from_bodies(np.array([2718281828]))).to_pylist()[
        0
    ],
}
#: The residents of register_rows(), who each get a new code.
DRAWN = [row[0] for row in register_rows()]


def register(path: Path, *, extra: int = 0, broken: tuple[str, ...] = ()) -> Path:
    """The office's export: CP932, CRLF, Japanese headers and a 住民票コード column.

    register_rows()' 16 residents (no code), the two carried-over ones, and
    ``extra`` residents 500001...; the ``broken`` residents have no sex (a row
    assign sets aside with --rejects).
    """
    rows = [[*row, ""] for row in register_rows()]
    for resident, code in CARRIED.items():
        rows.append([resident, "", f"PERSON {resident}", "", "1990-01-01", "男", "韓国",
                     "4870801", "愛知県さくら市本町1-1", "ko", code])  # fmt: skip
    for n in range(1, extra + 1):
        rows.append([f"50000{n}", "", f"NEW PERSON {n}", "", "2001-02-03", "女", "ベトナム",
                     "4870802", "愛知県さくら市本町2-2", "vi", ""])  # fmt: skip
    for row in rows:
        if row[0] in broken:
            row[5] = ""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, lineterminator="\r\n").writerows([[*HEADERS, "住民票コード"], *rows])
    path.write_bytes(buffer.getvalue().encode("cp932"))
    return path


def assign(runner, backend: LedgerBackend, export: Path, output: Path, *extra) -> dict:
    """``rrnet assign`` through the CLI; its JSON result."""
    code, out = run_cli(
        runner, "assign", export, "-l", backend.location, "-o", output, "--json", *extra
    )
    assert code == 0, out
    return json.loads(out)


def overwrite_option(runner) -> list[str]:
    """What assign needs to write over an existing -o (it may refuse without it)."""
    _, out = run_cli(runner, "assign", "--help")
    return ["--overwrite"] if "--overwrite" in out else []


def statuses(path: Path) -> dict[str, str]:
    frame = pl.read_csv(path, infer_schema=False, encoding="utf8-lossy")
    return dict(frame.select("resident_id", "code_status").iter_rows())


def stats(runner, backend: LedgerBackend) -> dict:
    code, out = run_cli(runner, "ledger", "stats", "-l", backend.location, "--json")
    assert code == 0, out
    return json.loads(out)["first_notice_due"]


def notify(runner, backend: LedgerBackend, assigned: Path, sheets: Path, *extra) -> tuple[int, str]:
    profile = profile_for(MUNICIPALITY, sheets.parent)
    return run_cli(
        runner,
        *("notify", assigned, "-l", backend.location, "--profile", profile, "-o", sheets),
        *("--workers", "1", *extra),
    )


def check_every_drawn_code_is_notified(
    runner, backend: LedgerBackend, final: Path, tmp_path: Path, expected: list[str]
) -> None:
    """Before: stats and verify report the residents due a first notice (verify exit 0).
    notify on ``final`` prints exactly them; a second notify prints nothing."""
    due = stats(runner, backend)
    assert due["count"] == len(expected)
    assert sorted(c["resident_id"] for c in due["codes"]) == sorted(expected)
    assert not {c["resident_id"] for c in due["codes"]} & set(CARRIED)
    codes = dict(
        pl.read_csv(final, infer_schema=False, encoding="utf8-lossy")
        .select("resident_id", "resident_code")
        .iter_rows()
    )
    assert all(codes[c["resident_id"]] == c["code"] for c in due["codes"])
    code, out = run_cli(runner, "verify", "--ledger", backend.location)
    assert code == 0, out
    assert f"{len(expected)} code(s) drawn here have no first notice yet" in " ".join(out.split())
    code, out = run_cli(runner, "verify", "--ledger", backend.location, "--json")
    assert code == 0, out
    listed = json.loads(out)["first_notice_due"]
    assert sorted(c["resident_id"] for c in listed) == sorted(expected)

    sheets = tmp_path / "sheets"
    code, out = notify(runner, backend, final, sheets, "--json")
    assert code == 0, out
    assert json.loads(out)["sheets"] == len(expected)
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    assert sorted(manifest["resident_id"].to_list()) == sorted(expected)

    again = tmp_path / "again"
    code, out = notify(runner, backend, final, again)
    assert code == 0, out
    assert "Nothing to print" in out and not again.exists()
    assert stats(runner, backend) == {"count": 0, "codes": []}
    code, out = run_cli(runner, "verify", "--ledger", backend.location)
    assert code == 0 and "have no first notice yet" not in " ".join(out.split()), out


def test_assign_twice_over_the_same_output(runner, backend: LedgerBackend, tmp_path: Path) -> None:
    export = register(tmp_path / "register.csv")
    out = tmp_path / "assigned.csv"
    assert assign(runner, backend, export, out)["newly_assigned"] == len(DRAWN)
    # The same command again (a double click, a re-run "to be sure"): the first
    # output is gone, and every row of the new one says already_assigned.
    second = assign(runner, backend, export, out, *overwrite_option(runner))
    assert second["newly_assigned"] == 0
    assert set(statuses(out).values()) == {"already_assigned"}
    check_every_drawn_code_is_notified(runner, backend, out, tmp_path, DRAWN)


def test_an_output_lost_after_the_commit(runner, backend: LedgerBackend, tmp_path: Path) -> None:
    export = register(tmp_path / "register.csv")
    out = tmp_path / "assigned.csv"
    # Killed right after the commit, before the output took its name.
    point = "after-manifest-replace" if backend.kind == "folder" else "pg-after-commit"
    killed = assign_in_subprocess(export, backend.location, out, env={"RRNET_FAILPOINT": point})
    assert killed.returncode != 0 and not out.exists()
    backend.settle()
    rerun = assign(runner, backend, export, out)
    assert rerun["newly_assigned"] == 0
    assert rerun["already_assigned"] == len(DRAWN) + len(CARRIED)
    check_every_drawn_code_is_notified(runner, backend, out, tmp_path, DRAWN)


def test_a_migration_in_three_runs(runner, backend: LedgerBackend, tmp_path: Path) -> None:
    broken = ("100003", "200002", "300001")
    first = assign(
        runner,
        backend,
        register(tmp_path / "export1.csv", broken=broken),
        tmp_path / "run1.csv",
        *("--rejects", tmp_path / "rejects.csv"),
    )
    assert first["rows_rejected"] == len(broken)
    # The office fixes the rejected rows and assigns them alone...
    fixed = register(tmp_path / "fixed.csv")
    rows = pl.read_csv(fixed, encoding="cp932", infer_schema=False)
    rows.filter(pl.col("宛名番号").is_in(broken)).write_csv(tmp_path / "fixes.csv")
    assert assign(runner, backend, tmp_path / "fixes.csv", tmp_path / "run2.csv")[
        "newly_assigned"
    ] == len(broken)
    # ... changes one resident's code on request before anything is printed ...
    code, out = run_cli(
        runner,
        *("change", "--resident", "100005", "-l", backend.location),
        *("--id-document", "residence_card"),
    )
    assert code == 0, out
    # ... and runs the whole register once more, with two residents who arrived since.
    final = tmp_path / "final.csv"
    last = assign(runner, backend, register(tmp_path / "export3.csv", extra=2), final)
    assert last["newly_assigned"] == 2
    assert statuses(final)["100001"] == "already_assigned"
    # Everyone drawn here, but the changed code (a change notice) and the carried-over ones.
    expected = [r for r in DRAWN if r != "100005"] + ["500001", "500002"]
    check_every_drawn_code_is_notified(runner, backend, final, tmp_path, expected)
    # The changed code is served by the change notice.
    code, out = notify(runner, backend, final, tmp_path / "changes", "--changes", "--json")
    assert code == 0, out
    assert json.loads(out)["sheets"] == 1


def test_rejects_sets_aside_a_row_whose_code_changed(
    runner, backend: LedgerBackend, tmp_path: Path
) -> None:
    """A code changed (rrnet change) after the file was written: without --rejects the
    batch is refused, naming the row; with it, that row is set aside with its reason
    and everyone else's notice prints."""
    out = tmp_path / "assigned.csv"
    assign(runner, backend, register(tmp_path / "register.csv"), out)
    code, output = run_cli(
        runner,
        *("change", "--resident", "200001", "-l", backend.location),
        *("--id-document", "residence_card"),
    )
    assert code == 0, output
    refused = tmp_path / "refused"
    code, output = notify(runner, backend, out, refused)
    assert code == 2 and "the ledger says this code is retired" in " ".join(output.split())
    assert "--rejects" in output and not refused.exists()

    sheets, rejects = tmp_path / "sheets", tmp_path / "rejects.csv"
    code, output = notify(runner, backend, out, sheets, "--rejects", rejects, "--json")
    assert code == 0, output
    result = json.loads(output)
    assert (result["sheets"], result["rejected"]) == (len(DRAWN) - 1, 1)
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    assert sorted(manifest["resident_id"]) == sorted(r for r in DRAWN if r != "200001")
    aside = pl.read_csv(rejects, infer_schema=False, encoding="utf8-lossy")
    assert aside.select("resident_id", "field").rows() == [("200001", "resident_code")]
    assert "changed" in aside["reason"][0] and "--changes" in aside["reason"][0]
    # That resident is served by the change notice, and nobody is due a first notice.
    code, output = notify(runner, backend, out, tmp_path / "changes", "--changes", "--json")
    assert code == 0 and json.loads(output)["sheets"] == 1, output
    assert stats(runner, backend)["count"] == 0


def test_the_register_export_given_instead_of_the_assigned_file(
    runner, backend: LedgerBackend, tmp_path: Path
) -> None:
    """A new user gives notify the export rrnet assign read, not the file it wrote: no
    code for the new residents (the carried-over ones arrive with theirs). The ledger
    holds each resident's code: the sheets carry the ledger's code, and the file's
    name and address. An export of other residents is refused, saying how many codes
    wait for their first notice, instead of "nothing to print"."""
    export = register(tmp_path / "register.csv")
    assigned = tmp_path / "assigned.csv"
    assign(runner, backend, export, assigned)
    drawn = dict(
        pl.read_csv(assigned, infer_schema=False, encoding="utf8-lossy")
        .filter(pl.col("resident_id").is_in(DRAWN))
        .select("resident_id", "resident_code")
        .iter_rows()
    )
    # Another export (no 住民票コード column at all) holding none of the new residents.
    lines = export.read_bytes().decode("cp932").split("\r\n")
    cells = [line.split(",") for line in lines if line]
    others = [",".join(row[:-1]) for row in cells if row[0] in ("宛名番号", *CARRIED)]
    other = tmp_path / "other.csv"
    other.write_bytes(("\r\n".join(others) + "\r\n").encode("cp932"))
    code, out = notify(runner, backend, other, tmp_path / "none")
    assert code == 2, out
    flat = " ".join(out.split())
    assert "looks like the register export, not the output of rrnet assign" in flat
    assert f"while {len(DRAWN)} code(s) drawn here still have no first notice" in flat
    assert not (tmp_path / "none").exists()

    sheets = tmp_path / "sheets"
    code, out = notify(runner, backend, export, sheets, "--json")
    assert code == 0, out
    result = json.loads(out)
    assert result["sheets"] == len(DRAWN) and result["codes_from_ledger"] == len(DRAWN)
    code, out = run_cli(runner, "ledger", "notices", "-l", backend.location, "--json")
    assert code == 0, out
    issued = json.loads(out)["issued"]
    assert {n["resident_id"]: n["code"] for n in issued} == drawn
    # Each sheet prints its resident's code as the ledger holds it.
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    for resident, file, page in manifest.select("resident_id", "file", "page").iter_rows():
        text = "".join(PdfReader(sheets / file).pages[int(page) - 1].extract_text().split())
        assert drawn[resident] in text, resident
    assert stats(runner, backend) == {"count": 0, "codes": []}
