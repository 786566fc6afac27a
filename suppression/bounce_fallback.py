"""Bounces without a delivery-status part: a best-effort reader. Pure: parts in, values out.

Exim, qmail, old Sendmail, Exchange 2003, Yahoo, Gmail's own bounces and many more still write
free text. Who bounced is found by the first of:

1. DSN fields written into the text (``Final-Recipient:`` lines after a broken MIME boundary,
   or pasted by a gateway): read as a DSN would be;
2. ``flufl.bounce`` (GNU Mailman's detectors, tuned since 2000 to avoid false positives, as
   Mailman unsubscribes members on them), less what cannot be a failed recipient: strings that
   are not addresses, and addresses the text only shows in ``From:`` / ``Message-ID:`` lines;
3. for a message that looks like a bounce (from MAILER-DAEMON or postmaster, or a bounce
   subject), the recipients of the returned original (``To``, ``Cc``) that the report text
   names.

Why is found here: for each address, the first SMTP reply (a ``4xx``/``5xx`` code or an
``X.Y.Z`` status) within a few lines after the address is mentioned, else the lines right
after it, else the first reply in the text; the classifier reads it like a ``Diagnostic-Code``.
The original's headers come from an attached part, else from the text after the usual separator
lines ("Below this line is a copy of the message", "------ This is a copy of the message...").

flufl.bounce logs each detector it runs at INFO on the ``flufl.bounce`` logger: the
composition root should raise that logger's level.
"""

from __future__ import annotations

import re
from dataclasses import replace
from itertools import islice

from flufl.bounce import all_failures

from suppression.dsn import Action, DeliveryReport, RecipientStatus, ReportSource, recipient_status
from suppression.report_mime import (
    ORIGINAL_TYPES,
    Limits,
    OriginalHeaders,
    Parsed,
    content_type,
    headers_from_text,
    items,
    original_headers,
    parse_fields,
    text,
)

#: How many lines after an address its reply is looked for.
WINDOW = 12

_REPLY = re.compile(r"(?<![\w.])[45]\d\d[ -]|(?<![\w.])#?[45]\.[0-7]\.\d{1,3}(?!\w|\.\d)")
_STRONG_REPLY = re.compile(
    r"(?<![\w.])[45]\d\d[ -]+['#(]?[45]\.[0-7]\.\d|(?:^|[:'(]\s{0,3})[45]\d\d[ -]"
)
_CONTINUED = re.compile(r"^[45]\d\d[ -]")
_SEPARATOR = re.compile(
    r"^[-\s]*(?:the |a )?(?:copy of the original message|original message|this is a copy of the"
    r" message|below this line is a copy of the message|unsent message follows|message headers"
    r" follow|original message headers|returned message|headers of the original message"
    r"|undelivered message headers)",
    re.IGNORECASE,
)
_DSN_FIELD = re.compile(r"^(?:final|original)-recipient\s*:", re.IGNORECASE)
_ADDRESS = re.compile(r"[^\s@<>(){}\[\]\"',;:]{1,64}@[^\s@<>(){}\[\]\"',;:]{1,255}")
_SENDER_LINE = re.compile(
    r"^\s*(?:message-id|from|sender|return-path|reply-to|in-reply-to|references)\s*:", re.I
)
_BOUNCE_FROM = re.compile(r"mailer-daemon|postmaster|post_master|mail delivery", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery[\s_]+(?:status|fail|notification|problem)|returned[\s_]+mail"
    r"|failure[\s_]+notice|delivery[\s_]+failed|mail[\s_]+system[\s_]+error"
    r"|could[\s_]+not[\s_]+be[\s_]+delivered|error[\s_]+sending",
    re.I,
)
_HEADERS_WANTED = frozenset({"from", "to", "subject", "message-id", "date", "received"})


def _report_text(parsed: Parsed, limits: Limits) -> list[str]:
    """The lines of the bounce's human-readable text, outside any attached message."""
    chunks: list[str] = []
    inside: int | None = None  # depth of the attached message being skipped
    for part, depth in parsed.parts:
        if inside is not None and depth > inside:
            continue
        inside = None
        ctype = content_type(part)
        if ctype in ORIGINAL_TYPES:
            inside = depth
        elif ctype in ("text/plain", "text/x-notes") or (depth == 0 and ctype.startswith("text/")):
            chunks.append(text(part, limits))
    return "\n".join(chunks)[: limits.max_text].splitlines()


def _reply_at(lines: list[str], i: int) -> str:
    out = [lines[i].strip()]
    for line in lines[i + 1 : i + 6]:
        if not line.strip() or not (_CONTINUED.match(line.strip()) or line[:1] in " \t"):
            break
        out.append(line.strip())
    return " ".join(out)


def _mentions(lines: list[str]) -> dict[str, list[int]]:
    """Where each address appears: lower-case address to line numbers (one pass)."""
    found: dict[str, list[int]] = {}
    for n, line in enumerate(lines):
        for addr in _ADDRESS.findall(line):
            found.setdefault(addr.rstrip(".").lower(), []).append(n)
    return found


def _diagnostic(
    report: list[str], mentions: list[int], limit: int, guess: bool = True
) -> str | None:
    """The reply for an address named on lines ``mentions`` (see the module docstring)."""
    windows = [range(m, min(m + WINDOW, len(report))) for m in mentions[:5] if m < len(report)]
    for pattern in (_STRONG_REPLY, _REPLY):
        for window in windows:
            found = next((n for n in window if pattern.search(report[n])), None)
            if found is not None:
                return _reply_at(report, found)[:limit]
    if not guess:
        return None
    if windows:
        near = [report[n].strip() for n in windows[0] if report[n].strip()][:4]
        return " ".join(near)[:limit] or None
    found = next((n for n, line in enumerate(report) if _REPLY.search(line)), None)
    if found is not None:
        return _reply_at(report, found)[:limit]
    # Named nowhere (X-Failed-Recipients), no reply anywhere: the error is usually last.
    return " ".join([line.strip() for line in report if line.strip()][-3:])[:limit] or None


def _original(parsed: Parsed, lines: list[str], limits: Limits) -> OriginalHeaders | None:
    for part, _ in parsed.parts:
        if content_type(part) in ORIGINAL_TYPES:
            return original_headers(part, limits)
    sep = next((n for n, line in enumerate(lines) if _SEPARATOR.match(line)), None)
    if sep is None:
        return None
    rest = lines[sep + 1 :]
    while rest and not rest[0].strip():
        rest = rest[1:]
    headers = headers_from_text("\n".join(rest), limits)
    if headers is None or not any(k.lower() in _HEADERS_WANTED for k, _ in headers.fields):
        return None
    return headers


def _embedded_dsn(lines: list[str], limits: Limits) -> list[RecipientStatus]:
    start = next((n for n, line in enumerate(lines) if _DSN_FIELD.match(line)), None)
    if start is None:
        return []
    groups = [
        {k.lower(): v for k, v in reversed(b)}
        for b in parse_fields("\n".join(lines[start:]), limits)
    ]
    return [recipient_status(g) for g in groups if "final-recipient" in g]


def _by_flufl(
    parsed: Parsed, lines: list[str], mentions: dict[str, list[int]], limits: Limits
) -> list[tuple[str, Action]]:
    # flufl.bounce tries each of its patterns on every line of every part and looks headers up
    # many times: its work grows with the line, part and header counts (a megabyte of short
    # lines takes it 20 s), so a message with too many is not given to it.
    too_many_parts = next(islice(parsed.message.walk(), limits.max_parts, None), None)
    too_many_headers = len(parsed.message) > limits.max_headers
    if too_many_parts is not None or too_many_headers or parsed.lines > limits.max_lines:
        parsed.problems.append("skipped: flufl.bounce")
        return []
    try:
        temporary, permanent = all_failures(parsed.message)
    except Exception:  # a detector choked on odd input: no verdict from it
        return []
    found = [(a, Action.FAILED) for a in sorted(permanent)]
    found += [(a, Action.DELAYED) for a in sorted(temporary - permanent)]
    kept = []
    for raw, action in found:
        addr = raw.decode("utf-8", "replace").strip().strip("<>")
        if not _ADDRESS.fullmatch(addr):
            continue
        seen = mentions.get(addr.lower(), [])
        if seen and all(_SENDER_LINE.match(lines[n]) for n in seen):
            continue  # only ever shown as the sender or a message id: not who bounced
        kept.append((addr, action))
    return kept


def _looks_like_bounce(parsed: Parsed, limits: Limits) -> bool:
    headers = {k.lower(): v for k, v in reversed(items(parsed.message, limits))}
    sender = headers.get("from", "")
    return bool(
        _BOUNCE_FROM.search(sender)
        or "<>" in sender
        or headers.get("return-path", "").strip() == "<>"
        or _BOUNCE_SUBJECT.search(headers.get("subject", ""))
    )


def _by_original(
    report_lines: int, original: OriginalHeaders, mentions: dict[str, list[int]]
) -> list[tuple[str, Action]]:
    found: dict[str, None] = {}
    for name in ("To", "Cc"):
        for value in original.get_all(name):
            for addr in _ADDRESS.findall(value):
                addr = addr.rstrip(".")
                if any(n < report_lines for n in mentions.get(addr.lower(), ())):
                    found[addr] = None
    return [(a, Action.UNKNOWN) for a in found]


def fill_diagnostics(report: DeliveryReport, parsed: Parsed, limits: Limits) -> DeliveryReport:
    """Give DSN recipients without a ``Diagnostic-Code`` the reply the text part shows them.

    Some MTAs (OpenSMTPD, Sendmail on expiry) write the remote reply only in the human-readable
    part. Such a diagnostic has the type ``x-text``; nothing is guessed when no reply follows
    the address there.
    """
    if all(r.diagnostic or not r.recipient for r in report.recipients):
        return report
    lines = _report_text(parsed, limits)
    separator = next((n for n, line in enumerate(lines) if _SEPARATOR.match(line)), None)
    text_lines = lines if separator is None else lines[:separator]
    mentions = _mentions(text_lines)
    recipients = []
    for r in report.recipients:
        found = None
        if not r.diagnostic and r.recipient:
            where = mentions.get(r.recipient.lower(), [])
            found = _diagnostic(text_lines, where, limits.max_value, guess=False) if where else None
        recipients.append(replace(r, diagnostic=found, diagnostic_type="x-text") if found else r)
    return replace(report, recipients=tuple(recipients))


def read_heuristic(parsed: Parsed, limits: Limits) -> DeliveryReport | None:
    """Read a free-text bounce, or ``None`` when no bouncing address is found."""
    lines = _report_text(parsed, limits)
    separator = next((n for n, line in enumerate(lines) if _SEPARATOR.match(line)), None)
    report = lines if separator is None else lines[:separator]
    original = _original(parsed, lines, limits)
    statuses = _embedded_dsn(report, limits)
    total = len(statuses)
    if not statuses:
        mentions = _mentions(lines)
        found = _by_flufl(parsed, lines, mentions, limits)
        if not found and original is not None and _looks_like_bounce(parsed, limits):
            found = _by_original(len(report), original, mentions)
        total = len(found)
        statuses = [
            RecipientStatus(
                final_recipient=addr[: limits.max_value],
                action=action,
                diagnostic=_diagnostic(report, mentions.get(addr.lower(), []), limits.max_value),
            )
            for addr, action in found[: limits.max_recipients]
        ]
    if not statuses:
        return None
    return DeliveryReport(
        source=ReportSource.HEURISTIC,
        recipients=tuple(statuses[: limits.max_recipients]),
        original=original,
        dropped_recipients=max(0, total - limits.max_recipients),
        problems=tuple(parsed.problems),
    )
