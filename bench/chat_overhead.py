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
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench.naive import LlmClient
from core.backends.chat_completions import ChatCompletionsBackend
from core.chat_service import ChatService, Outcome
from core.incoming import BotPolicy, IncomingMessage
from core.store.sql import SQLStore
from migrations.runner import upgrade
from tests.fakes.openai_server import FakeOpenAIServer

SYSTEM = "You are a helpful assistant."
ROUNDS = 3


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


@dataclass(frozen=True)
class Timing:
    """Seconds per turn: wall clock, and CPU of the whole process (all its threads).
    The CPU figure barely moves when other processes load the machine."""

    wall: float
    cpu: float


async def _offset_conversation(service: ChatService, turns: int, first: int, conv: int) -> None:
    await _parley_conversation(service, turns, first + conv)


async def _timed(run: Callable[[int], Awaitable[None]], conversations: int) -> Timing:
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(run(c) for c in range(conversations)))
    return Timing(time.perf_counter() - start, time.process_time() - cpu)


def _best(timings: list[Timing], turns: int) -> Timing:
    return Timing(min(t.wall for t in timings) / turns, min(t.cpu for t in timings) / turns)


async def bench(
    conversations: int, turns: int, folder: Path, rounds: int = ROUNDS
) -> tuple[float, float]:
    """Wall seconds per turn for (bare aiohttp, parley); see ``measure``."""
    bare, parley = await measure(conversations, turns, folder, rounds)
    return bare.wall, parley.wall


async def measure(
    conversations: int, turns: int, folder: Path, rounds: int = ROUNDS
) -> tuple[Timing, Timing]:
    """Per-turn timings of (bare aiohttp, parley): the best of ``rounds`` rounds, each
    running the bare loop and then parley on new conversations, so that a busy moment
    of the machine (other processes share its two cores) spoils one round, not the
    ratio."""
    async with FakeOpenAIServer() as server:
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
        bare: list[Timing] = []
        parley: list[Timing] = []
        try:
            async with LlmClient(server.base_url, "bench").open() as llm:
                await _bare_conversation(llm, 1, -1)  # warm up: connections
                await _parley_conversation(service, 1, -1)  # and the tokenizer
                for round_ in range(rounds):
                    first = round_ * conversations  # new conversations every round
                    bare.append(
                        await _timed(lambda c: _bare_conversation(llm, turns, c), conversations)
                    )
                    parley_round = partial(_offset_conversation, service, turns, first)
                    parley.append(await _timed(parley_round, conversations))
        finally:
            await backend.aclose()
            await store.aclose()
    total = conversations * turns
    return _best(bare, total), _best(parley, total)


async def main(turns_single: int, turns_many: int, rounds: int = ROUNDS) -> None:
    print(
        f"{'conversations':>13} {'turns':>6} {'bare ms/turn':>13} "
        f"{'parley ms/turn':>15} {'ratio':>6} {'cpu ratio':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for conversations, turns in ((1, turns_single), (64, turns_many)):
            bare, parley = await measure(conversations, turns, Path(tmp), rounds)
            print(
                f"{conversations:>13} {conversations * turns * rounds:>6} "
                f"{bare.wall * 1000:>13.2f} {parley.wall * 1000:>15.2f} "
                f"{parley.wall / bare.wall:>6.2f} {parley.cpu / bare.cpu:>10.2f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns-single", type=int, default=100, help="turns with 1 conversation")
    parser.add_argument("--turns-many", type=int, default=5, help="turns per conversation at 64")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds; the best counts")
    args = parser.parse_args()
    asyncio.run(main(args.turns_single, args.turns_many, args.rounds))
