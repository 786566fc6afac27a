"""Byte-exact RFC 5322 header handling for messages that arrive with CRLF line endings.

A :class:`RawMessage` keeps every header field as the exact bytes received (folding included) and
the body as a zero-copy view of the original buffer: adding or removing whole fields is the only
change it can make, so every other byte reaches the relay as the platform sent it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# RFC 5322 §2.2: field-name = 1*(printable US-ASCII except ":"); §2.2.3: a folded line starts
# with WSP. A field runs to the CRLF of its last line (the very last line of a message without a
# body may lack one).
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+):[^\r\n]*(?:\r\n[ \t][^\r\n]*)*(?:\r\n|\Z)")
_FOLD = re.compile(rb"\r\n(?=[ \t])")
CRLF = b"\r\n"


class MalformedMessage(ValueError):
    """The header block cannot be parsed; callers reply ``554 5.6.0``."""


Field = tuple[str, bytes]


def parse_fields(block: bytes) -> list[Field]:
    """Split a header block into ``(lowercased name, exact raw bytes)`` fields."""
    fields: list[Field] = []
    pos, end = 0, len(block)
    while pos < end:
        match = _FIELD.match(block, pos)
        if match is None:
            line = block.count(b"\n", 0, pos) + 1
            raise MalformedMessage(f"header line {line} is neither a field nor a continuation")
        fields.append((match.group(1).decode("ascii").lower(), block[pos : match.end()]))
        pos = match.end()
    return fields


def field_value(raw: bytes) -> str:
    """The unfolded, decoded and stripped value of one raw field."""
    value = _FOLD.sub(b"", raw[raw.index(b":") + 1 :])
    return value.decode("utf-8", "surrogateescape").strip()


class RawMessage:
    """A message as received: raw header fields plus an untouched body view."""

    __slots__ = ("_data", "_fields", "_separator", "_start")

    def __init__(
        self, fields: Iterable[Field], data: bytes, start: int, separator: bool = True
    ) -> None:
        self._fields: tuple[Field, ...] = tuple(fields)
        #: The body is ``data[start:]``, kept as the buffer received and an offset (no copy).
        self._data = data
        self._start = start
        #: Whether the empty line between header and body was present (absent: header only).
        self._separator = separator

    @classmethod
    def parse(cls, data: bytes) -> RawMessage:
        """Split ``data`` at its first empty line; raise MalformedMessage on a bad header block."""
        data = bytes(data)  # no copy for bytes; freezes a bytearray the caller might reuse
        if data.startswith(CRLF):
            return cls((), data, 2)
        cut = data.find(b"\r\n\r\n")
        if cut < 0:
            return cls(parse_fields(data), data, len(data), separator=False)
        return cls(parse_fields(data[: cut + 2]), data, cut + 4)

    @property
    def fields(self) -> tuple[Field, ...]:
        """Header fields in order, as ``(lowercased name, raw bytes)``."""
        return self._fields

    @property
    def body(self) -> memoryview:
        """The body, exactly as received (a view: never modified)."""
        return memoryview(self._data)[self._start :]

    def get(self, name: str) -> str | None:
        """The first value of field ``name`` (unfolded, stripped), or None."""
        name = name.lower()
        for field_name, raw in self._fields:
            if field_name == name:
                return field_value(raw)
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of field ``name``, in order."""
        name = name.lower()
        return [field_value(raw) for field_name, raw in self._fields if field_name == name]

    def count(self, name: str) -> int:
        """How many ``name`` fields the header holds."""
        name = name.lower()
        return sum(1 for field_name, _ in self._fields if field_name == name)

    def without(self, names: set[str]) -> RawMessage:
        """A copy without any field whose (lowercased) name is in ``names``; same body."""
        lowered = {name.lower() for name in names}
        kept = [field for field in self._fields if field[0] not in lowered]
        if len(kept) == len(self._fields):
            return self
        return RawMessage(kept, self._data, self._start, self._separator)

    def with_prepended(self, fields: list[bytes]) -> RawMessage:
        """A copy with ``fields`` (CRLF-terminated raw fields) put at the top; same body."""
        added: list[Field] = []
        for raw in fields:
            parsed = parse_fields(raw)
            if len(parsed) != 1 or not raw.endswith(CRLF):
                raise MalformedMessage(f"not one CRLF-terminated header field: {raw[:40]!r}")
            added.extend(parsed)
        return RawMessage([*added, *self._fields], self._data, self._start, self._separator)

    def header_bytes(self) -> bytes:
        """The header block, without the empty line that ends it."""
        return b"".join(raw for _, raw in self._fields)

    def to_bytes(self) -> bytes:
        """The whole message; unchanged fields and the body are the bytes received."""
        parts = [raw for _, raw in self._fields]
        if self._separator:
            parts.append(CRLF)
        parts.append(self.body)  # type: ignore[arg-type]  # bytes.join takes any buffer
        return b"".join(parts)

    def same_body(self, other: RawMessage) -> bool:
        """True when ``other`` carries the very same body (cheap when it is a copy of this one)."""
        if self._data is other._data and self._start == other._start:
            return True
        return self.body == other.body

    def __len__(self) -> int:
        """Size in octets of :meth:`to_bytes`."""
        size = sum(len(raw) for _, raw in self._fields) + len(self._data) - self._start
        return size + (2 if self._separator else 0)
