"""The one outbound request the webhooks make: an HTTPS GET to Amazon SNS (a signing
certificate, or a subscription's confirmation), behind the small :class:`Fetch` interface so
that tests inject their own and never reach the network.

The caller has already checked that the URL is an SNS one (:func:`.sns.sns_url`); this only
adds what any such GET needs: HTTPS with certificate verification, no redirect followed, a
deadline and a bounded answer.
"""

from __future__ import annotations

from typing import Protocol

import aiohttp

#: A signing certificate is about 2 KiB, a confirmation's answer less than 1 KiB.
MAX_ANSWER = 64 * 1024


class FetchError(Exception):
    """The GET failed: unreachable, timed out, not 200, or too large."""


class Fetch(Protocol):
    """GETs an HTTPS URL and returns the body of its 200 answer, else :class:`FetchError`."""

    async def __call__(self, url: str) -> bytes:
        """The body."""


class HttpsFetch:
    """:class:`Fetch` over aiohttp, its connection pool opened on first use."""

    def __init__(self, timeout: float, *, max_answer: int = MAX_ANSWER) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.max_answer = max_answer
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, url: str) -> bytes:
        if not url.startswith("https://"):
            raise FetchError("only https:// is fetched")
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.get(url, allow_redirects=False) as answer:
                if answer.status != 200:
                    raise FetchError(f"HTTP {answer.status}")
                body = await answer.content.read(self.max_answer + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FetchError(type(exc).__name__) from None
        if len(body) > self.max_answer:
            raise FetchError(f"an answer larger than {self.max_answer} octets")
        return body

    async def close(self) -> None:
        """Close the connection pool (safe to call twice)."""
        if self._session is not None:
            await self._session.close()
            self._session = None
