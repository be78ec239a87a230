"""The chat service end to end: a real SQL store (SQLite and PostgreSQL), the real
chat_completions backend, and the fake OpenAI server over loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core import tokens
from core.backends.chat_completions import ChatCompletionsBackend
from core.chat_service import (
    HELP_TEXT,
    NO_DATABASE_TEXT,
    ChatService,
    Outcome,
)
from core.incoming import BotPolicy, IncomingMessage
from core.store.sql import SQLStore
from core.types import ChatResponse
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

_ids = itertools.count(1000)


class RecordingSink:
    """A reply sink that remembers what the chat user would have seen."""

    def __init__(self, *, operator: bool = False) -> None:
        self.updates: list[str] = []
        self.completed: str | None = None
        self.errors: list[str] = []
        self.details: list[str | None] = []
        self.notices: list[str] = []
        self.platform_ids: list[str] = []
        self.first_update = asyncio.Event()
        self.operator = operator  # True: like the console, this sink shows the detail

    async def update(self, text: str) -> None:
        self.updates.append(text)
        self.first_update.set()

    async def complete(self, text: str) -> list[str]:
        self.completed = text
        self.platform_ids = [str(next(_ids))]
        return self.platform_ids

    async def error(self, text: str, *, detail: str | None = None) -> bool:
        self.errors.append(text)
        self.details.append(detail)
        return self.operator


class NoticingSink(RecordingSink):
    async def notice(self, text: str) -> None:
        self.notices.append(text)


def msg(text: str, **overrides: Any) -> IncomingMessage:
    fields: dict[str, Any] = {
        "platform": "test",
        "bot": "bot",
        "chat_id": "chat-1",
        "user_id": "user-1",
        "text": text,
        "message_id": str(next(_ids)),
        "is_direct": True,
    }
    fields.update(overrides)
    return IncomingMessage(**fields)


def counting_reply(messages: list[dict[str, Any]]) -> str:
    """The answer says how many history messages came with the question."""
    history = [m for m in messages if m["role"] != "system"][:-1]
    return f"seen {len(history)} earlier: {messages[-1]['content']}"


class StatsBackend(ChatCompletionsBackend):
    """Reports prompt stats on the final answer, as the history backends do."""

    async def stream_message(self, text: str, **options: Any) -> AsyncIterator[ChatResponse]:
        async for partial in super().stream_message(text, **options):
            yield (
                dataclasses.replace(partial, prompt_messages=2, prompt_tokens=42)
                if (partial.done)
                else partial
            )


def make_service(
    server: FakeOpenAIServer,
    store: SQLStore,
    *,
    backend: str = "fake",
    llm_class: type[ChatCompletionsBackend] = ChatCompletionsBackend,
    **policy: Any,
) -> ChatService:
    llm = llm_class(
        base_url=server.base_url,
        api_key="sk-test",
        model="test-model",
        system_message="Be brief.",
        max_retries=0,
        timeout=10,
        history=store,
        save_history=False,
    )
    return ChatService(
        policy=BotPolicy(name="bot", backend=backend, **policy), backend=llm, store=store
    )


def sent_history(server: FakeOpenAIServer, index: int = -1) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in server.chat_requests[index].messages]


async def test_turns_chain_and_survive_a_restart(server: FakeOpenAIServer, store: SQLStore) -> None:
    service = make_service(server, store)
    first = RecordingSink()
    assert await service.handle(msg("one"), first) is Outcome.ANSWERED
    assert first.completed == "seen 0 earlier: one"
    assert (
        first.updates and first.updates[-1] != "" and first.completed.startswith(first.updates[0])
    )
    await service.handle(msg("two"), RecordingSink())
    await service.backend.aclose()

    # A new process: new store object, new backend, same database.
    restarted_store = SQLStore(store.url)
    try:
        restarted = make_service(server, restarted_store)
        sink = RecordingSink()
        await restarted.handle(msg("three"), sink)
        await restarted.backend.aclose()
    finally:
        await restarted_store.aclose()
    assert sink.completed == "seen 4 earlier: three"
    assert sent_history(server) == [
        ("system", "Be brief."),
        ("user", "one"),
        ("assistant", "seen 0 earlier: one"),
        ("user", "two"),
        ("assistant", "seen 2 earlier: two"),
        ("user", "three"),
    ]


async def test_failed_answer_tells_the_user_and_keeps_the_head(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    await service.handle(msg("one"), RecordingSink())
    head = await store.get_head("bot", "test:chat:chat-1")
    assert head is not None

    server.script(Behaviour.http_error(500), Behaviour(disconnect_after=2, reply="a b c d e f"))
    for _ in range(2):
        sink = RecordingSink()
        assert await service.handle(msg("lost"), sink) is Outcome.FAILED
        assert sink.completed is None
        assert len(sink.errors) == 1 and "try again" in sink.errors[0].lower()
        assert "sk-test" not in sink.errors[0]
        assert await store.get_head("bot", "test:chat:chat-1") == head

    sink = RecordingSink()
    await service.handle(msg("two"), sink)
    assert sink.completed == "seen 2 earlier: two"
    await service.backend.aclose()


async def test_concurrent_messages_in_one_scope_form_one_chain(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    server.default = Behaviour(chunk_delay=0.005)
    sinks = [RecordingSink() for _ in range(5)]
    outcomes = await asyncio.gather(
        *(service.handle(msg(f"q{i}"), sink) for i, sink in enumerate(sinks))
    )
    assert outcomes == [Outcome.ANSWERED] * 5
    assert server.max_in_flight == 1  # one scope, one request at a time
    # Each request carried every earlier turn: 0, 2, 4, 6, 8 history messages.
    assert [len(r.messages) - 2 for r in server.chat_requests] == [0, 2, 4, 6, 8]
    head = await store.get_head("bot", "test:chat:chat-1")
    assert head is not None
    chain = await store.history(head.parent_message_id, 10_000)
    assert [m.role for m in chain] == ["user", "assistant"] * 5
    assert len({m.conversation_id for m in chain}) == 1
    await service.backend.aclose()


async def test_other_scopes_are_answered_in_parallel(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    server.default = Behaviour(delay=0.2)
    await asyncio.gather(
        *(service.handle(msg("hi", chat_id=f"c{i}"), RecordingSink()) for i in range(4))
    )
    assert server.max_in_flight > 1
    await service.backend.aclose()


async def test_replying_to_an_older_answer_branches(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    a = RecordingSink()
    await service.handle(msg("a"), a)
    await service.handle(msg("b"), RecordingSink())
    branch = RecordingSink()
    await service.handle(msg("c", reply_to_message_id=a.platform_ids[0], reply_to_bot=True), branch)
    assert sent_history(server)[1:] == [
        ("user", "a"),
        ("assistant", "seen 0 earlier: a"),
        ("user", "c"),
    ]
    # The branch is now the scope's head.
    await service.handle(msg("d"), RecordingSink())
    assert [c for _, c in sent_history(server)[1:]][-3:] == ["c", "seen 2 earlier: c", "d"]
    await service.backend.aclose()


async def test_reset_and_commands(server: FakeOpenAIServer, store: SQLStore) -> None:
    service = make_service(server, store)
    await service.handle(msg("one"), RecordingSink())
    help_sink = RecordingSink()
    assert await service.handle(msg("/help@parley_bot"), help_sink) is Outcome.COMMAND
    assert help_sink.completed == HELP_TEXT
    reset = RecordingSink()
    assert await service.handle(msg("/reset"), reset) is Outcome.COMMAND
    assert await store.get_head("bot", "test:chat:chat-1") is None
    unknown = RecordingSink()
    await service.handle(msg("/frobnicate"), unknown)
    assert unknown.completed is not None and "/help" in unknown.completed
    assert len(server.chat_requests) == 1  # commands never reach the backend
    sink = RecordingSink()
    await service.handle(msg("fresh"), sink)
    assert sink.completed == "seen 0 earlier: fresh"
    await service.backend.aclose()


async def test_group_trigger_and_access(server: FakeOpenAIServer, store: SQLStore) -> None:
    mention_only = make_service(server, store)
    group = {"is_direct": False, "chat_id": "group"}
    assert await mention_only.handle(msg("chatter", **group), RecordingSink()) is Outcome.IGNORED
    sink = RecordingSink()
    assert (
        await mention_only.handle(msg("hey bot", addresses_bot=True, **group), sink)
        is Outcome.ANSWERED
    )
    always = make_service(server, store, group_trigger="always")
    assert await always.handle(msg("chatter", **group), RecordingSink()) is Outcome.ANSWERED

    private = make_service(server, store, allowed_users=frozenset({"someone-else"}))
    denied = RecordingSink()
    assert await private.handle(msg("let me in"), denied) is Outcome.DENIED
    assert denied.errors and "not allowed" in denied.errors[0]
    in_group = RecordingSink()
    denied_there = await private.handle(msg("me too", addresses_bot=True, **group), in_group)
    assert denied_there is Outcome.DENIED
    assert not in_group.errors and in_group.completed is None, "silence in a group"
    assert len(server.chat_requests) == 2
    for service in (mention_only, always, private):
        await service.backend.aclose()


async def test_cancelled_turn_commits_nothing(server: FakeOpenAIServer, store: SQLStore) -> None:
    service = make_service(server, store)
    await service.handle(msg("one"), RecordingSink())
    head = await store.get_head("bot", "test:chat:chat-1")
    server.script(Behaviour(chunk_delay=0.5, reply="slow slow slow slow"))
    sink = RecordingSink()
    task = asyncio.create_task(service.handle(msg("two"), sink))
    await asyncio.wait_for(sink.first_update.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await store.get_head("bot", "test:chat:chat-1") == head
    after = RecordingSink()
    await service.handle(msg("three"), after)
    assert after.completed == "seen 2 earlier: three"
    await service.backend.aclose()


async def test_a_head_from_another_backend_is_not_continued(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    first = make_service(server, store, backend="first")
    await first.handle(msg("one"), RecordingSink())
    await first.backend.aclose()
    other = make_service(server, store, backend="second")
    sink = RecordingSink()
    await other.handle(msg("two"), sink)
    assert sink.completed == "seen 0 earlier: two"
    await other.backend.aclose()


class RefusingSink(RecordingSink):
    async def complete(self, text: str) -> list[str]:
        raise ConnectionError("the platform refused the message")


async def test_an_undelivered_answer_is_not_committed(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    await service.handle(msg("one"), RecordingSink())
    head = await store.get_head("bot", "test:chat:chat-1")
    assert await service.handle(msg("two"), RefusingSink()) is Outcome.FAILED
    assert await store.get_head("bot", "test:chat:chat-1") == head
    await service.backend.aclose()


async def test_a_failed_new_conversation_keeps_the_old_head(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    await service.handle(msg("one"), RecordingSink())
    head = await store.get_head("bot", "test:chat:chat-1")
    server.script(Behaviour.http_error(500))
    failed = await service.handle(msg("fresh start"), RecordingSink(), new_conversation=True)
    assert failed is Outcome.FAILED
    assert await store.get_head("bot", "test:chat:chat-1") == head
    sink = RecordingSink()
    await service.handle(msg("fresh start"), sink, new_conversation=True)
    assert sink.completed == "seen 0 earlier: fresh start"
    new_head = await store.get_head("bot", "test:chat:chat-1")
    assert new_head is not None and head is not None
    assert new_head.conversation_id != head.conversation_id
    await service.backend.aclose()


async def test_group_commands_for_other_bots_are_ignored(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    group = {"is_direct": False, "chat_id": "group"}
    for text in ("/help@SomeOtherBot", "/weather Paris", "/usr/bin/env is what?"):
        assert await service.handle(msg(text, **group), RecordingSink()) is Outcome.IGNORED
    ours = RecordingSink()
    outcome = await service.handle(msg("/help@parley_bot", addresses_bot=True, **group), ours)
    assert outcome is Outcome.COMMAND and ours.completed == HELP_TEXT
    plain = RecordingSink()
    assert await service.handle(msg("/help", **group), plain) is Outcome.COMMAND
    assert server.chat_requests == []
    await service.backend.aclose()


async def test_commands_can_be_turned_off_for_prompts(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store)
    sink = RecordingSink()
    outcome = await service.handle(msg("/usr/bin/env: what is it?"), sink, commands=False)
    assert outcome is Outcome.ANSWERED
    assert sink.completed == "seen 0 earlier: /usr/bin/env: what is it?"
    await service.backend.aclose()


async def test_a_broken_database_is_reported_not_raised(
    server: FakeOpenAIServer, tmp_path: Path
) -> None:
    # A real database that was never migrated: every store call fails.
    unmigrated = SQLStore(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        service = make_service(server, unmigrated)
        sink = RecordingSink()
        assert await service.handle(msg("hi"), sink) is Outcome.FAILED
        assert sink.errors == [NO_DATABASE_TEXT]
        await service.backend.aclose()
    finally:
        await unmigrated.aclose()


async def test_stored_token_counts_use_the_backends_tokenizer(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    llm = ChatCompletionsBackend(
        base_url=server.base_url,
        api_key="sk-test",
        model="gpt-4",
        history=store,
        save_history=False,
    )
    service = ChatService(policy=BotPolicy(name="bot", backend="fake"), backend=llm, store=store)
    text = "Привет! Как дела? 你好，世界。Καλημέρα"
    await service.handle(msg(text), RecordingSink())
    head = await store.get_head("bot", "test:chat:chat-1")
    assert head is not None
    user = (await store.history(head.parent_message_id, 10_000))[0]
    # gpt-4 budgets in cl100k_base, which splits this text differently from o200k_base.
    assert user.token_count == tokens.count_message_tokens(text, encoding="cl100k_base")
    assert user.token_count != tokens.count_message_tokens(text, encoding="o200k_base")
    await llm.aclose()


async def test_a_message_over_max_input_chars_is_refused_before_the_backend(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store, max_input_chars=10)
    await service.handle(msg("short"), RecordingSink())
    head = await store.get_head("bot", "test:chat:chat-1")
    sink = RecordingSink()
    assert await service.handle(msg("x" * 11), sink) is Outcome.TOO_LONG
    assert sink.errors == ["That message is too long for me: 11 characters, the limit is 10."]
    assert sink.completed is None
    assert len(server.chat_requests) == 1  # no backend call
    assert await store.get_head("bot", "test:chat:chat-1") == head  # nothing committed
    # Surrounding whitespace does not count; exactly the limit passes.
    assert await service.handle(msg("  " + "y" * 10 + "\n"), RecordingSink()) is Outcome.ANSWERED
    await service.backend.aclose()


class MovingSink(RecordingSink):
    """Moves every answer to chat ``moved`` (as Discord's auto_thread opens a thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.answering_calls: list[IncomingMessage] = []

    async def answering(self, message: IncomingMessage) -> IncomingMessage:
        self.answering_calls.append(message)
        return dataclasses.replace(message, chat_id="moved")


async def test_answering_is_awaited_only_for_answered_messages_and_may_move_them(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    service = make_service(server, store, max_input_chars=20, rate_limit=(1, 60))
    refused = [msg("x" * 21), msg("/help"), msg("   "), msg("hi", is_direct=False)]
    for message in refused:
        sink = MovingSink()
        await service.handle(message, sink)
        assert sink.answering_calls == [], message.text
    sink = MovingSink()
    assert await service.handle(msg("hello"), sink) is Outcome.ANSWERED
    assert [m.text for m in sink.answering_calls] == ["hello"]
    assert await store.get_head("bot", "test:chat:chat-1") is None
    assert await store.get_head("bot", "test:chat:moved") is not None, "the moved scope"
    limited = MovingSink()
    assert await service.handle(msg("again"), limited) is Outcome.RATE_LIMITED
    assert limited.answering_calls == []
    await service.backend.aclose()


async def test_a_failure_is_one_operator_line_logged_once(
    server: FakeOpenAIServer, store: SQLStore, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(server, store)
    caplog.set_level(logging.INFO, logger="core.chat_service")
    server.script(Behaviour.http_error(503, "upstream overloaded"))
    platform = RecordingSink()
    assert await service.handle(msg("one"), platform) is Outcome.FAILED
    # The chat user gets plain words; the operator's detail names backend and status.
    assert platform.errors[0] == "The AI backend failed to answer. Please try again in a moment."
    detail = platform.details[0]
    assert detail is not None and detail.startswith("backend 'fake': ") and "503" in detail
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "503" in warnings[0].getMessage()

    caplog.clear()
    server.script(Behaviour.http_error(503, "upstream overloaded"))
    terminal = RecordingSink(operator=True)  # it showed the detail: no warning on top
    assert await service.handle(msg("two"), terminal) is Outcome.FAILED
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    assert "failed" in caplog.records[0].getMessage()
    await service.backend.aclose()


async def test_one_info_line_per_turn(
    server: FakeOpenAIServer, store: SQLStore, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(server, store, llm_class=StatsBackend)
    caplog.set_level(logging.INFO, logger="core.chat_service")
    assert await service.handle(msg("one"), RecordingSink()) is Outcome.ANSWERED
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    line = lines[0]
    assert line.startswith("bot bot, backend fake: answered; sent 2 history messages, 42 tokens;")
    assert "first text after 0." in line and " s in all" in line
    await service.backend.aclose()


async def test_the_adapter_passes_its_own_help(server: FakeOpenAIServer, store: SQLStore) -> None:
    service = make_service(server, store)
    sink = RecordingSink()
    await service.handle(msg("/help"), sink, help_text="Type here.\n")
    assert sink.completed == "Type here.\n"
    start = RecordingSink()
    await service.handle(msg("/start"), start, help_text="Type here.\n")
    assert start.completed is not None and start.completed.endswith("Type here.\n")
    assert "groups" not in start.completed
    await service.backend.aclose()


async def test_a_thread_carries_over_between_backends_sharing_the_store(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    shared = frozenset({"first", "second"})
    first = make_service(server, store, backend="first", shared_history=shared)
    await first.handle(msg("one"), RecordingSink())
    await first.backend.aclose()
    second = make_service(server, store, backend="second", shared_history=shared)
    sink = NoticingSink()
    await second.handle(msg("two"), sink)
    assert sink.completed == "seen 2 earlier: two"
    assert sink.notices == []
    head = await store.get_head("bot", "test:chat:chat-1")
    assert head is not None and head.backend == "second"
    await second.backend.aclose()

    # A backend that keeps its history elsewhere cannot continue it: one notice.
    third = make_service(server, store, backend="web", shared_history=shared)
    sink = NoticingSink()
    await third.handle(msg("three"), sink)
    assert sink.completed == "seen 0 earlier: three"
    assert len(sink.notices) == 1
    assert "'second'" in sink.notices[0] and "new conversation" in sink.notices[0]
    await third.backend.aclose()


async def test_a_failed_save_says_why(server: FakeOpenAIServer, migrated_sqlite_url: str) -> None:
    first = SQLStore(migrated_sqlite_url)
    try:
        await make_service(server, first).handle(msg("one"), RecordingSink())
    finally:
        await first.aclose()
    path = migrated_sqlite_url.removeprefix("sqlite+aiosqlite:///")
    read_only = SQLStore(f"sqlite+aiosqlite:///file:{path}?mode=ro&uri=true")
    try:
        service = make_service(server, read_only)
        sink = RecordingSink(operator=True)
        asked = len(server.chat_requests)
        assert await service.handle(msg("two"), sink) is Outcome.FAILED
        # The inbox write fails first: refused before the backend, nothing to lose.
        assert sink.completed is None and len(server.chat_requests) == asked
        assert sink.errors == [NO_DATABASE_TEXT]
        assert sink.details[0] is not None and "the database is read-only" in sink.details[0]
        await service.backend.aclose()
    finally:
        await read_only.aclose()
