"""The inbox beyond one process: re-deliveries, one turn per scope across workers, and
the recovery of a dead worker's turns. Real stores (SQLite file and PostgreSQL), the
real chat service and backend, the fake OpenAI server over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

from sqlalchemy import insert

from core.chat_service import INTERRUPTED_TEXT, ChatService, Outcome
from core.incoming import IncomingMessage, ReplySink
from core.store.inbox import Taken
from core.store.models import ANSWERING, INBOX, RECEIVED
from core.store.models import utcnow as now
from core.store.sql import SQLStore
from core.workers import HEARTBEAT_TTL, is_gone, this_worker
from tests.core.test_chat_service import RecordingSink, make_service, msg
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

SCOPE = "test:chat:chat-1"


def dead_worker() -> str:
    """The id of a process of this host that has exited."""
    child = subprocess.run(
        [sys.executable, "-c", "from core.workers import this_worker; print(this_worker())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return child.stdout.strip()


class Redeliveries:
    """The adapter's side of recovery: sinks that remember what they were asked."""

    def __init__(self) -> None:
        self.sinks: list[tuple[IncomingMessage, tuple[str, ...], RecordingSink]] = []

    @contextlib.asynccontextmanager
    async def reply_sink(
        self, msg: IncomingMessage, *, adopt: Sequence[str]
    ) -> AsyncIterator[ReplySink]:
        sink = RecordingSink()
        self.sinks.append((msg, tuple(adopt), sink))
        yield sink


async def chain(store: SQLStore, scope: str = SCOPE) -> list[str]:
    head = await store.get_head("bot", scope)
    assert head is not None
    return [m.text for m in await store.history(head.parent_message_id, 10**6)]


async def orphan(
    store: SQLStore, message: IncomingMessage, *, state: str, replies: Sequence[str] = ()
) -> str:
    """An inbox entry as a worker that died left it."""
    entry = f"orphan-{message.message_id}"
    worker = dead_worker()
    assert await store.inbox.receive(
        entry=entry,
        bot="bot",
        scope_key=SCOPE,
        chat_id=message.chat_id,
        message_id=message.message_id,
        message=message.to_record(),
        worker=worker,
    )
    if state == ANSWERING:
        taken = await store.inbox.take(entry, bot="bot", scope_key=SCOPE, worker=worker)
        assert isinstance(taken, Taken)
    if replies:
        await store.inbox.note_replies(entry, replies)
    return entry


def test_worker_liveness() -> None:
    me = str(this_worker())
    assert not is_gone(me, now(), now())
    assert is_gone(dead_worker(), now(), now())
    # Another host: only the heartbeat tells.
    elsewhere = "elsewhere/1/1"
    assert not is_gone(elsewhere, now(), now())
    assert is_gone(elsewhere, now() - timedelta(seconds=HEARTBEAT_TTL + 1), now())


async def test_a_redelivered_message_is_answered_once(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    message = msg("once")
    first, second = RecordingSink(), RecordingSink()
    assert await service.handle(message, first) is Outcome.ANSWERED
    assert await service.handle(message, second) is Outcome.DUPLICATE
    assert second.completed is None and second.errors == []
    assert len(server.chat_requests) == 1
    assert await chain(store) == ["once", "seen 0 earlier: once"]
    await service.backend.aclose()


async def test_two_workers_answer_one_scope_one_after_the_other(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    """Two services on two engines share nothing but the database, as two processes."""
    other_store = SQLStore(store.url)
    workers = [make_service(server, store), make_service(server, other_store)]
    server.default = Behaviour(chunk_delay=0.01)
    try:
        outcomes = await asyncio.gather(
            *(workers[i % 2].handle(msg(f"q{i}"), RecordingSink()) for i in range(6))
        )
        assert outcomes == [Outcome.ANSWERED] * 6
        texts = await chain(store)
        assert len(texts) == 12  # six turns, each on the one before: nothing branched off
        questions = texts[::2]
        for depth, answer in enumerate(texts[1::2]):
            assert answer == f"seen {2 * depth} earlier: {questions[depth]}"
    finally:
        for service in workers:
            await service.backend.aclose()
        await other_store.aclose()


async def test_recovery_marks_a_visible_answer_interrupted(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    await service.handle(msg("before"), RecordingSink())
    before = await chain(store)
    message = msg("cut off")
    await orphan(store, message, state=ANSWERING, replies=["p1", "p2"])

    redelivery = Redeliveries()
    assert await service.recover(redelivery) == 1
    [(again, adopted, sink)] = redelivery.sinks
    assert again == message
    assert adopted == ("p2",)  # the piece that was still growing
    assert sink.completed == INTERRUPTED_TEXT
    assert await chain(store) == before  # nothing committed for the cut-off turn
    assert await store.inbox.unfinished("bot") == []
    assert await service.recover(redelivery) == 0  # resolved once

    # The scope is free again.
    after = RecordingSink()
    assert await service.handle(msg("next"), after) is Outcome.ANSWERED
    assert after.completed == "seen 2 earlier: next"
    await service.backend.aclose()


async def test_recovery_answers_a_message_nobody_answered(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    message = msg("never answered")
    await orphan(store, message, state=RECEIVED)
    redelivery = Redeliveries()
    assert await service.recover(redelivery) == 1
    [(_, adopted, sink)] = redelivery.sinks
    assert adopted == ()
    assert sink.completed == "seen 0 earlier: never answered"
    assert await chain(store) == ["never answered", "seen 0 earlier: never answered"]
    # And a re-delivery of it now is recognised.
    assert await service.handle(message, RecordingSink()) is Outcome.DUPLICATE
    await service.backend.aclose()


async def test_a_dead_holder_does_not_block_its_scope(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    """A console worker (no redelivery) waiting on a scope that a killed process held."""
    service = make_service(server, store)
    await orphan(store, msg("killed mid-answer"), state=ANSWERING, replies=["p1"])
    sink = RecordingSink()
    outcome = await asyncio.wait_for(service.handle(msg("go on"), sink), 10)
    assert outcome is Outcome.ANSWERED and sink.completed == "seen 0 earlier: go on"
    assert await store.inbox.unfinished("bot") == []
    await service.backend.aclose()


async def test_a_cancelled_turn_frees_its_scope_and_stays_recoverable(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service: ChatService = make_service(server, store)
    server.default = Behaviour(chunk_delay=0.2, reply="a b c d e f g h")
    sink = RecordingSink()
    task = asyncio.ensure_future(service.handle(msg("slow"), sink))
    await asyncio.wait_for(sink.first_update.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    [left] = await store.inbox.unfinished("bot")
    assert left.state == RECEIVED and left.message["text"] == "slow"

    server.default = Behaviour()
    nxt = RecordingSink()
    assert await asyncio.wait_for(service.handle(msg("next"), nxt), 10) is Outcome.ANSWERED
    await service.backend.aclose()


async def test_turns_of_one_scope_are_answered_in_the_order_they_came(
    server: FakeOpenAIServer, migrated_postgresql_url: str
) -> None:
    """On PostgreSQL, inbox writes run side by side and may finish in any order; the
    answers must still follow the messages' order. Here the first message's write is
    held up (another transaction holds its platform message id in the unique index)
    while two later ones are written at once."""
    store = SQLStore(migrated_postgresql_url)
    service = make_service(server, store)
    zeroth, first, second, third = msg("zeroth"), msg("first"), msg("second"), msg("third")
    blocker = SQLStore(migrated_postgresql_url)
    server.default = Behaviour(chunk_delay=0.05)  # the zeroth answer takes a while
    try:
        async with blocker.engine.connect() as conn:
            await conn.begin()
            await conn.execute(
                insert(INBOX).values(
                    id="blocker", bot="bot", scope_key="other", chat_id=first.chat_id,
                    message_id=first.message_id, state=RECEIVED, message={},
                    worker="elsewhere", heartbeat_at=now(), created_at=now(),
                )
            )  # fmt: skip
            turns = [asyncio.create_task(service.handle(zeroth, RecordingSink()))]
            await asyncio.sleep(0.1)  # answering: the others wait in line behind it
            turns.append(asyncio.create_task(service.handle(first, RecordingSink())))
            await asyncio.sleep(0.1)  # its insert now waits on the blocker's row
            turns += [
                asyncio.create_task(service.handle(m, RecordingSink())) for m in (second, third)
            ]
            await asyncio.sleep(0.3)  # the later two are recorded, waiting for their turn
            await conn.rollback()  # the first one's insert goes through
        assert await asyncio.gather(*turns) == [Outcome.ANSWERED] * 4
        assert (await chain(store))[::2] == ["zeroth", "first", "second", "third"]
    finally:
        await service.backend.aclose()
        await blocker.aclose()
        await store.aclose()
