"""The fast split of MAIL/RCPT arguments returns exactly what aiosmtpd's parser returns."""

from __future__ import annotations

import logging

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.smtp.syntax import plain_angle_address

logging.getLogger("mail.log").setLevel(logging.WARNING)
ALPHABET = st.sampled_from([*'ab.@<> "\\(),:;[]-+_=', "x@y.org", "SIZE=10", "\t"])


class _Handler:
    pass


def aiosmtpd_getaddr(arg: str) -> tuple[str | None, str | None]:
    """aiosmtpd's own parser, on an instance made without a connection."""
    return SMTP(_Handler(), hostname="t")._getaddr(arg)  # type: ignore[no-any-return]


@settings(max_examples=1500, deadline=None)
@given(st.lists(ALPHABET, max_size=16).map("".join))
def test_fast_split_agrees_with_aiosmtpd(arg: str) -> None:
    """Whenever the fast path answers, aiosmtpd's parser gives the same address and rest."""
    fast = plain_angle_address(arg)
    if fast is not None:
        assert fast == aiosmtpd_getaddr(arg), arg


def test_fast_split_takes_the_common_forms() -> None:
    """Plain angle addresses, parameters and the null path take the fast path."""
    assert plain_angle_address("<a@b.com>") == ("a@b.com", "")
    assert plain_angle_address("<a.b+c@b.com> SIZE=100 BODY=8BITMIME") == (
        "a.b+c@b.com",
        "SIZE=100 BODY=8BITMIME",
    )
    assert plain_angle_address("<>") == ("<>", "")
    for odd in ('<"q x"@b.com>', "<@r:a@b.com>", "a@b.com", "<a b@c.com>", "<a..b@c.com>"):
        assert plain_angle_address(odd) is None, odd
