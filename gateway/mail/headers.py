"""Control headers and RFC 8058 one-click List-Unsubscribe injection, byte-exact.

Only whole fields are added or removed: the body and every other field's folding reach the relay
exactly as the platform sent them (a DKIM signature the platform already made over other fields
keeps verifying).
"""

from __future__ import annotations

import re
from typing import Literal

from gateway.mail.message import CRLF, RawMessage

CONTROL_PREFIX = "x-gateway-"
CATEGORY = "x-gateway-category"
PURPOSE = "x-gateway-purpose"
LIST_UNSUBSCRIBE = "list-unsubscribe"
LIST_UNSUBSCRIBE_POST = "list-unsubscribe-post"
#: Feedback references: Gmail's Feedback-ID and RFC 9477's complaint feedback loop.
FEEDBACK_ID = "feedback-id"
CFBL_ADDRESS = "cfbl-address"
CFBL_FEEDBACK_ID = "cfbl-feedback-id"
FEEDBACK_FIELDS = frozenset({FEEDBACK_ID, CFBL_ADDRESS, CFBL_FEEDBACK_ID})
_FEEDBACK_ID_PART = re.compile(r"[^A-Za-z0-9._-]")
#: RFC 8058 §3.1: the only value the POST header may carry.
ONE_CLICK = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"

#: RFC 5322 §2.1.1: lines SHOULD stay within 78 octets and MUST within 998 (CRLF excluded).
FOLD_AT = 78
MAX_LINE = 998

# RFC 2369 §2: a URI goes inside angle brackets; nothing that could end the bracket, the field
# (CR/LF: header injection) or the URI list (comma, whitespace) may appear in it.
_URI_SAFE = re.compile(r"[\x21-\x7e]+")
_URI_FORBIDDEN = re.compile(r"[<>,\"]")

Existing = Literal["replace", "keep"]


def control_headers(msg: RawMessage) -> tuple[str | None, str | None]:
    """The X-Gateway-Category and X-Gateway-Purpose values (None when absent or empty)."""
    return msg.get(CATEGORY) or None, msg.get(PURPOSE) or None


def strip_control(msg: RawMessage) -> RawMessage:
    """The message without any ``X-Gateway-*`` field (they are for us, not for recipients)."""
    return msg.without({name for name, _ in msg.fields if name.startswith(CONTROL_PREFIX)})


def _bracketed(uri: str) -> str:
    if not _URI_SAFE.fullmatch(uri) or _URI_FORBIDDEN.search(uri):
        raise ValueError(f"unsafe character in unsubscribe URI: {uri!r}")
    return f"<{uri}>"


def unsubscribe_fields(http_url: str, mailto: str | None) -> list[bytes]:
    """``List-Unsubscribe`` (HTTPS URI, then mailto:) and the one-click POST field, raw CRLF."""
    if not http_url.startswith(("https://", "http://")):
        raise ValueError(f"one-click unsubscribe needs an HTTPS URI, got {http_url!r}")
    uris = [_bracketed(http_url)]
    if mailto is not None:
        uris.append(_bracketed(f"mailto:{mailto.removeprefix('mailto:')}"))
    name = "List-Unsubscribe: "
    line = name + ", ".join(uris)
    if len(line) > FOLD_AT:
        # RFC 5322 §3.2.2: fold at the comma, continuation lines start with WSP.
        lines = [name + uris[0] + ","] + [f" {uri}," for uri in uris[1:]]
        lines[-1] = lines[-1].removesuffix(",")
        if any(len(part) > MAX_LINE for part in lines):
            raise ValueError(f"unsubscribe URI longer than {MAX_LINE} octets per line")
        line = "\r\n".join(lines)
    return [line.encode("ascii") + CRLF, ONE_CLICK]


def has_one_click(msg: RawMessage) -> bool:
    """True when the message carries both List-Unsubscribe and List-Unsubscribe-Post."""
    names = {name for name, _ in msg.fields}
    return LIST_UNSUBSCRIBE in names and LIST_UNSUBSCRIBE_POST in names


def inject(msg: RawMessage, fields: list[bytes], existing: Existing) -> RawMessage | None:
    """Put ``fields`` at the top instead of the platform's own List-Unsubscribe* fields.

    With ``existing="keep"`` a message that already has both fields is left as is and None is
    returned; otherwise (or with ``"replace"``) the result carries exactly one of each
    (RFC 8058 §3.1), ours.
    """
    if existing == "keep" and has_one_click(msg):
        return None
    return msg.without({LIST_UNSUBSCRIBE, LIST_UNSUBSCRIBE_POST}).with_prepended(fields)


def feedback_fields(
    fbl_address: str, ref: str, parts: tuple[str | None, str | None, str, str]
) -> list[bytes]:
    """``Feedback-ID`` (Gmail: ``purpose:client:category:sender``, no recipient in it) and RFC
    9477's ``CFBL-Address`` and ``CFBL-Feedback-ID`` (the recipient's opaque reference), raw
    CRLF; the signer covers all three."""
    names = ":".join(_FEEDBACK_ID_PART.sub("-", part or "none")[:64] for part in parts)
    address = fbl_address.encode("ascii", "strict") if fbl_address.isascii() else None
    if address is None or not ref.isalnum():
        raise ValueError("CFBL-Address must be ASCII and the reference alphanumeric")
    return [
        b"Feedback-ID: " + names.encode("ascii") + CRLF,
        b"CFBL-Address: " + address + b"; report=arf" + CRLF,
        b"CFBL-Feedback-ID: " + ref.encode("ascii") + CRLF,
    ]


def inject_feedback(msg: RawMessage, fields: list[bytes]) -> RawMessage:
    """Put ``fields`` at the top instead of any Feedback-ID or CFBL field the platform set."""
    return msg.without(set(FEEDBACK_FIELDS)).with_prepended(fields)
