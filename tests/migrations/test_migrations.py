"""Migrations on a SQLite file and on PostgreSQL: the only way the schema is made."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text
from sqlalchemy.engine import Connection

from core.store.engine import make_engine
from core.store.models import metadata
from core.store.sql import SQLStore
from core.types import StoredMessage
from migrations import runner

REPO = Path(__file__).resolve().parents[2]
HEAD = "0002"
TABLES = {"conversations", "messages", "scope_heads", "message_links", "inbox"}
TABLES_0001 = TABLES - {"inbox"}


async def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: inspect(c).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version"}


async def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    assert await runner.current(db_url) is None

    await runner.upgrade(db_url)
    assert await runner.current(db_url) == HEAD
    assert await _tables(db_url) == TABLES

    await runner.downgrade(db_url, "base")
    assert await runner.current(db_url) is None
    assert await _tables(db_url) == set()

    await runner.upgrade(db_url, "0001")
    assert await runner.current(db_url) == "0001"
    assert await _tables(db_url) == TABLES_0001
    await runner.upgrade(db_url)
    assert await runner.current(db_url) == HEAD
    assert await _tables(db_url) == TABLES


async def test_hand_written_migration_matches_the_models(db_url: str) -> None:
    await runner.upgrade(db_url)
    engine = make_engine(db_url)

    def diff(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_upgrade_on_the_apps_connection_and_again_is_a_no_op(db_url: str) -> None:
    """The app's start-up path: alembic inside run_sync, from a running event loop."""
    engine = make_engine(db_url)
    statements: list[str] = []

    def upgrade(conn: Connection) -> None:
        config = runner.make_config(db_url)
        config.attributes["connection"] = conn
        command.upgrade(config, "head")

    try:
        await runner.upgrade_engine(engine)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO conversations VALUES ('c1', CURRENT_TIMESTAMP)"))

        event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda *args: statements.append(args[2]),
        )
        async with engine.begin() as conn:
            await conn.run_sync(upgrade)
        async with engine.connect() as conn:
            count = (await conn.execute(text("SELECT count(*) FROM conversations"))).scalar()
    finally:
        await engine.dispose()

    assert count == 1
    assert statements, "the listener saw nothing"
    writes = [s for s in statements if s.split()[0].upper() in {"CREATE", "DROP", "ALTER"}]
    assert writes == []
    assert await runner.current(db_url) == HEAD


async def test_standalone_env_runs_its_own_event_loop(db_url: str) -> None:
    """Without a connection env.py builds an async engine and uses asyncio.run."""
    config = runner.make_config(db_url)
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await runner.current(db_url) == HEAD
    await asyncio.to_thread(command.downgrade, config, "base")
    assert await _tables(db_url) == set()


def test_offline_sql_for_postgresql() -> None:
    buffer = io.StringIO()
    config = runner.make_config("postgresql+asyncpg://u@localhost/db")
    config.output_buffer = buffer
    command.upgrade(config, "head", sql=True)
    sql = buffer.getvalue()
    for table in TABLES:
        assert f"CREATE TABLE {table}" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql


def test_config_keeps_percent_signs_in_the_url() -> None:
    url = "postgresql+asyncpg://parley:p%40ss%25@db.example/parley"
    assert runner.make_config(url).get_main_option("sqlalchemy.url") == url


async def test_in_memory_sqlite_upgrades_through_the_stores_engine() -> None:
    store = SQLStore("sqlite+aiosqlite://")
    try:
        await runner.upgrade_engine(store.engine)
        await store.add_messages([StoredMessage("m1", "c1", None, "user", "hi", 1)])
        assert await store.history("m1", 10) == [StoredMessage("m1", "c1", None, "user", "hi", 1)]
        async with store.engine.connect() as conn:
            assert await conn.run_sync(runner.current_revision) == HEAD
    finally:
        await store.aclose()


async def test_workers_starting_together_all_reach_head(db_url: str) -> None:
    """Four processes' worth of concurrent upgrades: no 'table already exists'."""
    await asyncio.gather(*(runner.upgrade(db_url) for _ in range(4)))
    assert await runner.current(db_url) == HEAD


# --- start-up at a current schema: a read, no lock -----------------------------------


def test_the_head_read_from_the_files_is_alembics() -> None:
    heads = ScriptDirectory.from_config(runner.make_config()).get_heads()
    assert heads == [runner.head_revision()] == [HEAD]


@contextlib.asynccontextmanager
async def _locked_against_migrations(url: str) -> AsyncIterator[None]:
    """Another process holding what an upgrade waits for: SQLite's write lock, or the
    PostgreSQL advisory lock that serialises migrations."""
    if url.startswith("sqlite"):
        holder = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            holder.rollback()
            holder.close()
        return
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": runner._MIGRATION_LOCK})
            try:
                yield
            finally:
                await conn.execute(
                    text("SELECT pg_advisory_unlock(:k)"), {"k": runner._MIGRATION_LOCK}
                )
    finally:
        await engine.dispose()


async def test_a_current_schema_starts_without_waiting_for_the_migration_lock(
    db_url: str,
) -> None:
    """20 processes starting at once used to queue on the write lock (SQLite's busy
    timeout is 5 s); at head a start only reads alembic_version."""
    await runner.upgrade(db_url)
    async with _locked_against_migrations(db_url):
        started = time.monotonic()
        await asyncio.wait_for(runner.upgrade(db_url), 3)
        engine = make_engine(db_url)
        try:
            assert await runner.is_current(engine)
            await asyncio.wait_for(runner.upgrade_engine(engine), 3)
        finally:
            await engine.dispose()
        assert time.monotonic() - started < 2


async def test_a_schema_behind_head_still_waits_for_the_lock_and_upgrades(
    db_url: str,
) -> None:
    await runner.upgrade(db_url, "0001")
    engine = make_engine(db_url)
    try:
        assert not await runner.is_current(engine)
    finally:
        await engine.dispose()
    async with _locked_against_migrations(db_url):
        upgrading = asyncio.create_task(runner.upgrade(db_url))
        await asyncio.sleep(0.5)
        assert not upgrading.done()  # it waits for the holder: it must not skip
    await asyncio.wait_for(upgrading, 10)
    assert await runner.current(db_url) == HEAD
    assert await _tables(db_url) == TABLES


async def test_a_new_database_is_not_current() -> None:
    store = SQLStore("sqlite+aiosqlite://")
    try:
        assert not await runner.is_current(store.engine)
    finally:
        await store.aclose()


def test_a_start_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'current.db'}"
    asyncio.run(runner.upgrade(url))
    script = (
        "import asyncio, sys\n"
        "from migrations.runner import upgrade\n"
        f"asyncio.run(upgrade({url!r}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


# --- the app's upgrade through the store's own connections ---------------------------


async def test_upgrade_store_migrates_a_new_database_and_one_behind_head(db_url: str) -> None:
    store = SQLStore(db_url)
    try:
        await runner.upgrade_store(store)  # a new database: the check fails, alembic runs
        assert await runner.current(db_url) == HEAD
        assert await _tables(db_url) == TABLES
        await store.add_messages([StoredMessage("m1", "c1", None, "user", "hi", 1)])
        await runner.upgrade_store(store)  # at head: only the read
    finally:
        await store.aclose()
    await runner.downgrade(db_url, "0001")
    store = SQLStore(db_url)
    try:
        await runner.upgrade_store(store)
        assert await runner.current(db_url) == HEAD
        assert await store.get_message("m1") == StoredMessage("m1", "c1", None, "user", "hi", 1)
    finally:
        await store.aclose()


async def test_upgrade_store_at_head_does_not_wait_for_the_migration_lock(db_url: str) -> None:
    await runner.upgrade(db_url)
    store = SQLStore(db_url)
    try:
        async with _locked_against_migrations(db_url):
            await asyncio.wait_for(runner.upgrade_store(store), 3)
    finally:
        await store.aclose()


def test_a_start_at_head_on_a_sqlite_file_builds_no_async_engine(tmp_path: Path) -> None:
    """On a SQLite file every store operation runs on pysqlite (core/store/units.py):
    at head, the start's schema check is one of those, and aiosqlite, SQLAlchemy's
    asyncio extension (and the ORM it pulls in) stay unloaded."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'current.db'}"
    asyncio.run(runner.upgrade(url))
    script = (
        "import asyncio, sys\n"
        "from core.store.sql import SQLStore\n"
        "from migrations.runner import upgrade_store\n"
        "async def main():\n"
        f"    store = SQLStore({url!r})\n"
        "    await upgrade_store(store)\n"
        "    await store.reset_head('bot', 'scope')\n"
        "    await store.aclose()\n"
        "asyncio.run(main())\n"
        "heavy = ('aiosqlite', 'sqlalchemy.ext.asyncio', 'sqlalchemy.orm', 'alembic')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
