"""The resident record code module: the check-digit test vectors, the five verbs, the error
hierarchy, and the vectorised functions checked against the scalar ones."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rrnet_cli import code as rcode

# Check-digit test vectors: (body, full code, r = weighted sum mod 11).
VECTORS = [
    ("1234567890", "12345678903", 8),
    ("5802617394", "58026173947", 4),
    ("7093537819", "70935378190", 0),
    ("0000000006", "00000000060", 1),
]
WEIGHTS = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)
DIGITS = "0123456789"

bodies_text = st.text(DIGITS, min_size=10, max_size=10)
bodies_int = st.integers(min_value=0, max_value=rcode.BODY_SPACE - 1)


def residue(body: str) -> int:
    """r of the check-digit formula, computed here from the published weights, not by the module."""
    return sum(int(d) * w for d, w in zip(body, WEIGHTS, strict=True)) % 11


def reference_check_digit(body: str) -> str:
    r = residue(body)
    return "0" if r <= 1 else str(11 - r)


def scalar_reason(text: str) -> type[rcode.InvalidCode] | None:
    """The exception class the scalar ``validate`` raises, or None when valid."""
    try:
        rcode.validate(text)
    except rcode.InvalidCode as exc:
        return type(exc)
    return None


REASON_CLASS = {
    rcode.InvalidFormat.message: rcode.InvalidFormat,
    rcode.InvalidLength.message: rcode.InvalidLength,
    rcode.InvalidChecksum.message: rcode.InvalidChecksum,
    None: None,
}


# ---------------------------------------------------------------------------
# the published check-digit test vectors


@pytest.mark.parametrize(("body", "full", "r"), VECTORS)
def test_spec_vectors_scalar(body: str, full: str, r: int) -> None:
    assert residue(body) == r  # the vector really exercises the case it claims
    assert rcode.calc_check_digit(body) == full[-1]
    assert rcode.validate(full) == full
    assert rcode.is_valid(full)


def test_spec_vectors_vectorised() -> None:
    bodies = np.array([int(b) for b, _, _ in VECTORS], dtype=np.uint64)
    expected = [full for _, full, _ in VECTORS]
    assert rcode.calc_check_digits(bodies).tolist() == [int(f[-1]) for f in expected]
    codes = rcode.codes_from_bodies(bodies)
    assert codes.tolist() == [int(f) for f in expected]
    # Leading zeros come back: 00000000060 is not 60.
    assert rcode.codes_to_strings(codes).to_pylist() == expected
    assert rcode.strings_to_codes(expected).tolist() == [int(f) for f in expected]
    assert rcode.codes_are_valid(codes).tolist() == [True] * 4
    assert rcode.validate_array(expected) == [None] * 4


@pytest.mark.parametrize("full", [full for _, full, _ in VECTORS])
def test_every_other_check_digit_is_rejected(full: str) -> None:
    for digit in DIGITS:
        candidate = full[:-1] + digit
        assert rcode.is_valid(candidate) == (candidate == full)


# ---------------------------------------------------------------------------
# compact / format / validate / is_valid


@pytest.mark.parametrize(
    "raw",
    [
        "１２３４５６７８９０３",  # full-width digits
        "１２３４５ ６７８９０-３",
        "1234 5678 903",
        "1234-5678-903",
        "1234\u30005678\u3000903",  # ideographic space
        "1234－5678－903",  # full-width hyphen-minus
        "1234\u22125678\u2010903",  # minus sign, hyphen
        "1234\u20155678\u2013903",  # horizontal bar, en dash
        "\t 12345678903 \n",
    ],
)
def test_compact_normalises_width_spaces_and_hyphens(raw: str) -> None:
    assert rcode.compact(raw) == "12345678903"
    assert rcode.validate(raw) == "12345678903"
    assert rcode.is_valid(raw)


def test_compact_keeps_leading_zeros_and_letters() -> None:
    assert rcode.compact("０００ ００００ ００６０") == "00000000060"
    assert rcode.compact("12a4") == "12a4"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00000000060", "0000 0000 060"),
        ("12345678903", "1234 5678 903"),
        ("１２３４-５６７８-９０３", "1234 5678 903"),
    ],
)
def test_format_groups_4_4_3(raw: str, expected: str) -> None:
    assert rcode.format(raw) == expected


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("1234567890A", rcode.InvalidFormat),
        ("12345６７890x", rcode.InvalidFormat),
        ("", rcode.InvalidFormat),
        ("----", rcode.InvalidFormat),
        ("１２３４５６７８９０", rcode.InvalidLength),
        ("1234567890", rcode.InvalidLength),
        ("123456789031", rcode.InvalidLength),
        ("12345678904", rcode.InvalidChecksum),
        ("70935378191", rcode.InvalidChecksum),
        ("00000000061", rcode.InvalidChecksum),
    ],
)
def test_validate_raises_the_specific_error(raw: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        rcode.validate(raw)
    assert isinstance(info.value, rcode.InvalidCode)
    assert isinstance(info.value, ValueError)
    assert str(info.value)  # a human message, never empty
    assert not rcode.is_valid(raw)


def test_length_error_says_how_many_digits() -> None:
    with pytest.raises(rcode.InvalidLength, match=r"has 10 digits; .* has 11"):
        rcode.validate("1234567890")
    with pytest.raises(rcode.InvalidLength, match="has 12 digits"):
        rcode.validate("123456789031")


def test_exception_hierarchy() -> None:
    for cls in (rcode.InvalidFormat, rcode.InvalidLength, rcode.InvalidChecksum):
        assert issubclass(cls, rcode.InvalidCode)
        assert cls is not rcode.InvalidCode
    assert issubclass(rcode.InvalidCode, ValueError)
    # Catching ValueError is enough for a caller that does not care why.
    with pytest.raises(ValueError, match="check digit"):
        rcode.validate("12345678904")
    # The default messages are distinct, so a user can tell the reasons apart.
    messages = {
        c.message for c in (rcode.InvalidFormat, rcode.InvalidLength, rcode.InvalidChecksum)
    }
    assert len(messages) == 3
    assert str(rcode.InvalidChecksum()) == rcode.InvalidChecksum.message
    assert str(rcode.InvalidFormat("custom")) == "custom"


@pytest.mark.parametrize(
    "body",
    ["123456789", "12345678901", "123456789A", "１２３４５６７８９０", "", "12345 67890"],
)
def test_calc_check_digit_refuses_anything_but_ten_ascii_digits(body: str) -> None:
    with pytest.raises(rcode.InvalidFormat):
        rcode.calc_check_digit(body)


def test_calc_check_digit_error_is_a_code_error() -> None:
    with pytest.raises(rcode.InvalidFormat, match="10 ASCII digits"):
        rcode.calc_check_digit("123456789")


def test_is_valid_answers_false_instead_of_raising() -> None:
    assert rcode.is_valid(None) is False  # type: ignore[arg-type]
    assert rcode.is_valid("not a code") is False
    assert rcode.is_valid("70935378190") is True


# ---------------------------------------------------------------------------
# Vectorised functions agree with the scalar ones


@settings(max_examples=150, deadline=None)
@given(st.lists(bodies_int, min_size=1, max_size=50))
def test_vectorised_check_digits_match_scalar(bodies: list[int]) -> None:
    arr = np.array(bodies, dtype=np.uint64)
    texts = [f"{b:010d}" for b in bodies]
    expected = [t + rcode.calc_check_digit(t) for t in texts]
    assert expected == [t + reference_check_digit(t) for t in texts]
    assert rcode.calc_check_digits(arr).tolist() == [int(e[-1]) for e in expected]
    codes = rcode.codes_from_bodies(arr)
    assert codes.dtype == np.uint64
    assert codes.tolist() == [int(e) for e in expected]
    strings = rcode.codes_to_strings(codes)
    assert strings.to_pylist() == expected
    assert all(len(s) == rcode.LENGTH for s in strings.to_pylist())
    assert rcode.strings_to_codes(strings).tolist() == codes.tolist()
    assert rcode.strings_to_codes(expected).tolist() == codes.tolist()
    assert rcode.codes_are_valid(codes).all()
    assert rcode.validate_array(expected) == [None] * len(expected)
    assert rcode.validate_array(strings) == [None] * len(expected)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2 * 10**11), min_size=1, max_size=50))
def test_codes_are_valid_matches_scalar_on_any_integer(values: list[int]) -> None:
    mask = rcode.codes_are_valid(np.array(values, dtype=np.uint64)).tolist()
    # Integers of 12 digits are never codes; below that, zero-pad to 11.
    assert mask == [v < 10**11 and rcode.is_valid(f"{v:011d}") for v in values]


code_like = st.one_of(
    st.none(),
    bodies_text.map(lambda b: b + rcode.calc_check_digit(b)),  # valid, often with leading 0s
    st.text(DIGITS, min_size=0, max_size=14),  # wrong lengths / checksums
    st.text(DIGITS + "０１２３ -－\u3000aX", min_size=0, max_size=14),
    st.text(max_size=14),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(code_like, min_size=1, max_size=30))
def test_validate_array_matches_scalar(values: list[str | None]) -> None:
    compacted = [None if v is None else rcode.compact(v) for v in values]
    reasons = rcode.validate_array(compacted)
    assert len(reasons) == len(values)
    # Sequences and Arrow arrays (plain and chunked) answer the same.
    assert rcode.validate_array(pa.array(compacted, pa.string())) == reasons
    assert rcode.validate_array(pa.chunked_array([pa.array(compacted, pa.string())])) == reasons
    for value, reason in zip(values, reasons, strict=True):
        if value is None:
            assert reason is None  # nulls are not this function's business
            continue
        assert reason in REASON_CLASS, reason
        assert REASON_CLASS[reason] is scalar_reason(value), value


@settings(max_examples=150, deadline=None)
@given(st.lists(bodies_text.map(lambda b: b + rcode.calc_check_digit(b)), min_size=1))
def test_strings_to_codes_round_trip(codes: list[str]) -> None:
    ints = rcode.strings_to_codes(codes)
    assert rcode.codes_to_strings(ints).to_pylist() == codes


def test_codes_to_strings_pads_to_eleven() -> None:
    assert rcode.codes_to_strings(np.array([0, 60, 12345678903], dtype=np.uint64)).to_pylist() == [
        "00000000000",
        "00000000060",
        "12345678903",
    ]


def test_validate_array_reasons_and_precedence() -> None:
    values = ["12345678903", "1234567890", "12345678904", None, "x", "1234567890x", "", "0" * 12]
    assert rcode.validate_array(values) == [
        None,
        rcode.InvalidLength.message,
        rcode.InvalidChecksum.message,
        None,
        rcode.InvalidFormat.message,
        rcode.InvalidFormat.message,  # format beats length
        rcode.InvalidFormat.message,
        rcode.InvalidLength.message,
    ]


def test_validate_array_on_empty_input() -> None:
    assert rcode.validate_array([]) == []
    assert rcode.validate_array(pa.array([], pa.string())) == []


# ---------------------------------------------------------------------------
# What the check digit detects — and what it does not.
#
# mod 11 with weights 2..7 changes r for every single-digit substitution and
# every adjacent transposition of distinct body digits (11 is prime; the weight
# differences are 1 or 5). But r = 0 and r = 1 both give check digit 0, so an
# error that moves r between 0 and 1 goes unnoticed. Hypothesis finds such
# cases at once for the naive "always detected" property; the exact property is:
# an error is missed if and only if it turns r = 0 into r = 1 or back.


def test_a_single_digit_error_that_is_not_detected() -> None:
    # 00000000060 (r = 1) and 00000000000 (r = 0) differ in one digit; both valid.
    assert rcode.is_valid("00000000060")
    assert rcode.is_valid("00000000000")


def test_an_adjacent_transposition_that_is_not_detected() -> None:
    # Found by hypothesis: swapping body digits 3 and 4 moves r from 1 to 0.
    body = "4212467853"
    swapped = body[:2] + body[3] + body[2] + body[4:]
    assert {residue(body), residue(swapped)} == {0, 1}
    assert rcode.is_valid(body + rcode.calc_check_digit(body))
    assert rcode.is_valid(swapped + rcode.calc_check_digit(body))


@settings(max_examples=500, deadline=None)
@given(bodies_text, st.integers(0, 9), st.integers(1, 9))
def test_single_digit_substitution_in_body_missed_only_between_r0_and_r1(
    body: str, position: int, shift: int
) -> None:
    full = body + rcode.calc_check_digit(body)
    new_digit = str((int(body[position]) + shift) % 10)
    altered_body = body[:position] + new_digit + body[position + 1 :]
    missed = rcode.is_valid(altered_body + full[-1])
    assert missed == ({residue(body), residue(altered_body)} == {0, 1})


@settings(max_examples=200, deadline=None)
@given(bodies_text, st.integers(1, 9))
def test_substitution_of_the_check_digit_is_always_detected(body: str, shift: int) -> None:
    check = rcode.calc_check_digit(body)
    assert not rcode.is_valid(body + str((int(check) + shift) % 10))


@settings(max_examples=500, deadline=None)
@given(bodies_text, st.integers(0, 8))
def test_adjacent_transposition_missed_only_between_r0_and_r1(body: str, position: int) -> None:
    a, b = body[position], body[position + 1]
    swapped = body[:position] + b + a + body[position + 2 :]
    full = body + rcode.calc_check_digit(body)
    missed = rcode.is_valid(swapped + full[-1])
    if a == b:
        assert missed  # not an error at all
    else:
        assert missed == ({residue(body), residue(swapped)} == {0, 1})


def _all_single_digit_errors(bodies: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every body x position x new digit: (original code, altered code, r pair is {0,1})."""
    codes = rcode.codes_from_bodies(bodies)
    originals, altered = [], []
    for position in range(10):
        place = np.uint64(10 ** (10 - position))  # place value in the 11-digit code
        digit = (codes // place) % np.uint64(10)
        for shift in range(1, 10):
            new = (digit + np.uint64(shift)) % np.uint64(10)
            originals.append(codes)
            altered.append(codes - digit * place + new * place)
    return np.concatenate(originals), np.concatenate(altered), codes


def test_single_digit_error_detection_rate_measured() -> None:
    """All 90 single-digit body errors of 20,000 random bodies (1.8 million errors).

    Over the whole code space exactly 16,363,636,360 of the 9 * 10**11 possible
    single-digit body errors go undetected (computed by dynamic programming over
    residues): a detection rate of 98.1818...% (about 54/55), not 100%.
    """
    rng = np.random.default_rng(20240708)
    bodies = rng.integers(0, rcode.BODY_SPACE, size=20_000, dtype=np.uint64)
    originals, altered, _ = _all_single_digit_errors(bodies)
    assert (originals != altered).all()
    missed = rcode.codes_are_valid(altered)
    # Exactly the r 0 <-> 1 cases are missed (residues from the test's own formula).
    original_r = _residues(originals // np.uint64(10))
    altered_r = _residues(altered // np.uint64(10))
    expected_missed = ((original_r == 0) & (altered_r == 1)) | (
        (original_r == 1) & (altered_r == 0)
    )
    assert np.array_equal(missed, expected_missed)
    rate = 1 - missed.mean()
    exact = 1 - 16_363_636_360 / 900_000_000_000
    assert rate < 1
    assert rate == pytest.approx(exact, abs=1e-3)


def test_transposition_detection_rate_measured() -> None:
    """All 9 adjacent transpositions of 20,000 random bodies (distinct digits only).

    Over the whole code space 1,472,727,270 of the 8.1 * 10**10 transpositions of
    distinct adjacent body digits go undetected: again about 98.18% detected.
    """
    rng = np.random.default_rng(1302)
    bodies = rng.integers(0, rcode.BODY_SPACE, size=20_000, dtype=np.uint64)
    texts = [f"{b:010d}" for b in bodies.tolist()]
    swapped_bodies, checks = [], []
    for text in texts:
        check = reference_check_digit(text)
        for i in range(9):
            if text[i] != text[i + 1]:
                swapped_bodies.append(text[:i] + text[i + 1] + text[i] + text[i + 2 :])
                checks.append(check)
    altered = [s + c for s, c in zip(swapped_bodies, checks, strict=True)]
    reasons = rcode.validate_array(altered)
    missed = np.array([r is None for r in reasons])
    assert all(r in (None, rcode.InvalidChecksum.message) for r in reasons)
    rate = 1 - missed.mean()
    exact = 1 - 1_472_727_270 / 81_000_000_000
    assert 0 < missed.sum()
    assert rate == pytest.approx(exact, abs=2e-3)


def _residues(bodies: np.ndarray) -> np.ndarray:
    total = np.zeros(bodies.shape, dtype=np.uint64)
    rest = bodies.copy()
    for weight in reversed(WEIGHTS):  # rightmost digit first
        total += (rest % np.uint64(10)) * np.uint64(weight)
        rest //= np.uint64(10)
    return total % np.uint64(11)
