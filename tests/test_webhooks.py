"""What every provider's webhook shares: off (404) until configured, 503 (and a retry that
applies) when the store fails or the deadline passes, the same events changing nothing after
a restart, settings checked at start, metrics pre-initialised with bounded labels, the
dashboard panel, and no secret in the logs."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import running
from gateway.feedback.seen import SeenEvents
from gateway.observability.webhook_metrics import PROVIDERS, EventOutcome, RequestOutcome
from gateway.settings import ConfigError, Settings
from suppression.store import StoreError
from tests.conftest import Clock, GatewayFactory, settings_for
from tests.support import providers as p
from tests.support.upstream import Upstream
from tests.support.webhooks import Hooks, hooks, open_hooks, sendgrid_signer
from tests.test_observability_assets import DASHBOARD, fresh_metrics

__all__ = ["hooks"]


async def post(base: str, path: str, method: str = "POST") -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, base + path, data=b"[]") as answer:
            return answer.status, await answer.json(content_type=None)


async def test_every_endpoint_is_off_until_configured(start_gateway: GatewayFactory) -> None:
    """Without [feedback.webhooks.*] every provider's path is 404 (a problem document); with
    only SendGrid configured the others stay 404 and a GET on SendGrid's is 405."""
    async with start_gateway() as gw:
        host, port = gw.http_address or ("", 0)
        base = f"http://{host}:{port}"
        for name in ("ses", "sendgrid", "mailgun", "postmark", "other"):
            status, problem = await post(base, f"/feedback/{name}")
            assert status == 404 and "No webhook" in problem["detail"]
    sendgrid = {"webhooks": {"sendgrid": {"public_key": sendgrid_signer().public_key}}}
    async with start_gateway(feedback=sendgrid) as gw:
        host, port = gw.http_address or ("", 0)
        base = f"http://{host}:{port}"
        assert (await post(base, "/feedback/sendgrid"))[0] == 401  # there, and unsigned
        assert (await post(base, "/feedback/sendgrid", "GET"))[0] == 405
        for name in ("ses", "mailgun", "postmark"):
            assert (await post(base, f"/feedback/{name}"))[0] == 404


@pytest.mark.parametrize("provider", ["ses", "sendgrid", "mailgun", "postmark"])
async def test_a_body_over_the_limit_is_refused_unread(hooks: Hooks, provider: str) -> None:
    """Each endpoint answers 413 to a body over max_body_size, announced or streamed, before
    any authentication or parsing, and counts it."""
    big = b"[" + b" " * (1024 * 1024) + b"]"
    status, problem, _ = await hooks.post(provider, big)
    assert status == 413 and problem["reason"] == "too_large"

    async def chunks() -> Any:
        for _ in range(20):
            yield b" " * 65536

    url = f"{hooks.base}/feedback/{provider}"
    async with hooks.session.post(url, data=chunks()) as answer:  # no Content-Length
        assert answer.status == 413
    requests = "suppression_gateway_webhook_requests_total"
    assert hooks.sample(requests, provider=provider, outcome="too_large") == 2


def a_batch(now: datetime) -> list[dict[str, Any]]:
    """A bounce, a complaint, an all-marketing and a purpose unsubscribe."""
    e = p.sendgrid_event
    return [
        e("bounce", "gone@example.org", now, status="5.1.1", type="bounce", reason="5.1.1 no"),
        e("spamreport", "angry@example.org", now),
        e("unsubscribe", "bye@example.org", now),
        e("group_unsubscribe", "news@example.org", now, asm_group_id=10),
    ]


WHO = ("gone", "angry", "bye", "news")


async def ledgers(hooks: Hooks) -> list[Any]:
    return [(await hooks.record(f"{who}@example.org")).ledger for who in WHO]


async def test_a_failing_store_gets_503_and_the_retry_applies(
    hooks: Hooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the store fails, the batch gets 503 with Retry-After (the provider retries) and
    nothing is remembered as seen; the retry then applies every event."""
    store = hooks.gw.store
    real = store.record_feedback

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("connection lost (test)")

    monkeypatch.setattr(store, "record_feedback", down)
    batch = a_batch(hooks.clock.now)
    status, problem = await hooks.sendgrid(batch)
    assert status == 503 and problem["reason"] == "unavailable"
    monkeypatch.setattr(store, "record_feedback", real)
    status, answer = await hooks.sendgrid(batch)
    assert status == 200 and (answer["bounces"], answer["complaints"], answer["unsubscribes"]) == (
        1,
        1,
        2,
    )
    requests = "suppression_gateway_webhook_requests_total"
    assert hooks.sample(requests, provider="sendgrid", outcome="unavailable") == 1


async def test_the_deadline_answers_503_before_the_provider_gives_up(
    tmp_path: Path, upstream: Upstream, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store slower than [feedback.webhooks] deadline: 503 once the deadline has passed,
    not when the store answers."""
    async with open_hooks(tmp_path, upstream, clock, deadline=0.3) as hooks:

        async def slow(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(5)
            raise AssertionError("not reached")

        monkeypatch.setattr(hooks.gw.store, "record_feedback", slow)
        start = time.perf_counter()
        status, problem = await hooks.sendgrid(a_batch(clock.now))
        assert status == 503 and time.perf_counter() - start < 3, problem


async def test_the_same_events_after_a_restart_change_nothing(
    tmp_path: Path, upstream: Upstream, clock: Clock
) -> None:
    """Bounces, complaints and opt-outs applied by one gateway process are recognised by the
    store when another process (or replica) gets them again: no new event, no ledger entry."""
    batch = a_batch(clock.now)
    async with open_hooks(tmp_path, upstream, clock) as first:
        assert (await first.sendgrid(batch))[0] == 200
        before = await ledgers(first)
    clock.now += timedelta(minutes=2)  # a retry, re-signed later
    async with open_hooks(tmp_path, upstream, clock) as second:
        status, answer = await second.sendgrid(batch)
        assert status == 200 and answer["duplicates"] == 4, answer
        assert await ledgers(second) == before


@pytest.mark.parametrize(
    ("webhooks", "key"),
    [
        ({"sendgrid": {"public_key": "bm90IGEga2V5"}}, "feedback.webhooks.sendgrid.public_key"),
        ({"ses": {"topics": ["my-topic"]}}, "feedback.webhooks.ses.topics"),
        ({"ses": {"topics": []}}, "feedback.webhooks.ses.topics"),
        ({"postmark": {"purposes": []}}, "feedback.webhooks.postmark"),
        ({"postmark": {"header": "X-S", "secret": "short"}}, "feedback.webhooks.postmark"),
        ({"postmark": {"username": "u"}}, "feedback.webhooks.postmark"),
        ({"mailgun": {}}, "feedback.webhooks.mailgun.signing_key"),
        (
            {"mailgun": {"signing_key": "k", "purposes": [{"name": "t", "purpose": "nope"}]}},
            "feedback.webhooks.mailgun.purposes[0].purpose",
        ),
        ({"max_age": 1}, "feedback.webhooks.max_age"),
    ],
)
def test_bad_settings_name_their_key(webhooks: dict[str, Any], key: str) -> None:
    """Each bad webhook setting stops the start with a message naming its key."""
    from gateway.settings import load_settings

    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(None, {"SGW_FEEDBACK_WEBHOOKS": json.dumps(webhooks)})


async def test_an_unreadable_certificate_file_stops_the_start(
    tmp_path: Path, upstream: Upstream, clock: Clock
) -> None:
    """A trusted certificate file that is missing or no PEM certificate: one line naming the
    option, at start."""
    bad = tmp_path / "bad.pem"
    bad.write_text("nope")
    for path in (tmp_path / "missing.pem", bad):
        ses = {"topics": [p.TOPIC], "certificate_file": str(path)}
        settings = settings_for(tmp_path, upstream.url, feedback={"webhooks": {"ses": ses}})
        with pytest.raises(ConfigError, match=r"feedback\.webhooks\.ses\.certificate_file"):
            async with running(settings, clock=clock):
                pass


def test_webhook_series_start_at_zero_with_bounded_labels() -> None:
    """Every provider x outcome series of both webhook counters exists at 0 before the first
    request, as do the providers' feedback series and the provider opt-out channel; a
    provider outside the closed set is refused."""
    m = fresh_metrics()
    body = m.render()[0].decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    for provider in PROVIDERS:
        for request in RequestOutcome:
            name = "suppression_gateway_webhook_requests_total"
            assert value(name, provider=provider.value, outcome=request.value) == 0
        for event in EventOutcome:
            name = "suppression_gateway_webhook_events_total"
            assert value(name, provider=provider.value, outcome=event.value) == 0
        feedback = {"source": provider.value, "class": "hard", "reason": "userunknown"}
        assert value("suppression_gateway_feedback_total", **feedback) == 0
        assert value("suppression_gateway_feedback_duplicates_total", source=provider.value) == 0
    assert value("suppression_gateway_unsubscribes_total", channel="provider", purpose="none") == 0
    from suppression.model import FeedbackSource

    with pytest.raises(ValueError, match="no webhook provider"):
        m.webhooks.request(FeedbackSource.DSN, RequestOutcome.ACCEPTED)
    assert Settings().feedback.webhooks.ses is None  # off by default


def test_the_dashboard_shows_provider_events_beside_the_smtp_side() -> None:
    """In the dashboard's bounces and complaints row, below the feedback by source (the SMTP
    side's and the providers'), the webhook events by provider and outcome and the refused
    requests, side by side."""
    board = json.loads(DASHBOARD.read_text())
    panels = {panel["title"]: panel for panel in board["panels"]}
    by_source = panels["Bounces and complaints/s by source and class"]
    events = panels["Provider webhook events/s by provider and outcome"]
    refused = panels["Provider webhook requests refused/s"]
    assert "suppression_gateway_feedback_total" in by_source["targets"][0]["expr"]
    assert "suppression_gateway_webhook_events_total" in events["targets"][0]["expr"]
    assert "suppression_gateway_webhook_requests_total" in refused["targets"][0]["expr"]
    assert events["gridPos"]["y"] == refused["gridPos"]["y"] > by_source["gridPos"]["y"]
    rows = [p for p in board["panels"] if p["type"] == "row"]
    below = [r for r in rows if r["gridPos"]["y"] > by_source["gridPos"]["y"]]
    assert all(r["gridPos"]["y"] > events["gridPos"]["y"] for r in below)  # the same row


async def test_no_secret_reaches_the_logs(hooks: Hooks, caplog: pytest.LogCaptureFixture) -> None:
    """Refused and accepted requests log the provider, the outcome and the counts: never a
    password, a secret header, a signing key or an address."""
    caplog.set_level(logging.DEBUG)
    now = hooks.clock.now
    await hooks.postmark(p.postmark_bounce("HardBounce", "secret-person@example.org", now))
    await hooks.postmark(
        p.postmark_bounce("HardBounce", "x@example.org", now), p.postmark_basic(password="z" * 30)
    )
    await hooks.mailgun(p.mailgun_body(p.mailgun_event("complained", "m@example.org", now), now))
    text = caplog.text
    for secret in (p.POSTMARK_PASSWORD, p.POSTMARK_SECRET, p.MAILGUN_KEY, "z" * 30):
        assert secret not in text
    assert "secret-person" not in text and "postmark webhook" in text


def test_seen_events_forget_after_their_time_and_beyond_their_bound() -> None:
    """The replay memory answers within its ttl, forgets after it, and keeps at most
    max_entries (the oldest dropped first)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    seen = SeenEvents(timedelta(minutes=10), max_entries=3)
    seen.add(["a", "b"], t0)
    assert seen.seen("a", t0 + timedelta(minutes=9)) and not seen.seen("c", t0)
    assert not seen.seen("a", t0 + timedelta(minutes=10))
    seen.add(["1", "2", "3", "4"], t0)
    assert len(seen) == 3 and "1" not in seen and "4" in seen
    with pytest.raises(ValueError):
        SeenEvents(timedelta(0))
