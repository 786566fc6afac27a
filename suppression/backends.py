"""``open_store``: the store backend named by a URL, imported lazily so that a SQLite-only
deployment never needs asyncpg at import time."""

from __future__ import annotations

from suppression.store import Store, StoreOptions


async def open_store(url: str, options: StoreOptions | None = None) -> Store:
    """Open the backend named by the URL's scheme (``sqlite:///PATH``, ``postgresql://...``)."""
    options = options or StoreOptions()
    if url.startswith("sqlite:"):
        from suppression.sql.sqlite import SQLiteStore

        store: Store = SQLiteStore.from_url(url, options)
    elif url.startswith(("postgresql:", "postgres:")):
        from suppression.sql.postgres import PostgresStore

        store = PostgresStore.from_url(url, options)
    else:
        raise ValueError(f"unsupported store url scheme: {url.split(':', 1)[0]!r}")
    await store.open()
    return store
