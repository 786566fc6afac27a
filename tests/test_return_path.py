"""Return-path references (suppression.return_path): short, opaque, unforgeable, expiring."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suppression.return_path import (
    MAX_NUMBER,
    RefError,
    ReturnPathCodec,
    address,
    day_number,
    ref_of,
)

KEY1, KEY2 = b"\x01" * 32, b"\x02" * 32
TODAY = day_number(datetime(2026, 12, 3, tzinfo=UTC))


def codec(keys: dict[int, bytes] | None = None, ttl: int = 30) -> ReturnPathCodec:
    return ReturnPathCodec(keys or {1: KEY1}, ttl)


def test_a_reference_fits_a_local_part_and_names_no_address() -> None:
    """``b-`` and the reference are 31 letters and digits (RFC 5321: 64 octets at most)."""
    ref = codec().mint(123_456, TODAY)
    local = address(ref, "rp.example").partition("@")[0]
    assert len(local) == 31 and local.isalnum() is False and local[2:].isalnum()
    assert ref == ref.lower() and "123456" not in ref


@given(st.integers(0, MAX_NUMBER), st.integers(0, 60_000))
def test_round_trip(number: int, day: int) -> None:
    """Whatever the number and the day, the reference opens to them, that day and later."""
    ref = codec().mint(number, day)
    claims = codec().open(ref, day + 30)
    assert (claims.number, claims.kid, claims.day) == (number, 1, day)
    assert codec().open(ref.upper(), day).number == number  # an MTA may fold case


@pytest.mark.parametrize(
    ("mangle", "code"),
    [
        (lambda r: r[:-1], "malformed"),
        (lambda r: r + "a", "malformed"),
        (lambda r: "0" + r[1:], "malformed"),  # not base32
        (lambda r: r[:10] + ("a" if r[10] != "a" else "b") + r[11:], "bad-mac"),
        (lambda r: "", "malformed"),
    ],
)
def test_forged_and_damaged_references_are_refused(mangle: object, code: str) -> None:
    """Any change to a reference is refused; a forged MAC says so."""
    ref = codec().mint(7, TODAY)
    with pytest.raises(RefError) as refused:
        codec().open(mangle(ref), TODAY)  # type: ignore[operator]
    assert refused.value.code == code


def test_another_recipients_reference_cannot_be_made_from_one() -> None:
    """Changing the number inside a valid reference breaks its MAC."""
    raw = bytearray(base64.b32decode(codec().mint(7, TODAY).upper() + "==="))
    raw[7] ^= 1  # the last byte of the number: recipient 6
    forged = base64.b32encode(bytes(raw)).decode().rstrip("=").lower()
    with pytest.raises(RefError, match="bad-mac"):
        codec().open(forged, TODAY)


def test_expiry_and_a_little_clock_skew() -> None:
    """A reference lives ``ttl_days``; one dated tomorrow (another replica's clock) opens,
    one dated further ahead does not."""
    ref = codec(ttl=30).mint(7, TODAY)
    assert codec(ttl=30).open(ref, TODAY + 30).number == 7
    with pytest.raises(RefError) as late:
        codec(ttl=30).open(ref, TODAY + 31)
    assert late.value.code == "expired"
    assert codec().open(ref, TODAY - 1).number == 7
    with pytest.raises(RefError, match="expired"):
        codec().open(ref, TODAY - 2)


def test_keys_rotate() -> None:
    """The newest key mints; an old key still opens; a retired key's references are refused."""
    old = codec({1: KEY1}).mint(7, TODAY)
    ring = codec({1: KEY1, 2: KEY2})
    new = ring.mint(7, TODAY)
    assert ring.open(new, TODAY).kid == 2 and ring.open(old, TODAY).kid == 1
    with pytest.raises(RefError) as retired:
        codec({2: KEY2}).open(old, TODAY)
    assert retired.value.code == "unknown-key"


def test_local_part() -> None:
    """Only ``b-`` local parts carry a reference (any case)."""
    assert ref_of("b-abc") == "abc" and ref_of("B-ABC") == "abc"
    assert ref_of("b-") is None and ref_of("bounce") is None


@pytest.mark.parametrize("keys", [{}, {16: KEY1}, {1: b"short"}])
def test_bad_key_rings_are_refused(keys: dict[int, bytes]) -> None:
    """An empty ring, a key id past 15 or a short key is a configuration error."""
    with pytest.raises(ValueError):
        ReturnPathCodec(keys, 30)
