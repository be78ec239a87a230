"""PostgreSQL (tests/pg.py) next to SQLite for the migration tests."""

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
