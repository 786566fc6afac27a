"""The operator's mail files, read one message at a time in bounded memory: a single message,
a Maildir (``cur/`` and ``new/``, read-only: nothing is moved or flagged) or an mbox.

Only the first ``limit`` octets of each message are kept (the report parser reads no more; a
returned original is cut there, its headers kept), so a huge message costs no more memory than
a small one. These are blocking reads for a one-shot command or a benchmark, not for a server's
event loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

#: A message as read: where it came from (a path, or ``mbox:N``) and its first octets.
Message = tuple[str, bytes]
_CHUNK = 64 * 1024


def one_file(path: Path, limit: int) -> Iterator[Message]:
    """A single message file."""
    with path.open("rb") as handle:
        yield str(path), handle.read(limit)


def maildir(path: Path, limit: int) -> Iterator[Message]:
    """Every message of a Maildir's ``new/`` and ``cur/``, in name order, dot files skipped."""
    folders = [path / "new", path / "cur"]
    if not any(folder.is_dir() for folder in folders):
        raise NotADirectoryError(f"{path} is not a Maildir (no new/ or cur/)")
    for folder in folders:
        if not folder.is_dir():
            continue
        names = sorted(e.name for e in os.scandir(folder) if e.is_file() and e.name[0] != ".")
        for name in names:
            try:
                with (folder / name).open("rb") as handle:
                    yield str(folder / name), handle.read(limit)
            except FileNotFoundError:  # delivered elsewhere while we read: not ours to miss
                continue


def mbox(path: Path, limit: int) -> Iterator[Message]:
    """Every message of an mbox file: each starts at a ``From `` line (after a blank line or
    at the start); ``>From `` quoting is undone (mboxrd), the separator line dropped."""
    with path.open("rb") as handle:
        yield from _mbox_messages(handle, limit)


def _mbox_messages(handle: BinaryIO, limit: int) -> Iterator[Message]:
    count, size = 0, 0
    kept: list[bytes] = []
    started, previous_blank, line_start = False, True, True
    # Pieces of at most _CHUNK octets: a line without end costs no more memory than a short one.
    for piece in iter(lambda: handle.readline(_CHUNK), b""):
        starts_line, line_start = line_start, piece.endswith(b"\n")
        if starts_line and previous_blank and piece.startswith(b"From "):
            if started:
                count += 1
                yield f"mbox:{count}", _finish(kept)
            kept, size, started, previous_blank = [], 0, True, False
            continue
        previous_blank = starts_line and piece in (b"\n", b"\r\n")
        if not started:
            continue
        if starts_line and piece.startswith(b">") and piece.lstrip(b">").startswith(b"From "):
            piece = piece[1:]
        if size < limit:
            kept.append(piece[: limit - size])
            size += len(kept[-1])
    if started:
        yield f"mbox:{count + 1}", _finish(kept)


def _finish(lines: list[bytes]) -> bytes:
    """A message without the blank line that separates it from the next one."""
    data = b"".join(lines)
    if data.endswith(b"\n\n"):
        return data[:-1]
    if data.endswith(b"\r\n\r\n"):
        return data[:-2]
    return data
