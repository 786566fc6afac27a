"""DKIM signing throughput: our Signer (shared body hash, OpenSSL) against plain dkimpy.sign.

Run: .venv/bin/python bench/signing.py [--seconds 2] [--threads 2]

Each "copy" is one per-recipient message of about 5 KB whose List-Unsubscribe differs; ours
prepares the body once per message (prepare is timed too, once per batch of COPIES copies).
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization

from gateway.mail.dkim_keys import keygen, load_private_key
from gateway.mail.headers import inject, unsubscribe_fields
from gateway.mail.message import RawMessage
from gateway.mail.signing import Signer
from gateway.settings import DkimKeySettings

COPIES = 50
DOMAIN = "shop.example"
HEADER = (
    b"From: Shop <news@shop.example>\r\nTo: alice@example.org\r\nSubject: Spring sale\r\n"
    b"Date: Mon, 01 Apr 2024 10:00:00 +0000\r\nMessage-ID: <1@shop.example>\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
)
BODY = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.  \r\n" * 68
MESSAGE = HEADER + BODY


def rate(run: Callable[[], int], seconds: float) -> float:
    """Copies per second of ``run`` (which returns how many copies it made)."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += run()
    return done / (time.perf_counter() - start)


def ours(signer: Signer) -> Callable[[], int]:
    """One message: prepare once, then inject and sign COPIES copies."""
    msg = RawMessage.parse(MESSAGE)

    def run() -> int:
        prepared = signer.prepare(msg)
        assert prepared is not None
        for n in range(COPIES):
            copy = inject(msg, unsubscribe_fields(f"https://u.shop.example/u/t{n}", None), "keep")
            signer.sign(prepared, copy or msg).to_bytes()
        return COPIES

    return run


def plain_dkimpy(selector: bytes, pem_or_seed: bytes, algorithm: bytes) -> Callable[[], int]:
    """dkimpy.sign on each full copy (re-parses message and key, hashes the body every time)."""
    msg = RawMessage.parse(MESSAGE)
    include = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version"]
    include += [b"content-type", b"list-unsubscribe", b"list-unsubscribe-post", b"from"]

    def run() -> int:
        for n in range(5):
            copy = inject(msg, unsubscribe_fields(f"https://u.shop.example/u/t{n}", None), "keep")
            data = (copy or msg).to_bytes()
            dkim.sign(
                data,
                selector,
                DOMAIN.encode(),
                pem_or_seed,
                signature_algorithm=algorithm,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=include,
            )
        return 5

    return run


def threaded(signer: Signer, threads: int) -> Callable[[], int]:
    """``ours`` with the copies spread over a thread pool: does OpenSSL release the GIL?"""
    pool = ThreadPoolExecutor(threads)
    msg = RawMessage.parse(MESSAGE)

    def run() -> int:
        prepared = signer.prepare(msg)
        assert prepared is not None

        def one(n: int) -> bytes:
            copy = inject(msg, unsubscribe_fields(f"https://u.shop.example/u/t{n}", None), "keep")
            return signer.sign(prepared, copy or msg).to_bytes()

        list(pool.map(one, range(COPIES)))
        return COPIES

    return run


def dkimpy_key(path: Path, algorithm: str) -> bytes | None:
    """The key as dkimpy.sign takes it: PEM for RSA, base64 seed for Ed25519 (needs PyNaCl)."""
    if algorithm == "rsa-sha256":
        return path.read_bytes()
    if importlib.util.find_spec("nacl") is None:
        return None
    key = load_private_key(path.read_bytes(), "ed25519-sha256")
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw)


def main() -> None:
    """Print copies/s for each algorithm and implementation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/signing.py", *sys.argv[1:]]))
    print(f"message: {len(MESSAGE)} octets, {COPIES} copies per prepared body")
    out = Path(tempfile.mkdtemp())
    for selector, algorithm in (("rsa", "rsa-sha256"), ("ed", "ed25519-sha256")):
        path, _ = keygen(DOMAIN, selector, algorithm, out)  # type: ignore[arg-type]
        setting = DkimKeySettings(
            domain=DOMAIN,
            selector=selector,
            key_file=path,
            algorithm=algorithm,  # type: ignore[arg-type]
        )
        signer = Signer.from_settings([setting])
        fast = rate(ours(signer), args.seconds)
        print(f"{algorithm:15} Signer          {fast:9.0f} copies/s  {1000 / fast:6.3f} ms/copy")
        pooled = rate(threaded(signer, args.threads), args.seconds)
        print(f"{algorithm:15} Signer {args.threads} threads {pooled:9.0f} copies/s")
        material = dkimpy_key(path, algorithm)
        if material is None:
            print(f"{algorithm:15} dkimpy.sign     skipped (needs PyNaCl)")
            continue
        slow = rate(plain_dkimpy(selector.encode(), material, algorithm.encode()), args.seconds)
        print(f"{algorithm:15} dkimpy.sign     {slow:9.0f} copies/s  {1000 / slow:6.3f} ms/copy")


if __name__ == "__main__":
    main()
