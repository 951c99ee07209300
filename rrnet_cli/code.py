"""Resident record code (住民票コード, Japan's Basic Resident Register code).

The resident record code is the number written on every resident record of the
Basic Resident Register Network (住民基本台帳ネットワークシステム). It is
11 digits: 10 random digits followed by one check digit
(住民基本台帳法施行規則 第1条). The check digit is defined by
平成14年総務省告示第436号: counting the body's digits P_n from the right
(n = 1..10) with weights Q_n = n + 1 for n <= 6 and n - 5 for n >= 7, take
r = sum(P_n * Q_n) mod 11; the check digit is 0 when r <= 1, else 11 - r.

A code is a string: leading zeros are significant and must never be lost.

>>> validate('12345678903')
'12345678903'
>>> validate('１２３４５ ６７８９０-３')
'12345678903'
>>> calc_check_digit('7093537819')
'0'
>>> validate('12345678904')
Traceback (most recent call last):
    ...
rrnet_cli.code.InvalidChecksum: The code's check digit does not match.
>>> validate('1234567890')
Traceback (most recent call last):
    ...
rrnet_cli.code.InvalidLength: The code has 10 digits; a resident record code has 11.
>>> validate('1234567890A')
Traceback (most recent call last):
    ...
rrnet_cli.code.InvalidFormat: The code contains characters other than digits.
>>> is_valid('00000000060')
True
>>> format('00000000060')
'0000 0000 060'

The same checks come vectorised for whole columns: ``calc_check_digits`` and
``codes_from_bodies`` work on NumPy integer arrays, ``validate_array`` on any
sequence or Arrow array of strings, returning one reason (or None) per element.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "BODY_LENGTH",
    "BODY_SPACE",
    "LENGTH",
    "InvalidChecksum",
    "InvalidCode",
    "InvalidFormat",
    "InvalidLength",
    "calc_check_digit",
    "calc_check_digits",
    "codes_from_bodies",
    "codes_to_strings",
    "compact",
    "compact_array",
    "format",
    "is_valid",
    "strings_to_codes",
    "validate",
    "validate_array",
]

LENGTH = 11
BODY_LENGTH = 10
#: Number of distinct bodies: codes are drawn uniformly from [0, BODY_SPACE).
BODY_SPACE = 10**BODY_LENGTH

# Weights for the body's digits read left to right (P_10 .. P_1).
_WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
#: What ``compact`` drops after NFKC: white space, the hyphen-minus, and the other
#: dashes common in spreadsheets (U+2010..U+2015, U+2212; NFKC already maps the
#: ideographic space and the full-width hyphen). One pattern for Python's ``re``,
#: Arrow's RE2 and Polars alike: the class is spelt out rather than ``\s``, whose
#: meaning differs between those engines, and the dashes are literal characters.
SEPARATOR_PATTERN = "[ \t\n\r\f\v\\-\u2010-\u2015\u2212]"
_SEPARATOR_RE = re.compile(SEPARATOR_PATTERN)


class InvalidCode(ValueError):
    """Base class of every reason a resident record code is not valid."""

    message = "The code is not valid."

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)


class InvalidFormat(InvalidCode):
    """The code contains something other than digits."""

    message = "The code contains characters other than digits."


class InvalidLength(InvalidCode):
    """The code does not have 11 digits."""

    message = "The code does not have 11 digits."


class InvalidChecksum(InvalidCode):
    """The check digit does not match the body."""

    message = "The code's check digit does not match."


def compact(code: str) -> str:
    """Normalise a code: NFKC (full-width digits to ASCII), drop spaces and hyphens.

    >>> compact(' 1234-5678-903 ')
    '12345678903'
    """
    return _SEPARATOR_RE.sub("", unicodedata.normalize("NFKC", str(code)))


def compact_array(codes: Iterable[str | None] | pa.Array | pa.ChunkedArray) -> pa.Array:
    """Vectorised ``compact``: an Arrow string array, with empty values as null.

    >>> compact_array(['１２３４５ ６７８９０-３', ' ', None, '12345678903']).to_pylist()
    ['12345678903', None, None, '12345678903']
    """
    arr = _string_array(codes)
    if len(arr) and not pc.all(pc.match_substring_regex(arr, "^[0-9]*$")).as_py():
        arr = pc.replace_substring_regex(pc.utf8_normalize(arr, "NFKC"), SEPARATOR_PATTERN, "")
    return pc.if_else(pc.equal(arr, ""), pa.scalar(None, pa.string()), arr)


def _string_array(codes: Iterable[str | None] | pa.Array | pa.ChunkedArray) -> pa.Array:
    arr = (
        codes
        if isinstance(codes, pa.Array | pa.ChunkedArray)
        else pa.array(list(codes), pa.string())
    )
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return pc.cast(arr, pa.string())


def calc_check_digit(body: str) -> str:
    """Return the check digit for a 10-digit body (given as a string of digits)."""
    if len(body) != BODY_LENGTH or not _is_ascii_digits(body):
        raise InvalidFormat("A code body is exactly 10 ASCII digits.")
    r = sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11
    return "0" if r <= 1 else str(11 - r)


def validate(code: str) -> str:
    """Return the compacted code if it is valid; raise an ``InvalidCode`` otherwise."""
    code = compact(code)
    if not _is_ascii_digits(code):
        raise InvalidFormat()
    if len(code) != LENGTH:
        raise InvalidLength(
            f"The code has {len(code)} digits; a resident record code has {LENGTH}."
        )
    if calc_check_digit(code[:BODY_LENGTH]) != code[-1]:
        raise InvalidChecksum()
    return code


def is_valid(code: str) -> bool:
    """Tell whether the code is valid, without saying why."""
    try:
        return bool(validate(code))
    except InvalidCode:
        return False


def format(code: str) -> str:
    """Return the code grouped 4-4-3 for reading aloud and copying by eye."""
    code = compact(code)
    return " ".join((code[:4], code[4:8], code[8:]))


def _is_ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) > 0


# --------------------------------------------------------------------------
# Vectorised versions. Codes travel as uint64 integers inside the ledger and
# the drawing step (fast to sort and search) and as 11-character strings
# everywhere a person or a file sees them.


def _half_tables() -> tuple[np.ndarray, np.ndarray]:
    """Weighted digit sums of every 5-digit half of a body, for table lookups.

    The low half holds P_1..P_5 (weights 2..6), the high half P_6..P_10
    (weights 7, 2, 3, 4, 5). Looking both up replaces ten 64-bit divisions per
    code with one, which matters at 100 million codes.
    """
    halves = np.arange(100_000, dtype=np.int64)
    low = np.zeros(100_000, dtype=np.int64)
    high = np.zeros(100_000, dtype=np.int64)
    rest = halves.copy()
    for n in range(1, 6):
        digit = rest % 10
        rest //= 10
        low += digit * (n + 1)
        m = n + 5  # the same digit position in the high half is P_{n+5}
        high += digit * (m + 1 if m <= 6 else m - 5)
    return low.astype(np.uint8), high.astype(np.uint8)


_LOW_SUMS, _HIGH_SUMS = _half_tables()
#: Check digit for every possible weighted sum (at most 9 * (20 + 21) = 369).
_CHECK_BY_SUM = np.array([0 if t % 11 <= 1 else 11 - t % 11 for t in range(370)], np.uint8)


def calc_check_digits(bodies: np.ndarray) -> np.ndarray:
    """Check digits (uint8) for an array of bodies in [0, 10**10)."""
    bodies = np.asarray(bodies, dtype=np.uint64)
    # Bodies are below 2**53: float division is exact enough to split them into
    # 5-digit halves (a correctly rounded quotient never crosses an integer), and
    # far faster than 64-bit integer division. Work in place: at 100 million
    # codes every temporary array costs more than the arithmetic.
    high = np.divide(bodies, 100_000.0).astype(np.int64)
    low = high * 100_000
    np.subtract(bodies.view(np.int64), low, out=low)
    total = _LOW_SUMS[low].astype(np.uint16)
    total += _HIGH_SUMS[high]
    return _CHECK_BY_SUM[total]


def codes_from_bodies(bodies: np.ndarray) -> np.ndarray:
    """Full codes as integers (body * 10 + check digit) for an array of bodies."""
    bodies = np.asarray(bodies, dtype=np.uint64)
    codes = bodies * np.uint64(10)
    codes += calc_check_digits(bodies)
    return codes


def codes_are_valid(codes: np.ndarray) -> np.ndarray:
    """Boolean mask: which integer codes (< 10**11) carry the right check digit."""
    codes = np.asarray(codes, dtype=np.uint64)
    in_range = codes < np.uint64(BODY_SPACE * 10)
    if not in_range.all():
        codes = np.where(in_range, codes, np.uint64(0))
    # Codes are below 2**53, so float division splits off the check digit exactly.
    bodies = np.divide(codes, 10.0).astype(np.int64)
    check = bodies * 10
    np.subtract(codes.view(np.int64), check, out=check)
    return in_range & (calc_check_digits(bodies.view(np.uint64)) == check)


def codes_to_strings(codes: np.ndarray) -> pa.Array:
    """Integer codes to zero-padded 11-character strings (an Arrow string array)."""
    arr = pa.array(np.asarray(codes, dtype=np.uint64))
    return pc.utf8_lpad(pc.cast(arr, pa.string()), LENGTH, "0")


def strings_to_codes(codes: pa.Array | pa.ChunkedArray | Sequence[str]) -> np.ndarray:
    """Valid 11-digit code strings to uint64. Call ``validate_array`` first."""
    arr = codes if isinstance(codes, pa.Array | pa.ChunkedArray) else pa.array(codes)
    return np.asarray(pc.cast(arr, pa.uint64()).to_numpy(zero_copy_only=False), np.uint64)


_REASONS = {
    "format": InvalidFormat.message,
    "length": InvalidLength.message,
    "checksum": InvalidChecksum.message,
}


def validate_array(codes: Iterable[str | None] | pa.Array | pa.ChunkedArray) -> list[str | None]:
    """Vectorised ``validate``: one reason per element, or None when valid or null.

    The input must already be compacted (see ``compact_array``).

    >>> for reason in validate_array(['12345678903', '1234567890', '12345678904', None, 'x']):
    ...     print(reason)
    None
    The code does not have 11 digits.
    The code's check digit does not match.
    None
    The code contains characters other than digits.
    """
    arr = _string_array(codes)
    digits = pc.fill_null(pc.match_substring_regex(arr, r"^[0-9]+$"), True)
    length_ok = pc.fill_null(pc.equal(pc.utf8_length(arr), LENGTH), True)
    well_formed = pc.and_(digits, length_ok)
    safe = pc.if_else(well_formed, arr, pa.scalar("00000000000"))
    ints = strings_to_codes(pc.fill_null(safe, "00000000000"))
    checksum_ok = codes_are_valid(ints)
    reason = np.full(len(arr), None, dtype=object)
    reason[~checksum_ok] = _REASONS["checksum"]
    reason[~length_ok.to_numpy(zero_copy_only=False)] = _REASONS["length"]
    reason[~digits.to_numpy(zero_copy_only=False)] = _REASONS["format"]
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    reason[nulls] = None
    return reason.tolist()
