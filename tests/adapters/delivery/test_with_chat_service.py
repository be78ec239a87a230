"""The delivery sink as the real chat service drives it: a streamed answer from the
chat_completions backend (fake OpenAI server over loopback), a real SQLite store, the
strict fake platform. A long answer arrives whole in several messages, and a reply to
its second message continues from that answer (the ids ``complete`` returns are the
links the store keeps)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.delivery.scheduler import DeliveryScheduler
from adapters.delivery.sink import DeliverySink
from core.backends.chat_completions import ChatCompletionsBackend
from core.chat_service import ChatService, Outcome
from core.incoming import BotPolicy, IncomingMessage
from core.store.sql import SQLStore
from tests.adapters.delivery.conftest import answer, finals
from tests.adapters.delivery.platform import FakePlatform, MarkRenderer
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

LONG = answer(160)
_ids = itertools.count(1)


def reply(messages: list[dict[str, Any]]) -> str:
    return LONG if messages[-1]["content"] == "long please" else "Short: " + str(len(messages))


@pytest.fixture
async def service(migrated_sqlite_url: str) -> AsyncIterator[ChatService]:
    server = FakeOpenAIServer(reply=reply, default=Behaviour(chunk_delay=0.003))
    async with server:
        store = SQLStore(migrated_sqlite_url)
        backend = ChatCompletionsBackend(
            base_url=server.base_url, model="m", max_retries=0, timeout=10, history=store
        )
        yield ChatService(
            policy=BotPolicy(name="bot", backend="fake"), backend=backend, store=store
        )
        await backend.aclose()
        await store.aclose()


def message(text: str, reply_to: str | None = None) -> IncomingMessage:
    return IncomingMessage(
        platform="fake",
        bot="bot",
        chat_id="c",
        user_id="u",
        text=text,
        message_id=f"user-{next(_ids)}",
        reply_to_message_id=reply_to,
        reply_to_bot=reply_to is not None,
        is_direct=True,
    )


async def test_a_split_answer_streams_whole_and_a_reply_to_its_second_part_branches(
    service: ChatService,
    platform: FakePlatform,
    scheduler: DeliveryScheduler,
    renderer: MarkRenderer,
) -> None:
    target = platform.target("c")
    async with DeliverySink(scheduler, target, renderer) as sink:
        assert await service.handle(message("long please"), sink) is Outcome.ANSWERED
    sends = platform.of("c", "send")
    expected = finals(LONG, scheduler.limits, renderer)
    assert len(sends) == len(expected) >= 3
    assert [platform.messages[c.message_id] for c in sends] == expected
    assert len(platform.of("c", "edit")) >= 1  # it streamed, not just sent at the end

    async with DeliverySink(scheduler, target, renderer) as sink:
        await service.handle(message("unrelated"), sink)
    async with DeliverySink(scheduler, target, renderer) as sink:
        # Replying to the long answer's second message continues from the long answer:
        # the model sees [system, long please, LONG, this], not the unrelated turn.
        await service.handle(message("more on that", reply_to=sends[1].message_id), sink)
    last = platform.of("c", "send")[-1]
    assert platform.messages[last.message_id].text == "Short: 4"
