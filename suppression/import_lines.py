"""The lines of an import file, read from bytes with bounded memory and checked, not guessed at.

A line that is not UTF-8, or longer than :data:`MAX_LINE` bytes, is recorded in
:attr:`FileLines.problems` under its line number, and :func:`suppression.importers.records`
reports the record it belongs to as a row error: importing it with replacement characters
would suppress a different address than the file holds, and reading an overlong line whole
would let one line of a hostile file take all the memory. The parser still sees a line in its
place, so the numbering and the CSV quoting of the rest stay right: the undecodable line with
its bad bytes replaced, or for an overlong line, a quote if it held an odd number of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

#: Longest line read, in bytes. A longer line is skipped in :data:`_CHUNK` pieces, never held.
MAX_LINE = 1 << 20
_CHUNK = 1 << 16


class FileLines:
    """Iterate decoded lines (``\\n`` kept); :attr:`read` counts the bytes read so far."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.read = 0
        #: Line number -> why the line was not read.
        self.problems: dict[int, str] = {}

    def __iter__(self) -> Iterator[str]:
        readline = self._handle.readline
        number = 0
        encoding = "utf-8-sig"  # a byte-order mark is dropped from the first line only
        while raw := readline(MAX_LINE + 1):
            number += 1
            self.read += len(raw)
            if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                quotes = raw.count(b'"')
                while raw and not raw.endswith(b"\n"):
                    raw = readline(_CHUNK)
                    self.read += len(raw)
                    quotes += raw.count(b'"')
                self.problems[number] = f"line longer than {MAX_LINE} bytes"
                yield '"' * (quotes % 2) + "\n"  # CSV quoting stays balanced
                continue
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as exc:
                where = f"byte 0x{raw[exc.start]:02x} at column {exc.start + 1}"
                self.problems[number] = f"not UTF-8 ({where})"
                text = raw.decode(encoding, errors="replace")  # its structure, for the parser
            encoding = "utf-8"
            yield text
