"""The packed used-code set answers exactly as a Python set does.

``rrnet_cli/ledger/packed.py`` stores a sorted set of code bodies in Elias–Fano
form. Hypothesis draws sets of every shape the ledger meets or could meet:
empty, one member, the universe's first and last values, dense runs (a pool of
consecutive codes), clusters within one block, and sparse random codes; in small
universes, where every geometry is reached quickly, and in the real one.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrnet_cli.ledger.packed import (
    BODIES,
    PackedCodes,
    PackedError,
    PackedWriter,
    pack,
    write_packed,
)


@st.composite
def sets(draw: st.DrawFn) -> tuple[set[int], int]:
    """A set of members and its universe: random, a dense run, or both."""
    universe = draw(st.sampled_from([1, 2, 7, 64, 1000, 2**20, BODIES]))
    members = set(draw(st.lists(st.integers(0, universe - 1), max_size=300)))
    if draw(st.booleans()):
        start = draw(st.integers(0, universe - 1))
        length = draw(st.integers(1, 2000))
        members |= set(range(start, min(universe, start + length)))
    if draw(st.booleans()):
        members |= {0, universe - 1}
    return members, universe


def probes_for(members: set[int], universe: int, extra: list[int]) -> np.ndarray:
    near = [v + d for v in list(members)[:200] for d in (-1, 0, 1)]
    edges = [0, 1, universe - 1, universe, universe + 1, 2**63]
    return np.array([p for p in near + edges + extra if 0 <= p < 2**64], dtype=np.uint64)


@settings(max_examples=300, deadline=None)
@given(shape=sets(), extra=st.lists(st.integers(0, 2**40), max_size=50))
def test_membership_is_a_sets(shape: tuple[set[int], int], extra: list[int]) -> None:
    members, universe = shape
    packed = PackedCodes(pack(np.array(sorted(members), dtype=np.uint64), universe))
    assert len(packed) == len(members)
    probes = probes_for(members, universe, extra)
    expected = np.array([int(p) in members for p in probes], dtype=bool)
    assert np.array_equal(packed.contains(probes), expected)
    ordered = np.sort(probes)
    assert np.array_equal(
        packed.member(ordered), np.array([int(p) in members for p in ordered], dtype=bool)
    )


@settings(max_examples=200, deadline=None)
@given(shape=sets(), size=st.integers(1, 500))
def test_every_member_comes_back_in_order(shape: tuple[set[int], int], size: int) -> None:
    members, universe = shape
    packed = PackedCodes(pack(np.array(sorted(members), dtype=np.uint64), universe))
    chunks = list(packed.chunks(size))
    decoded = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint64)
    assert decoded.tolist() == sorted(members)
    packed.check()


@settings(max_examples=50, deadline=None)
@given(
    members=st.lists(st.integers(0, BODIES - 1), min_size=1, max_size=400, unique=True),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_chunks_of_any_size_write_the_same_file(members: list[int], cuts: list[int]) -> None:
    values = np.array(sorted(members), dtype=np.uint64)
    whole = pack(values)
    buffer = io.BytesIO()
    writer = PackedWriter(buffer, len(values))
    edges = sorted({0, len(values), *(c for c in cuts if c <= len(values))})
    for lo, hi in itertools.pairwise(edges):
        writer.add(values[lo:hi])
    writer.close()
    assert buffer.getvalue() == whole


def test_a_national_sized_sample_probes_exactly_from_a_mapped_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(20261208)
    values = np.unique(rng.integers(0, BODIES, 2_000_000, dtype=np.uint64))
    path = tmp_path / "codes.packed"
    write_packed(path, np.array_split(values, 7), len(values))
    packed = PackedCodes.open(path)
    # Members, their neighbours and random values, in no order.
    probes = np.concatenate(
        [values[::97], values[::101] + np.uint64(1), rng.integers(0, BODIES, 50_000, np.uint64)]
    )
    rng.shuffle(probes)
    assert np.array_equal(packed.contains(probes), np.isin(probes, values))
    # 2 + log2(10**10 / 2 million) bits and the block table: 1.85 bytes a member
    # here; the denser national ledger packs tighter (benchmarks/bench_packed.py).
    assert path.stat().st_size < 1.9 * len(values)


def test_the_writer_refuses_what_would_make_a_wrong_set() -> None:
    with pytest.raises(ValueError, match="ascending"):
        PackedWriter(io.BytesIO(), 3).add(np.array([5, 4, 9], dtype=np.uint64))
    with pytest.raises(ValueError, match="ascending"):
        PackedWriter(io.BytesIO(), 3).add(np.array([5, 5, 9], dtype=np.uint64))
    writer = PackedWriter(io.BytesIO(), 3)
    writer.add(np.array([5, 9], dtype=np.uint64))
    with pytest.raises(ValueError, match="ascending"):
        writer.add(np.array([9], dtype=np.uint64))
    with pytest.raises(ValueError, match="2 members written, 3 announced"):
        writer.close()
    with pytest.raises(ValueError, match="more than the 1"):
        PackedWriter(io.BytesIO(), 1).add(np.array([1, 2], dtype=np.uint64))
    with pytest.raises(ValueError, match="universe"):
        PackedWriter(io.BytesIO(), 1).add(np.array([BODIES], dtype=np.uint64))


def test_a_damaged_file_is_named_not_misread(tmp_path: Path) -> None:
    data = pack(np.arange(0, 10**6, 7, dtype=np.uint64))
    with pytest.raises(PackedError, match="cut short"):
        PackedCodes(data[:-4], "codes.packed")
    with pytest.raises(PackedError, match="not a packed set"):
        PackedCodes(b"PAR1" + data[4:], "codes.packed")
    with pytest.raises(PackedError, match="too short"):
        PackedCodes(b"", "codes.packed")
    # A flipped bit in the unary part: the block no longer holds what its table says.
    damaged = bytearray(data)
    damaged[80] ^= 0xFF
    with pytest.raises(PackedError, match=r"codes\.packed"):
        PackedCodes(bytes(damaged), "codes.packed").check()
    empty = tmp_path / "empty.packed"
    empty.write_bytes(b"")
    with pytest.raises(PackedError, match="empty file"):
        PackedCodes.open(empty)
