"""The store's tests run on a SQLite file and on PostgreSQL (tests/pg.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.store.sql import SQLStore
from tests.pg import (
    db_url,
    fresh_postgres_url,
    migrated_postgresql_url,
    migrated_sqlite_url,
    postgres_cluster,
    postgres_url,
    store_url,
)

__all__ = [
    "db_url",
    "fresh_postgres_url",
    "migrated_postgresql_url",
    "migrated_sqlite_url",
    "postgres_cluster",
    "postgres_url",
    "store",
    "store_url",
]


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SQLStore]:
    """A store on a database at head with empty tables."""
    sql_store = SQLStore(store_url)
    try:
        yield sql_store
    finally:
        await sql_store.aclose()
