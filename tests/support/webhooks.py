"""A running gateway with every provider's webhook configured, a real HTTP client, and the keys
that sign for each provider (tests/support/providers.py); ``hooks`` is the fixture."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import Gateway, running
from suppression.store import ContactRecord
from tests.conftest import Clock, settings_for
from tests.support import providers as p
from tests.support.upstream import Upstream

#: The purposes the providers' lists stand for in these tests.
PURPOSES = {
    "sendgrid": [{"name": "10", "purpose": "newsletter"}],
    "mailgun": [{"name": "partners-tag", "purpose": "partners"}],
    "postmark": [{"name": "newsletter-stream", "purpose": "newsletter"}],
}


@functools.cache
def sns_signer(now: datetime) -> p.SnsSigner:
    """One RSA key and certificate per clock start (making a key takes a while)."""
    return p.SnsSigner(now)


@functools.cache
def sendgrid_signer() -> p.SendGridSigner:
    return p.SendGridSigner()


def webhook_settings(tmp_path: Path, clock: Clock, **overrides: Any) -> dict[str, Any]:
    """``[feedback.webhooks]`` with all four providers; SES trusts a certificate file."""
    cert = tmp_path / "sns.pem"
    cert.write_bytes(sns_signer(clock.now).pem)
    settings: dict[str, Any] = {
        "deadline": 10.0,  # the machine is shared: tests of the deadline set their own
        "ses": {"topics": [p.TOPIC], "certificate_file": str(cert)},
        "sendgrid": {"public_key": sendgrid_signer().public_key, "purposes": PURPOSES["sendgrid"]},
        "mailgun": {"signing_key": p.MAILGUN_KEY, "purposes": PURPOSES["mailgun"]},
        "postmark": {
            "username": p.POSTMARK_USER,
            "password": p.POSTMARK_PASSWORD,
            "header": p.POSTMARK_HEADER,
            "secret": p.POSTMARK_SECRET,
            "purposes": PURPOSES["postmark"],
        },
    }
    settings.update(overrides)
    return {key: value for key, value in settings.items() if value is not None}


class Hooks:
    """Posts to a running gateway's webhooks and looks at what it recorded."""

    def __init__(
        self, gw: Gateway, session: aiohttp.ClientSession, clock: Clock, fetch: p.RecordingFetch
    ) -> None:
        self.gw, self.session, self.clock, self.fetch = gw, session, clock, fetch
        host, port = gw.http_address or ("", 0)
        self.base = f"http://{host}:{port}"

    async def post(
        self, provider: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """Status, JSON answer and headers of a raw POST."""
        url = f"{self.base}/feedback/{provider}"
        async with self.session.post(url, data=body, headers=headers or {}) as answer:
            return answer.status, await answer.json(content_type=None), dict(answer.headers)

    async def ses(self, message: dict[str, Any], version: str = "1") -> tuple[int, Any]:
        """Sign an SNS message and post it as SNS does (text/plain)."""
        body = json.dumps(sns_signer(self.clock.now).sign(message, version)).encode()
        headers = {
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": message["Type"],
        }
        status, answer, _ = await self.post("ses", body, headers)
        return status, answer

    async def sendgrid(
        self, events: list[dict[str, Any]], when: datetime | None = None
    ) -> tuple[int, Any]:
        """Sign a batch of SendGrid events and post it."""
        body = json.dumps(events).encode()
        headers = sendgrid_signer().headers(body, when or self.clock.now)
        status, answer, _ = await self.post("sendgrid", body, headers)
        return status, answer

    async def mailgun(self, body: dict[str, Any]) -> tuple[int, Any]:
        """Post a (signed) Mailgun body."""
        headers = {"Content-Type": "application/json"}
        status, answer, _ = await self.post("mailgun", json.dumps(body).encode(), headers)
        return status, answer

    async def postmark(
        self, obj: dict[str, Any], headers: dict[str, str] | None = None
    ) -> tuple[int, Any, dict[str, str]]:
        """Post a Postmark webhook with Basic credentials (or ``headers``)."""
        sent = p.postmark_basic() if headers is None else headers
        return await self.post("postmark", json.dumps(obj).encode(), sent)

    async def record(self, email: str) -> ContactRecord:
        """Everything the store holds about ``email``."""
        return await self.gw.store.contact_record(self.gw.identities.of(email))

    def sample(self, name: str, **labels: str) -> float:
        """One sample of the gateway's metrics."""
        body = self.gw.metrics.render()[0].decode()
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return float(s.value)
        raise AssertionError(f"no sample {name} {labels}")


@contextlib.asynccontextmanager
async def open_hooks(
    tmp_path: Path,
    upstream: Upstream,
    clock: Clock,
    fetch: p.RecordingFetch | None = None,
    **webhooks: Any,
) -> AsyncIterator[Hooks]:
    """A gateway with the providers' webhooks (``webhooks`` overrides their settings)."""
    fetch = fetch or p.RecordingFetch()
    feedback = {"webhooks": webhook_settings(tmp_path, clock, **webhooks)}
    settings = settings_for(tmp_path, upstream.url, feedback=feedback)
    async with running(settings, clock=clock, fetch=fetch) as gw:
        async with aiohttp.ClientSession() as session:
            yield Hooks(gw, session, clock, fetch)


@pytest.fixture
async def hooks(tmp_path: Path, upstream: Upstream, clock: Clock) -> AsyncIterator[Hooks]:
    async with open_hooks(tmp_path, upstream, clock) as h:
        yield h
