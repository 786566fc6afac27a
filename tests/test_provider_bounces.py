"""A provider's bounce verdict mapped onto our classes (suppression/provider_bounces.py): the
reply decides when there is one, the provider's reason when there is none, and a verdict that
is not final never hard-suppresses."""

from __future__ import annotations

import pytest

from gateway.observability.feedback_metrics import bounce_pairs
from suppression.bounce_reasons import BounceClass, BounceReason, Target
from suppression.provider_bounces import Verdict, provider_bounce

P, T, U, B = Verdict.PERMANENT, Verdict.TEMPORARY, Verdict.UNDETERMINED, Verdict.BLOCKED
R = BounceReason
UNKNOWN_USER = "smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown"
FULL = "smtp; 552 5.2.2 Mailbox full"
SPAMHAUS = "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org"
NULL_MX = "556 5.1.10 Domain example.org does not accept mail (nullMX)"


@pytest.mark.parametrize(
    ("verdict", "kw", "expected"),
    [
        # The reply decides when it is recognised...
        (P, {"status": "5.1.1", "text": UNKNOWN_USER}, ("hard", "userunknown", "recipient")),
        (P, {"text": FULL}, ("soft", "mailboxfull", "recipient")),
        (P, {"code": 550, "text": SPAMHAUS}, ("sender", "blocked", "none")),
        (P, {"text": NULL_MX}, ("hard", "notaccept", "domain")),
        # ...else the provider's reason, else the verdict's default.
        (P, {"named": R.USER_UNKNOWN}, ("hard", "userunknown", "recipient")),
        (
            P,
            {"status": "5.0.0", "text": "Bounced Address", "named": R.USER_UNKNOWN},
            ("hard", "userunknown", "recipient"),
        ),
        (P, {}, ("hard", "userunknown", "recipient")),
        (P, {"status": "5.0.0", "text": "something odd"}, ("hard", "userunknown", "recipient")),
        (P, {"named": R.MESG_TOO_BIG}, ("transient", "mesgtoobig", "none")),
        # A verdict that is not final caps hard at soft (SES Transient, Undetermined).
        (T, {"status": "5.1.1", "text": UNKNOWN_USER}, ("soft", "userunknown", "recipient")),
        (U, {"status": "5.1.1", "text": UNKNOWN_USER}, ("soft", "userunknown", "recipient")),
        (T, {"text": NULL_MX}, ("soft", "hostunknown", "recipient")),
        (T, {"named": R.USER_UNKNOWN}, ("soft", "userunknown", "recipient")),
        (T, {"named": R.MAILBOX_FULL}, ("soft", "mailboxfull", "recipient")),
        (T, {}, ("soft", "undefined", "recipient")),
        (U, {}, ("soft", "undefined", "recipient")),
        (T, {"code": 499, "text": "499 hmm"}, ("transient", "undefined", "none")),
        (T, {"text": "450 4.2.0 greylisted, see http://x"}, ("transient", "greylisted", "none")),
        # A block of our mail is never the recipient's fault (SendGrid blocked).
        (B, {"status": "5.1.1", "text": UNKNOWN_USER}, ("sender", "blocked", "none")),
        (B, {"text": FULL}, ("sender", "blocked", "none")),
        (B, {"code": 550, "text": SPAMHAUS}, ("sender", "blocked", "none")),
        (B, {}, ("sender", "blocked", "none")),
        (B, {"text": "421 4.4.2 connection timed out"}, ("transient", "networkerror", "none")),
        # A "failure" with a 2xx reply gives nothing to go by: the verdict's default.
        (P, {"code": 250, "text": "250 ok"}, ("hard", "userunknown", "recipient")),
    ],
)
def test_the_verdict_table(
    verdict: Verdict, kw: dict[str, object], expected: tuple[str, ...]
) -> None:
    """Each row of the module's tables, with the class, reason and target it gives."""
    b = provider_bounce("test", verdict, **kw)  # type: ignore[arg-type]
    assert (b.bounce_class.value, b.reason.value, b.target.value) == expected
    assert b.rule.startswith(f"test.{verdict.value}/")
    if verdict in (T, U):
        assert b.temporary


def test_the_reply_and_its_status_are_kept_as_evidence() -> None:
    """The enhanced status and basic code of the reply stay on the bounce."""
    b = provider_bounce("ses", P, status="5.1.1", text=UNKNOWN_USER)
    assert (b.status, b.code, b.rule) == ("5.1.1", 550, "ses.permanent/status.1.1")
    assert provider_bounce("ses", P, named=R.USER_UNKNOWN).rule == "ses.permanent/named"


REPLIES = [
    {},
    {"status": "5.1.1", "text": UNKNOWN_USER},
    {"text": FULL},
    {"code": 550, "text": SPAMHAUS},
    {"text": NULL_MX},
    {"code": 451, "text": "451 later"},
    {"code": 250, "text": "250 ok"},
    {"status": "4.4.7", "text": "expired"},
    {"code": 999, "status": "9.9.9", "text": "\x00\uffff" * 100},
]


@pytest.mark.parametrize("verdict", list(Verdict))
@pytest.mark.parametrize("named", [None, *BounceReason])
def test_every_answer_is_in_the_metrics_closed_set(verdict: Verdict, named: R | None) -> None:
    """Whatever the verdict, reason and reply, the (class, reason) is one the feedback
    metrics pre-initialise; a verdict other than permanent is never hard."""
    valid = {(c.value, r.value) for c, r in bounce_pairs()}
    for reply in REPLIES:
        b = provider_bounce("p", verdict, named=named, **reply)  # type: ignore[arg-type]
        assert (b.bounce_class.value, b.reason.value) in valid, (verdict, named, reply)
        if verdict is not P:
            assert b.bounce_class is not BounceClass.HARD and b.target is not Target.DOMAIN
        if verdict is B:
            assert b.bounce_class in (BounceClass.SENDER, BounceClass.TRANSIENT)
