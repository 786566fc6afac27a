"""Mailgun webhooks at ``POST /feedback/mailgun``: verified by HMAC-SHA256 of timestamp + token
with the signing key; ``failed`` by severity (a temporary failure never hard-suppresses),
``complained``, ``unsubscribed``; a token is single-use; bad, stale or replayed requests
change nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from suppression.model import ConsentStatus, Scope, SuppressionReason
from tests.support import providers as p
from tests.support.webhooks import Hooks, hooks

__all__ = ["hooks"]


def failed(email: str, when: Any, severity: str, **status: Any) -> dict[str, Any]:
    delivery = {"attempt-no": 1, "session-seconds": 0.1, "mx-host": "mx.example.org", **status}
    return p.mailgun_event(
        "failed", email, when, severity=severity, reason="generic", **{"delivery-status": delivery}
    )


async def test_permanent_and_temporary_failures(hooks: Hooks) -> None:
    """A permanent 5.1.1 failure suppresses (evidence: the MX); a temporary 4.2.2 failure is
    a soft bounce; a temporary failure with a 5.1.1 reply is soft too, never hard; a
    suppress-bounce (Mailgun's own list) is hard without a reply code."""
    now = hooks.clock.now
    cases = [
        failed(
            "gone@example.org",
            now,
            "permanent",
            code=550,
            message="5.1.1 No such user",
            **{"enhanced-code": "5.1.1"},
        ),
        failed(
            "full@example.org",
            now,
            "temporary",
            code=452,
            message="Mailbox over quota",
            **{"enhanced-code": "4.2.2"},
        ),
        failed("odd@example.org", now, "temporary", code=550, message="550 5.1.1 user unknown"),
        p.mailgun_event(
            "failed",
            "listed@example.org",
            now,
            severity="permanent",
            reason="suppress-bounce",
            **{
                "delivery-status": {
                    "code": 605,
                    "description": "Not delivering to previously bounced address",
                }
            },
        ),
    ]
    for data in cases:
        status, answer = await hooks.mailgun(p.mailgun_body(data, now))
        assert status == 200 and answer["bounces"] == 1, answer
    gone = await hooks.record("gone@example.org")
    (event,) = gone.feedback
    assert (event.source, event.feedback_class, event.status, event.mta) == (
        "mailgun",
        "hard",
        "5.1.1",
        "mx.example.org",
    )
    assert [s.reason for s in gone.suppressions] == [SuppressionReason.BOUNCE]
    for who, expected in (("full", ("soft", "mailboxfull")), ("odd", ("soft", "userunknown"))):
        record = await hooks.record(f"{who}@example.org")
        assert [(e.feedback_class, e.reason) for e in record.feedback] == [expected]
        assert not record.suppressions
    (listed,) = (await hooks.record("listed@example.org")).feedback
    assert (listed.feedback_class, listed.reason) == ("hard", "userunknown")


async def test_complaints_unsubscribes_and_other_events(hooks: Hooks) -> None:
    """complained: a complaint; unsubscribed with a mapped tag: an opt-out of its purpose,
    without: of all marketing; delivered, opened, an unknown event: ignored."""
    now = hooks.clock.now
    events = [
        p.mailgun_event("complained", "angry@example.org", now),
        p.mailgun_event("unsubscribed", "tagged@example.org", now, tags=["partners-tag"]),
        p.mailgun_event("unsubscribed", "bye@example.org", now),
        p.mailgun_event("delivered", "ok@example.org", now),
        p.mailgun_event("opened", "ok@example.org", now),
        p.mailgun_event("something-new", "ok@example.org", now),
    ]
    answers = [await hooks.mailgun(p.mailgun_body(e, now)) for e in events]
    kinds = [next(k for k in ("complaints", "unsubscribes", "ignored") if a[k]) for _, a in answers]
    assert kinds == ["complaints"] + ["unsubscribes"] * 2 + ["ignored"] * 3
    (angry,) = (await hooks.record("angry@example.org")).suppressions
    assert (angry.reason, angry.source) == (SuppressionReason.COMPLAINT, "mailgun")
    (consent,) = (await hooks.record("tagged@example.org")).consents
    assert (consent.purpose, consent.status) == ("partners", ConsentStatus.OPTED_OUT)
    (bye,) = (await hooks.record("bye@example.org")).suppressions
    assert (bye.reason, bye.scope) == (SuppressionReason.UNSUBSCRIBE, Scope.MARKETING)
    assert not (await hooks.record("ok@example.org")).feedback


async def test_bad_stale_and_replayed_signatures(hooks: Hooks) -> None:
    """A signature with another key, a changed timestamp, a missing signature: 401; signed
    six minutes ago: 403 stale; the same token again, even with other event-data (which
    Mailgun's signature does not cover): 403 replayed. Nothing recorded by any."""
    now = hooks.clock.now
    data = p.mailgun_event("complained", "angry@example.org", now)
    wrong_key = p.mailgun_body(data, now, key="key-" + "0" * 32)
    moved = p.mailgun_body(data, now)
    moved["signature"]["timestamp"] = str(int(now.timestamp()) + 1)
    unsigned = {"event-data": data}
    for body in (wrong_key, moved, unsigned):
        status, answer = await hooks.mailgun(body)
        assert status == 401 and answer["reason"] == "unauthenticated"
    status, answer = await hooks.mailgun(p.mailgun_body(data, now - timedelta(minutes=6)))
    assert status == 403 and answer["reason"] == "stale"
    assert not (await hooks.record("angry@example.org")).feedback
    body = p.mailgun_body(p.mailgun_event("opened", "x@example.org", now), now)
    assert (await hooks.mailgun(body))[0] == 200
    forged = {**body, "event-data": data}  # the same signature, other events
    status, answer = await hooks.mailgun(forged)
    assert status == 403 and answer["reason"] == "replayed"
    assert not (await hooks.record("angry@example.org")).feedback
    for raw in (b"[]", b"{}", b'{"signature": "x"}'):
        status, answer, _ = await hooks.post("mailgun", raw)
        assert status in (400, 401)
    signed_nothing = p.mailgun_body(data, now)
    del signed_nothing["event-data"]
    status, answer = await hooks.mailgun(signed_nothing)
    assert status == 400 and answer["reason"] == "malformed"
    requests = "suppression_gateway_webhook_requests_total"
    assert hooks.sample(requests, provider="mailgun", outcome="replayed") == 1


async def test_one_message_s_temporary_failures_are_one_report(hooks: Hooks) -> None:
    """Mailgun reports each temporary failure of a message (new event ids): they are one
    soft bounce; the permanent failure that follows is another report, and suppresses."""
    now = hooks.clock.now
    first = failed("slow@example.org", now, "temporary", code=452, **{"enhanced-code": "4.2.2"})
    headers = first["message"]["headers"]
    for n in range(3):
        retry = {**first, "id": f"attempt-{n}"}
        status, answer = await hooks.mailgun(p.mailgun_body(retry, now))
        assert status == 200
    assert answer["duplicates"] == 1
    final = failed(
        "slow@example.org",
        now,
        "permanent",
        code=550,
        message="5.1.1 unknown user",
        **{"enhanced-code": "5.1.1"},
    )
    final["message"] = {"headers": headers}
    assert (await hooks.mailgun(p.mailgun_body(final, now)))[1]["suppressed"] == 1
    record = await hooks.record("slow@example.org")
    assert [e.feedback_class for e in record.feedback] == ["soft", "hard"]
