"""The SQL backends of :class:`suppression.store.Store`.

One store, :class:`~suppression.sql.facade.SqlStore`, over an engine
(:mod:`~suppression.sql.engine`): :mod:`~suppression.sql.sqlite` or
:mod:`~suppression.sql.postgres`. The operations are written once over a ``Db``:
:mod:`~suppression.sql.reads`, :mod:`~suppression.sql.ops` (with :mod:`~suppression.sql.chain`
and :mod:`~suppression.sql.bulk`), from the row shapes of :mod:`~suppression.sql.rows`.
"""
