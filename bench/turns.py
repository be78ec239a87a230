"""Conversations of turns against the fake LLM, two ways: through parley's chat service
as ``parley run`` wires it (``parley_service``), and the way a minimal hand-written bot
does it (``bare_conversation``, the baseline). Shared by bench.chat_overhead and
bench.curves."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from bench.harness import parley_config
from bench.naive import LlmClient
from bots.app import App
from core.chat_service import ChatService, Outcome
from core.incoming import IncomingMessage

SYSTEM = "You are a helpful assistant."  # the config's default system message too
PLATFORM = "bench"


class NullSink:
    """A reply sink that shows nothing: what is measured is parley, not a platform."""

    async def update(self, text: str) -> None:
        pass

    async def complete(self, text: str) -> list[str]:
        return []

    async def error(self, text: str, *, detail: str | None = None) -> None:
        raise RuntimeError(text)


async def bare_conversation(
    llm: LlmClient, turns: int, conv: str, latencies: list[float] | None = None
) -> None:
    """What a minimal hand-written bot does: keep a list, POST it, read the SSE."""
    messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
    for turn in range(turns):
        started = time.perf_counter()
        messages.append({"role": "user", "content": f"conversation {conv} turn {turn}"})
        messages.append({"role": "assistant", "content": await llm.answer(messages)})
        if latencies is not None:
            latencies.append(time.perf_counter() - started)


def incoming(service: ChatService, chat_id: str, text: str) -> IncomingMessage:
    """A direct message to ``service``'s bot in chat ``chat_id``."""
    return IncomingMessage(
        platform=PLATFORM,
        bot=service.policy.name,
        chat_id=chat_id,
        user_id="u",
        text=text,
        is_direct=True,
    )


async def parley_conversation(
    service: ChatService, turns: int, conv: str, latencies: list[float] | None = None
) -> None:
    """``turns`` turns in chat ``conv``, each on the previous answer (the store's head)."""
    for turn in range(turns):
        started = time.perf_counter()
        message = incoming(service, f"chat-{conv}", f"conversation {conv} turn {turn}")
        outcome = await service.handle(message, NullSink())
        if outcome is not Outcome.ANSWERED:
            raise RuntimeError(f"turn {turn} of conversation {conv}: {outcome.value}")
        if latencies is not None:
            latencies.append(time.perf_counter() - started)


@contextlib.asynccontextmanager
async def parley_service(
    database: str, llm_base_url: str, slots: int
) -> AsyncIterator[tuple[App, ChatService]]:
    """The app (store at ``database``, migrated) and one bot's chat service, with a
    chat_completions backend at the fake LLM allowing ``slots`` requests at once."""
    config = parley_config(database, llm_base_url, slots, {"platform": "console"})
    async with App(config) as app:
        service = app.service(config.bots[0])
        await parley_conversation(service, 1, "warm-up")  # tokenizer, connections
        yield app, service


async def timed(run: Callable[[int], Awaitable[None]], conversations: int) -> float:
    """Wall seconds for ``run(0)`` … ``run(conversations - 1)`` all at once."""
    start = time.perf_counter()
    await asyncio.gather(*(run(c) for c in range(conversations)))
    return time.perf_counter() - start
