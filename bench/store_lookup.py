"""Latency of ``Store.facts()`` for 50-recipient messages against a large store.

Builds (once, cached) a SQLite database with 1,000,000 contacts and 2,000,000 consents, plus
identity and domain suppressions, then times ``facts()`` for messages mixing known and unknown
recipients, and ``facts()`` followed by ``policy.decide()`` for every recipient, which grades
each consent against its notice and checks its lifetime (``max_age``). A third of the consents
record no collection (as before migration 0005), a third a double opt-in and a third a
checkbox form, both naming a notice; a quarter of the contacts have a last contact.

    .venv/bin/python bench/store_lookup.py [--contacts N] [--iterations N]
        [--postgres postgresql://postgres@127.0.0.1:5432/test] [--schema sgw_bench] [--data DIR]

The PostgreSQL run fills the schema ``--schema`` (kept between runs, rebuilt if the size
differs).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from suppression.backends import open_store
from suppression.model import Category, Purpose, RecipientKey
from suppression.sql.rows import to_micros
from suppression.store import Store, StoreOptions

PURPOSES = ("newsletter", "partners")
DOMAINS = 5_000
RECIPIENTS = 50
NOW = datetime(2025, 1, 1, tzinfo=UTC)
CONTACT_COLUMNS = [
    "identity",
    "email",
    "audience",
    "customer",
    "customer_since",
    "created_at",
    "updated_at",
]
CONSENT_COLUMNS = [
    "identity",
    "purpose",
    "status",
    "basis",
    "collected_at",
    "source",
    "evidence",
    "withdrawn_at",
    "collection_id",
]
_FORM = '"bundled":false,"conditional":false,"method":"{}","notice_id":"signup",'
_FORM += '"notice_version":"1","pre_ticked":false'
#: The two ways of collection the consents name (collections ids 1 and 2).
COLLECTIONS = (
    "{" + _FORM.format("double-opt-in") + "}",
    "{" + _FORM.format("unticked-checkbox") + "}",
)
#: The collection_id of consent n: nothing on record, a double opt-in, a checkbox form.
COLLECTION_OF = (None, 1, 2)
NOTICE = (
    "INSERT INTO notices (id, version, language, purposes, controller, right_to_withdraw,"
    " sha256, text, url, created_at, locked_at) VALUES ('signup', '1', 'en',"
    " '[\"newsletter\",\"partners\"]', 'Bench SAS', ?, ?, 'Newsletter and partners.', NULL, ?, ?)"
)


def identity(n: int) -> str:
    """A 64-hex-digit identity, like the HMAC the gateway computes."""
    return hashlib.sha256(b"bench-%d" % n).hexdigest()


def domain(n: int) -> str:
    return f"d{n % DOMAINS}.example"


def rows(contacts: int) -> Iterator[tuple[int, str]]:
    for n in range(contacts):
        yield n, identity(n)


def build_sqlite(path: Path, contacts: int) -> None:
    """Schema through the store (migrations), then bulk rows through plain sqlite3."""
    asyncio.run(_open_close(f"sqlite:///{path}"))
    ts = to_micros(NOW - timedelta(days=30))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")  # a throw-away bench build, not consent data
    conn.execute("BEGIN")
    ids = sorted(rows(contacts), key=lambda r: r[1])  # key order: fast WITHOUT ROWID inserts
    conn.executemany(
        "INSERT INTO contacts (identity, email, audience, customer, customer_since, created_at,"
        " updated_at, last_contact_at) VALUES (?, ?, 'b2c', ?, NULL, ?, ?, ?)",
        (
            (i, f"user{n}@{domain(n)}", n % 3 == 0, ts, ts, ts if n % 4 == 0 else None)
            for n, i in ids
        ),
    )
    conn.executemany(
        "INSERT INTO consents (identity, purpose, status, basis, collected_at, source, evidence,"
        " withdrawn_at, collection_id) VALUES (?, ?, ?, 'consent', ?, 'bench',"
        ' \'{"ip":"192.0.2.1"}\', NULL, ?)',
        (
            (i, p, "opted_out" if n % 10 == 0 else "opted_in", ts, COLLECTION_OF[n % 3])
            for n, i in ids
            for p in PURPOSES
        ),
    )
    conn.executemany("INSERT INTO collections (id, spec) VALUES (?, ?)", enumerate(COLLECTIONS, 1))
    conn.execute(NOTICE, (1, "0" * 64, ts, ts))
    conn.executemany(
        "INSERT INTO suppressions (identity, scope, reason, source, created_at)"
        " VALUES (?, 'all', 'bounce', 'bench', ?)",
        ((i, ts) for n, i in ids if n % 50 == 0),
    )
    conn.executemany(
        "INSERT INTO suppressions (domain, scope, reason, source, created_at)"
        " VALUES (?, 'all', 'manual', 'bench', ?)",
        ((domain(n), ts) for n in range(0, DOMAINS, 100)),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


async def build_postgres(url: str, contacts: int, schema: str) -> None:
    """Bulk rows through COPY into the bench schema (created by the store's migrations)."""
    import asyncpg

    dsn, _, _ = url.partition("?")
    conn = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    try:
        exists = await conn.fetchval("SELECT to_regclass('contacts') IS NOT NULL")
        if exists and await conn.fetchval("SELECT count(*) FROM contacts") == contacts:
            return
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await _open_close(url)
        at = NOW - timedelta(days=30)
        ids = list(rows(contacts))
        await conn.executemany(
            "INSERT INTO collections (id, spec) OVERRIDING SYSTEM VALUE VALUES ($1, $2)",
            list(enumerate(COLLECTIONS, 1)),
        )
        await conn.copy_records_to_table(
            "contacts",
            records=[
                (
                    i,
                    f"user{n}@{domain(n)}",
                    "b2c",
                    n % 3 == 0,
                    None,
                    at,
                    at,
                    at if n % 4 == 0 else None,
                )
                for n, i in ids
            ],
            columns=[*CONTACT_COLUMNS, "last_contact_at"],
        )
        evidence = '{"ip":"192.0.2.1"}'

        def status(n: int) -> str:
            return "opted_out" if n % 10 == 0 else "opted_in"

        consents = [
            (i, p, status(n), "consent", at, "bench", evidence, None, COLLECTION_OF[n % 3])
            for n, i in ids
            for p in PURPOSES
        ]
        await conn.copy_records_to_table("consents", records=consents, columns=CONSENT_COLUMNS)
        await conn.execute(NOTICE.replace("?", "${}").format(1, 2, 3, 4), True, "0" * 64, at, at)
        await conn.executemany(
            "INSERT INTO suppressions (identity, scope, reason, source, created_at)"
            " VALUES ($1, 'all', 'bounce', 'bench', $2)",
            [(i, at) for n, i in ids if n % 50 == 0],
        )
        await conn.executemany(
            "INSERT INTO suppressions (domain, scope, reason, source, created_at)"
            " VALUES ($1, 'all', 'manual', 'bench', $2)",
            [(domain(n), at) for n in range(0, DOMAINS, 100)],
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _open_close(url: str) -> None:
    store = await open_store(url)
    await store.close()


def messages(contacts: int, count: int, seed: int = 7) -> list[list[RecipientKey]]:
    """Recipient lists: 80 % known contacts, 20 % unknown addresses."""
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        keys = []
        for _ in range(RECIPIENTS):
            n = rnd.randrange(contacts) if rnd.random() < 0.8 else contacts + rnd.randrange(10**9)
            keys.append(RecipientKey(identity(n), domain(n)))
        out.append(keys)
    return out


def percentiles(samples: Sequence[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"p50 {q[49] * 1e3:.2f} ms  p99 {q[98] * 1e3:.2f} ms  max {max(samples) * 1e3:.2f} ms"


async def measure(store: Store, batches: list[list[RecipientKey]]) -> None:
    from suppression.policy import decide

    for keys in batches[:50]:  # warm the page cache and the statement caches
        await store.facts(keys, NOW)
    lookup, combined = [], []
    purpose = Purpose("newsletter", "Newsletter", max_age=timedelta(days=3 * 365))
    notices = {n.key: n for n in await store.notices()}
    for keys in batches:
        t0 = time.perf_counter()
        facts = await store.facts(keys, NOW)
        t1 = time.perf_counter()
        for key in keys:
            decide(Category.MARKETING, purpose, facts[key.identity], NOW, notices)
        t2 = time.perf_counter()
        lookup.append(t1 - t0)
        combined.append(t2 - t0)
    print(f"  facts() for {RECIPIENTS} recipients, {len(batches)} messages: {percentiles(lookup)}")
    print(f"  facts() + decide() x {RECIPIENTS}:                 {percentiles(combined)}")


async def run(url: str, batches: list[list[RecipientKey]]) -> None:
    store = await open_store(url, StoreOptions(query_timeout=10))
    try:
        await measure(store, batches)
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=Path("/tmp/sgw-bench"))
    parser.add_argument("--postgres", metavar="DSN", help="also measure PostgreSQL at this DSN")
    parser.add_argument("--schema", default="sgw_bench", help="PostgreSQL schema to fill")
    args = parser.parse_args()
    print("command:", " ".join(sys.argv))
    batches = messages(args.contacts, args.iterations)

    path = args.data / f"store-{args.contacts}-evidence.db"
    if not path.exists():
        args.data.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        build_sqlite(path.with_suffix(".tmp"), args.contacts)
        path.with_suffix(".tmp").rename(path)
        print(f"built {path} in {time.perf_counter() - t0:.0f} s")
    print(f"SQLite {path} ({args.contacts:,} contacts, {2 * args.contacts:,} consents)")
    asyncio.run(run(f"sqlite:///{path}", batches))

    if args.postgres:
        url = f"{args.postgres}{'&' if '?' in args.postgres else '?'}schema={args.schema}"
        t0 = time.perf_counter()
        asyncio.run(build_postgres(url, args.contacts, args.schema))
        print(f"PostgreSQL schema {args.schema} ready in {time.perf_counter() - t0:.0f} s")
        asyncio.run(run(url, batches))


if __name__ == "__main__":
    main()
