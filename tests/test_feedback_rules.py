"""The feedback rules (suppression.feedback_rules): what a bounce or a complaint suppresses."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from suppression.arf import FeedbackType
from suppression.bounce_decay import SoftBouncePolicy
from suppression.bounces import classify
from suppression.changes import FeedbackChange
from suppression.feedback_rules import (
    COMPLAINT_COUNT,
    COMPLAINT_SUPPRESS,
    COUNT,
    HARD,
    HARD_DOMAIN,
    SOFT_COUNT,
    SOFT_SUPPRESS,
    FeedbackPolicy,
    evidence,
    rule,
)
from suppression.model import FeedbackKind, FeedbackSource, Scope, SuppressionReason

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
S = FeedbackSource

#: Replies of each class (the classifier's own tests pin these).
REPLIES = {
    "userunknown": (550, "5.1.1", "550 5.1.1 <a@example.org>: Recipient address rejected"),
    "nullmx": (556, "5.1.10", "556 5.1.10 Domain example.org does not accept mail (nullMX)"),
    "mailboxfull": (452, "4.2.2", "452 4.2.2 Mailbox full"),
    "mailboxfull-final": (552, "5.2.2", "552 5.2.2 Mailbox full"),
    "blocked": (550, "5.7.1", "550 5.7.1 Service unavailable; client host blocked by Spamhaus"),
    "greylisted": (450, "4.7.1", "450 4.7.1 Greylisted, please try again later"),
}


def bounce_change(reply: str, source: FeedbackSource = S.DSN, **kw: object) -> FeedbackChange:
    code, status, text = REPLIES[reply]
    fields: dict[str, object] = {
        "report_key": f"key-{reply}",
        "identity": "id-a",
        "domain": "example.org",
        "source": source,
        "actor": "feedback",
        "at": NOW,
        "bounce": classify(code, status, text),
        "email": "a@example.org",
        "mta": "mx.example.org",
    }
    fields.update(kw)
    return FeedbackChange(**fields)  # type: ignore[arg-type]


def complaint_change(kind: FeedbackType, source: FeedbackSource = S.FBL) -> FeedbackChange:
    return FeedbackChange("key-c", "id-a", "example.org", source, "feedback", NOW, complaint=kind)


@pytest.mark.parametrize(
    ("reply", "source", "expected_rule", "target", "expires"),
    [
        ("userunknown", S.DSN, HARD, "identity", False),
        ("userunknown", S.RELAY, HARD, "identity", False),
        ("nullmx", S.RELAY, HARD_DOMAIN, "domain", False),
        ("nullmx", S.MAILBOX, HARD_DOMAIN, "domain", False),
        ("nullmx", S.DSN, HARD, "identity", False),  # a DSN names only its recipient
        ("nullmx", S.FBL, HARD, "identity", False),
        ("mailboxfull", S.RELAY, SOFT_COUNT, None, False),
        ("mailboxfull-final", S.DSN, SOFT_COUNT, None, False),
        ("blocked", S.RELAY, COUNT, None, False),  # about us: never the recipient
        ("greylisted", S.RELAY, COUNT, None, False),
    ],
)
def test_bounce_table(
    reply: str,
    source: FeedbackSource,
    expected_rule: str,
    target: str | None,
    expires: bool,
) -> None:
    """Hard bounces suppress all mail at once (a whole domain only from a trusted source); a
    first soft bounce, a sender-side or a transient failure suppresses nothing."""
    ruling = rule(bounce_change(reply, source), [])
    assert ruling.rule == expected_rule
    s = ruling.suppression
    if target is None:
        assert s is None
        return
    assert s is not None and s.scope is Scope.ALL and s.reason is SuppressionReason.BOUNCE
    assert s.source == source.value and s.at == NOW and (s.expires_at is not None) is expires
    if target == "domain":
        assert (s.domain, s.identity, s.email) == ("example.org", None, None)
    else:
        assert (s.identity, s.email, s.domain) == ("id-a", "a@example.org", None)


@pytest.mark.parametrize(
    ("earlier_days_ago", "suppress", "counted"),
    [
        ([], False, 1),
        ([1], False, 2),
        ([1, 13], True, 3),
        ([1, 15], False, 2),
        ([0, 0, 0], True, 4),
    ],
)
def test_soft_bounces_decay(earlier_days_ago: list[int], suppress: bool, counted: int) -> None:
    """The third soft bounce within 14 days suppresses all mail for 30 days."""
    ruling = rule(bounce_change("mailboxfull"), [NOW - d * DAY for d in earlier_days_ago])
    assert ruling.soft_bounces == counted
    if suppress:
        assert ruling.rule == SOFT_SUPPRESS and ruling.suppression is not None
        assert ruling.suppression.expires_at == NOW + 30 * DAY
    else:
        assert ruling.rule == SOFT_COUNT and ruling.suppression is None


def test_soft_policy_is_configurable() -> None:
    """Count, window and expiry come from the policy."""
    policy = FeedbackPolicy(SoftBouncePolicy(2, timedelta(days=2), timedelta(days=5)))
    ruling = rule(bounce_change("mailboxfull"), [NOW - DAY], policy)
    assert ruling.suppression is not None and ruling.suppression.expires_at == NOW + 5 * DAY


@pytest.mark.parametrize(
    ("kind", "suppresses"),
    [
        (FeedbackType.ABUSE, True),
        (FeedbackType.FRAUD, True),
        (FeedbackType.NOT_SPAM, False),
        (FeedbackType.AUTH_FAILURE, False),  # a DMARC forensic report: about us, not them
        (FeedbackType.VIRUS, False),
        (FeedbackType.OTHER, False),
    ],
)
def test_complaint_table(kind: FeedbackType, suppresses: bool) -> None:
    """Abuse and fraud reports suppress marketing, permanently; other types never suppress."""
    ruling = rule(complaint_change(kind), [])
    if not suppresses:
        assert (ruling.rule, ruling.suppression) == (COMPLAINT_COUNT, None)
        return
    s = ruling.suppression
    assert ruling.rule == COMPLAINT_SUPPRESS and s is not None
    assert (s.scope, s.reason, s.identity, s.expires_at) == (
        Scope.MARKETING,
        SuppressionReason.COMPLAINT,
        "id-a",
        None,
    )
    wide = rule(complaint_change(kind), [], FeedbackPolicy(complaint_scope=Scope.ALL))
    assert wide.suppression is not None and wide.suppression.scope is Scope.ALL


def test_complaint_scope_is_never_one_purpose() -> None:
    """A complaint is about our mail, not one purpose: scope purpose is refused."""
    with pytest.raises(ValueError, match="complaint"):
        FeedbackPolicy(complaint_scope=Scope.PURPOSE)


def test_change_is_a_bounce_or_a_complaint() -> None:
    """A change carries exactly one of the two, and always a report key and an identity."""
    change = bounce_change("userunknown")
    assert (change.kind, change.feedback_class, change.reason, change.status) == (
        FeedbackKind.BOUNCE,
        "hard",
        "userunknown",
        "5.1.1",
    )
    c = complaint_change(FeedbackType.ABUSE)
    assert (c.kind, c.feedback_class, c.reason, c.status) == (
        FeedbackKind.COMPLAINT,
        "complaint",
        "abuse",
        None,
    )
    with pytest.raises(ValueError, match="exactly one"):
        replace(change, complaint=FeedbackType.ABUSE)
    with pytest.raises(ValueError, match="report key"):
        replace(change, report_key="")


def test_evidence_names_no_address() -> None:
    """The ledger evidence is what the report said and who said it, never the address."""
    change = bounce_change("userunknown")
    found = evidence(change, rule(change, []))
    assert found == {
        "kind": "bounce",
        "class": "hard",
        "reason": "userunknown",
        "status": "5.1.1",
        "mta": "mx.example.org",
        "rule": HARD,
    }
    assert "a@example.org" not in str(found)
