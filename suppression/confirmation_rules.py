"""The rules of confirming a double opt-in request, pure (no I/O, no clock reads).

A confirmation is the person's own act on a page of ours that bundles and conditions nothing
and ticks no box: :data:`DOUBLE_OPT_IN`. It records nothing for an address that must not be
mailed (:func:`blocks_confirmation`), nothing again for a request already confirmed
(:func:`same_request`), and nothing for a purpose the person left after making the request
(:func:`withdrawn_since`): a replayed or late link never undoes a later opt-out. A request
made after an opt-out is a new act and lifts it (:mod:`suppression.consent_rules`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from suppression.consent_rules import opted_out_at
from suppression.criteria import Collection, ConsentMethod
from suppression.model import (
    Consent,
    ConsentStatus,
    RecipientFacts,
    Scope,
    Suppression,
    SuppressionReason,
)
from suppression.policy import is_active, is_opt_out

#: Suppressions that stop all marketing (what "resume" lifts when the person asks).
BLANKET_SCOPES = (Scope.MARKETING, Scope.ALL)

#: The ledger source of a confirmed double opt-in.
DOUBLE_OPT_IN_SOURCE = "double-opt-in"
#: How a confirmed double opt-in was collected (plus the notice of the request): the person
#: pressed Confirm on a page of ours that bundles and conditions nothing and ticks no box.
DOUBLE_OPT_IN = Collection(
    ConsentMethod.DOUBLE_OPT_IN, pre_ticked=False, bundled=False, conditional=False
)
#: Suppressions that keep an address from being mailed a confirmation, or confirmed.
NEVER_MAILED = frozenset(
    {
        SuppressionReason.ERASURE,
        SuppressionReason.BOUNCE,
        SuppressionReason.COMPLAINT,
        SuppressionReason.MANUAL,
        SuppressionReason.INVALID,
    }
)


def blocks_confirmation(facts: RecipientFacts, now: datetime) -> bool:
    """True when an active suppression says the address must not get a confirmation mail:
    erased, hard-bounced, complained, suppressed by an operator or invalid, whatever its
    scope (an unsubscribe does not: subscribing again is the person's right)."""
    return any(
        is_active(s, now) and (s.reason in NEVER_MAILED or s.scope is Scope.ALL)
        for s in facts.suppressions
    )


def same_request(current: Consent | None, requested: str) -> bool:
    """True when ``current`` is the consent this very request (made at ``requested``, ISO
    8601) recorded: confirming it again records nothing."""
    return (
        current is not None
        and current.status is ConsentStatus.OPTED_IN
        and current.collection.method is ConsentMethod.DOUBLE_OPT_IN
        and current.evidence.get("requested_at") == requested
    )


def withdrawn_since(facts: RecipientFacts, purpose: str, since: datetime) -> bool:
    """True when the person withdrew from or unsubscribed from ``purpose`` at or after
    ``since`` (the consent record or an unsubscribe that covers the purpose)."""
    current = facts.consents.get(purpose)
    if current is not None and is_opt_out(current) and opted_out_at(current) >= since:
        return True
    return any(
        s.reason is SuppressionReason.UNSUBSCRIBE
        and s.created_at >= since
        and (s.scope in BLANKET_SCOPES or s.purpose == purpose)
        for s in facts.suppressions
    )


def marketing_paused(suppressions: Iterable[Suppression], now: datetime) -> bool:
    """True while the person's own unsubscribe from all marketing stands: a confirmation
    records its consents, but only resuming marketing (the preference page) lifts it."""
    return any(
        s.reason is SuppressionReason.UNSUBSCRIBE
        and s.scope in BLANKET_SCOPES
        and s.identity is not None
        and is_active(s, now)
        for s in suppressions
    )
