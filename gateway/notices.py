"""The notice catalogue: the versions of the wording people agree to, held in the store and
kept in memory for the policy (a consent's grade depends on the notice it names).

Versions come from ``[[policy.notices]]`` (published at every start: the same wording again
changes nothing) and from ``POST /api/v1/notices`` (:func:`publish`). A version no consent
names yet may be corrected in place; once one does, it never changes, and a configuration
that rewords it stops the start with one line.

:class:`NoticeBook` is that memory. Notices are few (a version per form and language), so all
of them are read at start; a consent naming a version the book does not hold, or holds from
before a consent locked it (another process may have published or corrected it since), makes
the book read those versions again before deciding. A locked version never changes, so what
the book holds of it stays true.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from gateway.settings import ConfigError, PolicySettings
from suppression.criteria import Notice, NoticeKey
from suppression.store import Conflict, NoticeResult, Store

#: Who publishes the configured notices, in the ledger.
CONFIG_ACTOR = "config"


class NoticeBook:
    """The notice versions of the store, in memory (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._by_key: dict[NoticeKey, Notice] = {}

    @property
    def notices(self) -> Mapping[NoticeKey, Notice]:
        """Every version held, by (id, version)."""
        return self._by_key

    async def load(self) -> None:
        """Read every version from the store."""
        self._by_key = {n.key: n for n in await self.store.notices()}

    def stale(self, keys: Iterable[NoticeKey]) -> list[NoticeKey]:
        """The versions among ``keys`` (named by consents) the book must read again."""
        found = self._by_key
        return [k for k in set(keys) if (n := found.get(k)) is None or n.locked_at is None]

    async def refresh(self, keys: Iterable[NoticeKey]) -> None:
        """Read these versions again (a consent names them: they are locked by now)."""
        wanted = list(keys)
        if wanted:
            fresh = {n.key: n for n in await self.store.notices(wanted)}
            self._by_key = {**self._by_key, **fresh}

    def remember(self, notice: Notice) -> None:
        """Hold a version this process has just written."""
        self._by_key = {**self._by_key, notice.key: notice}


async def publish(book: NoticeBook, notice: Notice, *, actor: str, at: datetime) -> NoticeResult:
    """Add or correct a notice version (:meth:`Store.put_notice`: :class:`Conflict` when a
    consent already names it and the wording differs) and hold it in the book."""
    result = await book.store.put_notice(notice, actor=actor, at=at)
    book.remember(result.notice)
    return result


async def publish_configured(policy: PolicySettings, book: NoticeBook, at: datetime) -> None:
    """Publish ``[[policy.notices]]`` and read the whole catalogue into the book."""
    for index, settings in enumerate(policy.notices):
        try:
            await publish(book, settings.to_notice(), actor=CONFIG_ACTOR, at=at)
        except Conflict:
            raise ConfigError(
                f"policy.notices[{index}]: notice {settings.id!r} version {settings.version!r}"
                " differs from the one consents already name; give the new wording a new version"
            ) from None
    await book.load()
