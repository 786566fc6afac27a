"""Per-client rate limits: the token buckets alone, then through the real gateway over SMTP."""

from __future__ import annotations

import logging

import aiosmtplib
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import replies
from gateway.limits import ClientRate, Limited, RateLimiter, RateLimits
from tests.conftest import message, smtp_client
from tests.support.upstream import Upstream

NS = "suppression_gateway"


def test_a_minute_of_burst_then_refusals_that_take_nothing() -> None:
    limits = RateLimits([ClientRate("shop", messages_per_minute=3)], now=0.0)
    admitted = [limits.admit("shop", new_message=True, now=0.0) for _ in range(5)]
    assert admitted == [None, None, None, Limited.MESSAGES, Limited.MESSAGES]
    # 3 per minute: one token every 20 s; refusals took nothing, so one is back at 20 s.
    assert limits.admit("shop", new_message=True, now=19.9) is Limited.MESSAGES
    assert limits.admit("shop", new_message=True, now=20.0) is None
    assert limits.admit("shop", new_message=True, now=20.0) is Limited.MESSAGES
    # Idle for an hour: the bucket holds one minute's worth, no more.
    admitted = [limits.admit("shop", new_message=True, now=3600.0) for _ in range(4)]
    assert admitted == [None, None, None, Limited.MESSAGES]


def test_a_limiter_over_a_longer_period() -> None:
    """One per 24 h per key (confirmation mails per address): refused until a whole period
    has passed, other keys unaffected, and a key idle for a period forgotten when full."""
    now = [0.0]
    day = 24 * 3600.0
    limiter = RateLimiter(1, period=day, max_clients=2, clock=lambda: now[0])
    assert limiter.take("a") == 0
    assert limiter.take("a") == day
    now[0] = day - 1
    assert 0 < limiter.take("a") <= 2 and limiter.take("b") == 0
    now[0] = day + 1
    assert limiter.take("a") == 0
    now[0] = 3 * day
    assert limiter.take("c") == 0 and len(limiter) == 1


def test_further_recipients_of_a_message_take_no_message_token() -> None:
    limits = RateLimits([ClientRate("shop", messages_per_minute=1)], now=0.0)
    assert limits.admit("shop", new_message=True, now=0.0) is None
    assert all(limits.admit("shop", new_message=False, now=0.0) is None for _ in range(50))
    assert limits.admit("shop", new_message=True, now=0.0) is Limited.MESSAGES


def test_both_tokens_or_neither() -> None:
    """A recipient refused for the recipient limit does not spend the message token."""
    limits = RateLimits([ClientRate("shop", 2, recipients_per_minute=60)], now=0.0)
    assert limits.admit("shop", new_message=True, now=0.0) is None
    assert all(limits.admit("shop", new_message=False, now=0.0) is None for _ in range(59))
    for _ in range(5):
        assert limits.admit("shop", new_message=True, now=0.0) is Limited.RECIPIENTS
    # One recipient token is back after 1 s; the second message token was never spent.
    assert limits.admit("shop", new_message=True, now=1.0) is None
    assert limits.admit("shop", new_message=True, now=1.0) is Limited.MESSAGES


def test_clients_without_limits_and_unknown_clients_pass() -> None:
    limits = RateLimits([ClientRate("free"), ClientRate("shop", 1, 1)], now=0.0)
    for name in ("free", "nobody"):
        assert all(limits.admit(name, new_message=True, now=0.0) is None for _ in range(1000))
    assert limits.admit("shop", new_message=True, now=0.0) is None
    assert limits.admit("shop", new_message=True, now=0.0) is not None


@given(
    limit=st.integers(1, 50),
    gaps=st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=300),
)
def test_never_more_than_a_minute_of_burst_plus_the_refill(limit: int, gaps: list[float]) -> None:
    """Over any run of attempts, what is admitted by time t is at most limit + limit * t / 60,
    and an attempt after a pause of 60 / limit seconds is always admitted."""
    limits = RateLimits([ClientRate("shop", messages_per_minute=limit)], now=0.0)
    now, admitted = 0.0, 0
    for gap in gaps:
        now += gap
        result = limits.admit("shop", new_message=True, now=now)
        admitted += result is None
        assert admitted <= limit + limit * now / 60 + 1e-9
        if gap >= 60 / limit:
            assert result is None


# -- through the gateway -------------------------------------------------------------------


def rejections(gw: object, code: str) -> float | None:
    registry = gw.metrics.registry  # type: ignore[attr-defined]
    value: float | None = registry.get_sample_value(f"{NS}_smtp_rejections_total", {"code": code})
    return value


def deferred(gw: object, limit: str) -> float | None:
    registry = gw.metrics.registry  # type: ignore[attr-defined]
    labels = {"client": "platform", "limit": limit}
    value: float | None = registry.get_sample_value(f"{NS}_rate_limited_total", labels)
    return value


def limited_client(**limits: int) -> dict[str, object]:
    return {"clients": [{"name": "platform", "networks": ["127.0.0.0/8"], **limits}]}


async def test_message_rate_over_smtp(start_gateway, upstream: Upstream) -> None:
    """Past messages_per_minute, RCPT gets 450 4.7.1 and nothing is relayed; earlier mail
    went through. RSET does not refund the message."""
    async with start_gateway(smtp=limited_client(messages_per_minute=2)) as gw:
        async with smtp_client(gw) as client:
            for n in range(2):
                await client.sendmail("news@shop.example", [f"u{n}@example.com"], message())
            await client.mail("news@shop.example")
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await client.rcpt("late@example.com")
            assert str(refused.value.code) + " " + refused.value.message == str(
                replies.MESSAGE_RATE_EXCEEDED
            )
            await client.rset()
        assert rejections(gw, "rate") == 1.0
        assert (deferred(gw, "messages"), deferred(gw, "recipients")) == (1.0, 0.0)
    assert sorted(m.rcpt_tos[0] for m in upstream.received) == [
        "u0@example.com",
        "u1@example.com",
    ]


async def test_recipient_rate_over_smtp(
    start_gateway, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """Past recipients_per_minute, the extra recipients get 450 4.7.1 (the client keeps them
    for later) and the message goes to those accepted. One log line per episode, not one per
    refusal (a client hammering away cannot flood the log)."""
    caplog.set_level(logging.INFO, logger="gateway.smtp.handler")
    async with start_gateway(smtp=limited_client(recipients_per_minute=3)) as gw:
        async with smtp_client(gw) as client:
            await client.mail("news@shop.example")
            for n in range(3):
                await client.rcpt(f"r{n}@example.com")
            for n in range(3, 5):
                with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                    await client.rcpt(f"r{n}@example.com")
                assert (refused.value.code, refused.value.message[:5]) == (450, "4.7.1")
            await client.data(message())
        assert rejections(gw, "rate") == 2.0
        assert (deferred(gw, "messages"), deferred(gw, "recipients")) == (0.0, 2.0)
    assert upstream.received[0].rcpt_tos == [f"r{n}@example.com" for n in range(3)]
    over = [r.getMessage() for r in caplog.records if "per minute" in r.getMessage()]
    assert over == ["client platform over its recipients per minute"]


async def test_other_clients_are_not_limited(start_gateway, upstream: Upstream) -> None:
    """The limit belongs to one client; relay-denied peers are refused before it counts."""
    smtp = {
        "clients": [
            {"name": "limited", "networks": ["10.0.0.0/8"], "messages_per_minute": 1},
            {"name": "platform", "networks": ["127.0.0.0/8"]},
        ]
    }
    async with start_gateway(smtp=smtp) as gw, smtp_client(gw) as client:
        for n in range(5):
            await client.sendmail("news@shop.example", [f"u{n}@example.com"], message())
        assert rejections(gw, "rate") == 0.0
    assert len(upstream.received) == 5
