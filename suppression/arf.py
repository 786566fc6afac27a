"""Complaint reports: RFC 5965 ARF, and Microsoft's JMRP form. Pure: parts in, values out.

ARF is ``multipart/report; report-type=feedback-report``: a human-readable part, a
``message/feedback-report`` part (``Feedback-Type``, ``User-Agent``, ``Version``, then
``Original-Mail-From``, ``Original-Rcpt-To``, ``Arrival-Date``, ``Source-IP``,
``Reported-Domain``, ...), and the original message or its headers (``text/rfc822-headers``).
Mailbox providers usually redact the complainer's address: look for our own reference headers
in :attr:`FeedbackReport.original` (``Feedback-ID``, ``CFBL-Feedback-ID`` per RFC 9477, our
``Message-ID``) rather than trusting ``Original-Rcpt-To``.

Microsoft's JMRP (Junk Mail Reporting Program) also sends a non-ARF form, seen in the Sisimai
corpus (``arf-23.eml``): ``multipart/mixed`` from ``staff@hotmail.com`` whose only part is the
original as ``message/rfc822``, carrying ``X-HmXmrOriginalRecipient: <complainer>``. It is read
as an ``abuse`` report in the ``jmrp`` format. Anyone can forge either form: check the report's
authentication (DKIM, SPF) before acting, outside this module.

Apple (iCloud Mail) has no feedback loop we could find a public description of, and the corpus
holds no such report; its "unsubscribe" button mails the ``List-Unsubscribe`` ``mailto:``
address, which is an unsubscribe request, not a report. Not modelled here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from suppression.report_mime import (
    Limits,
    OriginalHeaders,
    Parsed,
    content_type,
    field_blocks,
    items,
    original_after,
    original_headers,
)


class FeedbackType(StrEnum):
    """``Feedback-Type`` (RFC 5965 section 7.3, RFC 6591, RFC 6430)."""

    ABUSE = "abuse"
    NOT_SPAM = "not-spam"
    AUTH_FAILURE = "auth-failure"
    FRAUD = "fraud"
    VIRUS = "virus"
    OTHER = "other"  # also any unregistered or missing type (``raw_feedback_type`` keeps it)


class FeedbackFormat(StrEnum):
    """How the report was written."""

    ARF = "arf"
    JMRP = "jmrp"


@dataclass(frozen=True, slots=True)
class FeedbackReport:
    """A complaint (or other feedback) about one message we sent."""

    format: FeedbackFormat
    feedback_type: FeedbackType
    raw_feedback_type: str = ""
    user_agent: str | None = None
    version: str | None = None
    original_mail_from: str | None = None
    original_rcpt_to: tuple[str, ...] = ()
    arrival_date: str | None = None
    source_ip: str | None = None
    reported_domain: tuple[str, ...] = ()
    original_envelope_id: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    original: OriginalHeaders | None = None
    problems: tuple[str, ...] = ()


JMRP_SENDERS = frozenset({"staff@hotmail.com"})
JMRP_RECIPIENT_FIELD = "X-HmXmrOriginalRecipient"


_ANGLE = re.compile(r"<([^<>\s]{1,320})>")


def _bare(value: str | None) -> str | None:
    """``"Name" <a@b>``, ``<a@b>`` or ``a@b (comment)`` gives ``a@b``."""
    if not value:
        return None
    if m := _ANGLE.search(value):
        return m[1]
    words = value.split()
    return next((w for w in words if "@" in w), words[0] if words else None)


def read_arf(parsed: Parsed, index: int, limits: Limits) -> FeedbackReport:
    """Read the feedback-report part at ``parsed.parts[index]`` and the original after it."""
    fields = tuple(f for block in field_blocks(parsed.parts[index][0], limits) for f in block)

    def first(*names: str) -> str | None:
        wanted = {n.lower() for n in names}
        return next((v for k, v in fields if k.lower() in wanted), None)

    def every(name: str) -> tuple[str, ...]:
        found = (_bare(v) for k, v in fields if k.lower() == name)
        return tuple(v for v in found if v)[: limits.max_recipients]

    raw_type = (first("Feedback-Type") or "").split(" ")[0].lower()
    try:
        feedback_type = FeedbackType(raw_type)
    except ValueError:
        feedback_type = FeedbackType.OTHER
    return FeedbackReport(
        format=FeedbackFormat.ARF,
        feedback_type=feedback_type,
        raw_feedback_type=raw_type,
        user_agent=first("User-Agent"),
        version=first("Version"),
        original_mail_from=_bare(first("Original-Mail-From")),
        original_rcpt_to=every("original-rcpt-to"),
        # Received-Date is the name used by drafts before RFC 5965 (still sent by some).
        arrival_date=first("Arrival-Date", "Received-Date"),
        source_ip=first("Source-IP"),
        reported_domain=every("reported-domain"),
        original_envelope_id=first("Original-Envelope-Id"),
        fields=fields,
        original=original_after(parsed, index, limits),
        problems=tuple(parsed.problems),
    )


def read_jmrp(parsed: Parsed, limits: Limits) -> FeedbackReport | None:
    """Read Microsoft's non-ARF JMRP form, or ``None`` if the message is not one."""
    header = next((v for k, v in items(parsed.message, limits) if k.lower() == "from"), None)
    sender = _bare(header)
    for part, depth in parsed.parts:
        if depth != 1 or content_type(part) != "message/rfc822":
            continue
        original = original_headers(part, limits)
        if original is None:
            continue
        complainer = original.get(JMRP_RECIPIENT_FIELD)
        if complainer is None and (sender or "").lower() not in JMRP_SENDERS:
            continue
        return FeedbackReport(
            format=FeedbackFormat.JMRP,
            feedback_type=FeedbackType.ABUSE,
            raw_feedback_type="abuse",
            original_rcpt_to=(complainer,) if complainer else (),
            original=original,
            problems=tuple(parsed.problems),
        )
    return None
