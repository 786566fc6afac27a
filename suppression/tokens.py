"""Self-contained, authenticated and encrypted unsubscribe tokens for RFC 8058 links.

RFC 8058 §3.1 wants the one-click URI itself to carry an opaque identifier of the recipient and
the list, because the POST arrives with no cookie and no other context. A token here is the
last path segment of ``{public_url}/u/{token}``: URL-safe base64 without padding (RFC 4648 §5),
so it needs no escaping in a URI (RFC 3986 §2.3) or in a ``List-Unsubscribe`` header.

Layout, before base64 (all integers big-endian)::

    version (1 byte, 0x01) | kid (1 byte) | AES-SIV(key[kid], plaintext, ad=version|kid)

    plaintext = identity (32 bytes, the raw HMAC digest) | issued_at (4 bytes, Unix seconds)
              | purpose (name field) | client (name field)

    name field = 0x00-0x7f  length, then that many bytes of UTF-8   (an inline name)
               | 0x80       4 bytes: SHA-256 tag of a registered name (see ``names=``)
               | 0xff       no purpose

AES-SIV (RFC 5297) is deterministic authenticated encryption: no nonce to store, so the token
is 16 bytes shorter than with a random-nonce AEAD, and it stays safe if a nonce source fails.
Being deterministic only reveals that two tokens carry the same recipient, purpose, client and
second, which is the same link. The header is authenticated as associated data, so changing the
key id or version breaks the tag. The 16-byte tag makes tokens unforgeable and the encryption
keeps the identity, purpose and client opaque, so tokens cannot be enumerated.

Length: 2 + 16 (tag) + 32 + 4 = 54 bytes, plus the two name fields. With registered names each
field is 5 bytes: 64 bytes, 86 characters, for names of any length (64-character purpose and
client ids included). Inline names cost 1 byte plus their length; :meth:`TokenCodec.mint`
refuses a token longer than :data:`MAX_TOKEN_LENGTH` (120 characters, which keeps the whole
URL under 200 characters for a public URL of up to 76) and asks for the names to be registered.
Register every purpose id and client name, and keep retired ones registered for the token
lifetime: a token naming an unregistered tag opens with code ``unknown-name``.

Keys: a ring ``{kid: 32-byte key}``; the highest kid mints, every kid opens. Rotate by adding
a higher kid, and drop the old one after the token lifetime.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

VERSION = 1
KEY_BYTES = 32
#: Longest token minted: keeps ``{public_url}/u/{token}`` short enough for every mail client.
MAX_TOKEN_LENGTH = 120
#: Longer input is refused before decoding (cheap rejection of junk).
_MAX_INPUT_LENGTH = 512

_HEADER = struct.Struct(">BB")
_FIXED = struct.Struct(">32sI")
_TAG_BYTES = 16
_NAME_TAG_BYTES = 4
_INLINE_MAX = 0x7F
_REGISTERED = 0x80
_ABSENT = 0xFF
_MIN_RAW = _HEADER.size + _TAG_BYTES + _FIXED.size + 2
_IDENTITY = re.compile(r"[0-9a-f]{64}")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")

TokenErrorCode = Literal["malformed", "unknown-key", "bad-signature", "expired", "unknown-name"]


class TokenError(ValueError):
    """A token that cannot be honoured; ``code`` is stable (API answers, logs, metrics)."""

    def __init__(self, code: TokenErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: TokenErrorCode = code


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What an authentic token says; ``purpose`` None means all marketing."""

    identity: str
    purpose: str | None
    client: str
    issued_at: datetime
    kid: int


def generate_key() -> bytes:
    """A fresh random token key."""
    return secrets.token_bytes(KEY_BYTES)


def _name_tag(name: str) -> bytes:
    digest = hashlib.sha256(b"suppression-gateway token name\x00" + name.encode("utf-8"))
    return digest.digest()[:_NAME_TAG_BYTES]


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _aware(moment: datetime, what: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware")


def decode(token: str, *, max_length: int, min_bytes: int) -> bytes:
    """The bytes of a token in canonical URL-safe base64 without padding, refusing junk
    cheaply (:class:`TokenError` ``malformed``): too long, not base64, not canonical, or
    shorter than ``min_bytes`` once decoded."""
    if not isinstance(token, str) or not 0 < len(token) <= max_length:
        raise TokenError("malformed", "not a token")
    if not _BASE64URL.fullmatch(token):
        raise TokenError("malformed", "not URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise TokenError("malformed", "not URL-safe base64") from None
    # Only the canonical spelling is accepted: the spare low bits of the last character
    # must be zero, so no two strings open as the same token (RFC 4648 §3.5).
    if not hmac.compare_digest(_b64encode(raw), token):
        raise TokenError("malformed", "not canonical base64")
    if len(raw) < min_bytes:
        raise TokenError("malformed", "too short")
    return raw


class TokenCodec:
    """Mints and opens unsubscribe tokens with a key ring (highest kid mints)."""

    def __init__(
        self, keys: Mapping[int, bytes], *, ttl: timedelta, names: Iterable[str] = ()
    ) -> None:
        if not keys:
            raise ValueError("the token key ring is empty")
        for kid, key in keys.items():
            if not 0 <= kid <= 0xFF:
                raise ValueError(f"token key id {kid} is outside 0-255")
            if len(key) != KEY_BYTES:
                raise ValueError(f"token key {kid} must be {KEY_BYTES} bytes")
        if ttl <= timedelta(0):
            raise ValueError("the token lifetime must be positive")
        self._ciphers = {kid: AESSIV(bytes(key)) for kid, key in keys.items()}
        self._kid = max(keys)
        self.ttl = ttl
        self._by_tag: dict[bytes, str] = {}
        for name in set(names):
            tag = _name_tag(name)
            if tag in self._by_tag:
                raise ValueError(f"token names {self._by_tag[tag]!r} and {name!r} collide")
            self._by_tag[tag] = name

    def __repr__(self) -> str:
        return f"TokenCodec(kids={sorted(self._ciphers)}, ttl={self.ttl!r})"  # no key material

    def _encode_name(self, name: str) -> bytes:
        tag = _name_tag(name)
        if self._by_tag.get(tag) == name:
            return bytes([_REGISTERED]) + tag
        encoded = name.encode("utf-8")
        if len(encoded) > _INLINE_MAX:
            raise ValueError(f"name {name[:20]!r}... is too long to inline; register it")
        return bytes([len(encoded)]) + encoded

    def mint(self, identity: str, purpose: str | None, client: str, issued_at: datetime) -> str:
        """A token for this recipient identity, purpose (None: all marketing) and client."""
        if not _IDENTITY.fullmatch(identity):
            raise ValueError("identity must be 64 lower-case hex digits")
        _aware(issued_at, "issued_at")
        seconds = int(issued_at.timestamp())
        if not 0 <= seconds <= 0xFFFFFFFF:
            raise ValueError("issued_at is outside the representable range")
        plaintext = b"".join(
            (
                _FIXED.pack(bytes.fromhex(identity), seconds),
                bytes([_ABSENT]) if purpose is None else self._encode_name(purpose),
                self._encode_name(client),
            )
        )
        header = _HEADER.pack(VERSION, self._kid)
        sealed = self._ciphers[self._kid].encrypt(plaintext, [header])
        token = _b64encode(header + sealed)
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError(
                f"token of {len(token)} characters exceeds {MAX_TOKEN_LENGTH}: "
                "register long purpose and client names with TokenCodec(names=...)"
            )
        return token

    def open(self, token: str, now: datetime) -> TokenClaims:
        """The claims of an authentic, unexpired token; raise :class:`TokenError` otherwise."""
        _aware(now, "now")
        raw = self._decode(token)
        version, kid = _HEADER.unpack_from(raw)
        if version != VERSION:
            raise TokenError("malformed", f"unknown token version {version}")
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise TokenError("unknown-key", f"no token key with id {kid}")
        try:
            plaintext = cipher.decrypt(raw[_HEADER.size :], [raw[: _HEADER.size]])
        except InvalidTag:
            raise TokenError("bad-signature", "the token is not authentic") from None
        claims = self._parse(plaintext, kid)
        if claims.issued_at + self.ttl < now:
            raise TokenError("expired", f"issued {claims.issued_at.isoformat()}")
        return claims

    @staticmethod
    def _decode(token: str) -> bytes:
        return decode(token, max_length=_MAX_INPUT_LENGTH, min_bytes=_MIN_RAW)

    def _parse(self, plaintext: bytes, kid: int) -> TokenClaims:
        try:
            digest, seconds = _FIXED.unpack_from(plaintext)
            offset = _FIXED.size
            purpose, offset = self._read_name(plaintext, offset, allow_absent=True)
            client, offset = self._read_name(plaintext, offset, allow_absent=False)
        except (struct.error, IndexError, UnicodeDecodeError):
            raise TokenError("malformed", "bad payload") from None
        if offset != len(plaintext) or client is None:
            raise TokenError("malformed", "bad payload")
        issued_at = datetime.fromtimestamp(seconds, UTC)
        return TokenClaims(digest.hex(), purpose, client, issued_at, kid)

    def _read_name(self, data: bytes, offset: int, *, allow_absent: bool) -> tuple[str | None, int]:
        marker = data[offset]
        offset += 1
        if marker == _ABSENT and allow_absent:
            return None, offset
        if marker == _REGISTERED:
            tag = data[offset : offset + _NAME_TAG_BYTES]
            if len(tag) != _NAME_TAG_BYTES:
                raise IndexError("truncated name tag")
            name = self._by_tag.get(tag)
            if name is None:
                raise TokenError("unknown-name", "the token names an unregistered purpose/client")
            return name, offset + _NAME_TAG_BYTES
        if marker > _INLINE_MAX:
            raise IndexError("bad name marker")
        text = data[offset : offset + marker]
        if len(text) != marker:
            raise IndexError("truncated name")
        return text.decode("utf-8"), offset + marker
