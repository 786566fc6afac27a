"""Double opt-in confirmation tokens (suppression.confirm_tokens): they round-trip, expire,
and refuse tampering, other keys, unsubscribe tokens and junk."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suppression.confirm_tokens import MAX_TOKEN_LENGTH, ConfirmRequest, ConfirmTokens
from suppression.tokens import TokenCodec, TokenError, generate_key

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
RING = {1: generate_key(), 2: generate_key()}
REQUEST = ConfirmRequest(
    "Zoë@example.org", ("newsletter", "partners"), ("signup", "3"), "fr", NOW, "2001:db8::7"
)


def test_round_trip_and_expiry() -> None:
    """A token opens to its request until the lifetime has passed, then says expired."""
    tokens = ConfirmTokens(RING, ttl=WEEK)
    token = tokens.seal(REQUEST)
    assert "example" not in token and len(token) < 200
    assert tokens.open(token, NOW + WEEK) == REQUEST
    with pytest.raises(TokenError) as late:
        tokens.open(token, NOW + WEEK + timedelta(seconds=1))
    assert late.value.code == "expired"


def test_rotation_keeps_old_tokens_open() -> None:
    """The newest key seals; older keys still open (a rotation keeps pending links)."""
    old = ConfirmTokens({1: RING[1]}, ttl=WEEK).seal(REQUEST)
    assert ConfirmTokens(RING, ttl=WEEK).open(old, NOW) == REQUEST
    with pytest.raises(TokenError) as unknown:
        ConfirmTokens({2: RING[2]}, ttl=WEEK).open(old, NOW)
    assert unknown.value.code == "unknown-key"


def test_foreign_and_unsubscribe_tokens_do_not_open() -> None:
    """A token of other keys, or an unsubscribe token of the same ring, is not authentic."""
    foreign = ConfirmTokens({1: generate_key()}, ttl=WEEK).seal(REQUEST)
    unsubscribe = TokenCodec(RING, ttl=WEEK).mint("a" * 64, "newsletter", "shop", NOW)
    for token in (foreign, unsubscribe):
        with pytest.raises(TokenError) as refused:
            ConfirmTokens(RING, ttl=WEEK).open(token, NOW)
        assert refused.value.code in ("bad-signature", "malformed", "unknown-key")


@given(st.integers(min_value=2, max_value=200), st.integers(min_value=0, max_value=5))
def test_any_change_is_refused(position: int, flip: int) -> None:
    """Changing any character of a token makes it fail to open, never open as another."""
    tokens = ConfirmTokens(RING, ttl=WEEK)
    token = tokens.seal(REQUEST)
    index = position % len(token)
    alphabet = "ABCDEFGHabcdefgh012345-_"
    changed = alphabet[(alphabet.find(token[index]) + 1 + flip) % len(alphabet)]
    if changed == token[index]:
        return
    with pytest.raises(TokenError):
        tokens.open(token[:index] + changed + token[index + 1 :], NOW)


@pytest.mark.parametrize("junk", ["", "!", "a b", "x" * (MAX_TOKEN_LENGTH + 1), "AAAA", "AQ"])
def test_junk_is_malformed(junk: str) -> None:
    """Empty, non-base64, over-long or short input is malformed, refused before decrypting."""
    with pytest.raises(TokenError) as refused:
        ConfirmTokens(RING, ttl=WEEK).open(junk, NOW)
    assert refused.value.code == "malformed"
