"""Raw message parsing and List-Unsubscribe injection: only whole fields change, byte for byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.mail.headers import (
    ONE_CLICK,
    control_headers,
    has_one_click,
    inject,
    strip_control,
    unsubscribe_fields,
)
from gateway.mail.message import MalformedMessage, RawMessage

URL = "https://u.example.com/u/AbC123"
SIMPLE = (
    b"From: Shop <news@shop.example>\r\n"
    b"To: alice@example.org\r\n"
    b"Subject: Sale\r\n"
    b"\tstarts today\r\n"
    b"X-Gateway-Category: marketing\r\n"
    b"x-gateway-purpose:  newsletter \r\n"
    b"List-Unsubscribe: <https://platform.example/unsub>\r\n"
    b"\r\n"
    b"Hello\r\n\r\nFrom: not a header\r\n"
)


# --- strategies: header blocks and bodies as platforms send them (CRLF, no bare CR/LF, no NUL)

_NAMES = st.one_of(
    st.sampled_from(
        [
            "From",
            "To",
            "Subject",
            "List-Unsubscribe",
            "LIST-UNSUBSCRIBE-POST",
            "list-unsubscribe-post",
            "X-Gateway-Category",
            "x-gateway-purpose",
            "X-Gateway-Whatever",
            "DKIM-Signature",
        ]
    ),
    st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1),
)
_LINE = st.binary(max_size=60).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
)
_WSP = st.sampled_from([b" ", b"\t", b"  "])


@st.composite
def raw_fields(draw: st.DrawFn) -> bytes:
    """One header field with optional folded continuation lines."""
    name = draw(_NAMES).encode("ascii")
    first = draw(_LINE)
    continuations = draw(st.lists(st.tuples(_WSP, _LINE), max_size=3))
    return name + b":" + first + b"".join(b"\r\n" + w + line for w, line in continuations) + b"\r\n"


_BODIES = st.lists(_LINE, max_size=8).map(lambda lines: b"\r\n".join(lines))


@settings(max_examples=300, deadline=None)
@given(fields=st.lists(raw_fields(), max_size=12), body=_BODIES)
def test_parse_round_trips_byte_for_byte(fields: list[bytes], body: bytes) -> None:
    """Any well-formed message serialises back to exactly the bytes parsed, fields kept raw."""
    data = b"".join(fields) + b"\r\n" + body
    msg = RawMessage.parse(data)
    assert msg.to_bytes() == data
    assert [raw for _, raw in msg.fields] == fields
    assert bytes(msg.body) == body
    assert len(msg) == len(data)


@settings(max_examples=300, deadline=None)
@given(
    fields=st.lists(raw_fields(), max_size=12),
    body=_BODIES,
    existing=st.sampled_from(["replace", "keep"]),
)
def test_injection_changes_only_whole_fields(
    fields: list[bytes], body: bytes, existing: str
) -> None:
    """Stripping and injecting add and remove whole fields; every other byte stays as received."""
    data = b"".join(fields) + b"\r\n" + body
    ours = unsubscribe_fields(URL, "unsub+t@shop.example")
    msg = strip_control(RawMessage.parse(data))
    out = inject(msg, ours, existing)  # type: ignore[arg-type]

    def name(raw: bytes) -> str:
        return raw.split(b":", 1)[0].decode().lower()

    kept = [raw for raw in fields if not name(raw).startswith("x-gateway-")]
    if out is None:
        assert existing == "keep" and has_one_click(msg)
        assert msg.to_bytes() == b"".join(kept) + b"\r\n" + body
        return
    unsub = {"list-unsubscribe", "list-unsubscribe-post"}
    expected = b"".join(ours) + b"".join(r for r in kept if name(r) not in unsub)
    assert out.to_bytes() == expected + b"\r\n" + body
    assert out.count("list-unsubscribe") == 1
    assert out.count("list-unsubscribe-post") == 1


@pytest.mark.parametrize(
    ("data", "header", "body", "text"),
    [
        (b"Subject: x\r\n", b"Subject: x\r\n", b"", "header only, no empty line"),
        (b"Subject: x", b"Subject: x", b"", "last line without CRLF"),
        (b"\r\nbody\r\n", b"", b"body\r\n", "no header at all"),
        (b"A: 1\r\n\r\n", b"A: 1\r\n", b"", "empty body"),
        (b"A: 1\r\n\r\n\r\n\r\n", b"A: 1\r\n", b"\r\n\r\n", "body of empty lines"),
    ],
)
def test_parse_edges(data: bytes, header: bytes, body: bytes, text: str) -> None:
    """Messages without body, separator or header still split and round-trip exactly."""
    msg = RawMessage.parse(data)
    assert msg.header_bytes() == header, text
    assert bytes(msg.body) == body, text
    assert msg.to_bytes() == data, text


@pytest.mark.parametrize(
    "data",
    [
        b"Subject x\r\n\r\nbody",  # no colon
        b" folded: first\r\n\r\n",  # continuation before any field
        b"Subject : x\r\n\r\n",  # space in the name
        b"From user@example.com Mon Jan 1\r\nSubject: x\r\n\r\n",  # mbox separator
        b"Subj\xe9ct: x\r\n\r\n",  # 8-bit name
        b":novalue\r\n\r\n",  # empty name
        b"A: 1\nB: 2\r\n\r\n",  # bare LF (the SMTP layer should have refused it)
    ],
)
def test_malformed_header_blocks_raise(data: bytes) -> None:
    """A header line that is neither a field nor a continuation raises MalformedMessage."""
    with pytest.raises(MalformedMessage):
        RawMessage.parse(data)


def test_get_unfolds_decodes_and_strips() -> None:
    """get() returns the first value unfolded and stripped; get_all() every value in order."""
    msg = RawMessage.parse(
        b"Subject: caf\xc3\xa9\r\n  au lait \r\nTo: a@x\r\nto: b@x\r\nRaw: \xff\r\n\r\n"
    )
    assert msg.get("SUBJECT") == "café  au lait"
    assert msg.get_all("To") == ["a@x", "b@x"]
    assert msg.get("missing") is None
    assert msg.get("raw") == "\udcff"  # surrogateescape: undecodable bytes survive


def test_with_prepended_puts_fields_on_top_and_checks_them() -> None:
    """New fields go above the others; anything but one CRLF-terminated field is refused."""
    msg = RawMessage.parse(SIMPLE)
    out = msg.with_prepended([b"Received: by gw\r\n"])
    assert out.to_bytes() == b"Received: by gw\r\n" + SIMPLE
    for bad in (b"Received: no crlf", b"A: 1\r\nB: 2\r\n", b"not a field\r\n", b"A: x\nB: y\r\n"):
        with pytest.raises(MalformedMessage):
            msg.with_prepended([bad])


def test_control_headers_read_and_stripped() -> None:
    """X-Gateway-* values are read, then every X-Gateway-* field is removed whatever its case."""
    msg = RawMessage.parse(SIMPLE)
    assert control_headers(msg) == ("marketing", "newsletter")
    stripped = strip_control(msg)
    assert control_headers(stripped) == (None, None)
    assert b"gateway" not in stripped.to_bytes().lower()
    assert control_headers(RawMessage.parse(b"X-Gateway-Purpose:\r\n\r\n")) == (None, None)


def test_unsubscribe_fields_short_and_folded() -> None:
    """A short list stays on one line; a long one folds at the comma within 78 octets."""
    short = unsubscribe_fields("https://u.ex/u/t", None)
    assert short == [b"List-Unsubscribe: <https://u.ex/u/t>\r\n", ONE_CLICK]
    folded = unsubscribe_fields("https://unsubscribe.example.com/u/" + "A" * 20, "u+T@ex.com")[0]
    assert folded == (
        b"List-Unsubscribe: <https://unsubscribe.example.com/u/" + b"A" * 20 + b">,\r\n"
        b" <mailto:u+T@ex.com>\r\n"
    )
    assert all(len(line) <= 78 for line in folded.split(b"\r\n"))


@pytest.mark.parametrize(
    "url",
    [
        "https://u.example/u/x\r\nBcc: victim@example.org",
        "https://u.example/u/x>, <https://evil.example",
        "https://u.example/u/ x",
        "ftp://u.example/u/x",
        "https://u.example/u/" + "x" * 1000,
    ],
)
def test_unsubscribe_fields_refuse_unsafe_uris(url: str) -> None:
    """URIs that could inject a field, break the list or pass 998 octets are refused."""
    with pytest.raises(ValueError):
        unsubscribe_fields(url, None)


def test_inject_replace_and_keep() -> None:
    """replace swaps the platform's fields for ours; keep leaves a message that has both."""
    ours = unsubscribe_fields(URL, None)
    both = RawMessage.parse(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" + SIMPLE)
    replaced = inject(both, ours, "replace")
    assert replaced is not None
    assert replaced.get_all("list-unsubscribe") == [f"<{URL}>"]
    assert replaced.get_all("list-unsubscribe-post") == ["List-Unsubscribe=One-Click"]
    assert inject(both, ours, "keep") is None
    only_one = RawMessage.parse(SIMPLE)  # List-Unsubscribe but no -Post: not one-click
    kept = inject(only_one, ours, "keep")
    assert kept is not None and kept.get_all("list-unsubscribe") == [f"<{URL}>"]
    assert bytes(kept.body) == bytes(only_one.body)
