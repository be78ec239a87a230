"""The alembic environment: async-aware, configured in code (no alembic.ini).

Two ways in:

- with a connection: ``config.attributes["connection"]`` holds a sync ``Connection``
  (from ``await async_conn.run_sync(...)``, inside a running event loop). The caller
  owns its transaction. This is how ``migrations.runner`` and the app upgrade.
- standalone: no connection given, so an async engine is built from
  ``sqlalchemy.url`` and driven with ``asyncio.run`` (e.g. ``alembic`` commands called
  from sync code, like ``revision --autogenerate``).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from core.store.engine import make_engine
from core.store.models import metadata

config = context.config
target_metadata = metadata


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite can only ALTER by copying tables: let autogenerate write batch ops.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(url: str) -> None:
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        # One transaction for the whole upgrade (SQLite's DDL is transactional too,
        # because make_engine lets SQLAlchemy emit BEGIN).
        async with engine.begin() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("migrations: set sqlalchemy.url or pass a connection")
    asyncio.run(run_async_migrations(url))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
