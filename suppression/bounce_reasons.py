"""The bounce vocabulary: reasons, classes, targets, and the tables keyed by SMTP status codes.

Pure data. Reason names are Sisimai's (``userunknown``, ``mailboxfull``, ...) so that numbers
from this gateway can be compared with Sisimai's and KumoMTA's; ``greylisted`` is ours (Sisimai
has no name for it and it must never count against a recipient). :mod:`suppression.bounces`
uses these tables; its docstring explains the order in which they apply.
"""

from __future__ import annotations

from enum import StrEnum


class BounceReason(StrEnum):
    """Why a delivery failed: a stable name, used verbatim in logs and metrics."""

    # The recipient's address or domain is gone (hard).
    USER_UNKNOWN = "userunknown"
    HOST_UNKNOWN = "hostunknown"
    HAS_MOVED = "hasmoved"
    NOT_ACCEPT = "notaccept"
    # The recipient exists but cannot take mail now (soft).
    MAILBOX_FULL = "mailboxfull"
    SUSPEND = "suspend"
    FILTERED = "filtered"
    EXPIRED = "expired"
    # About us, the sender (never suppress the recipient).
    BLOCKED = "blocked"
    BAD_REPUTATION = "badreputation"
    SPAM_DETECTED = "spamdetected"
    VIRUS_DETECTED = "virusdetected"
    POLICY_VIOLATION = "policyviolation"
    AUTH_FAILURE = "authfailure"
    REQUIRE_PTR = "requireptr"
    REJECTED = "rejected"
    NO_RELAYING = "norelaying"
    SECURITY_ERROR = "securityerror"
    FAILED_STARTTLS = "failedstarttls"
    SPEEDING = "speeding"
    TOO_MANY_CONN = "toomanyconn"
    CONTENT_ERROR = "contenterror"
    NOT_COMPLIANT_RFC = "notcompliantrfc"
    SYNTAX_ERROR = "syntaxerror"
    # Passing trouble on either side (never suppress).
    NETWORK_ERROR = "networkerror"
    SYSTEM_ERROR = "systemerror"
    SYSTEM_FULL = "systemfull"
    MESG_TOO_BIG = "mesgtoobig"
    GREYLISTED = "greylisted"
    # Not a failure, or nothing recognised.
    DELIVERED = "delivered"
    UNDEFINED = "undefined"


class BounceClass(StrEnum):
    """What the gateway does about a failure."""

    HARD = "hard"  # suppress the recipient (or its domain) at once, scope all
    SOFT = "soft"  # count it; suppress for a while after repeated failures (bounce_decay)
    SENDER = "sender"  # our problem: never suppress, count and alert
    TRANSIENT = "transient"  # passing trouble: never suppress
    NONE = "none"  # not a failure (delivered)


class Target(StrEnum):
    """What a suppression caused by the failure would cover."""

    RECIPIENT = "recipient"
    DOMAIN = "domain"  # the domain itself refuses all mail (null MX, RFC 7505)
    NONE = "none"  # nothing is suppressed


_R = BounceReason

#: The class of each reason, for a permanent failure (see :func:`suppression.bounces.classify`
#: for the two adjustments made for temporary ones).
REASON_CLASS: dict[BounceReason, BounceClass] = {
    **dict.fromkeys(
        (_R.USER_UNKNOWN, _R.HOST_UNKNOWN, _R.HAS_MOVED, _R.NOT_ACCEPT), BounceClass.HARD
    ),
    **dict.fromkeys(
        (_R.MAILBOX_FULL, _R.SUSPEND, _R.FILTERED, _R.EXPIRED, _R.UNDEFINED), BounceClass.SOFT
    ),
    **dict.fromkeys(
        (
            _R.BLOCKED,
            _R.BAD_REPUTATION,
            _R.SPAM_DETECTED,
            _R.VIRUS_DETECTED,
            _R.POLICY_VIOLATION,
            _R.AUTH_FAILURE,
            _R.REQUIRE_PTR,
            _R.REJECTED,
            _R.NO_RELAYING,
            _R.SECURITY_ERROR,
            _R.FAILED_STARTTLS,
            _R.SPEEDING,
            _R.TOO_MANY_CONN,
            _R.CONTENT_ERROR,
            _R.NOT_COMPLIANT_RFC,
            _R.SYNTAX_ERROR,
        ),
        BounceClass.SENDER,
    ),
    **dict.fromkeys(
        (_R.NETWORK_ERROR, _R.SYSTEM_ERROR, _R.SYSTEM_FULL, _R.MESG_TOO_BIG, _R.GREYLISTED),
        BounceClass.TRANSIENT,
    ),
    _R.DELIVERED: BounceClass.NONE,
}

#: Specific enhanced statuses (RFC 3463 and the IANA registry), by ``subject.detail``.
STATUS_REASONS: dict[str, BounceReason] = {
    "1.1": _R.USER_UNKNOWN,  # bad destination mailbox address
    "1.2": _R.HOST_UNKNOWN,  # bad destination system address
    "1.3": _R.USER_UNKNOWN,  # bad destination mailbox address syntax
    "1.6": _R.HAS_MOVED,  # destination mailbox has moved, no forwarding address
    "1.7": _R.REJECTED,  # bad sender's mailbox address syntax
    "1.8": _R.REJECTED,  # bad sender's system address
    "2.1": _R.SUSPEND,  # mailbox disabled, not accepting messages
    "2.2": _R.MAILBOX_FULL,  # mailbox full
    "2.3": _R.MESG_TOO_BIG,  # message length exceeds administrative limit
    "2.4": _R.SYSTEM_ERROR,  # mailing list expansion problem
    "3.1": _R.SYSTEM_FULL,  # mail system full
    "3.2": _R.SYSTEM_ERROR,  # system not accepting network messages
    "3.3": _R.CONTENT_ERROR,  # system not capable of selected features
    "3.4": _R.MESG_TOO_BIG,  # message too big for system
    "3.5": _R.SYSTEM_ERROR,  # system incorrectly configured
    "4.2": _R.NETWORK_ERROR,  # bad connection
    "4.3": _R.NETWORK_ERROR,  # directory server failure
    "4.4": _R.HOST_UNKNOWN,  # unable to route
    "4.5": _R.SYSTEM_ERROR,  # mail system congestion
    "4.6": _R.NETWORK_ERROR,  # routing loop detected
    "4.7": _R.EXPIRED,  # delivery time expired
    "5.1": _R.SYNTAX_ERROR,  # invalid command
    "5.2": _R.SYNTAX_ERROR,  # syntax error
    "5.3": _R.SPEEDING,  # too many recipients
    "5.4": _R.SYNTAX_ERROR,  # invalid command arguments
    "5.5": _R.SYNTAX_ERROR,  # wrong protocol version
    "5.6": _R.SYNTAX_ERROR,  # authentication exchange line too long
    "6.1": _R.CONTENT_ERROR,  # media not supported
    "6.2": _R.CONTENT_ERROR,  # conversion required and prohibited
    "6.3": _R.CONTENT_ERROR,  # conversion required but not supported
    "6.4": _R.CONTENT_ERROR,  # conversion with loss performed
    "6.5": _R.CONTENT_ERROR,  # conversion failed
    "6.6": _R.CONTENT_ERROR,  # message content not available
    "6.7": _R.CONTENT_ERROR,  # non-ASCII addresses not permitted (RFC 6531)
    "7.2": _R.POLICY_VIOLATION,  # mailing list expansion prohibited
    "7.3": _R.SECURITY_ERROR,  # security conversion required but not possible
    "7.4": _R.SECURITY_ERROR,  # security features not supported
    "7.5": _R.SECURITY_ERROR,  # cryptographic failure
    "7.6": _R.SECURITY_ERROR,  # cryptographic algorithm not supported
    "7.7": _R.SECURITY_ERROR,  # message integrity failure
    "7.8": _R.SECURITY_ERROR,  # authentication credentials invalid (RFC 4954)
    "7.10": _R.FAILED_STARTTLS,  # encryption needed
    "7.11": _R.FAILED_STARTTLS,  # encryption required for requested mechanism
    "7.12": _R.SECURITY_ERROR,  # a password transition is needed
    "7.14": _R.SECURITY_ERROR,  # trust relationship required
    "7.15": _R.POLICY_VIOLATION,  # priority level too low
    "7.16": _R.MESG_TOO_BIG,  # message too big for specified priority
    "7.20": _R.AUTH_FAILURE,  # no passing DKIM signature found (RFC 7372)
    "7.21": _R.AUTH_FAILURE,  # no acceptable DKIM signature found
    "7.22": _R.AUTH_FAILURE,  # no valid author-matched DKIM signature found
    "7.23": _R.AUTH_FAILURE,  # SPF validation failed
    "7.24": _R.AUTH_FAILURE,  # SPF validation error
    "7.25": _R.REQUIRE_PTR,  # reverse DNS validation failed
    "7.26": _R.AUTH_FAILURE,  # multiple authentication checks failed (Gmail: DMARC)
    "7.27": _R.REJECTED,  # sender address has null MX (RFC 7505)
    "7.28": _R.SPAM_DETECTED,  # mail flood detected
    "7.29": _R.AUTH_FAILURE,  # ARC validation failure
    "7.30": _R.FAILED_STARTTLS,  # REQUIRETLS support required (RFC 8689)
}

#: A status missing from STATUS_REASONS is generic: every ``X.Y.0``, unregistered details, and
#: on purpose ``X.4.1`` (no answer from host; Microsoft's "access denied" for unknown users),
#: ``X.7.1`` (delivery not authorised; sent by large providers for blocks and unknown users
#: alike), ``X.7.9`` (AUTH mechanism too weak, RFC 4954; Yahoo sends it for "policy
#: reasons") and ``X.1.10`` (null MX per RFC 7505, but Microsoft sends it for every unknown
#: recipient: "5.1.10 RESOLVER.ADR.RecipientNotFound"). Generic statuses defer to the text
#: rules and fall back, by subject, to these reasons.
SUBJECT_FALLBACK: dict[int, BounceReason] = {
    0: _R.UNDEFINED,
    1: _R.UNDEFINED,
    2: _R.UNDEFINED,
    3: _R.SYSTEM_ERROR,
    4: _R.NETWORK_ERROR,
    5: _R.SYNTAX_ERROR,
    6: _R.CONTENT_ERROR,
    7: _R.POLICY_VIOLATION,
}

#: Microsoft's ``5.7.5xx``-``5.7.7xx`` (banned IPs, tenants, outbound spam) are all blocks.
MICROSOFT_BLOCK_DETAILS = range(500, 800)

#: Reasons for a bare basic reply code (RFC 5321 section 4.2.3), when nothing else speaks.
CODE_REASONS: dict[int, BounceReason] = {
    421: _R.SYSTEM_ERROR,
    451: _R.SYSTEM_ERROR,
    452: _R.SYSTEM_FULL,
    500: _R.SYNTAX_ERROR,
    501: _R.SYNTAX_ERROR,
    502: _R.SYNTAX_ERROR,
    503: _R.SYNTAX_ERROR,
    504: _R.SYNTAX_ERROR,
    530: _R.SECURITY_ERROR,
    535: _R.SECURITY_ERROR,
    552: _R.MAILBOX_FULL,
}
