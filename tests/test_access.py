"""No open relay: clients are matched by network or authenticate after STARTTLS, never over
plaintext; repeated AUTH failures end the session."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiosmtplib
import pytest

from gateway.smtp.access import hash_password, verify_password
from tests.conftest import message, smtp_client
from tests.support.rawsmtp import RawSMTP
from tests.support.tls import self_signed
from tests.support.upstream import Upstream

PASSWORD_HASH = hash_password("s3cret pass", log2_n=10)


@pytest.fixture
def tls_files(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed(tmp_path)


def _auth_sections(tls_files: tuple[Path, Path]) -> dict[str, dict[str, object]]:
    cert, key = tls_files
    return {
        "smtp": {
            "tls_cert": str(cert),
            "tls_key": str(key),
            "clients": [
                {"name": "platform", "username": "platform", "password_hash": PASSWORD_HASH}
            ],
        }
    }


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def test_password_hash_round_trip() -> None:
    """hash-password output verifies the same password and no other."""
    assert verify_password(b"s3cret pass", PASSWORD_HASH)
    assert not verify_password(b"s3cret pasS", PASSWORD_HASH)
    assert not verify_password(b"x", "not-a-hash")


async def test_unknown_network_is_refused(start_gateway, upstream: Upstream) -> None:
    """A peer outside every client network, unauthenticated, gets 550 5.7.1 at RCPT."""
    clients = [{"name": "platform", "networks": ["192.0.2.0/24"]}]
    async with start_gateway(smtp={"clients": clients}) as gw, smtp_client(gw) as client:
        await client.mail("news@shop.example")
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as refused:
            await client.rcpt("alice@example.com")
    assert (refused.value.code, refused.value.message[:5]) == (550, "5.7.1")
    assert upstream.handler.commands == []


async def test_auth_not_offered_over_plaintext(start_gateway, tls_files) -> None:
    """Before STARTTLS there is no AUTH in EHLO and AUTH gets 538 5.7.11; RCPT needs AUTH."""
    async with start_gateway(**_auth_sections(tls_files)) as gw:
        host, port = gw.smtp_addresses[0]
        raw = await RawSMTP.connect(host, port)
        ehlo = await raw.command("EHLO client.test")
        assert "STARTTLS" in ehlo and "AUTH" not in ehlo
        assert (await raw.command("AUTH PLAIN AHBsYXRmb3JtAHMzY3JldCBwYXNz")).startswith(
            "538 5.7.11"
        )
        await raw.command("MAIL FROM:<news@shop.example>")
        assert (await raw.command("RCPT TO:<alice@example.com>")).startswith("530 5.7.0")
        await raw.close()


async def test_auth_after_starttls_relays(start_gateway, upstream: Upstream, tls_files) -> None:
    """After STARTTLS, AUTH PLAIN with the right password makes the session that client's."""
    async with start_gateway(**_auth_sections(tls_files)) as gw:
        host, port = gw.smtp_addresses[0]
        client = aiosmtplib.SMTP(
            hostname=host, port=port, start_tls=True, tls_context=_client_tls(), timeout=10
        )
        async with client:
            await client.ehlo()
            assert "plain" in client.server_auth_methods
            await client.login("platform", "s3cret pass")
            errors, _ = await client.sendmail("news@shop.example", ["alice@example.com"], message())
    assert errors == {}
    assert upstream.received[0].rcpt_tos == ["alice@example.com"]


async def test_auth_login_mechanism(start_gateway, upstream: Upstream, tls_files) -> None:
    """AUTH LOGIN works as well as PLAIN."""
    async with start_gateway(**_auth_sections(tls_files)) as gw:
        host, port = gw.smtp_addresses[0]
        client = aiosmtplib.SMTP(
            hostname=host, port=port, start_tls=True, tls_context=_client_tls(), timeout=10
        )
        async with client:
            await client.ehlo()
            await client.auth_login("platform", "s3cret pass")
            errors, _ = await client.sendmail("news@shop.example", ["bob@example.com"], message())
    assert errors == {}


async def test_repeated_auth_failures_close_the_session(start_gateway, tls_files) -> None:
    """Wrong passwords get 535 5.7.8, and the third failure ends the session with 421 4.7.0."""
    async with start_gateway(**_auth_sections(tls_files)) as gw:
        host, port = gw.smtp_addresses[0]
        client = aiosmtplib.SMTP(
            hostname=host, port=port, start_tls=True, tls_context=_client_tls(), timeout=10
        )
        await client.connect()
        await client.ehlo()
        for _ in range(2):
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failed:
                await client.auth_plain("platform", "wrong")
            assert (failed.value.code, failed.value.message[:5]) == (535, "5.7.8")
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as last:
            await client.auth_plain("platform", "wrong")
        assert (last.value.code, last.value.message[:5]) == (421, "4.7.0")
        client.close()


async def test_unknown_user_fails_like_wrong_password(start_gateway, tls_files) -> None:
    """An unknown username gets the same 535 5.7.8 as a wrong password."""
    async with start_gateway(**_auth_sections(tls_files)) as gw:
        host, port = gw.smtp_addresses[0]
        client = aiosmtplib.SMTP(
            hostname=host, port=port, start_tls=True, tls_context=_client_tls(), timeout=10
        )
        async with client:
            await client.ehlo()
            with pytest.raises(aiosmtplib.SMTPAuthenticationError) as failed:
                await client.login("nobody", "s3cret pass")
    assert failed.value.code == 535


async def test_network_client_may_use_starttls(
    start_gateway, upstream: Upstream, tls_files
) -> None:
    """A client matched by network stays that client after STARTTLS (the session is reset)."""
    cert, key = tls_files
    async with start_gateway(smtp={"tls_cert": str(cert), "tls_key": str(key)}) as gw:
        host, port = gw.smtp_addresses[0]
        client = aiosmtplib.SMTP(
            hostname=host, port=port, start_tls=True, tls_context=_client_tls(), timeout=10
        )
        async with client:
            errors, _ = await client.sendmail("news@shop.example", ["carol@example.com"], message())
    assert errors == {} and upstream.received[0].rcpt_tos == ["carol@example.com"]
