"""When a consent change applies: the sticky opt-out rules, pure (no I/O, no clock reads).

Both store backends call :func:`evaluate` inside their write transaction, so the rules live in
one place and are property-tested without a database.

The rules (see ``docs/mail-safety.md``, "Consent store durability"):

* A withdrawal (``opted_out``) always applies, whatever its timestamp: failing towards not
  mailing is the safe direction. Repeating the current state is ``unchanged``.
* An opt-in over an opt-out applies only when it is an *explicit* act of the person, carries
  evidence, and is newer than the opt-out (its ``withdrawn_at``, else ``collected_at``).
  Otherwise the opt-out stands: ``opt-out-wins``. Imports and syncs are never explicit.
* A later withdrawal over an opt-out moves the opt-out time forward; an earlier one is
  ``unchanged``.
* An opt-in not newer than the opt-in already held is ``unchanged`` (a replay: same basis and
  source) or ``stale``: it would move the proof backwards. Evidence of every applied change
  stays in the ledger, so a newer opt-in replacing the record loses no proof.

Lifting suppressions. A consent record never lifts a bounce, complaint, manual, invalid or
erasure suppression: those are facts about the mailbox or decisions of an operator, not about
consent. An applied, explicit, evidenced opt-in for purpose P lifts only the ``unsubscribe``
suppressions of scope ``purpose`` for P created before the opt-in (:func:`lifts`). A
marketing-wide (or ``all``) unsubscribe is *not* lifted by an opt-in to one purpose: it also
covers purposes the person did not opt back into (an art. 21 objection to soft-opt-in or
legitimate-interest mail), so removing it needs its own act (``remove_suppression``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from suppression.changes import ConsentChange
from suppression.model import Consent, ConsentStatus, Scope, Suppression, SuppressionReason

#: Reason codes of a change that was not applied (``ConsentResult.reason``).
UNCHANGED = "unchanged"
OPT_OUT_WINS = "opt-out-wins"
STALE = "stale"


@dataclass(frozen=True, slots=True)
class ConsentRuling:
    """What a consent change does: the consent to store and whether to lift unsubscribes."""

    applied: bool
    #: The consent after the change: the new one if applied, else the current one.
    consent: Consent | None
    #: Stable code when not applied (``unchanged``, ``opt-out-wins``, ``stale``).
    reason: str = ""
    #: True when purpose-scoped ``unsubscribe`` suppressions older than the change are lifted.
    lift_unsubscribe: bool = False


def is_explicit_with_evidence(change: ConsentChange) -> bool:
    """True for an act of the person that carries evidence: the only kind that lifts opt-outs."""
    return change.explicit and bool(change.evidence)


def _opted_out(current: Consent | None, change: ConsentChange) -> Consent:
    # Keep when and how consent was first collected (what was withdrawn); the withdrawal
    # carries its own time.
    return Consent(
        purpose=change.purpose,
        status=ConsentStatus.OPTED_OUT,
        basis=change.basis,
        collected_at=current.collected_at if current is not None else change.at,
        source=change.source,
        evidence=dict(change.evidence),
        withdrawn_at=change.at,
        collection=current.collection if current is not None else change.collection,
    )


def _opted_in(change: ConsentChange) -> Consent:
    return Consent(
        purpose=change.purpose,
        status=ConsentStatus.OPTED_IN,
        basis=change.basis,
        collected_at=change.at,
        source=change.source,
        evidence=dict(change.evidence),
        collection=change.collection,
    )


def evaluate(current: Consent | None, change: ConsentChange) -> ConsentRuling:
    """Decide whether ``change`` applies over ``current`` (the stored consent, if any)."""
    if change.status is ConsentStatus.OPTED_OUT:
        # Already withdrawn: only a later withdrawal moves the opt-out time forward, so a
        # delayed opt-in from between the two withdrawals cannot slip through.
        withdrawn = current is not None and current.status is ConsentStatus.OPTED_OUT
        if current is not None and withdrawn and change.at <= opted_out_at(current):
            return ConsentRuling(False, current, UNCHANGED)
        return ConsentRuling(True, _opted_out(current, change))
    if current is None:
        return ConsentRuling(
            True, _opted_in(change), lift_unsubscribe=is_explicit_with_evidence(change)
        )
    if current.status is ConsentStatus.OPTED_OUT:
        if not (is_explicit_with_evidence(change) and change.at > opted_out_at(current)):
            return ConsentRuling(False, current, OPT_OUT_WINS)
        return ConsentRuling(True, _opted_in(change), lift_unsubscribe=True)
    if change.at <= current.collected_at:
        same = current.basis is change.basis and current.source == change.source
        return ConsentRuling(False, current, UNCHANGED if same else STALE)
    return ConsentRuling(
        True, _opted_in(change), lift_unsubscribe=is_explicit_with_evidence(change)
    )


def opted_out_at(consent: Consent) -> datetime:
    """When an opt-out took effect: its ``withdrawn_at``, else its ``collected_at``."""
    return consent.withdrawn_at or consent.collected_at


def lifts(change: ConsentChange, suppression: Suppression) -> bool:
    """True if an applied opt-in ``change`` lifts this suppression (see the module docstring)."""
    return (
        change.status is ConsentStatus.OPTED_IN
        and is_explicit_with_evidence(change)
        and suppression.reason is SuppressionReason.UNSUBSCRIBE
        and suppression.scope is Scope.PURPOSE
        and suppression.purpose == change.purpose
        and suppression.identity == change.identity
        and suppression.created_at < change.at
    )
