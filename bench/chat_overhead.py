"""Per-turn overhead of parley's chat service against a bare aiohttp loop.

Both sides talk to the same fake OpenAI-compatible server over loopback in the same
run, so the ratio (parley time per turn / bare time per turn) is what parley adds:
scope lock, history walk in SQLite, token counting, streaming callbacks and the
atomic commit of each turn. Run: ``python -m bench.chat_overhead`` (or ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.naive import LlmClient
from core.backends.chat_completions import ChatCompletionsBackend
from core.chat_service import ChatService, Outcome
from core.incoming import BotPolicy, IncomingMessage
from core.store.sql import SQLStore
from migrations.runner import upgrade
from tests.fakes.openai_server import FakeOpenAIServer

SYSTEM = "You are a helpful assistant."


class _NullSink:
    async def update(self, text: str) -> None:
        pass

    async def complete(self, text: str) -> list[str]:
        return []

    async def error(self, text: str, *, detail: str | None = None) -> None:
        raise RuntimeError(text)


async def _bare_conversation(llm: LlmClient, turns: int, conv: int) -> None:
    """What a minimal hand-written bot does: keep a list, POST it, read the SSE."""
    messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f"conversation {conv} turn {turn}"})
        messages.append({"role": "assistant", "content": await llm.answer(messages)})


async def _parley_conversation(service: ChatService, turns: int, conv: int) -> None:
    for turn in range(turns):
        message = IncomingMessage(
            platform="bench",
            bot="bench",
            chat_id=f"chat-{conv}",
            user_id="u",
            text=f"conversation {conv} turn {turn}",
            is_direct=True,
        )
        outcome = await service.handle(message, _NullSink())
        assert outcome is Outcome.ANSWERED


async def _timed(run: Callable[[int], Awaitable[None]], conversations: int) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(run(c) for c in range(conversations)))
    return time.perf_counter() - start


async def bench(conversations: int, turns: int, folder: Path) -> tuple[float, float]:
    """Seconds per turn for (bare aiohttp, parley)."""
    async with FakeOpenAIServer() as server:
        async with LlmClient(server.base_url, "bench").open() as llm:
            await _bare_conversation(llm, 1, -1)  # warm up
            bare = await _timed(lambda c: _bare_conversation(llm, turns, c), conversations)

        db = f"sqlite+aiosqlite:///{folder / f'bench-{conversations}.db'}"
        await upgrade(db)
        store = SQLStore(db)
        backend = ChatCompletionsBackend(
            base_url=server.base_url,
            model="bench",
            system_message=SYSTEM,
            max_concurrency=conversations,
            max_retries=0,
            history=store,
            save_history=False,
        )
        service = ChatService(
            policy=BotPolicy(name="bench", backend="fake"), backend=backend, store=store
        )
        try:
            await _parley_conversation(service, 1, -1)  # warm up: tokenizer, connections
            parley = await _timed(lambda c: _parley_conversation(service, turns, c), conversations)
        finally:
            await backend.aclose()
            await store.aclose()
    total = conversations * turns
    return bare / total, parley / total


async def main(turns_single: int, turns_many: int) -> None:
    print(
        f"{'conversations':>13} {'turns':>6} {'bare ms/turn':>13} "
        f"{'parley ms/turn':>15} {'ratio':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for conversations, turns in ((1, turns_single), (64, turns_many)):
            bare, parley = await bench(conversations, turns, Path(tmp))
            print(
                f"{conversations:>13} {conversations * turns:>6} {bare * 1000:>13.2f} "
                f"{parley * 1000:>15.2f} {parley / bare:>6.2f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns-single", type=int, default=100, help="turns with 1 conversation")
    parser.add_argument("--turns-many", type=int, default=5, help="turns per conversation at 64")
    args = parser.parse_args()
    asyncio.run(main(args.turns_single, args.turns_many))
