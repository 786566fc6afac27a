"""The SQL backends of :class:`suppression.store.Store`: SQLite and PostgreSQL."""
