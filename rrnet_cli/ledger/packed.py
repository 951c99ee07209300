"""A sorted set of integers, packed on disk and probed where it lies (Elias–Fano).

The national ledger holds 100 to 130 million used codes. Loaded as ``uint64``
they take 800 MB to 1 GB of memory, which a city's run of a few thousand
residents should not have to pay. This module stores such a set in about
1.17 bytes per member at 100 million (1.10 at 130 million), in a file that is
memory-mapped and probed in place: a question about a few thousand codes reads
a few thousand small pieces of it.

The codes themselves are not stored: a code's last digit is the check digit of
its first ten (``rrnet_cli/code.py``), so a set of valid codes is a set of
10-digit *bodies*, integers below ``10**10``. That saves 3.3 bits a member over
storing 11-digit codes. Callers hand bodies in and ask about bodies.

Why Elias–Fano
--------------
For ``n`` sorted integers below ``u``, Elias–Fano coding takes
``2 + log2(u / n)`` bits each, within half a bit of the information-theoretic
limit for a random set, and, unlike delta or varint coding, any part of it can
be decoded without decoding what comes before. Each value ``v`` is split into

* its **low** ``l = floor(log2(u / n))`` bits, stored as they are, ``l`` bits a
  member (section ``lower``); and
* its **high** part ``v >> l``, stored in unary: member ``i`` (in sorted order)
  sets bit ``i + (v >> l)`` of a bit vector of ``n + (u >> l) + 1`` bits
  (section ``upper``). The bits of one high value form a run of ones, and each
  high value ends with one zero.

At 100 million codes ``l`` is 6: 6 + 1 + 1.56 bits a member, plus the block
table below, about 1.17 bytes a member (the ledger's Parquet column of
``uint64`` values takes 1.6).

Finding a value needs the position where its high part starts in ``upper``. A
**block table** answers it: the universe is cut into blocks of ``2**(l + 6)``
values (64 high values each, 32 to 64 members on average whatever ``n`` is),
and ``starts[b]`` is the number of members below block ``b``. Block ``b``'s
part of ``upper`` then begins at bit ``starts[b] + b * 64``. A probe decodes
only the blocks its values fall in: NumPy unpacks their bits, finds the ones,
and rebuilds the members (``i + high = position``), all blocks of a batch at
once, without a Python loop over members or blocks. A block of 64 high values
is the trade between the table's size (4 bytes a block, 0.1 byte a member at
100 million) and the members a probe decodes (about 40 a probe).

File layout (little-endian; every section starts on an 8-byte boundary)::

    header   72 bytes: magic, format version, l, block bits, n, universe,
             the number of blocks and the byte offset of each section
    upper    the unary high parts, bit i of byte k is bit 8k + i
    lower    the low parts, l bits a member, packed the same way, then 8
             zero bytes so that any member's bits can be read as one uint64
    starts   (blocks + 1) uint32 (uint64 from 2**32 members): members
             below each block

A file is written once, in one pass over sorted input (``PackedWriter``), and
never changed: a set with more members is a new file.

Groundwork: no ledger uses it yet. The folder ledger still loads its codes
(``LedgerState``); delta segments, their merge into a new packed file, the
upgrade of existing ledgers, and verify and copy streaming through it come next.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

#: The universe of code bodies: 10 digits.
BODIES = 10**10
MAGIC = b"RRNETEF\x00"
VERSION = 1
#: log2 of the high values per block: 64 high values, 32 to 64 members a block.
BLOCK_HIGH_BITS = 6
_HEADER = struct.Struct("<8sIIIIQQQQQQ")
HEADER_SIZE = _HEADER.size  # 72
#: Members decoded at once when a whole file is read (``chunks``): 32 MB of uint64.
CHUNK = 1 << 22
#: Bytes after ``lower`` so that an 8-byte read at any member's bits stays in the file.
_LOWER_PAD = 8


class PackedError(ValueError):
    """A packed set that is not what its header says (damaged, cut short, or not one)."""


def low_bits(count: int, universe: int) -> int:
    """Bits kept as they are per member: ``floor(log2(universe / count))``, at least 0.

    An empty set keeps every bit low, so that its upper section is one block.

    >>> low_bits(100_000_000, 10**10)
    6
    >>> low_bits(1, 10**10)
    33
    >>> low_bits(0, 10**10), low_bits(10**10, 10**10)
    (34, 0)
    """
    if count <= 0:
        return (universe - 1).bit_length()
    if universe <= count:
        return 0
    return math.floor(math.log2(universe / count))


@dataclass(frozen=True)
class Geometry:
    """Where everything lies in a packed set of ``count`` members below ``universe``."""

    count: int
    universe: int
    low: int
    block_bits: int

    @classmethod
    def of(cls, count: int, universe: int) -> Geometry:
        low = low_bits(count, universe)
        return cls(count, universe, low, low + BLOCK_HIGH_BITS)

    @property
    def blocks(self) -> int:
        highs = ((self.universe - 1) >> self.low) + 1
        return -(-highs // (1 << BLOCK_HIGH_BITS))

    @property
    def upper_bits(self) -> int:
        """One bit a member and one zero ending each high value of every block."""
        return self.count + (self.blocks << BLOCK_HIGH_BITS)

    @property
    def upper_offset(self) -> int:
        return HEADER_SIZE

    @property
    def lower_offset(self) -> int:
        return _align(self.upper_offset + -(-self.upper_bits // 8))

    @property
    def starts_offset(self) -> int:
        return _align(self.lower_offset + -(-self.count * self.low // 8) + _LOWER_PAD)

    @property
    def starts_dtype(self) -> str:
        return "<u4" if self.count < 2**32 else "<u8"

    @property
    def size(self) -> int:
        return self.starts_offset + np.dtype(self.starts_dtype).itemsize * (self.blocks + 1)

    def header(self) -> bytes:
        return _HEADER.pack(
            MAGIC,
            VERSION,
            self.low,
            self.block_bits,
            0,
            self.count,
            self.universe,
            self.blocks,
            self.upper_offset,
            self.lower_offset,
            self.starts_offset,
        ).ljust(HEADER_SIZE, b"\0")


def _align(offset: int) -> int:
    return -(-offset // 8) * 8


# ---------------------------------------------------------------------------
# Writing


class PackedWriter:
    """Writes a packed set in one pass over its members in ascending order.

    The number of members must be known up front (it fixes ``l``): merging a
    packed set with new members knows it, and so does an import that has
    counted its codes. Members come in chunks of any size; each must be
    greater than the one before, and :meth:`close` checks that exactly
    ``count`` came. The target is written in place: callers write to a
    temporary file and rename it, as the ledger does with every file.
    """

    def __init__(self, target: BinaryIO, count: int, universe: int = BODIES) -> None:
        if count < 0 or universe < 1:
            raise ValueError("count must be >= 0 and universe >= 1")
        self.geometry = g = Geometry.of(count, universe)
        self.target = target
        self.written = 0
        self.last = -1
        self.block_counts = np.zeros(g.blocks, dtype=np.int64)
        # The upper section: bytes before ``upper_byte`` are written; ``upper_carry``
        # holds the bits set so far in byte ``upper_byte``.
        self.upper_byte = 0
        self.upper_carry = 0
        # The lower section: bits not yet making a whole byte.
        self.lower_pending = np.zeros(0, dtype=np.uint8)
        self.lower_written = 0
        target.seek(0)
        target.write(g.header())

    def add(self, members: np.ndarray) -> None:
        """Append the next members (ascending, each above every earlier one)."""
        g = self.geometry
        values = np.asarray(members, dtype=np.uint64)
        if not len(values):
            return
        if int(values[0]) <= self.last or bool(np.any(values[1:] <= values[:-1])):
            raise ValueError("members must be unique and in ascending order")
        if int(values[-1]) >= g.universe:
            raise ValueError(f"a member is not below the universe ({g.universe})")
        if self.written + len(values) > g.count:
            raise ValueError(f"more than the {g.count} members announced")
        for start in range(0, len(values), CHUNK):
            self._add(values[start : start + CHUNK])
        self.last = int(values[-1])

    def _add(self, values: np.ndarray) -> None:
        g = self.geometry
        index = np.arange(self.written, self.written + len(values), dtype=np.uint64)
        self.block_counts += np.bincount(
            (values >> np.uint64(g.block_bits)).astype(np.int64), minlength=g.blocks
        )
        self._add_upper(index + (values >> np.uint64(g.low)))
        if g.low:
            self._add_lower(values & np.uint64((1 << g.low) - 1))
        self.written += len(values)

    def _add_upper(self, positions: np.ndarray) -> None:
        # Each member sets one bit; several may share a byte. Bits of one byte are
        # distinct, so their sum is their OR.
        byte = (positions >> np.uint64(3)).astype(np.int64)
        bit = np.left_shift(1, (positions & np.uint64(7)).astype(np.uint8)).astype(np.uint8)
        first, last = int(byte[0]), int(byte[-1])
        dense = np.zeros(last - first + 1, dtype=np.uint8)
        starts = np.flatnonzero(np.r_[True, byte[1:] != byte[:-1]])
        dense[byte[starts] - first] = np.add.reduceat(bit, starts)
        if first == self.upper_byte:
            dense[0] |= self.upper_carry
        else:
            self._write_at(self.geometry.upper_offset + self.upper_byte, bytes([self.upper_carry]))
            self._zeros(
                self.geometry.upper_offset + self.upper_byte + 1, first - self.upper_byte - 1
            )
        self._write_at(self.geometry.upper_offset + first, dense[:-1].tobytes())
        self.upper_byte, self.upper_carry = last, int(dense[-1])

    def _add_lower(self, lows: np.ndarray) -> None:
        low = self.geometry.low
        # One byte a bit, filled a bit position at a time: a (members, l) uint64
        # temporary would take 8 times the memory.
        spread = np.empty((len(lows), low), dtype=np.uint8)
        for k in range(low):
            spread[:, k] = (lows >> np.uint64(k)) & np.uint64(1)
        bits = np.concatenate([self.lower_pending, spread.ravel()])
        whole = len(bits) // 8 * 8
        packed = np.packbits(bits[:whole], bitorder="little")
        self._write_at(self.geometry.lower_offset + self.lower_written, packed.tobytes())
        self.lower_written += len(packed)
        self.lower_pending = bits[whole:]

    def _write_at(self, offset: int, data: bytes) -> None:
        if data:
            self.target.seek(offset)
            self.target.write(data)

    def _zeros(self, offset: int, length: int) -> None:
        block = bytes(min(length, 1 << 20))
        while length > 0:
            piece = block[: min(length, len(block))]
            self._write_at(offset, piece)
            offset += len(piece)
            length -= len(piece)

    def close(self) -> Geometry:
        """Finish the file: the last bits, the zero tail and the block table."""
        g = self.geometry
        if self.written != g.count:
            raise ValueError(f"{self.written} members written, {g.count} announced")
        upper_bytes = -(-g.upper_bits // 8)
        if g.count:
            self._write_at(g.upper_offset + self.upper_byte, bytes([self.upper_carry]))
            self._zeros(g.upper_offset + self.upper_byte + 1, upper_bytes - self.upper_byte - 1)
        else:
            self._zeros(g.upper_offset, upper_bytes)
        if len(self.lower_pending):
            packed = np.packbits(self.lower_pending, bitorder="little")
            self._write_at(g.lower_offset + self.lower_written, packed.tobytes())
            self.lower_written += len(packed)
        self._zeros(
            g.lower_offset + self.lower_written,
            g.starts_offset - g.lower_offset - self.lower_written,
        )
        starts = np.zeros(g.blocks + 1, dtype=g.starts_dtype)
        np.cumsum(self.block_counts, out=starts[1:])
        self._write_at(g.starts_offset, starts.tobytes())
        self.target.seek(0, io.SEEK_END)
        if self.target.tell() != g.size:
            raise AssertionError(f"wrote {self.target.tell()} bytes, the layout says {g.size}")
        return g


def write_packed(
    path: Path, chunks: Iterable[np.ndarray], count: int, universe: int = BODIES
) -> Geometry:
    """Write ``count`` ascending members, given in chunks, to ``path`` and fsync it."""
    with open(path, "wb") as target:
        writer = PackedWriter(target, count, universe)
        for chunk in chunks:
            writer.add(chunk)
        geometry = writer.close()
        target.flush()
        os.fsync(target.fileno())
    return geometry


def pack(members: np.ndarray, universe: int = BODIES) -> bytes:
    """The packed form of a set given as an array (any order; duplicates once), in memory."""
    values = np.unique(np.asarray(members, dtype=np.uint64))
    buffer = io.BytesIO()
    writer = PackedWriter(buffer, len(values), universe)
    writer.add(values)
    writer.close()
    return buffer.getvalue()


# ---------------------------------------------------------------------------
# Reading


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, s + n)`` for each start and length, vectorised."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    before = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.int64) + np.repeat(starts - before, lengths)


class PackedCodes:
    """A packed set, read from its bytes (a memory map of the file, or bytes in memory).

    ``member`` and ``contains`` answer membership; ``chunks`` gives every member
    in ascending order, a bounded number at a time. Nothing is decoded until
    asked, and only the blocks a question needs are.
    """

    def __init__(self, data: bytes | np.ndarray | memoryview, source: str = "packed set") -> None:
        buffer = np.frombuffer(data, dtype=np.uint8)
        if len(buffer) < HEADER_SIZE:
            raise PackedError(f"{source}: too short to be a packed set")
        fields = _HEADER.unpack(buffer[: _HEADER.size].tobytes())
        magic, version, low, block_bits, _, count, universe, blocks = fields[:8]
        if magic != MAGIC:
            raise PackedError(f"{source}: not a packed set (wrong magic)")
        if version != VERSION:
            raise PackedError(f"{source}: format version {version}, this rrnet reads {VERSION}")
        g = Geometry.of(count, universe)
        if (low, block_bits, blocks) != (g.low, g.block_bits, g.blocks) or fields[8:] != (
            g.upper_offset,
            g.lower_offset,
            g.starts_offset,
        ):
            raise PackedError(f"{source}: the header does not add up (damaged)")
        if len(buffer) != g.size:
            raise PackedError(f"{source}: {len(buffer)} bytes where {g.size} belong (cut short?)")
        self.geometry = g
        self.source = source
        self.upper = buffer[g.upper_offset : g.lower_offset]
        self.lower = buffer[g.lower_offset : g.starts_offset]
        self.starts = buffer[g.starts_offset :].view(g.starts_dtype)
        # The lower section as little-endian words (its offset is a multiple of 8 and
        # 8 zero bytes follow it, so a member's bits never run past its end).
        self.lower_words = buffer[g.lower_offset : g.starts_offset].view("<u8")
        if int(self.starts[0]) != 0 or int(self.starts[-1]) != count:
            raise PackedError(f"{source}: the block table does not add up (damaged)")

    @classmethod
    def open(cls, path: Path) -> PackedCodes:
        """Map a packed file read-only: its pages are read only when a probe touches them."""
        size = os.path.getsize(path)
        if size == 0:
            raise PackedError(f"{path}: empty file")
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
        return cls(mapped, str(path))

    def __len__(self) -> int:
        return self.geometry.count

    @property
    def nbytes(self) -> int:
        return self.geometry.size

    # -- decoding ------------------------------------------------------------

    def _decode(self, blocks: np.ndarray) -> np.ndarray:
        """Every member of the given blocks (ascending block numbers), ascending."""
        g = self.geometry
        blocks = np.asarray(blocks, dtype=np.int64)
        first = self.starts[blocks].astype(np.int64)
        counts = self.starts[blocks + 1].astype(np.int64) - first
        keep = counts > 0
        blocks, first, counts = blocks[keep], first[keep], counts[keep]
        if not len(blocks):
            return np.zeros(0, dtype=np.uint64)
        highs_per_block = 1 << BLOCK_HIGH_BITS
        # Block b's bits in ``upper``: from starts[b] + b * 64, counts[b] + 64 of them.
        bit_start = first + blocks * highs_per_block
        bit_length = counts + highs_per_block
        byte_start = bit_start >> 3
        byte_length = ((bit_start + bit_length + 7) >> 3) - byte_start
        bits = np.unpackbits(self.upper[_ranges(byte_start, byte_length)], bitorder="little")
        ones = np.flatnonzero(bits)
        # Which block each one belongs to (through its byte), and its place in that
        # block's bits.
        byte_owner = np.repeat(np.arange(len(blocks), dtype=np.int64), byte_length)
        owner = byte_owner[ones >> 3]
        bits_before = np.cumsum(byte_length * 8) - byte_length * 8
        place = ones - bits_before[owner] - (bit_start[owner] & 7)
        inside = (place >= 0) & (place < bit_length[owner])
        owner, place = owner[inside], place[inside]
        if not np.array_equal(np.bincount(owner, minlength=len(blocks)), counts):
            raise PackedError(f"{self.source}: a block holds other members than its table says")
        rank = np.arange(len(owner), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        high = (place - rank).astype(np.uint64)
        index = first[owner] + rank
        values = (blocks[owner].astype(np.uint64) << np.uint64(g.block_bits)) | (
            high << np.uint64(g.low)
        )
        if g.low:
            values |= self._lows(index)
        return values

    def _lows(self, index: np.ndarray) -> np.ndarray:
        """The low ``l`` bits of the members at these indices."""
        low = self.geometry.low
        bit = index.astype(np.uint64) * np.uint64(low)
        word = (bit >> np.uint64(6)).astype(np.int64)
        offset = bit & np.uint64(63)
        # A member's bits start in one word and may end in the next. The second
        # shift is split in two so that no shift is by 64 (undefined for uint64).
        value = self.lower_words[word] >> offset
        value |= (self.lower_words[word + 1] << np.uint64(1)) << (np.uint64(63) - offset)
        return value & np.uint64((1 << low) - 1)

    # -- questions -----------------------------------------------------------

    def member(self, sorted_needles: np.ndarray) -> np.ndarray:
        """Boolean mask over ``sorted_needles`` (ascending): which are members."""
        needles = np.asarray(sorted_needles, dtype=np.uint64)
        found = np.zeros(len(needles), dtype=bool)
        g = self.geometry
        inside = needles < np.uint64(g.universe)
        if not g.count or not bool(inside.any()):
            return found
        blocks = needles[inside] >> np.uint64(g.block_bits)
        wanted = np.unique(blocks).astype(np.int64)
        # Decode a bounded number of members at a time: a probe of a million codes
        # touches every block of a national ledger.
        per_block = (self.starts[wanted + 1] - self.starts[wanted]).astype(np.int64)
        edges = _chunk_edges(per_block, CHUNK)
        positions = np.flatnonzero(inside)
        for lo, hi in itertools.pairwise(edges):
            members = self._decode(wanted[lo:hi])
            if not len(members):
                continue
            chosen = (blocks >= np.uint64(wanted[lo])) & (blocks <= np.uint64(wanted[hi - 1]))
            probe = needles[positions[chosen]]
            at = np.searchsorted(members, probe)
            at[at == len(members)] = len(members) - 1
            found[positions[chosen]] = members[at] == probe
        return found

    def contains(self, needles: np.ndarray) -> np.ndarray:
        """Boolean mask over ``needles`` in any order: which are members."""
        needles = np.asarray(needles, dtype=np.uint64)
        if len(needles) < 2 or bool(np.all(needles[1:] >= needles[:-1])):
            return self.member(needles)
        order = np.argsort(needles, kind="stable")
        found = np.empty(len(needles), dtype=bool)
        found[order] = self.member(needles[order])
        return found

    def chunks(self, size: int = CHUNK) -> Iterator[np.ndarray]:
        """Every member in ascending order, about ``size`` at a time."""
        per_block = np.diff(self.starts.astype(np.int64))
        edges = _chunk_edges(per_block, size)
        for lo, hi in itertools.pairwise(edges):
            members = self._decode(np.arange(lo, hi, dtype=np.int64))
            if len(members):
                yield members

    def check(self) -> None:
        """Decode everything and check that the members are unique, ascending and
        below the universe, as many as the header says. Raises PackedError."""
        seen, last = 0, -1
        for members in self.chunks():
            if int(members[0]) <= last or bool(np.any(members[1:] <= members[:-1])):
                raise PackedError(f"{self.source}: members out of order (damaged)")
            last = int(members[-1])
            seen += len(members)
        if seen != len(self) or last >= self.geometry.universe:
            raise PackedError(f"{self.source}: {seen} members decoded, {len(self)} recorded")


def _chunk_edges(per_block: np.ndarray, size: int) -> list[int]:
    """Cut a run of blocks into consecutive groups of at most about ``size`` members
    (a block larger than ``size`` is a group alone). Returns the group edges."""
    if not len(per_block):
        return [0]
    total = np.cumsum(per_block)
    edges = [0]
    while edges[-1] < len(per_block):
        start = edges[-1]
        base = int(total[start - 1]) if start else 0
        end = int(np.searchsorted(total, base + size, side="right"))
        edges.append(max(end, start + 1))
    return edges
