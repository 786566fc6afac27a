"""What a bounce or a complaint does to the store: the feedback rules, pure (no I/O, no clock).

Both store backends call :func:`rule` inside the transaction that records the event, with the
recipient's soft bounces since the last one that suppressed, and add the suppression it asks
for in that same transaction: the rules live in one place and are tested without a database
(as :mod:`suppression.consent_rules`).

==  ======================  ==============================================  ====================
#   Rule id                 Applies when                                    Gives
==  ======================  ==============================================  ====================
1   complaint.suppress      a complaint of type ``abuse`` or ``fraud``      ``complaint``
                                                                            suppression, scope
                                                                            ``complaint_scope``
2   complaint.count         any other type: ``not-spam``, ``auth-failure``  nothing
                            (DMARC forensic), ``virus``, ``other``
3   bounce.hard.domain      hard, target domain (null MX), from the relay   ``bounce`` on the
                            or the operator's mailbox                       domain, scope all
4   bounce.hard             hard otherwise                                  ``bounce`` on the
                                                                            recipient, scope all
5   bounce.soft.suppress    soft, and with the earlier ones ``count``       ``bounce``, scope
                            within ``window`` (:mod:`~.bounce_decay`)       all, until now +
                                                                            ``expiry``
6   bounce.soft.count       soft otherwise                                  nothing (history)
7   bounce.count            sender, transient, none                         nothing
==  ======================  ==============================================  ====================

Every suppression here is permanent except rule 5's. A DSN or a feedback-loop report reaches us
from whoever knows its reference, which names one recipient: it never suppresses a whole
domain (rule 3 needs a trusted source), so a report can only ever stop mail to the recipient
its reference names. Lifting: a soft-bounce suppression expires by itself; a hard bounce is
removed by an operator; a complaint only by the person's new explicit opt-in (the store refuses
any other removal, :data:`suppression.store.COMPLAINT_KEPT`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from suppression.arf import FeedbackType
from suppression.bounce_decay import DEFAULT_POLICY, SoftBouncePolicy, soft_bounce_verdict
from suppression.bounces import BounceClass, Target
from suppression.changes import FeedbackChange, NewSuppression
from suppression.model import FeedbackSource, Scope, SuppressionReason

COMPLAINT_SUPPRESS = "complaint.suppress"
COMPLAINT_COUNT = "complaint.count"
HARD_DOMAIN = "bounce.hard.domain"
HARD = "bounce.hard"
SOFT_SUPPRESS = "bounce.soft.suppress"
SOFT_COUNT = "bounce.soft.count"
COUNT = "bounce.count"
#: The rule id of a replayed report (the store recorded nothing).
DUPLICATE = "duplicate"

#: Complaint types that are the recipient saying the mail was unwanted.
SUPPRESSING_COMPLAINTS = frozenset({FeedbackType.ABUSE, FeedbackType.FRAUD})
#: Sources trusted to name a whole domain: our own relay, the operator's mailbox.
DOMAIN_SOURCES = frozenset({FeedbackSource.RELAY, FeedbackSource.MAILBOX})
#: Scopes a complaint suppression may take (``[feedback] complaint_scope``).
COMPLAINT_SCOPES = (Scope.MARKETING, Scope.ALL)


@dataclass(frozen=True, slots=True)
class FeedbackPolicy:
    """The configurable part of the rules (``[feedback]``)."""

    soft: SoftBouncePolicy = DEFAULT_POLICY
    complaint_scope: Scope = Scope.MARKETING

    def __post_init__(self) -> None:
        if self.complaint_scope not in COMPLAINT_SCOPES:
            raise ValueError("a complaint suppresses all marketing or all mail, not one purpose")


DEFAULT_FEEDBACK_POLICY = FeedbackPolicy()


@dataclass(frozen=True, slots=True)
class FeedbackRuling:
    """What recording one event does: the rule, the suppression to add (if any), and how many
    soft bounces counted (the new one included; 0 for anything else)."""

    rule: str
    suppression: NewSuppression | None = None
    soft_bounces: int = 0


def rule(
    change: FeedbackChange,
    earlier_soft: Iterable[datetime],
    policy: FeedbackPolicy = DEFAULT_FEEDBACK_POLICY,
) -> FeedbackRuling:
    """The ruling for ``change`` (see the table above); ``earlier_soft`` are the recipient's
    soft bounces since the last one that suppressed (only read for a soft bounce)."""
    if change.complaint is not None:
        if change.complaint not in SUPPRESSING_COMPLAINTS:
            return FeedbackRuling(COMPLAINT_COUNT)
        scope = policy.complaint_scope
        return FeedbackRuling(
            COMPLAINT_SUPPRESS, _suppression(change, SuppressionReason.COMPLAINT, scope)
        )
    bounce = change.bounce
    assert bounce is not None
    if bounce.bounce_class is BounceClass.HARD:
        whole_domain = bounce.target is Target.DOMAIN and change.source in DOMAIN_SOURCES
        if whole_domain and change.domain:
            return FeedbackRuling(HARD_DOMAIN, _suppression(change, domain=change.domain))
        return FeedbackRuling(HARD, _suppression(change))
    if bounce.bounce_class is BounceClass.SOFT:
        verdict = soft_bounce_verdict(earlier_soft, change.at, policy.soft)
        if verdict.suppress:
            new = _suppression(change, expires_at=verdict.until)
            return FeedbackRuling(SOFT_SUPPRESS, new, verdict.recent)
        return FeedbackRuling(SOFT_COUNT, soft_bounces=verdict.recent)
    return FeedbackRuling(COUNT)


def _suppression(
    change: FeedbackChange,
    reason: SuppressionReason = SuppressionReason.BOUNCE,
    scope: Scope = Scope.ALL,
    *,
    domain: str | None = None,
    expires_at: datetime | None = None,
) -> NewSuppression:
    return NewSuppression(
        scope=scope,
        reason=reason,
        source=change.source.value,
        actor=change.actor,
        at=change.at,
        identity=None if domain else change.identity,
        email=None if domain else change.email,
        domain=domain,
        expires_at=expires_at,
    )


def evidence(change: FeedbackChange, ruling: FeedbackRuling) -> dict[str, Any]:
    """The ledger evidence of a suppression the feedback loop adds: what the report said
    (class, reason, status), who reported it (the MTA), and the rule (no address)."""
    out: dict[str, Any] = {
        "kind": change.kind.value,
        "class": change.feedback_class,
        "reason": change.reason,
        "rule": ruling.rule,
    }
    if change.status:
        out["status"] = change.status
    if change.mta:
        out["mta"] = change.mta
    if ruling.soft_bounces:
        out["soft_bounces"] = ruling.soft_bounces
    return out
