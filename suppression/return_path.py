"""Return-path references: ``b-{ref}@{return_path_domain}``, the envelope sender of each copy, and
the ``CFBL-Feedback-ID`` of a marketing copy. Pure: keys and the day number are passed in.

A bounce or a complaint reaches us from anyone; only a reference we minted says whom it is
about. The reference is opaque and never the address: a keyed MAC over one of the store's short
numbers (:meth:`suppression.store.Store.feedback_ref_ids`), a key id for rotation and the day it
was minted (its lifetime). Layout, before base32 (RFC 4648, lower case, no padding)::

    version << 4 | kid (1 byte) | day (2 bytes, days since 1970-01-01 UTC, mod 2**16)
    | number (5 bytes) | HMAC-SHA256(key[kid], "sgw-return-path" | the 8 bytes before)[:10]

18 bytes, 29 characters: ``b-`` and the reference make a 31-octet local part, well within
RFC 5321's 64 (§4.5.3.1.1), in the character set every MTA keeps (letters and digits;
base32 decodes either case, so an MTA that folds the local part does no harm). An 80-bit MAC
makes forging one a matter of luck at 2**-80 a try; the BATV rule (a bad reference is refused
at RCPT with ``550 5.1.1``) keeps forged bounces from costing more than one command each.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

VERSION = 1
PREFIX = "b-"
KEY_BYTES = 32
#: Key ids fit the header's low nibble.
MAX_KID = 15
#: The largest store number a reference carries (5 bytes).
MAX_NUMBER = 2**40 - 1
MAC_BYTES = 10
#: Days a reference may be dated ahead of ``today`` (clocks of replicas disagree a little).
FUTURE_DAYS = 1

_BODY = struct.Struct(">BH5s")
_LABEL = b"sgw-return-path"
_RAW_BYTES = _BODY.size + MAC_BYTES
_REF = re.compile(r"[A-Za-z2-7]{29}")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

RefErrorCode = Literal["malformed", "unknown-key", "bad-mac", "expired"]


class RefError(ValueError):
    """A reference that names nobody; ``code`` is stable (metrics, logs)."""

    def __init__(self, code: RefErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: RefErrorCode = code


@dataclass(frozen=True, slots=True)
class RefClaims:
    """What an authentic, unexpired reference says."""

    number: int
    kid: int
    day: int


def day_number(at: datetime) -> int:
    """Days since 1970-01-01 UTC of an aware datetime."""
    if at.tzinfo is None:
        raise ValueError(f"naive datetime: {at!r}")
    return (at - _EPOCH).days


class ReturnPathCodec:
    """Mints and opens references with a key ring (the highest kid mints, every kid opens)."""

    def __init__(self, keys: Mapping[int, bytes], ttl_days: int) -> None:
        if not keys:
            raise ValueError("a return-path key ring needs a key")
        for kid, key in keys.items():
            if not 0 <= kid <= MAX_KID or len(key) != KEY_BYTES:
                raise ValueError(f"return-path key {kid}: ids 0-{MAX_KID}, {KEY_BYTES} bytes")
        if ttl_days < 1:
            raise ValueError("references live a day at least")
        self._keys = dict(keys)
        self._kid = max(keys)
        self.ttl_days = ttl_days

    def __repr__(self) -> str:  # never print key material
        return f"ReturnPathCodec(kids={sorted(self._keys)}, ttl_days={self.ttl_days})"

    def _mac(self, kid: int, body: bytes) -> bytes:
        return hmac.new(self._keys[kid], _LABEL + body, hashlib.sha256).digest()[:MAC_BYTES]

    def mint(self, number: int, day: int) -> str:
        """The reference for store number ``number``, minted on day ``day``."""
        if not 0 <= number <= MAX_NUMBER:
            raise ValueError(f"reference number out of range: {number}")
        body = _BODY.pack(VERSION << 4 | self._kid, day % 2**16, number.to_bytes(5, "big"))
        raw = body + self._mac(self._kid, body)
        return base64.b32encode(raw).decode("ascii").rstrip("=").lower()

    def open(self, ref: str, today: int) -> RefClaims:
        """The claims of an authentic reference no older than ``ttl_days``; else
        :class:`RefError`."""
        if not isinstance(ref, str) or not _REF.fullmatch(ref):
            raise RefError("malformed", "not a reference")
        try:
            raw = base64.b32decode(ref.upper() + "===")
        except (binascii.Error, ValueError):
            raise RefError("malformed", "not base32") from None
        if len(raw) != _RAW_BYTES:
            raise RefError("malformed", "wrong length")
        body, mac = raw[: _BODY.size], raw[_BODY.size :]
        header, day, number = _BODY.unpack(body)
        kid = header & 0x0F
        if header >> 4 != VERSION:
            raise RefError("malformed", f"unknown version {header >> 4}")
        if kid not in self._keys:
            raise RefError("unknown-key", f"no return-path key {kid}")
        if not hmac.compare_digest(mac, self._mac(kid, body)):
            raise RefError("bad-mac", "the reference is not authentic")
        age = (today - day) % 2**16  # days since minting, modulo the 16-bit day
        if age > self.ttl_days and 2**16 - age > FUTURE_DAYS:
            raise RefError("expired", f"minted {age} days ago")
        return RefClaims(int.from_bytes(number, "big"), kid, day)


def address(ref: str, domain: str) -> str:
    """The envelope sender carrying ``ref``."""
    return f"{PREFIX}{ref}@{domain}"


def ref_of(local_part: str) -> str | None:
    """The reference in a ``b-{ref}`` local part (any case), else None."""
    if len(local_part) > len(PREFIX) and local_part[: len(PREFIX)].lower() == PREFIX:
        return local_part[len(PREFIX) :].lower()
    return None
