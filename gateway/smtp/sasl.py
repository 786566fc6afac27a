"""The SASL exchanges of SMTP AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN
(draft-murchison-sasl-login). They only decode what the client sends and ask for what is
missing; checking the credentials (a KDF, off the event loop) is the caller's ``check``."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiosmtpd.smtp import AuthResult

Check = Callable[[bytes, bytes], Awaitable[AuthResult]]


class SaslPeer(Protocol):
    """What an exchange needs of the SMTP session (aiosmtpd's ``SMTP``)."""

    async def push(self, status: Any) -> None:
        """Write one reply line."""

    async def challenge_auth(self, challenge: str) -> Any:
        """Send a ``334`` challenge; the decoded answer (bytes), or something else on failure."""


async def plain(peer: SaslPeer, args: list[str], check: Check) -> AuthResult:
    """AUTH PLAIN: ``authzid NUL authcid NUL password``, inline or after an empty challenge."""
    blob = await _initial(peer, args, "")
    if blob is None:
        return AuthResult(success=False, handled=True)
    try:
        _authz, login, password = blob.split(b"\x00")
    except ValueError:
        await peer.push("501 5.5.2 Can't split auth value")
        return AuthResult(success=False, handled=True)
    return await check(login, password)


async def login(peer: SaslPeer, args: list[str], check: Check) -> AuthResult:
    """AUTH LOGIN: the user name (inline or challenged), then the password."""
    user = await _initial(peer, args, "Username:")
    if user is None:
        return AuthResult(success=False, handled=True)
    password = await peer.challenge_auth("Password:")
    if not isinstance(password, bytes):
        return AuthResult(success=False, handled=True)
    return await check(user, password)


async def _initial(peer: SaslPeer, args: list[str], challenge: str) -> bytes | None:
    """The initial response: inline (base64) or asked for with ``challenge``."""
    if len(args) == 1:
        blob = await peer.challenge_auth(challenge)
        return blob if isinstance(blob, bytes) else None
    try:
        return base64.b64decode(args[1].encode(), validate=True)
    except (binascii.Error, ValueError):
        await peer.push("501 5.5.2 Can't decode base64")
        return None
