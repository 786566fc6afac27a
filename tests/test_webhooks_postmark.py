"""Postmark webhooks at ``POST /feedback/postmark``: authenticated by Basic credentials or a
secret header; ``Bounce`` by its ``Type``, ``SpamComplaint``, ``SubscriptionChange`` (only the
recipient's own suppression is an opt-out); a stale event time refused."""

from __future__ import annotations

import base64
from datetime import timedelta

from suppression.model import ConsentStatus, Scope, SuppressionReason
from tests.support import providers as p
from tests.support.webhooks import Hooks, hooks

__all__ = ["hooks"]


async def test_basic_credentials_or_the_secret_header(hooks: Hooks) -> None:
    """Basic credentials or the header are accepted; a wrong password, a wrong secret, or
    nothing gets 401 with a Basic challenge, and changes nothing."""
    now = hooks.clock.now
    hard = p.postmark_bounce("HardBounce", "gone@example.org", now)
    header = {p.POSTMARK_HEADER: p.POSTMARK_SECRET, "Content-Type": "application/json"}
    wrong = [
        p.postmark_basic(password="x" * 24),
        p.postmark_basic(user="someone"),
        {p.POSTMARK_HEADER: "s" * 23},
        {"Authorization": "Bearer " + p.POSTMARK_SECRET},
        {"Authorization": "Basic !!!"},
        {},
    ]
    for headers in wrong:
        status, problem, answer_headers = await hooks.postmark(hard, headers)
        assert status == 401 and problem["reason"] == "unauthenticated"
        assert answer_headers["WWW-Authenticate"].startswith("Basic")
    assert not (await hooks.record("gone@example.org")).feedback
    status, answer, _ = await hooks.postmark(hard)
    assert status == 200 and answer["bounces"] == 1 and answer["suppressed"] == 1
    other = p.postmark_bounce("HardBounce", "gone2@example.org", now, MessageID="m2")
    status, answer, _ = await hooks.postmark(other, header)
    assert status == 200 and answer["bounces"] == 1
    (s,) = (await hooks.record("gone@example.org")).suppressions
    assert (s.reason, s.scope, s.source) == (SuppressionReason.BOUNCE, Scope.ALL, "postmark")


async def test_bounce_types(hooks: Hooks) -> None:
    """HardBounce with a 5.1.1 reply and BadEmailAddress are hard; SoftBounce (mailbox full)
    soft; Transient and DnsError transient; Blocked and DMARCPolicy sender-side; an
    auto-responder and an address change ignored; SpamComplaint a complaint."""
    now = hooks.clock.now
    cases = [
        ("HardBounce", "smtp;550 5.1.1 The email account does not exist.", ("hard", "userunknown")),
        ("BadEmailAddress", "", ("hard", "userunknown")),
        ("SoftBounce", "smtp;452 4.2.2 mailbox full", ("soft", "mailboxfull")),
        ("Transient", "", ("transient", "networkerror")),
        ("DnsError", "", ("transient", "networkerror")),
        ("Blocked", "smtp;550 5.1.1 user unknown", ("sender", "blocked")),
        ("DMARCPolicy", "", ("sender", "authfailure")),
    ]
    for n, (kind, details, expected) in enumerate(cases):
        email = f"b{n}@example.org"
        obj = p.postmark_bounce(kind, email, now, Details=details, MessageID=f"msg-{n}")
        status, answer, _ = await hooks.postmark(obj)
        assert status == 200 and answer["bounces"] == 1, (kind, answer)
        (event,) = (await hooks.record(email)).feedback
        assert (event.feedback_class, event.reason) == expected, kind
    for kind in ("AutoResponder", "AddressChange", "ManuallyDeactivated", "SomethingNew"):
        status, answer, _ = await hooks.postmark(p.postmark_bounce(kind, "x@example.org", now))
        assert status == 200 and answer["ignored"] == 1
    complaint = p.postmark_bounce("SpamComplaint", "angry@example.org", now)
    status, answer, _ = await hooks.postmark({**complaint, "RecordType": "SpamComplaint"})
    assert answer["complaints"] == 1 and answer["suppressed"] == 1
    assert not (await hooks.record("x@example.org")).feedback


async def test_subscription_changes(hooks: Hooks) -> None:
    """The recipient's own suppression through a mapped stream is an opt-out of its purpose,
    through another stream of all marketing; one by the customer and a reactivation are
    ignored; a HardBounce change after the Bounce webhook of the same message is a
    duplicate."""
    now = hooks.clock.now
    mine = p.postmark_subscription(
        "me@example.org", now, reason="ManualSuppression", MessageStream="newsletter-stream"
    )
    status, answer, _ = await hooks.postmark(mine)
    assert status == 200 and answer["unsubscribes"] == 1
    (consent,) = (await hooks.record("me@example.org")).consents
    assert (consent.purpose, consent.status, consent.source) == (
        "newsletter",
        ConsentStatus.OPTED_OUT,
        "postmark",
    )
    wide = p.postmark_subscription("wide@example.org", now, reason="ManualSuppression")
    assert (await hooks.postmark(wide))[1]["unsubscribes"] == 1
    (s,) = (await hooks.record("wide@example.org")).suppressions
    assert (s.reason, s.scope) == (SuppressionReason.UNSUBSCRIBE, Scope.MARKETING)
    by_customer = p.postmark_subscription(
        "kept@example.org", now, reason="ManualSuppression", origin="Customer"
    )
    back = p.postmark_subscription(
        "wide@example.org", now + timedelta(seconds=1), reason="ManualSuppression"
    )
    back["SuppressSending"] = False
    for obj in (by_customer, back):
        status, answer, _ = await hooks.postmark(obj)
        assert status == 200 and answer["ignored"] == 1
    assert not (await hooks.record("kept@example.org")).suppressions
    assert (await hooks.record("wide@example.org")).suppressions  # not lifted
    bounce = p.postmark_bounce("HardBounce", "gone@example.org", now, MessageID="same")
    assert (await hooks.postmark(bounce))[1]["bounces"] == 1
    change = p.postmark_subscription("gone@example.org", now, reason="HardBounce", MessageID="same")
    status, answer, _ = await hooks.postmark(change)
    assert status == 200 and answer["duplicates"] == 1
    assert len((await hooks.record("gone@example.org")).feedback) == 1


async def test_stale_replayed_and_malformed(hooks: Hooks) -> None:
    """An event dated six minutes ago: 403 stale; the same event twice: 200, duplicate; a
    body that is no Postmark webhook: 400."""
    now = hooks.clock.now
    old = p.postmark_bounce("HardBounce", "old@example.org", now - timedelta(minutes=6))
    status, problem, _ = await hooks.postmark(old)
    assert status == 403 and problem["reason"] == "stale"
    assert not (await hooks.record("old@example.org")).feedback
    fresh = p.postmark_bounce("HardBounce", "new@example.org", now)
    assert (await hooks.postmark(fresh))[1]["bounces"] == 1
    status, answer, _ = await hooks.postmark(fresh)
    assert status == 200 and answer["duplicates"] == 1
    undated = {k: v for k, v in fresh.items() if k != "BouncedAt"}
    status, problem, _ = await hooks.postmark(undated)
    assert status == 400
    for raw in (b"[]", b"{}", b"nope", base64.b64encode(b"{}")):
        status, problem, _ = await hooks.post("postmark", raw, p.postmark_basic())
        assert status == 400 and problem["reason"] == "malformed"
