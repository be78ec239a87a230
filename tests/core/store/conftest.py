"""The store's tests run on a SQLite file and on PostgreSQL (tests/pg.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.store.sql import SQLStore
from migrations import runner
from tests.pg import db_url, fresh_postgres_url, postgres_cluster, postgres_url

__all__ = ["db_url", "fresh_postgres_url", "postgres_cluster", "postgres_url", "store"]


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[SQLStore]:
    """A store on a database migrated to head."""
    await runner.upgrade(db_url)
    sql_store = SQLStore(db_url)
    try:
        yield sql_store
    finally:
        await sql_store.aclose()
