"""Mailbox syntax checks and identity normalisation (suppression.address)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from suppression.address import (
    AddressError,
    Identities,
    Mailbox,
    NormalisationRules,
    normalise,
    parse_mailbox,
)
from suppression.model import RecipientKey

PEPPER = b"p" * 32
RULES = NormalisationRules(
    case_sensitive_domains=frozenset({"Strict.example"}),
    plus_tag_domains=frozenset({"gmail.com", "bücher.de"}),
)
IDS = Identities(PEPPER, RULES)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


# --- parse_mailbox: table -------------------------------------------------------------------

ACCEPTED = [
    # raw, smtputf8, expected canonical address, is_ascii
    ("user@example.com", False, "user@example.com", True),
    ("User.Name+tag@Example.COM", False, "User.Name+tag@example.com", True),
    ("user@XN--BCHER-KVA.de", False, "user@xn--bcher-kva.de", True),
    ("user@bücher.de", True, "user@xn--bcher-kva.de", True),
    ("üser@bücher.de", True, "üser@xn--bcher-kva.de", False),
    ("POSTMASTER@example.com", False, "postmaster@example.com", True),  # RFC 5321 §4.5.1
    ("u\u0308ser@example.com", True, "üser@example.com", False),  # NFD in, NFC out
    ("a" * 64 + "@example.com", False, "a" * 64 + "@example.com", True),
]


@pytest.mark.parametrize(("raw", "smtputf8", "address", "is_ascii"), ACCEPTED)
def test_accepted_addresses_have_a_canonical_form(
    raw: str, smtputf8: bool, address: str, is_ascii: bool
) -> None:
    """A valid address parses to its NFC local part and A-label domain."""
    mailbox = parse_mailbox(raw, smtputf8=smtputf8)
    assert mailbox.address == address
    assert mailbox.is_ascii is is_ascii
    assert mailbox.address == f"{mailbox.local}@{mailbox.ascii_domain}"


REJECTED = [
    # raw, smtputf8, why
    ("", True, "empty"),
    ("user", True, "no domain"),
    ("@example.com", True, "no local part"),
    ("user@", True, "no domain after @"),
    (" user@example.com", True, "leading space"),
    ("user@example.com ", True, "trailing space"),
    ("us er@example.com", True, "inner space"),
    ("user@example.com\r\nRCPT TO:<x@evil.example>", True, "CRLF injection"),
    ("user\n@example.com", True, "LF"),
    ("user\x00@example.com", True, "NUL"),
    ("user\x7f@example.com", True, "DEL"),
    ("user\x85@example.com", True, "C1 NEL"),
    ("user\u2028@example.com", True, "line separator"),
    ("user%other.example@example.com", True, "percent hack"),
    ("host!user@example.com", True, "bang path"),
    ("@relay.example,@other.example:user@example.com", True, "source route"),
    ("@relay.example:user@example.com", True, "source route, one hop"),
    ('"user"@example.com', True, "quoted local part"),
    ('"a@b"@example.com', True, "quoted local part with @"),
    ('"a\\"b"@example.com', True, "quoted local part with escape"),
    ("user@[192.0.2.1]", True, "domain literal"),
    ("user@[IPv6:2001:db8::1]", True, "IPv6 domain literal"),
    ("a" * 65 + "@example.com", True, "local part over 64 octets"),
    ("ü" * 33 + "@example.com", True, "local part over 64 octets in UTF-8"),
    ("a" * 10 + "@" + ".".join(["b" * 60] * 4) + ".com", True, "address over 254 octets"),
    ("üser@example.com", False, "non-ASCII local part without SMTPUTF8"),
    ("user@bücher.de", False, "non-ASCII domain without SMTPUTF8"),
    ("user@localhost", True, "no dot in the domain"),
    ("user@example.invalid", True, "special-use domain"),
    ("user..name@example.com", True, "double dot"),
    (".user@example.com", True, "leading dot"),
    ("user@-example.com", True, "label starting with a hyphen"),
    ("user@exa_mple.com", True, "underscore in the domain"),
    ("user@example.com@example.org", True, "two @"),
    ("user\u200b@example.com", True, "zero-width space"),
    ("Name <user@example.com>", True, "display name"),
    ("<user@example.com>", True, "angle brackets"),
]


@pytest.mark.parametrize(("raw", "smtputf8", "why"), REJECTED, ids=[r[2] for r in REJECTED])
def test_risky_or_invalid_addresses_are_refused(raw: str, smtputf8: bool, why: str) -> None:
    """Each of these addresses raises AddressError with a reason."""
    with pytest.raises(AddressError) as info:
        parse_mailbox(raw, smtputf8=smtputf8)
    assert info.value.reason
    assert isinstance(info.value, ValueError)


def test_domain_literals_can_be_allowed() -> None:
    """A domain literal passes only when explicitly allowed."""
    mailbox = parse_mailbox("user@[192.0.2.1]", smtputf8=False, allow_domain_literal=True)
    assert mailbox.address == "user@[192.0.2.1]"


def test_test_environment_allows_special_use_test_domains() -> None:
    """Test suites may use *.test domains when asking for a test environment."""
    assert parse_mailbox("u@a.test", smtputf8=False, test_environment=True).domain == "a.test"
    with pytest.raises(AddressError):
        parse_mailbox("u@a.test", smtputf8=False)


# --- parse_mailbox: properties ---------------------------------------------------------------

_SAFE_LOCAL_CHARS = st.sampled_from(
    [
        *"abcXYZ019.+-_=#$&'*/?^`{|}~",
        "ß",
        "\u0131",
        "\u212a",
        "\u017f",
        "é",
        "e\u0301",
        "Å",
        "\u212b",
        "中",
        "\uff21",
        "😀",
    ]
)
_RISKY_LOCAL_CHARS = st.sampled_from(
    [
        *'%!"\\ @:,;<>()[]',
        "\r",
        "\n",
        "\x00",
        "\t",
        "\x7f",
        "\x85",
        "\u00a0",
        "\u200b",
        "\u2028",
        "\u202e",
    ]
)
# Mostly plausible characters, so that a fair share of the examples is accepted.
_LOCAL_CHARS = st.one_of(
    _SAFE_LOCAL_CHARS, _SAFE_LOCAL_CHARS, _SAFE_LOCAL_CHARS, _RISKY_LOCAL_CHARS
)
_GOOD_LABEL = st.one_of(
    st.from_regex(r"\A[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?\Z"),
    st.sampled_from(
        ["bücher", "BÜCHER", "xn--bcher-kva", "中文", "xn--fiq228c", "ﬀ", "\uff45\uff58"]
    ),
)
_LABEL = st.one_of(
    _GOOD_LABEL,
    _GOOD_LABEL,
    st.sampled_from(["-bad", "bad-", "a_b", "", "a..b", "\u00ad", "b\u0308", "xn--zz"]),
)
_TLD = st.sampled_from(["com", "de", "ORG", "xn--p1ai", "рф", "test", "invalid", "c0m", "x"])
TRICKY = st.builds(
    lambda local, labels, tld: f"{''.join(local)}@{'.'.join([*labels, tld])}",
    st.lists(_LOCAL_CHARS, min_size=0, max_size=10),
    st.lists(_LABEL, min_size=1, max_size=3),
    _TLD,
)
ADDRESSES = st.one_of(st.emails(), TRICKY)


@FAST
@given(raw=ADDRESSES, smtputf8=st.booleans())
def test_accepted_address_is_the_canonical_checked_address(raw: str, smtputf8: bool) -> None:
    """Whatever parse_mailbox accepts re-parses to itself, has no controls, and is ASCII
    without SMTPUTF8: the address written upstream is exactly the one that was checked."""
    try:
        mailbox = parse_mailbox(raw, smtputf8=smtputf8)
    except AddressError:
        return
    again = parse_mailbox(mailbox.address, smtputf8=smtputf8)
    assert again == mailbox
    assert not _has_control(mailbox.address)
    assert "\r" not in mailbox.address and "\n" not in mailbox.address
    assert len(mailbox.address.encode("utf-8")) <= 254
    assert len(mailbox.local.encode("utf-8")) <= 64
    if not smtputf8:
        assert mailbox.address.isascii()
    assert mailbox.is_ascii is mailbox.address.isascii()
    # The identity of what was submitted is the identity of what is relayed.
    assert IDS.of(raw) == IDS.of(mailbox.address)


@FAST
@given(raw=TRICKY)
def test_routing_characters_never_pass(raw: str) -> None:
    """No accepted address carries control characters, routing '%', '!' or quotes."""
    try:
        mailbox = parse_mailbox(raw, smtputf8=True)
    except AddressError:
        return
    assert not any(c in mailbox.local for c in '%!"\\ :,@')
    assert isinstance(mailbox, Mailbox)


# --- normalise -------------------------------------------------------------------------------

NORMALISED = [
    # address, normalised
    ("User@Example.COM", "user@example.com"),
    ("user@BÜCHER.de", "user@xn--bcher-kva.de"),
    ("user@XN--BCHER-KVA.DE", "user@xn--bcher-kva.de"),
    ("User+News@GMAIL.com", "user@gmail.com"),
    ("user+a+b@gmail.com", "user@gmail.com"),
    ("+tag@gmail.com", "+tag@gmail.com"),  # nothing left before the tag: keep it
    ("user+tag@example.com", "user+tag@example.com"),  # not a plus-tag domain
    ("User@strict.example", "User@strict.example"),  # case-sensitive domain
    ("User@STRICT.EXAMPLE", "User@strict.example"),  # ...whose name is still case-insensitive
    ("STRAßE@example.com", "straße@example.com"),
    ("I\u0131@example.com", "i\u0131@example.com"),
    ("ÅSA@example.com", "Åsa@example.com"),
    ("\u212aelvin@example.com", "kelvin@example.com"),  # NFC: U+212A is canonically K
    ("u\u0308ser@example.com", "üser@example.com"),
    ("user@[192.0.2.1]", "user@[192.0.2.1]"),
]


@pytest.mark.parametrize(("address", "expected"), NORMALISED)
def test_normalise_table(address: str, expected: str) -> None:
    """normalise folds case in ASCII only, IDNA-encodes domains and strips listed plus-tags."""
    assert normalise(address, RULES) == expected


@pytest.mark.parametrize("address", ["", "user", "@example.com", "user@", "user@a..b"])
def test_normalise_refuses_non_addresses(address: str) -> None:
    """Strings that are not local@domain raise AddressError rather than hash to something."""
    with pytest.raises(AddressError):
        normalise(address, RULES)


DISTINCT = [
    # pairs that must never share an identity
    ("ß@example.com", "ss@example.com"),
    ("\u0131da@example.com", "ida@example.com"),
    ("\u017fam@example.com", "sam@example.com"),
    ("Åsa@example.com", "åsa@example.com"),
    ("Ωmega@example.com", "ωmega@example.com"),
    ("İnci@example.com", "inci@example.com"),
    ("ﬀ@example.com", "ff@example.com"),  # NFKC would merge these
    ("User@strict.example", "user@strict.example"),
    ("user+tag@example.com", "user@example.com"),
    ("user@example.com", "user@example.org"),
]


@pytest.mark.parametrize(("one", "other"), DISTINCT)
def test_distinct_mailboxes_have_distinct_identities(one: str, other: str) -> None:
    """Non-ASCII characters and case on case-sensitive domains are never folded together."""
    assert IDS.of(one) != IDS.of(other)


# --- Identities: properties ------------------------------------------------------------------

_ASCII_LOCAL = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,20}\Z").filter(
    lambda s: ".." not in s and not s.endswith(".")
)
_DOMAIN_SPELLINGS = [
    # spellings of one domain: (unicode, punycode, shouting)
    ("bücher.de", "xn--bcher-kva.de", "BÜCHER.DE"),
    ("example.com", "example.com", "EXAMPLE.COM"),
    ("中文.example", "xn--fiq228c.example", "XN--FIQ228C.EXAMPLE"),
    ("gmail.com", "GMail.com", "GMAIL.COM"),
]


@FAST
@given(
    local=_ASCII_LOCAL,
    flips=st.lists(st.booleans(), min_size=21, max_size=21),
    spellings=st.sampled_from(_DOMAIN_SPELLINGS),
    unicode_tail=st.sampled_from(["", "ü", "é", "ß", "\u0131", "中"]),
)
def test_equivalent_spellings_share_one_identity(
    local: str, flips: list[bool], spellings: tuple[str, str, str], unicode_tail: str
) -> None:
    """Case of the ASCII local part, domain case, NFC/NFD and U-label/A-label don't matter."""
    flipped = "".join(c.swapcase() if f else c for c, f in zip(local, flips, strict=False))
    base = local + unicode_tail
    variants = [
        f"{base}@{spellings[0]}",
        f"{flipped}{unicode_tail}@{spellings[1]}",
        unicodedata.normalize("NFD", f"{base}@{spellings[2]}"),
        unicodedata.normalize("NFC", f"{flipped}{unicode_tail}@{spellings[0]}"),
    ]
    identities = {IDS.of(v) for v in variants}
    assert len(identities) == 1
    keys = {IDS.key(v) for v in variants}
    assert keys == {RecipientKey(identities.pop(), normalise(variants[0], RULES).split("@")[1])}


@FAST
@given(local=_ASCII_LOCAL, tag=st.from_regex(r"\A[A-Za-z0-9._-]{0,10}\Z"))
def test_plus_tags_fold_only_on_listed_domains(local: str, tag: str) -> None:
    """user+tag shares user's identity on a plus-tag domain and nowhere else."""
    assert IDS.of(f"{local}+{tag}@gmail.com") == IDS.of(f"{local}@GMAIL.com")
    assert IDS.of(f"{local}+{tag}@bücher.de") == IDS.of(f"{local}@xn--bcher-kva.de")
    assert IDS.of(f"{local}+{tag}@example.com") != IDS.of(f"{local}@example.com")


_UNFOLDED = st.sampled_from(["ß", "\u0131", "\u017f", "Å", "å", "Ω", "ω", "İ", "ﬀ", "Σ", "ς", "É"])


@FAST
@given(prefix=_ASCII_LOCAL, char=_UNFOLDED, suffix=st.from_regex(r"\A[a-z0-9]{0,5}\Z"))
def test_non_ascii_is_never_folded_to_ascii_or_case(prefix: str, char: str, suffix: str) -> None:
    """A non-ASCII letter never shares an identity with its lower(), casefold() or NFKC form."""
    original = f"{prefix}{char}{suffix}@example.com"
    for fold in (char.lower(), char.upper(), char.casefold(), unicodedata.normalize("NFKC", char)):
        if unicodedata.normalize("NFC", fold) == char:
            continue
        other = f"{prefix}{fold}{suffix}@example.com"
        assert IDS.of(original) != IDS.of(other)


@FAST
@given(local=_ASCII_LOCAL)
def test_case_matters_on_case_sensitive_domains(local: str) -> None:
    """On a case-sensitive domain, case variants of the local part stay distinct."""
    assume(local.lower() != local.upper())
    assert IDS.of(f"{local.upper()}@strict.example") != IDS.of(f"{local.lower()}@strict.example")
    assert IDS.of(f"{local.upper()}@example.com") == IDS.of(f"{local.lower()}@example.com")


def test_identity_is_a_keyed_hash() -> None:
    """The identity is 64 hex digits and depends on the pepper."""
    identity = IDS.of("user@example.com")
    assert len(identity) == 64 and int(identity, 16) >= 0
    assert Identities(b"q" * 32, RULES).of("user@example.com") != identity
    assert "pppp" not in repr(IDS)


@pytest.mark.parametrize("pepper", [b"", b"x" * 31])
def test_short_peppers_are_refused(pepper: bytes) -> None:
    """A pepper under 32 bytes is refused."""
    with pytest.raises(ValueError, match="32 bytes"):
        Identities(pepper, RULES)
