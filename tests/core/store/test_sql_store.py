"""SQLStore on a SQLite file and on PostgreSQL (every test runs on both)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import IntegrityError

from core.store.history import HistoryStore, InMemoryHistoryStore
from core.store.models import CONVERSATIONS, MESSAGE_LINKS, MESSAGES
from core.store.sql import ScopeHead, SQLStore, Turn
from core.types import StoredMessage


def msg(
    id: str, parent: str | None, tokens: int = 1, conv: str = "c1", role: str = "user"
) -> StoredMessage:
    return StoredMessage(id, conv, parent, role, f"text of {id}", tokens)  # type: ignore[arg-type]


def chain(n: int, conv: str = "c1") -> list[StoredMessage]:
    """m0 <- m1 <- ... <- m{n-1}; message i costs i + 1 tokens."""
    return [msg(f"m{i}", f"m{i - 1}" if i else None, i + 1, conv) for i in range(n)]


def turn(
    user_id: str,
    assistant_id: str,
    parent: str | None,
    *,
    conv: str = "c1",
    scope: str = "chat:1",
    links: list[tuple[str, str, str]] | None = None,
) -> Turn:
    return Turn(
        bot="bot",
        scope_key=scope,
        backend="openai",
        user=msg(user_id, parent, 3, conv, "user"),
        assistant=msg(assistant_id, user_id, 5, conv, "assistant"),
        links=[("chat", f"p-{user_id}", user_id), ("chat", f"p-{assistant_id}", assistant_id)]
        if links is None
        else links,
    )


async def count(store: SQLStore, model: Any) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())


def ids(messages: list[StoredMessage]) -> list[str]:
    return [m.id for m in messages]


async def test_is_a_history_store(store: SQLStore) -> None:
    assert isinstance(store, HistoryStore)


async def test_history_is_oldest_first_and_cut_by_the_budget(store: SQLStore) -> None:
    await store.add_messages(chain(10))  # tokens 1..10, m9 costs 10

    assert ids(await store.history("m9", 1000)) == [f"m{i}" for i in range(10)]
    assert await store.history("m9", 1000) == chain(10)
    assert ids(await store.history("m9", 27)) == ["m7", "m8", "m9"]  # 8 + 9 + 10
    assert ids(await store.history("m9", 26)) == ["m8", "m9"]
    assert ids(await store.history("m4", 9)) == ["m3", "m4"]
    assert await store.history("m9", 9) == []  # the newest alone is over budget
    assert await store.history("nope", 1000) == []
    assert ids(await store.history("m0", 10**12)) == ["m0"]  # a huge budget is fine


async def test_history_stops_at_the_first_message_over_budget(store: SQLStore) -> None:
    await store.add_messages(
        [msg("a", None, 1), msg("b", "a", 100), msg("c", "b", 1), msg("d", "c", 1)]
    )
    assert ids(await store.history("d", 10)) == ["c", "d"]


async def test_history_is_one_query(store_url: str, store: SQLStore) -> None:
    await store.add_messages(chain(10))
    statements: list[str] = []
    cold = SQLStore(store_url)  # nothing cached: the walk goes to the database
    # SQLite runs a long read on its database thread's engine.
    thread = getattr(cold.units, "_thread", None)
    engine = thread.sync_engine if thread is not None else cold.units.sync_engine

    def trace(dbapi_connection: Any, _record: Any) -> None:
        # SQLite's hot statements bypass SQLAlchemy (core/store/prepared.py): ask
        # sqlite3 itself what runs. PostgreSQL's go through SQLAlchemy's events.
        if hasattr(dbapi_connection, "set_trace_callback"):
            dbapi_connection.set_trace_callback(statements.append)

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(engine, "connect", trace)
    event.listen(engine, "before_cursor_execute", record)
    try:
        await cold.get_message("m0")  # the connection's set-up is not the walk
        statements.clear()
        assert len(await cold.history("m9", 1000)) == 10
    finally:
        event.remove(engine, "connect", trace)
        event.remove(engine, "before_cursor_execute", record)
        await cold.aclose()
    walks = [s for s in statements if s.strip().upper() not in ("BEGIN", "COMMIT", "ROLLBACK")]
    assert len(walks) == 1, statements
    assert walks[0].lstrip().upper().startswith("WITH RECURSIVE")


async def test_a_busy_chats_history_is_read_from_memory(store: SQLStore) -> None:
    """After a commit, the next turn's walk needs no query, and answers the same as
    the database would, for any budget and depth."""
    await store.commit_turn(turn("u1", "a1", None))
    assert ids(await store.history("a1", 10**6)) == ["u1", "a1"]  # the second turn's walk
    await store.commit_turn(turn("u2", "a2", "a1"))
    fresh = SQLStore(store.url)
    try:
        for budget, depth in ((10**6, 10_000), (2, 10_000), (10**6, 3), (0, 10_000)):
            fresh.max_history_depth = store.max_history_depth = depth
            expected = await fresh.history("a2", budget)
            fresh._chains.clear()
            async with _no_queries(store):
                assert await store.history("a2", budget) == expected
    finally:
        await fresh.aclose()
    assert ids(await store.history("a2", 10**6)) == ["u1", "a1", "u2", "a2"]


async def test_another_workers_turn_is_read_from_the_database(store: SQLStore) -> None:
    """Only committed chains are cached; a turn committed elsewhere ends at an id this
    store has not seen, and its walk queries the database."""
    await store.commit_turn(turn("u1", "a1", None))
    other = SQLStore(store.url)
    try:
        await other.commit_turn(turn("u2", "a2", "a1"))
    finally:
        await other.aclose()
    assert ids(await store.history("a2", 10**6)) == ["u1", "a1", "u2", "a2"]


@contextlib.asynccontextmanager
async def _no_queries(store: SQLStore) -> AsyncIterator[None]:
    async def refuse(unit: Any, **_: Any) -> Any:
        raise AssertionError("the walk went to the database")

    read = store.units.read
    store.units.read = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        store.units.read = read  # type: ignore[method-assign]


async def test_history_depth_is_capped(store_url: str, store: SQLStore) -> None:
    await store.add_messages(chain(10))
    capped = SQLStore(store_url, max_history_depth=4)
    try:
        assert ids(await capped.history("m9", 1000)) == ["m6", "m7", "m8", "m9"]
    finally:
        await capped.aclose()


async def test_branches_have_their_own_history(store: SQLStore) -> None:
    await store.add_messages([msg("root", None), msg("q", "root"), msg("a1", "q"), msg("a2", "q")])
    await store.add_messages([msg("f1", "a1"), msg("f2", "a2")])
    assert ids(await store.history("f1", 100)) == ["root", "q", "a1", "f1"]
    assert ids(await store.history("f2", 100)) == ["root", "q", "a2", "f2"]


async def test_history_agrees_with_the_in_memory_reference(store: SQLStore) -> None:
    rng = random.Random(7)
    messages = [msg("n0", None, rng.randint(0, 9))]
    for i in range(1, 80):
        parent = rng.choice(messages).id
        messages.append(msg(f"n{i}", parent, rng.randint(0, 9), conv="c2"))
    reference = InMemoryHistoryStore()
    await reference.add_messages(messages)
    await store.add_messages(messages)
    for _ in range(25):
        leaf, budget = rng.choice(messages).id, rng.randint(0, 60)
        assert await store.history(leaf, budget) == await reference.history(leaf, budget)


async def test_add_messages_is_an_idempotent_upsert(store: SQLStore) -> None:
    first = StoredMessage("x", "new-conv", None, "user", "draft", 2, {"k": "v"})
    await store.add_messages([first])
    await store.add_messages([first])
    assert await store.get_message("x") == first
    assert await count(store, CONVERSATIONS) == 1

    edited = StoredMessage("x", "new-conv", None, "user", "final", 3)
    await store.add_messages([edited, edited])
    assert await store.get_message("x") == edited
    assert await count(store, MESSAGES) == 1
    assert await store.get_message("nope") is None


async def test_commit_turn_writes_everything_and_moves_the_head(store: SQLStore) -> None:
    assert await store.get_head("bot", "chat:1") is None
    await store.commit_turn(turn("u1", "a1", None))

    assert await store.get_head("bot", "chat:1") == ScopeHead("c1", "a1", "openai")
    assert ids(await store.history("a1", 100)) == ["u1", "a1"]
    assert await store.get_message("a1") == msg("a1", "u1", 5, role="assistant")
    assert await store.find_link("bot", "chat", "p-a1") == await store.get_message("a1")
    assert await store.find_link("bot", "chat", "p-u1") == msg("u1", None, 3)

    await store.commit_turn(turn("u2", "a2", "a1"))
    assert await store.get_head("bot", "chat:1") == ScopeHead("c1", "a2", "openai")
    assert ids(await store.history("a2", 100)) == ["u1", "a1", "u2", "a2"]
    assert await count(store, CONVERSATIONS) == 1
    assert await count(store, MESSAGE_LINKS) == 4


async def test_a_failing_commit_writes_nothing(store: SQLStore) -> None:
    await store.commit_turn(turn("u1", "a1", None))
    before = [await count(store, m) for m in (CONVERSATIONS, MESSAGES, MESSAGE_LINKS)]

    # The link is written last: its foreign key fails after everything else went in.
    bad_link = turn("u2", "a2", "a1", conv="c9", links=[("chat", "p-x", "no-such-message")])
    with pytest.raises(IntegrityError):
        await store.commit_turn(bad_link)
    # A parent that does not exist fails on the messages.
    with pytest.raises(IntegrityError):
        await store.commit_turn(turn("u3", "a3", "no-such-parent", scope="chat:2"))

    assert await store.get_head("bot", "chat:1") == ScopeHead("c1", "a1", "openai")
    assert await store.get_head("bot", "chat:2") is None
    for missing in ("u2", "a2", "u3", "a3"):
        assert await store.get_message(missing) is None
    after = [await count(store, m) for m in (CONVERSATIONS, MESSAGES, MESSAGE_LINKS)]
    assert after == before
    assert await store.find_link("bot", "chat", "p-u2") is None


async def test_find_link_and_reset_head(store: SQLStore) -> None:
    await store.commit_turn(turn("u1", "a1", None))
    assert await store.find_link("bot", "other-chat", "p-a1") is None
    assert await store.find_link("other-bot", "chat", "p-a1") is None

    await store.reset_head("bot", "chat:1")
    await store.reset_head("bot", "never-used")
    assert await store.get_head("bot", "chat:1") is None
    assert await store.find_link("bot", "chat", "p-a1") is not None  # links survive


async def test_concurrent_turns_all_commit(store: SQLStore) -> None:
    await asyncio.gather(
        *(
            store.commit_turn(turn(f"u{i}", f"a{i}", None, conv=f"c{i}", scope=f"s{i}"))
            for i in range(12)
        )
    )
    for i in range(12):
        assert await store.get_head("bot", f"s{i}") == ScopeHead(f"c{i}", f"a{i}", "openai")


async def test_timestamps_are_utc_aware(store: SQLStore) -> None:
    await store.commit_turn(turn("u1", "a1", None))
    async with store.engine.connect() as conn:
        created = (await conn.execute(select(MESSAGES.c.created_at))).scalars().all()
    assert created
    assert all(ts.tzinfo is not None and ts.utcoffset() == UTC.utcoffset(None) for ts in created)


async def test_sqlite_file_uses_wal_and_foreign_keys(tmp_path: Any) -> None:
    from migrations import runner

    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'folder' / 'parley.db'}"
    await runner.upgrade(url)
    store = SQLStore(url)
    try:
        async with store.engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar() == 5000
    finally:
        await store.aclose()
    assert (tmp_path / "new" / "folder" / "parley.db").exists()


async def test_an_empty_extra_is_stored_as_sql_null(store: SQLStore) -> None:
    """SQL NULL, not the JSON text 'null': reading it back needs no JSON decode."""
    await store.add_messages(
        [msg("plain", None), StoredMessage("x", "c1", None, "user", "t", 1, {"k": "v"})]
    )
    async with store.engine.connect() as conn:
        nulls = (
            (await conn.execute(select(MESSAGES.c.id).where(MESSAGES.c.extra.is_(None))))
            .scalars()
            .all()
        )
    assert nulls == ["plain"]
    assert (await store.get_message("x")) == StoredMessage(
        "x", "c1", None, "user", "t", 1, {"k": "v"}
    )


async def test_a_json_null_extra_reads_as_empty(store: SQLStore) -> None:
    """Rows written before SQL NULL was used hold the JSON 'null'; they read as {}."""
    await store.add_messages([msg("old", None)])
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE messages SET extra = 'null' WHERE id = 'old'"))
    assert await store.get_message("old") == msg("old", None)
    assert await store.history("old", 10) == [msg("old", None)]


async def test_history_with_a_huge_depth_cap(store_url: str, store: SQLStore) -> None:
    await store.add_messages(chain(3))
    uncapped = SQLStore(store_url, max_history_depth=10**12)
    try:
        assert ids(await uncapped.history("m2", 1000)) == ["m0", "m1", "m2"]
    finally:
        await uncapped.aclose()
