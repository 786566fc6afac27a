"""Amazon SES through SNS at ``POST /feedback/ses``: signed messages (SignatureVersion 1 and 2)
from configured topics only, subscriptions confirmed for those topics only, bounces and
complaints recorded as source ``ses``, and every tampered, replayed, stale or oversized request
refused without a change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.feedback.providers.sns import sns_url, string_to_sign
from suppression.model import Scope, SuppressionReason
from tests.conftest import Clock
from tests.support import providers as p
from tests.support.upstream import Upstream
from tests.support.webhooks import Hooks, hooks, open_hooks, sns_signer

__all__ = ["hooks"]

GONE = {"emailAddress": "gone@example.org", "status": "5.1.1"}
GONE["diagnosticCode"] = "smtp; 550 5.1.1 user unknown"


def bounce(when: Any, *recipients: dict[str, str], kind: str = "Permanent") -> dict[str, Any]:
    return p.sns_notification(p.ses_bounce(kind, "General", list(recipients or [GONE])), when)


async def test_a_permanent_bounce_suppresses_with_its_evidence(hooks: Hooks) -> None:
    """A signed SES Permanent bounce (SignatureVersion 1) suppresses its recipient (all mail,
    source ses), with the status and the reporting MTA as evidence, and is counted."""
    status, answer = await hooks.ses(bounce(hooks.clock.now))
    assert status == 200, answer
    assert answer == {
        "events": 1,
        "bounces": 1,
        "complaints": 0,
        "unsubscribes": 0,
        "duplicates": 0,
        "ignored": 0,
        "unattributed": 0,
        "suppressed": 1,
    }
    record = await hooks.record("gone@example.org")
    (s,) = record.suppressions
    assert (s.reason, s.scope, s.source) == (SuppressionReason.BOUNCE, Scope.ALL, "ses")
    (event,) = record.feedback
    assert (event.source, event.feedback_class, event.reason, event.status, event.mta) == (
        "ses",
        "hard",
        "userunknown",
        "5.1.1",
        "a27-23.smtp-out.us-west-2.amazonses.com",
    )
    (added,) = [e for e in record.ledger if e.kind == "suppression-added"]
    assert (added.source, added.actor) == ("ses", "ses-webhook")
    labels = {"source": "ses", "class": "hard", "reason": "userunknown"}
    assert hooks.sample("suppression_gateway_feedback_total", **labels) == 1
    assert (
        hooks.sample("suppression_gateway_webhook_events_total", provider="ses", outcome="bounce")
        == 1
    )
    assert (
        hooks.sample(
            "suppression_gateway_webhook_requests_total", provider="ses", outcome="accepted"
        )
        == 1
    )


async def test_transient_and_undetermined_bounces_never_hard_suppress(hooks: Hooks) -> None:
    """SignatureVersion 2: a Transient bounce with a 5.1.1 reply, and an Undetermined one, are
    soft bounces (history, no suppression); a Transient MailboxFull is soft mailboxfull."""
    full = {"emailAddress": "full@example.org", "status": "5.2.2", "diagnosticCode": "smtp; 552"}
    for kind, who in (("Transient", GONE), ("Undetermined", GONE), ("Transient", full)):
        msg = p.sns_notification(
            p.ses_bounce(kind, "General", [who], message_id=f"m-{kind}-{who['emailAddress']}"),
            hooks.clock.now,
        )
        status, answer = await hooks.ses(msg, version="2")
        assert status == 200 and answer["bounces"] == 1 and answer["suppressed"] == 0, answer
    gone = await hooks.record("gone@example.org")
    assert not gone.suppressions
    assert [(e.feedback_class, e.reason) for e in gone.feedback] == [("soft", "userunknown")] * 2
    full_record = await hooks.record("full@example.org")
    assert [(e.feedback_class, e.reason) for e in full_record.feedback] == [("soft", "mailboxfull")]


async def test_subtypes_name_the_reason_when_there_is_no_reply(hooks: Hooks) -> None:
    """A Permanent NoEmail bounce without a diagnostic is a hard userunknown; a Transient
    MessageTooLarge a transient mesgtoobig."""
    bare = [{"emailAddress": "nobody@example.org"}]
    big = [{"emailAddress": "big@example.org"}]
    for kind, sub, who in (("Permanent", "NoEmail", bare), ("Transient", "MessageTooLarge", big)):
        msg = p.sns_notification(p.ses_bounce(kind, sub, who, message_id=sub), hooks.clock.now)
        assert (await hooks.ses(msg))[0] == 200
    (nobody,) = (await hooks.record("nobody@example.org")).feedback
    assert (nobody.feedback_class, nobody.reason, nobody.suppression_id is not None) == (
        "hard",
        "userunknown",
        True,
    )
    (big_event,) = (await hooks.record("big@example.org")).feedback
    assert (big_event.feedback_class, big_event.reason) == ("transient", "mesgtoobig")


async def test_complaints_and_deliveries(hooks: Hooks) -> None:
    """A Complaint suppresses marketing (a missing feedback type is a spam click: abuse); a
    not-spam one suppresses nothing; a Delivery and an unknown type are ignored."""
    now = hooks.clock.now
    for email, kind in (("angry@example.org", "abuse"), ("quiet@example.org", None)):
        status, answer = await hooks.ses(p.sns_notification(p.ses_complaint(email, kind), now))
        assert status == 200 and answer["complaints"] == 1 and answer["suppressed"] == 1
    status, answer = await hooks.ses(
        p.sns_notification(p.ses_complaint("fine@example.org", "not-spam"), now)
    )
    assert answer["complaints"] == 1 and answer["suppressed"] == 0
    (s,) = (await hooks.record("angry@example.org")).suppressions
    assert (s.reason, s.scope, s.source) == (SuppressionReason.COMPLAINT, Scope.MARKETING, "ses")
    for other in (p.ses_delivery("ok@example.org"), {"eventType": "Open", "mail": {}}):
        status, answer = await hooks.ses(p.sns_notification(other, now))
        assert status == 200 and answer["ignored"] == 1 and answer["events"] == 1
    text = p.sns_notification({}, now)
    text["Message"] = "Hello from the SNS console"
    status, answer = await hooks.ses(text)
    assert status == 200 and answer["ignored"] == 1
    assert not (await hooks.record("ok@example.org")).feedback


async def test_a_subscription_is_confirmed_for_configured_topics_only(hooks: Hooks) -> None:
    """A signed SubscriptionConfirmation for a configured topic is confirmed by a GET of its
    SubscribeURL (through the injected fetcher); another topic gets 403 and nothing is
    fetched; a SubscribeURL off SNS is refused; an UnsubscribeConfirmation is taken."""
    hooks.fetch.answers[p.SUBSCRIBE_URL] = b"<ConfirmSubscriptionResponse/>"
    now = hooks.clock.now
    status, answer = await hooks.ses(p.sns_confirmation(now))
    assert status == 200 and answer == {"confirmed": True}
    assert hooks.fetch.urls == [p.SUBSCRIBE_URL]
    status, problem = await hooks.ses(p.sns_confirmation(now, topic=p.OTHER_TOPIC))
    assert status == 403 and problem["reason"] == "wrong_topic"
    evil = p.sns_confirmation(now, url="https://sns.us-west-2.amazonaws.com.evil.example/?x")
    status, problem = await hooks.ses(evil)
    assert status == 400
    assert hooks.fetch.urls == [p.SUBSCRIBE_URL]
    unsubscribed = {**p.sns_confirmation(now), "Type": "UnsubscribeConfirmation"}
    status, answer = await hooks.ses(unsubscribed)
    assert status == 200 and answer["events"] == 0
    hooks.fetch.down = True
    status, problem, headers = await hooks.post(
        "ses", json.dumps(sns_signer(now).sign(p.sns_confirmation(now))).encode()
    )
    assert status == 503 and headers["Retry-After"]
    requests = "suppression_gateway_webhook_requests_total"
    assert hooks.sample(requests, provider="ses", outcome="confirmed") == 1
    assert hooks.sample(requests, provider="ses", outcome="wrong_topic") == 1


async def test_tampered_unsigned_and_foreign_certificates_are_refused(hooks: Hooks) -> None:
    """A message changed after signing, one without a signature, one with an unknown
    signature version, and one whose SigningCertURL is not SNS's all get 401 and change
    nothing; a notification for another topic gets 403."""
    now = hooks.clock.now
    signed = sns_signer(now).sign(bounce(now))
    tampered = {**signed, "Message": signed["Message"].replace("gone@", "other@")}
    unsigned = {k: v for k, v in signed.items() if k != "Signature"}
    version_3 = {**signed, "SignatureVersion": "3"}
    for url in (
        "http://sns.us-west-2.amazonaws.com/cert.pem",
        "https://sns.us-west-2.amazonaws.com.attacker.example/cert.pem",
        "https://attacker.example/sns.us-west-2.amazonaws.com.pem",
        "https://user@sns.us-west-2.amazonaws.com/cert.pem",
        "https://sns.us-west-2.amazonaws.com:8443/cert.pem",
    ):
        foreign = sns_signer(now).sign({**bounce(now), "SigningCertURL": url})
        status, problem, _ = await hooks.post("ses", json.dumps(foreign).encode())
        assert status == 401 and problem["reason"] == "unauthenticated", url
    for body in (tampered, unsigned, version_3):
        status, problem, _ = await hooks.post("ses", json.dumps(body).encode())
        assert status == 401 and problem["reason"] == "unauthenticated"
    status, problem = await hooks.ses(bounce(now) | {"TopicArn": p.OTHER_TOPIC})
    assert status == 403 and problem["reason"] == "wrong_topic"
    for raw in (b"not json", b"[1, 2]", b'{"Type": ["x"]}', json.dumps({"Type": "Other"}).encode()):
        status, problem, _ = await hooks.post("ses", raw)
        assert status == 400 and problem["reason"] == "malformed"
    assert not (await hooks.record("gone@example.org")).feedback
    assert not (await hooks.record("other@example.org")).feedback
    assert hooks.fetch.urls == []  # the trusted certificate replaces fetching
    assert (
        hooks.sample(
            "suppression_gateway_webhook_requests_total", provider="ses", outcome="unauthenticated"
        )
        == 8
    )


async def test_replayed_stale_and_oversized_requests_change_nothing(hooks: Hooks) -> None:
    """The same signed message twice: the second is answered 200 as a duplicate; a message
    signed six minutes ago (or six ahead) gets 403 stale; a body over max_body_size, or a
    signed message with more recipients than max_events, 413."""
    from datetime import timedelta

    now = hooks.clock.now
    body = json.dumps(sns_signer(now).sign(bounce(now))).encode()
    assert (await hooks.post("ses", body))[0] == 200
    status, answer, _ = await hooks.post("ses", body)
    assert status == 200 and answer["duplicates"] == 1 and answer["bounces"] == 0
    assert len((await hooks.record("gone@example.org")).feedback) == 1
    for skew in (timedelta(minutes=-6), timedelta(minutes=6)):
        late = bounce(now + skew, {"emailAddress": "late@example.org", "status": "5.1.1"})
        status, problem = await hooks.ses(late)
        assert status == 403 and problem["reason"] == "stale"
    assert not (await hooks.record("late@example.org")).feedback
    status, problem, _ = await hooks.post("ses", b"{" + b" " * (1024 * 1024))
    assert status == 413 and problem["reason"] == "too_large"
    many = [{"emailAddress": f"u{n}@example.org", "status": "5.1.1"} for n in range(2001)]
    status, problem = await hooks.ses(bounce(now, *many))  # signed, but past max_events
    assert status == 413 and "2001 events" in problem["detail"]
    assert not (await hooks.record("u1@example.org")).feedback
    events = "suppression_gateway_webhook_events_total"
    assert hooks.sample(events, provider="ses", outcome="duplicate") == 1


async def test_a_replay_after_a_restart_is_recognised_by_the_store(
    tmp_path: Path, upstream: Upstream, clock: Clock
) -> None:
    """Seen events survive a restart: the same signed notification to a new gateway process
    on the same store records nothing (the store's key, not the process's memory)."""
    body = json.dumps(sns_signer(clock.now).sign(bounce(clock.now))).encode()
    async with open_hooks(tmp_path, upstream, clock) as first:
        assert (await first.post("ses", body))[1]["bounces"] == 1
    async with open_hooks(tmp_path, upstream, clock) as second:
        status, answer, _ = await second.post("ses", body)
        assert status == 200 and answer["duplicates"] == 1 and answer["bounces"] == 0
        assert len((await second.record("gone@example.org")).feedback) == 1


async def test_certificates_are_fetched_from_sns_once_and_kept(
    tmp_path: Path, upstream: Upstream, clock: Clock
) -> None:
    """Without a trusted certificate file the SigningCertURL is fetched (through the injected
    fetcher) once for many messages; while it cannot be fetched the answer is 503 and
    nothing is recorded, and the provider's retry then applies."""
    fetch = p.RecordingFetch()
    async with open_hooks(
        tmp_path,
        upstream,
        clock,
        fetch,
        ses={"topics": [p.TOPIC]},
    ) as hooks:
        now = clock.now
        msg = bounce(now)
        status, problem = await hooks.ses(msg)
        assert status == 503 and problem["reason"] == "unavailable"
        assert not (await hooks.record("gone@example.org")).feedback
        fetch.answers[p.CERT_URL] = sns_signer(now).pem
        assert (await hooks.ses(msg))[1]["bounces"] == 1
        other = bounce(now, {"emailAddress": "b@example.org", "status": "5.1.1"})
        assert (await hooks.ses(other))[1]["bounces"] == 1
        assert fetch.urls == [p.CERT_URL, p.CERT_URL]  # the failure, then one fetch kept
        fetch.answers[p.CERT_URL] = b"not a certificate"
        assert (await hooks.ses(bounce(now)))[0] == 200  # still the kept one


def test_string_to_sign_follows_the_documented_order() -> None:
    """Notification: Message, MessageId, Subject only when present, Timestamp, TopicArn, Type;
    confirmations: Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type."""
    note = {
        "Type": "Notification",
        "MessageId": "id",
        "TopicArn": "t",
        "Message": "m",
        "Timestamp": "ts",
        "UnsubscribeURL": "not signed",
    }
    expected = "Message\nm\nMessageId\nid\nTimestamp\nts\nTopicArn\nt\nType\nNotification\n"
    assert string_to_sign(note) == expected.encode()
    with_subject = string_to_sign({**note, "Subject": "s"}).decode()
    assert with_subject.startswith("Message\nm\nMessageId\nid\nSubject\ns\nTimestamp\n")
    confirm = {**note, "Type": "SubscriptionConfirmation", "SubscribeURL": "u", "Token": "k"}
    assert string_to_sign(confirm).decode() == (
        "Message\nm\nMessageId\nid\nSubscribeURL\nu\nTimestamp\nts\nToken\nk\nTopicArn\nt\n"
        "Type\nSubscriptionConfirmation\n"
    )
    with pytest.raises(ValueError, match="Token"):
        string_to_sign({**confirm, "Token": None})


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem", True),
        ("https://sns.eu-west-1.amazonaws.com:443/x.pem", True),
        ("https://SNS.EU-WEST-1.AMAZONAWS.COM/x.pem", True),
        ("http://sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://sns.eu-west-1.amazonaws.com.evil.example/x.pem", False),
        ("https://evil.example/sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://sqs.eu-west-1.amazonaws.com/x.pem", False),
        ("https://a:b@sns.eu-west-1.amazonaws.com/x.pem", False),
        ("https://sns.eu-west-1.amazonaws.com:80/x.pem", False),
        ("https://sns..amazonaws.com/x.pem", False),
        ("https://[::1]/x.pem", False),
        ("https://sns.eu-west-1.amazonaws.com:99999/x.pem", False),
    ],
)
def test_only_sns_https_urls_are_fetched(url: str, ok: bool) -> None:
    """The certificate and subscription URLs taken: HTTPS on sns.<region>.amazonaws.com."""
    assert sns_url(url) is ok
