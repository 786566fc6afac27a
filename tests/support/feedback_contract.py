"""The store contract for bounces and complaints (issue 15), part of :class:`StoreContract`.

Kept in its own module: the store's feedback operations (:meth:`Store.record_feedback`,
:meth:`Store.lift_complaints`, the return-path numbers) and what erasure and the access answer
do with their rows.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from suppression.arf import FeedbackType
from suppression.bounces import classify
from suppression.changes import FeedbackChange
from suppression.feedback_rules import DEFAULT_FEEDBACK_POLICY, FeedbackPolicy
from suppression.model import (
    FeedbackKind,
    FeedbackSource,
    RecipientKey,
    Scope,
    SuppressionReason,
)
from suppression.store import Conflict, SuppressionFilter

if TYPE_CHECKING:
    from tests.support.store_contract import Backend

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ALICE = RecipientKey("id-alice", "example.org")
HARD = classify(550, "5.1.1", "550 5.1.1 <alice@example.org>: Recipient address rejected")
SOFT = classify(452, "4.2.2", "452 4.2.2 Mailbox full")
SENDER = classify(550, "5.7.1", "550 5.7.1 client host blocked using zen.spamhaus.org")
NULL_MX = classify(556, "5.1.10", "556 5.1.10 Domain example.org does not accept mail (nullMX)")


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


def bounce(key: str, when: datetime = T0, **kw: Any) -> FeedbackChange:
    """A DSN bounce for alice (hard unless ``bounce=`` says otherwise)."""
    fields: dict[str, Any] = {
        "report_key": key,
        "identity": "id-alice",
        "domain": "example.org",
        "source": FeedbackSource.DSN,
        "actor": "feedback",
        "at": when,
        "bounce": HARD,
        "mta": "mx.example.org",
    }
    fields.update(kw)
    return FeedbackChange(**fields)


def complaint(key: str, kind: FeedbackType = FeedbackType.ABUSE, **kw: Any) -> FeedbackChange:
    fields: dict[str, Any] = {"bounce": None, "complaint": kind, "source": FeedbackSource.FBL}
    return bounce(key, **(fields | kw))


class FeedbackContract:
    """Bounces and complaints, on every backend."""

    async def test_hard_bounce_suppresses_all_mail_with_its_evidence(
        self, backend: Backend
    ) -> None:
        """A hard bounce adds a permanent scope-all bounce suppression in the recording
        transaction; its ledger event names the source and carries the report's evidence."""
        store = backend.store
        (result,) = await store.record_feedback([bounce("r1")], DEFAULT_FEEDBACK_POLICY)
        assert result.recorded and result.suppressed and result.rule == "bounce.hard"
        s = result.suppression
        assert s is not None and (s.scope, s.reason, s.source) == (
            Scope.ALL,
            SuppressionReason.BOUNCE,
            "dsn",
        )
        facts = (await store.facts([ALICE], day(1)))["id-alice"]
        assert [x.id for x in facts.suppressions] == [s.id]
        record = await store.contact_record("id-alice")
        (event,) = record.ledger
        assert (event.kind, event.source, event.actor) == ("suppression-added", "dsn", "feedback")
        assert event.evidence == {
            "kind": "bounce",
            "class": "hard",
            "reason": "userunknown",
            "status": "5.1.1",
            "mta": "mx.example.org",
            "rule": "bounce.hard",
        }
        (held,) = record.feedback
        assert (held.source, held.kind, held.feedback_class, held.reason) == (
            FeedbackSource.DSN,
            FeedbackKind.BOUNCE,
            "hard",
            "userunknown",
        )
        assert (held.status, held.mta, held.suppression_id, held.at) == (
            "5.1.1",
            "mx.example.org",
            s.id,
            T0,
        )

    async def test_a_replayed_report_changes_nothing(self, backend: Backend) -> None:
        """The same report key twice, in two calls or in one batch, is recorded once."""
        store, policy = backend.store, DEFAULT_FEEDBACK_POLICY
        await store.record_feedback([bounce("r1")], policy)
        ledger = await backend.raw_fetch("SELECT seq, hash FROM ledger ORDER BY seq")
        again = await store.record_feedback([bounce("r1", day(1)), bounce("r1", day(2))], policy)
        assert [(r.recorded, r.rule, r.suppression) for r in again] == [
            (False, "duplicate", None)
        ] * 2
        assert await backend.raw_fetch("SELECT seq, hash FROM ledger ORDER BY seq") == ledger
        assert len((await store.contact_record("id-alice")).feedback) == 1
        twice = await store.record_feedback([complaint("c1"), complaint("c1")], policy)
        assert [r.recorded for r in twice] == [True, False]

    async def test_soft_bounces_decay(self, backend: Backend) -> None:
        """Three soft bounces within 14 days suppress all mail for 30 days; the count then
        starts again; a bounce outside the window is forgotten; the suppression expires."""
        store, policy = backend.store, DEFAULT_FEEDBACK_POLICY

        async def soft(key: str, when: datetime) -> Any:
            (r,) = await store.record_feedback([bounce(key, when, bounce=SOFT)], policy)
            return r

        assert (await soft("s0", day(0))).rule == "bounce.soft.count"
        assert (await soft("s1", day(20))).rule == "bounce.soft.count"  # s0 is out of the window
        assert (await soft("s2", day(21))).rule == "bounce.soft.count"
        third = await soft("s3", day(22))
        assert third.rule == "bounce.soft.suppress" and third.suppression is not None
        assert third.suppression.expires_at == day(52)
        assert (await soft("s4", day(23))).rule == "bounce.soft.count"  # counting again
        assert (await store.facts([ALICE], day(51)))["id-alice"].suppressions
        assert not (await store.facts([ALICE], day(52)))["id-alice"].suppressions
        (added,) = [e for e in (await store.contact_record("id-alice")).ledger]
        assert added.evidence["soft_bounces"] == 3 and added.evidence["reason"] == "mailboxfull"
        short = FeedbackPolicy(replace(policy.soft, count=1))
        (r,) = await store.record_feedback([bounce("s5", day(24), bounce=SOFT)], short)
        assert r.rule == "bounce.soft.suppress" and r.suppression is not None
        assert r.suppression.id == third.suppression.id and r.suppressed  # the row, extended
        assert r.suppression.expires_at == day(54)

    async def test_a_hard_bounce_makes_a_soft_suppression_permanent(self, backend: Backend) -> None:
        """A hard bounce after a soft-bounce suppression extends that row to no expiry."""
        store = backend.store
        policy = FeedbackPolicy(replace(DEFAULT_FEEDBACK_POLICY.soft, count=1))
        (soft,) = await store.record_feedback([bounce("s", bounce=SOFT)], policy)
        (hard,) = await store.record_feedback([bounce("h", day(1))], policy)
        assert soft.suppression is not None and hard.suppression is not None
        assert hard.suppression.id == soft.suppression.id and hard.suppressed
        assert hard.suppression.expires_at is None
        kinds = [e.kind for e in (await store.contact_record("id-alice")).ledger]
        assert kinds == ["suppression-added", "suppression-extended"]

    async def test_sender_side_failures_are_history_only(self, backend: Backend) -> None:
        """A block of our own mail (sender class) suppresses nothing but is kept as history."""
        store = backend.store
        (r,) = await store.record_feedback([bounce("b", bounce=SENDER)], DEFAULT_FEEDBACK_POLICY)
        assert (r.recorded, r.rule, r.suppression) == (True, "bounce.count", None)
        record = await store.contact_record("id-alice")
        assert not record.suppressions and not record.ledger
        assert [(e.feedback_class, e.reason) for e in record.feedback] == [("sender", "blocked")]

    async def test_a_null_mx_from_the_operators_mailbox_suppresses_the_domain(
        self, backend: Backend
    ) -> None:
        """A trusted report of a domain that takes no mail suppresses the domain; the same
        from a DSN only suppresses its recipient."""
        store, policy = backend.store, DEFAULT_FEEDBACK_POLICY
        mailbox = bounce("m", bounce=NULL_MX, source=FeedbackSource.MAILBOX)
        (r,) = await store.record_feedback([mailbox], policy)
        assert r.suppression is not None and r.suppression.domain == "example.org"
        assert r.suppression.identity is None and r.suppression.source == "mailbox"
        carol = RecipientKey("id-carol", "example.org")
        assert (await store.facts([carol], day(1)))["id-carol"].suppressions
        dsn = bounce("d", bounce=NULL_MX, identity="id-bob", domain="example.net")
        (r2,) = await store.record_feedback([dsn], policy)
        assert r2.suppression is not None and r2.suppression.identity == "id-bob"
        assert r2.suppression.domain is None

    async def test_complaint_suppresses_marketing_and_only_an_opt_in_lifts_it(
        self, backend: Backend
    ) -> None:
        """An abuse report adds a permanent marketing suppression an operator cannot remove;
        lifting it (for a new explicit opt-in) removes only complaints older than the opt-in."""
        store = backend.store
        (ignored,) = await store.record_feedback(
            [complaint("n", FeedbackType.NOT_SPAM)], DEFAULT_FEEDBACK_POLICY
        )
        assert (ignored.rule, ignored.suppression) == ("complaint.count", None)
        (r,) = await store.record_feedback([complaint("c")], DEFAULT_FEEDBACK_POLICY)
        s = r.suppression
        assert s is not None and (s.scope, s.reason, s.source, s.expires_at) == (
            Scope.MARKETING,
            SuppressionReason.COMPLAINT,
            "fbl",
            None,
        )
        with pytest.raises(Conflict) as refused:
            await store.remove_suppression(s.id, actor="admin", at=day(1))
        assert refused.value.code == "complaint-kept"
        too_early = await store.lift_complaints("id-alice", source="form", actor="a", at=T0)
        assert too_early == []
        lifted = await store.lift_complaints("id-alice", source="form", actor="a", at=day(1))
        assert [x.id for x in lifted] == [s.id]
        assert not await store.list_suppressions(SuppressionFilter(identity="id-alice"))
        last = (await store.contact_record("id-alice")).ledger[-1]
        assert (last.kind, last.source, last.actor) == ("suppression-lifted", "form", "a")
        assert await store.lift_complaints("id-alice", source="f", actor="a", at=day(2)) == []

    async def test_a_batch_is_all_or_nothing(self, backend: Backend) -> None:
        """A change the store refuses fails the whole batch: no event, no suppression."""
        naive = bounce("bad", datetime(2024, 1, 2))  # a naive time is refused
        with pytest.raises(ValueError, match="naive"):
            await backend.store.record_feedback([bounce("ok"), naive], DEFAULT_FEEDBACK_POLICY)
        assert not await backend.raw_fetch("SELECT 1 FROM feedback_events")
        assert not await backend.raw_fetch("SELECT 1 FROM suppressions")
        assert not await backend.raw_fetch("SELECT 1 FROM ledger")
        assert await backend.store.record_feedback([], DEFAULT_FEEDBACK_POLICY) == []

    async def test_erasure_keeps_the_history_without_its_evidence(self, backend: Backend) -> None:
        """Erasure clears each event's status and reporting MTA, and forgets the identity's
        return-path number; what happened and when stays, pseudonymous."""
        store = backend.store
        await store.record_feedback(
            [bounce("r", email="alice@example.org", mta="mx.alice-secret.example")],
            DEFAULT_FEEDBACK_POLICY,
        )
        ids = await store.feedback_ref_ids(["id-alice"])
        await store.erase("id-alice", actor="dpo", at=day(1))
        (event,) = (await store.contact_record("id-alice")).feedback
        assert (event.feedback_class, event.reason, event.status, event.mta) == (
            "hard",
            "userunknown",
            None,
            None,
        )
        assert await store.feedback_ref_identity(ids["id-alice"]) is None
        rows = await backend.raw_fetch("SELECT * FROM feedback_events")
        assert "alice-secret" not in repr(rows)

    async def test_return_path_numbers_are_stable_and_distinct(self, backend: Backend) -> None:
        """Each identity gets one number on first request, the same one after; each number
        maps back to its identity; unknown numbers map to nothing."""
        store = backend.store
        first = await store.feedback_ref_ids(["id-a", "id-b", "id-a"])
        assert set(first) == {"id-a", "id-b"} and first["id-a"] != first["id-b"]
        again = await store.feedback_ref_ids(["id-c", "id-b"])
        assert again["id-b"] == first["id-b"] and again["id-c"] not in first.values()
        assert await store.feedback_ref_identity(first["id-a"]) == "id-a"
        assert await store.feedback_ref_identity(10**9) is None
        assert await store.feedback_ref_ids([]) == {}
        assert not await backend.raw_fetch("SELECT 1 FROM ledger")
