"""Addresses under special-use domain names (RFC 6761 ``test``, ``localhost``, ``invalid``;
RFC 6762 ``local``; RFC 7686 ``onion``; ``arpa``).

email-validator refuses every address under them: such a name is not delegated in the global
DNS, so mail to it, a bounce included, cannot be delivered. The syntax is fine, though, so a
refused sender deserves that reason; and a laboratory whose machines send as ``root@host.test``
(swaks' default sender on many machines) may have such senders accepted by name. This module
checks such an address exactly as :func:`suppression.address.parse_mailbox` checks any other.
"""

from __future__ import annotations

import email_validator

from suppression.address import MAX_ADDRESS_OCTETS, AddressError, Mailbox, check_mailbox_fully

SPECIAL_USE_NAMES = frozenset(email_validator.SPECIAL_USE_DOMAIN_NAMES)

#: Stands in for the special-use name while email-validator checks the rest of the address: an
#: ordinary name to it, of the same label syntax (RFC 2606 keeps it for examples).
_STAND_IN = "example"


def special_use_name(address: str) -> str | None:
    """The special-use name the address's domain is or falls under (``test`` for
    ``root@host.test``), or None."""
    domain = address.rpartition("@")[2].rstrip(".").lower()
    for name in SPECIAL_USE_NAMES:
        if domain == name or domain.endswith("." + name):
            return name
    return None


def parse_special_use_address(raw: str, *, smtputf8: bool) -> Mailbox:
    """Check an address under (or at) a special-use name and return its canonical form (the name
    in lower case); raise :class:`AddressError` for what any other address is refused for."""
    name = special_use_name(raw)
    if name is None:
        raise AddressError("The domain is not a special-use name.")
    local, _, domain = raw.rpartition("@")
    bare = domain.rstrip(".")
    stem, dots = bare[: -len(name)], domain[len(bare) :]  # "host." for host.test, "" for test
    # A trailing dot stays, so that it is refused as anywhere else.
    checked = check_mailbox_fully(f"{local}@{stem or 'bare.'}{_STAND_IN}{dots}", smtputf8=smtputf8)

    def restored(checked_domain: str) -> str:
        return (checked_domain.removesuffix(_STAND_IN) if stem else "") + name

    mailbox = Mailbox(
        address=f"{checked.local}@{restored(checked.ascii_domain)}",
        local=checked.local,
        domain=restored(checked.domain),
        ascii_domain=restored(checked.ascii_domain),
        is_ascii=checked.is_ascii,
    )
    if len(mailbox.address.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise AddressError(f"The address is longer than {MAX_ADDRESS_OCTETS} octets.")
    return mailbox
