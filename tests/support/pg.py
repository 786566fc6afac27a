"""PostgreSQL test plumbing shared by the store and replica tests (the ``schema`` fixture, a
throw-away schema per test, is in conftest.py)."""

from __future__ import annotations

import os

#: Set by .ci/run; unset on a developer machine without PostgreSQL (those tests skip).
DSN = os.environ.get("SGW_TEST_POSTGRES_DSN", "")


def schema_url(schema: str) -> str:
    """The test DSN with our ``schema`` parameter added."""
    return f"{DSN}{'&' if '?' in DSN else '?'}schema={schema}"
