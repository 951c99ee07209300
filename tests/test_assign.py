"""Assign, at library level: drawing codes, classifying rows, the rules of assign."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import REQUIRED_COLUMNS

from rrnet_cli import code as rcode
from rrnet_cli.assign import (
    _UNBIASED_LIMIT,
    assign_register,
    draw_codes,
    random_bodies,
    random_source,
)
from rrnet_cli.errors import InputRowsError
from rrnet_cli.importer import import_codes
from rrnet_cli.ledger import CodeIndex, Ledger, SortedCodes

COLUMNS = [*REQUIRED_COLUMNS, "resident_code", "planned_move_out_date", "note"]


def export(path: Path, rows: list[dict[str, str]]) -> Path:
    frame = pl.DataFrame(
        [{c: r.get(c, "") for c in COLUMNS} for r in rows], schema=dict.fromkeys(COLUMNS, pl.String)
    )
    frame.write_csv(path)
    return path


def person(i: int, **extra: str) -> dict[str, str]:
    return {
        "resident_id": f"{i:06d}",
        "name": f"PERSON {i}",
        "birth_date": "1985-04-01",
        "sex": "M",
        "nationality": "BRA",
        "address": f"さくら市{i}番",
        **extra,
    }


def code_for(body: int) -> str:
    return rcode.codes_to_strings(rcode.codes_from_bodies(np.array([body]))).to_pylist()[0]


def scripted_bytes(values: list[int]):
    """A random source that hands out the given uint64 values, then zeros' successors."""
    queue = list(values)
    counter = iter(range(10**9))

    def take(n: int) -> bytes:
        out = [queue.pop(0) if queue else 10**9 + next(counter) for _ in range(n // 8)]
        return np.array(out, dtype=np.uint64).tobytes()

    return take


def run(ledger: Ledger, path: Path, out: Path, **kw):
    return assign_register(path, ledger=ledger, output=out, seed=kw.pop("seed", 1), **kw)


# -- drawing ----------------------------------------------------------------------


def test_drawn_codes_are_valid_unique_and_avoid_used_and_taken() -> None:
    used_codes = np.sort(rcode.codes_from_bodies(np.arange(0, 10**6, 7, dtype=np.uint64)))
    taken = rcode.codes_from_bodies(np.arange(1, 10**6, 7, dtype=np.uint64))
    codes, _ = draw_codes(
        50_000,
        used=CodeIndex([(SortedCodes([used_codes]), "imported")]),
        taken=taken,
        random_bytes=random_source(3),
    )
    assert len(np.unique(codes)) == 50_000
    assert rcode.codes_are_valid(codes).all()
    assert not np.isin(codes, used_codes).any() and not np.isin(codes, taken).any()


def test_collisions_with_ledger_batch_and_export_are_redrawn() -> None:
    used = CodeIndex(
        [(SortedCodes([rcode.codes_from_bodies(np.array([5], np.uint64))]), "imported")]
    )
    taken = rcode.codes_from_bodies(np.array([6], np.uint64))
    # First round offers a used body, a taken body and the same body twice.
    source = scripted_bytes([5, 6, 7, 7])
    codes, redraws = draw_codes(4, used=used, taken=taken, random_bytes=source)
    bodies = set((codes // 10).tolist())
    assert len(bodies) == 4
    assert not bodies & {5, 6}
    assert redraws >= 3


def test_values_that_would_bias_the_modulo_are_thrown_away() -> None:
    biased = int(_UNBIASED_LIMIT) + 17  # would map to body 17 if kept
    bodies = random_bodies(2, scripted_bytes([biased, 42, 43]))
    assert bodies.tolist() == [42, 43]


def test_bodies_are_uniform_over_the_whole_space() -> None:
    bodies = random_bodies(200_000, random_source(11))
    assert bodies.max() < rcode.BODY_SPACE
    first_digit = np.bincount((bodies // 10**9).astype(np.int64), minlength=10)
    expected = len(bodies) / 10
    chi2 = float(((first_digit - expected) ** 2 / expected).sum())
    assert chi2 < 27.9  # p = 0.001 for 9 degrees of freedom


def test_without_seed_codes_come_from_the_os_csprng(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = os.urandom

    def counting(n: int) -> bytes:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(os, "urandom", counting)
    source = random_source(None)
    random_bodies(10, source)
    assert calls


# -- classification ---------------------------------------------------------------


def test_statuses_and_precedence(ledger: Ledger, tmp_path: Path) -> None:
    carried = code_for(1234567890)
    path = export(
        tmp_path / "e.csv",
        [
            person(1),
            person(2, resident_code=carried),
            person(3, planned_move_out_date="2026-12-24"),
            person(4, planned_move_out_date="2026-12-24", resident_code=code_for(222)),
        ],
    )
    result = run(ledger, path, tmp_path / "o.csv")
    assert (result.newly_assigned, result.carried_over, result.already_assigned) == (1, 2, 0)
    assert result.excluded == {"planned_move_out": 1}
    out = pl.read_csv(tmp_path / "o.csv", infer_schema=False)
    by_id = {r["resident_id"]: r for r in out.iter_rows(named=True)}
    assert by_id["000002"]["resident_code"] == carried
    assert by_id["000003"]["code_status"] == "excluded"
    assert not by_id["000003"]["resident_code"]
    assert by_id["000003"]["exclusion_reason"] == "planned_move_out"
    # A planned move-out who already has a code keeps it: exclusion only stops new codes.
    assert by_id["000004"]["code_status"] == "carried_over"
    # The ledger now knows the carried-over codes as theirs.
    owners = ledger.snapshot().lookup(rcode.strings_to_codes([carried]))
    assert owners["resident_id"].to_list() == ["000002"]
    assert owners["status"].to_list() == ["carried_over"]


def test_second_run_assigns_nothing_new(ledger: Ledger, tmp_path: Path) -> None:
    path = export(tmp_path / "e.csv", [person(i) for i in range(50)])
    first = run(ledger, path, tmp_path / "a.csv")
    second = run(ledger, path, tmp_path / "b.csv", seed=99)
    assert first.newly_assigned == 50
    assert (second.newly_assigned, second.already_assigned) == (0, 50)
    a = pl.read_csv(tmp_path / "a.csv", infer_schema=False)
    b = pl.read_csv(tmp_path / "b.csv", infer_schema=False)
    assert a["resident_code"].to_list() == b["resident_code"].to_list()
    assert second.transaction is None, "a run with nothing new must not add a transaction"


def test_a_known_resident_arriving_with_another_code_is_refused(
    ledger: Ledger, tmp_path: Path
) -> None:
    run(ledger, export(tmp_path / "e.csv", [person(1)]), tmp_path / "a.csv")
    again = export(tmp_path / "f.csv", [person(1, resident_code=code_for(777))])
    with pytest.raises(InputRowsError) as info:
        run(ledger, again, tmp_path / "b.csv")
    assert info.value.errors[0]["row"] == 2
    assert "different code for this resident" in info.value.errors[0]["reason"]
    assert not (tmp_path / "b.csv").exists()


def test_a_code_held_for_someone_else_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    run(ledger, export(tmp_path / "e.csv", [person(1)]), tmp_path / "a.csv")
    code = pl.read_csv(tmp_path / "a.csv", infer_schema=False)["resident_code"][0]
    thief = export(tmp_path / "f.csv", [person(2, resident_code=code), person(3)])
    with pytest.raises(InputRowsError, match="1 row"):
        run(ledger, thief, tmp_path / "b.csv")
    # With --rejects the clash is set aside and the rest proceeds.
    result = run(ledger, thief, tmp_path / "b.csv", rejects=tmp_path / "r.csv")
    assert (result.rows_rejected, result.newly_assigned) == (1, 1)
    rejected = pl.read_csv(tmp_path / "r.csv", infer_schema=False)
    assert rejected["row"].to_list() == ["2"]
    assert "another resident" in rejected["errors"][0]


def test_a_retired_code_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    run(ledger, export(tmp_path / "e.csv", [person(1)]), tmp_path / "a.csv")
    code = pl.read_csv(tmp_path / "a.csv", infer_schema=False)["resident_code"][0]
    ledger.retire([code])
    with pytest.raises(InputRowsError) as info:
        run(ledger, export(tmp_path / "f.csv", [person(5, resident_code=code)]), tmp_path / "b.csv")
    assert "retired" in info.value.errors[0]["reason"]


def test_a_code_in_use_elsewhere_moves_in_with_its_resident(ledger: Ledger, tmp_path: Path) -> None:
    code = code_for(4242424242)
    (tmp_path / "national.txt").write_text(code + "\n")
    import_codes(ledger, tmp_path / "national.txt")
    result = run(
        ledger, export(tmp_path / "e.csv", [person(9, resident_code=code)]), tmp_path / "a.csv"
    )
    assert result.carried_over == 1
    assert ledger.snapshot().lookup(rcode.strings_to_codes([code]))["status"][0] == "carried_over"


def test_output_keeps_every_column_in_order(ledger: Ledger, tmp_path: Path) -> None:
    path = export(tmp_path / "e.csv", [person(1, note="=SUM(A1)")])
    run(ledger, path, tmp_path / "o.parquet")
    out = pl.read_parquet(tmp_path / "o.parquet")
    assert out.columns == [*COLUMNS, "code_status", "exclusion_reason"]
    assert out.schema["resident_code"] == pl.String
    assert out["note"][0] == "=SUM(A1)", "Parquet carries values untouched"


def test_dry_run_changes_nothing(ledger: Ledger, tmp_path: Path) -> None:
    before = (ledger.path / "manifest.json").read_bytes()
    result = run(ledger, export(tmp_path / "e.csv", [person(1)]), tmp_path / "o.csv", dry_run=True)
    assert result.newly_assigned == 1
    assert not (tmp_path / "o.csv").exists()
    assert (ledger.path / "manifest.json").read_bytes() == before
    assert list(tmp_path.glob(".o.csv*")) == []


def test_output_onto_the_export_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    from rrnet_cli.errors import UsageError

    path = export(tmp_path / "e.csv", [person(1)])
    with pytest.raises(UsageError, match="export itself"):
        run(ledger, path, path)


def test_codes_are_not_handed_out_in_sorted_order() -> None:
    """Drawing works on sorted candidates; the result must not keep that order."""
    empty = CodeIndex([])
    codes, _ = draw_codes(
        10_000, used=empty, taken=np.empty(0, np.uint64), random_bytes=random_source(5)
    )
    rank = np.argsort(np.argsort(codes))
    correlation = np.corrcoef(rank, np.arange(len(codes)))[0, 1]
    assert abs(correlation) < 0.05
