"""The references each copy carries back to its recipient: the return-path envelope sender
``b-{ref}@{return_path_domain}`` and, on marketing copies, ``CFBL-Feedback-ID`` (with
``Feedback-ID`` and ``CFBL-Address``). ``[feedback]`` turns either on.

A reference (:mod:`suppression.return_path`) is a MAC over the store's short number for the
recipient's identity, minted for the day; the numbers of one message's recipients come from one
store call, and only new recipients need a write. Should the store fail here, the copies go out
without references (the platform's envelope sender kept): mail is never held back for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from gateway.observability.metrics import Metrics
from gateway.settings import FeedbackSettings
from suppression.return_path import ReturnPathCodec, address, day_number
from suppression.store import Store, StoreError

log = logging.getLogger(__name__)


class References:
    """Mints the references of a message's copies."""

    def __init__(
        self,
        settings: FeedbackSettings,
        codec: ReturnPathCodec,
        store: Store,
        metrics: Metrics,
        clock: Callable[[], datetime],
    ) -> None:
        self.return_path_domain = settings.return_path_domain
        self.fbl_address = settings.fbl_address
        self.feedback_id_sender = settings.feedback_id_sender
        self.codec = codec
        self.store = store
        self.metrics = metrics
        self.clock = clock

    async def mint(self, identities: Sequence[str]) -> dict[str, str]:
        """A reference per identity (none at all when the store cannot give the numbers)."""
        try:
            numbers = await self.store.feedback_ref_ids(list(dict.fromkeys(identities)))
        except StoreError:
            self.metrics.store_error()
            log.warning("no reference numbers from the store: copies keep the platform's sender")
            return {}
        today = day_number(self.clock())
        return {identity: self.codec.mint(number, today) for identity, number in numbers.items()}

    def sender(self, ref: str | None) -> str | None:
        """The envelope sender of a copy carrying ``ref`` (None: keep the platform's)."""
        if ref is None or self.return_path_domain is None:
            return None
        return address(ref, self.return_path_domain)
