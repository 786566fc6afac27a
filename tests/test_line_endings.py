"""The DATA reader's byte-count test for bare CR or LF agrees with the definition."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from gateway.smtp.syntax import has_bare_cr_or_lf

BARE = re.compile(rb"\r(?!\n)|(?<!\r)\n")


@given(
    st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b".", b"\r\r\n", b"\n\r"]), max_size=40)
)
def test_count_check_matches_the_regex_definition(parts: list[bytes]) -> None:
    """A byte string has no bare CR or LF exactly when the three counts agree."""
    raw = b"".join(parts)
    assert has_bare_cr_or_lf(raw) == (BARE.search(raw) is not None)
