"""Unsubscribe tokens (suppression.tokens): round trip, rejection codes, rotation, length."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from suppression.tokens import (
    MAX_TOKEN_LENGTH,
    TokenClaims,
    TokenCodec,
    TokenError,
    generate_key,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
TTL = timedelta(days=400)
ID = "0123456789abcdef" * 4
K1, K2 = b"\x01" * 32, b"\x02" * 32
LONG_PURPOSE = "p" + "-" * 62 + "z"
LONG_CLIENT = "C" + "_" * 62 + "9"
NAMES = ["news", "offers", LONG_PURPOSE, LONG_CLIENT, "shop"]
CODEC = TokenCodec({1: K1}, ttl=TTL, names=NAMES)
PUBLIC_URL = "https://unsubscribe.mail.example-company.com"  # 44 characters


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


ROUND_TRIPS = [
    # identity, purpose, client
    (ID, "news", "shop"),
    (ID, None, "shop"),
    ("f" * 64, LONG_PURPOSE, LONG_CLIENT),
    ("0" * 64, "unregistered", "other-platform"),
    (ID, "", ""),
    (ID, "café", "shop"),
]


@pytest.mark.parametrize(("identity", "purpose", "client"), ROUND_TRIPS)
def test_round_trip(identity: str, purpose: str | None, client: str) -> None:
    """A minted token opens to the same claims, with the issue time to the second."""
    issued = NOW.replace(microsecond=123456)
    token = CODEC.mint(identity, purpose, client, issued)
    claims = CODEC.open(token, NOW + timedelta(days=1))
    assert claims == TokenClaims(identity, purpose, client, NOW, kid=1)


def test_tokens_are_url_safe_and_opaque() -> None:
    """Tokens are unpadded base64url and show nothing of the identity, purpose or client."""
    token = CODEC.mint(ID, "news", "shop", NOW)
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in token)
    raw = _raw(token)
    for secret in (bytes.fromhex(ID)[:8], b"news", b"shop"):
        assert secret not in raw


@pytest.mark.parametrize(
    ("purpose", "client", "limit"),
    [
        (LONG_PURPOSE, LONG_CLIENT, 86),  # registered: 5 bytes per name whatever its length
        ("news", "shop", 86),
        (None, "shop", 86),
        ("newsletter-weekly", "shop-platform", 120),  # inline, unregistered
    ],
)
def test_length_bound(purpose: str | None, client: str, limit: int) -> None:
    """Tokens stay within their computed size, so the unsubscribe URL is under 200 chars."""
    codec = TokenCodec({1: K1}, ttl=TTL, names=NAMES)
    token = codec.mint(ID, purpose, client, NOW)
    assert len(token) <= limit <= MAX_TOKEN_LENGTH
    assert len(f"{PUBLIC_URL}/u/{token}") < 200


def test_long_unregistered_names_are_refused_at_mint() -> None:
    """A token that would exceed the length bound is refused with a hint to register names."""
    codec = TokenCodec({1: K1}, ttl=TTL)
    with pytest.raises(ValueError, match="register"):
        codec.mint(ID, LONG_PURPOSE, LONG_CLIENT, NOW)
    with pytest.raises(ValueError, match="register"):
        codec.mint(ID, "x" * 200, "shop", NOW)


def _token_with(kid: int, key: bytes, version: int = 1) -> str:
    """A token minted with a given key id (and a forged version byte when asked)."""
    token = TokenCodec({kid: key}, ttl=TTL).mint(ID, "news", "shop", NOW)
    if version == 1:
        return token
    raw = bytearray(_raw(token))
    raw[0] = version
    return _b64(bytes(raw))


VALID = CODEC.mint(ID, "news", "shop", NOW)
REJECTIONS = [
    # name, token, now, code
    ("empty", "", NOW, "malformed"),
    ("not base64", "abc$def", NOW, "malformed"),
    ("padding", VALID + "=", NOW, "malformed"),
    ("standard alphabet", VALID.replace("-", "+").replace("_", "/") + "+", NOW, "malformed"),
    ("truncated", VALID[:-10], NOW, "bad-signature"),
    ("extended", VALID + "AA", NOW, "bad-signature"),
    ("header only", _b64(b"\x01\x01"), NOW, "malformed"),
    ("impossible length", "A" * 85, NOW, "malformed"),  # 85 % 4 == 1
    ("huge", "A" * 10_000, NOW, "malformed"),
    ("unicode", VALID[:-1] + "é", NOW, "malformed"),
    ("unknown version", _token_with(1, K1, version=2), NOW, "malformed"),
    ("unknown kid", _token_with(7, K1), NOW, "unknown-key"),
    ("wrong key", _token_with(1, K2), NOW, "bad-signature"),
    ("garbage", _b64(b"\x01\x01" + bytes(80)), NOW, "bad-signature"),
    ("expired", VALID, NOW + TTL + timedelta(seconds=1), "expired"),
    (
        "unknown name",
        TokenCodec({1: K1}, ttl=TTL, names=["gone"]).mint(ID, "gone", "shop", NOW),
        NOW,
        "unknown-name",
    ),
]


@pytest.mark.parametrize(
    ("token", "now", "code"), [r[1:] for r in REJECTIONS], ids=[r[0] for r in REJECTIONS]
)
def test_rejections_have_stable_codes(token: str, now: datetime, code: str) -> None:
    """Each kind of bad token raises TokenError with its stable code."""
    with pytest.raises(TokenError) as info:
        CODEC.open(token, now)
    assert info.value.code == code
    assert isinstance(info.value, ValueError)


def test_expiry_boundary() -> None:
    """A token is valid up to and including issued_at + ttl."""
    assert CODEC.open(VALID, NOW + TTL).identity == ID
    with pytest.raises(TokenError, match="expired"):
        CODEC.open(VALID, NOW + TTL + timedelta(seconds=1))


def test_rotation() -> None:
    """The highest kid mints; tokens of older keys still open while their key is in the ring."""
    old = TokenCodec({1: K1}, ttl=TTL)
    rotated = TokenCodec({1: K1, 2: K2}, ttl=TTL)
    old_token = old.mint(ID, "news", "shop", NOW)
    new_token = rotated.mint(ID, "news", "shop", NOW)
    assert rotated.open(old_token, NOW).kid == 1
    assert rotated.open(new_token, NOW).kid == 2
    with pytest.raises(TokenError) as info:
        old.open(new_token, NOW)
    assert info.value.code == "unknown-key"
    retired = TokenCodec({2: K2}, ttl=TTL)
    with pytest.raises(TokenError) as info:
        retired.open(old_token, NOW)
    assert info.value.code == "unknown-key"


@pytest.mark.parametrize(
    ("keys", "ttl", "names", "message"),
    [
        ({}, TTL, [], "empty"),
        ({1: b"short"}, TTL, [], "32 bytes"),
        ({256: K1}, TTL, [], "0-255"),
        ({1: K1}, timedelta(0), [], "positive"),
    ],
)
def test_bad_configuration_is_refused(
    keys: dict[int, bytes], ttl: timedelta, names: list[str], message: str
) -> None:
    """Empty rings, wrong key sizes, out-of-range kids and non-positive lifetimes are refused."""
    with pytest.raises(ValueError, match=message):
        TokenCodec(keys, ttl=ttl, names=names)


@pytest.mark.parametrize(
    ("identity", "issued_at"),
    [
        ("A" * 64, NOW),  # upper-case hex is not an identity
        ("a" * 63, NOW),
        (ID, NOW.replace(tzinfo=None)),
        (ID, datetime(1969, 1, 1, tzinfo=UTC)),
    ],
)
def test_bad_mint_arguments_are_refused(identity: str, issued_at: datetime) -> None:
    """mint refuses non-identities, naive datetimes and times it cannot represent."""
    with pytest.raises(ValueError):
        CODEC.mint(identity, "news", "shop", issued_at)


def test_naive_now_is_refused_and_offsets_are_honoured() -> None:
    """open needs an aware 'now'; any UTC offset names the same instant."""
    with pytest.raises(ValueError, match="aware"):
        CODEC.open(VALID, NOW.replace(tzinfo=None))
    paris = NOW.astimezone(timezone(timedelta(hours=2)))
    assert CODEC.open(CODEC.mint(ID, "news", "shop", paris), NOW).issued_at == NOW


def test_generate_key() -> None:
    """generate_key returns fresh 32-byte keys that the codec accepts."""
    one, two = generate_key(), generate_key()
    assert len(one) == 32 and one != two
    assert (
        TokenCodec({0: one}, ttl=TTL)
        .open(TokenCodec({0: one}, ttl=TTL).mint(ID, None, "shop", NOW), NOW)
        .purpose
        is None
    )


def test_repr_hides_keys() -> None:
    """The codec's repr names key ids, never key bytes."""
    assert "\\x01" not in repr(CODEC) and "kids=[1]" in repr(CODEC)


# --- properties ------------------------------------------------------------------------------

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_tokens = st.builds(
    lambda identity, purpose, client, seconds: CODEC.mint(
        identity, purpose, client, NOW - timedelta(seconds=seconds)
    ),
    st.from_regex(r"\A[0-9a-f]{64}\Z"),
    st.none() | st.sampled_from(NAMES) | st.from_regex(r"\A[a-z0-9_.-]{0,12}\Z"),
    st.sampled_from(NAMES) | st.from_regex(r"\A[A-Za-z0-9_.-]{0,12}\Z"),
    st.integers(0, 10**7),
)


@settings(max_examples=300, deadline=None)
@given(token=_tokens, data=st.data())
def test_any_single_character_change_is_rejected(token: str, data: st.DataObject) -> None:
    """Replacing any one character of a token with another makes it invalid."""
    index = data.draw(st.integers(0, len(token) - 1))
    char = data.draw(st.sampled_from(_ALPHABET.replace(token[index], "")))
    with pytest.raises(TokenError):
        CODEC.open(token[:index] + char + token[index + 1 :], NOW)


@settings(max_examples=300, deadline=None)
@given(token=_tokens, data=st.data())
def test_any_single_byte_change_is_rejected(token: str, data: st.DataObject) -> None:
    """Changing any one byte of the decoded token, or dropping or adding one, makes it invalid."""
    raw = bytearray(_raw(token))
    index = data.draw(st.integers(0, len(raw) - 1))
    delta = data.draw(st.integers(1, 255))
    mutated = bytearray(raw)
    mutated[index] ^= delta
    for candidate in (bytes(mutated), bytes(raw[:index] + raw[index + 1 :]), bytes(raw) + b"\0"):
        with pytest.raises(TokenError):
            CODEC.open(_b64(candidate), NOW)


@settings(max_examples=200, deadline=None)
@given(token=_tokens)
def test_minted_tokens_round_trip_and_fit(token: str) -> None:
    """Every minted token opens and fits the length bound."""
    assert len(token) <= MAX_TOKEN_LENGTH
    assert isinstance(CODEC.open(token, NOW), TokenClaims)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_arbitrary_input_only_raises_token_error(text: str) -> None:
    """Junk never crashes open with anything but TokenError."""
    with pytest.raises(TokenError):
        CODEC.open(text, NOW)
