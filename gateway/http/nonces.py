"""Per-page form nonces: proof that an opt-in comes from a page rendered within the hour.

RFC 8058 one-click must work from the bare token, so the token alone may opt out. Opting back
in re-grants consent and must not: the page's forms carry ``{issued}.{mac}`` where ``mac`` is
``HMAC-SHA256(k, issued NUL token)``. ``k`` is derived from the token key ring (HMAC of each key
with a fixed label, so the AES-SIV keys are never used directly for anything else). Every worker
shares the ring, so any worker verifies a page another rendered, and every kid verifies, so a
key rotation keeps open pages valid. Nothing is stored server-side.

What it does not do: anyone holding the link can render the page and get a fresh nonce. It stops
bare-token POSTs (scanners, replayed or scripted requests, cross-site forms) and stale pages;
proving that the person themselves acts would need a confirmation mail (double opt-in).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

#: How long a rendered page may be used to opt back in.
PAGE_NONCE_TTL = timedelta(hours=1)
_NONCE_SKEW = timedelta(minutes=1)
_LABEL = b"suppression-gateway page-nonce v1"


class PageNonces:
    """Issues and checks page nonces with keys derived from the token key ring."""

    def __init__(self, token_keys: Mapping[int, bytes], ttl: timedelta = PAGE_NONCE_TTL) -> None:
        newest_first = sorted(token_keys.items(), reverse=True)
        self._keys = [hmac.digest(key, _LABEL, "sha256") for _, key in newest_first]
        if not self._keys:
            raise ValueError("the token key ring is empty")
        self.ttl = ttl

    @staticmethod
    def _mac(key: bytes, token: str, issued: int) -> str:
        digest = hmac.digest(key, f"{issued}\x00{token}".encode(), "sha256")
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def issue(self, token: str, now: datetime) -> str:
        """A nonce for a page showing ``token``, rendered at ``now``."""
        issued = int(now.timestamp())
        return f"{issued}.{self._mac(self._keys[0], token, issued)}"

    def check(self, token: str, nonce: str | None, now: datetime) -> datetime | None:
        """When the page was rendered, if ``nonce`` is authentic for ``token`` and fresh."""
        stamp, _, mac = (nonce or "").partition(".")
        if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12 and mac.isascii()):
            return None
        issued = datetime.fromtimestamp(int(stamp), UTC)
        if not now - self.ttl <= issued <= now + _NONCE_SKEW:
            return None
        good = [
            hmac.compare_digest(self._mac(k, token, int(stamp)).encode(), mac.encode())
            for k in self._keys
        ]
        return issued if any(good) else None
