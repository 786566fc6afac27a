"""The store contract, continued: how consents were collected, the notice catalogue, contact
activity and consent counts (migration 0005). Every backend runs it (subclass
:class:`EvidenceContract` beside :class:`~tests.store_contract.StoreContract`).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from suppression.criteria import Collection, ConsentMethod, Notice
from suppression.model import ConsentStatus
from suppression.store import NOTICE_LOCKED, Conflict, ConsentEntry
from tests.support.store_contract import ALICE, IN, OUT, Backend, StoreContract, at, change

TEXT = "We send our newsletter monthly. Withdraw at any time from any email."


def notice(version: str = "1", text: str = TEXT, **kw: object) -> Notice:
    """A notice version asking for the newsletter, with its text and that text's hash."""
    fields: dict[str, object] = {
        "id": "signup",
        "version": version,
        "language": "en",
        "purposes": ("newsletter", "partners"),
        "controller": "Shop SAS",
        "right_to_withdraw": True,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
        "text": text,
    }
    fields.update(kw)
    return Notice(**fields)  # type: ignore[arg-type]


DOUBLE = Collection(
    method=ConsentMethod.DOUBLE_OPT_IN,
    notice_id="signup",
    notice_version="1",
    pre_ticked=False,
    bundled=False,
    conditional=False,
)


class EvidenceContract:
    """Behaviour every backend must have for the evidence of consent."""

    async def test_collection_round_trips_and_is_in_the_ledger(self, backend: Backend) -> None:
        """How a consent was collected is stored with it, read back by every read, and
        carried in its ledger event's detail (covered by the chain)."""
        store = backend.store
        await store.put_notice(notice(), actor="dpo", at=at(0))
        result = await store.record_consent(replace(change(minute=1), collection=DOUBLE))
        assert result.applied and result.consent is not None
        assert result.consent.collection == DOUBLE
        facts = (await store.facts([ALICE], at(2)))["id-alice"]
        assert facts.consents["newsletter"].collection == DOUBLE
        record = await store.contact_record("id-alice")
        assert record.consents[0].collection == DOUBLE
        (entry,) = await store.list_consents()
        assert entry.consent.collection == DOUBLE
        given = record.ledger[-1]
        assert given.kind == "consent-given"
        assert given.detail["method"] == "double-opt-in"
        assert (given.detail["notice_id"], given.detail["notice_version"]) == ("signup", "1")
        assert given.detail["bundled"] is False and "provider" not in given.detail
        await StoreContract().test_ledger_hash_chain_is_intact(backend)

    async def test_consent_without_collection_reads_as_unknown(self, backend: Backend) -> None:
        """A consent recorded without saying how it was collected reads back as nothing on
        record, and its ledger detail is the same as before migration 0005."""
        await backend.store.record_consent(change())
        facts = (await backend.store.facts([ALICE], at(1)))["id-alice"]
        assert facts.consents["newsletter"].collection == Collection()
        event = (await backend.store.contact_record("id-alice")).ledger[0]
        assert set(event.detail) == {"status", "basis", "explicit"}

    async def test_withdrawal_keeps_what_was_agreed_to(self, backend: Backend) -> None:
        """A withdrawal keeps the collection of the consent it withdraws."""
        store = backend.store
        await store.put_notice(notice(), actor="dpo", at=at(0))
        await store.record_consent(replace(change(minute=1), collection=DOUBLE))
        withdrawn = await store.record_consent(change(OUT, minute=2))
        assert withdrawn.consent is not None and withdrawn.consent.status is OUT
        assert withdrawn.consent.collection == DOUBLE

    async def test_unknown_notice_is_refused(self, backend: Backend) -> None:
        """A consent naming a notice version the store does not hold is refused whole."""
        with pytest.raises(ValueError, match="unknown notice"):
            await backend.store.record_consent(replace(change(), collection=DOUBLE))
        with pytest.raises(ValueError, match="unknown notice"):
            await backend.store.apply_batch([replace(change(), collection=DOUBLE)])
        assert not await backend.raw_fetch("SELECT 1 FROM consents")
        assert not await backend.raw_fetch("SELECT 1 FROM ledger")

    async def test_put_notice_adds_repeats_replaces_then_locks(self, backend: Backend) -> None:
        """A notice version is added, the same again changes nothing, it may be corrected
        until a consent names it, and from then on it never changes (the store refuses, and
        so does the database itself)."""
        store = backend.store
        added = await store.put_notice(notice(), actor="dpo", at=at(0))
        assert added.changed and added.added and added.notice.created_at == at(0)
        assert added.notice.locked_at is None
        again = await store.put_notice(notice(), actor="dpo", at=at(1))
        assert not again.changed and again.notice == added.notice
        fixed = notice(text=TEXT + " Typo fixed.")
        replaced = await store.put_notice(fixed, actor="dpo", at=at(2))
        assert replaced.changed and not replaced.added and replaced.notice.text == fixed.text
        await store.record_consent(replace(change(minute=3), collection=DOUBLE))
        (held,) = await store.notices([("signup", "1")])
        assert held.locked_at == at(3) and held.text == fixed.text
        with pytest.raises(Conflict) as refused:
            await store.put_notice(notice(text="Other words."), actor="dpo", at=at(4))
        assert refused.value.code == NOTICE_LOCKED
        assert (await store.put_notice(fixed, actor="dpo", at=at(5))).changed is False
        with pytest.raises(backend.refused):
            await backend.raw_execute("UPDATE notices SET text = 'forged'")
        with pytest.raises(backend.refused):
            await backend.raw_execute("DELETE FROM notices")
        kinds = [r[0] for r in await backend.raw_fetch("SELECT kind FROM ledger ORDER BY seq")]
        assert kinds == ["notice-added", "notice-replaced", "consent-given"]
        await StoreContract().test_ledger_hash_chain_is_intact(backend)

    async def test_notices_list_and_filter(self, backend: Backend) -> None:
        """notices() lists every version by id and version, or only those asked for."""
        store = backend.store
        for version in ("2", "1"):
            await store.put_notice(notice(version), actor="dpo", at=at(0))
        await store.put_notice(notice(id="other", url="https://example.com/n"), actor="d", at=at(0))
        assert [n.key for n in await store.notices()] == [
            ("other", "1"),
            ("signup", "1"),
            ("signup", "2"),
        ]
        (two,) = await store.notices([("signup", "2"), ("nope", "1")])
        assert two.purposes == ("newsletter", "partners") and two.right_to_withdraw
        assert two.sha256 == hashlib.sha256(TEXT.encode()).hexdigest()

    async def test_activity_moves_last_contact_forward_only(self, backend: Backend) -> None:
        """Activity moves last_contact_at forward (creating the contact), never back; only a
        move is logged."""
        store = backend.store
        moved, contact = await store.record_activity(
            "id-alice", "alice@example.org", kind="click", actor="api", at=at(10)
        )
        assert moved and contact.last_contact_at == at(10) and contact.email
        older = await store.record_activity("id-alice", None, kind="order", actor="api", at=at(5))
        assert older[0] is False and older[1].last_contact_at == at(10)
        same = await store.record_activity("id-alice", None, kind="order", actor="api", at=at(10))
        assert same[0] is False
        facts = (await store.facts([ALICE], at(11)))["id-alice"]
        assert facts.contact is not None and facts.contact.last_contact_at == at(10)
        await store.record_consent(change(minute=1))
        (entry,) = await store.list_consents()
        assert entry == ConsentEntry(
            "id-alice", "alice@example.org", entry.consent, last_contact_at=at(10)
        )
        events = (await store.contact_record("id-alice")).ledger
        assert (events[0].kind, dict(events[0].detail)) == (
            "contact-activity",
            {"kind": "click"},
        )
        assert [e.kind for e in events].count("contact-activity") == 1

    async def test_customer_until_is_kept(self, backend: Backend) -> None:
        """upsert_contact records when a customer relationship ended; None leaves it."""
        store = backend.store
        ended = await store.upsert_contact(
            "id-alice", "a@example.org", actor="crm", at=at(0), customer=False, customer_until=at(0)
        )
        assert ended.customer_until == at(0) and not ended.customer
        later = await store.upsert_contact("id-alice", None, actor="crm", at=at(1), customer=True)
        assert later.customer and later.customer_until == at(0)
        facts = (await store.facts([ALICE], at(2)))["id-alice"]
        assert facts.contact is not None and facts.contact.customer_until == at(0)

    async def test_count_consents_by_purpose_status_and_collection(self, backend: Backend) -> None:
        """Consents are counted by purpose, status and collection in one grouped read."""
        store = backend.store
        await store.put_notice(notice(), actor="dpo", at=at(0))
        for n in range(3):
            who = f"id-{n}"
            await store.record_consent(
                replace(change(identity=who, email=None, minute=1), collection=DOUBLE)
            )
        await store.record_consent(change(identity="id-3", email=None, minute=1))
        await store.record_consent(change(OUT, identity="id-4", email=None, minute=1))
        await store.record_consent(change(identity="id-5", purpose="partners", email=None))
        counts = {
            (c.purpose, c.status, c.collection): c.count for c in await store.count_consents()
        }
        assert counts == {
            ("newsletter", IN, DOUBLE): 3,
            ("newsletter", IN, Collection()): 1,
            ("newsletter", ConsentStatus.OPTED_OUT, Collection()): 1,
            ("partners", IN, Collection()): 1,
        }

    async def test_batch_records_collections_as_single_writes_do(self, backend: Backend) -> None:
        """apply_batch stores collections and locks notices as record_consent does."""
        store = backend.store
        await store.put_notice(notice(), actor="dpo", at=at(0))
        results = await store.apply_batch(
            [replace(change(identity=f"id-{n}", minute=1), collection=DOUBLE) for n in range(2)]
        )
        assert all(r.changed for r in results)
        (held,) = await store.notices([("signup", "1")])
        assert held.locked_at == at(1)
        collections = {e.consent.collection for e in await store.list_consents()}
        assert collections == {DOUBLE}
