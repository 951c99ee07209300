"""The check-digit rule has one meaning: the database's CHECK and ``code.py`` agree.

The PostgreSQL ledger refuses a code whose last digit is not its check digit with
``rrnet.is_resident_code(bigint)``, written in SQL for speed; rrnet computes the
digit in ``rrnet_cli/code.py``. A slip in either (a weight, the r <= 1 case)
would let the database take codes rrnet calls invalid, or refuse valid ones in
the middle of a run. Hypothesis draws codes, and both answers are compared.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from backends import init_ledger
from helpers import MUNICIPALITY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rrnet_cli import code as rcode

#: Every code body: ten digits, leading zeros included.
BODIES = st.integers(min_value=0, max_value=10**10 - 1)


@pytest.fixture
def connection(pg_url: str) -> Iterator[psycopg.Connection]:
    init_ledger(pg_url, MUNICIPALITY)
    with psycopg.connect(pg_url, autocommit=True) as connection:
        yield connection


def accepted(connection: psycopg.Connection, codes: list[int]) -> list[bool]:
    """The database's verdict on each code, in the order given."""
    rows = connection.execute(
        "SELECT rrnet.is_resident_code(c) FROM unnest(%s::bigint[]) WITH ORDINALITY AS t(c, i)"
        " ORDER BY i",
        (codes,),
    ).fetchall()
    return [bool(row[0]) for row in rows]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bodies=st.lists(BODIES, min_size=1, max_size=200))
def test_the_database_accepts_exactly_the_check_digit_code_py_computes(
    connection: psycopg.Connection, bodies: list[int]
) -> None:
    # For each body, all ten possible last digits: exactly one is the code.
    candidates = [body * 10 + digit for body in bodies for digit in range(10)]
    verdicts = accepted(connection, candidates)
    for code, verdict in zip(candidates, verdicts, strict=True):
        text = f"{code:011d}"
        assert verdict == rcode.is_valid(text), text


@pytest.mark.parametrize(
    "code",
    [
        "12345678903",  # the SPEC's vectors
        "58026173947",
        "70935378190",  # r = 0
        "00000000060",  # r = 1
        "00000000000",
        "99999999999",
    ],
)
def test_edge_codes_agree(connection: psycopg.Connection, code: str) -> None:
    assert accepted(connection, [int(code)]) == [rcode.is_valid(code)]


def test_values_that_are_not_11_digits_are_refused(connection: psycopg.Connection) -> None:
    assert accepted(connection, [-1, 10**11, 10**11 + 3]) == [False, False, False]
