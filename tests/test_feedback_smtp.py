"""The SMTP-side sources of bounces and complaints, through the real gateway and a recording
upstream: relay refusals at RCPT and DATA (source relay), the return path (b-REF@, source dsn)
and the feedback-loop address (source fbl), with forged, replayed, foreign and expired
references changing nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import aiosmtplib
import pytest

from gateway.app import Gateway
from gateway.feedback.smtp_intake import UNKNOWN_RETURN_PATH
from suppression.model import Category
from suppression.policy import decide
from suppression.return_path import ReturnPathCodec, day_number
from tests.conftest import Clock, GatewayFactory, message, smtp_client
from tests.support import reports
from tests.support.reports import BLOCKED, MAILBOX_FULL, dsn, failure
from tests.support.store_helpers import opt_in
from tests.support.upstream import Upstream
from tests.test_dkim_e2e import dkim_keys  # noqa: F401 (the fixture)
from tests.test_signing import dkimpy_verify

RP = "rp.example.net"
FBL = "fbl@shop.example"
FEEDBACK = {"return_path_domain": RP, "fbl_address": FBL}


@pytest.fixture
async def gw(start_gateway: GatewayFactory) -> AsyncIterator[Gateway]:
    async with start_gateway(feedback=FEEDBACK) as gateway:
        yield gateway


async def verdict(gw: Gateway, clock: Clock, email: str, purpose: str | None = None) -> str:
    """The policy's answer for one recipient now: "allow consent", "block bounced"..."""
    key = gw.identities.key(email)
    facts = (await gw.store.facts([key], clock.now))[key.identity]
    category = Category.MARKETING if purpose else Category.TRANSACTIONAL
    found = gw.settings.policy.catalogue().get(purpose) if purpose else None
    d = decide(category, found, facts, clock.now)
    return f"{d.verdict.value} {d.reason.value}"


async def send(gw: Gateway, to: list[str], **kw: Any) -> tuple[dict[str, Any], str]:
    """Send one message from the platform; the refused recipients and the final reply."""
    async with smtp_client(gw) as client:
        errors, reply = await client.sendmail("news@shop.example", to, message(to=to[0], **kw))
    return errors, reply


async def report(gw: Gateway, rcpt: str, raw: bytes, sender: str = "") -> aiosmtplib.SMTPResponse:
    """Deliver a report as any MTA on the Internet would: no AUTH, from the null sender."""
    host, port = gw.smtp_addresses[0]
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=10) as peer:
        await peer.ehlo(hostname="mx.isp.example")
        await peer.mail(sender)
        await peer.rcpt(rcpt)
        return await peer.data(raw.replace(b"\n", b"\r\n"))


def sample(gw: Gateway, name: str, labels: dict[str, str]) -> float:
    return gw.metrics.registry.get_sample_value(name, labels) or 0.0


# -- relay replies -------------------------------------------------------------------------


async def test_relay_550_5_1_1_at_rcpt_suppresses(
    gw: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """A relay's 550 5.1.1 at RCPT reaches the client and suppresses the recipient for all
    mail: the next message to it is refused by policy and never reaches the relay."""
    upstream.script.rcpt_replies["gone@example.org"] = "550 5.1.1 <gone@example.org>: unknown"
    errors, _ = await send(gw, ["gone@example.org", "ok@example.org"])
    assert errors["gone@example.org"][0] == 550
    assert await verdict(gw, clock, "gone@example.org") == "block bounced"
    assert await verdict(gw, clock, "ok@example.org") == "allow transactional"
    upstream.script.rcpt_replies.clear()
    before = len(upstream.received)
    with pytest.raises(aiosmtplib.SMTPDataError) as refused:
        await send(gw, ["gone@example.org"])
    assert refused.value.code == 550 and len(upstream.received) == before
    labels = {"source": "relay", "class": "hard", "reason": "userunknown"}
    assert sample(gw, "suppression_gateway_feedback_total", labels) == 1
    record = await gw.store.contact_record(gw.identities.of("gone@example.org"))
    (event,) = [e for e in record.ledger if e.kind == "suppression-added"]
    assert event.source == "relay" and event.evidence["status"] == "5.1.1"


async def test_relay_452_4_2_2_three_days_suppresses_until_expiry(
    gw: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """Mailbox full at RCPT on three days within two weeks suppresses the recipient for 30
    days; the same refusal retried on one day counts once."""
    who = "full@example.org"
    upstream.script.rcpt_replies[who] = "452 4.2.2 <full@example.org>: Mailbox full"
    for day in range(3):
        for _ in range(2):  # the platform retries the same day: one soft bounce
            with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
                await send(gw, [who])
        if day < 2:
            assert await verdict(gw, clock, who) == "allow transactional"
            clock.now += timedelta(days=1)
    assert await verdict(gw, clock, who) == "block bounced"
    clock.now += timedelta(days=30)
    assert await verdict(gw, clock, who) == "allow transactional"


async def test_relay_550_5_7_1_never_suppresses(
    gw: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """A block of our own mail (550 5.7.1, block list) is history only: never suppressed."""
    who = "strict@example.org"
    upstream.script.rcpt_replies[who] = (
        "550 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org"
    )
    for _ in range(5):
        clock.now += timedelta(days=1)
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await send(gw, [who])
    assert await verdict(gw, clock, who) == "allow transactional"
    labels = {"source": "relay", "class": "sender", "reason": "blocked"}
    assert sample(gw, "suppression_gateway_feedback_total", labels) == 5


async def test_relay_refusal_at_data_of_one_copy_suppresses_its_recipient(
    gw: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """A hard refusal of a single-recipient copy at DATA names that recipient."""
    await opt_in(gw, "a@example.org", "newsletter", clock.now)
    await opt_in(gw, "b@example.org", "newsletter", clock.now)
    upstream.script.data_replies["b@example.org"] = "550 5.1.1 mailbox unavailable"
    await send(gw, ["a@example.org", "b@example.org"], category="marketing", purpose="newsletter")
    assert await verdict(gw, clock, "b@example.org") == "block bounced"
    assert await verdict(gw, clock, "a@example.org") == "allow transactional"


async def test_a_refusal_at_data_counts_once_the_client_has_its_final_answer(
    gw: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """While another copy is deferred (the client gets 451 and retries), a copy refused at
    DATA is not yet feedback: the retry tries it again, reports it to the sender, and only
    then is it recorded, once."""
    to = ["r1@example.org", "r2@example.org", "r3@example.org"]
    for who in to:
        await opt_in(gw, who, "newsletter", clock.now)
    upstream.script.data_replies.update(
        {"r2@example.org": "451 4.3.0 try later", "r3@example.org": "550 5.1.1 gone"}
    )
    content = message(to=to[0], category="marketing", purpose="newsletter")
    async with smtp_client(gw) as client:
        with pytest.raises(aiosmtplib.SMTPDataError) as deferred:
            await client.sendmail("news@shop.example", to, content)
    assert deferred.value.code == 451
    assert await verdict(gw, clock, "r3@example.org") == "allow transactional"
    del upstream.script.data_replies["r2@example.org"]
    async with smtp_client(gw) as client:
        errors, reply = await client.sendmail("news@shop.example", to, content)
    assert errors == {} and "reported to the sender" in reply
    assert await verdict(gw, clock, "r3@example.org") == "block bounced"
    labels = {"source": "relay", "class": "hard", "reason": "userunknown"}
    assert sample(gw, "suppression_gateway_feedback_total", labels) == 1


# -- the return path -----------------------------------------------------------------------


async def test_each_copy_gets_its_own_return_path(gw: Gateway, upstream: Upstream) -> None:
    """With a return path, every copy (transactional too) goes from b-REF@ the return-path
    domain, a different reference per recipient and none naming the address."""
    await send(gw, ["x@example.org", "y@example.org"])
    senders = {r.rcpt_tos[0]: r.mail_from for r in upstream.received}
    assert set(senders) == {"x@example.org", "y@example.org"}
    assert all(re.fullmatch(rf"b-[a-z2-7]{{29}}@{RP}", s) for s in senders.values())
    assert len(set(senders.values())) == 2 and "example" not in senders["x@example.org"][:31]


async def test_a_dsn_to_the_return_path_suppresses_only_its_references_recipient(
    gw: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """A DSN to b-REF@ records a bounce for the reference's recipient whatever address its
    body names (the victim named there is untouched); the same DSN again changes nothing;
    ``Action: delayed`` and an auto-reply change nothing either; nothing is relayed."""
    await send(gw, ["dead@example.org"])
    return_path = upstream.received[-1].mail_from
    relayed = len(upstream.received)
    forged_body = dsn([failure("victim@example.org")], message_id="<m1@shop.example>")
    delayed = dsn([failure("dead@example.org")], action="delayed", message_id="<m0@x>")
    assert (await report(gw, return_path, delayed)).code == 250
    assert await verdict(gw, clock, "dead@example.org") == "allow transactional"
    reply = await report(gw, return_path, forged_body)
    assert reply.code == 250
    assert await verdict(gw, clock, "dead@example.org") == "block bounced"
    assert await verdict(gw, clock, "victim@example.org") == "allow transactional"
    ledger = await gw.store.ledger_events()
    assert (await report(gw, return_path, forged_body)).code == 250  # replayed
    assert await gw.store.ledger_events() == ledger
    assert sample(gw, "suppression_gateway_feedback_duplicates_total", {"source": "dsn"}) == 1
    auto = b"From: a@b.example\nSubject: Out of office\n\nAway.\n"
    assert (await report(gw, return_path, auto)).code == 250
    unreadable = {"source": "dsn", "why": "not-a-report"}
    assert sample(gw, "suppression_gateway_feedback_unreadable_total", unreadable) == 1
    assert len(upstream.received) == relayed
    record = await gw.store.contact_record(gw.identities.of("dead@example.org"))
    assert [(e.source.value, e.feedback_class) for e in record.feedback] == [("dsn", "hard")]


async def test_forged_and_expired_references_are_refused_at_rcpt(
    gw: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """A made-up, altered or expired reference gets 550 5.1.1 at RCPT (no backscatter), and
    is counted as unattributed; nothing is suppressed."""
    await send(gw, ["who@example.org"])
    good = upstream.received[-1].mail_from
    ref = good[2:].partition("@")[0]
    altered = f"b-{ref[:-1]}{'a' if ref[-1] != 'a' else 'b'}@{RP}"
    codec = ReturnPathCodec(gw_keys(gw), 45)
    expired = f"b-{codec.mint(1, day_number(clock.now) - 46)}@{RP}"
    for rcpt in (f"b-nonsense@{RP}", altered, expired, f"postmaster@{RP}"):
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await report(gw, rcpt, dsn([failure("who@example.org")]))
        assert refused.value.code == 550 and UNKNOWN_RETURN_PATH.text in refused.value.message
    assert await verdict(gw, clock, "who@example.org") == "allow transactional"
    bad = {"source": "dsn", "why": "bad-reference"}
    assert sample(gw, "suppression_gateway_feedback_unattributed_total", bad) == 3
    late = {"source": "dsn", "why": "expired-reference"}
    assert sample(gw, "suppression_gateway_feedback_unattributed_total", late) == 1


def gw_keys(gw: Gateway) -> dict[int, bytes]:
    from gateway import secrets as secrets_file

    path = gw.settings.store.secrets_file or secrets_file.default_path(gw.settings.store.url)
    return secrets_file.read(path).return_path_ring()


async def test_the_return_path_relays_nothing_and_takes_nothing_else(
    gw: Gateway, upstream: Upstream
) -> None:
    """A report transaction takes no other recipient, and an ordinary address in it is
    refused; a report larger than max_report_size gets 552."""
    await send(gw, ["z@example.org"])
    return_path = upstream.received[-1].mail_from
    host, port = gw.smtp_addresses[0]
    async with aiosmtplib.SMTP(hostname=host, port=port, start_tls=False, timeout=10) as peer:
        await peer.ehlo(hostname="mx.isp.example")
        await peer.mail("")
        await peer.rcpt(return_path)
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await peer.rcpt("someone@example.org")
        assert refused.value.code == 452
        await peer.rset()
        await peer.mail("")
        await peer.rcpt(return_path)
        with pytest.raises(aiosmtplib.SMTPDataError) as big:
            await peer.data(b"Subject: x\r\n\r\n" + b"y" * 100 + b"\r\n" * (6 * 1024 * 1024))
        assert big.value.code == 552


# -- the feedback loop ---------------------------------------------------------------------


async def test_marketing_copies_carry_signed_feedback_references(
    start_gateway: GatewayFactory,
    upstream: Upstream,
    clock: Clock,
    dkim_keys: Any,  # noqa: F811 (the fixture)
) -> None:
    """Each marketing copy carries Feedback-ID, CFBL-Address and its own CFBL-Feedback-ID,
    all covered by the DKIM signature; a transactional copy carries none of them."""
    keys, records = dkim_keys
    async with start_gateway(feedback=FEEDBACK, dkim={"keys": keys[:1]}) as gateway:
        await opt_in(gateway, "m@example.org", "newsletter", clock.now)
        await send(gateway, ["m@example.org"], category="marketing", purpose="newsletter")
        await send(gateway, ["t@example.org"])
    marketing, transactional = upstream.received[-2], upstream.received[-1]
    content = marketing.content
    assert b"\r\nFeedback-ID: newsletter:platform:marketing:sgw\r\n" in content
    assert f"\r\nCFBL-Address: {FBL}; report=arf\r\n".encode() in content
    ref = re.search(rb"\r\nCFBL-Feedback-ID: ([a-z2-7]{29})\r\n", content)
    assert ref is not None and marketing.mail_from == f"b-{ref.group(1).decode()}@{RP}"
    signed = re.sub(rb"\s+", b"", re.search(rb"\bh=([^;]+);", content).group(1))  # type: ignore[union-attr]
    for name in (b"feedback-id", b"cfbl-address", b"cfbl-feedback-id"):
        assert name in signed.lower().split(b":")
    assert dkimpy_verify(content, records, 0)
    assert b"CFBL-" not in transactional.content and b"Feedback-ID" not in transactional.content


async def test_an_arf_for_a_sent_copy_blocks_marketing_not_transactional(
    gw: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """An abuse report to the feedback-loop address, carrying back the copy's headers,
    suppresses that recipient's marketing; its transactional mail is still delivered."""
    await opt_in(gw, "fan@example.org", "newsletter", clock.now)
    await send(gw, ["fan@example.org"], category="marketing", purpose="newsletter")
    copy = upstream.received[-1].content.decode()
    header = copy.partition("\r\n\r\n")[0].replace("\r\n", "\n")
    cfbl = re.search(r"\nCFBL-Feedback-ID: (\S+)", header)
    assert cfbl is not None
    raw = reports.arf(None, original_headers=f"CFBL-Feedback-ID: {cfbl.group(1)}\n")
    assert (await report(gw, FBL, raw, sender="fbl@isp.example")).code == 250
    assert await verdict(gw, clock, "fan@example.org", "newsletter") == "block complained"
    assert await verdict(gw, clock, "fan@example.org") == "allow transactional"
    before = len(upstream.received)
    errors, _ = await send(gw, ["fan@example.org"])
    assert errors == {} and len(upstream.received) == before + 1


async def test_reports_without_a_valid_reference_change_nothing(
    gw: Gateway, upstream: Upstream, clock: Clock
) -> None:
    """An ARF naming a victim in Original-Rcpt-To but carrying no reference, or carrying the
    sender's own reference, never suppresses the victim; only the reference's recipient is
    touched."""
    await opt_in(gw, "victim@example.org", "newsletter", clock.now)
    await opt_in(gw, "mallory@example.org", "newsletter", clock.now)
    await send(gw, ["mallory@example.org"], category="marketing", purpose="newsletter")
    mallory_ref = upstream.received[-1].mail_from[2:].partition("@")[0]
    unattributed = reports.arf("victim@example.org")
    assert (await report(gw, FBL, unattributed, sender="x@isp.example")).code == 250
    foreign = reports.arf(
        "victim@example.org",
        message_id="<m2@shop.example>",
        original_headers=f"CFBL-Feedback-ID: {mallory_ref}\n",
    )
    assert (await report(gw, FBL, foreign, sender="x@isp.example")).code == 250
    assert await verdict(gw, clock, "victim@example.org", "newsletter") == "allow consent"
    assert await verdict(gw, clock, "mallory@example.org", "newsletter") == "block complained"
    none = {"source": "fbl", "why": "no-reference"}
    assert sample(gw, "suppression_gateway_feedback_unattributed_total", none) == 1


async def test_reports_are_forwarded_when_asked(
    start_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """With forward_to, each report received over SMTP is handed to the relay for it, from
    the null sender, after it is recorded."""
    settings = {**FEEDBACK, "forward_to": "bounces@platform.example"}
    async with start_gateway(feedback=settings) as gateway:
        await send(gateway, ["f@example.org"])
        return_path = upstream.received[-1].mail_from
        raw = dsn([failure("f@example.org", MAILBOX_FULL)])
        assert (await report(gateway, return_path, raw)).code == 250
    forwarded = upstream.received[-1]
    assert (forwarded.mail_from, forwarded.rcpt_tos) == ("<>", ["bounces@platform.example"])
    assert b"Final-Recipient: rfc822; f@example.org" in forwarded.content


async def test_without_feedback_settings_nothing_changes(
    start_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """Without [feedback] addresses the platform's envelope sender is kept, no feedback header
    is added, and a b-... address is an ordinary recipient (the loopback peer here is the
    platform: its unclassified mail needs consent), not a report."""
    async with start_gateway() as gateway:
        await send(gateway, ["plain@example.org"])
        with pytest.raises(aiosmtplib.SMTPDataError) as ordinary:
            await report(gateway, f"b-aaaa@{RP}", dsn([failure("plain@example.org", BLOCKED)]))
        assert "consent policy" in ordinary.value.message
    assert upstream.received[-1].mail_from == "news@shop.example"
    assert b"CFBL" not in upstream.received[-1].content


async def test_reports_are_taken_from_anyone_and_nothing_else_is(
    start_gateway: GatewayFactory, clock: Clock
) -> None:
    """A peer that is no client (no network, no AUTH) may deliver a report to a valid return
    path and to the feedback-loop address; any other recipient stays refused (no open relay)."""
    clients = [{"name": "platform", "networks": ["10.9.0.0/16"]}]
    async with start_gateway(smtp={"clients": clients}, feedback=FEEDBACK) as gateway:
        identity = gateway.identities.of("far@example.org")
        numbers = await gateway.store.feedback_ref_ids([identity])
        ref = ReturnPathCodec(gw_keys(gateway), 45).mint(numbers[identity], day_number(clock.now))
        reply = await report(gateway, f"b-{ref}@{RP}", dsn([failure("far@example.org")]))
        assert reply.code == 250
        assert await verdict(gateway, clock, "far@example.org") == "block bounced"
        assert (await report(gateway, FBL, reports.arf(None), sender="x@isp.example")).code == 250
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as denied:
            await report(gateway, "someone@example.org", b"Subject: x\n\nhi\n")
        assert denied.value.code == 550
