"""The closed sets of label values the gateway's metrics use (see :mod:`gateway.metrics`):
a value outside its set is a bug, so no address, token or subject can reach a label."""

from __future__ import annotations

from enum import StrEnum

from suppression.model import Decision, PolicyMode


class RecipientDecision(StrEnum):
    """What happened to one recipient; ``would_block`` is a block in monitor mode."""

    ALLOW = "allow"
    BLOCK = "block"
    WOULD_BLOCK = "would_block"


class MessageOutcome(StrEnum):
    """What happened to one message (one DATA transaction)."""

    RELAYED = "relayed"
    PARTIALLY_RELAYED = "partially_relayed"
    REJECTED = "rejected"
    TEMPFAILED = "tempfailed"
    UNSUBSCRIBE_MAIL = "unsubscribe_mail"


class RelayErrorKind(StrEnum):
    """Why a hand-off to the upstream relay failed."""

    CONNECT = "connect"
    TIMEOUT = "timeout"
    TEMPORARY = "4xx"
    PERMANENT = "5xx"
    TLS = "tls"
    PROTOCOL = "protocol"


class RejectionCode(StrEnum):
    """Bounded category of an SMTP rejection sent to a client (not the numeric reply)."""

    AUTH = "auth"
    SIZE = "size"
    RATE = "rate"
    SYNTAX = "syntax"
    RELAY_DENIED = "relay_denied"
    RECIPIENTS = "recipients"
    SESSIONS = "sessions"
    CONTENT = "content"
    POLICY = "policy"
    TLS = "tls"
    TIMEOUT = "timeout"
    JUNK = "junk"  # too many commands that did not advance a transaction
    STORE = "store"
    INTERNAL = "internal"


class Channel(StrEnum):
    """The channel a consent act came by (:mod:`gateway.consents`); opt-outs are counted by it."""

    ONE_CLICK = "one_click"
    PAGE = "page"
    MAILTO = "mailto"
    API = "api"
    CLI = "cli"
    IMPORT = "import"
    PROVIDER = "provider"  # a relay provider's unsubscribe event (its webhook)


class ConfirmationMail(StrEnum):
    """What became of one double opt-in request (``POST /subscribe``)."""

    SENT = "sent"
    RATE_LIMITED = "rate_limited"
    SUPPRESSED = "suppressed"
    ALREADY_SUBSCRIBED = "already_subscribed"
    FAILED = "failed"


class Confirmation(StrEnum):
    """What became of one confirmation (``POST /confirm/{token}``), per purpose."""

    CONFIRMED = "confirmed"
    REPEATED = "repeated"
    SUPERSEDED = "superseded"
    REFUSED = "refused"


def decision_label(decision: Decision, mode: PolicyMode) -> RecipientDecision:
    """The decision label for a policy decision taken in ``mode``."""
    if decision.allowed:
        return RecipientDecision.ALLOW
    if PolicyMode(mode) is PolicyMode.MONITOR:
        return RecipientDecision.WOULD_BLOCK
    return RecipientDecision.BLOCK
