"""Per-turn overhead of parley's chat service against a bare aiohttp loop.

Both sides talk to the same fake OpenAI-compatible server over loopback in the same
run, so the ratio (parley time per turn / bare time per turn) is what parley adds:
scope lock, history walk in SQLite, token counting, streaming callbacks and the
atomic commit of each turn. Run: ``python -m bench.chat_overhead`` (or ``make bench``).

Each size runs ``--rounds`` rounds, each the bare loop and then parley on new
conversations, and the best round of each counts: a busy moment of the machine (other
processes share its two cores) spoils one round, not the ratio. The CPU ratio (the
whole process's CPU time, all threads) barely moves with other processes' load.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench.naive import LlmClient
from bench.turns import bare_conversation, parley_conversation, parley_service
from tests.fakes.openai_server import FakeOpenAIServer

ROUNDS = 3


@dataclass(frozen=True)
class Timing:
    """Seconds per turn: wall clock, and CPU of the whole process (all its threads)."""

    wall: float
    cpu: float


async def _timed(run: Callable[[int], Awaitable[None]], conversations: int) -> Timing:
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(run(c) for c in range(conversations)))
    return Timing(time.perf_counter() - start, time.process_time() - cpu)


def _best(timings: list[Timing], turns: int) -> Timing:
    return Timing(min(t.wall for t in timings) / turns, min(t.cpu for t in timings) / turns)


async def measure(
    conversations: int, turns: int, folder: Path, rounds: int = ROUNDS
) -> tuple[Timing, Timing]:
    """Per-turn timings of (bare aiohttp, parley), the best of ``rounds`` rounds."""
    bare: list[Timing] = []
    parley: list[Timing] = []
    async with FakeOpenAIServer() as server:
        db = f"sqlite+aiosqlite:///{folder / f'bench-{conversations}.db'}"
        async with (
            parley_service(db, server.base_url, conversations) as (_, service),
            LlmClient(server.base_url, "bench").open() as llm,
        ):
            await bare_conversation(llm, 1, "warm-up")
            for round_ in range(rounds):
                tag = f"r{round_}-"  # new conversations every round

                def run_bare(c: int, tag: str = tag) -> Awaitable[None]:
                    return bare_conversation(llm, turns, f"{tag}{c}")

                def run_parley(c: int, tag: str = tag) -> Awaitable[None]:
                    return parley_conversation(service, turns, f"{tag}{c}")

                bare.append(await _timed(run_bare, conversations))
                parley.append(await _timed(run_parley, conversations))
    total = conversations * turns
    return _best(bare, total), _best(parley, total)


async def bench(
    conversations: int, turns: int, folder: Path, rounds: int = ROUNDS
) -> tuple[float, float]:
    """Wall seconds per turn for (bare aiohttp, parley); see ``measure``."""
    bare, parley = await measure(conversations, turns, folder, rounds)
    return bare.wall, parley.wall


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
