"""Bounded reading of hostile MIME for the report parsers. Pure: bytes in, plain values out.

The standard library's parser with the ``compat32`` policy is the most forgiving (the
``default`` policy's header parser raises, or goes quadratic, on some hostile headers), but it
recurses once per nesting level and keeps every part. So the input is cut first: at
``max_bytes``, and before the header block that would start part ``max_parts + 1`` (each
MIME part, nested message included, needs a ``Content-Type``, so this also bounds the depth the
parser recurses to). The walk over the parts then stops at ``max_depth``. Delivery-status parts
are handed to the parser as text and read by :func:`parse_fields` (see :func:`parse`). Every
helper here turns decoding errors (unknown or non-text charsets, bad base64, 8-bit headers)
into replacement characters; the public entry point (:mod:`suppression.feedback_reports`)
catches the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser, Parser
from email.policy import compat32
from itertools import islice

#: The parts a returned or reported original message comes as.
ORIGINAL_TYPES = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/global-headers"}
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on the work done for one report (hostile input stays cheap)."""

    max_bytes: int = 1024 * 1024  # input read; a returned original is cut, its headers kept
    max_depth: int = 10  # MIME nesting walked
    max_parts: int = 100  # MIME parts parsed
    max_recipients: int = 1000  # recipients or Original-Rcpt-To kept; the rest are counted
    max_headers: int = 200  # header fields kept per message, fields per report group
    max_value: int = 2000  # characters kept per field value or diagnostic
    max_text: int = 256 * 1024  # bytes of a text part read
    max_lines: int = 20_000  # beyond this, flufl.bounce is not run on free text


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class OriginalHeaders:
    """The header fields of the returned or reported original message, in order."""

    fields: tuple[tuple[str, str], ...]

    def get_all(self, name: str) -> tuple[str, ...]:
        """Every value of a field, by case-insensitive name."""
        key = name.lower()
        return tuple(v for k, v in self.fields if k.lower() == key)

    def get(self, name: str) -> str | None:
        """The first value of a field, or ``None``."""
        values = self.get_all(name)
        return values[0] if values else None

    @property
    def message_id(self) -> str | None:
        """``Message-ID``, as found."""
        return self.get("Message-ID")

    @property
    def feedback_id(self) -> str | None:
        """``Feedback-ID`` (Gmail's feedback loop), as found."""
        return self.get("Feedback-ID")

    @property
    def cfbl_feedback_id(self) -> str | None:
        """``CFBL-Feedback-ID`` (RFC 9477), as found."""
        return self.get("CFBL-Feedback-ID")


@dataclass(slots=True)
class Parsed:
    """A parsed message with its parts in document order, and what had to be cut."""

    message: Message
    parts: list[tuple[Message, int]] = field(default_factory=list)  # (part, depth)
    problems: list[str] = field(default_factory=list)
    lines: int = 0


_CONTENT_TYPE = re.compile(rb"^content-type[ \t]*:", re.IGNORECASE | re.MULTILINE)
_DELIVERY_STATUS = re.compile(
    rb"^(content-type[ \t]*:\s{0,20})message/(global-)?delivery-status", re.I | re.MULTILINE
)
_RENAMED = {
    "text/x-delivery-status": "message/delivery-status",
    "text/x-global-delivery-status": "message/global-delivery-status",
}
_SPACE = re.compile(r"\s+")
_FIELD = re.compile(r"^([!-9;-~]{1,76})[ \t]*:(.*)$")


def clean(value: object, limit: int) -> str:
    """A header value as one line of text: undecodable bytes replaced, whitespace folded."""
    try:
        text = value if isinstance(value, str) else str(value)
        text = text[: limit * 4].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except Exception:  # a Header that will not print, a lone surrogate
        text = repr(value)[: limit * 4]
    return _SPACE.sub(" ", text).strip()[:limit]


def parse(raw: bytes, limits: Limits) -> Parsed:
    """Parse at most ``limits`` worth of ``raw`` (see the module docstring)."""
    problems = []
    if len(raw) > limits.max_bytes:
        raw = raw[: limits.max_bytes]
        problems.append("truncated: max_bytes")
    cut = next(islice(_CONTENT_TYPE.finditer(raw), limits.max_parts, None), None)
    if cut is not None:
        raw = raw[: cut.start()]
        problems.append("truncated: max_parts")
    # compat32 makes one Message per field group of a delivery-status part (a hostile megabyte
    # of them takes seconds): let it see a text part, and read the groups with parse_fields.
    raw = _DELIVERY_STATUS.sub(rb"\1text/x-\2delivery-status", raw)
    message = BytesParser(policy=compat32).parsebytes(raw)
    parsed = Parsed(message, problems=problems, lines=raw.count(b"\n"))
    _walk(parsed, limits)
    return parsed


def content_type(part: Message) -> str:
    """The part's content type, lower case (``text/plain`` when it cannot be read)."""
    try:
        ctype = part.get_content_type()
    except Exception:  # an 8-bit Content-Type comes back as a Header object
        return "text/plain"
    return _RENAMED.get(ctype, ctype)


def param(part: Message, name: str) -> str:
    """A Content-Type parameter, lower case, ``""`` when absent or unreadable."""
    try:
        value = part.get_param(name)
    except Exception:
        return ""
    return clean(value, 100).lower() if isinstance(value, str) else ""


def _walk(parsed: Parsed, limits: Limits) -> None:
    stack = [(parsed.message, 0)]
    while stack:
        part, depth = stack.pop()
        if len(parsed.parts) >= limits.max_parts:
            parsed.problems.append("cut: max_parts")
            return
        parsed.parts.append((part, depth))
        payload = part.get_payload()
        if not isinstance(payload, list) or content_type(part) == "message/delivery-status":
            continue
        if depth >= limits.max_depth:
            parsed.problems.append("cut: max_depth")
            continue
        children = [p for p in payload if isinstance(p, Message)]
        stack.extend((child, depth + 1) for child in reversed(children))


def text(part: Message, limits: Limits, cap: int | None = None) -> str:
    """A leaf part's decoded text (transfer encoding and charset), at most ``max_text`` bytes."""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        if not isinstance(payload, str):
            return ""
        data = payload.encode("ascii", "surrogateescape")
    data = data[: limits.max_text if cap is None else cap]
    charset = param(part, "charset") or "utf-8"
    try:
        return data.decode(charset, "replace")
    except Exception:  # unknown charset, or a codec that is not a text encoding
        return data.decode("utf-8", "replace")


def items(message: Message, limits: Limits) -> list[tuple[str, str]]:
    """A message's header fields as clean text, at most ``max_headers`` (the rest unread)."""
    return [
        (clean(k, 76), clean(v, limits.max_value))
        for k, v in islice(message.raw_items(), limits.max_headers)
    ]


def field_blocks(part: Message, limits: Limits) -> Iterator[list[tuple[str, str]]]:
    """The blank-line separated field groups of a report part (delivery-status, feedback)."""
    payload = part.get_payload()
    if isinstance(payload, list):  # compat32 parsed each group as a header-only message
        return (items(m, limits) for m in payload if isinstance(m, Message))
    return parse_fields(text(part, limits, limits.max_bytes), limits)


def parse_fields(body: str, limits: Limits) -> Iterator[list[tuple[str, str]]]:
    """Parse ``Name: value`` groups separated by blank lines; folded lines continue a value."""
    block: list[tuple[str, str]] = []
    for line in body.splitlines():
        if not line.strip():
            if block:
                yield block
                block = []
        elif line[0] in " \t" and block:
            name, value = block[-1]
            block[-1] = (name, clean(f"{value} {line}", limits.max_value))
        elif (m := _FIELD.match(line)) and len(block) < limits.max_headers:
            block.append((m[1], clean(m[2], limits.max_value)))
    if block:
        yield block


def original_headers(part: Message, limits: Limits) -> OriginalHeaders | None:
    """The headers of a returned original (message/rfc822 or text/rfc822-headers part)."""
    payload = part.get_payload()
    if isinstance(payload, list):
        inner = next((m for m in payload if isinstance(m, Message)), None)
        return OriginalHeaders(tuple(items(inner, limits))) if inner is not None else None
    return headers_from_text(text(part, limits), limits)


def headers_from_text(body: str, limits: Limits) -> OriginalHeaders | None:
    """The header block at the start of ``body``, or ``None`` if it has none."""
    message = Parser(policy=compat32).parsestr(body[: limits.max_text], headersonly=True)
    fields = tuple(items(message, limits))
    return OriginalHeaders(fields) if fields else None


def original_after(parsed: Parsed, index: int, limits: Limits) -> OriginalHeaders | None:
    """The original message that follows part ``index`` (a report's third part), if any."""
    for part, _ in parsed.parts[index + 1 :]:
        if content_type(part) in ORIGINAL_TYPES:
            return original_headers(part, limits)
    return None
