"""Double opt-in over HTTP: the sign-up answers the same whatever the address, the
confirmation mail is transactional, signed and goes through the relay, the link confirms once
(and idempotently) and resists forgery, expiry, replay and foreign tokens; bombing limits."""

from __future__ import annotations

import email
import email.policy
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from gateway.app import Gateway
from suppression.changes import ConsentChange
from suppression.confirm_tokens import ConfirmRequest, ConfirmTokens
from suppression.criteria import ConsentMethod, Grade
from suppression.grading import grade
from suppression.model import Basis, ConsentStatus, Scope, SuppressionReason
from suppression.tokens import generate_key
from tests.conftest import Clock, GatewayFactory, message, smtp_client
from tests.support.double_opt_in import (
    KEY,
    ORIGIN,
    SENDER,
    SIGNUP,
    base,
    confirm_link,
    dkim_key,
    eventually,
    mails,
    post_json,
    subscribing,
)
from tests.support.store_helpers import suppress
from tests.support.upstream import Upstream
from tests.test_signing import dkimpy_verify
from tests.test_unsubscribe_http import nonce_of


async def confirm(http: aiohttp.ClientSession, link: str) -> tuple[int, str]:
    """Open the link, then press Confirm: the status and page of the POST."""
    async with http.get(link) as page:
        nonce = nonce_of(await page.text())
    async with http.post(link, data={"nonce": nonce}, allow_redirects=False) as answer:
        return answer.status, await answer.text()


async def test_signup_mail_confirm_records_verified_consents(
    start_gateway: GatewayFactory, upstream: Upstream, clock: Clock, tmp_path: Path
) -> None:
    """A sign-up mails one signed, transactional confirmation; GET of its link changes
    nothing; Confirm records one verified consent per purpose with both times and both IPs;
    confirming again changes nothing; then marketing is delivered."""
    _, records = dkim_key(tmp_path)
    async with subscribing(start_gateway, tmp_path) as gw:
        async with aiohttp.ClientSession() as http:
            status, answer, headers = await post_json(http, gw, SIGNUP)
            assert (status, answer) == (202, {"status": "pending"})
            assert headers["Access-Control-Allow-Origin"] == ORIGIN
            await eventually(lambda: len(upstream.received) == 1)
            got = upstream.received[0]
            assert (got.mail_from, got.rcpt_tos) == (SENDER, ["alice@example.com"])
            mail = email.message_from_bytes(got.content, policy=email.policy.default)
            assert mail["Auto-Submitted"] == "auto-generated"
            assert mail["List-Unsubscribe"] is None and mail["Subject"].startswith("Please confirm")
            assert dkimpy_verify(got.content, records)
            text = mail.get_body().get_content()  # type: ignore[union-attr]
            assert "Shop SAS" in text and "Newsletter" in text and "Partner offers" in text
            link = confirm_link(gw, upstream)
            assert "alice" not in link

            async with http.get(link) as page:
                shown = await page.text()
            assert page.status == 200 and "Please confirm" not in shown
            assert "Newsletter" in shown and "I can unsubscribe at any time" in shown
            assert not (
                await gw.store.contact_record(gw.identities.of("alice@example.com"))
            ).consents

            clock.now += timedelta(hours=2)
            status, done = await confirm(http, link)
            assert status == 200 and "Subscription confirmed" in done
            record = await gw.store.contact_record(gw.identities.of("alice@example.com"))
            again = await confirm(http, link)
            assert again[0] == 200 and "Subscription confirmed" in again[1]
            assert (await gw.store.contact_record(record.contact.identity)).ledger == record.ledger  # type: ignore[union-attr]

        (notice,) = await gw.store.notices()
        assert {c.purpose for c in record.consents} == {"newsletter", "partners"}
        for consent in record.consents:
            assert consent.collection.method is ConsentMethod.DOUBLE_OPT_IN
            assert consent.collection.notice == ("signup", "1")
            assert grade(consent, notice).grade is Grade.VERIFIED
            assert consent.collected_at == clock.now
            evidence = consent.evidence
            assert evidence["requested_at"] == (clock.now - timedelta(hours=2)).isoformat()
            assert evidence["request_ip"] == evidence["ip"] == "127.0.0.1"
        assert record.contact is not None
        assert record.contact.last_contact_at == clock.now.replace(hour=0, minute=0)
        assert notice.locked_at is not None
        async with smtp_client(gw) as client:
            await client.sendmail(
                "news@shop.example",
                ["alice@example.com"],
                message(to="alice@example.com", category="marketing", purpose="newsletter"),
            )
        assert upstream.received[-1].rcpt_tos == ["alice@example.com"]


async def test_same_answer_in_the_same_time_whatever_the_address(
    start_gateway: GatewayFactory, upstream: Upstream, clock: Clock, tmp_path: Path
) -> None:
    """Known, unknown, suppressed, rate-limited and erased addresses get byte-identical
    answers at once, even with a relay taking seconds; only a deliverable one is mailed."""
    upstream.script.mail_delay = 2.0
    async with subscribing(start_gateway, tmp_path) as gw:
        await suppress(gw, clock.now, address="bounced@example.com")
        await suppress(
            gw, clock.now, address="manual@example.com", reason=SuppressionReason.MANUAL,
            scope=Scope.MARKETING,
        )  # fmt: skip
        await suppress(
            gw, clock.now, address="complained@example.com", reason=SuppressionReason.COMPLAINT
        )
        await gw.store.erase(gw.identities.of("erased@example.com"), actor="t", at=clock.now)
        addresses = [
            "new@example.com",
            "bounced@example.com",
            "manual@example.com",
            "complained@example.com",
            "erased@example.com",
            "new@example.com",  # a second time: over the per-address limit
        ]
        answers = []
        async with aiohttp.ClientSession() as http:
            for address in addresses:
                started = time.perf_counter()
                status, body, _ = await post_json(http, gw, {**SIGNUP, "email": address})
                answers.append((status, body, time.perf_counter() - started))
        assert {(status, str(body)) for status, body, _ in answers} == {
            (202, "{'status': 'pending'}")
        }
        assert max(seconds for *_, seconds in answers) < 1.0  # the relay's 2 s are not seen
        await eventually(lambda: mails(gw, "suppressed") == 4 and mails(gw, "sent") == 1, 15)
        assert mails(gw, "rate_limited") == 1
        assert [r.rcpt_tos for r in upstream.received] == [["new@example.com"]]


async def test_per_address_and_per_ip_limits(
    start_gateway: GatewayFactory, upstream: Upstream, clock: Clock, tmp_path: Path
) -> None:
    """One confirmation mail per address per 24 h however often it is posted; past
    per_ip_per_minute a client gets 429 with Retry-After."""
    async with subscribing(start_gateway, tmp_path, per_ip_per_minute=5) as gw:
        async with aiohttp.ClientSession() as http:
            statuses = [(await post_json(http, gw, SIGNUP))[0] for _ in range(6)]
            assert statuses == [202] * 5 + [429]
            status, problem, headers = await post_json(http, gw, SIGNUP)
            assert status == 429 and int(headers["Retry-After"]) >= 1
            assert problem["status"] == 429
            # A platform's server with its key is limited per person's IP, not its own.
            keyed = {"Authorization": f"Bearer {KEY}"}
            other = {**SIGNUP, "email": "bob@example.com", "ip": "198.51.100.4"}
            assert (await post_json(http, gw, other, keyed))[0] == 202
        await eventually(lambda: mails(gw, "sent") == 2 and mails(gw, "rate_limited") == 4)
        assert sorted(r.rcpt_tos[0] for r in upstream.received) == [
            "alice@example.com",
            "bob@example.com",
        ]


@pytest.mark.parametrize(
    ("headers", "body", "status", "field"),
    [
        ({"Origin": "https://evil.example"}, SIGNUP, 403, None),
        ({}, SIGNUP, 403, None),
        ({"Authorization": "Bearer wrong"}, SIGNUP, 403, None),
        ({"Origin": ORIGIN}, {**SIGNUP, "email": "not an address"}, 422, "email"),
        ({"Origin": ORIGIN}, {**SIGNUP, "purposes": ["nope"]}, 422, "purposes.0"),
        ({"Origin": ORIGIN}, {**SIGNUP, "purposes": ["product-news"]}, 422, "purposes"),
        ({"Origin": ORIGIN}, {**SIGNUP, "notice_version": "9"}, 422, "notice_id"),
        ({"Origin": ORIGIN}, {**SIGNUP, "purposes": []}, 422, "purposes"),
        ({"Origin": ORIGIN}, {**SIGNUP, "email": "a@example.com" + " " * 9000}, 413, None),
        ({"Origin": ORIGIN}, [SIGNUP], 400, None),
    ],
)
async def test_refusals_do_not_depend_on_the_address(
    start_gateway: GatewayFactory,
    upstream: Upstream,
    tmp_path: Path,
    headers: dict[str, str],
    body: object,
    status: int,
    field: str | None,
) -> None:
    """A foreign or missing Origin without a key is 403; bad input is 4xx naming the field;
    a body over 8 KiB is 413. Nothing is mailed."""
    async with subscribing(start_gateway, tmp_path) as gw:
        async with aiohttp.ClientSession() as http:
            got, problem, _ = await post_json(http, gw, body, headers)
        assert got == status, problem
        assert problem["status"] == status
        if field is not None:
            assert field in {e["field"] for e in problem["errors"]}
        assert mails(gw, "sent") == 0 and upstream.received == []


async def test_form_post_and_cors_preflight(
    start_gateway: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    """A browser form (urlencoded, repeated ``purpose``) gets the check-your-inbox page in
    its language; a pre-flight from the allowed origin is answered, others are not."""
    async with subscribing(start_gateway, tmp_path) as gw:
        form = [
            ("email", "carol@example.com"),
            ("purpose", "newsletter"),
            ("purpose", "partners"),
            ("notice_id", "signup"),
            ("notice_version", "1"),
            ("submit", "Sign up"),
        ]
        async with aiohttp.ClientSession() as http:
            headers = {"Origin": ORIGIN, "Accept-Language": "fr"}
            async with http.post(f"{base(gw)}/subscribe", data=form, headers=headers) as page:
                assert page.status == 200 and page.headers["Content-Language"] == "fr"
                assert "Vérifiez votre boîte de réception" in await page.text()
            for origin, expected in ((ORIGIN, 204), ("https://evil.example", 403)):
                pre = {"Origin": origin, "Access-Control-Request-Method": "POST"}
                async with http.options(f"{base(gw)}/subscribe", headers=pre) as answer:
                    assert answer.status == expected
        await eventually(lambda: len(upstream.received) == 1)
        mail = email.message_from_bytes(upstream.received[0].content, policy=email.policy.default)
        assert mail["Subject"] == "Merci de confirmer votre abonnement"


async def test_forged_expired_foreign_and_replayed_links(
    start_gateway: GatewayFactory, upstream: Upstream, clock: Clock, tmp_path: Path
) -> None:
    """A forged or truncated link is 400, an expired one 410, one sealed with other keys or
    an unsubscribe token 400, all changing nothing; a link replayed after the person opted
    out records nothing (superseded)."""
    async with subscribing(start_gateway, tmp_path) as gw:
        async with aiohttp.ClientSession() as http:
            await post_json(http, gw, SIGNUP)
            await eventually(lambda: len(upstream.received) == 1)
            link = confirm_link(gw, upstream)
            token = link.rsplit("/", 1)[1]
            forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BA")
            foreign = ConfirmTokens({1: generate_key()}, ttl=timedelta(days=7)).seal(
                ConfirmRequest(
                    "alice@example.com", ("newsletter",), ("signup", "1"), "en", clock.now, "::1"
                )
            )
            unsubscribe = gw.tokens.mint(
                gw.identities.of("alice@example.com"), "newsletter", "platform", clock.now
            )
            for bad in (forged, token[:20], foreign, unsubscribe, "x" * 2000):
                async with http.get(f"{base(gw)}/confirm/{bad}") as answer:
                    assert answer.status == 400, bad
                async with http.post(f"{base(gw)}/confirm/{bad}", data={"nonce": "1.x"}) as a:
                    assert a.status == 400
            async with http.post(link, data={"nonce": "123.forged"}) as stale:
                assert stale.status == 403  # a bare POST without the page's nonce
            identity = gw.identities.of("alice@example.com")
            assert not (await gw.store.contact_record(identity)).consents

            assert (await confirm(http, link))[0] == 200
            withdrawal = ConsentChange(
                identity=identity,
                email=None,
                purpose="newsletter",
                status=ConsentStatus.OPTED_OUT,
                basis=Basis.CONSENT,
                source="preference-page",
                actor="recipient",
                at=clock.now + timedelta(hours=1),
            )
            await gw.store.record_consent(withdrawal)
            clock.now += timedelta(hours=2)
            assert (await confirm(http, link))[0] == 200  # partners: repeated; newsletter: not
            held = (await gw.store.contact_record(identity)).consents
            assert {c.purpose: c.status for c in held} == {
                "newsletter": ConsentStatus.OPTED_OUT,
                "partners": ConsentStatus.OPTED_IN,
            }

            clock.now += timedelta(days=8)
            async with http.get(link) as expired:
                assert expired.status == 410 and "expired" in await expired.text()
        superseded = gw.metrics.registry.get_sample_value(
            "suppression_gateway_confirmations_total",
            {"purpose": "newsletter", "outcome": "superseded"},
        )
        assert superseded == 1


async def test_disabled_by_default(gateway: Gateway) -> None:
    """Without [subscribe] enabled there is no /subscribe and no /confirm."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base(gateway)}/subscribe", json=SIGNUP) as answer:
            assert answer.status in (404, 405)
        async with http.get(f"{base(gateway)}/confirm/abc") as answer:
            assert answer.status == 404


def test_settings_need_a_signing_key_and_a_way_in(tmp_path: Path) -> None:
    """Enabling double opt-in needs a sender whose domain has a DKIM key, and an origin or
    a key."""
    from gateway.settings import Settings

    base_settings = {"enabled": True, "sender": SENDER, "allowed_origins": [ORIGIN]}
    with pytest.raises(ValueError, match=r"no \[\[dkim.keys\]\] for 'shop.example'"):
        Settings.model_validate({"subscribe": base_settings})
    with pytest.raises(ValueError, match="allowed_origins or keys"):
        Settings.model_validate({"subscribe": {"enabled": True, "sender": SENDER}})
    with pytest.raises(ValueError, match="not an address"):
        Settings.model_validate({"subscribe": {**base_settings, "sender": "nobody"}})


async def test_confirming_under_an_unsubscribe_from_all_marketing(
    start_gateway: GatewayFactory, upstream: Upstream, clock: Clock, tmp_path: Path
) -> None:
    """A person unsubscribed from all marketing who signs up again gets the mail and records
    the consents, and the confirmed page says that marketing resumes only from the
    preference page (the unsubscribe also covers purposes not confirmed now)."""
    async with subscribing(start_gateway, tmp_path) as gw:
        await suppress(
            gw,
            clock.now - timedelta(days=1),
            address="alice@example.com",
            reason=SuppressionReason.UNSUBSCRIBE,
            scope=Scope.MARKETING,
        )
        async with aiohttp.ClientSession() as http:
            await post_json(http, gw, SIGNUP)
            await eventually(lambda: len(upstream.received) == 1)
            status, page = await confirm(http, confirm_link(gw, upstream))
        assert status == 200 and "Receive marketing emails again" in page
        held = (await gw.store.contact_record(gw.identities.of("alice@example.com"))).consents
        assert {c.purpose for c in held} == {"newsletter", "partners"}


async def test_a_failed_mail_does_not_hold_the_address_back(
    start_gateway: GatewayFactory, upstream: Upstream, tmp_path: Path
) -> None:
    """When the relay refuses the confirmation mail, it is counted as failed and the person
    may sign up again at once (the per-address limit counts mails sent)."""
    async with subscribing(start_gateway, tmp_path) as gw:
        upstream.script.mail_reply = "451 4.3.0 try later"
        async with aiohttp.ClientSession() as http:
            await post_json(http, gw, SIGNUP)
            await eventually(lambda: mails(gw, "failed") == 1)
            upstream.script.mail_reply = None
            await post_json(http, gw, SIGNUP)
            await eventually(lambda: mails(gw, "sent") == 1)
        assert mails(gw, "rate_limited") == 0
        assert [r.rcpt_tos for r in upstream.received] == [["alice@example.com"]]
