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
from pathlib import Path

from bench.naive import LlmClient
from bench.turns import bare_conversation, parley_conversation, parley_service, timed
from tests.fakes.openai_server import FakeOpenAIServer


async def bench(conversations: int, turns: int, folder: Path) -> tuple[float, float]:
    """Seconds per turn for (bare aiohttp, parley)."""
    async with FakeOpenAIServer() as server:
        async with LlmClient(server.base_url, "bench").open() as llm:
            await bare_conversation(llm, 1, "warm-up")
            bare = await timed(lambda c: bare_conversation(llm, turns, str(c)), conversations)

        db = f"sqlite+aiosqlite:///{folder / f'bench-{conversations}.db'}"
        async with parley_service(db, server.base_url, conversations) as (_, service):
            parley = await timed(
                lambda c: parley_conversation(service, turns, str(c)), conversations
            )
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
