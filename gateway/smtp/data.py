"""DATA as it arrives: where it ends, what is wrong with it, and by when it must end.

Pure (no I/O; the clock is passed in), so the listener only reads, writes and arms its timer.
:class:`DataBuffer` is property-tested: any split of the same bytes into reads gives the same
result as one read.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import replies
from gateway.replies import Reply
from gateway.smtp.syntax import has_bare_cr_or_lf

#: Only CRLF . CRLF ends DATA (RFC 5321 §4.1.1.4); other forms are smuggling attempts.
TERMINATOR = b"\r\n.\r\n"


class DataBuffer:
    """Collects DATA up to the terminator, in memory bounded once the message is refused.

    Size and line length are checked as bytes arrive: once either is exceeded only the last four
    bytes are kept (enough to find a terminator split across reads), so a huge message or an
    endless line costs nothing to read to its end. Precedence, as before it was streamed: too
    big, then NUL, bare CR or LF, line too long; a line measured up to any CR or LF, so content
    with bare line endings is refused as such, not as one long line.
    """

    def __init__(self, size_limit: int, line_limit: int) -> None:
        self._size_limit = size_limit  # 0: none
        self._line_limit = line_limit
        self._buffer = bytearray(b"\r\n")  # the CRLF ending the DATA line: "." alone ends DATA
        self._line_start = 0  # where the line being received starts in the buffer
        self._dropped = 0  # octets dropped from the front once the message was refused
        self._line_too_long = False
        self._too_big = False
        self._content: bytes = b""
        self.problem: Reply | None = None
        #: Octets received so far (for the minimum rate).
        self.received = 0
        #: What followed the terminator in the last read: pipelined commands (RFC 2920).
        self.leftover = b""

    def feed(self, chunk: bytes) -> bool:
        """Take the next read; True once the terminator has arrived."""
        self.received += len(chunk)
        buffer = self._buffer
        start = max(0, len(buffer) - len(TERMINATOR) + 1)
        buffer += chunk
        end = buffer.find(TERMINATOR, start)
        stop = len(buffer) if end < 0 else end + 2  # up to the CRLF ending the last line
        refused = self._line_too_long or self._too_big
        if not refused and self._longest_line(stop) > self._line_limit:
            self._line_too_long = True
        if self._size_limit and self._dropped + stop - 2 > self._size_limit:
            self._too_big = True
        if end >= 0:
            self.leftover = bytes(buffer[end + len(TERMINATOR) :])
            self._finish(bytes(buffer[: end + 2]))
            return True
        if self._line_too_long or self._too_big:
            keep = len(TERMINATOR) - 1
            self._dropped += len(buffer) - keep
            del buffer[:-keep]
        return False

    def _longest_line(self, stop: int) -> int:
        """The longest run without CR or LF among the lines completed or begun before ``stop``."""
        region = bytes(self._buffer[self._line_start : stop])
        runs = region.replace(b"\r", b"\n").split(b"\n")
        self._line_start = stop - len(runs[-1])
        return max(map(len, runs))

    def _finish(self, raw: bytes) -> None:
        if self._too_big:
            self.problem = replies.MESSAGE_TOO_BIG
        elif self._line_too_long:
            self.problem = replies.LINE_TOO_LONG
        elif b"\x00" in raw:
            self.problem = replies.NUL_IN_CONTENT
        elif has_bare_cr_or_lf(raw):
            self.problem = replies.BAD_LINE_ENDINGS
        else:
            # RFC 5321 §4.5.2: remove the leading dot of every line that has one.
            self._content = raw.replace(b"\r\n.", b"\r\n")[2:]

    @property
    def content(self) -> bytes:
        """The unstuffed message (CRLF line endings); empty when refused or not yet ended."""
        return self._content


@dataclass(frozen=True, slots=True)
class DataClock:
    """By when DATA must have ended; the earliest of three limits wins:

    * ``idle`` seconds without a byte (``command_timeout``, RFC 5321 §4.5.3.2.5): ``421 4.4.2``;
    * ``deadline`` seconds after the ``354``, whatever the rate: ``421 4.7.0``;
    * a minimum rate: after ``t`` seconds the client must have sent ``min_rate * (t - idle)``
      octets, i.e. it gets ``idle`` seconds of grace in all plus one second per ``min_rate``
      octets sent (Postfix's ``smtpd_min_data_rate``): ``421 4.7.0``. ``min_rate`` 0: none.
    """

    started: float
    idle: float
    deadline: float
    min_rate: int

    def expiry(self, now: float, received: int) -> tuple[float, Reply]:
        """The moment DATA is cut off unless more arrives, and the reply it then gets."""
        limits = [
            (now + self.idle, replies.IDLE_TIMEOUT),
            (self.started + self.deadline, replies.DATA_TOO_LONG),
        ]
        if self.min_rate:
            credit = self.idle + received / self.min_rate
            limits.append((self.started + credit, replies.DATA_TOO_SLOW))
        return min(limits, key=lambda limit: limit[0])
