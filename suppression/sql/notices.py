"""The notice catalogue's write operations (:meth:`Store.put_notice`, and the lock a consent
puts on the notice version it names), written once over :class:`~suppression.sql.engine.Db`.

A notice version is the proof of what people agreed to: once a consent names it, it never
changes (``locked_at``); before that it may be corrected in place, and the ledger records
each version added or replaced with its text's SHA-256.
"""

# SQL here is composed only from module constants; every value is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from suppression.criteria import Notice, NoticeKey
from suppression.sql.chain import flush_chain, start_chain
from suppression.sql.engine import Db
from suppression.sql.rows import NOTICE_COLS, notice_from
from suppression.store import NOTICE_LOCKED, Conflict, NoticeResult


async def lock_notice(db: Db, key: NoticeKey | None, at: datetime) -> None:
    """Refuse a consent naming a notice version the store does not hold; lock the one it
    names, at ``at`` (it never changes again)."""
    if key is None:
        return
    rows = await db.fetch("SELECT locked_at FROM notices WHERE id = ? AND version = ?", *key)
    if not rows:
        raise ValueError(f"unknown notice {key[0]!r} version {key[1]!r}")
    if rows[0][0] is None:
        await db.execute(
            "UPDATE notices SET locked_at = ? WHERE id = ? AND version = ?", db.ts(at), *key
        )


def _notice_detail(n: Notice) -> dict[str, Any]:
    """The ledger detail of a notice event: everything but the text (its hash stands for it)."""
    return {
        "id": n.id,
        "version": n.version,
        "language": n.language,
        "purposes": list(n.purposes),
        "controller": n.controller,
        "right_to_withdraw": n.right_to_withdraw,
        "sha256": n.sha256,
        "url": n.url,
    }


def _same_notice(a: Notice, b: Notice) -> bool:
    return _notice_detail(a) == _notice_detail(b) and a.text == b.text


async def put_notice(db: Db, notice: Notice, *, actor: str, at: datetime) -> NoticeResult:
    """See :meth:`Store.put_notice`."""
    key = (notice.id, notice.version)
    rows = await db.fetch(f"SELECT {NOTICE_COLS} FROM notices WHERE id = ? AND version = ?", *key)
    held = notice_from(rows[0], db.dt) if rows else None
    if held is not None and _same_notice(held, notice):
        return NoticeResult(False, held)
    if held is not None and held.locked_at is not None:
        raise Conflict(
            NOTICE_LOCKED,
            f"notice {notice.id!r} version {notice.version!r} is referred to by consents:"
            " publish a new version",
        )
    values = (
        notice.language,
        json.dumps(list(notice.purposes), separators=(",", ":"), ensure_ascii=False),
        notice.controller,
        notice.right_to_withdraw,
        notice.sha256,
        notice.text,
        notice.url,
    )
    if held is None:
        await db.execute(
            f"INSERT INTO notices ({NOTICE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            *key,
            *values,
            db.ts(at),
        )
    else:
        await db.execute(
            "UPDATE notices SET language = ?, purposes = ?, controller = ?,"
            " right_to_withdraw = ?, sha256 = ?, text = ?, url = ? WHERE id = ? AND version = ?",
            *values,
            *key,
        )
    rows = await db.fetch(f"SELECT {NOTICE_COLS} FROM notices WHERE id = ? AND version = ?", *key)
    stored = notice_from(rows[0], db.dt)
    chain = await start_chain(db)
    kind = "notice-added" if held is None else "notice-replaced"
    chain.add(kind, None, None, "notices", actor, at, _notice_detail(stored))
    await flush_chain(db, chain)
    return NoticeResult(True, stored, added=held is None)
