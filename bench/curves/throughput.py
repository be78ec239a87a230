"""Throughput at 1, 16, 64 and 256 concurrent conversations, on each database: parley's
chat service (its real store, token counting and commits) against the bare aiohttp loop
on the same fake LLM, in the same run. Each user sends a turn once the previous answer
is complete; the fake answers at once, so what is left is each side's own cost."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.answers import MODEL
from bench.curves.databases import Database
from bench.curves.table import markdown, median_ms, number
from bench.harness import percentile, ratio
from bench.naive import LlmClient
from bench.turns import bare_conversation, parley_conversation, parley_service, timed
from core.chat_service import ChatService
from tests.fakes.openai_server import FakeOpenAIServer


@dataclass(frozen=True)
class Sizes:
    levels: tuple[int, ...]  # conversations at once
    turns: int  # turns per level, spread over its conversations,
    min_turns: int  # but at least this many in each
    rounds: int  # runs per level, interleaved: the machine's noise falls on all

    def turns_each(self, conversations: int) -> int:
        return max(self.min_turns, self.turns // conversations)


FULL = Sizes(levels=(1, 16, 64, 256), turns=128, min_turns=3, rounds=5)
QUICK = Sizes(levels=(1, 16), turns=8, min_turns=2, rounds=1)


@dataclass
class Point:
    """One level on one database: each round's wall time, every turn's latency."""

    database: str
    conversations: int
    turns: int  # per round
    bare_walls: list[float]
    parley_walls: list[float]
    bare_latencies: list[float]
    parley_latencies: list[float]

    @property
    def bare_rate(self) -> float:
        return statistics.median(self.turns / w for w in self.bare_walls)

    @property
    def parley_rate(self) -> float:
        return statistics.median(self.turns / w for w in self.parley_walls)


async def _round(point: Point, llm: LlmClient, service: ChatService, turns: int, tag: str) -> None:
    """One run of the bare loop and one of parley, ``point.conversations`` at once."""

    async def bare(c: int) -> None:
        await bare_conversation(llm, turns, f"{tag}-{c}", point.bare_latencies)

    async def parley(c: int) -> None:
        await parley_conversation(service, turns, f"{tag}-{c}", point.parley_latencies)

    point.bare_walls.append(await timed(bare, point.conversations))
    point.parley_walls.append(await timed(parley, point.conversations))


async def measure(found: Sequence[Database], sizes: Sizes) -> list[Point]:
    points: list[Point] = []
    async with FakeOpenAIServer() as server, LlmClient(server.base_url, MODEL).open() as llm:
        await bare_conversation(llm, 1, "warm-up")
        for db in found:
            mine = {
                n: Point(db.name, n, n * sizes.turns_each(n), [], [], [], []) for n in sizes.levels
            }
            async with parley_service(db.url, server.base_url, max(sizes.levels)) as (_, service):
                for r in range(sizes.rounds):
                    for n, point in mine.items():
                        await _round(point, llm, service, sizes.turns_each(n), f"{r}-{n}")
            points.extend(mine.values())
    return points


def table(points: Sequence[Point]) -> str:
    header = [
        "database",
        "conversations",
        "turns",
        "bare turns/s",
        "parley turns/s",
        "parley/bare",
        "bare turn ms",
        "parley turn ms",
        "parley turn p95 ms",
    ]
    rows = [
        [
            p.database,
            f"{p.conversations:,}",
            f"{p.turns:,}",
            number(p.bare_rate, 0),
            number(p.parley_rate, 0),
            ratio(p.parley_rate, p.bare_rate),
            number(median_ms(p.bare_latencies), 2),
            number(median_ms(p.parley_latencies), 2),
            number(percentile(p.parley_latencies, 95) * 1000, 1),
        ]
        for p in points
    ]
    return markdown(header, rows)
