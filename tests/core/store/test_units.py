"""Units of work: one hand-off each; on a SQLite file, concurrent units commit together,
and a unit that fails takes nobody else's writes with it."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url

from core.store.engine import sqlite_file
from core.store.sql import SQLStore
from core.store.units import SQLiteUnits


def insert_conversation(cid: str, *, fail: bool = False) -> Any:
    def unit(conn: Connection) -> str:
        conn.execute(
            text("INSERT INTO conversations (id, created_at) VALUES (:id, CURRENT_TIMESTAMP)"),
            {"id": cid},
        )
        if fail:
            raise ValueError(f"unit {cid} failed after writing")
        return cid

    return unit


async def conversation_ids(store: SQLStore) -> set[str]:
    rows = await store.units.read(lambda c: c.execute(text("SELECT id FROM conversations")).all())
    return {row[0] for row in rows}


async def test_a_failing_unit_takes_only_its_own_writes_back(store: SQLStore) -> None:
    units = [insert_conversation(f"c{i}", fail=i == 7) for i in range(20)]
    results = await asyncio.gather(*(store.units.write(u) for u in units), return_exceptions=True)
    assert isinstance(results[7], ValueError)
    assert [r for i, r in enumerate(results) if i != 7] == [f"c{i}" for i in range(20) if i != 7]
    assert await conversation_ids(store) == {f"c{i}" for i in range(20) if i != 7}


async def test_concurrent_writes_share_a_commit_on_sqlite(migrated_sqlite_url: str) -> None:
    """Writes asked for in one pass of the event loop commit together (inline), and
    so do the units queued for the database thread while it is busy."""
    store = SQLStore(migrated_sqlite_url)
    assert isinstance(store.units, SQLiteUnits)
    thread = store.units._thread
    commits: list[str] = []
    for engine in (store.units.sync_engine, thread.sync_engine):
        event.listen(engine, "commit", lambda conn: commits.append("COMMIT"))
    try:
        await asyncio.gather(*(store.units.write(insert_conversation(f"a{i}")) for i in range(50)))
        assert commits.count("COMMIT") == 1
        await asyncio.gather(*(thread.write(insert_conversation(f"b{i}")) for i in range(50)))
        assert len(await conversation_ids(store)) == 100
        # Batches of whatever queued up while the thread was busy: far fewer
        # transactions than units (each would be a BEGIN IMMEDIATE ... COMMIT of its own).
        assert 2 <= commits.count("COMMIT") < 26
    finally:
        await store.aclose()


async def test_the_thread_runs_units_in_order(migrated_sqlite_url: str) -> None:
    store = SQLStore(migrated_sqlite_url)
    assert isinstance(store.units, SQLiteUnits)
    thread = store.units._thread
    try:
        write = thread.write(insert_conversation("first"))
        read = thread.read(lambda c: c.execute(text("SELECT id FROM conversations")).all())
        _, rows = await asyncio.gather(write, read)
        assert [row[0] for row in rows] == ["first"]
    finally:
        await store.aclose()


async def test_a_write_waits_for_another_process_off_the_event_loop(
    migrated_sqlite_url: str,
) -> None:
    """While another connection holds the write lock, the write goes to the thread
    (which waits out the lock) and the event loop keeps running."""
    store = SQLStore(migrated_sqlite_url)
    blocker = sqlite3.connect(str(sqlite_file(make_url(migrated_sqlite_url))), isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(store.units.write(insert_conversation("late")))
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        assert not write.done()  # waiting for the lock, and the loop ran meanwhile
        assert ticks == 20
        blocker.execute("COMMIT")
        assert await write == "late"
        assert await conversation_ids(store) == {"late"}
    finally:
        blocker.close()
        await store.aclose()


async def test_a_closed_store_refuses_units_and_stops_its_thread(migrated_sqlite_url: str) -> None:
    store = SQLStore(migrated_sqlite_url)
    assert isinstance(store.units, SQLiteUnits)
    await store.units._thread.write(insert_conversation("c"))
    thread = store.units._thread._thread
    assert thread is not None and thread.is_alive()
    await store.aclose()
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        await store.units.read(lambda c: None)


async def test_concurrent_writes_share_a_transaction_on_postgresql(
    migrated_postgresql_url: str,
) -> None:
    store = SQLStore(migrated_postgresql_url)
    commits: list[str] = []
    event.listen(store.units.sync_engine, "commit", lambda conn: commits.append("COMMIT"))
    try:
        await asyncio.gather(*(store.units.write(insert_conversation(f"c{i}")) for i in range(50)))
        assert len(await conversation_ids(store)) == 50
        assert commits.count("COMMIT") == 1  # one pass of the loop, one round of commits
    finally:
        await store.aclose()
