"""DATA as it arrives (gateway.smtp.data): the same bytes give the same result however the reads
split them, a refused message is read to its end in bounded memory, and the three limits on
DATA's duration."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import replies
from gateway.smtp.data import DataBuffer, DataClock

PIECES = st.sampled_from(
    [b"a", b"x" * 40, b"\r\n", b"\r", b"\n", b".", b"\r\n.", b"\x00", b"y" * 300, b"\r\n.\r\n"]
)


def read_whole(data: bytes, size: int = 2000, line: int = 100) -> DataBuffer | None:
    """Feed ``data`` at once; the buffer if it ended."""
    buffer = DataBuffer(size, line)
    return buffer if buffer.feed(data) else None


def read_split(
    data: bytes, cuts: list[int], size: int = 2000, line: int = 100
) -> DataBuffer | None:
    """Feed ``data`` split at ``cuts``, stopping where DATA ends; the buffer if it ended."""
    buffer = DataBuffer(size, line)
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for start, stop in itertools.pairwise(edges):
        if buffer.feed(data[start:stop]):
            buffer.leftover += data[stop:]
            return buffer
    return None


@settings(max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=40).map(b"".join), st.lists(st.integers(0, 4000), max_size=12))
def test_any_split_of_the_reads_gives_the_same_result(data: bytes, cuts: list[int]) -> None:
    """Content, refusal and leftover do not depend on where the reads were cut."""
    whole, split = read_whole(data), read_split(data, cuts)
    assert (whole is None) == (split is None)
    if whole is not None and split is not None:
        assert (split.content, split.problem, split.leftover) == (
            whole.content,
            whole.problem,
            whole.leftover,
        )


def test_an_endless_line_is_refused_in_bounded_memory() -> None:
    """A line that never ends is refused as it arrives; what is kept stays a few octets."""
    buffer = DataBuffer(0, 998)
    for _ in range(200):  # 12.8 MiB without a line ending
        assert not buffer.feed(b"z" * 65536)
        assert len(buffer._buffer) < 65536 + 8
    assert buffer.feed(b"\r\n.\r\nQUIT\r\n")
    assert (buffer.content, buffer.problem, buffer.leftover) == (
        b"",
        replies.LINE_TOO_LONG,
        b"QUIT\r\n",
    )


def test_a_line_split_between_reads_at_its_crlf_is_not_too_long() -> None:
    """A line of exactly the limit whose CR and LF arrive in different reads passes."""
    buffer = DataBuffer(0, 10)
    assert not buffer.feed(b"0123456789\r")
    assert buffer.feed(b"\n.\r\n")
    assert (buffer.content, buffer.problem) == (b"0123456789\r\n", None)


def test_size_wins_over_line_length_and_content_is_unstuffed() -> None:
    """Too big beats a long line; an accepted message loses its transparency dots."""
    assert read_whole(b"x" * 3000 + b"\r\n.\r\n").problem == replies.MESSAGE_TOO_BIG  # type: ignore[union-attr]
    ok = read_whole(b"a\r\n..b\r\n.\r\n")
    assert ok is not None and (ok.content, ok.problem) == (b"a\r\n.b\r\n", None)
    assert read_whole(b"a\nb\r\n.\r\n").problem == replies.BAD_LINE_ENDINGS  # type: ignore[union-attr]


CLOCK = DataClock(started=100.0, idle=10.0, deadline=60.0, min_rate=500)


@pytest.mark.parametrize(
    ("now", "received", "expected"),
    [
        (100.0, 0, (110.0, replies.IDLE_TIMEOUT)),  # silence, then the rate's grace: tie
        (105.0, 0, (110.0, replies.DATA_TOO_SLOW)),  # nothing sent: cut when the grace ends
        (105.0, 100_000, (115.0, replies.IDLE_TIMEOUT)),  # a fast client: only silence cuts it
        (108.0, 2_000, (114.0, replies.DATA_TOO_SLOW)),  # 2 kB earned 4 s beyond the grace
        (155.0, 10_000_000, (160.0, replies.DATA_TOO_LONG)),  # whatever the rate
    ],
)
def test_data_clock_takes_the_earliest_limit(
    now: float, received: int, expected: tuple[float, replies.Reply]
) -> None:
    """Idle time, minimum rate and overall deadline: the earliest wins, with its reply."""
    assert CLOCK.expiry(now, received) == expected


def test_no_minimum_rate_leaves_idle_and_deadline() -> None:
    """data_min_rate = 0 turns the rate off."""
    clock = DataClock(started=0.0, idle=10.0, deadline=60.0, min_rate=0)
    assert clock.expiry(55.0, 0) == (60.0, replies.DATA_TOO_LONG)
