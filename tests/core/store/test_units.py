"""Units of work: one hand-off each; on a SQLite file, concurrent units commit together,
and a unit that fails takes nobody else's writes with it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Connection

from core.store.sql import SQLStore
from core.store.units import SQLiteThread


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


async def test_concurrent_units_share_a_commit_on_sqlite(migrated_sqlite_url: str) -> None:
    store = SQLStore(migrated_sqlite_url)
    assert isinstance(store.units, SQLiteThread)
    commits: list[str] = []
    event.listen(store.units.sync_engine, "commit", lambda conn: commits.append("COMMIT"))
    try:
        await asyncio.gather(*(store.units.write(insert_conversation(f"c{i}")) for i in range(50)))
        assert len(await conversation_ids(store)) == 50
        # One thread, batches of whatever queued up while it was busy: far fewer
        # transactions than units (each would be a BEGIN IMMEDIATE ... COMMIT of its own).
        assert 1 <= commits.count("COMMIT") < 25
    finally:
        await store.aclose()


async def test_a_read_sees_the_writes_queued_before_it(store: SQLStore) -> None:
    write = store.units.write(insert_conversation("first"))
    read = conversation_ids(store)
    _, seen = await asyncio.gather(write, read)
    assert "first" in seen


async def test_a_closed_store_refuses_units_and_stops_its_thread(migrated_sqlite_url: str) -> None:
    store = SQLStore(migrated_sqlite_url)
    await store.units.write(insert_conversation("c"))
    assert isinstance(store.units, SQLiteThread)
    thread = store.units._thread
    assert thread is not None and thread.is_alive()
    await store.aclose()
    assert not thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        await store.units.read(lambda c: None)
