"""Designated pools (住民票コードの指定): designate, pool mode, drawing only from the pool."""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from backends import LedgerBackend
from helpers import MUNICIPALITY, cli_ok, folder_bytes, rrnet, run_cli, write_export
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rrnet_cli import code as rcode
from rrnet_cli.assign import draw_codes, random_below, random_source
from rrnet_cli.errors import UsageError
from rrnet_cli.importer import import_codes
from rrnet_cli.ledger import (
    CodeIndex,
    Ledger,
    SortedCodes,
    check_chain,
    check_integrity,
)
from rrnet_cli.pool import designate_codes

FAILPOINTS = [
    ("before-manifest-write", False),
    ("before-manifest-replace", False),
    ("after-manifest-replace", True),
]


# -- helpers -------------------------------------------------------------------------


def pool_codes(n: int, seed: int) -> list[str]:
    """``n`` distinct valid codes as 11-digit strings."""
    bodies = np.random.default_rng(seed).choice(rcode.BODY_SPACE, size=n, replace=False)
    return rcode.codes_to_strings(rcode.codes_from_bodies(bodies.astype(np.uint64))).to_pylist()


def code_list(path: Path, codes: list[str]) -> Path:
    path.write_text("\n".join(codes) + "\n", encoding="utf-8")
    return path


def manifest_of(ledger: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ledger / "manifest.json").read_text(encoding="utf-8"))
    return data


def stats_of(runner: CliRunner, ledger: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cli_ok(runner, "ledger", "stats", "-l", ledger, "--json"))
    return data


def new_codes(assigned: Path) -> set[str]:
    frame = pl.read_csv(assigned, infer_schema=False)
    return set(frame.filter(pl.col("code_status") == "assigned")["resident_code"].to_list())


def chi2_critical(dof: int, q: float = 0.999) -> float:
    """The ``q`` quantile of chi-square with ``dof`` degrees of freedom.

    SciPy's when it is installed, else the Wilson-Hilferty normal approximation
    (within a fraction of a percent for these degrees of freedom).
    """
    try:
        from scipy.stats import chi2  # type: ignore[import-untyped]

        return float(chi2.ppf(q, dof))
    except ImportError:
        z = {0.999: 3.090232306167813, 0.99: 2.3263478740408408}[q]
        return dof * (1 - 2 / (9 * dof) + z * math.sqrt(2 / (9 * dof))) ** 3


def without_replacement_chi2(counts: np.ndarray, draws: int, per_draw: int, size: int) -> float:
    """Pearson's statistic of ``counts`` for draws of ``per_draw`` of ``size`` without
    replacement, scaled to be chi-square with ``len(counts) - 1`` degrees of freedom.

    Each draw takes a code with probability p = per_draw / size, and the codes of
    one draw exclude each other, so the raw statistic is (1 - p) * size / (size - 1)
    times a chi-square; dividing by that factor makes the test exact (not merely
    conservative).
    """
    expected = draws * per_draw / len(counts)
    raw = float(((counts - expected) ** 2 / expected).sum())
    p = per_draw / size
    return raw / ((1 - p) * size / (size - 1))


@pytest.fixture
def pooled(runner: CliRunner, ledger: Ledger, tmp_path: Path) -> tuple[Path, set[str]]:
    """The ``ledger`` with 500 designated codes; its path and the codes."""
    codes = pool_codes(500, 1)
    cli_ok(
        runner, "ledger", "designate", code_list(tmp_path / "pool.txt", codes), "-l", ledger.path
    )
    return ledger.path, set(codes)


# -- designate -----------------------------------------------------------------------


def test_designate_a_plain_list(runner: CliRunner, ledger: Ledger, tmp_path: Path) -> None:
    codes = pool_codes(300, 2)
    source = code_list(tmp_path / "designated.txt", codes)
    result = json.loads(cli_ok(runner, "ledger", "designate", source, "-l", ledger.path, "--json"))
    assert (result["codes_read"], result["designated"], result["pool_left"]) == (300, 300, 300)
    assert result["transaction"] == 1 and result["pool_mode"] == "off"

    state = ledger.snapshot()
    assert state.pool.tolist() == sorted(int(c) for c in codes)
    assert len(state.codes) == 0, "designated codes are not used codes"
    stats = stats_of(runner, ledger.path)
    assert stats["codes_used"] == 0
    assert stats["pool"] == {"mode": "off", "designated": 300, "used": 0, "left": 300}
    # One transaction, recorded like any other; the ledger now says it has a pool.
    manifest = manifest_of(ledger.path)
    record = manifest["transactions"][-1]
    assert record["counts"] == {"designated": 300}
    assert record["command"][:4] == ["rrnet", "ledger", "designate", str(source)]
    assert len(record["inputs"]) == 1 and record["inputs"][0]["path"] == str(source)
    assert manifest["version"] == 3
    assert check_integrity(ledger).violations == []


def test_designate_a_cp932_csv_with_a_japanese_header(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    codes = pool_codes(40, 3)
    source = tmp_path / "指定.csv"
    lines = ["宛名番号,住民票コード,備考"] + [f"{i},{c},指定分" for i, c in enumerate(codes[:20])]
    source.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp932"))
    # The column named 住民票コード is recognised without --column.
    first = json.loads(cli_ok(runner, "ledger", "designate", source, "-l", ledger.path, "--json"))
    assert first["designated"] == 20
    other = tmp_path / "more.csv"
    other.write_bytes(("コード\r\n" + "".join(f"{c}\r\n" for c in codes[20:])).encode("cp932"))
    second = cli_ok(
        runner,
        "ledger",
        "designate",
        other,
        "--column",
        "コード",
        "--encoding",
        "cp932",
        "-l",
        ledger.path,
        "--json",
    )
    assert json.loads(second)["pool_size"] == 40
    assert sorted(ledger.snapshot().pool.tolist()) == sorted(int(c) for c in codes)
    assert check_integrity(ledger).violations == []


def _used_in_every_way(runner: CliRunner, ledger: Path, tmp_path: Path) -> dict[str, str]:
    """A code of each status in ``ledger``: imported, assigned, carried over, retired."""
    imported = pool_codes(1, 90)[0]
    cli_ok(runner, "ledger", "import", code_list(tmp_path / "in_use.txt", [imported]), "-l", ledger)
    carried = pool_codes(1, 91)[0]
    export = tmp_path / "export.csv"
    write_export(export, 3)
    frame = pl.read_csv(export, infer_schema=False).with_columns(
        pl.Series("resident_code", [carried, "", ""])
    )
    frame.write_csv(export)
    out = tmp_path / "assigned.csv"
    cli_ok(runner, "assign", export, "-l", ledger, "-o", out)
    rows = pl.read_csv(out, infer_schema=False)
    assigned = rows.filter(pl.col("code_status") == "assigned")["resident_code"].to_list()
    cli_ok(runner, "change", "--resident", "000000002", "--id-document", "passport", "-l", ledger)
    retired = dict(zip(rows["resident_id"], rows["resident_code"], strict=True))["000000002"]
    return {
        "imported": imported,
        "assigned": assigned[0] if assigned[0] != retired else assigned[1],
        "carried_over": carried,
        "retired": retired,
    }


def test_used_designated_repeated_or_invalid_codes_are_refused_naming_the_record(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    used = _used_in_every_way(runner, ledger.path, tmp_path)
    already = pool_codes(5, 4)
    cli_ok(
        runner, "ledger", "designate", code_list(tmp_path / "first.txt", already), "-l", ledger.path
    )
    fresh = pool_codes(10, 5)
    cases: list[tuple[str, list[str], list[str]]] = [
        *(
            (
                f"used ({status})",
                [*fresh[:3], code, *fresh[3:]],
                [f"record 4: already used ({status})"],
            )
            for status, code in used.items()
        ),
        ("already designated", [*fresh, already[2]], ["record 11: already in a designated pool"]),
        ("repeated", [*fresh[:6], fresh[1], *fresh[6:]], ["record 7: the same code as record 2"]),
        ("invalid", [*fresh[:8], "12345678904", *fresh[8:]], ["record 9:", "check digit"]),
    ]
    for name, codes, expected in cases:
        before = folder_bytes(ledger.path)
        code, output = run_cli(
            runner, "ledger", "designate", code_list(tmp_path / "p.txt", codes), "-l", ledger.path
        )
        assert code == 2, (name, output)
        assert "nothing was designated" in output, (name, output)
        for text in expected:
            assert text in output, (name, output)
        assert folder_bytes(ledger.path) == before, f"{name}: the ledger changed"
    # A CSV's header is record 1, as in ledger import: the first code is record 2.
    csv = tmp_path / "p.csv"
    csv.write_text(f"住民票コード\n{fresh[0]}\n{already[0]}\n", encoding="utf-8")
    code, output = run_cli(runner, "ledger", "designate", csv, "-l", ledger.path)
    assert code == 2 and "record 3: already in a designated pool" in output, output


def test_an_empty_pool_file_is_refused(ledger: Ledger, tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("住民票コード\n", encoding="utf-8")
    before = folder_bytes(ledger.path)
    with pytest.raises(UsageError, match="holds no codes"):
        designate_codes(ledger, tmp_path / "empty.csv")
    assert folder_bytes(ledger.path) == before


def test_repeats_across_batches_are_found(ledger: Ledger, tmp_path: Path) -> None:
    codes = pool_codes(2000, 6)
    source = code_list(tmp_path / "p.txt", [*codes, codes[5]])
    with pytest.raises(UsageError, match="record 2001: the same code as record 6"):
        designate_codes(ledger, source, batch_rows=300)
    result = designate_codes(ledger, code_list(tmp_path / "ok.txt", codes), batch_rows=300)
    assert result.designated == 2000
    assert len(manifest_of(ledger.path)["segments"]) == 1, "one designation, one segment"


def test_a_ledger_without_a_pool_stays_version_2(ledger: Ledger, tmp_path: Path) -> None:
    import_codes(ledger, code_list(tmp_path / "c.txt", pool_codes(5, 7)))
    assert manifest_of(ledger.path)["version"] == 2


# -- drawing from the pool -----------------------------------------------------------


def test_assign_with_pool_draws_only_pool_codes(
    runner: CliRunner, pooled: tuple[Path, set[str]], tmp_path: Path
) -> None:
    ledger, pool = pooled
    out = tmp_path / "assigned.csv"
    result = json.loads(
        cli_ok(
            runner,
            "assign",
            write_export(tmp_path / "a.csv", 200),
            "-l",
            ledger,
            "-o",
            out,
            "--pool",
            "--json",
        )
    )
    assert result["newly_assigned"] == 200 and result["from_pool"] is True
    drawn = new_codes(out)
    assert len(drawn) == 200 and drawn <= pool
    record = manifest_of(ledger)["transactions"][-1]
    assert record["drawn_from"] == "pool"
    assert stats_of(runner, ledger)["pool"] == {
        "mode": "off",
        "designated": 500,
        "used": 200,
        "left": 300,
    }
    # The next run draws from what is left: never a code drawn before.
    out2 = tmp_path / "assigned2.csv"
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "b.csv", 250, start=1000),
        "-l",
        ledger,
        "-o",
        out2,
        "--pool",
    )
    assert new_codes(out2) <= pool - drawn
    assert rrnet("verify", out, out2, "--ledger", ledger).returncode == 0
    text = cli_ok(runner, "ledger", "stats", "-l", ledger)
    assert "designated pool" in text and "left" in text and "50" in text


def test_pool_mode_makes_assign_and_change_draw_from_the_pool(
    runner: CliRunner, pooled: tuple[Path, set[str]], tmp_path: Path
) -> None:
    ledger, pool = pooled
    output = cli_ok(runner, "ledger", "pool-mode", "on", "-l", ledger)
    assert "on" in output and "warning" not in output
    record = manifest_of(ledger)["transactions"][-1]
    assert (record["pool_mode"], record["segments"], record["counts"]) == (True, [], {})
    assert "pool mode on" in cli_ok(runner, "ledger", "log", "-l", ledger)

    out = tmp_path / "assigned.csv"
    cli_ok(runner, "assign", write_export(tmp_path / "a.csv", 100), "-l", ledger, "-o", out)
    assert new_codes(out) <= pool
    changes = tmp_path / "changes.csv"
    cli_ok(
        runner,
        "change",
        "--resident",
        "000000003",
        "--id-document",
        "passport",
        "-l",
        ledger,
        "-o",
        changes,
    )
    change = pl.read_csv(changes, infer_schema=False).row(0, named=True)
    assert change["new_code"] in pool and change["new_code"] not in new_codes(out)
    assert manifest_of(ledger)["transactions"][-1]["drawn_from"] == "pool"
    assert stats_of(runner, ledger)["pool"]["left"] == 500 - 101

    # Off again: the whole code space (500 pool codes among 10**10: none drawn).
    cli_ok(runner, "ledger", "pool-mode", "off", "-l", ledger)
    free = tmp_path / "free.csv"
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "f.csv", 300, start=5000),
        "-l",
        ledger,
        "-o",
        free,
    )
    assert not new_codes(free) & pool
    assert "drawn_from" not in manifest_of(ledger)["transactions"][-1]
    assert rrnet("verify", free, "--ledger", ledger).returncode == 0


def test_pool_mode_needs_a_pool_and_says_when_nothing_changes(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    before = folder_bytes(ledger.path)
    code, output = run_cli(runner, "ledger", "pool-mode", "on", "-l", ledger.path)
    assert code == 2 and "no designated pool" in output
    code, output = run_cli(
        runner,
        "assign",
        write_export(tmp_path / "a.csv", 3),
        "-l",
        ledger.path,
        "-o",
        tmp_path / "o.csv",
        "--pool",
    )
    assert code == 2 and "no designated pool" in output
    assert folder_bytes(ledger.path) == before
    cli_ok(
        runner,
        "ledger",
        "designate",
        code_list(tmp_path / "p.txt", pool_codes(5, 8)),
        "-l",
        ledger.path,
    )
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", ledger.path)
    txn = manifest_of(ledger.path)["txn"]
    again = json.loads(cli_ok(runner, "ledger", "pool-mode", "on", "-l", ledger.path, "--json"))
    assert again["changed"] is False and manifest_of(ledger.path)["txn"] == txn


def test_exhaustion_is_refused_before_anything_is_written(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    cli_ok(
        runner,
        "ledger",
        "designate",
        code_list(tmp_path / "p.txt", pool_codes(1200, 9)),
        "-l",
        ledger.path,
    )
    before = folder_bytes(ledger.path)
    out = tmp_path / "assigned.csv"
    export = write_export(tmp_path / "big.csv", 2345)
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", out, "--pool")
    assert code == 2
    assert "needs 2,345 codes, the pool has 1,200 left" in output
    assert not out.exists(), "no output when the pool is too small"
    assert folder_bytes(ledger.path) == before
    # Pool mode and a partly used pool: what is left is what counts.
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", ledger.path)
    cli_ok(runner, "assign", write_export(tmp_path / "a.csv", 1100), "-l", ledger.path, "-o", out)
    before = folder_bytes(ledger.path)
    second = tmp_path / "second.csv"
    export = write_export(tmp_path / "b.csv", 101, start=10_000)
    code, output = run_cli(runner, "assign", export, "-l", ledger.path, "-o", second)
    assert code == 2 and "needs 101 codes, the pool has 100 left" in output
    assert not second.exists() and folder_bytes(ledger.path) == before
    # A code change needs a pool code too.
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "c.csv", 100, start=20_000),
        "-l",
        ledger.path,
        "-o",
        tmp_path / "c.out.csv",
    )
    before = folder_bytes(ledger.path)
    code, output = run_cli(
        runner, "change", "--resident", "000000001", "--id-document", "passport", "-l", ledger.path
    )
    assert code == 2 and "needs 1 code, the pool has 0 left" in output
    assert folder_bytes(ledger.path) == before


def test_the_whole_pool_can_be_drawn(runner: CliRunner, ledger: Ledger, tmp_path: Path) -> None:
    codes = pool_codes(64, 10)
    cli_ok(runner, "ledger", "designate", code_list(tmp_path / "p.txt", codes), "-l", ledger.path)
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", ledger.path)
    out = tmp_path / "o.csv"
    cli_ok(runner, "assign", write_export(tmp_path / "a.csv", 64), "-l", ledger.path, "-o", out)
    assert new_codes(out) == set(codes)
    assert stats_of(runner, ledger.path)["pool"]["left"] == 0


def test_a_code_on_the_export_is_never_drawn(ledger: Ledger) -> None:
    pool = np.sort(rcode.strings_to_codes(pool_codes(10, 11)))
    empty = CodeIndex([])
    for seed in range(20):
        drawn, _ = draw_codes(
            8, used=empty, taken=pool[:2], random_bytes=random_source(seed), pool=pool
        )
        assert set(drawn.tolist()) == set(pool[2:].tolist())
        some, _ = draw_codes(
            2, used=empty, taken=pool[:2], random_bytes=random_source(seed), pool=pool
        )
        assert set(some.tolist()) <= set(pool[2:].tolist())


# -- uniform over what is left -------------------------------------------------------


@pytest.mark.parametrize(
    ("per_draw", "draws"),
    [(6, 4000), (20, 2000)],  # up to a quarter of what is left: rounds; more: random keys
)
def test_the_draw_is_uniform_over_the_codes_left(per_draw: int, draws: int) -> None:
    pool = np.sort(rcode.strings_to_codes(pool_codes(40, 12)))
    used = CodeIndex([(SortedCodes([pool[[3, 9, 17, 25, 31]]]), "imported")])
    taken = pool[[0, 1, 39]]
    left = np.setdiff1d(pool, np.concatenate([pool[[3, 9, 17, 25, 31]], taken]))
    counts = dict.fromkeys(left.tolist(), 0)
    random_bytes = random_source(13)
    for _ in range(draws):
        drawn, _ = draw_codes(
            per_draw, used=used, taken=taken, random_bytes=random_bytes, pool=pool
        )
        assert len(set(drawn.tolist())) == per_draw
        for code in drawn.tolist():
            counts[code] += 1  # KeyError: a used, taken or foreign code was drawn
    observed = np.array(list(counts.values()), dtype=float)
    statistic = without_replacement_chi2(observed, draws, per_draw, len(left))
    assert statistic < chi2_critical(len(left) - 1), (statistic, observed)


def test_pool_positions_are_uniform_over_a_large_pool(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    """10,000 designated codes, 5,000 drawn in five runs: even over 20 buckets of the pool."""
    codes = sorted(pool_codes(10_000, 14))
    cli_ok(runner, "ledger", "designate", code_list(tmp_path / "p.txt", codes), "-l", ledger.path)
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", ledger.path)
    drawn: set[str] = set()
    for run_number in range(5):
        out = tmp_path / f"o{run_number}.csv"
        export = write_export(tmp_path / f"e{run_number}.csv", 1000, start=run_number * 1000)
        cli_ok(runner, "assign", export, "-l", ledger.path, "-o", out, "--seed", run_number + 1)
        drawn |= new_codes(out)
    assert len(drawn) == 5000 and drawn <= set(codes)
    positions = np.searchsorted(np.array(codes), np.array(sorted(drawn)))
    buckets = np.bincount(positions // 500, minlength=20).astype(float)
    statistic = without_replacement_chi2(buckets, 1, 5000, 10_000)
    assert statistic < chi2_critical(19), (statistic, buckets)


def test_random_below_is_unbiased_and_in_range() -> None:
    values = random_below(60_000, 6, random_source(15))
    assert values.max() < 6
    counts = np.bincount(values.astype(np.int64), minlength=6)
    expected = len(values) / 6
    assert float(((counts - expected) ** 2 / expected).sum()) < chi2_critical(5)
    # The largest multiple of 6 below 2**64 is the rejection bound: 2**64 - 4 is
    # thrown away (it would favour remainder 0), the next value is kept.
    biased = np.array([2**64 - 4, 7], dtype=np.uint64).tobytes()
    assert random_below(1, 6, lambda n: (biased + bytes(n))[:n]).tolist() == [1]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["designate", "pool", "free", "import"]),
            st.integers(1, 30),
            st.integers(0, 2**31),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_pool_invariants_hold_under_any_sequence(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    """Designations, pool draws, free draws and imports (of pool codes too) in any order:
    pool draws stay in the pool, no code is drawn twice, and the pool's count is right."""
    work = tmp_path_factory.mktemp("p")
    ledger = Ledger.init(work / "ledger", municipality=MUNICIPALITY)
    designated: list[str] = []
    drawn: list[int] = []
    for index, (op, n, seed) in enumerate(ops):
        state = ledger.snapshot()
        if op == "designate":
            fresh = [c for c in pool_codes(n, seed) if c not in designated]
            fresh = [c for c in fresh if not state.codes.contains(rcode.strings_to_codes([c]))[0]]
            if fresh:
                designate_codes(ledger, code_list(work / f"d{index}.txt", fresh))
                designated += fresh
        elif op == "import":  # codes in use elsewhere: some of them from the pool
            codes = pool_codes(n, seed) + designated[seed % 7 :: 9][:3]
            import_codes(ledger, code_list(work / f"i{index}.txt", codes))
        else:
            from_pool = op == "pool"
            left = len(state.pool_left())
            before = folder_bytes(ledger.path)
            try:
                with ledger.transaction() as txn:
                    codes, _ = draw_codes(
                        n,
                        used=txn.state.codes,
                        taken=np.empty(0, np.uint64),
                        random_bytes=random_source(seed),
                        pool=txn.state.pool if from_pool else None,
                    )
                    txn.describe(details={"drawn_from": "pool"} if from_pool else None)
                    txn.add_records(
                        pl.DataFrame(
                            {
                                "code": codes,
                                "status": ["assigned"] * n,
                                "municipality": [MUNICIPALITY] * n,
                                "resident_id": [f"r{index}-{i}" for i in range(n)],
                            }
                        )
                    )
            except UsageError as refused:
                assert from_pool and n > left, refused
                assert f"needs {n:,} code" in str(refused) and f"has {left:,} left" in str(refused)
                assert folder_bytes(ledger.path) == before
                continue
            if from_pool:
                assert set(codes.tolist()) <= set(rcode.strings_to_codes(designated).tolist())
            drawn += codes.tolist()
        assert len(drawn) == len(set(drawn)), "a code was drawn twice"
        state = ledger.snapshot()
        pool = set(rcode.strings_to_codes(designated).tolist()) if designated else set()
        used = {c for c in pool if state.codes.contains(np.array([c], np.uint64))[0]}
        assert len(state.pool_left()) == len(pool) - len(used)
        assert check_integrity(ledger).violations == []


# -- verify and integrity ------------------------------------------------------------


def test_verify_flags_codes_assigned_outside_the_pool_in_pool_mode(
    runner: CliRunner, backend: LedgerBackend, tmp_path: Path
) -> None:
    """Codes drawn before the first designation are no violation (there was no pool
    to draw from); codes drawn freely after it, outside the pool, are, once pool
    mode is on."""
    ledger = backend.location
    export = write_export(tmp_path / "export.csv", 6)
    frame = pl.read_csv(export, infer_schema=False).with_columns(
        pl.Series("resident_code", [pool_codes(1, 16)[0], "", "", "", "", ""])
    )
    frame.write_csv(export)
    before = tmp_path / "before.csv"
    cli_ok(runner, "assign", export, "-l", ledger, "-o", before)  # no pool yet: drawn freely
    designated = code_list(tmp_path / "p.txt", pool_codes(50, 17))
    cli_ok(runner, "ledger", "designate", designated, "-l", ledger)
    after = tmp_path / "after.csv"  # pool mode off: drawn freely, though a pool exists
    export = write_export(tmp_path / "a.csv", 3, start=50)
    cli_ok(runner, "assign", export, "-l", ledger, "-o", after)
    assert rrnet("verify", after, "--ledger", ledger).returncode == 0, "off: no pool rule"

    code, output = run_cli(runner, "ledger", "pool-mode", "on", "-l", ledger)
    assert code == 0
    assert "warning: 3 code(s) assigned here lie outside the designated pool" in output

    # Drawn before any pool was designated: not outside it.
    check = rrnet("verify", before, "--ledger", ledger, "--json")
    assert check.returncode == 0, check.stdout
    check = rrnet("verify", after, "--ledger", ledger, "--json")
    assert check.returncode == 1
    violations = json.loads(check.stdout)["violations"]
    assert sorted(v["row"] for v in violations) == [2, 3, 4]
    assert {(v["file"], v["check"], v["message"]) for v in violations} == {
        (str(after), "pool", "assigned outside the designated pool")
    }
    text = rrnet("verify", before, after, "--ledger", ledger).stdout
    assert f"{after} row 2: [pool] assigned outside the designated pool" in text
    assert f"{before} row" not in text
    # The ledger itself is sound: those codes were drawn before pool mode, freely.
    assert rrnet("verify", "--ledger", ledger).returncode == 0
    # Codes drawn in pool mode pass.
    pooled = tmp_path / "pooled.csv"
    cli_ok(
        runner,
        "assign",
        write_export(tmp_path / "p.csv", 10, start=100),
        "-l",
        ledger,
        "-o",
        pooled,
    )
    assert rrnet("verify", pooled, "--ledger", ledger).returncode == 0


def test_integrity_catches_pool_codes_misused(ledger: Ledger, tmp_path: Path) -> None:
    texts = pool_codes(30, 18)
    codes = rcode.strings_to_codes(texts)
    import_codes(ledger, code_list(tmp_path / "in_use.txt", texts[:1]))
    with ledger.transaction() as txn:  # bypasses designate's checks on purpose
        txn.add_pool(np.sort(codes), MUNICIPALITY)
    reasons = [v["reason"] for v in check_integrity(ledger).violations]
    assert any("designated while already in use (imported)" in r for r in reasons), reasons

    other = Ledger.init(tmp_path / "other", municipality=MUNICIPALITY)
    designate_codes(other, code_list(tmp_path / "p.txt", pool_codes(30, 19)))
    outside = rcode.strings_to_codes(pool_codes(2, 20))
    with other.transaction() as txn:  # says it drew from the pool, but did not
        txn.describe(details={"drawn_from": "pool"})
        txn.add_records(
            pl.DataFrame(
                {
                    "code": outside,
                    "status": ["assigned"] * 2,
                    "municipality": [MUNICIPALITY] * 2,
                    "resident_id": ["a", "b"],
                }
            )
        )
    reasons = [v["reason"] for v in check_integrity(other).violations]
    assert any("2 codes drawn from the designated pool were not designated" in r for r in reasons)

    third = Ledger.init(tmp_path / "third", municipality=MUNICIPALITY)
    twice = np.sort(rcode.strings_to_codes(pool_codes(5, 21)))
    for _ in range(2):
        with third.transaction() as txn:
            txn.add_pool(twice, MUNICIPALITY)
    reasons = [v["reason"] for v in check_integrity(third).violations]
    assert any("5 codes were designated twice" in r for r in reasons), reasons


def test_pool_mode_edited_by_hand_breaks_the_chain(
    runner: CliRunner, pooled: tuple[Path, set[str]]
) -> None:
    ledger, _ = pooled
    data = manifest_of(ledger)
    data["pool_mode"] = True
    (ledger / "manifest.json").write_text(json.dumps(data, ensure_ascii=False, indent=1))
    problems = check_chain(data).problems
    assert problems == [
        "the manifest says pool mode is on, but in the audit trail no transaction ever "
        "turned it on (the manifest was edited by hand)"
    ]
    assert rrnet("verify", "--ledger", ledger).returncode == 1

    data["pool_mode"] = False  # as it was
    (ledger / "manifest.json").write_text(json.dumps(data, ensure_ascii=False, indent=1))
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", ledger)
    data = manifest_of(ledger)
    data["pool_mode"] = False
    assert "transaction 2 set it on" in check_chain(data).problems[0]


def test_a_mode_change_record_cannot_hide_a_removed_segment(
    pooled: tuple[Path, set[str]], runner: CliRunner
) -> None:
    """Only a record that names no segment and sets pool mode may go without a segment."""
    ledger, _ = pooled
    data = manifest_of(ledger)
    data["segments"] = []  # the designation's segment removed from the manifest
    (ledger / "manifest.json").write_text(json.dumps(data, ensure_ascii=False, indent=1))
    with pytest.raises(Exception, match="segments do not account for transactions"):
        Ledger.open(ledger)


# -- crashes -------------------------------------------------------------------------


@pytest.mark.parametrize(("failpoint", "committed"), FAILPOINTS)
def test_kill_during_designate(
    ledger: Ledger, tmp_path: Path, failpoint: str, committed: bool
) -> None:
    source = code_list(tmp_path / "p.txt", pool_codes(20_000, 22))
    before = folder_bytes(ledger.path)
    crashed = rrnet(
        "ledger", "designate", source, "-l", ledger.path, env={"RRNET_FAILPOINT": failpoint}
    )
    assert crashed.returncode == -signal.SIGKILL
    manifest = manifest_of(ledger.path)
    assert manifest["txn"] == (1 if committed else 0)
    assert len(ledger.snapshot().pool) == (20_000 if committed else 0)
    if not committed:
        assert json.loads(before["manifest.json"] or b"") == manifest
    assert rrnet("verify", "--ledger", ledger.path).returncode == 0
    again = rrnet("ledger", "designate", source, "-l", ledger.path)
    if committed:  # the designation stands whole; designating it again is refused
        assert again.returncode == 2 and "already in a designated pool" in again.stderr
    else:
        assert again.returncode == 0, again.stderr
    assert len(ledger.snapshot().pool) == 20_000
    assert rrnet("verify", "--ledger", ledger.path).returncode == 0
    live = {Path(s["file"]).name for s in manifest_of(ledger.path)["segments"]}
    assert {p.name for p in (ledger.path / "segments").iterdir()} == live


@pytest.mark.parametrize(("failpoint", "committed"), FAILPOINTS)
def test_kill_during_a_pool_assign_and_a_pool_mode_change(
    runner: CliRunner,
    pooled: tuple[Path, set[str]],
    tmp_path: Path,
    failpoint: str,
    committed: bool,
) -> None:
    ledger, pool = pooled
    env = {"RRNET_FAILPOINT": failpoint}
    crashed = rrnet("ledger", "pool-mode", "on", "-l", ledger, env=env)
    assert crashed.returncode == -signal.SIGKILL
    assert manifest_of(ledger)["txn"] == (2 if committed else 1)
    assert manifest_of(ledger).get("pool_mode", False) is committed
    assert rrnet("verify", "--ledger", ledger).returncode == 0
    cli_ok(runner, "ledger", "pool-mode", "on", "-l", ledger)
    txn = manifest_of(ledger)["txn"]

    export = write_export(tmp_path / "export.csv", 300)
    out = tmp_path / "assigned.csv"
    crashed = rrnet("assign", export, "-l", ledger, "-o", out, env=env)
    assert crashed.returncode == -signal.SIGKILL
    assert not out.exists(), "the output must never appear before the ledger commits"
    assert manifest_of(ledger)["txn"] == txn + (1 if committed else 0)
    assert stats_of(runner, ledger)["pool"]["left"] == (200 if committed else 500)
    assert rrnet("verify", "--ledger", ledger).returncode == 0

    rerun = json.loads(cli_ok(runner, "assign", export, "-l", ledger, "-o", out, "--json"))
    if committed:
        assert (rerun["already_assigned"], rerun["newly_assigned"]) == (300, 0)
    else:
        assert (rerun["already_assigned"], rerun["newly_assigned"]) == (0, 300)
    assert set(pl.read_csv(out, infer_schema=False)["resident_code"]) <= pool
    assert rrnet("verify", out, "--ledger", ledger).returncode == 0
    assert stats_of(runner, ledger)["pool"]["left"] == 200


def test_a_code_refused_in_pool_mode_is_drawn_again_from_the_pool() -> None:
    """A shared ledger may refuse a drawn code (another office recorded it meanwhile):
    in pool mode the redraw comes from the same pool, never from the whole space, and
    never a code tried before."""
    from rrnet_cli.assign import redraw_refused

    pool = np.sort(rcode.strings_to_codes(pool_codes(12, 19)))
    first = pool[:4]

    class Refusing:
        """Refuses every code of the first batch once, then accepts what it is given."""

        def __init__(self) -> None:
            self.recorded: list[int] = []
            self.rounds = 0

        def record_new(self, records: pl.DataFrame) -> np.ndarray:
            self.rounds += 1
            self.recorded += records["code"].to_list()
            return np.empty(0, np.uint64)

    txn = Refusing()
    pending = pl.DataFrame({"code": first, "status": ["assigned"] * 4}).cast({"code": pl.UInt64})
    swaps: list[tuple[list[int], list[int]]] = []
    redraws = redraw_refused(
        txn,  # type: ignore[arg-type]
        pending,
        first[:3],  # three of the four were refused
        taken=[first],
        used=CodeIndex([]),
        pool=pool,
        random_bytes=random_source(20),
        replace=lambda old, new: swaps.append((old.tolist(), new.tolist())),
        nothing="recorded",
    )
    assert redraws == 3 and txn.rounds == 1
    ((old, new),) = swaps
    assert old == first[:3].tolist()
    assert set(new) <= set(pool[4:].tolist()), "from the pool, never a code tried before"
    assert sorted(txn.recorded) == sorted(new)


def test_a_code_that_lost_its_leading_zero_is_named_as_such(
    runner: CliRunner, ledger: Ledger, tmp_path: Path
) -> None:
    """A designation file that went through a spreadsheet: 01916927114 became 1916927114."""
    codes = pool_codes(3, 21)
    zero = next(c for c in pool_codes(400, 22) if c.startswith("0"))
    lines = ["住民票コード", *codes, zero.lstrip("0")]
    source = tmp_path / "designated.csv"
    source.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp932"))
    code, output = run_cli(runner, "ledger", "designate", source, "-l", ledger.path)
    flat = " ".join(output.split())
    assert code == 2, output
    assert "record 5: The code does not have 11 digits (10 digits: did a spreadsheet" in flat
    assert ".;" not in flat and "..." not in flat
    assert manifest_of(ledger.path)["txn"] == 0, "nothing was designated"
