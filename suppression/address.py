"""Mailbox syntax (what may be relayed) and identity normalisation (what the store keys on).

Syntax: :func:`parse_mailbox` is our one adapter around email-validator, used without DNS
(``check_deliverability=False``). On top of it we refuse what a relay should never pass on:

- control characters anywhere (C0, DEL, C1): CR/LF in an address is header and command injection;
- routing forms: RFC 5321 §4.1.2 source routes (``@a,@b:user@d``), the "%-hack" (``user%d2@d1``,
  RFC 1123 §5.2.16) and UUCP bang paths (``host!user``): each makes a relay forward somewhere
  else than the domain we checked;
- quoted local parts (RFC 5321 §4.1.2 ``Quoted-string``): legal, almost never used, and the
  classic source of parser differentials (``"a@b"@c``, ``"\\"``), so all are refused;
- domain literals (``user@[192.0.2.1]``) unless asked for;
- over-long addresses: local part over 64 octets (RFC 5321 §4.5.3.1.1), whole address over 254
  octets (RFC 5321 §4.5.3.1.3 path limit of 256 minus the angle brackets);
- non-ASCII unless the session negotiated SMTPUTF8 (RFC 6531 §3.2);
- surrounding or embedded whitespace (aiosmtpd hands us the bare address).

The canonical :attr:`Mailbox.address` is the NFC local part (RFC 6532 §3.1) as email-validator
normalises it, ``@``, and the IDNA A-label domain (RFC 5890). Writing the domain as an A-label
means a message needs SMTPUTF8 upstream only when the local part itself is non-ASCII
(RFC 6531 allows either form of the domain); :attr:`Mailbox.is_ascii` says which.

Identity: :func:`normalise` maps every spelling of one mailbox to one string, hashed with a
secret pepper into the identity the store keys on (:class:`Identities`). The rules:

1. Unicode NFC on the whole address (RFC 6532 §3.1).
2. The domain is case-insensitive (RFC 5321 §2.4): UTS #46 mapping, then IDNA A-labels, so
   ``Bücher.DE`` and ``xn--bcher-kva.de`` are one domain. A domain literal is only lower-cased.
3. The local part is case-folded in ASCII only (``A``-``Z`` to ``a``-``z``), unless the domain is
   in ``case_sensitive_domains``. Non-ASCII letters are never folded (no ``str.lower()``,
   ``casefold()`` or NFKC): dotless i (U+0131), long s (U+017F), ``ß`` and ``Å`` stay distinct
   from ``i``, ``s``, ``ss`` and ``å``. Unicode case folding would merge mailboxes that a
   receiving server may keep apart (RFC 6530 §10.1), and a suppression on one person must not
   silently cover, or miss, another. One subtlety: the Kelvin sign (U+212A), the Ohm sign
   (U+2126) and the Angstrom sign (U+212B) are *canonically* equivalent to ``K``, ``Ω`` and
   ``Å``, so step 1 (NFC) already replaces them, exactly as :func:`parse_mailbox` does in the
   address it writes upstream. Keeping a Kelvin-sign spelling apart from ``kelvin`` would let a
   suppressed mailbox be reached by respelling it, since the relay would deliver to ``Kelvin``.
4. ``user+tag`` becomes ``user`` only for domains in ``plus_tag_domains`` (subaddressing is a
   per-domain convention, RFC 5233); elsewhere ``+`` is an ordinary character.
"""

from __future__ import annotations

import functools
import hmac
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

import email_validator
import idna
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from suppression.model import RecipientKey

#: RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
MAX_LOCAL_OCTETS = 64
#: RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
MAX_ADDRESS_OCTETS = 254
#: HMAC key length below which identities could be brute-forced from a leaked store.
MIN_PEPPER_BYTES = 32

_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


class AddressError(ValueError):
    """An address refused for relaying or identity; ``reason`` is a short English sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Mailbox:
    """A checked address: ``address`` is exactly what may be written upstream."""

    address: str
    local: str
    domain: str
    ascii_domain: str
    is_ascii: bool


def is_control(char: str) -> bool:
    """True for C0 controls, DEL and C1 controls (Unicode category Cc)."""
    return unicodedata.category(char) == "Cc"


def _precheck(raw: str, *, smtputf8: bool) -> None:
    """Refuse what email-validator would accept but a relay must not pass on."""
    if not raw:
        raise AddressError("The address is empty.")
    if any(is_control(c) for c in raw):
        raise AddressError("The address contains a control character.")
    if any(c.isspace() for c in raw):
        raise AddressError("The address contains whitespace.")
    if not smtputf8 and not raw.isascii():
        # RFC 6531 §3.2: non-ASCII addresses need the SMTPUTF8 parameter on MAIL FROM.
        raise AddressError("The address is not ASCII and SMTPUTF8 was not requested.")
    if raw.startswith("@") or ":" in raw.partition("@")[0]:
        raise AddressError("Source routes are not accepted.")  # RFC 5321 §4.1.2, appendix C
    if raw.startswith('"'):
        raise AddressError("Quoted local parts are not accepted.")
    local = raw.rpartition("@")[0]
    if "%" in local:
        raise AddressError("'%' routing in the local part is not accepted.")
    if "!" in local:
        raise AddressError("'!' (bang path) routing in the local part is not accepted.")
    if len(raw.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise AddressError(f"The address is longer than {MAX_ADDRESS_OCTETS} octets.")


# The fast path of the address check (:func:`fast_canonical`): plain ASCII dot-atom local parts
# without the routing characters ``%`` and ``!``, and LDH host names under an alphabetic TLD.
_ATEXT = r"[A-Za-z0-9_#$&'*+/=?^`{|}~-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_FAST = re.compile(rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)+[A-Za-z]{{2,63}})")
_SPECIAL_USE = re.compile(
    r"(?:\A|\.)(?:"
    + "|".join(re.escape(d) for d in email_validator.SPECIAL_USE_DOMAIN_NAMES)
    + r")\Z"
)
_CASE_INSENSITIVE = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def fast_canonical(raw: str) -> str | None:
    """What ``parse_mailbox(raw, smtputf8=True).address`` returns, for the common plain-ASCII
    address, without running email-validator (~10x faster); ``None`` means "ask it".

    Accepts only a dot-atom local part of ASCII atext (no ``%``, ``!``, quotes, at most 64
    octets) and a domain of LDH labels (no ``--`` anywhere, so no A-labels) under an
    alphabetic TLD, at most 254 octets in all, and not a special-use domain. For those the
    canonical form is the address with its domain lower-cased: email-validator and IDNA
    (UTS #46) only fold ASCII case there. Local parts email-validator lower-cases (RFC 2142
    names such as ``Postmaster``) go to the slow path. ``tests/test_address.py`` checks the
    equivalence as a property.
    """
    m = _FAST.fullmatch(raw)
    if m is None or len(raw) > MAX_ADDRESS_OCTETS:
        return None
    local, domain = m.group(1), m.group(2).lower()
    if (
        len(local) > MAX_LOCAL_OCTETS
        or "--" in domain
        or _SPECIAL_USE.search(domain)
        or local.lower() in _CASE_INSENSITIVE
    ):
        return None
    return f"{local}@{domain}"


def parse_mailbox(
    raw: str,
    *,
    smtputf8: bool,
    allow_domain_literal: bool = False,
    test_environment: bool = False,
) -> Mailbox:
    """Check an envelope address and return its canonical form; raise :class:`AddressError`."""
    fast = fast_canonical(raw)
    if fast is not None:  # the common plain-ASCII case, proven equal to the full check
        local, _, domain = fast.rpartition("@")
        return Mailbox(address=fast, local=local, domain=domain, ascii_domain=domain, is_ascii=True)
    return check_mailbox_fully(
        raw,
        smtputf8=smtputf8,
        allow_domain_literal=allow_domain_literal,
        test_environment=test_environment,
    )


def check_mailbox_fully(
    raw: str,
    *,
    smtputf8: bool,
    allow_domain_literal: bool = False,
    test_environment: bool = False,
) -> Mailbox:
    """The full check (email-validator and our refusals) that :func:`parse_mailbox` shortcuts."""
    _precheck(raw, smtputf8=smtputf8)
    try:
        info = validate_email(
            raw,
            allow_smtputf8=smtputf8,
            allow_empty_local=False,
            allow_quoted_local=False,
            allow_domain_literal=allow_domain_literal,
            allow_display_name=False,
            check_deliverability=False,
            test_environment=test_environment,
        )
    except EmailNotValidError as exc:
        raise AddressError(str(exc)) from None
    local = info.local_part
    if len(local.encode("utf-8")) > MAX_LOCAL_OCTETS:
        raise AddressError(f"The local part is longer than {MAX_LOCAL_OCTETS} octets.")
    address = f"{local}@{info.ascii_domain}"
    # Recheck the canonical form: what we write upstream is what we checked.
    if len(address.encode("utf-8")) > MAX_ADDRESS_OCTETS:
        raise AddressError(f"The address is longer than {MAX_ADDRESS_OCTETS} octets.")
    if any(is_control(c) or c.isspace() for c in address):
        raise AddressError("The address contains a control character after normalisation.")
    if not smtputf8 and not address.isascii():
        raise AddressError("The address is not ASCII after normalisation.")
    return Mailbox(
        address=address,
        local=local,
        domain=info.domain,
        ascii_domain=info.ascii_domain,
        is_ascii=address.isascii(),
    )


@functools.lru_cache(maxsize=65536)
def normalise_domain(domain: str) -> str:
    """The lower-case IDNA A-label form of a domain (a domain literal is only lower-cased).

    Cached: UTS #46 costs ~11 us a call and mail goes to few distinct domains.
    """
    domain = unicodedata.normalize("NFC", domain).rstrip(".")
    if domain.startswith("[") and domain.endswith("]"):
        return domain.translate(_ASCII_FOLD)
    if not domain:
        raise AddressError("The domain is empty.")
    try:
        # UTS #46 mapping (non-transitional, as IDNA2008 registries expect) folds case.
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise AddressError(f"The domain is not valid IDNA ({exc}).") from None


def _domains(values: Iterable[str]) -> frozenset[str]:
    return frozenset(normalise_domain(value) for value in values)


@dataclass(frozen=True, slots=True)
class NormalisationRules:
    """Per-domain identity rules, from ``[policy]``; domains are stored in A-label form."""

    case_sensitive_domains: frozenset[str] = field(default_factory=frozenset)
    plus_tag_domains: frozenset[str] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        object.__setattr__(self, "case_sensitive_domains", _domains(self.case_sensitive_domains))
        object.__setattr__(self, "plus_tag_domains", _domains(self.plus_tag_domains))


def _split_normalised(address: str, rules: NormalisationRules) -> tuple[str, str]:
    address = unicodedata.normalize("NFC", address)
    local, at, domain = address.rpartition("@")
    if not at or not local:
        raise AddressError("The address has no local part and domain.")
    domain = normalise_domain(domain)
    if domain not in rules.case_sensitive_domains:
        local = local.translate(_ASCII_FOLD)  # ASCII only: see the module docstring, rule 3
    if domain in rules.plus_tag_domains:
        base = local.partition("+")[0]
        local = base or local
    return local, domain


def normalise(address: str, rules: NormalisationRules) -> str:
    """The one spelling of a mailbox that its identity is computed from (see module rules)."""
    local, domain = _split_normalised(address, rules)
    return f"{local}@{domain}"


class Identities:
    """Computes identities: hex ``HMAC-SHA256(pepper, normalise(address))``."""

    def __init__(self, pepper: bytes, rules: NormalisationRules) -> None:
        if len(pepper) < MIN_PEPPER_BYTES:
            raise ValueError(f"the identity pepper must be at least {MIN_PEPPER_BYTES} bytes")
        self._pepper = bytes(pepper)
        self.rules = rules
        # Keyed once; each digest copies it (hmac.digest sets the key up on every call: about
        # 4 us an address against 1 us for a copy, which a million-row import feels).
        self._keyed = hmac.new(self._pepper, digestmod="sha256")

    def __repr__(self) -> str:
        return f"Identities(rules={self.rules!r})"  # never show the pepper

    def __reduce__(self) -> tuple[type[Identities], tuple[bytes, NormalisationRules]]:
        # For the import's reading processes: an HMAC object does not pickle.
        return (Identities, (self._pepper, self.rules))

    def _digest(self, normalised: str) -> str:
        mac = self._keyed.copy()
        mac.update(normalised.encode("utf-8"))
        return mac.hexdigest()

    def of(self, address: str) -> str:
        """The identity of an address."""
        return self._digest(normalise(address, self.rules))

    def key(self, address: str) -> RecipientKey:
        """The identity and A-label domain the store looks a recipient up by."""
        local, domain = _split_normalised(address, self.rules)
        return RecipientKey(identity=self._digest(f"{local}@{domain}"), domain=domain)
