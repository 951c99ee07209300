"""The ledger's guarantees : each one shown, not claimed."""

from __future__ import annotations

import json
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from backends import LedgerBackend, PostgresBackend
from helpers import (
    MUNICIPALITY,
    assign_in_subprocess,
    rrnet,
    start_assign_in_subprocess,
    write_exports,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rrnet_cli import code as rcode
from rrnet_cli.errors import LedgerBusy, LedgerError, UsageError
from rrnet_cli.importer import import_codes
from rrnet_cli.ledger import Ledger, check_integrity


def codes_file(path: Path, codes: list[str]) -> Path:
    path.write_text("\n".join(codes) + "\n", encoding="utf-8")
    return path


def random_codes(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    bodies = rng.choice(rcode.BODY_SPACE, size=n, replace=False).astype(np.uint64)
    return rcode.codes_to_strings(rcode.codes_from_bodies(bodies)).to_pylist()


# -- creating and opening ---------------------------------------------------------


def test_init_makes_private_folder_and_files(ledger: Ledger) -> None:
    assert stat.S_IMODE(ledger.path.stat().st_mode) == 0o700
    assert stat.S_IMODE((ledger.path / "segments").stat().st_mode) == 0o700
    for name in ("manifest.json", "lock"):
        assert stat.S_IMODE((ledger.path / name).stat().st_mode) == 0o600


def test_segments_are_private(ledger: Ledger, tmp_path: Path) -> None:
    import_codes(ledger, codes_file(tmp_path / "c.txt", random_codes(10, 1)))
    segments = list((ledger.path / "segments").iterdir())
    assert segments
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in segments)


def test_init_refuses_existing_ledger_or_folder(ledger: Ledger, tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="already exists"):
        Ledger.init(ledger.path, municipality=MUNICIPALITY)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(LedgerError, match="already exists"):
        Ledger.init(tmp_path / "full", municipality=MUNICIPALITY)


def test_open_refuses_anything_but_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="There is no ledger"):
        Ledger.open(tmp_path / "nope")
    assert not (tmp_path / "nope").exists(), "opening must never create a ledger"
    (tmp_path / "file").write_text("x")
    with pytest.raises(LedgerError, match="is a file"):
        Ledger.open(tmp_path / "file")
    (tmp_path / "dir").mkdir()
    with pytest.raises(LedgerError, match="not an rrnet ledger"):
        Ledger.open(tmp_path / "dir")


def test_corrupted_manifest_is_refused(ledger: Ledger) -> None:
    (ledger.path / "manifest.json").write_text('{"format": "rrnet-ledger", "vers')
    with pytest.raises(LedgerError, match="cannot be read"):
        Ledger.open(ledger.path)


# -- transactions -----------------------------------------------------------------


def _records(codes: list[str], status: str = "assigned", start: int = 0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "code": rcode.strings_to_codes(codes),
            "status": [status] * len(codes),
            "municipality": [MUNICIPALITY] * len(codes),
            "resident_id": [f"{i:06d}" for i in range(start, start + len(codes))],
        }
    )


def test_failed_transaction_leaves_no_trace(backend: LedgerBackend) -> None:
    before = backend.contents()
    codes = random_codes(5, 2)
    store = backend.store()
    with pytest.raises(RuntimeError), store.transaction() as txn:
        assert len(txn.record_new(_records(codes))) == 0, "recorded in the transaction"
        raise RuntimeError("disk full, say")
    assert backend.contents() == before
    assert store.stats()["codes_used"] == 0
    with store.reading() as view:
        assert view.lookup(rcode.strings_to_codes(codes))["status"].null_count() == 5


def test_committed_codes_are_used_and_owned(ledger: Ledger) -> None:
    codes = random_codes(5, 3)
    with ledger.transaction() as txn:
        txn.add_records(_records(codes))
    state = ledger.snapshot()
    ints = rcode.strings_to_codes(codes)
    assert state.codes.contains(ints).all()
    owners = state.lookup(ints)
    assert owners["resident_id"].to_list() == [f"{i:06d}" for i in range(5)]
    assert set(owners["status"]) == {"assigned"}


def test_second_writer_waits_then_fails_clearly(ledger: Ledger) -> None:
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with ledger.lock():
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    holding.wait(5)
    try:
        started = time.monotonic()
        with (
            pytest.raises(LedgerBusy, match="in use by another run"),
            ledger.transaction(timeout=0.3),
        ):
            pass
        assert time.monotonic() - started >= 0.3
    finally:
        release.set()
        thread.join()
    with ledger.transaction(timeout=1):  # free again once the holder is done
        pass


def test_lock_is_released_when_the_holder_is_killed(ledger: Ledger) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rrnet_cli.ledger import Ledger\n"
            f"l = Ledger.open({str(ledger.path)!r})\n"
            "with l.lock():\n    print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(LedgerBusy):
            with ledger.lock(timeout=0.2):
                pass
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        with ledger.lock(timeout=5):
            pass
    finally:
        holder.kill()


def test_retired_codes_stay_used_forever(ledger: Ledger) -> None:
    codes = random_codes(3, 4)
    with ledger.transaction() as txn:
        txn.add_records(_records(codes))
    ledger.retire([codes[0]])
    state = ledger.snapshot()
    ints = rcode.strings_to_codes(codes)
    assert state.codes.contains(ints).all()
    assert state.lookup(ints)["status"].to_list() == ["retired", "assigned", "assigned"]
    assert set(state.active_by_resident()["resident_id"]) == {"000001", "000002"}
    assert ledger.stats()["by_status"]["retired"] == 1
    assert check_integrity(ledger).violations == []


def test_retiring_an_unknown_code_is_refused(ledger: Ledger) -> None:
    with pytest.raises(LedgerError, match="not in the ledger"):
        ledger.retire(random_codes(1, 5))


# -- integrity --------------------------------------------------------------------


def test_integrity_catches_a_damaged_segment(ledger: Ledger, tmp_path: Path) -> None:
    import_codes(ledger, codes_file(tmp_path / "c.txt", random_codes(100, 6)))
    assert check_integrity(ledger).violations == []
    segment = next((ledger.path / "segments").iterdir())
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    reasons = [v["reason"] for v in check_integrity(ledger).violations]
    assert any("checksum" in r for r in reasons)


def test_integrity_catches_a_code_drawn_twice(ledger: Ledger, tmp_path: Path) -> None:
    codes = random_codes(2, 7)
    import_codes(ledger, codes_file(tmp_path / "c.txt", codes[:1]))
    with ledger.transaction() as txn:  # bypasses assign's checks on purpose
        txn.add_records(_records(codes))
    reasons = [v["reason"] for v in check_integrity(ledger).violations]
    assert any("already in use" in r for r in reasons)


# -- import -----------------------------------------------------------------------


def test_import_counts_new_repeated_and_known(backend: LedgerBackend, tmp_path: Path) -> None:
    ledger = backend.store()
    codes = random_codes(50, 8)
    first = import_codes(ledger, codes_file(tmp_path / "a.txt", codes[:30] + codes[:5]))
    assert (first.imported, first.repeated_in_file, first.already_in_ledger) == (30, 5, 0)
    second = import_codes(ledger, codes_file(tmp_path / "b.txt", codes))
    assert (second.imported, second.already_in_ledger) == (20, 30)
    stats = ledger.stats()
    assert stats["by_status"]["imported"] == 50
    assert stats["codes_used"] == 50


def test_import_repeats_across_batches_are_dropped(backend: LedgerBackend, tmp_path: Path) -> None:
    ledger = backend.store()
    codes = random_codes(2000, 9)
    result = import_codes(
        ledger, codes_file(tmp_path / "a.txt", codes + codes[::3]), batch_rows=300
    )
    assert result.imported == 2000
    assert result.repeated_in_file == len(codes[::3])
    if backend.kind == "folder":
        assert result.segments == 1, "one import, one sorted segment"
    assert backend.integrity() == []
    assert ledger.stats()["codes_used"] == 2000
    assert backend.transactions() == 1


def test_import_csv_column_and_parquet(backend: LedgerBackend, tmp_path: Path) -> None:
    ledger = backend.store()
    codes = random_codes(20, 10)
    csv_path = tmp_path / "c.csv"
    csv_path.write_text(
        "宛名番号,住民票コード\n" + "".join(f"{i},{c}\n" for i, c in enumerate(codes[:10]))
    )
    assert import_codes(ledger, csv_path).imported == 10
    pq_path = tmp_path / "c.parquet"
    pq.write_table(pa.table({"x": [1] * 10, "code": codes[10:]}), pq_path)
    assert import_codes(ledger, pq_path, column="code").imported == 10
    assert ledger.stats()["by_status"]["imported"] == 20


def test_import_keeps_leading_zeros_and_full_width(backend: LedgerBackend, tmp_path: Path) -> None:
    ledger = backend.store()
    path = codes_file(
        tmp_path / "z.txt", ["00000000060", "０００００００００６０", "1234-5678-903"]
    )
    result = import_codes(ledger, path)
    assert result.imported == 2 and result.repeated_in_file == 1
    with ledger.reading() as view:
        found = view.lookup(rcode.strings_to_codes(["00000000060", "12345678903"]))
    assert found["status"].to_list() == ["imported", "imported"]


def test_integer_parquet_codes_are_refused(backend: LedgerBackend, tmp_path: Path) -> None:
    before = backend.contents()
    path = tmp_path / "ints.parquet"
    pq.write_table(pa.table({"code": [12345678903]}), path)
    with pytest.raises(UsageError, match="leading zeros"):
        import_codes(backend.store(), path)
    assert backend.contents() == before


# -- crashes ----------------------------------------------------------------------


def test_kill_at_random_instants(tmp_path: Path, ledger: Ledger) -> None:
    """SIGKILL assign at random moments; the ledger is always before or after a run."""
    rng = random.Random(20130708)
    exports = write_exports(tmp_path, 6, 3000)
    committed = 0
    for i, export in enumerate(exports):
        out = tmp_path / f"o{i}.csv"
        proc = start_assign_in_subprocess(export, ledger.path, out)
        time.sleep(rng.uniform(0.2, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        manifest = json.loads((ledger.path / "manifest.json").read_text())
        assert manifest["txn"] in (committed, committed + 1)
        if manifest["txn"] == committed + 1:
            # The run committed whole: every resident of the export is recorded.
            committed += 1
            assert manifest["segments"][-1]["rows"] == 3000
        if out.exists():
            assert rrnet("verify", str(out), "--ledger", str(ledger.path)).returncode == 0
        assert rrnet("verify", "--ledger", str(ledger.path)).returncode == 0
    # Finishing the job afterwards gives everyone exactly one code, none duplicated.
    outs = []
    for i, export in enumerate(exports):
        out = tmp_path / f"final{i}.csv"
        assert assign_in_subprocess(export, ledger.path, out).returncode == 0
        outs.append(str(out))
    check = rrnet("verify", *outs, "--ledger", str(ledger.path), "--json")
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)["codes"] == 6 * 3000


def test_concurrent_assigns_serialise_and_never_share_a_code(
    backend: LedgerBackend, tmp_path: Path
) -> None:
    """Runs at once (on PostgreSQL: several offices' clients over TCP) each wait their
    turn; every one is recorded, numbered without gaps; no code is given twice.
    (8 x 50,000 residents: tests/reliability/test_concurrency.py.)"""
    processes, rows = 4, 2000
    exports = write_exports(tmp_path, processes, rows)
    outs = [tmp_path / f"o{i}.csv" for i in range(processes)]
    procs = [
        start_assign_in_subprocess(
            e, backend.location, o, "--lock-timeout", "120", stderr=subprocess.PIPE
        )
        for e, o in zip(exports, outs, strict=True)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
        if isinstance(backend, PostgresBackend):
            assert backend.server.password not in err
    check = rrnet("verify", *outs, "--ledger", backend.location, "--json")
    assert check.returncode == 0, check.stdout
    assert json.loads(check.stdout)["codes"] == processes * rows
    codes = pl.concat([pl.read_csv(o, infer_schema=False) for o in outs])["resident_code"]
    assert codes.n_unique() == processes * rows
    stats = backend.store().stats()
    assert stats["codes_used"] == stats["by_status"]["assigned"] == processes * rows
    log = backend.store().audit_log()
    assert log.intact, log.problems
    assert [r["txn"] for r in log.records] == list(range(processes + 1)), "one per run, no gaps"


# -- invariants under random operation sequences ----------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["assign", "import", "retire", "abort"]),
            st.integers(1, 40),
            st.integers(0, 2**31),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_ledger_invariants_hold_under_any_sequence(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    from rrnet_cli.assign import draw_codes, random_source

    ledger = Ledger.init(tmp_path_factory.mktemp("l") / "ledger", municipality=MUNICIPALITY)
    used_before: set[int] = set()
    next_resident = 0
    for op, n, seed in ops:
        if op in ("assign", "abort"):
            try:
                with ledger.transaction() as txn:
                    codes, _ = draw_codes(
                        n,
                        used=txn.state.codes,
                        taken=np.empty(0, np.uint64),
                        random_bytes=random_source(seed),
                    )
                    txn.add_records(
                        _records(rcode.codes_to_strings(codes).to_pylist(), start=next_resident)
                    )
                    if op == "abort":
                        raise RuntimeError("crash")
                next_resident += n
            except RuntimeError:
                pass
        elif op == "import":
            path = codes_file(tmp_path_factory.mktemp("i") / "c.txt", random_codes(n, seed))
            import_codes(ledger, path)
        elif op == "retire":
            active = ledger.snapshot().active_by_resident()
            if active.height:
                pick = rcode.codes_to_strings(active["code"].head(1).to_numpy()).to_pylist()
                ledger.retire(pick)
        state = ledger.snapshot()
        used_now = set(state.records["code"].to_list())
        for codes, _ in state.codes.groups:
            for chunk in codes.chunks:
                used_now.update(chunk.tolist())
        assert used_before <= used_now, "a used code was forgotten"
        used_before = used_now
        assert check_integrity(ledger).violations == []
