"""Who may relay: clients matched by source network or by SMTP AUTH (no open relay).

Password hashes use scrypt (RFC 7914), a memory-hard KDF, in the format
``scrypt$<log2 N>$<r>$<p>$<salt b64>$<hash b64>``. Verification runs in a worker thread so a
slow KDF never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import os
from collections.abc import Sequence

from gateway.settings import SmtpClient

_LOG2_N, _R, _P = 15, 8, 1
_MAXMEM = 128 * 1024 * 1024


def hash_password(password: str, *, log2_n: int = _LOG2_N) -> str:
    """A new scrypt hash of ``password`` for ``[[smtp.clients]] password_hash``."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=2**log2_n, r=_R, p=_P, maxmem=_MAXMEM, dklen=32
    )
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return f"scrypt${log2_n}${_R}${_P}${encoded[0]}${encoded[1]}"


def verify_password(password: bytes, encoded: str) -> bool:
    """True when ``password`` matches the scrypt hash (constant-time compare)."""
    try:
        scheme, log2_n, r, p, salt, expected = encoded.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password,
            salt=base64.b64decode(salt),
            n=2 ** int(log2_n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=32,
        )
        return hmac.compare_digest(digest, base64.b64decode(expected))
    except (ValueError, TypeError):
        return False


class Clients:
    """The configured clients, looked up by peer address or by credentials."""

    def __init__(self, clients: Sequence[SmtpClient]) -> None:
        self._clients = tuple(clients)
        self._by_username = {c.username: c for c in clients if c.username}

    def by_peer(self, host: str) -> SmtpClient | None:
        """The first client whose networks contain ``host``."""
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        for client in self._clients:
            if any(address in network for network in client.networks):
                return client
        return None

    def requires_no_credentials(self) -> SmtpClient | None:
        """A client with neither networks nor credentials (allowed on loopback listeners only)."""
        for client in self._clients:
            if not client.networks and not client.username:
                return client
        return None

    async def authenticate(self, username: bytes, password: bytes) -> SmtpClient | None:
        """The client these credentials belong to, or None."""
        client = self._by_username.get(username.decode("utf-8", "replace"))
        encoded = client.password_hash.get_secret_value() if client and client.password_hash else ""
        # Run the KDF even for unknown users so timing does not reveal valid usernames.
        ok = await asyncio.to_thread(verify_password, password, encoded or _DUMMY_HASH)
        return client if ok and client is not None else None

    @property
    def offers_auth(self) -> bool:
        """True when any client authenticates with a password."""
        return bool(self._by_username)


_DUMMY_HASH = "scrypt$15$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
