"""Envelope senders: a malformed one is told why, one under a special-use name is told that it
cannot receive bounces (not "invalid syntax"), and the operator may accept such names."""

from __future__ import annotations

import aiosmtplib
import pytest

from gateway import replies
from gateway.senders import check_sender
from suppression.address import parse_mailbox
from suppression.special_use import parse_special_use_address
from tests.conftest import GatewayFactory, message, smtp_client
from tests.support.upstream import Upstream


@pytest.mark.parametrize(
    ("sender", "accepted", "expected"),
    [
        ("shop@example.com", (), "shop@example.com"),
        ("root@host.test", (), "553 5.1.8 Sender domain host.test is a special-use name (.test"),
        ("root@HOST.Test", ("test",), "root@host.test"),
        ("Postmaster@host.test", ("test",), "postmaster@host.test"),
        ("root@localhost", (), "553 5.1.8 Sender domain localhost is a special-use name"),
        ("root@localhost", ("localhost",), "root@localhost"),
        ("x@printer.local", ("test",), "553 5.1.8 Sender domain printer.local is a special-use"),
        ("x@printer.local", ("local",), "x@printer.local"),
        ("root@host.test.", ("test",), "553 5.1.7 Invalid sender address syntax: An email"),
        ("bad..dots@host.test", ("test",), "553 5.1.7 Invalid sender address syntax: An email"),
        ("a b@example.com", (), "553 5.1.7 Invalid sender address syntax: The address contains"),
    ],
)
def test_sender_check_table(sender: str, accepted: tuple[str, ...], expected: str) -> None:
    """The canonical sender, or the refusal that says what is wrong with it."""
    got = check_sender(sender, smtputf8=False, accepted=accepted)
    assert str(got).startswith(expected), got


@pytest.mark.parametrize(
    "mailbox", ["Root@Host", "Pöstmaster@Bücher", "a.b+c@x-y", "POSTMASTER@MAIL.SHOP"]
)
def test_special_use_check_matches_the_ordinary_check(mailbox: str) -> None:
    """Under a special-use name an address is canonicalised exactly as under any other name."""
    ordinary = parse_mailbox(f"{mailbox}.example", smtputf8=True)
    special = parse_special_use_address(f"{mailbox}.TEST", smtputf8=True)
    assert special.address == ordinary.address.removesuffix("example") + "test"
    assert special.ascii_domain == ordinary.ascii_domain.removesuffix("example") + "test"
    assert (special.local, special.is_ascii) == (ordinary.local, ordinary.is_ascii)


async def test_special_use_sender_refused_with_the_reason(start_gateway: GatewayFactory) -> None:
    """swaks' default sender root@host.test gets 553 5.1.8 naming the special-use name."""
    async with start_gateway() as gw, smtp_client(gw) as client:
        with pytest.raises(aiosmtplib.SMTPSenderRefused) as refused:
            await client.mail("root@host.test")
    assert refused.value.code == replies.SPECIAL_USE_SENDER.code
    assert refused.value.message.startswith("5.1.8 Sender domain host.test is a special-use name")


async def test_special_use_sender_accepted_where_the_operator_says_so(
    start_gateway: GatewayFactory, upstream: Upstream
) -> None:
    """With ``special_use_sender_domains = ["test"]`` the sender is relayed in canonical form."""
    async with (
        start_gateway(smtp={"special_use_sender_domains": ["test"]}) as gw,
        smtp_client(gw) as client,
    ):
        errors, _ = await client.sendmail("root@Host.Test", ["alice@example.com"], message())
    assert errors == {}
    (got,) = upstream.received
    assert got.mail_from == "root@host.test"
