"""Verify the consent ledger's hash chain: the proof of consent (GDPR art. 7(1)) is only as good
as the evidence that nobody rewrote it.

Every event stores the hash of the event before it (``prev_hash``) and its own ``hash``
(:func:`suppression.ledger.chain_hash`). :class:`ChainCheck` walks events in sequence order
and stops at the first one that does not follow: a gap in the sequence (events deleted), a
``prev_hash`` that is not the previous event's hash (events deleted or reordered), or a
``hash`` that its fields do not give (an event rewritten). Erasure removes personal evidence,
which the chain never covered, so an erased contact's events still verify.

A chain cannot show that its newest events were cut off, or that the whole ledger was rebuilt
with fresh hashes. Both show against an anchor: a (sequence, hash) pair noted earlier (the
head printed by a previous check, kept outside the database); the check then also says
whether the event at that sequence still has that hash. Pure: the caller feeds the events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

from suppression.ledger import GENESIS, chain_hash
from suppression.model import LedgerEvent


@dataclass(frozen=True, slots=True)
class Anchor:
    """An event's sequence number and the hash it had when the anchor was noted."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Anchor:
        """``SEQ:HASH`` (a positive integer and 64 lowercase hex digits)."""
        seq, sep, digest = text.partition(":")
        digest = digest.lower()
        if not sep or not seq.isdigit() or int(seq) < 1 or len(digest) != 64:
            raise ValueError("an anchor looks like SEQ:HASH (64 hex digits)")
        try:
            bytes.fromhex(digest)
        except ValueError:
            raise ValueError("an anchor's hash is 64 hex digits") from None
        return cls(int(seq), digest)


@dataclass(frozen=True, slots=True)
class ChainBreak:
    """The first event that does not follow from the ones before it, and why."""

    seq: int
    reason: str


class ChainCheck:
    """Feed every event in sequence order (:meth:`feed`, page by page), then read the result."""

    def __init__(self, anchor: Anchor | None = None) -> None:
        self.anchor = anchor
        #: Events that verified.
        self.events = 0
        #: The last event that verified (0 and the genesis hash on an empty ledger).
        self.head_seq = 0
        self.head_hash = GENESIS
        self.broken: ChainBreak | None = None
        #: None until the anchor's event is seen; then whether its hash matched.
        self.anchor_matched: bool | None = None

    def feed(self, events: Iterable[LedgerEvent]) -> bool:
        """Check the next events; False once the chain is broken (feed no more)."""
        if self.broken is not None:
            return False
        for e in events:
            self.broken = self._check(e)
            if self.broken is not None:
                return False
            self.events += 1
            self.head_seq, self.head_hash = e.seq, e.hash
            if self.anchor is not None and e.seq == self.anchor.seq:
                self.anchor_matched = e.hash == self.anchor.hash
        return True

    def _check(self, e: LedgerEvent) -> ChainBreak | None:
        if e.seq != self.head_seq + 1:
            if e.seq <= self.head_seq:
                return ChainBreak(e.seq, f"out of order after event {self.head_seq}")
            first, last = self.head_seq + 1, e.seq - 1
            missing = f"{first}" if first == last else f"{first}-{last}"
            return ChainBreak(e.seq, f"events {missing} are missing")
        if e.prev_hash != self.head_hash:
            before = f"event {self.head_seq}" if self.head_seq else "the chain's start (genesis)"
            return ChainBreak(e.seq, f"prev_hash is not the hash of {before}")
        expected = chain_hash(
            e.prev_hash, e.seq, e.at, e.kind, e.identity, e.purpose, e.source, e.actor, e.detail
        )
        if e.hash != expected:
            return ChainBreak(e.seq, "hash does not match the event's fields (rewritten)")
        return None

    @property
    def intact(self) -> bool:
        """No break, and the anchor (if any) was found with its hash."""
        return self.broken is None and (self.anchor is None or self.anchor_matched is True)

    def summary(self) -> str:
        """One line for people."""
        head = f"head {self.head_seq}:{self.head_hash}"
        if self.broken is not None:
            return (
                f"ledger broken at event {self.broken.seq}: {self.broken.reason}"
                f" ({self.events} events verified before it)"
            )
        if self.anchor is not None and self.anchor_matched is None:
            return (
                f"ledger anchor not found: no event {self.anchor.seq}"
                f" ({self.events} events, {head}; newer events cut off?)"
            )
        if self.anchor is not None and self.anchor_matched is False:
            return (
                f"ledger anchor mismatch: event {self.anchor.seq} no longer has the noted"
                " hash (ledger rebuilt?)"
            )
        return f"ledger intact: {self.events} events, {head}"

    def as_dict(self) -> dict[str, object]:
        """JSON-ready result."""
        anchor = None if self.anchor is None else asdict(self.anchor)
        if anchor is not None:
            anchor["matched"] = self.anchor_matched
        return {
            "intact": self.intact,
            "events": self.events,
            "head": {"seq": self.head_seq, "hash": self.head_hash},
            "broken": None if self.broken is None else asdict(self.broken),
            "anchor": anchor,
        }
