"""The store contract: one suite every backend runs (subclass :class:`StoreContract`).

A backend's test module provides a ``backend`` fixture yielding an open :class:`Backend`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from suppression.changes import ConsentChange, ConsentResult, ContactUpdate, NewSuppression, Write
from suppression.ledger import GENESIS, chain_hash
from suppression.ledger_check import ChainCheck
from suppression.model import (
    Audience,
    Basis,
    ConsentStatus,
    Contact,
    LedgerEvent,
    RecipientKey,
    Scope,
    SuppressionReason,
)
from suppression.sql.rows import from_micros
from suppression.store import (
    Conflict,
    ConsentEntry,
    NotFound,
    Store,
    StoreError,
    SuppressionFilter,
)
from tests.support.feedback_contract import FeedbackContract

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(minutes: int) -> datetime:
    """A fixed test time, ``minutes`` after :data:`T0`."""
    return T0 + timedelta(minutes=minutes)


@dataclass
class Backend:
    """An open store plus raw SQL access to its database, for checks the API cannot make."""

    store: Store
    raw_fetch: Callable[[str], Awaitable[Sequence[Sequence[Any]]]]
    raw_execute: Callable[[str], Awaitable[None]]
    #: What :attr:`raw_execute` raises when a trigger refuses a statement.
    refused: type[BaseException]


def change(
    status: ConsentStatus = ConsentStatus.OPTED_IN,
    *,
    identity: str = "id-alice",
    purpose: str = "newsletter",
    minute: int = 0,
    explicit: bool = True,
    evidence: dict[str, Any] | None = None,
    email: str | None = "alice@example.org",
) -> ConsentChange:
    """A consent change with sensible defaults (explicit, with evidence)."""
    return ConsentChange(
        identity=identity,
        email=email,
        purpose=purpose,
        status=status,
        basis=Basis.CONSENT,
        source="form" if explicit else "import",
        actor="test",
        at=at(minute),
        evidence={"ip": "192.0.2.1"} if evidence is None else evidence,
        explicit=explicit,
    )


def suppression(minute: int = 0, **kw: Any) -> NewSuppression:
    """An identity suppression (unsubscribe, scope all) unless ``kw`` says otherwise."""
    fields: dict[str, Any] = {
        "scope": Scope.ALL,
        "reason": SuppressionReason.UNSUBSCRIBE,
        "source": "test",
        "actor": "test",
        "at": at(minute),
    }
    fields.update(kw)
    if "domain" not in fields:
        fields.setdefault("identity", "id-alice")
    return NewSuppression(**fields)


OUT = ConsentStatus.OPTED_OUT
IN = ConsentStatus.OPTED_IN
ALICE = RecipientKey("id-alice", "example.org")
BOB = RecipientKey("id-bob", "example.net")


def writes_for(identity: str) -> list[Write]:
    """A mix of writes on one identity exercising every rule the per-row methods apply."""
    email = f"{identity}@example.org"

    def c(status: ConsentStatus, minute: int, **kw: Any) -> ConsentChange:
        return change(status, identity=identity, email=email, minute=minute, **kw)

    def s(minute: int, **kw: Any) -> NewSuppression:
        return suppression(minute, identity=identity, email=email, **kw)

    return [
        c(IN, 0),
        c(OUT, 1, explicit=False, evidence={}),
        c(IN, 2, explicit=False, evidence={}),  # an import: the opt-out wins (refused, logged)
        c(OUT, 1, explicit=False, evidence={}),  # older withdrawal: unchanged
        s(3, scope=Scope.PURPOSE, purpose="newsletter"),
        s(3, scope=Scope.PURPOSE, purpose="newsletter"),  # the same again: idempotent
        s(4, expires_at=at(10), reason=SuppressionReason.BOUNCE),
        s(5, expires_at=at(20), reason=SuppressionReason.BOUNCE),  # extends it
        s(6, expires_at=at(15), reason=SuppressionReason.BOUNCE),  # never shortens it
        c(IN, 7),  # explicit, evidenced, newer: lifts the opt-out and the purpose unsubscribe
        ContactUpdate(identity, None, "crm", at(8), audience=Audience.B2B, customer=True),
        c(IN, 9, purpose="partners", explicit=False, evidence={}),
    ]


def comparable(record: Any) -> Any:
    """A contact record without what differs between two identities (ids, seqs, the identity)."""

    def event(e: LedgerEvent) -> tuple[Any, ...]:
        detail = {k: v for k, v in e.detail.items() if k != "id"}
        return (e.kind, e.at, e.purpose, e.source, e.actor, dict(e.evidence), detail)

    contact = record.contact
    return (
        (contact.audience, contact.customer, contact.email.split("@")[1]) if contact else None,
        list(record.consents),
        [(s.scope, s.reason, s.purpose, s.created_at, s.expires_at) for s in record.suppressions],
        [event(e) for e in record.ledger],
    )


async def per_row(store: Store, w: Write) -> tuple[bool, Any]:
    """Apply one write with its per-row method; (changed, value) as apply_batch reports it."""
    if isinstance(w, ConsentChange):
        result = await store.record_consent(w)
        return result.applied, result
    if isinstance(w, NewSuppression):
        before = await store.list_suppressions(SuppressionFilter(identity=w.identity))
        s = await store.add_suppression(w)
        return s not in before, s
    assert isinstance(w, ContactUpdate)
    contact = await store.upsert_contact(
        w.identity,
        w.email,
        actor=w.actor,
        at=w.at,
        audience=w.audience,
        customer=w.customer,
        customer_since=w.customer_since,
    )
    return True, contact


class StoreContract(FeedbackContract):
    """Behaviour every :class:`~suppression.store.Store` backend must have (the feedback loop's
    part is in :mod:`tests.support.feedback_contract`)."""

    async def test_unknown_identity_has_empty_facts(self, backend: Backend) -> None:
        """An identity the store never heard of maps to empty facts, not a missing key."""
        facts = await backend.store.facts([BOB], at(0))
        assert set(facts) == {"id-bob"}
        assert facts["id-bob"].contact is None
        assert not facts["id-bob"].consents and not facts["id-bob"].suppressions

    async def test_no_keys_no_facts(self, backend: Backend) -> None:
        """Asking for no recipients answers an empty mapping."""
        assert await backend.store.facts([], at(0)) == {}

    async def test_facts_hold_contact_consents_and_suppressions(self, backend: Backend) -> None:
        """Facts of a known identity carry its contact, consents by purpose and suppressions."""
        store = backend.store
        await store.record_consent(change())
        await store.record_consent(change(purpose="partners", minute=1))
        await store.add_suppression(suppression(2, reason=SuppressionReason.BOUNCE))
        facts = (await store.facts([ALICE, BOB], at(3)))["id-alice"]
        assert facts.contact is not None and facts.contact.email == "alice@example.org"
        assert set(facts.consents) == {"newsletter", "partners"}
        assert facts.consents["newsletter"].evidence == {"ip": "192.0.2.1"}
        assert facts.consents["newsletter"].collected_at == at(0)
        assert [s.reason for s in facts.suppressions] == [SuppressionReason.BOUNCE]

    async def test_domain_suppression_covers_every_recipient_there(self, backend: Backend) -> None:
        """A domain suppression appears in the facts of each recipient at that domain only."""
        carol = RecipientKey("id-carol", "example.org")
        await backend.store.add_suppression(suppression(domain="example.org"))
        facts = await backend.store.facts([ALICE, carol, BOB], at(1))
        assert [s.domain for s in facts["id-alice"].suppressions] == ["example.org"]
        assert [s.domain for s in facts["id-carol"].suppressions] == ["example.org"]
        assert not facts["id-bob"].suppressions

    async def test_expired_suppressions_are_not_facts(self, backend: Backend) -> None:
        """A suppression past its expiry no longer shows up; before it, it does."""
        await backend.store.add_suppression(suppression(expires_at=at(10)))
        assert (await backend.store.facts([ALICE], at(9)))["id-alice"].suppressions
        assert not (await backend.store.facts([ALICE], at(10)))["id-alice"].suppressions

    async def test_consent_and_withdrawal_append_ledger_events(self, backend: Backend) -> None:
        """Recording consent then its withdrawal updates the state and appends two events."""
        store = backend.store
        given = await store.record_consent(change())
        withdrawn = await store.record_consent(change(OUT, minute=5))
        assert given.applied and withdrawn.applied
        assert withdrawn.consent is not None and withdrawn.consent.withdrawn_at == at(5)
        record = await store.contact_record("id-alice")
        kinds = [e.kind for e in record.ledger]
        assert kinds == ["consent-given", "consent-withdrawn"]
        assert record.ledger[0].seq < record.ledger[1].seq
        assert record.ledger[0].evidence == {"ip": "192.0.2.1"}
        assert record.consents[0].status is OUT

    async def test_import_never_lifts_an_opt_out(self, backend: Backend) -> None:
        """A newer non-explicit opt-in (an import) leaves the opt-out in place: opt-out wins."""
        await backend.store.record_consent(change(OUT, minute=0))
        result = await backend.store.record_consent(change(minute=60, explicit=False))
        assert not result.applied and result.reason == "opt-out-wins"
        facts = (await backend.store.facts([ALICE], at(61)))["id-alice"]
        assert facts.consents["newsletter"].status is OUT
        kinds = [e.kind for e in (await backend.store.contact_record("id-alice")).ledger]
        assert kinds == ["consent-withdrawn", "consent-refused"]

    async def test_older_explicit_opt_in_does_not_lift(self, backend: Backend) -> None:
        """An explicit opt-in older than the opt-out does not lift it."""
        await backend.store.record_consent(change(OUT, minute=10))
        result = await backend.store.record_consent(change(minute=5))
        assert not result.applied and result.reason == "opt-out-wins"

    async def test_newer_explicit_opt_in_lifts_purpose_unsubscribe(self, backend: Backend) -> None:
        """A newer explicit opt-in with evidence lifts the opt-out and that purpose's
        unsubscribe, but not a marketing-wide unsubscribe nor a bounce."""
        store = backend.store
        await store.record_consent(change(OUT, minute=0))
        purpose = suppression(0, scope=Scope.PURPOSE, purpose="newsletter")
        lifted = await store.add_suppression(purpose)
        await store.add_suppression(suppression(0, scope=Scope.PURPOSE, purpose="partners"))
        await store.add_suppression(suppression(0, scope=Scope.MARKETING))
        await store.add_suppression(suppression(0, reason=SuppressionReason.BOUNCE))
        result = await store.record_consent(change(minute=30))
        assert result.applied and result.consent is not None and result.consent.status is IN
        left = (await store.facts([ALICE], at(31)))["id-alice"].suppressions
        assert lifted.id not in {s.id for s in left}
        assert {(s.scope, s.reason, s.purpose) for s in left} == {
            (Scope.PURPOSE, SuppressionReason.UNSUBSCRIBE, "partners"),
            (Scope.MARKETING, SuppressionReason.UNSUBSCRIBE, None),
            (Scope.ALL, SuppressionReason.BOUNCE, None),
        }
        kinds = [e.kind for e in (await store.contact_record("id-alice")).ledger]
        assert kinds[-2:] == ["consent-given", "suppression-lifted"]

    async def test_add_suppression_is_idempotent(self, backend: Backend) -> None:
        """Adding the same suppression twice returns the same row and logs it once."""
        first = await backend.store.add_suppression(suppression(0))
        second = await backend.store.add_suppression(suppression(5))
        assert second == first
        flt = SuppressionFilter(identity="id-alice")
        assert len(await backend.store.list_suppressions(flt)) == 1
        kinds = [e.kind for e in (await backend.store.contact_record("id-alice")).ledger]
        assert kinds == ["suppression-added"]

    async def test_re_adding_extends_but_never_shortens(self, backend: Backend) -> None:
        """Re-adding a temporary suppression extends its expiry (or makes it permanent), on
        each kind of target and scope: each has its own unique key."""
        targets: list[dict[str, Any]] = [
            {},
            {"domain": "example.org"},
            {"scope": Scope.PURPOSE, "purpose": "newsletter"},
            {"scope": Scope.PURPOSE, "purpose": "newsletter", "domain": "example.org"},
        ]
        ids = set()
        for target in targets:
            first = await backend.store.add_suppression(suppression(expires_at=at(10), **target))
            shorter = await backend.store.add_suppression(suppression(expires_at=at(5), **target))
            assert shorter.expires_at == at(10) and shorter.id == first.id
            forever = await backend.store.add_suppression(suppression(expires_at=None, **target))
            assert forever.id == first.id and forever.expires_at is None
            ids.add(first.id)
        assert len(ids) == len(targets)

    async def test_add_suppression_needs_exactly_one_target(self, backend: Backend) -> None:
        """A suppression on both or neither of identity and domain is refused."""
        with pytest.raises(ValueError, match="exactly one"):
            await backend.store.add_suppression(suppression(domain="example.org", identity="x"))
        with pytest.raises(ValueError, match="purpose"):
            await backend.store.add_suppression(suppression(scope=Scope.PURPOSE))

    async def test_remove_suppression(self, backend: Backend) -> None:
        """Removing a suppression deletes it and logs it; an unknown id raises NotFound."""
        s = await backend.store.add_suppression(suppression())
        await backend.store.remove_suppression(s.id, actor="admin", at=at(1))
        assert not (await backend.store.facts([ALICE], at(2)))["id-alice"].suppressions
        record = await backend.store.contact_record("id-alice")
        assert [e.kind for e in record.ledger] == ["suppression-added", "suppression-removed"]
        with pytest.raises(NotFound):
            await backend.store.remove_suppression(s.id, actor="admin", at=at(3))

    async def test_erasure_suppression_is_never_removed(self, backend: Backend) -> None:
        """Removing an erasure suppression raises Conflict ("erasure-kept", not a StoreError)
        from inside the store, and leaves the row and the ledger as they were."""
        store = backend.store
        await store.record_consent(change())
        await store.erase("id-alice", actor="dpo", at=at(1))
        erased = SuppressionFilter(identity="id-alice")
        (kept,) = await store.list_suppressions(erased)
        ledger = await backend.raw_fetch("SELECT seq, hash FROM ledger ORDER BY seq")
        with pytest.raises(Conflict) as refused:
            await store.remove_suppression(kept.id, actor="admin", at=at(2))
        assert refused.value.code == "erasure-kept"
        assert not isinstance(refused.value, StoreError)
        assert await store.list_suppressions(erased) == [kept]
        assert await backend.raw_fetch("SELECT seq, hash FROM ledger ORDER BY seq") == ledger

    async def test_list_suppressions_pages_with_exact_filters(self, backend: Backend) -> None:
        """Listing pages by id and filters by exact value (a '%' is no wildcard)."""
        store = backend.store
        for n in range(5):
            await store.add_suppression(suppression(domain=f"d{n}.example"))
        await store.add_suppression(suppression(reason=SuppressionReason.BOUNCE))
        page1 = await store.list_suppressions(SuppressionFilter(limit=2))
        page2 = await store.list_suppressions(SuppressionFilter(limit=2, after_id=page1[-1].id))
        assert [s.domain for s in [*page1, *page2]] == [f"d{n}.example" for n in range(4)]
        assert not await store.list_suppressions(SuppressionFilter(domain="%.example"))
        only = await store.list_suppressions(SuppressionFilter(reason=SuppressionReason.BOUNCE))
        assert [s.identity for s in only] == ["id-alice"]
        scoped = SuppressionFilter(domain="d3.example", scope=Scope.ALL)
        assert [s.domain for s in await store.list_suppressions(scoped)] == ["d3.example"]

    async def test_upsert_contact_changes_only_given_fields(self, backend: Backend) -> None:
        """upsert_contact creates the contact, then updates only the attributes passed."""
        store = backend.store
        created = await store.upsert_contact("id-alice", "alice@example.org", actor="a", at=at(0))
        assert created.audience is Audience.B2C and not created.customer
        updated = await store.upsert_contact(
            "id-alice", None, actor="a", at=at(1), customer=True, customer_since=at(1)
        )
        assert updated.email == "alice@example.org" and updated.customer
        assert updated.customer_since == at(1) and updated.created_at == at(0)

    async def test_contact_record_of_unknown_identity_is_empty(self, backend: Backend) -> None:
        """The access answer for an unknown identity is an empty record."""
        record = await backend.store.contact_record("id-nobody")
        assert record.contact is None
        assert not record.consents and not record.suppressions and not record.ledger

    async def test_erase_keeps_only_the_pseudonymous_block(self, backend: Backend) -> None:
        """Erasure drops the address and evidence, keeps an erasure suppression on the
        identity, logs an anonymised event, and later writes do not bring the address back."""
        store = backend.store
        await store.record_consent(change(evidence={"ip": "192.0.2.7", "ua": "Firefox"}))
        await store.erase("id-alice", actor="dpo", at=at(1))
        record = await store.contact_record("id-alice")
        assert record.contact is not None and record.contact.email is None
        assert all(not c.evidence for c in record.consents)
        assert all(not e.evidence for e in record.ledger)
        assert record.ledger[-1].kind == "erasure"
        await store.add_suppression(suppression(2, email="alice@example.org"))
        facts = (await store.facts([ALICE], at(3)))["id-alice"]
        assert facts.contact is not None and facts.contact.email is None
        reasons = {(s.scope, s.reason) for s in facts.suppressions}
        assert (Scope.ALL, SuppressionReason.ERASURE) in reasons

    async def test_ledger_is_append_only(self, backend: Backend) -> None:
        """UPDATE and DELETE on ledger rows are refused by the database itself."""
        await backend.store.record_consent(change())
        with pytest.raises(backend.refused):
            await backend.raw_execute("UPDATE ledger SET kind = 'forged'")
        with pytest.raises(backend.refused):
            await backend.raw_execute("DELETE FROM ledger")
        rows = await backend.raw_fetch("SELECT kind FROM ledger")
        assert [r[0] for r in rows] == ["consent-given"]

    async def test_ledger_hash_chain_links_every_event(self, backend: Backend) -> None:
        """Each ledger row's hash covers its pseudonymous fields and the previous hash."""
        store = backend.store
        await store.record_consent(change())
        await store.add_suppression(suppression(1, domain="example.net"))
        await store.erase("id-alice", actor="dpo", at=at(2))
        await self.test_ledger_hash_chain_is_intact(backend)
        rows = await backend.raw_fetch("SELECT seq FROM ledger ORDER BY seq")
        assert [r[0] for r in rows] == [1, 2, 3]

    async def test_delivered_is_remembered_until_expiry(self, backend: Backend) -> None:
        """remember_delivered marks identities delivered for a message until ``until``."""
        store = backend.store
        now = datetime.now(UTC)
        await store.remember_delivered("msg-1", ["id-a", "id-b"], now + timedelta(hours=1), now)
        await store.remember_delivered("msg-2", ["id-c"], now - timedelta(seconds=1), now)
        assert await store.delivered("msg-1", ["id-a", "id-c", "id-z"], now) == {"id-a"}
        assert await store.delivered("msg-2", ["id-c"], now) == set()
        assert await store.delivered("msg-1", [], now) == set()
        await store.remember_delivered("msg-3", ["id-d"], now + timedelta(hours=1), now)
        assert not await backend.raw_fetch("SELECT 1 FROM deliveries WHERE message_key = 'msg-2'")

    async def test_injected_now_controls_dedup_expiry(self, backend: Backend) -> None:
        """The caller's ``now``, not the wall clock, decides whether a delivery is remembered:
        remembered until T, it counts at T - 1 s, not at T + 1 s, and is purged only then."""
        store = backend.store
        until, second = at(60), timedelta(seconds=1)  # 2024: long past on the wall clock
        await store.remember_delivered("msg-t", ["id-a"], until, at(0))
        assert await store.delivered("msg-t", ["id-a"], until - second) == {"id-a"}
        assert await store.delivered("msg-t", ["id-a"], until + second) == set()
        await store.remember_delivered("msg-u", ["id-b"], at(120), until - second)
        assert await store.delivered("msg-t", ["id-a"], until - second) == {"id-a"}
        await store.remember_delivered("msg-v", ["id-c"], at(120), until + second)
        assert not await backend.raw_fetch("SELECT 1 FROM deliveries WHERE message_key = 'msg-t'")

    async def test_lookup_is_facts_and_deliveries_in_one(self, backend: Backend) -> None:
        """lookup() returns exactly facts() and delivered() for the same message."""
        store = backend.store
        now = datetime.now(UTC)
        await store.record_consent(change())
        await store.add_suppression(suppression(domain="example.org"))
        await store.remember_delivered("msg-9", ["id-bob"], now + timedelta(hours=1), now)
        await store.remember_delivered("msg-8", ["id-alice"], now + timedelta(hours=1), now)
        keys = [ALICE, BOB]
        result = await store.lookup(keys, now, "msg-9")
        assert result.facts == await store.facts(keys, now)
        assert result.delivered == await store.delivered("msg-9", ["id-alice", "id-bob"], now)
        assert result.delivered == {"id-bob"}
        assert (await store.lookup([], now, "msg-9")).delivered == set()

    async def test_naive_datetimes_are_refused(self, backend: Backend) -> None:
        """A naive datetime is a bug in the caller, refused rather than guessed."""
        with pytest.raises(ValueError, match="naive"):
            await backend.store.facts([ALICE], datetime(2024, 1, 1))

    async def test_closed_store_raises_store_error(self, backend: Backend) -> None:
        """After close, calls raise StoreError (callers fail closed); close twice is fine."""
        await backend.store.close()
        await backend.store.close()
        with pytest.raises(StoreError):
            await backend.store.facts([ALICE], at(0))
        with pytest.raises(StoreError):
            await backend.store.record_consent(change())
        with pytest.raises(StoreError):
            await backend.store.ping()

    async def test_apply_batch_does_what_the_per_row_methods_do(self, backend: Backend) -> None:
        """One batch leaves the same state, results and ledger events as the same writes made
        one call at a time (compared across two identities of one store)."""
        store = backend.store
        expected = [await per_row(store, w) for w in writes_for("id-rows")]
        results = await store.apply_batch(writes_for("id-batch"))
        assert [r.changed for r in results] == [changed for changed, _ in expected]
        for r, (_, value) in zip(results, expected, strict=True):
            assert type(r.value) is type(value)
            if isinstance(value, ConsentResult):
                assert r.value == value
        rows, batch = await store.contact_record("id-rows"), await store.contact_record("id-batch")
        assert comparable(batch) == comparable(rows)
        kinds = [e.kind for e in batch.ledger]
        assert kinds.count("consent-refused") == 1 and "suppression-lifted" in kinds
        assert "suppression-extended" in kinds and kinds[-2] == "contact-updated"
        await self.test_ledger_hash_chain_is_intact(backend)

    async def test_apply_batch_is_all_or_nothing(self, backend: Backend) -> None:
        """A write the per-row method refuses fails the whole batch: nothing is stored."""
        bad = suppression(1, scope=Scope.PURPOSE)  # no purpose: refused
        with pytest.raises(ValueError, match="purpose"):
            await backend.store.apply_batch([change(), suppression(0), bad])
        assert not await backend.raw_fetch("SELECT 1 FROM ledger")
        assert not await backend.raw_fetch("SELECT 1 FROM consents")
        assert not await backend.raw_fetch("SELECT 1 FROM suppressions")
        assert await backend.store.apply_batch([]) == []

    async def test_apply_batch_continues_the_ledger_chain(self, backend: Backend) -> None:
        """Batches and single writes interleave on one unbroken hash chain."""
        store = backend.store
        await store.record_consent(change())
        await store.apply_batch([suppression(1, identity=f"id-{n}") for n in range(5)])
        await store.add_suppression(suppression(2, domain="example.net"))
        await store.apply_batch([change(OUT, minute=3)])
        rows = await backend.raw_fetch("SELECT seq FROM ledger ORDER BY seq")
        assert [r[0] for r in rows] == list(range(1, 9))
        await self.test_ledger_hash_chain_is_intact(backend)

    async def test_ledger_hash_chain_is_intact(self, backend: Backend) -> None:
        """(Helper, also a test on an empty store.) Every event chains to the one before."""
        rows = await backend.raw_fetch(
            "SELECT seq, at, kind, identity, purpose, source, actor, detail, prev_hash, hash"
            " FROM ledger ORDER BY seq"
        )
        prev = GENESIS
        for seq, when, kind, identity, purpose, source, actor, detail, prev_hash, digest in rows:
            when = from_micros(when) if isinstance(when, int) else when
            fields = (when, kind, identity, purpose, source, actor, json.loads(detail))
            assert prev_hash == prev
            assert digest == chain_hash(prev, seq, *fields)
            prev = digest
        # The store's own check agrees, page by page.
        check, after = ChainCheck(), 0
        while page := await backend.store.ledger_events(after, limit=3):
            assert check.feed(page)
            after = page[-1].seq
        assert check.intact and check.events == len(rows)
        assert (check.head_seq, check.head_hash) == ((rows[-1][0], prev) if rows else (0, GENESIS))
        # One identity's events, with the same hashes.
        for who in {r[3] for r in rows if r[3] is not None}:
            mine = await backend.store.ledger_events(identity=who)
            assert [(x.seq, x.hash) for x in mine] == [(r[0], r[9]) for r in rows if r[3] == who]

    async def test_list_consents_and_contacts_page_in_key_order(self, backend: Backend) -> None:
        """Export reads: every consent and contact, by key, page by page; an erased contact
        has no address."""
        store = backend.store
        ids = [f"id-{n:02}" for n in range(7)]
        writes: list[Write] = []
        for ident in reversed(ids):
            writes += [
                change(identity=ident, email=f"{ident}@example.org", purpose=p)
                for p in ("partners", "newsletter")
            ]
        await store.apply_batch(writes)
        await store.erase("id-03", actor="dpo", at=at(1))
        consents: list[ConsentEntry] = []
        after: tuple[str, str] | None = None
        while page := await store.list_consents(after, limit=3):
            consents += page
            after = (page[-1].identity, page[-1].consent.purpose)
        assert [(c.identity, c.consent.purpose) for c in consents] == [
            (i, p) for i in ids for p in ("newsletter", "partners")
        ]
        assert consents[0].email == "id-00@example.org" and consents[0].consent.status is IN
        assert consents[0].consent.evidence == {"ip": "192.0.2.1"}
        assert {c.email for c in consents if c.identity == "id-03"} == {None}
        contacts: list[Contact] = []
        after_id: str | None = None
        while page2 := await store.list_contacts(after_id, limit=4):
            contacts += page2
            after_id = page2[-1].identity
        assert [c.identity for c in contacts] == ids
        assert contacts[1].email == "id-01@example.org" and contacts[3].email is None

    async def test_count_suppressions_by_reason(self, backend: Backend) -> None:
        """Active suppressions by reason: expired ones are not counted, every reason is there."""
        store = backend.store
        assert set((await store.count_suppressions(at(0))).values()) == {0}
        await store.add_suppression(suppression(0))
        await store.add_suppression(suppression(0, domain="example.net"))
        await store.add_suppression(
            suppression(0, reason=SuppressionReason.BOUNCE, expires_at=at(10))
        )
        counts = await store.count_suppressions(at(5))
        assert counts == {r.value: 0 for r in SuppressionReason} | {"unsubscribe": 2, "bounce": 1}
        assert (await store.count_suppressions(at(10)))["bounce"] == 0

    async def test_withdrawal_may_carry_when_consent_was_collected(self, backend: Backend) -> None:
        """An imported withdrawal keeps the original consent date when nothing is held; a held
        record keeps its own; the date is refused on an opt-in or after the withdrawal."""
        store = backend.store
        imported = ConsentChange(
            "id-alice",
            "alice@example.org",
            "newsletter",
            OUT,
            Basis.CONSENT,
            "import",
            "test",
            at(10),
            explicit=False,
            collected_at=at(2),
        )
        result = await store.record_consent(imported)
        assert result.consent is not None and result.consent.collected_at == at(2)
        assert result.consent.withdrawn_at == at(10)
        await store.record_consent(change(identity="id-bob", minute=1))
        held = await store.record_consent(
            replace(imported, identity="id-bob", email=None, collected_at=at(5))
        )
        assert held.consent is not None and held.consent.collected_at == at(1)
        with pytest.raises(ValueError, match="collected_at"):
            await store.record_consent(replace(change(minute=1), collected_at=at(0)))
        with pytest.raises(ValueError, match="collected_at"):
            late = replace(imported, identity="id-carol", email=None, at=at(1), explicit=True)
            await store.apply_batch([late])
