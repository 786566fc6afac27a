"""MAIL FROM: the envelope sender's check, and what a refused sender is told.

A malformed address gets ``553 5.1.7`` with email-validator's reason. A well-formed one whose
domain is a special-use name (:mod:`suppression.special_use`) gets ``553 5.1.8`` naming it
(RFC 3463: the sender's system cannot accept return mail), unless ``[smtp]
special_use_sender_domains`` lists that name: then it is accepted, and its bounces are lost.
"""

from __future__ import annotations

from collections.abc import Collection

from gateway import replies
from suppression.address import AddressError, parse_mailbox
from suppression.special_use import parse_special_use_address, special_use_name

#: Where each special-use name is reserved (RFC 6761 for the rest, ``arpa`` included).
_RFC = {"local": "RFC 6762", "onion": "RFC 7686"}


def check_sender(address: str, *, smtputf8: bool, accepted: Collection[str]) -> str | replies.Reply:
    """The canonical sender to write upstream, or the reply refusing it."""
    try:
        return parse_mailbox(address, smtputf8=smtputf8).address
    except AddressError as exc:
        reason = exc.reason
    name = special_use_name(address)
    if name is None:
        return replies.BAD_SENDER.with_text(
            f"{replies.BAD_SENDER.text}: {replies.sanitise(reason)}"
        )
    try:
        mailbox = parse_special_use_address(address, smtputf8=smtputf8)
    except AddressError as exc:
        return replies.BAD_SENDER.with_text(
            f"{replies.BAD_SENDER.text}: {replies.sanitise(exc.reason)}"
        )
    if name in accepted:
        return mailbox.address
    return replies.SPECIAL_USE_SENDER.with_text(
        f"Sender domain {replies.sanitise(mailbox.ascii_domain, 100)} is a special-use name "
        f"(.{name}, {_RFC.get(name, 'RFC 6761')}) that cannot receive bounces"
    )
