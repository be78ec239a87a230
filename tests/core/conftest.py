"""Core tests that need a database run on a SQLite file and on PostgreSQL (tests/pg.py)."""

from __future__ import annotations

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
    "store_url",
]
