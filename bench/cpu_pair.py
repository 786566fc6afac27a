"""How well this machine's CPUs scale: the ceiling for ``serve --workers 2`` vs ``--workers 1``.

Run: .venv/bin/python bench/cpu_pair.py [--rounds 5] [--seconds 3]

Each round runs the same CPU-bound work (pure-Python arithmetic, SHA-256 and RSA-2048
signing, roughly what a gateway worker spends its time on) for ``--seconds``: first one
process pinned to CPU 0 alone, then one process on each of CPU 0 and CPU 1 at once. It prints
the work done per second in each setting and their ratio: with two independent CPUs the ratio
is 2.0; virtual CPUs that share a physical core (or a busy host) give less, and no server can
scale past it. Nothing else should run meanwhile.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing
import os
import statistics
import time

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def work(cpu: int, seconds: float, out: multiprocessing.Queue[float]) -> None:
    """Pin to ``cpu`` and count units of mixed work done in ``seconds``."""
    os.sched_setaffinity(0, {cpu})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = b"x" * 5000
    units = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        total = 0
        for i in range(20_000):
            total += i * i % 7
        for _ in range(20):
            hashlib.sha256(body).digest()
        key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        units += 1
    out.put(units / seconds)


def run(cpus: list[int], seconds: float) -> float:
    """Work per second summed over one process per CPU, all running at once."""
    ctx = multiprocessing.get_context("spawn")
    queue: multiprocessing.Queue[float] = ctx.Queue()
    procs = [ctx.Process(target=work, args=(c, seconds, queue)) for c in cpus]
    for p in procs:
        p.start()
    rates = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(rates)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        parser.error("needs two CPUs")
    ratios = []
    for n in range(args.rounds):
        one = run([0], args.seconds)
        two = run([0, 1], args.seconds)
        ratios.append(two / one)
        print(
            f"round {n + 1}: CPU 0 alone {one:.1f}/s, CPUs 0+1 {two:.1f}/s, ratio {two / one:.2f}"
        )
    print(
        f"ratio over {args.rounds} rounds: median {statistics.median(ratios):.2f}, "
        f"min {min(ratios):.2f}, max {max(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
