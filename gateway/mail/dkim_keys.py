"""DKIM key files and DNS records: generate, read, publish.

Key files are PEM PKCS#8 (``BEGIN PRIVATE KEY``) for both algorithms, the format
``openssl genpkey`` writes. Read-only extras for keys made elsewhere: PKCS#1 RSA PEM
(``BEGIN RSA PRIVATE KEY``, opendkim-genkey) and, for Ed25519, dkimpy's ``dknewkey`` format (the
32-byte seed in base64 on one line).
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

Algorithm = Literal["rsa-sha256", "ed25519-sha256"]
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

#: RFC 8301 §3.2: verifiers must accept 1024-4096 bits; signers MUST use at least 1024, and 2048
#: is what the bulk-sender rules expect.
RSA_BITS = 2048
MIN_RSA_BITS = 1024
#: RFC 1035 §3.3: a TXT record is made of character-strings of at most 255 octets each.
DNS_STRING = 255


def load_private_key(data: bytes, algorithm: Algorithm) -> PrivateKey:
    """Parse a key file's content; ValueError says what is wrong with it."""
    text = data.strip()
    if algorithm == "ed25519-sha256" and not text.startswith(b"-----BEGIN"):
        try:
            seed = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise ValueError("neither PEM nor a base64 Ed25519 seed") from None
        if len(seed) != 32:
            raise ValueError(f"an Ed25519 seed is 32 bytes, this one is {len(seed)}")
        return ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    try:
        key = serialization.load_pem_private_key(text, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an unencrypted PEM private key ({exc})") from None
    if algorithm == "rsa-sha256":
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("rsa-sha256 needs an RSA key")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"RSA key of {key.key_size} bits; at least {MIN_RSA_BITS} needed")
        return key
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ValueError("ed25519-sha256 needs an Ed25519 key")
    return key


def public_key_tag(key: PrivateKey) -> tuple[str, str]:
    """``(k=, p=)`` values for the DKIM key record (RFC 6376 §3.6.1, RFC 8463 §4.2)."""
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return "rsa", base64.b64encode(der).decode("ascii")
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519", base64.b64encode(raw).decode("ascii")


def txt_value(key: PrivateKey) -> str:
    """The TXT record's value, unsplit: ``v=DKIM1; k=...; p=...``."""
    kind, public = public_key_tag(key)
    return f"v=DKIM1; k={kind}; p={public}"


def txt_record(domain: str, selector: str, key: PrivateKey) -> str:
    """A zone-file line publishing ``key``, the value split in 255-octet strings."""
    value = txt_value(key)
    strings = " ".join(f'"{value[i : i + DNS_STRING]}"' for i in range(0, len(value), DNS_STRING))
    return f"{selector}._domainkey.{domain.rstrip('.')}. IN TXT {strings}"


def new_private_key(algorithm: Algorithm) -> PrivateKey:
    """A fresh key: RSA-2048 (e=65537) or Ed25519."""
    if algorithm == "rsa-sha256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return ed25519.Ed25519PrivateKey.generate()


def keygen(domain: str, selector: str, algorithm: Algorithm, out_dir: Path) -> tuple[Path, str]:
    """Write a new private key (PEM PKCS#8, mode 0600) and return its path and DNS TXT record.

    An existing file is never overwritten (FileExistsError): replacing a published key by
    accident would break every signature in flight.
    """
    key = new_private_key(algorithm)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    kind = "rsa" if algorithm == "rsa-sha256" else "ed25519"
    path = out_dir / f"{selector}.{domain.rstrip('.')}.{kind}.pem"
    # O_EXCL with mode 0600 at creation: the key is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return path, txt_record(domain, selector, key)
