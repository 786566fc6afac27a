"""A relay provider's bounce verdict mapped onto our classes. Pure: no I/O, no clock.

Amazon SES, SendGrid, Mailgun and Postmark each say what they made of a failure (a *verdict*:
permanent, temporary, undetermined, or a block of our mail) and often the reply behind it (a
basic code, an enhanced status, the remote server's text). :func:`provider_bounce` gives the
:class:`~suppression.bounces.Bounce` the feedback rules (:mod:`suppression.feedback_rules`)
act on, walking these rules in order:

==  =========================  ==========================================  =======================
#   Rule id                    Applies when                                Gives
==  =========================  ==========================================  =======================
1   ``P.V/<classify's id>``    the reply is recognised by                  :func:`classify`'s
                               :func:`~suppression.bounces.classify`       bounce
2   ``P.V/named``              not recognised, and the provider names a    that reason, its own
                               reason (SES ``NoEmail``, SendGrid           class
                               ``Bounced Address``...)
3   ``P.V/default``            not recognised, and the verdict is          the verdict's default:
                               permanent or blocked, or there is no        permanent
                               reply at all                                ``userunknown``,
                                                                           blocked ``blocked``,
                                                                           else ``undefined``
4   ``P.V/<classify's id>``    otherwise (a temporary or undetermined      classify's
                               failure with an unrecognised reply)         ``undefined``: soft,
                                                                           transient for a 4xx
==  =========================  ==========================================  =======================

(``P`` is the provider, ``V`` the verdict.) Then the verdict caps the class, so a provider's
"not final" is never read as final:

==========================  ============================================  ======================
Verdict                     Class from the rules above                    Becomes
==========================  ============================================  ======================
permanent                   any                                           kept (the status code
                                                                          decides: a permanent
                                                                          block is ``sender``)
temporary, undetermined     hard                                          soft, same reason (a
                                                                          null MX: soft
                                                                          ``hostunknown``)
blocked                     hard, soft                                    sender ``blocked``
==========================  ============================================  ======================

So an SES ``Transient`` or ``Undetermined`` bounce and a SendGrid ``blocked`` one never
hard-suppress: at most they count towards the soft-bounce decay (and a block not even that).
A permanent verdict with nothing more specific is read as the address being gone: the provider
itself stops mailing it. Every (class, reason) given is one :func:`classify` can give, so the
metrics' closed label set holds.
"""

from __future__ import annotations

from enum import StrEnum

from suppression.bounce_reasons import REASON_CLASS, BounceClass, BounceReason, Target
from suppression.bounces import Bounce, classify


class Verdict(StrEnum):
    """What the provider made of a failure."""

    PERMANENT = "permanent"  # SES Permanent, SendGrid bounce, Mailgun permanent, Postmark hard
    TEMPORARY = "temporary"  # SES Transient, Mailgun temporary, Postmark soft or transient
    UNDETERMINED = "undetermined"  # SES Undetermined
    BLOCKED = "blocked"  # SendGrid blocked, Mailgun espblock, Postmark Blocked: our mail refused


#: What a verdict gives when neither the reply nor the provider names a reason (rule 3).
DEFAULT_REASON = {
    Verdict.PERMANENT: BounceReason.USER_UNKNOWN,
    Verdict.TEMPORARY: BounceReason.UNDEFINED,
    Verdict.UNDETERMINED: BounceReason.UNDEFINED,
    Verdict.BLOCKED: BounceReason.BLOCKED,
}
#: What classify gives when it recognises nothing (a "failure" with a 2xx reply included).
UNRECOGNISED = frozenset({BounceReason.UNDEFINED, BounceReason.DELIVERED})
#: Verdicts that are not final: a hard class becomes soft.
NOT_FINAL = frozenset({Verdict.TEMPORARY, Verdict.UNDETERMINED})


def _target(reason: BounceReason, cls: BounceClass) -> Target:
    if cls is BounceClass.HARD:
        return Target.DOMAIN if reason is BounceReason.NOT_ACCEPT else Target.RECIPIENT
    return Target.RECIPIENT if cls is BounceClass.SOFT else Target.NONE


def provider_bounce(
    provider: str,
    verdict: Verdict,
    *,
    code: int | None = None,
    status: str | None = None,
    text: str = "",
    named: BounceReason | None = None,
) -> Bounce:
    """The bounce for one provider event (see the tables above). Never raises on odd input."""
    prefix = f"{provider}.{verdict.value}/"
    found = classify(code, status, text) if (code or status or text) else None
    if found is not None and found.reason not in UNRECOGNISED:
        reason, cls, rule = found.reason, found.bounce_class, prefix + found.rule
    elif named is not None and named not in UNRECOGNISED:
        reason, cls, rule = named, REASON_CLASS[named], prefix + "named"
    elif found is None or verdict in (Verdict.PERMANENT, Verdict.BLOCKED):
        reason = DEFAULT_REASON[verdict]
        cls, rule = REASON_CLASS[reason], prefix + "default"
    else:  # classify's own "undefined": soft, or transient for a 4xx reply
        reason, cls, rule = found.reason, found.bounce_class, prefix + found.rule
    if verdict in NOT_FINAL and cls is BounceClass.HARD:
        if reason is BounceReason.NOT_ACCEPT:
            reason = BounceReason.HOST_UNKNOWN
        cls = BounceClass.SOFT
    elif verdict is Verdict.BLOCKED and cls in (BounceClass.HARD, BounceClass.SOFT):
        reason, cls = BounceReason.BLOCKED, BounceClass.SENDER
    temporary = verdict in NOT_FINAL or (found is not None and found.temporary)
    status_out = found.status if found is not None else None
    code_out = found.code if found is not None else None
    return Bounce(reason, cls, _target(reason, cls), rule, status_out, code_out, temporary)
