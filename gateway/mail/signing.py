"""DKIM signing (RFC 6376 rsa-sha256, RFC 8463 ed25519-sha256), relaxed/relaxed.

dkimpy supplies canonicalisation and header selection; keys are parsed once at start and the
signature itself is made by ``cryptography`` (OpenSSL), not dkimpy's pure-Python RSA. The body
hash is computed once per message by :meth:`Signer.prepare` and reused for every per-recipient
copy, which differ only in header fields.

Cost (``bench/signing.py``, 5 KB message, 2-core machine): ``prepare`` ~0.18 ms per message,
``sign`` ~0.32 ms per RSA-2048 copy (almost all of it the OpenSSL private-key operation), ~0.06 ms
per Ed25519 copy. A 100-recipient message is ~35 ms of CPU: callers should sign all the copies of
a message in one ``asyncio.to_thread`` call rather than on the event loop. cryptography releases
the GIL around RSA signing (measured: the loop keeps running while a thread signs), so that work
also overlaps with the loop on a second core.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses

import dkim
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy

from gateway.mail.dkim_keys import Algorithm, PrivateKey, load_private_key
from gateway.mail.message import CRLF, RawMessage
from gateway.settings import ConfigError, DkimKeySettings

#: RFC 6376 §5.4.1 recommends these; RFC 8058 §4 needs both List-Unsubscribe fields signed,
#: RFC 9477 §3.2 CFBL-Address (and, with it, the CFBL-Feedback-ID it reports back).
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "cfbl-address",
    "cfbl-feedback-id",
)
#: Listed once more than present (RFC 6376 §8.15): a second such field added later breaks the
#: signature instead of being shown to the reader. RFC 9477 §3.2 wants CFBL-Address signed.
OVERSIGNED = frozenset(
    {"from", "list-unsubscribe", "list-unsubscribe-post", "cfbl-address", "cfbl-feedback-id"}
)
_SIGNED = frozenset(SIGNED_HEADERS)
_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
_FIELD_NAME = b"DKIM-Signature"
#: RFC 6376 §3.1/§3.5: selector and d= are dot-separated LDH labels (A-labels for IDNs).
_DNS_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
#: RFC 5322 §2.1.1: keep the signature's lines within 78 octets.
_WIDTH = 78


class SigningError(ValueError):
    """The message cannot be signed as it is; callers reply ``554 5.6.0``."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A parsed private key for one (domain, selector, algorithm)."""

    domain: str
    selector: str
    algorithm: Algorithm
    private_key: PrivateKey = field(repr=False)

    def sign_digest(self, digest: bytes) -> bytes:
        """Sign the SHA-256 header hash: PKCS#1 v1.5 (RSA) or Ed25519 over the digest (RFC 8463)."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(
                digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256())
            )
        return self.private_key.sign(digest)


@dataclass(frozen=True, slots=True)
class PreparedBody:
    """A message's signing keys and body hash, shared by all its per-recipient copies."""

    domain: str
    keys: tuple[SigningKey, ...]
    #: base64 SHA-256 of the relaxed-canonical body (the ``bh=`` tag); both algorithms use it.
    body_hash: bytes
    source: RawMessage = field(repr=False)
    from_fields: tuple[bytes, ...] = field(repr=False)

    @property
    def signed_by(self) -> tuple[tuple[str, str], ...]:
        """``(domain, algorithm)`` of each signature :meth:`Signer.sign` adds, for metrics."""
        return tuple((key.domain, key.algorithm) for key in self.keys)


def relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 relaxed body canonicalisation, as dkimpy computes it.

    A body with no tab, no run of spaces and no space before a line end (most mail) only loses
    its trailing empty lines; dkimpy's regular expressions are kept for everything else. The
    SMTP layer has already refused bare CR and LF. Equality is a property test.
    """
    if b"\t" in body or b"  " in body or b" \r\n" in body or body.endswith(b" "):
        canonical: bytes = _RELAXED.canonicalize_body(body)
        return canonical
    stripped = body.rstrip(b"\r\n")
    return stripped + b"\r\n" if stripped else b""


def relaxed_headers(headers: Sequence[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """RFC 6376 §3.4.2 relaxed header canonicalisation, as dkimpy computes it.

    dkimpy runs two regular expressions on every field (~3 us each); a value with no line
    break left once unfolded, no tab and no run of spaces (most fields) only needs unfolding
    and stripping. Other values go through dkimpy. Equality is a property test.
    """
    canonical = []
    for name, value in headers:
        unfolded = value.replace(b"\r\n", b"")
        if b"\n" in unfolded or b"\t" in unfolded or b"  " in unfolded:
            canonical += _RELAXED.canonicalize_headers([(name, value)])
        else:
            canonical.append((name.lower().rstrip(), unfolded.strip() + b"\r\n"))
    return canonical


class _RelaxedHeaders:
    """What ``dkim.hash_headers`` needs of a canonicalisation policy, with the fast path."""

    canonicalize_headers = staticmethod(relaxed_headers)


def normalise_domain(domain: str) -> str:
    """Lowercase, no trailing dot, IDNA (A-label) form when it has non-ASCII characters."""
    domain = domain.strip().rstrip(".").lower()
    if not domain.isascii():
        # A name IDNA refuses matches no configured key, so the message goes unsigned.
        with contextlib.suppress(UnicodeError):
            domain = domain.encode("idna").decode("ascii")
    return domain


#: A From value of one plain mailbox: ``local@domain``, ``<local@domain>`` or ``Words
#: <local@domain>`` (atoms only: no quotes, comments, groups or routes).
_PLAIN_FROM = re.compile(
    r"\s*(?:(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\s+)*(?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+\s*)?<"
    r"(?P<bracketed>[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?P<d1>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*))>"
    r"|(?P<bare>[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?P<d2>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)))\s*"
)


def _plain_from_domain(value: str) -> str | None:
    """The domain of a plain one-mailbox From value as ``getaddresses`` reads it, without its
    parser (~35 us); None for any other form (property-tested against the parser)."""
    match = _PLAIN_FROM.fullmatch(value)
    if match is None:
        return None
    address = match["bracketed"] or match["bare"]
    local = address.rpartition("@")[0]
    if local.startswith(".") or local.endswith(".") or ".." in local:
        return None  # leave dot-atom edge cases to the parser
    return normalise_domain(match["d1"] or match["d2"])


def from_domain(msg: RawMessage) -> str:
    """The domain of the single From mailbox; SigningError when there is none or several."""
    values = msg.get_all("from")
    if len(values) != 1:
        # RFC 5322 §3.6: exactly one From field.
        raise SigningError(f"{len(values)} From fields; exactly one is needed")
    plain = _plain_from_domain(values[0])
    if plain:
        return plain
    addresses = [addr for _, addr in getaddresses(values) if "@" in addr]
    domains = {normalise_domain(addr.rpartition("@")[2]) for addr in addresses}
    if len(domains) != 1 or "" in domains:
        raise SigningError("From field holds no single address domain")
    return domains.pop()


def header_names(msg: RawMessage) -> list[bytes]:
    """The ``h=`` list: signed fields once per occurrence, oversigned ones once more."""
    counts = {name: 0 for name in SIGNED_HEADERS}
    for name, _ in msg.fields:
        if name in counts:
            counts[name] += 1
    names: list[bytes] = []
    for name in SIGNED_HEADERS:
        total = counts[name] + (name in OVERSIGNED)
        names.extend([name.encode("ascii")] * total)
    return names


def _fold(atoms: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Join ``(separator, text)`` atoms into a folded field; a fold is FWS (RFC 6376 §3.2)."""
    lines = [_FIELD_NAME + b":"]
    for separator, text in atoms:
        if len(lines[-1]) + len(separator) + len(text) > _WIDTH and lines[-1].strip():
            lines.append(b" " + text)
        else:
            lines[-1] += separator + text
    return CRLF.join(lines)


def _fold_signature(head: bytes, signature: bytes) -> bytes:
    """Append the base64 ``b=`` value to ``head`` across lines (FWS allowed inside it)."""
    last_line = head[head.rfind(CRLF) + 2 :] if CRLF in head else head
    room = max(_WIDTH - len(last_line), 0)
    pieces = [signature[:room]]
    rest = signature[room:]
    while rest:
        pieces.append(b" " + rest[: _WIDTH - 1])
        rest = rest[_WIDTH - 1 :]
    return head + CRLF.join(pieces) + CRLF


class Signer:
    """Signs messages with the configured keys of their From domain."""

    def __init__(self, keys: Iterable[SigningKey]) -> None:
        self._keys: dict[str, tuple[SigningKey, ...]] = {}
        for key in keys:
            domain = normalise_domain(key.domain)
            self._keys[domain] = (*self._keys.get(domain, ()), key)

    @classmethod
    def from_settings(cls, keys: list[DkimKeySettings]) -> Signer:
        """Read and parse every ``[[dkim.keys]]`` file once; ConfigError names the bad option."""
        loaded: list[SigningKey] = []
        seen: set[tuple[str, str]] = set()
        for index, item in enumerate(keys):
            option = f"dkim.keys[{index}]"
            pair = (normalise_domain(item.domain), item.algorithm)
            if pair in seen:
                raise ConfigError(f"{option}: a second {item.algorithm} key for {item.domain}")
            seen.add(pair)
            for name, value in (("domain", pair[0]), ("selector", item.selector)):
                if not _DNS_NAME.fullmatch(value):
                    raise ConfigError(f"{option}.{name}: not a DNS name: {value!r}")
            try:
                data = item.key_file.read_bytes()
            except OSError as exc:
                raise ConfigError(
                    f"{option}.key_file: cannot read {item.key_file}: {exc.strerror}"
                ) from None
            try:
                private = load_private_key(data, item.algorithm)
            except ValueError as exc:
                raise ConfigError(f"{option}.key_file: {item.key_file}: {exc}") from None
            loaded.append(SigningKey(pair[0], item.selector, item.algorithm, private))
        return cls(loaded)

    @property
    def domains(self) -> frozenset[str]:
        """Domains with at least one key."""
        return frozenset(self._keys)

    def prepare(self, msg: RawMessage) -> PreparedBody | None:
        """Hash the body once; None when the From domain has no key (relay it unsigned)."""
        keys = self._keys.get(from_domain(msg))
        if not keys:
            return None
        try:
            canonical = relaxed_body(bytes(msg.body))
        except Exception as exc:  # dkimpy raises bare errors on input it does not expect
            raise SigningError(f"cannot canonicalise the body: {exc}") from exc
        body_hash = base64.b64encode(hashlib.sha256(canonical).digest())
        from_fields = tuple(raw for name, raw in msg.fields if name == "from")
        return PreparedBody(keys[0].domain, keys, body_hash, msg, from_fields)

    def sign(
        self, prepared: PreparedBody, msg_copy: RawMessage, *, now: float | None = None
    ) -> RawMessage:
        """``msg_copy`` (same body and From as prepared) with its DKIM-Signature field(s) on top."""
        if not prepared.source.same_body(msg_copy):
            raise ValueError("the copy's body differs from the one prepared")
        if tuple(raw for name, raw in msg_copy.fields if name == "from") != prepared.from_fields:
            raise ValueError("the copy's From differs from the one prepared")
        include = header_names(msg_copy)
        try:
            selected = [
                (raw[: raw.index(b":")], raw[raw.index(b":") + 1 :])
                for name, raw in msg_copy.fields
                if name in _SIGNED
            ]
            headers = relaxed_headers(selected)
        except Exception as exc:
            raise SigningError(f"cannot canonicalise the header: {exc}") from exc
        stamp = str(int(time.time() if now is None else now)).encode("ascii")
        added = [
            self._signature(key, headers, include, prepared.body_hash, stamp)
            for key in prepared.keys
        ]
        return msg_copy.with_prepended(added)

    @staticmethod
    def _signature(
        key: SigningKey,
        headers: list[tuple[bytes, bytes]],
        include: list[bytes],
        body_hash: bytes,
        stamp: bytes,
    ) -> bytes:
        tags = [b"v=1", b"a=" + key.algorithm.encode(), b"c=relaxed/relaxed"]
        tags += [b"d=" + key.domain.encode(), b"s=" + key.selector.encode(), b"t=" + stamp]
        atoms = [(b" ", tag + b";") for tag in tags]
        atoms += [(b" ", b"h=" + include[0])] + [(b"", b":" + name) for name in include[1:]]
        atoms[-1] = (atoms[-1][0], atoms[-1][1] + b";")
        # b= last and empty while hashing (RFC 6376 §3.7): its value is appended afterwards, so
        # the bytes hashed are exactly those sent.
        atoms += [(b" ", b"bh=" + body_hash + b";"), (b" ", b"b=")]
        head = _fold(atoms)
        value = head[len(_FIELD_NAME) + 1 :]
        hasher = hashlib.sha256()
        try:
            dkim.hash_headers(hasher, _RelaxedHeaders, headers, include, (_FIELD_NAME, value), None)
        except Exception as exc:
            raise SigningError(f"cannot hash the header: {exc}") from exc
        signature = base64.b64encode(key.sign_digest(hasher.digest()))
        return _fold_signature(head, signature)
