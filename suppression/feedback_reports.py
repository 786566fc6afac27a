"""One entry point for mail arriving at the bounce address: what kind of report is it?

:func:`parse_report` takes the raw bytes and returns a :class:`DeliveryReport` (a bounce, RFC
3464 or free text), a :class:`FeedbackReport` (a complaint, ARF or JMRP) or
:class:`Unparseable`. It never raises, whatever the input: every failure becomes
``Unparseable(MALFORMED)``, and the work done is bounded by :class:`Limits`. Pure: no I/O.

Which reader runs, first match wins:

==  ==========================================  =====================================
#   Applies when                                Reader (module)
==  ==========================================  =====================================
1   a ``message/feedback-report`` part          ``arf.read_arf``
2   a ``message/(global-)delivery-status``      ``dsn.read_dsn``, then
    part naming at least one recipient          ``bounce_fallback.fill_diagnostics``
3   an attached original from Microsoft JMRP    ``arf.read_jmrp``
4   a bouncing address found in free text       ``bounce_fallback.read_heuristic``
5   otherwise (auto-replies, human mail)        ``Unparseable(NOT_A_REPORT)``
==  ==========================================  =====================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from suppression.arf import FeedbackFormat, FeedbackReport, FeedbackType, read_arf, read_jmrp
from suppression.bounce_fallback import fill_diagnostics, read_heuristic
from suppression.dsn import Action, DeliveryReport, RecipientStatus, ReportSource, read_dsn
from suppression.report_mime import DEFAULT_LIMITS, Limits, OriginalHeaders, content_type, parse

__all__ = [
    "DEFAULT_LIMITS",
    "Action",
    "DeliveryReport",
    "FeedbackFormat",
    "FeedbackReport",
    "FeedbackType",
    "Limits",
    "OriginalHeaders",
    "RecipientStatus",
    "Report",
    "ReportSource",
    "Unparseable",
    "UnparseableReason",
    "parse_report",
]

_DELIVERY_STATUS = frozenset({"message/delivery-status", "message/global-delivery-status"})


class UnparseableReason(StrEnum):
    """Why no report could be read."""

    NOT_A_REPORT = "not-a-report"  # readable, but no bounce or complaint in it
    MALFORMED = "malformed"  # the parser or a reader failed


@dataclass(frozen=True, slots=True)
class Unparseable:
    """No report: why, and a short detail for the log (never the input itself)."""

    reason: UnparseableReason
    detail: str = ""


Report = DeliveryReport | FeedbackReport | Unparseable


def parse_report(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Report:
    """Read a bounce or a complaint from raw message bytes (see the table above)."""
    try:
        return _parse(raw, limits)
    except Exception as e:  # hostile input must not take the caller down
        return Unparseable(UnparseableReason.MALFORMED, type(e).__name__)


def _parse(raw: bytes, limits: Limits) -> Report:
    parsed = parse(bytes(raw), limits)
    types = [content_type(part) for part, _ in parsed.parts]
    if "message/feedback-report" in types:
        return read_arf(parsed, types.index("message/feedback-report"), limits)
    for index, ctype in enumerate(types):
        if ctype in _DELIVERY_STATUS and (report := read_dsn(parsed, index, limits)):
            return fill_diagnostics(report, parsed, limits)
    if (jmrp := read_jmrp(parsed, limits)) is not None:
        return jmrp
    if (heuristic := read_heuristic(parsed, limits)) is not None:
        return heuristic
    return Unparseable(UnparseableReason.NOT_A_REPORT)
