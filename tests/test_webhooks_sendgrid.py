"""The SendGrid Event Webhook at ``POST /feedback/sendgrid``: batches verified with the
configured ECDSA key over timestamp + body, each event type mapped (a ``blocked`` bounce never
suppresses, an unsubscribe is an opt-out with channel ``provider``), and tampered, unsigned,
replayed, stale or oversized batches refused without a change."""

from __future__ import annotations

import json
from datetime import timedelta

from suppression.model import ConsentStatus, Scope, SuppressionReason
from tests.support import providers as p
from tests.support.webhooks import Hooks, hooks, sendgrid_signer

__all__ = ["hooks"]


async def test_a_batch_of_every_event_type(hooks: Hooks) -> None:
    """One signed batch: a hard bounce suppresses; a blocked bounce with a 5.1.1 reply is a
    sender-side failure; a drop for a bounced address is hard; a spam report a complaint; an
    unsubscribe an all-marketing opt-out; a group unsubscribe the purpose of its group; the
    other types ignored."""
    now = hooks.clock.now
    e = p.sendgrid_event
    batch = [
        e("processed", "a@example.org", now),
        e(
            "bounce",
            "gone@example.org",
            now,
            reason="550 5.1.1 unknown recipient",
            status="5.1.1",
            type="bounce",
            bounce_classification="Invalid Address",
        ),
        e(
            "bounce",
            "blocked@example.org",
            now,
            reason="550 5.1.1 user unknown",
            status="5.1.1",
            type="blocked",
        ),
        e("dropped", "dropped@example.org", now, reason="Bounced Address", status="5.0.0"),
        e("dropped", "spammy@example.org", now, reason="Spam Content", status="5.0.0"),
        e("spamreport", "angry@example.org", now),
        e("unsubscribe", "bye@example.org", now),
        e("group_unsubscribe", "news@example.org", now, asm_group_id=10),
        e("group_unsubscribe", "other@example.org", now, asm_group_id=99),
        e("delivered", "a@example.org", now, response="250 OK"),
        e("open", "a@example.org", now, useragent="Mozilla/5.0"),
        e("group_resubscribe", "bye@example.org", now, asm_group_id=10),
        e("a_future_type", "a@example.org", now),
    ]
    status, answer = await hooks.sendgrid(batch)
    assert status == 200, answer
    assert answer == {
        "events": 13,
        "bounces": 3,
        "complaints": 1,
        "unsubscribes": 3,
        "duplicates": 0,
        "ignored": 6,
        "unattributed": 0,
        "suppressed": 3,
    }
    (gone,) = (await hooks.record("gone@example.org")).suppressions
    assert (gone.reason, gone.scope, gone.source) == (
        SuppressionReason.BOUNCE,
        Scope.ALL,
        "sendgrid",
    )
    blocked = await hooks.record("blocked@example.org")
    assert not blocked.suppressions
    assert [(f.feedback_class, f.reason) for f in blocked.feedback] == [("sender", "blocked")]
    (dropped,) = (await hooks.record("dropped@example.org")).feedback
    assert (dropped.feedback_class, dropped.reason) == ("hard", "userunknown")
    assert not (await hooks.record("spammy@example.org")).feedback
    (angry,) = (await hooks.record("angry@example.org")).suppressions
    assert (angry.reason, angry.scope) == (SuppressionReason.COMPLAINT, Scope.MARKETING)
    (bye,) = (await hooks.record("bye@example.org")).suppressions
    assert (bye.reason, bye.scope, bye.source) == (
        SuppressionReason.UNSUBSCRIBE,
        Scope.MARKETING,
        "sendgrid",
    )
    news = await hooks.record("news@example.org")
    assert not news.suppressions
    (consent,) = news.consents
    assert (consent.purpose, consent.status, consent.source) == (
        "newsletter",
        ConsentStatus.OPTED_OUT,
        "sendgrid",
    )
    assert consent.withdrawn_at == now.replace(microsecond=0)  # the provider's time
    (other,) = (await hooks.record("other@example.org")).suppressions  # group 99: no purpose
    assert other.scope is Scope.MARKETING
    unsubscribes = "suppression_gateway_unsubscribes_total"
    assert hooks.sample(unsubscribes, channel="provider", purpose="newsletter") == 1
    assert hooks.sample(unsubscribes, channel="provider", purpose="none") == 2
    events = "suppression_gateway_webhook_events_total"
    assert hooks.sample(events, provider="sendgrid", outcome="ignored") == 6
    labels = {"source": "sendgrid", "class": "sender", "reason": "blocked"}
    assert hooks.sample("suppression_gateway_feedback_total", **labels) == 1


async def test_the_same_batch_again_changes_nothing(hooks: Hooks) -> None:
    """A replayed batch (the same signed request) and the same events re-signed later (a
    retry) are answered 200 and change nothing: no new event, no new ledger entry."""
    now = hooks.clock.now
    batch = [
        p.sendgrid_event(
            "bounce",
            "gone@example.org",
            now,
            status="5.1.1",
            type="bounce",
            reason="550 5.1.1 no such user",
        ),
        p.sendgrid_event("unsubscribe", "bye@example.org", now),
        p.sendgrid_event("spamreport", "angry@example.org", now),
    ]
    body = json.dumps(batch).encode()
    headers = sendgrid_signer().headers(body, now)
    assert (await hooks.post("sendgrid", body, headers))[0] == 200
    ledger = [(await hooks.record(f"{who}@example.org")).ledger for who in ("gone", "bye", "angry")]
    status, answer, _ = await hooks.post("sendgrid", body, headers)
    assert status == 200 and answer["duplicates"] == 3
    assert answer["bounces"] == answer["unsubscribes"] == answer["complaints"] == 0
    hooks.clock.now += timedelta(minutes=1)
    status, answer = await hooks.sendgrid(batch)  # re-signed: a retry
    assert status == 200 and answer["duplicates"] == 3
    assert [
        (await hooks.record(f"{who}@example.org")).ledger for who in ("gone", "bye", "angry")
    ] == ledger


async def test_tampered_unsigned_and_foreign_signatures_are_refused(hooks: Hooks) -> None:
    """A body changed after signing, a missing signature or timestamp, a signature by another
    key, a signed timestamp changed: 401, nothing recorded."""
    now = hooks.clock.now
    batch = [p.sendgrid_event("spamreport", "angry@example.org", now)]
    body = json.dumps(batch).encode()
    headers = sendgrid_signer().headers(body, now)
    tampered = body.replace(b"angry@", b"other@")
    stranger = p.SendGridSigner().headers(body, now)
    later = {**headers, "X-Twilio-Email-Event-Webhook-Timestamp": str(int(now.timestamp()) + 1)}
    cases = [
        (tampered, headers),
        (body, {"Content-Type": "application/json"}),
        (body, {k: v for k, v in headers.items() if "Timestamp" not in k}),
        (body, stranger),
        (body, later),
        (body, {**headers, "X-Twilio-Email-Event-Webhook-Signature": "not base64!"}),
    ]
    for raw, sent in cases:
        status, problem, _ = await hooks.post("sendgrid", raw, sent)
        assert status == 401 and problem["reason"] == "unauthenticated"
    assert not (await hooks.record("angry@example.org")).feedback
    assert not (await hooks.record("other@example.org")).feedback


async def test_stale_malformed_and_oversized_batches(hooks: Hooks) -> None:
    """Signed six minutes ago: 403 stale; a signed object instead of an array: 400; more
    events than max_events or a body over max_body_size: 413; nothing recorded."""
    now = hooks.clock.now
    batch = [p.sendgrid_event("spamreport", "angry@example.org", now)]
    status, problem = await hooks.sendgrid(batch, when=now - timedelta(minutes=6))
    assert status == 403 and problem["reason"] == "stale"
    body = json.dumps(batch[0]).encode()
    status, problem, _ = await hooks.post("sendgrid", body, sendgrid_signer().headers(body, now))
    assert status == 400 and problem["reason"] == "malformed"
    many = [p.sendgrid_event("open", "a@example.org", now) for _ in range(2001)]
    status, problem = await hooks.sendgrid(many)
    assert status == 413
    status, problem, _ = await hooks.post("sendgrid", b"[" + b" " * (1 << 20) + b"]")
    assert status == 413
    assert not (await hooks.record("angry@example.org")).feedback
    requests = "suppression_gateway_webhook_requests_total"
    assert hooks.sample(requests, provider="sendgrid", outcome="stale") == 1
    assert hooks.sample(requests, provider="sendgrid", outcome="too_large") == 2


async def test_odd_events_are_counted_not_fatal(hooks: Hooks) -> None:
    """Events without an address, with a bad one or of the wrong shape are unattributed or
    ignored; the rest of the batch is applied."""
    now = hooks.clock.now
    batch: list[object] = [
        p.sendgrid_event("bounce", "not an address", now, status="5.1.1", type="bounce"),
        {"event": "spamreport", "timestamp": "x"},
        "not an object",
        p.sendgrid_event("spamreport", "Angry Person <angry@example.org>", now),
    ]
    body = json.dumps(batch).encode()
    status, answer, _ = await hooks.post("sendgrid", body, sendgrid_signer().headers(body, now))
    assert status == 200
    assert (answer["unattributed"], answer["ignored"], answer["complaints"]) == (2, 1, 1)
    assert (await hooks.record("angry@example.org")).suppressions
