"""Bounce classification: an SMTP reply to a stable reason and a class. Pure: no I/O, no clock.

:func:`classify` takes one reply (basic code, enhanced status, text), as the relay saw it or as
a DSN reports it, and walks the rules below in order; the first that applies gives the reason
(:class:`BounceReason`, Sisimai's names) and the rule id (logged and counted).

==  ===================  =========================================  ==============================
#   Rule id              Applies when                               Gives
==  ===================  =========================================  ==============================
1   ``config.N``         an operator override matches the text      its reason
2   ``delivered``        a 2xx code or a 2.x.x status               ``delivered``
3   ``text.*``           a text rule gives a sender-side reason     that reason (the sender veto)
                         and the status does not
4   ``status.S.D``       the enhanced status is specific            ``STATUS_REASONS[S.D]``
5   ``text.*``           a text rule matches                        its reason
6   ``subject.S``        a generic enhanced status                  ``SUBJECT_FALLBACK[S]``
7   ``code.NNN``         only a basic code, of known meaning        ``CODE_REASONS[NNN]``
8   ``undefined``        otherwise                                  ``undefined``
==  ===================  =========================================  ==============================

Enhanced status first, text second: a specific status (``5.1.1``, ``5.2.2``, ``5.7.26``) is
the remote server's own statement and beats its prose. Generic ones (every ``X.Y.0``, and
``X.7.1``, ``X.4.1``, ``X.1.10``, which Microsoft and Gmail send for blocks and unknown users
alike) defer to the text rules (:mod:`suppression.bounce_rules`). The one exception is rule 3:
when the text says the failure is about the sender (a block list, spam, DMARC, a rate limit),
that wins even over a specific recipient-side status, because suppressing a good recipient
after *our* block would be the worst mistake (GoDaddy answers ``550 5.1.1`` for "has sent to
too many recipients this hour").

When the text carries its own enhanced status (``smtp; 550 5.7.1 ...``), it is used rather than
``enhanced`` (a DSN's ``Status`` field is the reporting MTA's summary: Sendmail reports
``5.1.1`` for "550 5.7.1 IP address blacklisted").

=========  ================================================================  ==================
Class      Reasons                                                           Target
=========  ================================================================  ==================
hard       userunknown hostunknown hasmoved notaccept                        recipient; domain
                                                                             for notaccept
soft       mailboxfull suspend filtered expired undefined                    recipient
sender     blocked badreputation spamdetected virusdetected policyviolation  none
           authfailure requireptr rejected norelaying securityerror
           failedstarttls speeding toomanyconn contenterror notcompliantrfc
           syntaxerror
transient  networkerror systemerror systemfull mesgtoobig greylisted         none
none       delivered                                                         none
=========  ================================================================  ==================

A temporary failure (4.x.x status, else a 4xx code) is not final: ``userunknown``,
``hostunknown`` and ``hasmoved`` become soft (Postfix answers ``450 4.1.1`` for an address it
could not verify yet) and ``undefined`` becomes transient. ``notaccept`` stays hard: a null MX
(RFC 7505) is the domain's published refusal of all mail, so its target is the whole domain.
Only the null-MX text rule (or an operator's rule) gives ``notaccept``: Microsoft sends
``5.1.10``, the null-MX status, for every unknown user.
A permanent failure nothing recognises is ``undefined`` and soft: counted, never suppressed at
once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from suppression.bounce_reasons import (
    CODE_REASONS,
    MICROSOFT_BLOCK_DETAILS,
    REASON_CLASS,
    STATUS_REASONS,
    SUBJECT_FALLBACK,
    BounceClass,
    BounceReason,
    Target,
)
from suppression.bounce_rules import DEFAULT_RULES, MAX_TEXT, TextRule, compile_rules

__all__ = [
    "DEFAULT_RULES",
    "Bounce",
    "BounceClass",
    "BounceReason",
    "Target",
    "TextRule",
    "classify",
    "compile_rules",
    "normalise",
]

#: How much raw text is looked at, before normalisation.
MAX_RAW = 4 * MAX_TEXT

_DIAG_TYPE = re.compile(r"^\s*(?:smtp|x-[\w.-]{1,40})\s*;\s*", re.IGNORECASE)
_CODE = re.compile(r"(?<![\w.])([45]\d\d)(?=[ -]|$)")
_STATUS = re.compile(r"(?<![\w.])#?([245])\.([0-7])\.(\d{1,3})(?!\w|\.\d)")
_FAILURE_STATUS = re.compile(r"(?<![\w.])#?([45])\.([0-7])\.(\d{1,3})(?!\w|\.\d)")
_PREFIX = re.compile(r"(?:^|(?<=\s))[245]\d\d[ -](?:#?[245]\.\d{1,3}\.\d{1,3}\s)?")
_URL = re.compile(r"\b(?:https?|ftp)://\S{1,2000}", re.IGNORECASE)
_ADDR = re.compile(r"[^\s<>()\[\]\"',;:]{1,64}@[^\s<>()\[\]\"',;:]{1,255}")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Bounce:
    """A classified reply: reason, class, what a suppression would cover, and the rule."""

    reason: BounceReason
    bounce_class: BounceClass
    target: Target
    rule: str
    status: str | None = None
    code: int | None = None
    temporary: bool = False

    @property
    def suppresses(self) -> bool:
        """True when the recipient (or its domain, see ``target``) must be suppressed now."""
        return self.bounce_class is BounceClass.HARD

    @property
    def counts(self) -> bool:
        """True when the failure counts towards a soft-bounce suppression."""
        return self.bounce_class is BounceClass.SOFT


def _status(
    enhanced: str | None, pattern: re.Pattern[str] = _STATUS
) -> tuple[int, int, int] | None:
    if not enhanced:
        return None
    m = pattern.search(enhanced)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


def normalise(code: int | None, enhanced: str | None, text: str) -> tuple[int | None, str, str]:
    """The code, status (``""`` if none) and reply line the rules match (see bounce_rules)."""
    raw = _DIAG_TYPE.sub("", (text or "")[:MAX_RAW])
    if not (isinstance(code, int) and 200 <= code <= 599):
        found = _CODE.search(raw)
        code = int(found[1]) if found else None
    # Only a failure status is looked for in prose (a "2.1.3" there is more likely a version).
    status = _status(raw, _FAILURE_STATUS) or _status((enhanced or "")[:64])
    dotted = ".".join(map(str, status)) if status else ""
    body = _ADDR.sub("<addr>", _URL.sub("<url>", _PREFIX.sub(" ", raw)))
    line = _SPACE.sub(" ", f"{code or ''} {dotted} {body}").strip()
    return code, dotted, line[:MAX_TEXT]


def _first(rules: Sequence[TextRule], line: str) -> TextRule | None:
    return next((r for r in rules if r.pattern.search(line)), None)


def _result(reason: BounceReason, rule: str, code: int | None, status: str) -> Bounce:
    digit = int(status[0]) if status else (code // 100 if code else 5)
    temporary = digit == 4
    cls = REASON_CLASS[reason]
    if temporary and cls is BounceClass.HARD and reason is not BounceReason.NOT_ACCEPT:
        cls = BounceClass.SOFT
    elif temporary and reason is BounceReason.UNDEFINED:
        cls = BounceClass.TRANSIENT
    if cls is BounceClass.HARD and reason is BounceReason.NOT_ACCEPT:
        target = Target.DOMAIN
    elif cls in (BounceClass.HARD, BounceClass.SOFT):
        target = Target.RECIPIENT
    else:
        target = Target.NONE
    return Bounce(reason, cls, target, rule, status or None, code, temporary)


def classify(
    code: int | None,
    enhanced: str | None,
    text: str,
    rules: Sequence[TextRule] = DEFAULT_RULES,
    overrides: Sequence[TextRule] = (),
) -> Bounce:
    """Classify one SMTP reply (see the rule tables above). Never raises on odd input."""
    code, status, line = normalise(code, enhanced, text)
    override = _first(overrides, line)
    if override is not None:
        return _result(override.reason, override.id, code, status)
    if status.startswith("2") or (not status and code is not None and code < 300):
        return _result(BounceReason.DELIVERED, "delivered", code, status)
    by_status: Bounce | None = None
    if status:
        _, subject, detail = (int(part) for part in status.split("."))
        key = f"{subject}.{detail}"
        if key in STATUS_REASONS:
            by_status = _result(STATUS_REASONS[key], f"status.{key}", code, status)
        elif subject == 7 and detail in MICROSOFT_BLOCK_DETAILS:
            by_status = _result(BounceReason.BLOCKED, f"status.{key}", code, status)
    rule = _first(rules, line)
    by_text = _result(rule.reason, rule.id, code, status) if rule is not None else None
    sender_status = by_status is not None and by_status.bounce_class is BounceClass.SENDER
    if by_text is not None and by_text.bounce_class is BounceClass.SENDER and not sender_status:
        return by_text
    if by_status is not None:
        return by_status
    if by_text is not None:
        return by_text
    if status:
        subject = int(status.split(".")[1])
        if subject in SUBJECT_FALLBACK:
            return _result(SUBJECT_FALLBACK[subject], f"subject.{subject}", code, status)
    if code in CODE_REASONS:
        return _result(CODE_REASONS[code], f"code.{code}", code, status)
    return _result(BounceReason.UNDEFINED, "undefined", code, status)
