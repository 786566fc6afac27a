"""The policy in the SMTP path: only allowed recipients reach the relay, each marketing copy is
personalised, and the decisions are counted and refused with the right codes."""

from __future__ import annotations

import aiosmtplib
import pytest

from gateway import replies
from gateway.app import Gateway
from suppression.model import Audience, Scope, SuppressionReason
from tests.conftest import Clock, message, smtp_client
from tests.support.store_helpers import contact, opt_in, opt_out, suppress
from tests.support.upstream import Upstream


async def test_marketing_reaches_exactly_the_allowed_recipients(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """Five recipients in five states: only the consenting and the B2B contact are relayed."""
    now = clock.now
    await opt_in(gateway, "consenting@example.com", "newsletter", now)
    await opt_in(gateway, "withdrawn@example.com", "newsletter", now)
    await opt_out(gateway, "withdrawn@example.com", "newsletter", now)
    await contact(gateway, "buyer@corp.example", now, audience=Audience.B2B)
    await suppress(gateway, now, address="bounced@example.com")
    recipients = [
        "consenting@example.com",
        "unknown@example.com",
        "withdrawn@example.com",
        "buyer@corp.example",
        "bounced@example.com",
    ]
    async with smtp_client(gateway) as client:
        errors, reply = await client.sendmail(
            "news@shop.example", recipients, message(category="marketing", purpose="newsletter")
        )
    assert errors == {} and reply.startswith("2.0.0")
    relayed = sorted(r for got in upstream.received for r in got.rcpt_tos)
    assert relayed == ["buyer@corp.example", "consenting@example.com"]
    assert all(len(got.rcpt_tos) == 1 for got in upstream.received)  # one copy each
    for got in upstream.received:
        assert (
            got.content.count(b"\r\nList-Unsubscribe: ")
            + got.content.startswith(b"List-Unsubscribe: ")
            == 1
        )
        assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in got.content
        assert b"X-Gateway-" not in got.content
    metric = gateway.metrics.registry.get_sample_value
    labels = {"client": "platform", "category": "marketing", "purpose": "newsletter"}
    for decision, reason, count in [
        ("allow", "consent", 1),
        ("allow", "legitimate-interest", 1),
        ("block", "no-consent", 1),
        ("block", "opted-out", 1),
        ("block", "bounced", 1),
    ]:
        sample = metric(
            "suppression_gateway_recipients_total",
            {**labels, "decision": decision, "reason": reason},
        )
        assert sample == count, (decision, reason)


async def test_all_blocked_is_refused_at_data(gateway: Gateway, upstream: Upstream) -> None:
    """When no recipient may be mailed, DATA gets 550 5.7.1 and nothing is relayed."""
    async with smtp_client(gateway) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as failed:
            await client.sendmail(
                "news@shop.example",
                ["nobody@example.com"],
                message(category="marketing", purpose="newsletter"),
            )
    assert (failed.value.code, failed.value.message[:5]) == (550, "5.7.1")
    assert upstream.received == []


async def test_transactional_passes_without_consent_but_not_a_bounce(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """Transactional mail needs no consent; a hard bounce still suppresses it."""
    await suppress(gateway, clock.now, address="gone@example.com")
    await suppress(
        gateway,
        clock.now,
        address="nonews@example.com",
        reason=SuppressionReason.UNSUBSCRIBE,
        scope=Scope.MARKETING,
    )
    async with smtp_client(gateway) as client:
        await client.sendmail(
            "shop@shop.example",
            ["new@example.com", "gone@example.com", "nonews@example.com"],
            message(category="transactional"),
        )
    assert upstream.received[0].rcpt_tos == ["new@example.com", "nonews@example.com"]
    assert b"List-Unsubscribe" not in upstream.received[0].content


async def test_domain_suppression_covers_every_address(
    gateway: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """A domain suppression blocks every address of that domain, case-insensitively."""
    await suppress(gateway, clock.now, domain="blocked.example", reason=SuppressionReason.MANUAL)
    async with smtp_client(gateway) as client:
        await client.sendmail(
            "shop@shop.example",
            ["a@Blocked.Example", "b@ok.example"],
            message(category="transactional"),
        )
    assert upstream.received[0].rcpt_tos == ["b@ok.example"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"category": "bulk"}, "Unknown category"), ({"purpose": "lottery"}, "Unknown purpose")],
)
async def test_unknown_category_or_purpose_is_refused(
    gateway: Gateway, upstream: Upstream, headers: dict[str, str], expected: str
) -> None:
    """An unknown category or purpose gets 550 5.7.1 naming it."""
    content = message(category=headers.get("category", "marketing"), purpose=headers.get("purpose"))
    async with smtp_client(gateway) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as failed:
            await client.sendmail("news@shop.example", ["a@example.com"], content)
    assert failed.value.code == 550 and expected in failed.value.message
    assert upstream.received == []


async def test_monitor_mode_blocks_nothing_but_counts(start_gateway, upstream: Upstream) -> None:
    """In monitor mode a would-be block is relayed and counted as would_block."""
    async with start_gateway(policy={"mode": "monitor"}) as gw:
        async with smtp_client(gw) as client:
            await client.sendmail(
                "news@shop.example",
                ["nobody@example.com"],
                message(category="marketing", purpose="newsletter"),
            )
        sample = gw.metrics.registry.get_sample_value(
            "suppression_gateway_recipients_total",
            {
                "client": "platform",
                "category": "marketing",
                "purpose": "newsletter",
                "decision": "would_block",
                "reason": "no-consent",
            },
        )
    assert sample == 1
    assert [got.rcpt_tos for got in upstream.received] == [["nobody@example.com"]]


async def test_rcpt_time_refusal_for_clients_without_headers(
    start_gateway, upstream: Upstream, clock: Clock
) -> None:
    """A client whose mail carries no classifying headers gets a per-recipient 550 at RCPT."""
    clients = [
        {
            "name": "platform",
            "networks": ["127.0.0.0/8"],
            "default_category": "marketing",
            "default_purpose": "newsletter",
            "classifying_headers": False,
        }
    ]
    async with start_gateway(smtp={"clients": clients}) as gw:
        await opt_in(gw, "yes@example.com", "newsletter", clock.now)
        async with smtp_client(gw) as client:
            await client.mail("news@shop.example")
            await client.rcpt("yes@example.com")
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await client.rcpt("no@example.com")
            assert (refused.value.code, refused.value.message[:5]) == (550, "5.7.1")
            assert "no-consent" in refused.value.message
            # Headers cannot widen what RCPT decided: transactional here is ignored.
            await client.data(message(category="transactional"))
    assert [got.rcpt_tos for got in upstream.received] == [["yes@example.com"]]
    assert b"List-Unsubscribe-Post" in upstream.received[0].content


async def test_store_failure_tempfails_marketing(start_gateway, upstream: Upstream) -> None:
    """While the store cannot answer, marketing mail gets 451 4.3.0, never a pass."""
    async with start_gateway() as gw:
        await gw.store.close()
        async with smtp_client(gw) as client:
            with pytest.raises(aiosmtplib.SMTPDataError) as failed:
                await client.sendmail(
                    "news@shop.example",
                    ["a@example.com"],
                    message(category="marketing", purpose="newsletter"),
                )
    assert str(replies.STORE_UNAVAILABLE).startswith(
        f"{failed.value.code} {failed.value.message[:5]}"
    )
    assert upstream.received == []


async def test_transaction_log_hashes_addresses(
    gateway: Gateway, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """One log record per transaction, naming each decision by keyed hash, never the address."""
    caplog.set_level("INFO", logger="gateway.transaction")
    async with smtp_client(gateway) as client:
        with pytest.raises(aiosmtplib.SMTPDataError):
            await client.sendmail(
                "news@shop.example",
                ["secret.person@example.com", "other@example.com"],
                message(category="marketing", purpose="newsletter"),
            )
    (record,) = [r for r in caplog.records if r.name == "gateway.transaction"]
    event = record.event  # type: ignore[attr-defined]
    assert event["outcome"] == "rejected" and event["category"] == "marketing"
    assert [d["reason"] for d in event["decisions"]] == ["no-consent", "no-consent"]
    assert event["decisions"][0]["rcpt"] == gateway.identities.of("secret.person@example.com")
    assert "secret.person" not in repr(event)
    assert len(event["queue_id"]) == 12


async def test_accepted_message_log_has_queue_id_and_relay_latency(
    gateway: Gateway, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    """A relayed message's log line carries its queue id (also in the 250) and relay latency."""
    caplog.set_level("INFO", logger="gateway.transaction")
    async with smtp_client(gateway) as client:
        _, reply = await client.sendmail("shop@shop.example", ["q@example.com"], message())
    (record,) = [r for r in caplog.records if r.name == "gateway.transaction"]
    event = record.event  # type: ignore[attr-defined]
    assert event["outcome"] == "relayed" and event["relay_ms"] >= 0
    assert f"queue id {event['queue_id']}" in reply
    assert event["relay"] and event["client"] == "platform"


@pytest.mark.parametrize(("setting", "relayed"), [("tempfail", False), ("allow", True)])
async def test_store_failure_and_transactional_mail(
    start_gateway, upstream: Upstream, setting: str, relayed: bool
) -> None:
    """While the store is down, transactional mail follows [policy] on_store_error."""
    async with start_gateway(policy={"on_store_error": setting}) as gw:
        await gw.store.close()
        async with smtp_client(gw) as client:
            if relayed:
                errors, _ = await client.sendmail(
                    "shop@shop.example", ["a@example.com"], message(category="transactional")
                )
                assert errors == {}
            else:
                with pytest.raises(aiosmtplib.SMTPDataError) as failed:
                    await client.sendmail(
                        "shop@shop.example", ["a@example.com"], message(category="transactional")
                    )
                assert (failed.value.code, failed.value.message[:5]) == (451, "4.3.0")
    assert len(upstream.received) == (1 if relayed else 0)


async def test_store_failure_at_rcpt_tempfails(start_gateway, upstream: Upstream) -> None:
    """For a client decided at RCPT, a store that cannot answer gives 451 4.3.0 at RCPT."""
    clients = [
        {
            "name": "platform",
            "networks": ["127.0.0.0/8"],
            "default_category": "marketing",
            "default_purpose": "newsletter",
            "classifying_headers": False,
        }
    ]
    async with start_gateway(smtp={"clients": clients}) as gw:
        await gw.store.close()
        async with smtp_client(gw) as client:
            await client.mail("news@shop.example")
            with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
                await client.rcpt("anyone@example.com")
    assert (refused.value.code, refused.value.message[:5]) == (451, "4.3.0")
    assert upstream.handler.commands == []
