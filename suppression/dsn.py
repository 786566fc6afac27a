"""RFC 3464 delivery status notifications: one status per recipient. Pure: parts in, values out.

A DSN is ``multipart/report; report-type=delivery-status``: a human-readable part, a
``message/delivery-status`` part (one group of per-message fields, then one group per
recipient), and optionally the original message or its headers. :func:`read_dsn` reads the
second part wherever it sits (some gateways wrap the whole DSN in a forwarded message) and the
original that follows it. ``Action: delayed`` (and delivered, relayed, expanded) is kept, but
:meth:`RecipientStatus.bounce` gives ``None`` for it: only a failure can count or suppress.
The heuristic reader for bounces without this part (:mod:`suppression.bounce_fallback`)
returns the same :class:`DeliveryReport`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from suppression.bounces import DEFAULT_RULES, Bounce, TextRule, classify
from suppression.report_mime import Limits, OriginalHeaders, Parsed, field_blocks, original_after


class Action(StrEnum):
    """The ``Action`` of one recipient (RFC 3464 section 2.3.3)."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"
    UNKNOWN = "unknown"  # absent or non-standard: treated as a failure by bounce()


class ReportSource(StrEnum):
    """How a delivery report was read."""

    RFC3464 = "rfc3464"
    HEURISTIC = "heuristic"


@dataclass(frozen=True, slots=True)
class RecipientStatus:
    """What happened to one recipient."""

    final_recipient: str | None
    original_recipient: str | None = None
    action: Action = Action.UNKNOWN
    status: str | None = None
    diagnostic: str | None = None
    diagnostic_type: str | None = None
    remote_mta: str | None = None
    last_attempt: str | None = None

    @property
    def recipient(self) -> str | None:
        """The address that failed: the final recipient, else the original one."""
        return self.final_recipient or self.original_recipient

    def bounce(
        self, rules: Sequence[TextRule] = DEFAULT_RULES, overrides: Sequence[TextRule] = ()
    ) -> Bounce | None:
        """The classified failure, or ``None`` when this is not one (delayed, delivered...)."""
        if self.action not in (Action.FAILED, Action.UNKNOWN):
            return None
        return classify(None, self.status, self.diagnostic or "", rules, overrides)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A bounce: per-message fields, per-recipient statuses, the original's headers."""

    source: ReportSource
    recipients: tuple[RecipientStatus, ...]
    reporting_mta: str | None = None
    arrival_date: str | None = None
    original_envelope_id: str | None = None
    original: OriginalHeaders | None = None
    dropped_recipients: int = 0
    problems: tuple[str, ...] = ()


_STATUS = re.compile(r"\b[245]\.\d{1,3}\.\d{1,3}\b")
_UTF8_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")


def _unescape(m: re.Match[str]) -> str:
    code = int(m[1], 16)
    return chr(code) if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else "\ufffd"


def address(value: str | None) -> str | None:
    """The address of an ``address-type; address`` field (``rfc822; <a@b>`` gives ``a@b``)."""
    if not value:
        return None
    kind, sep, rest = value.partition(";")
    if not sep:
        kind, rest = "rfc822", value
    words = rest.strip().strip("<>").split()
    if not words:
        return None
    addr = words[0].strip("<>")
    if kind.strip().lower() == "utf-8":  # RFC 6533 section 3: \x{HEX} escapes
        addr = _UTF8_ESCAPE.sub(_unescape, addr)
    return addr or None


def _mta(value: str | None) -> str | None:
    """``dns; mx.example.com`` gives ``mx.example.com``."""
    if not value:
        return None
    return value.partition(";")[2].strip() or value.strip() or None


def recipient_status(fields: Mapping[str, str]) -> RecipientStatus:
    """One per-recipient group of fields (lower-case names) as a :class:`RecipientStatus`."""
    try:
        action = Action(fields.get("action", "").split(" ")[0].lower())
    except ValueError:
        action = Action.UNKNOWN
    status = _STATUS.search(fields.get("status", ""))
    diagnostic_type = diagnostic = None
    if code := fields.get("diagnostic-code"):
        kind, sep, rest = code.partition(";")
        diagnostic_type, diagnostic = (kind.strip(), rest.strip()) if sep else (None, code)
    return RecipientStatus(
        final_recipient=address(fields.get("final-recipient")),
        original_recipient=address(fields.get("original-recipient")),
        action=action,
        status=status[0] if status else None,
        diagnostic=diagnostic or None,
        diagnostic_type=diagnostic_type or None,
        remote_mta=_mta(fields.get("remote-mta")),
        last_attempt=fields.get("last-attempt-date"),
    )


def read_dsn(parsed: Parsed, index: int, limits: Limits) -> DeliveryReport | None:
    """Read the delivery-status part at ``parsed.parts[index]``; ``None`` if it names nobody."""
    per_message: dict[str, str] = {}
    kept: list[RecipientStatus] = []
    dropped = 0
    for n, block in enumerate(field_blocks(parsed.parts[index][0], limits)):
        fields = {k.lower(): v for k, v in reversed(block)}  # the first of repeats wins
        if n == 0:
            per_message = fields
        if "final-recipient" not in fields and "original-recipient" not in fields:
            continue
        if len(kept) < limits.max_recipients:
            kept.append(recipient_status(fields))
        else:
            dropped += 1
    if not kept:
        return None
    return DeliveryReport(
        source=ReportSource.RFC3464,
        recipients=tuple(kept),
        reporting_mta=_mta(per_message.get("reporting-mta")),
        arrival_date=per_message.get("arrival-date"),
        original_envelope_id=per_message.get("original-envelope-id"),
        original=original_after(parsed, index, limits),
        dropped_recipients=dropped,
        problems=tuple(parsed.problems),
    )
