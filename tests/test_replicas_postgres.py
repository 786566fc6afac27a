"""Several gateway processes on one PostgreSQL schema: shared consent, and killed connections.

Each test starts two real ``suppression-gateway serve`` processes on their own loopback ports,
sharing one throw-away schema and one secrets file, relaying to the recording upstream. Runs when
``SGW_TEST_POSTGRES_DSN`` is set; set but unreachable is a failure, not a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import pytest

from gateway import secrets as secrets_file
from suppression.address import Identities, NormalisationRules
from suppression.changes import ConsentChange
from suppression.ledger import GENESIS, chain_hash
from suppression.model import Basis, ConsentStatus
from suppression.sql.postgres import PostgresStore
from suppression.store import StoreOptions
from suppression.tokens import TokenCodec
from tests.conftest import PURPOSES, message
from tests.support.pg import DSN, schema_url
from tests.support.upstream import Upstream

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not DSN, reason="SGW_TEST_POSTGRES_DSN is not set: no PostgreSQL to test"),
]

asyncpg = pytest.importorskip("asyncpg")

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = "https://unsub.example.net"
ADMIN_TOKEN = "replica-test-admin-token"
START_DEADLINE = 20.0
STOP_DEADLINE = 5.0
#: Seconds between two waves of terminations, and between two opt-outs of one writer (six
#: writers, ten opt-outs each: the writes span about as many waves as there are writes).
KILL_INTERVAL = 0.2
WRITE_PAUSE = 0.2


def free_ports(count: int) -> list[int]:
    """Loopback ports nobody listens on now (all held open together, so all distinct)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@dataclass
class Replica:
    """One gateway process and where it listens."""

    name: str
    smtp_port: int
    http_port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} log ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Cluster:
    """The replicas, the secrets they share, and what the test needs to act as them."""

    replicas: list[Replica]
    store_url: str
    identities: Identities
    tokens: TokenCodec
    schema: str
    logs: list[str] = field(default_factory=list)


def _toml(value: Any) -> str:
    return json.dumps(value)  # JSON strings, numbers, bools and arrays are valid TOML here


def config_text(replica: Replica, store_url: str, secrets_path: Path, relay_url: str) -> str:
    """A complete gateway configuration for one replica."""
    lines = [
        "[smtp]",
        f"listen = {_toml([f'127.0.0.1:{replica.smtp_port}'])}",
        'hostname = "gateway.test"',
        "[[smtp.clients]]",
        'name = "platform"',
        'networks = ["127.0.0.0/8"]',
        "[relay]",
        f"url = {_toml(relay_url)}",
        "timeout = 5",
        'starttls = "off"',
        "[http]",
        f"listen = {_toml(f'127.0.0.1:{replica.http_port}')}",
        f"public_url = {_toml(PUBLIC)}",
        f"admin_tokens = {_toml([ADMIN_TOKEN])}",
        "[store]",
        f"url = {_toml(store_url)}",
        "pool_size = 4",
        "query_timeout = 2",
        f"secrets_file = {_toml(str(secrets_path))}",
        "[unsubscribe]",
        'mailto_domain = "unsub.example.net"',
        "rate_limit_per_minute = 100000",
        "[log]",
        'format = "text"',
        'level = "warning"',
        "[policy]",
    ]
    for purpose in PURPOSES:
        lines.append("[[policy.purposes]]")
        lines += [f"{key} = {_toml(value)}" for key, value in purpose.items()]
    return "\n".join(lines) + "\n"


async def _ready(http: aiohttp.ClientSession, replica: Replica, deadline: float) -> None:
    loop = asyncio.get_running_loop()
    assert replica.process is not None
    while True:
        if replica.process.poll() is not None:
            pytest.fail(
                f"{replica.name} exited with {replica.process.returncode}\n" + replica.log_tail()
            )
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with http.get(f"{replica.http}/readyz") as answer:
                if answer.status == 200:
                    return
        if loop.time() > deadline:
            pytest.fail(f"{replica.name} not ready in time\n" + replica.log_tail())
        await asyncio.sleep(0.1)


async def wait_ready(replicas: Sequence[Replica], within: float = START_DEADLINE) -> None:
    """Wait (bounded) until every replica answers ``/readyz`` with 200."""
    deadline = asyncio.get_running_loop().time() + within
    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        await asyncio.gather(*(_ready(http, r, deadline) for r in replicas))


async def _stop(replica: Replica) -> None:
    process = replica.process
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + STOP_DEADLINE
    while process.poll() is None and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait(timeout=STOP_DEADLINE)


@contextlib.asynccontextmanager
async def cluster(
    tmp_path: Path, schema: str, upstream: Upstream, count: int = 2
) -> AsyncIterator[Cluster]:
    """``count`` gateway processes on one schema and one secrets file, all ready."""
    secrets_path = tmp_path / "shared-secrets.json"
    shared = secrets_file.load_or_create(secrets_path, store_has_data=False)  # before any start
    store_url = schema_url(schema)
    ports = free_ports(2 * count)
    replicas = [
        Replica(chr(ord("A") + i), ports[2 * i], ports[2 * i + 1], tmp_path / f"replica-{i}.log")
        for i in range(count)
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SGW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    try:
        for replica in replicas:
            config = tmp_path / f"replica-{replica.name}.toml"
            config.write_text(config_text(replica, store_url, secrets_path, upstream.url))
            with replica.log.open("wb") as log:
                replica.process = subprocess.Popen(
                    [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config)],
                    cwd=tmp_path,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        await wait_ready(replicas)
        identities = Identities(shared.pepper, NormalisationRules(frozenset(), frozenset()))
        names = [p["id"] for p in PURPOSES] + ["platform"]
        tokens = TokenCodec(shared.token_keys, ttl=timedelta(days=400), names=names)
        yield Cluster(replicas, store_url, identities, tokens, schema)
    finally:
        await asyncio.gather(*(_stop(r) for r in replicas))
        for replica in replicas:
            print(replica.log_tail(20))  # shown by pytest when the test fails


@contextlib.asynccontextmanager
async def opened(url: str) -> AsyncIterator[PostgresStore]:
    """A PostgresStore on the cluster's schema, for the test's own reads and writes."""
    store = PostgresStore.from_url(url, StoreOptions(pool_size=2, query_timeout=5))
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def opt_in(store: PostgresStore, identities: Identities, address: str) -> None:
    """An evidenced newsletter opt-in, as a sign-up form would record it."""
    await store.record_consent(
        ConsentChange(
            identity=identities.of(address),
            email=address,
            purpose="newsletter",
            status=ConsentStatus.OPTED_IN,
            basis=Basis.CONSENT,
            source="signup-form",
            actor="test",
            at=datetime.now(UTC) - timedelta(days=1),
            evidence={"ip": "192.0.2.10"},
        )
    )


async def send(replica: Replica, recipients: Sequence[str]) -> tuple[int, str]:
    """One marketing (newsletter) message through a replica: its final reply code and text."""
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=replica.smtp_port, start_tls=False, timeout=10
    )
    content = message(to=", ".join(recipients), category="marketing", purpose="newsletter")
    async with client:
        try:
            await client.sendmail("news@shop.example", list(recipients), content)
        except aiosmtplib.SMTPRecipientsRefused as refused:
            return refused.recipients[0].code, refused.recipients[0].message
        except aiosmtplib.SMTPResponseException as failed:
            return failed.code, failed.message
    return 250, ""


def one_click_url(replica: Replica, content: bytes) -> str:
    """The HTTPS List-Unsubscribe URI of a relayed copy, pointed at the replica's listener."""
    relayed = email.message_from_bytes(content, policy=email.policy.default)
    assert relayed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (https,) = re.findall(r"<(https://[^>]+)>", str(relayed["List-Unsubscribe"]))
    assert https.startswith(PUBLIC + "/u/")
    return replica.http + https.removeprefix(PUBLIC)


def relayed_to(upstream: Upstream) -> set[str]:
    return {rcpt for received in upstream.received for rcpt in received.rcpt_tos}


async def test_opt_out_through_one_replica_blocks_the_next_message_on_the_other(
    tmp_path: Path, schema: str, upstream: Upstream
) -> None:
    """A one-click opt-out posted to replica A blocks the very next message sent through B."""
    address = "alice@example.com"
    async with cluster(tmp_path, schema, upstream) as c:
        a, b = c.replicas
        async with opened(c.store_url) as store:
            await opt_in(store, c.identities, address)  # identity from the shared pepper
        assert await send(a, [address]) == (250, "")
        assert await send(b, [address]) == (250, "")  # B sees the same consent
        (first, _) = upstream.received
        url = one_click_url(a, first.content)
        async with aiohttp.ClientSession() as http:
            body = {"List-Unsubscribe": "One-Click"}
            async with http.post(url, data=body, allow_redirects=False) as answer:
                assert answer.status == 200

        code, text = await send(b, [address])
        assert (code, text[:5]) == (550, "5.7.1")
        assert len(upstream.received) == 2  # nothing relayed after the opt-out
        async with opened(c.store_url) as store:
            record = await store.contact_record(c.identities.of(address))
        (newsletter,) = record.consents
        assert (newsletter.status, newsletter.source) == (ConsentStatus.OPTED_OUT, "one-click")
        assert [e.kind for e in record.ledger] == ["consent-given", "consent-withdrawn"]


@dataclass
class Write:
    """One opt-out request made during the terminations, and the answer it got."""

    address: str
    channel: str  # "one-click" or "api"
    replica: str
    status: int = 0


async def _kill_loop(schema: str, stop: asyncio.Event, interval: float) -> int:
    """Terminate the gateways' server connections every ``interval`` until ``stop``."""
    conn = await asyncpg.connect(DSN)
    killed = 0
    try:
        while not stop.is_set():
            killed += await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                " AND application_name = $1",
                f"suppression-gateway:{schema}",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
    finally:
        await conn.close()
    return killed


async def _write(http: aiohttp.ClientSession, c: Cluster, write: Write, at: datetime) -> None:
    replica = next(r for r in c.replicas if r.name == write.replica)
    if write.channel == "one-click":
        token = c.tokens.mint(c.identities.of(write.address), "newsletter", "platform", at)
        request = http.post(f"{replica.http}/u/{token}", data={"List-Unsubscribe": "One-Click"})
    else:
        body = {
            "email": write.address,
            "purpose": "newsletter",
            "status": "opted_out",
            "source": "replica-test",
            "evidence": {"ip": "192.0.2.20"},
        }
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        request = http.post(f"{replica.http}/api/v1/consents", json=body, headers=headers)
    async with request as answer:
        write.status = answer.status


async def _ledger_chain_is_intact(schema: str) -> int:
    """Check seq continuity and every hash of the ledger; return its length."""
    conn = await asyncpg.connect(DSN, server_settings={"search_path": schema})
    try:
        rows = await conn.fetch(
            "SELECT seq, at, kind, identity, purpose, source, actor, detail::text, prev_hash,"
            " hash FROM ledger ORDER BY seq"
        )
    finally:
        await conn.close()
    prev = GENESIS
    for n, r in enumerate(rows, start=1):
        assert r["seq"] == n and r["prev_hash"] == prev
        fields = (r["at"], r["kind"], r["identity"], r["purpose"], r["source"], r["actor"])
        assert chain_hash(prev, n, *fields, json.loads(r["detail"])) == r["hash"]
        prev = r["hash"]
    return len(rows)


async def test_killed_database_connections_fail_closed_and_lose_no_acknowledged_write(
    tmp_path: Path, schema: str, upstream: Upstream
) -> None:
    """While the server kills the replicas' connections, mail is decided or tempfailed (never
    passed unchecked), every acknowledged opt-out is in the store and ledger, and both recover."""
    consenting = [f"c{i}@example.com" for i in range(6)]
    opted_out = [f"o{i}@example.com" for i in range(6)]
    clicked = [f"u{i}@example.com" for i in range(30)]
    via_api = [f"p{i}@example.com" for i in range(30)]
    async with cluster(tmp_path, schema, upstream) as c:
        a, b = c.replicas
        async with opened(c.store_url) as store:
            for address in consenting + opted_out + clicked + via_api:
                await opt_in(store, c.identities, address)
            for address in opted_out:
                await store.record_consent(
                    ConsentChange(
                        identity=c.identities.of(address),
                        email=address,
                        purpose="newsletter",
                        status=ConsentStatus.OPTED_OUT,
                        basis=Basis.CONSENT,
                        source="test",
                        actor="test",
                        at=datetime.now(UTC),
                    )
                )
        # Closed now: from here on every connection named for this schema is a gateway's.
        writes = [Write(x, "one-click", "AB"[i % 2]) for i, x in enumerate(clicked)]
        writes += [Write(x, "api", "BA"[i % 2]) for i, x in enumerate(via_api)]
        mail: list[tuple[str, str, int, str]] = []
        stop = asyncio.Event()
        now = datetime.now(UTC)

        async def writer(batch: Sequence[Write]) -> None:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                for write in batch:
                    await _write(http, c, write, now)
                    await asyncio.sleep(WRITE_PAUSE)

        async def sender(replica: Replica, n: int) -> None:
            while not stop.is_set():
                to = (consenting if n % 2 else opted_out)[n % 6]
                code, text = await send(replica, [to])
                mail.append((replica.name, to, code, text))
                n += 1

        killer = asyncio.create_task(_kill_loop(schema, stop, KILL_INTERVAL))
        senders = [asyncio.create_task(sender(r, i)) for i, r in enumerate([a, b, a, b])]
        await asyncio.sleep(0.2)  # the first terminations land before the writes
        async with asyncio.timeout(30):
            await asyncio.gather(*(writer(writes[i::6]) for i in range(6)))
            await asyncio.sleep(0.3)
            stop.set()
            killed = await killer
            await asyncio.gather(*senders)

        assert killed > 0
        # Never passed unchecked: an opted-out recipient is refused or tempfailed, never relayed.
        for replica, to, code, text in mail:
            if code == 451:
                assert text.startswith("4.3.0"), (replica, to, code, text)
            elif to in opted_out:
                assert (code, text[:5]) == (550, "5.7.1"), (replica, to, code, text)
            else:
                assert code == 250, (replica, to, code, text)
        assert not relayed_to(upstream) & set(opted_out + clicked + via_api)
        assert any(code == 250 for *_, code, _ in mail)

        # Every opt-out that got a success reply is durable, with its ledger event.
        accepted = [w for w in writes if w.status == 200]
        refused = [w for w in writes if w.status != 200]
        # A refused write says so with 503 (retry later), never a 500.
        assert all(w.status == 503 for w in refused), refused
        assert accepted
        await wait_ready(c.replicas, within=10)
        async with opened(c.store_url) as store:
            for write in accepted:
                record = await store.contact_record(c.identities.of(write.address))
                (consent,) = record.consents
                assert consent.status is ConsentStatus.OPTED_OUT, write
                assert record.ledger[-1].kind == "consent-withdrawn", write
                source = "one-click" if write.channel == "one-click" else "replica-test"
                assert record.ledger[-1].source == source, write
            committed = 0  # refused but written anyway (the reply was lost): harmless
            for write in refused:
                record = await store.contact_record(c.identities.of(write.address))
                committed += record.consents[0].status is ConsentStatus.OPTED_OUT
        assert await _ledger_chain_is_intact(schema) >= len(consenting + clicked) + len(accepted)

        # Recovered: both replicas decide normally again, with no tempfail.
        done = [w.address for w in accepted]
        for replica in (a, b):
            assert await send(replica, consenting[:2]) == (250, "")
            for chunk in (done[:30], done[30:], opted_out):
                if chunk:
                    code, text = await send(replica, chunk)
                    assert (code, text[:5]) == (550, "5.7.1"), (replica.name, code, text)
        assert not relayed_to(upstream) & set(opted_out + done)
        statuses = sorted((w.channel, w.status) for w in refused)
        replies = sorted((code, text[:5]) for *_, code, text in mail)
        print(
            f"terminated {killed} connections; {len(accepted)} writes ok, refused "
            f"{dict(Counter(statuses))} ({committed} committed anyway); "
            f"mail {dict(Counter(replies))}"
        )
