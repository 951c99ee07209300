"""A notice is issued once (issue: after the migration day): notify records what it
prints, a second run prints nothing, a reprint is an explicit and marked act, and
previews are marked 見本 / SAMPLE and recorded nowhere.

The register is a CP932, CRLF export with Japanese headers (as in
test_households); every check reads back what a user would see: the PDFs, the
command's output, and the ledger through `rrnet ledger notices`.
"""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from backends import LedgerBackend
from helpers import MUNICIPALITY, profile_for, rrnet, run_cli
from pypdf import PdfReader
from test_households import register_rows, write_cp932

from rrnet_cli import code as rcode
from rrnet_cli import notify as notify_module
from rrnet_cli.cli import app
from rrnet_cli.dates import format_date
from rrnet_cli.errors import RrnetError
from rrnet_cli.languages import load_notices
from rrnet_cli.ledger import Ledger
from rrnet_cli.notify import notify, today_in_japan
from rrnet_cli.profile import load_profile


@pytest.fixture
def assigned(runner, ledger: Ledger, tmp_path: Path) -> Path:
    export = write_cp932(tmp_path / "register.csv", register_rows())
    out = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", out)
    assert code == 0, output
    return out


@pytest.fixture
def profile(tmp_path: Path) -> Path:
    return profile_for(MUNICIPALITY, tmp_path)


def run_notify(runner, ledger, assigned, profile, sheets, *extra) -> tuple[int, str]:
    return run_cli(
        runner,
        *("notify", assigned, "-l", ledger.path, "--profile", profile, "-o", sheets),
        *("--workers", "1", *extra),
    )


def listed(runner, ledger, *extra) -> dict:
    code, output = run_cli(runner, "ledger", "notices", "-l", ledger.path, "--json", *extra)
    assert code == 0, output
    return json.loads(output)


def test_a_notice_is_issued_once(runner, ledger, assigned, profile, tmp_path: Path) -> None:
    sheets = tmp_path / "sheets"
    code, output = run_notify(runner, ledger, assigned, profile, sheets, "--json")
    assert code == 0, output
    result = json.loads(output)
    assert result["sheets"] == 16 and result["issue"] == "new" and result["batch"]
    # The ledger says which resident's code went out, in which batch, file and page.
    issued = listed(runner, ledger)["issued"]
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    assert sorted((n["resident_id"], n["file"], str(n["page"])) for n in issued) == sorted(
        manifest.select("resident_id", "file", "page").iter_rows()
    )
    assert {n["batch"] for n in issued} == {result["batch"]}
    assert {n["kind"] for n in issued} == {"new"} and {n["reprint_reason"] for n in issued} == {
        None
    }
    codes = pl.read_csv(assigned, infer_schema=False).select("resident_id", "resident_code")
    assert sorted((n["resident_id"], n["code"]) for n in issued) == sorted(codes.iter_rows())
    # A second run on the same file prints nothing, says why, and makes no folder.
    again = tmp_path / "again"
    code, output = run_notify(runner, ledger, assigned, profile, again)
    assert code == 0, output
    flat = " ".join(output.split())
    assert "Nothing to print" in flat and "already issued" in flat
    assert result["batch"] in flat and "--reprint" in flat
    assert not again.exists()
    assert len(listed(runner, ledger)["issued"]) == 16
    # verify checks the notice records with the rest of the ledger.
    code, output = run_cli(runner, "verify", assigned, "--ledger", ledger.path)
    assert code == 0, output
    assert Ledger.open(ledger.path).read_manifest()["version"] == 4


def test_a_sheet_set_aside_prints_later_without_the_others(
    runner, ledger, tmp_path: Path, profile: Path
) -> None:
    rows = register_rows()
    rows[13][2] = "KIM " + "SEOYEON " * 40
    export = write_cp932(tmp_path / "register.csv", rows)
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", assigned)
    assert code == 0, output
    first = tmp_path / "first"
    code, output = run_notify(
        runner, ledger, assigned, profile, first, "--rejects", tmp_path / "rejects.csv"
    )
    assert code == 0, output
    # The office shortens the name in the file and runs notify again: only that one prints.
    text = assigned.read_text(encoding="utf-8-sig").replace("KIM " + "SEOYEON " * 40, "KIM SEOYEON")
    assigned.write_text(text.replace("SEOYEON ,", "SEOYEON,"), encoding="utf-8-sig")
    second = tmp_path / "second"
    code, output = run_notify(runner, ledger, assigned, profile, second, "--json")
    assert code == 0, output
    result = json.loads(output)
    assert (result["sheets"], result["already_issued"]) == (1, 15)
    manifest = pl.read_csv(second / "manifest.csv", infer_schema=False)
    assert manifest["resident_id"].to_list() == ["200002"]


def test_a_reprint_is_marked_and_recorded(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "first")
    assert code == 0, output
    reprint = tmp_path / "reprint"
    code, output = run_notify(
        runner,
        ledger,
        assigned,
        profile,
        reprint,
        *("--reprint", "returned_mail", "--resident", "200003", "--json"),
    )
    assert code == 0, output
    result = json.loads(output)
    assert (result["sheets"], result["issue"]) == (1, "reprint")
    page = PdfReader(reprint / "sheets-0001.pdf").pages[0].extract_text()
    # 再交付, the word in the resident's language (pt), and today's date in Japan as the
    # profile writes dates (和暦).
    mark = f"再交付 ({load_notices()['pt'].labels['reissued']}) "
    assert mark + format_date(today_in_japan(), "wareki") in page
    assert "SILVA JOAO" in page
    issued = listed(runner, ledger)["issued"]
    assert len(issued) == 17
    reprints = [n for n in issued if n["reprint_reason"]]
    assert [(n["resident_id"], n["reprint_reason"]) for n in reprints] == [
        ("200003", "returned_mail")
    ]
    assert len(listed(runner, ledger, "--batch", result["batch"])["issued"]) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--reprint", "lost"), "--reprint needs the residents"),
        (("--reprint", "lost", "--resident", "999999"), "not in the file: 999999"),
        (("--resident", "200003"), "give --reprint REASON with it"),
        (("--reprint", "lost", "--resident", "200003", "--all"), "give one of them"),
        (("--reprint", "misplaced", "--resident", "200003"), "misplaced"),
    ],
)
def test_reprint_mistakes_are_refused_and_nothing_is_written(
    runner, ledger, assigned, profile, tmp_path: Path, extra, message
) -> None:
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "first")
    assert code == 0, output
    sheets = tmp_path / "sheets"
    code, output = run_notify(runner, ledger, assigned, profile, sheets, *extra)
    assert code == 2, output
    assert message in " ".join(output.split())
    assert "internal error" not in output
    assert not sheets.exists()
    assert len(listed(runner, ledger)["issued"]) == 16


def test_a_first_notice_is_not_a_reprint(runner, ledger, assigned, profile, tmp_path: Path) -> None:
    sheets = tmp_path / "sheets"
    code, output = run_notify(
        runner, ledger, assigned, profile, sheets, "--reprint", "lost", "--resident", "200003"
    )
    assert code == 2, output
    assert "that is a first notice, not a reprint" in " ".join(output.split())
    assert not sheets.exists()


def test_an_office_that_never_reissues_refuses_reprints(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "first")
    assert code == 0, output
    profile.write_text(
        profile.read_text(encoding="utf-8").replace("reprint = true", "reprint = false"),
        encoding="utf-8",
    )
    sheets = tmp_path / "sheets"
    code, output = run_notify(
        runner, ledger, assigned, profile, sheets, "--reprint", "lost", "--resident", "200003"
    )
    assert code == 2, output
    assert "この通知書は再発行できません" in output
    assert not sheets.exists()
    assert len(listed(runner, ledger)["issued"]) == 16


def test_samples_are_marked_and_recorded_nowhere(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "first")
    assert code == 0, output
    transactions = Ledger.open(ledger.path).snapshot().txn
    preview = tmp_path / "preview"
    code, output = run_notify(runner, ledger, assigned, profile, preview, "--all", "--json")
    assert code == 0, output
    assert json.loads(output)["batch"] is None
    reader = PdfReader(preview / "sheets-0001.pdf")
    assert len(reader.pages) == 16
    for page in reader.pages:
        assert "見本" in page.extract_text()
    assert Ledger.open(ledger.path).snapshot().txn == transactions  # nothing recorded
    assert len(listed(runner, ledger)["issued"]) == 16


def test_a_notice_issued_by_another_run_meanwhile_stops_this_one(
    ledger, assigned, tmp_path: Path, monkeypatch
) -> None:
    """Two runs print the same residents at once: only one may record its notices."""
    profile = load_profile(profile_for(MUNICIPALITY, tmp_path))
    real = notify_module._write_sheets
    other = tmp_path / "other"

    def write_then_race(*args, **kwargs):
        printed = real(*args, **kwargs)
        monkeypatch.setattr(notify_module, "_write_sheets", real)
        notify(assigned, other, profile=profile, ledger=Ledger.open(ledger.path), workers=1)
        return printed

    monkeypatch.setattr(notify_module, "_write_sheets", write_then_race)
    mine = tmp_path / "mine"
    with pytest.raises(RrnetError, match="issued by another rrnet notify run"):
        notify(assigned, mine, profile=profile, ledger=ledger, workers=1)
    assert not mine.exists()
    assert not list(tmp_path.glob(".mine.*"))
    notices = Ledger.open(ledger.path).snapshot().notices
    assert notices.height == 16 and notices["batch"].n_unique() == 1
    assert (other / "manifest.csv").exists()


def test_verify_finds_a_notice_of_a_code_its_resident_never_held(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "first")
    assert code == 0, output
    someone = rcode.strings_to_codes(
        [pl.read_csv(assigned, infer_schema=False)["resident_code"][0]]
    )
    with ledger.transaction() as txn:  # what a hand-made or buggy record would look like
        txn.add_notices(
            pl.DataFrame(
                {
                    "code": someone,
                    "resident_id": ["not-its-owner"],
                    "municipality": [MUNICIPALITY],
                    "kind": ["new"],
                    "reprint_reason": [None],
                    "batch": ["x"],
                    "file": [None],
                    "page": [None],
                },
                schema_overrides={"reprint_reason": pl.String, "file": pl.String, "page": pl.Int32},
            )
        )
    code, output = run_cli(runner, "verify", assigned, "--ledger", ledger.path)
    assert code == 1, output
    assert "notice records name a code the ledger never recorded for that resident" in " ".join(
        output.split()
    )


def test_ledger_notices_filters_and_writes_an_excel_safe_file(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "first")
    assert code == 0, output
    today = today_in_japan()
    assert len(listed(runner, ledger, "--since", today.isoformat())["issued"]) == 16
    tomorrow = date.fromordinal(today.toordinal() + 1).isoformat()
    assert listed(runner, ledger, "--since", tomorrow)["issued"] == []
    assert listed(runner, ledger, "--kind", "change")["issued"] == []
    out = tmp_path / "notices.csv"
    code, output = run_cli(runner, "ledger", "notices", "-l", ledger.path, "-o", out)
    assert code == 0, output
    frame = pl.read_csv(out, infer_schema=False, encoding="utf8-lossy")
    assert frame.height == 16
    assert frame["code"].str.len_chars().to_list() == [11] * 16  # leading zeros kept
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads the BOM as UTF-8


def test_a_change_notice_goes_out_once_with_both_codes(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "first")
    assert code == 0, output
    old = dict(
        pl.read_csv(assigned, infer_schema=False).select("resident_id", "resident_code").iter_rows()
    )["200001"]
    code, output = run_cli(
        runner,
        *("change", "--resident", "200001", "-l", ledger.path),
        *("--id-document", "residence_card", "-o", tmp_path / "changes.csv"),
    )
    assert code == 0, output
    new = pl.read_csv(tmp_path / "changes.csv", infer_schema=False)["new_code"][0]
    # The office's register export, with names and addresses (and no codes).
    export = tmp_path / "register.csv"
    notices = tmp_path / "change-notices"
    code, output = run_notify(runner, ledger, export, profile, notices, "--changes", "--json")
    assert code == 0, output
    assert json.loads(output)["sheets"] == 1
    text = PdfReader(notices / "sheets-0001.pdf").pages[0].extract_text()
    assert "住民票コード変更通知書" in text and "KIM MINJUN" in text
    # Both codes, in full (the extracted text spaces the 4-4-3 groups variously).
    assert new in squash_words(text) and old in squash_words(text)
    assert squash_words(load_notices()["ja"].change["old_invalid"]) in squash_words(text)
    changes = listed(runner, ledger, "--kind", "change")["issued"]
    assert [(n["resident_id"], n["code"]) for n in changes] == [("200001", new)]
    # Once only; and the first notices' file, now stale for 200001, prints nothing either.
    code, output = run_notify(runner, ledger, export, profile, tmp_path / "again", "--changes")
    assert code == 0 and "Nothing to print" in output, output
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "stale")
    assert code == 0 and "Nothing to print" in output, output


def test_a_code_changed_before_the_first_notices_holds_back_only_that_row(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    """The office changed a code on the migration day, before printing: the message
    says how to print everyone else, and that way works."""
    code, output = run_cli(
        runner,
        *("change", "--resident", "200001", "-l", ledger.path),
        *("--id-document", "residence_card"),
    )
    assert code == 0, output
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "refused")
    flat = squash_words(output)
    assert code != 0 and "the ledger says this code is retired" in " ".join(output.split())
    assert squash_words("take that resident's row out of the file") in flat
    assert not (tmp_path / "refused").exists()
    frame = pl.read_csv(assigned, infer_schema=False)
    others = tmp_path / "others.csv"
    frame.filter(pl.col("resident_id") != "200001").write_csv(others)
    code, output = run_notify(runner, ledger, others, profile, tmp_path / "first", "--json")
    assert code == 0, output
    expected = frame.filter(
        (pl.col("resident_id") != "200001") & pl.col("code_status").is_in(["assigned"])
    ).height
    assert json.loads(output)["sheets"] == expected
    code, output = run_notify(
        runner, ledger, tmp_path / "register.csv", profile, tmp_path / "change", "--changes"
    )
    assert code == 0, output


def test_a_change_notice_refuses_a_file_holding_someone_elses_code(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    code, output = run_cli(
        runner,
        *("change", "--resident", "200001", "-l", ledger.path),
        *("--by-office", "--reason", "notice went astray"),
    )
    assert code == 0, output
    frame = pl.read_csv(assigned, infer_schema=False)
    other = frame.filter(pl.col("resident_id") == "200002")["resident_code"][0]
    mixed = tmp_path / "mixed.csv"
    frame.with_columns(
        pl.when(pl.col("resident_id") == "200001")
        .then(pl.lit(other))
        .otherwise(pl.col("resident_code"))
        .alias("resident_code")
    ).write_csv(mixed)
    sheets = tmp_path / "sheets"
    code, output = run_notify(runner, ledger, mixed, profile, sheets, "--changes")
    assert code == 2, output
    assert "neither the resident's current code nor the one it replaced" in " ".join(output.split())
    assert not sheets.exists()


def squash_words(text: str) -> str:
    return "".join(text.split())


# -- a run killed while it records its notices: 0 or 1 batch, never lost sheets ----


def killed_notify(ledger, assigned, profile, sheets, failpoint: str):
    return rrnet(
        *("notify", assigned, "-l", ledger.path, "--profile", profile, "-o", sheets),
        "--workers",
        "1",
        env={"RRNET_FAILPOINT": failpoint},
    )


def test_killed_before_the_commit_nothing_is_issued_and_the_next_run_prints_all(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    sheets = tmp_path / "sheets"
    killed = killed_notify(ledger, assigned, profile, sheets, "before-manifest-write")
    assert killed.returncode == -signal.SIGKILL
    assert not sheets.exists()
    assert Ledger.open(ledger.path).snapshot().notices.height == 0
    # The half-written folder (sheets nobody issued, personal data) is removed by the
    # next run, which then prints everyone.
    code, output = run_notify(runner, ledger, assigned, profile, sheets, "--json")
    assert code == 0, output
    assert json.loads(output)["sheets"] == 16
    assert list(tmp_path.glob(".sheets.rrnet-*")) == []
    assert len(listed(runner, ledger)["issued"]) == 16


def test_killed_after_the_commit_the_next_run_hands_over_the_issued_sheets(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    sheets = tmp_path / "sheets"
    killed = killed_notify(ledger, assigned, profile, sheets, "after-manifest-replace")
    assert killed.returncode == -signal.SIGKILL
    assert not sheets.exists()
    issued = listed(runner, ledger)["issued"]
    assert len(issued) == 16  # the notices are issued: their sheets must not be lost
    code, output = run_notify(runner, ledger, assigned, profile, sheets)
    assert code == 0, output
    assert "its sheets are now in" in " ".join(output.split())
    manifest = pl.read_csv(sheets / "manifest.csv", infer_schema=False)
    assert sorted(manifest["resident_id"]) == sorted(n["resident_id"] for n in issued)
    assert len(PdfReader(sheets / "sheets-0001.pdf").pages) == 16
    assert not (sheets / ".rrnet-batch").exists()
    assert list(tmp_path.glob(".sheets.rrnet-*")) == []


def test_a_killed_runs_folder_is_found_whatever_the_next_run_is_called(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    killed = killed_notify(ledger, assigned, profile, tmp_path / "first", "before-manifest-write")
    assert killed.returncode == -signal.SIGKILL
    assert len(list(tmp_path.glob(".first.rrnet-*.part"))) == 1
    # Another name: the never-issued sheets of the killed run are removed all the same.
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "second")
    assert code == 0, output
    assert list(tmp_path.glob(".first.rrnet-*")) == []
    # Killed after its commit: its issued sheets wait under a hidden name, and a run
    # under another name gives them the folder the ledger records for them.
    code, output = run_cli(
        runner,
        *("change", "--resident", "200002", "-l", ledger.path, "--by-office", "--reason", "x"),
    )
    assert code == 0, output
    export = tmp_path / "register.csv"
    killed = rrnet(
        *("notify", export, "--changes", "-l", ledger.path, "--profile", profile),
        *("-o", tmp_path / "changes", "--workers", "1"),
        env={"RRNET_FAILPOINT": "after-manifest-replace"},
    )
    assert killed.returncode == -signal.SIGKILL
    (waiting,) = tmp_path.glob(".changes.rrnet-*.part")
    code, output = run_notify(runner, ledger, export, profile, tmp_path / "again", "--changes")
    assert code == 0, output
    flat = " ".join(output.split())
    changes = tmp_path / "changes"
    assert "Nothing to print" in flat and f"its sheets are now in {changes}" in flat
    assert not waiting.exists() and (changes / "manifest.csv").is_file()


# -- what a new user ran into ------------------------------------------------------


def test_a_resident_twice_in_the_file_prints_nothing_and_records_nothing(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    lines = assigned.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    doubled = tmp_path / "doubled.csv"
    doubled.write_text("".join([*lines, lines[3]]), encoding="utf-8-sig")  # a row pasted twice
    sheets = tmp_path / "sheets"
    code, output = run_notify(runner, ledger, doubled, profile, sheets)
    assert code == 2, output
    flat = " ".join(output.split())
    assert "row 4, resident_id: the same resident is in the file more than once" in flat
    assert "row 18, resident_id" in flat
    assert not sheets.exists()
    assert Ledger.open(ledger.path).snapshot().notices.height == 0
    code, output = run_cli(runner, "verify", assigned, "--ledger", ledger.path)
    assert code == 0, output


def test_a_row_without_a_name_or_an_address_is_refused(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    frame = pl.read_csv(assigned, infer_schema=False)
    emptied = tmp_path / "emptied.csv"
    frame.with_columns(
        pl.when(pl.col("resident_id") == "200003")
        .then(pl.lit(""))
        .otherwise(pl.col(column))
        .alias(column)
        for column in ("name", "address")
    ).write_csv(emptied)
    sheets = tmp_path / "sheets"
    code, output = run_notify(runner, ledger, emptied, profile, sheets, "--all")
    assert code == 2, output
    flat = " ".join(output.split())
    assert "row 16, name: is empty" in flat and "row 16, address: is empty" in flat
    assert not sheets.exists()


def test_a_code_changed_while_notify_prints_is_not_recorded_as_notified(
    runner, ledger, assigned, tmp_path: Path, monkeypatch
) -> None:
    profile = load_profile(profile_for(MUNICIPALITY, tmp_path))
    real = notify_module._write_sheets

    def write_then_change(*args, **kwargs):
        printed = real(*args, **kwargs)
        code, output = run_cli(
            runner,
            *("change", "--resident", "200001", "-l", ledger.path),
            *("--id-document", "passport"),
        )
        assert code == 0, output
        return printed

    monkeypatch.setattr(notify_module, "_write_sheets", write_then_change)
    sheets = tmp_path / "sheets"
    with pytest.raises(RrnetError, match="stopped being their residents' codes"):
        notify(assigned, sheets, profile=profile, ledger=ledger, workers=1)
    assert not sheets.exists()
    assert Ledger.open(ledger.path).snapshot().notices.height == 0


def test_a_reprint_reissues_only_the_kind_of_notice_the_resident_was_sent(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "first")
    assert code == 0, output
    code, output = run_cli(
        runner,
        *("change", "--resident", "200003", "-l", ledger.path, "--id-document", "passport"),
        *("-o", tmp_path / "changed.csv"),
    )
    assert code == 0, output
    export = tmp_path / "register.csv"
    code, output = run_notify(runner, ledger, export, profile, tmp_path / "changes", "--changes")
    assert code == 0, output
    # The assigned file, updated with the new code: its only notice is a change notice,
    # so a 通知票 for it was never issued and cannot be "reissued".
    new = pl.read_csv(tmp_path / "changed.csv", infer_schema=False)["new_code"][0]
    updated = tmp_path / "updated.csv"
    pl.read_csv(assigned, infer_schema=False).with_columns(
        pl.when(pl.col("resident_id") == "200003")
        .then(pl.lit(new))
        .otherwise(pl.col("resident_code"))
        .alias("resident_code")
    ).write_csv(updated)
    sheets = tmp_path / "reprint"
    code, output = run_notify(
        runner, ledger, updated, profile, sheets, "--reprint", "lost", "--resident", "200003"
    )
    assert code == 2, output
    assert "that is a first notice, not a reprint" in " ".join(output.split())
    assert not sheets.exists()
    # Its change notice is what can be reissued.
    code, output = run_notify(
        runner,
        *(ledger, export, profile, tmp_path / "change-reprint"),
        *("--changes", "--reprint", "lost", "--resident", "200003"),
    )
    assert code == 0, output
    text = PdfReader(tmp_path / "change-reprint" / "sheets-0001.pdf").pages[0].extract_text()
    assert "住民票コード変更通知書" in text and "再交付" in text


def test_a_run_whose_every_sheet_is_set_aside_makes_no_folder(
    runner, ledger, tmp_path: Path, profile: Path
) -> None:
    rows = register_rows()[:1]
    rows[0][2] = "NGUYEN " + "VAN " * 60
    export = write_cp932(tmp_path / "register.csv", rows)
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", assigned)
    assert code == 0, output
    sheets = tmp_path / "sheets"
    rejects = tmp_path / "rejects.csv"
    code, output = run_notify(runner, ledger, assigned, profile, sheets, "--rejects", rejects)
    assert code == 0, output
    assert "every sheet was set aside" in " ".join(output.split())
    assert not sheets.exists() and list(tmp_path.glob(".sheets.*")) == []
    assert pl.read_csv(rejects, infer_schema=False)["resident_id"].to_list() == ["100001"]


def test_ledger_notices_writes_an_excel_workbook_with_whole_codes(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    code, output = run_notify(runner, ledger, assigned, profile, tmp_path / "first")
    assert code == 0, output
    workbook = tmp_path / "notices.xlsx"
    code, output = run_cli(runner, "ledger", "notices", "-l", ledger.path, "-o", workbook)
    assert code == 0, output
    frame = pl.read_excel(workbook, infer_schema_length=0)
    assert frame.height == 16
    assert frame["code"].str.len_chars().to_list() == [11] * 16
    assert frame["resident_id"].str.len_chars().to_list() == [6] * 16


def test_a_misspelt_profile_key_is_refused_not_ignored(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    profile.write_text(
        profile.read_text(encoding="utf-8").replace("reprint = true", "reprnt = false"),
        encoding="utf-8",
    )
    sheets = tmp_path / "sheets"
    code, output = run_notify(runner, ledger, assigned, profile, sheets)
    assert code == 2, output
    assert "unknown key(s) in [sheet]: reprnt" in " ".join(output.split())
    assert not sheets.exists()


def test_change_notices_read_an_export_with_the_offices_own_headers(
    runner, ledger, assigned, profile, tmp_path: Path
) -> None:
    code, output = run_cli(
        runner,
        *("change", "--resident", "300001", "-l", ledger.path, "--id-document", "passport"),
    )
    assert code == 0, output
    rows = register_rows()
    export = tmp_path / "own-headers.csv"
    write_cp932(export, rows)
    text = export.read_bytes().decode("cp932").replace("宛名番号", "宛名コード", 1)
    export.write_bytes(text.encode("cp932"))
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[columns]\n"宛名コード" = "resident_id"\n', encoding="utf-8")
    sheets = tmp_path / "sheets"
    code, output = run_notify(runner, ledger, export, profile, sheets, "--changes")
    assert code == 2 and "--mapping" in output, output
    code, output = run_notify(
        runner, ledger, export, profile, sheets, "--changes", "--mapping", mapping, "--json"
    )
    assert code == 0, output
    assert json.loads(output)["sheets"] == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--notice-date", "2019-05-01"), "a notice cannot be dated before its code"),
        (("--recorded-on", "2099-01-01"), "cannot have been recorded in the future"),
    ],
)
def test_dates_a_sheet_must_not_carry_are_refused(
    runner, ledger, assigned, profile, tmp_path: Path, extra, message
) -> None:
    sheets = tmp_path / "sheets"
    code, output = run_notify(runner, ledger, assigned, profile, sheets, *extra)
    assert code == 2, output
    assert message in " ".join(output.split())
    assert not sheets.exists()


def change_code(runner, location: str, resident: str, *extra: str) -> dict:
    code, output = run_cli(
        runner,
        *("change", "--resident", resident, "-l", location, "--id-document", "passport"),
        *extra,
    )
    assert code == 0, output
    return json.loads(output) if "--json" in extra else {"output": output}


def notify_at(runner, location: str, register: Path, profile, sheets, *extra: str) -> None:
    code, output = run_cli(
        runner,
        *("notify", register, "-l", location, "--profile", profile, "-o", sheets),
        *("--workers", "1", *extra),
    )
    assert code == 0, output


def change_notice_text(runner, location, export, profile, sheets) -> str:
    notify_at(runner, location, export, profile, sheets, "--changes")
    (page,) = PdfReader(sheets / "sheets-0001.pdf").pages
    return squash_words(page.extract_text())


def test_a_code_changed_twice_gives_the_code_the_resident_was_told_of(
    runner, backend, profile, tmp_path: Path
) -> None:
    export = write_cp932(tmp_path / "register.csv", register_rows())
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", backend.location, "-o", assigned)
    assert code == 0, output
    first = dict(
        pl.read_csv(assigned, infer_schema=False).select("resident_id", "resident_code").iter_rows()
    )["200001"]
    notify_at(runner, backend.location, assigned, profile, tmp_path / "first")
    once = change_code(runner, backend.location, "200001", "--json")
    assert once["warnings"] == []
    between = once["changes"][0]["new_code"]
    # Changed again before the first change's notice was printed: the office is warned.
    twice = change_code(runner, backend.location, "200001")["output"]
    assert "warning: resident 200001 was changed again before the notice of their previous" in (
        " ".join(twice.split())
    )
    assert rcode.format(between) in " ".join(twice.split())
    latest = change_code(runner, backend.location, "200001", "--json")
    assert len(latest["warnings"]) == 1 and "200001" in latest["warnings"][0]
    last = latest["changes"][0]["new_code"]
    text = change_notice_text(runner, backend.location, export, profile, tmp_path / "changes")
    # The old code is the one on the resident's first notice; the two codes in between
    # were never sent to them.
    assert first in text and last in text
    assert between not in text
    assert latest["changes"][0]["old_code"] not in text


def test_a_change_notice_after_an_earlier_one_gives_the_code_that_notice_announced(
    runner, backend, profile, tmp_path: Path
) -> None:
    export = write_cp932(tmp_path / "register.csv", register_rows())
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", backend.location, "-o", assigned)
    assert code == 0, output
    notify_at(runner, backend.location, assigned, profile, tmp_path / "first")
    first = dict(
        pl.read_csv(assigned, infer_schema=False).select("resident_id", "resident_code").iter_rows()
    )["200001"]
    between = change_code(runner, backend.location, "200001", "--json")["changes"][0]["new_code"]
    text = change_notice_text(runner, backend.location, export, profile, tmp_path / "change-1")
    assert first in text and between in text
    # Its notice is out: a second change is nothing to warn about.
    again = change_code(runner, backend.location, "200001", "--json")
    assert again["warnings"] == []
    last = again["changes"][0]["new_code"]
    text = change_notice_text(runner, backend.location, export, profile, tmp_path / "change-2")
    assert between in text and last in text
    assert first not in text


@pytest.mark.parametrize("columns", ["80", "120"])
def test_the_notices_table_shows_whole_batch_ids_operator_and_folder(
    runner, ledger, assigned, profile, tmp_path: Path, columns: str
) -> None:
    """On an office terminal (80 or 120 columns) the batch id is printed whole, on one
    line, so that it can be typed back into --batch; and the listing says who printed
    the notices and into which folder."""
    sheets = tmp_path / "notices-of-december"
    code, output = run_notify(runner, ledger, assigned, profile, sheets, "--operator", "tanaka")
    assert code == 0, output
    batch = listed(runner, ledger)["issued"][0]["batch"]
    shown = runner.invoke(
        app, ["ledger", "notices", "-l", str(ledger.path)], env={"COLUMNS": columns}
    )
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert max(len(line) for line in lines) <= int(columns)
    assert any(batch in line for line in lines), shown.output
    assert "by tanaka" in shown.output
    # The folder may fold over lines; every character of it is there.
    squashed = "".join(line.strip() for line in lines)
    assert "into" in shown.output and str(sheets) in squashed, shown.output
    for resident in ("100001", "300001"):
        assert resident in shown.output
    # The listing's JSON (and -o files) carry the operator and folder too.
    first = listed(runner, ledger)["issued"][0]
    assert (first["operator"], first["folder"]) == ("tanaka", str(sheets))


def test_a_batch_is_found_by_the_beginning_of_its_id(
    runner, backend, profile, tmp_path: Path
) -> None:
    """--batch takes a batch id's beginning (2026, as a person types it) when that names
    one batch; one that names several is refused with them, and one that names none
    says what batch ids look like, instead of listing nothing."""
    export = write_cp932(tmp_path / "register.csv", register_rows())
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", backend.location, "-o", assigned)
    assert code == 0, output

    def notices(*extra: str) -> tuple[int, str]:
        return run_cli(runner, "ledger", "notices", "-l", backend.location, *extra)

    code, output = notices("--batch", "2026")
    assert code == 2 and "No batch 2026: the ledger has recorded no notices yet" in output
    notify_at(runner, backend.location, assigned, profile, tmp_path / "first")
    code, output = notices("--json")
    (first,) = {n["batch"] for n in json.loads(output)["issued"]}
    year = first[:4]
    code, output = notices("--batch", year, "--json")
    assert code == 0, output
    assert len(json.loads(output)["issued"]) == 16

    notify_at(
        runner,
        *(backend.location, assigned, profile, tmp_path / "reprint"),
        *("--reprint", "returned_mail", "--resident", "200003"),
    )
    code, output = notices("--json")
    (second,) = {n["batch"] for n in json.loads(output)["issued"]} - {first}
    code, output = notices("--batch", year)
    flat = " ".join(output.split())
    assert code == 2, output
    assert f"--batch {year} begins 2 batches: {', '.join(sorted([first, second]))}" in flat
    assert "Give more of the batch id" in flat
    for batch, count in ((first, 16), (second, 1)):
        code, output = notices("--batch", batch[:-1], "--json")
        assert code == 0, output
        assert {n["batch"] for n in json.loads(output)["issued"]} == {batch}
        assert len(json.loads(output)["issued"]) == count
    code, output = notices("--batch", "1999")
    assert code == 2, output
    latest = max(first, second)
    assert f"No batch 1999 in the ledger; batch ids look like {latest}" in " ".join(output.split())


# -- notices recorded whose sheets were never handed over: found from any -o ------


def test_a_killed_runs_issued_sheets_are_found_from_another_folder(
    runner, backend: LedgerBackend, tmp_path: Path
) -> None:
    """Killed after its commit, before it named its folder: a run with another -o in
    another folder, started from another directory, finds the batch through the ledger,
    hands its sheets over in the folder the ledger records, or says plainly where they
    are and exits 1 while it cannot."""
    export = write_cp932(tmp_path / "register.csv", register_rows())
    assigned = tmp_path / "assigned.csv"
    code, output = run_cli(runner, "assign", export, "-l", backend.location, "-o", assigned)
    assert code == 0, output
    profile = profile_for(MUNICIPALITY, tmp_path)
    (tmp_path / "day1").mkdir()
    killed = rrnet(
        *("notify", assigned, "-l", backend.location, "--profile", profile),
        *("-o", Path("out1") / "sheets", "--workers", "1"),
        env={"RRNET_FAILPOINT": "notify-after-commit"},
        cwd=tmp_path / "day1",
    )
    assert killed.returncode == -signal.SIGKILL
    backend.settle()
    meant = tmp_path / "day1" / "out1" / "sheets"
    (hidden,) = meant.parent.glob(".sheets.rrnet-*.part")
    code, output = run_cli(runner, "ledger", "notices", "-l", backend.location, "--json")
    issued = json.loads(output)["issued"]
    assert len(issued) == 16 and {n["folder"] for n in issued} == {str(meant)}

    def again(name: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "day2").mkdir(exist_ok=True)
        return rrnet(
            *("notify", assigned, "-l", backend.location, "--profile", profile),
            *("-o", tmp_path / name / "sheets", "--workers", "1"),
            cwd=tmp_path / "day2",
        )

    # Someone made the recorded folder meanwhile: the sheets cannot go there. Nothing
    # new to print, but the run says which batch, how many residents and where the
    # sheets are, and does not end as a success.
    meant.mkdir()
    (meant / "other.txt").write_text("other files", encoding="utf-8")
    run = again("out2")
    assert run.returncode == 1, run.stdout + run.stderr
    flat = " ".join((run.stdout + run.stderr).split())
    assert "Nothing to print" in flat
    assert f"the notices of batch {issued[0]['batch']} (16 resident(s)) are recorded" in flat
    assert f"The sheets are in {hidden}" in flat and str(meant) in flat
    assert hidden.is_dir() and not (tmp_path / "out2").exists()
    # The folder made free, the next run (another -o again) hands the sheets over.
    (meant / "other.txt").unlink()
    run = again("out3")
    assert run.returncode == 0, run.stdout + run.stderr
    flat = " ".join(run.stdout.split())
    assert f"(batch {issued[0]['batch']}, 16 resident(s))" in flat
    assert f"its sheets are now in {meant}" in flat and "Nothing to print" in flat
    manifest = pl.read_csv(meant / "manifest.csv", infer_schema=False)
    assert sorted(manifest["resident_id"]) == sorted(n["resident_id"] for n in issued)
    assert len(PdfReader(meant / "sheets-0001.pdf").pages) == 16
    assert not (meant / ".rrnet-batch").exists() and not hidden.exists()
    run = again("out4")
    assert run.returncode == 0 and "its sheets are now" not in run.stdout, run.stdout
