"""verify(): every violation is found and located (file, row, check)."""

from __future__ import annotations

from pathlib import Path

import pytest
from backends import LedgerBackend

from rrnet_cli.assign import assign_register
from rrnet_cli.cli import app
from rrnet_cli.errors import UsageError
from rrnet_cli.importer import import_codes
from rrnet_cli.ledger import Ledger, LedgerStore
from rrnet_cli.verify import Violation, verify

# Valid codes from the published check-digit test vectors (independent of the code under test).
A, B, C, D = "12345678903", "58026173947", "70935378190", "00000000060"


def found(violations: list[Violation]) -> set[tuple[str, int | None, str]]:
    """(file name, row, check) of each violation."""
    return {(Path(v.file).name, v.row, v.check) for v in violations}


def record_in_ledger(ledger: LedgerStore, tmp_path: Path, resident, write_register, codes) -> None:
    """Record ``{resident_id: code}`` in the ledger the way a user does: assign an
    export whose residents arrive with those codes (carried over)."""
    export = write_register(
        [resident(rid, resident_code=code) for rid, code in codes.items()], name="arrivals.csv"
    )
    assign_register(export, ledger=ledger, output=tmp_path / "arrivals-assigned.csv", seed=1)


def assign_sample(ledger: LedgerStore, tmp_path: Path, resident, write_register) -> Path:
    """A real assigned register: two new codes, one carried over, one move-out."""
    export = write_register(
        [
            resident("000001"),
            resident("000002"),
            resident("000003", resident_code=B),
            resident("000004", planned_move_out_date="2030-03-31"),
        ]
    )
    output = tmp_path / "assigned.csv"
    assign_register(export, ledger=ledger, output=output, seed=42)
    return output


@pytest.fixture
def assigned(tmp_path: Path, ledger: Ledger, resident, write_register) -> Path:
    """``assign_sample`` on the folder ledger of the ``ledger`` fixture."""
    return assign_sample(ledger, tmp_path, resident, write_register)


@pytest.fixture
def store(backend: LedgerBackend) -> LedgerStore:
    """The ``backend`` fixture's ledger, opened: a folder, or a PostgreSQL database."""
    return backend.store()


@pytest.fixture
def assigned_on_backend(tmp_path: Path, store: LedgerStore, resident, write_register) -> Path:
    """``assign_sample`` on the ledger of the ``backend`` fixture (each backend)."""
    return assign_sample(store, tmp_path, resident, write_register)


# -- files alone -------------------------------------------------------------


def test_clean_assigned_file_verifies_ok(write_register) -> None:
    path = write_register(
        [
            {"resident_id": "1", "resident_code": A, "code_status": "assigned"},
            {"resident_id": "2", "resident_code": B, "code_status": "carried_over"},
            {"resident_id": "3", "resident_code": "", "code_status": "excluded"},
            {"resident_id": "4", "resident_code": D, "code_status": "already_assigned"},
        ]
    )
    result = verify([path])
    assert result.ok, result.violations
    assert (result.rows, result.codes) == (4, 3)


def test_real_assign_output_verifies_ok_against_its_ledger(
    assigned_on_backend: Path, store: LedgerStore
) -> None:
    result = verify([assigned_on_backend], ledger=store)
    assert result.ok, result.violations
    assert result.codes == 3


@pytest.mark.parametrize(
    "bad_code",
    [
        pytest.param("12345678904", id="bad-check-digit"),
        pytest.param("1234567890", id="too-short"),
        pytest.param("123456789031", id="too-long"),
    ],
)
def test_malformed_code_is_reported_with_file_row_and_check(write_register, bad_code) -> None:
    path = write_register(
        [
            {"resident_id": "1", "resident_code": A, "code_status": "assigned"},
            {"resident_id": "2", "resident_code": bad_code, "code_status": "assigned"},
        ]
    )
    result = verify([path])
    assert not result.ok
    assert found(result.violations) == {("register.csv", 3, "format")}


def test_check_digit_and_length_get_their_own_reasons(write_register) -> None:
    path = write_register(
        [
            {"resident_id": "1", "resident_code": "12345678904"},
            {"resident_id": "2", "resident_code": "1234567890"},
        ]
    )
    by_row = {v.row: v.message for v in verify([path]).violations}
    assert "check digit" in by_row[2]
    assert "11" in by_row[3] and "check digit" not in by_row[3]


def test_code_on_two_residents_in_one_file(write_register) -> None:
    path = write_register(
        [
            {"resident_id": "1", "resident_code": A},
            {"resident_id": "2", "resident_code": B},
            {"resident_id": "3", "resident_code": A},
        ]
    )
    result = verify([path])
    assert found(result.violations) == {
        ("register.csv", 2, "duplicate"),
        ("register.csv", 4, "duplicate"),
    }
    # Each side points at the other, so staff can find the pair.
    messages = {v.row: v.message for v in result.violations}
    assert "row 4" in messages[2] and "row 2" in messages[4]


def test_the_same_file_given_twice_is_refused(
    write_register, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    path = write_register(
        [
            {"resident_id": "1", "resident_code": A, "code_status": "assigned"},
            {"resident_id": "2", "resident_code": B, "code_status": "assigned"},
        ]
    )
    (tmp_path / "link.csv").symlink_to(path)
    monkeypatch.chdir(path.parent)
    runner = CliRunner(env={"COLUMNS": "200"})
    for first, second, message in [
        (path.name, path.name, f"{path.name} was given twice"),
        (f"./{path.name}", str(path), f"{path.name} and {path} are the same file, given twice"),
        (path.name, str(tmp_path / "link.csv"), f"{path.name} and {tmp_path / 'link.csv'} are"),
    ]:
        result = runner.invoke(app, ["verify", first, second])
        flat = " ".join(result.output.split())
        assert result.exit_code == 2, flat
        assert message in flat and "Give each assigned register once" in flat
        assert "[duplicate]" not in flat
    # Two files with the same contents are two files (a copy kept aside): verified.
    copy = tmp_path / "copy.csv"
    copy.write_bytes(path.read_bytes())
    assert runner.invoke(app, ["verify", path.name, str(copy)]).exit_code == 0


def test_code_on_two_residents_across_files(write_register) -> None:
    first = write_register([{"resident_id": "1", "resident_code": A}], name="ward-a.csv")
    second = write_register(
        [{"resident_id": "9", "resident_code": C}, {"resident_id": "2", "resident_code": A}],
        name="ward-b.csv",
    )
    result = verify([first, second])
    assert found(result.violations) == {
        ("ward-a.csv", 2, "duplicate"),
        ("ward-b.csv", 3, "duplicate"),
    }


def test_same_resident_same_code_in_two_files_is_not_a_duplicate(write_register) -> None:
    # Yesterday's and today's output of the same register share every code.
    first = write_register([{"resident_id": "1", "resident_code": A}], name="day1.csv")
    second = write_register([{"resident_id": "1", "resident_code": A}], name="day2.csv")
    assert verify([first, second]).ok


def test_one_resident_with_two_codes_across_files(write_register) -> None:
    first = write_register([{"resident_id": "7", "resident_code": A}], name="ward-a.csv")
    second = write_register([{"resident_id": "7", "resident_code": B}], name="ward-b.csv")
    result = verify([first, second])
    assert found(result.violations) == {
        ("ward-a.csv", 2, "one-code-per-resident"),
        ("ward-b.csv", 2, "one-code-per-resident"),
    }


@pytest.mark.parametrize(
    ("code", "status", "check"),
    [
        pytest.param(A, "excluded", "excluded", id="excluded-row-with-code"),
        pytest.param("", "assigned", "missing", id="assigned-without-code"),
        pytest.param("", "carried_over", "missing", id="carried-over-without-code"),
        pytest.param(A, "pending", "status", id="unknown-status"),
    ],
)
def test_status_violations(write_register, code, status, check) -> None:
    path = write_register(
        [
            {"resident_id": "1", "resident_code": C, "code_status": "assigned"},
            {"resident_id": "2", "resident_code": code, "code_status": status},
        ]
    )
    result = verify([path])
    assert found(result.violations) == {("register.csv", 3, check)}


def test_values_are_left_out_unless_verbose(write_register) -> None:
    path = write_register([{"resident_id": "1", "resident_code": "12345678904"}])
    assert verify([path]).violations[0].value is None
    assert verify([path], verbose=True).violations[0].value == "12345678904"


def test_missing_resident_code_column_is_unusable_input(write_register, runner) -> None:
    path = write_register([{"resident_id": "1", "name": "X"}])
    with pytest.raises(UsageError, match="resident_code"):
        verify([path])
    result = runner.invoke(app, ["verify", str(path)])
    assert result.exit_code == 2
    assert "resident_code" in result.output
    assert "Traceback" not in result.output


# -- against a ledger ----------------------------------------------------------


def test_code_unknown_to_the_ledger(store: LedgerStore, write_register) -> None:
    path = write_register([{"resident_id": "1", "resident_code": A, "code_status": "assigned"}])
    result = verify([path], ledger=store)
    assert found(result.violations) == {("register.csv", 2, "ledger")}
    assert "no record" in result.violations[0].message


def test_code_the_ledger_holds_for_another_resident(
    store: LedgerStore, tmp_path: Path, resident, write_register
) -> None:
    record_in_ledger(store, tmp_path, resident, write_register, {"000001": A})
    path = write_register([{"resident_id": "000002", "resident_code": A}], name="check.csv")
    result = verify([path], ledger=store)
    assert found(result.violations) == {("check.csv", 2, "ledger")}
    assert "another resident" in result.violations[0].message


def test_code_the_ledger_holds_for_this_resident_is_fine(
    store: LedgerStore, tmp_path: Path, resident, write_register
) -> None:
    record_in_ledger(store, tmp_path, resident, write_register, {"000001": A})
    path = write_register([{"resident_id": "000001", "resident_code": A}], name="check.csv")
    assert verify([path], ledger=store).ok


def test_retired_code(ledger: Ledger, tmp_path: Path, resident, write_register) -> None:
    record_in_ledger(ledger, tmp_path, resident, write_register, {"000001": A})
    ledger.retire([A])
    path = write_register([{"resident_id": "000001", "resident_code": A}], name="check.csv")
    result = verify([path], ledger=ledger)
    assert found(result.violations) == {("check.csv", 2, "ledger")}
    assert "retired" in result.violations[0].message


def test_code_imported_as_in_use_elsewhere(
    store: LedgerStore, tmp_path: Path, write_register
) -> None:
    extract = tmp_path / "national.txt"
    extract.write_text(f"{A}\n{C}\n", encoding="utf-8")
    import_codes(store, extract)
    path = write_register(
        [{"resident_id": "1", "resident_code": C, "code_status": "assigned"}], name="check.csv"
    )
    result = verify([path], ledger=store)
    assert found(result.violations) == {("check.csv", 2, "ledger")}
    assert "elsewhere" in result.violations[0].message


# -- the ledger's own integrity -----------------------------------------------


def _segments(ledger: Ledger) -> list[Path]:
    return sorted((ledger.path / "segments").glob("*.parquet"))


def test_clean_ledger_passes_integrity(assigned_on_backend: Path, store: LedgerStore) -> None:
    result = verify([], ledger=store)
    assert result.ok, result.violations
    assert result.ledger_records == 3


def test_empty_ledger_passes_integrity(store: LedgerStore) -> None:
    assert verify([], ledger=store).ok


def _flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_segment_is_reported(assigned: Path, ledger: Ledger) -> None:
    (segment,) = _segments(ledger)
    _flip_a_byte(segment)
    result = verify([], ledger=ledger)
    assert not result.ok
    assert [(Path(v.file).name, v.check) for v in result.violations] == [(segment.name, "ledger")]
    assert "damaged" in result.violations[0].message


def test_deleted_segment_is_reported(assigned: Path, ledger: Ledger) -> None:
    (segment,) = _segments(ledger)
    segment.unlink()
    result = verify([], ledger=ledger)
    assert [(Path(v.file).name, v.check) for v in result.violations] == [(segment.name, "ledger")]
    assert "missing" in result.violations[0].message


@pytest.mark.parametrize("damage", ["tampered", "deleted"])
def test_damaged_ledger_is_reported_when_files_are_verified_too(
    assigned: Path, ledger: Ledger, damage: str
) -> None:
    # `rrnet verify assigned.csv --ledger L` should list the damaged segment as a
    # violation (exit 1), as `rrnet verify --ledger L` does, not abort with exit 2.
    (segment,) = _segments(ledger)
    if damage == "tampered":
        _flip_a_byte(segment)
    else:
        segment.unlink()
    result = verify([assigned], ledger=ledger)
    assert not result.ok
    assert segment.name in {Path(v.file).name for v in result.violations}
