"""Sealed double opt-in confirmation tokens: the signed, expiring link of a confirmation mail.

A token is the last path segment of ``{public_url}/confirm/{token}``. It carries the whole
pending request, so nothing is stored until the person confirms: the address, the purposes,
the notice version, the language of the mail, when the request was made and from which IP.

Layout, before URL-safe base64 without padding (RFC 4648 §5)::

    version (1 byte, 0x01) | kid (1 byte) | AES-SIV(key[kid], payload, ad=version|kid)

    payload = compact JSON [email, [purposes], notice_id, notice_version, language,
                            requested_at (Unix seconds), request_ip]

The keys are derived from the unsubscribe token key ring (HMAC-SHA256 of each key with a label
of their own), so a confirmation token and an unsubscribe token never open as each other, and
rotating the ring rotates both. Like :mod:`suppression.tokens`: unforgeable (the SIV tag),
opaque (the address is encrypted), canonical spelling only, refused unopened above a length.
"""

from __future__ import annotations

import base64
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from suppression.criteria import NoticeKey
from suppression.tokens import TokenError, decode

VERSION = 1
_LABEL = b"suppression-gateway double-opt-in v1"
#: Longer input is refused before decoding (an address of 254 octets and a few purposes fit).
MAX_TOKEN_LENGTH = 1024
_HEADER_BYTES = 2


@dataclass(frozen=True, slots=True)
class ConfirmRequest:
    """A pending double opt-in request, as the confirmation link carries it."""

    email: str
    purposes: tuple[str, ...]
    notice: NoticeKey
    language: str
    requested_at: datetime
    request_ip: str


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class ConfirmTokens:
    """Seals and opens confirmation tokens with keys derived from a token key ring."""

    def __init__(self, token_keys: Mapping[int, bytes], *, ttl: timedelta) -> None:
        if not token_keys:
            raise ValueError("the token key ring is empty")
        if ttl <= timedelta(0):
            raise ValueError("the confirmation lifetime must be positive")
        self._ciphers = {
            kid: AESSIV(hmac.digest(key, _LABEL, "sha256")) for kid, key in token_keys.items()
        }
        self._kid = max(token_keys)
        self.ttl = ttl

    def __repr__(self) -> str:
        return f"ConfirmTokens(kids={sorted(self._ciphers)}, ttl={self.ttl!r})"

    def seal(self, request: ConfirmRequest) -> str:
        """The token of a request."""
        stamp = int(request.requested_at.timestamp())
        payload = json.dumps(
            [
                request.email,
                list(request.purposes),
                request.notice[0],
                request.notice[1],
                request.language,
                stamp,
                request.request_ip,
            ],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")
        header = bytes([VERSION, self._kid])
        token = _b64encode(header + self._ciphers[self._kid].encrypt(payload, [header]))
        if len(token) > MAX_TOKEN_LENGTH:
            raise ValueError(f"confirmation token of {len(token)} characters: too many purposes")
        return token

    def open(self, token: str, now: datetime) -> ConfirmRequest:
        """The request of an authentic, unexpired token; :class:`TokenError` otherwise."""
        raw = decode(token, max_length=MAX_TOKEN_LENGTH, min_bytes=_HEADER_BYTES + 16)
        if raw[0] != VERSION:
            raise TokenError("malformed", f"unknown token version {raw[0]}")
        cipher = self._ciphers.get(raw[1])
        if cipher is None:
            raise TokenError("unknown-key", f"no token key with id {raw[1]}")
        try:
            payload = cipher.decrypt(raw[_HEADER_BYTES:], [raw[:_HEADER_BYTES]])
        except InvalidTag:
            raise TokenError("bad-signature", "the token is not authentic") from None
        try:
            email, purposes, notice_id, version, language, stamp, ip = json.loads(payload)
            request = ConfirmRequest(
                str(email),
                tuple(str(p) for p in purposes),
                (str(notice_id), str(version)),
                str(language),
                datetime.fromtimestamp(int(stamp), UTC),
                str(ip),
            )
        except (ValueError, TypeError, OverflowError):
            raise TokenError("malformed", "bad payload") from None
        if request.requested_at + self.ttl < now:
            raise TokenError("expired", f"requested {request.requested_at.isoformat()}")
        return request
