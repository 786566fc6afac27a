"""Reading an import file: its lines, from bytes with bounded memory and checked rather than
guessed at (:class:`FileLines`), and the raw records in them, CSV or JSON Lines
(:func:`records`).

A line that is not UTF-8, or longer than :data:`MAX_LINE` bytes, is recorded in
:attr:`FileLines.problems` under its line number, and :func:`records`
reports the record it belongs to as a row error: importing it with replacement characters
would suppress a different address than the file holds, and reading an overlong line whole
would let one line of a hostile file take all the memory. The parser still sees a line in its
place, so the numbering and the CSV quoting of the rest stay right: the undecodable line with
its bad bytes replaced, or for an overlong line, a quote if it held an odd number of them.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

#: The formats of an import file.
DataFormat = Literal["csv", "jsonl"]
#: Longest CSV field, in characters (Python's csv module refuses longer ones).
MAX_FIELD = 64 * 1024
#: Longest line read, in bytes. A longer line is skipped in :data:`_CHUNK` pieces, never held.
MAX_LINE = 1 << 20
_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class RowError:
    """A row that cannot be imported; the rest of the file still is."""

    line: int
    message: str


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


def column_key(name: str) -> str:
    """A column or JSON key as the formats name it: no spaces, dashes, underscores or BOM,
    lower case (``"Email Address"`` and ``email_address`` are both ``emailaddress``)."""
    return re.sub(r"[\s_\-\ufeff]", "", name).lower()


class NotJsonLines(ValueError):
    """The file is one JSON document (an array, or an object holding one), not JSON Lines.

    Raised at its first record, before anything is imported: read record by record, such a
    file would import whichever of its lines happen to be whole objects and fail the rest.
    """

    def __init__(self, line: int) -> None:
        super().__init__(
            f"line {line}: this is one JSON document, not JSON Lines (one object per line);"
            " convert it first, e.g. for the AWS CLI's output:"
            " jq -c '.SuppressedDestinationSummaries[]' FILE > FILE.jsonl"
        )


def _one_document(value: Any) -> bool:
    """A whole document on one line: an array, or an object holding an array of objects."""
    if isinstance(value, list):
        return True
    return isinstance(value, dict) and any(
        isinstance(v, list) and v and all(isinstance(i, dict) for i in v) for v in value.values()
    )


def records(
    lines: Iterable[str], data: DataFormat, problems: Mapping[int, str] | None = None
) -> Iterator[tuple[int, dict[str, Any]] | RowError]:
    """Raw records with their line numbers: a CSV with a header row, or JSON Lines.

    ``problems`` names lines that could not be read (:class:`FileLines`): the record that
    holds one becomes a row error."""
    bad: Mapping[int, str] = {} if problems is None else problems  # filled as lines are read
    if data == "jsonl":
        leading = True  # the first record tells JSON Lines from one document
        for number, text in enumerate(lines, 1):
            if number in bad:
                yield RowError(number, bad[number])
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except (ValueError, RecursionError) as exc:
                if leading and text.rstrip().endswith(("{", "[")):  # opens a multi-line value
                    raise NotJsonLines(number) from None
                yield RowError(number, f"not JSON: {str(exc)[:100]}")
                continue
            if leading and _one_document(value):
                raise NotJsonLines(number)
            leading = False
            if not isinstance(value, dict):
                yield RowError(number, "not a JSON object")
                continue
            yield number, {column_key(k): v for k, v in value.items()}
        return
    csv.field_size_limit(MAX_FIELD)
    reader = csv.reader(lines)
    try:
        header = [column_key(h) for h in next(reader)]
    except StopIteration:
        return
    except csv.Error as exc:
        yield RowError(1, f"bad CSV header: {exc}")
        return
    if 1 in bad:
        yield RowError(1, f"bad CSV header: {bad[1]}")
        return
    last = reader.line_num
    while True:
        first = last + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            last = reader.line_num
            yield RowError(last, f"bad CSV: {exc}")
            continue
        last = reader.line_num
        unread = [n for n in range(first, last + 1) if n in bad] if bad else None
        if unread:
            yield RowError(unread[0], bad[unread[0]])
            continue
        if not any(cells):
            continue
        yield last, dict(zip(header, cells, strict=False))
