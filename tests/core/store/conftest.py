"""The store fixture; ``store_url`` (tests/pg.py) runs each test on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.store.sql import SQLStore


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SQLStore]:
    """A store on a database at head with empty tables."""
    sql_store = SQLStore(store_url)
    try:
        yield sql_store
    finally:
        await sql_store.aclose()
