"""How the platform benchmarks run, whatever the platform: each bot in a child process
of its own (so its peak RSS is its own), the shape every bot under test has, parley's
config for one bot, the throughput scenario's turns, and the tables' number formats."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from adapters.base import InFlight
from bench.answers import MODEL, TimedAnswers
from bots.app import App
from bots.config import BotConfig, ParleyConfig, parse_config
from core.chat_service import ChatService
from tests.fakes.openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parent.parent


class Runner(Protocol):
    """A bot under test, running against the fakes until ``stop`` is set."""

    async def run(self, stop: asyncio.Event) -> None: ...

    def busy(self) -> bool:
        """Whether an answer is still being worked on."""


def parley_config(
    database: Path | str, llm_base_url: str, slots: int, bot: Mapping[str, Any]
) -> ParleyConfig:
    """``parley run``'s config for one bot (``bot``: its entry under ``bots:``): a SQLite
    file in ``database`` if it is a folder, else the database URL ``database``, and a
    chat_completions backend at the fake LLM."""
    url = f"sqlite+aiosqlite:///{database / 'bench.db'}" if isinstance(database, Path) else database
    return parse_config(
        {
            "database": {"url": url},
            "backends": {
                "llm": {
                    "type": "chat_completions",
                    "base_url": llm_base_url,
                    "model": MODEL,
                    "max_retries": 0,
                    # As many requests at once as chats: the baselines have no cap.
                    "max_concurrency": slots,
                }
            },
            "bots": [{"name": "bench", **bot}],
        }
    )


class _Adapter(Protocol):
    _inflight: InFlight  # the answers in flight (the test harnesses read the same)

    async def run(self, stop: asyncio.Event) -> None: ...


class ParleyRunner:
    """parley's bot as ``parley run`` builds it: the real App (SQLite in ``folder``), a
    chat_completions backend at the fake LLM, and the platform's adapter, which a
    subclass makes in ``adapter``."""

    def __init__(self, folder: Path, llm_base_url: str, slots: int, bot: Mapping[str, Any]) -> None:
        self._config = parley_config(folder, llm_base_url, slots, bot)
        self._adapter: _Adapter | None = None

    def adapter(self, bot: BotConfig, service: ChatService) -> _Adapter:
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        async with App(self._config) as app:
            bot = self._config.bots[0]
            self._adapter = self.adapter(bot, app.service(bot))
            await self._adapter.run(stop)

    def busy(self) -> bool:
        return self._adapter is not None and len(self._adapter._inflight) > 0


@contextlib.asynccontextmanager
async def fake_llm(
    answers: TimedAnswers, chunk_delay: float
) -> AsyncIterator[tuple[FakeOpenAIServer, Path]]:
    """The fake LLM serving ``answers``, and a folder for the bot's database."""
    with tempfile.TemporaryDirectory() as tmp:
        async with answers.server(chunk_delay) as llm:
            yield llm, Path(tmp)


def chat_row(
    answers: TimedAnswers,
    chat: int,
    sent: float,
    made: Sequence[Any],
    times: tuple[float | None, float | None],
    complete: bool,
    **platform: Any,
) -> dict[str, Any]:
    """One chat's line of a flood result: ``made`` are the platform calls made in it,
    ``times`` when its first text and its last message call arrived."""
    return {
        "complete": complete,
        "429": sum(1 for c in made if c.status == 429),
        **answers.timings(chat, sent, *times, complete),
        **platform,
    }


def rss_mib() -> float:
    """This process's peak RSS so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def ask_all(
    chats: Sequence[int],
    ask: Callable[[int], object],
    llm: FakeOpenAIServer,
    wait_for: Callable[[Callable[[], object], float], Awaitable[object]],
) -> dict[int, float]:
    """Every chat asks at once (``ask(chat)``); when each asked, returned once the fake
    LLM has answered them all (and the one warm-up request before them)."""
    sent: dict[int, float] = {}
    for chat in chats:
        sent[chat] = time.monotonic()
        ask(chat)
    await wait_for(lambda: len(llm.chat_requests) > len(chats) and llm.in_flight == 0, 120)
    return sent


def flood_result(
    kind: str,
    per_chat: list[dict[str, Any]],
    answers: TimedAnswers,
    sent: Mapping[int, float],
    *,
    refused: int,
    settled: bool,
) -> dict[str, Any]:
    """A flood run's result (``sent``: when each chat asked; ``refused``: the 429s the
    fake sent meanwhile)."""
    return {
        "bot": kind,
        "chats": per_chat,
        "count_429": refused,
        "settled": settled,
        "rss_mib": rss_mib(),
        "stream_seconds": answers.stream_seconds(sent),
    }


async def timed_turns(
    chats: Sequence[int],
    turns: int,
    ask: Callable[[int, int], object],
    answered: Callable[[int, int], Awaitable[object]],
    bot: Runner,
) -> tuple[list[float], float]:
    """Every chat asks ``turns`` times, each time once its previous answer has arrived
    (``ask(chat, turn)``; ``answered(chat, n)`` waits for the n-th answer): each turn's
    latency, and the wall time of them all; then ``bot`` is left to finish."""
    latencies: list[float] = []

    async def user(chat: int) -> None:
        for turn in range(turns):
            sent = time.monotonic()
            ask(chat, turn)
            await answered(chat, turn + 1)
            latencies.append(time.monotonic() - sent)

    start = time.monotonic()
    await asyncio.gather(*(user(chat) for chat in chats))
    wall = time.monotonic() - start
    # Answers are in, but a bot may still be finishing a turn (its store's commit).
    await settle(lambda: 0, bot, quiet=0.3, timeout=30)
    return latencies, wall


def throughput_result(
    kind: str, latencies: list[float], wall: float, right: int, rss_before: float
) -> dict[str, Any]:
    rss = rss_mib()
    return {
        "bot": kind,
        "turns": len(latencies),
        "right": right,
        "wall": wall,
        "turns_per_second": len(latencies) / wall,
        "latency_median": statistics.median(latencies),
        "latency_max": max(latencies),
        "rss_mib": rss,
        "rss_delta_mib": rss - rss_before,
    }


# --- the parent and the child ---------------------------------------------------------


def run_child(module: str, name: str, quick: bool) -> dict[str, Any]:
    """``python -m module --child name``: its last line of output, as JSON."""
    command = [sys.executable, "-m", module, "--child", name]
    if quick:
        command.append("--quick")
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if done.stderr:
        sys.stderr.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"the {name} run failed (exit {done.returncode})")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """How big a platform benchmark's runs are (a platform adds how many chats flood)."""

    answer_chars: int  # flood: each answer's length
    chunk_chars: int  # flood: the length of the fake LLM's deltas
    chunk_delay: float  # flood: the fake LLM's pause between deltas
    chats: int  # throughput: chats asking at once
    turns: int  # throughput: turns per chat
    rounds: int  # throughput runs per bot: the machine's noise shows in their spread


S = TypeVar("S", bound=Sizes)
Scenario = Callable[[str, S], Coroutine[Any, Any, dict[str, Any]]]
Table = Callable[[list[dict[str, Any]], S], None]


@dataclass(frozen=True)
class Bench(Generic[S]):
    """A platform benchmark: a flood and a throughput scenario (``scenario(bot, sizes)``,
    run in a child process per bot), the bots each runs, and their tables."""

    module: str  # what ``python -m`` runs, for the children
    full: S
    quick: S
    flood: Scenario[S]
    throughput: Scenario[S]
    flood_bots: Sequence[str]
    throughput_bots: Sequence[str]
    show_flood: Table[S]
    show_throughput: Table[S]

    def main(self, description: str) -> None:
        parser = argparse.ArgumentParser(description=description)
        parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
        parser.add_argument("--child", help=argparse.SUPPRESS)
        args = parser.parse_args()
        sizes = self.quick if args.quick else self.full
        if args.child:
            self._child(args.child, sizes)
        else:
            self._parent(args.quick, sizes)

    def _child(self, name: str, sizes: S) -> None:
        """Run ``name`` ("flood:parley": scenario, then bot) and print its result."""
        # Only errors: the naive bots log every refusal, which is the point, not news.
        logging.basicConfig(level=logging.ERROR)
        warnings.simplefilter("ignore", DeprecationWarning)
        scenario, _, kind = name.partition(":")
        run = {"flood": self.flood, "throughput": self.throughput}[scenario]
        print(json.dumps(asyncio.run(run(kind, sizes))))

    def _parent(self, quick: bool, sizes: S) -> None:
        """Each flood bot once, then ``rounds`` rounds of the throughput bots,
        interleaved (so the machine's changing load falls on all of them)."""
        print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
        started = time.monotonic()
        floods = [run_child(self.module, f"flood:{bot}", quick) for bot in self.flood_bots]
        self.show_flood(floods, sizes)
        print()
        runs = [
            run_child(self.module, f"throughput:{bot}", quick)
            for _ in range(sizes.rounds)
            for bot in self.throughput_bots
        ]
        self.show_throughput(runs, sizes)
        end = os.getloadavg()[0]
        print(f"({time.monotonic() - started:.0f} s, load average {end:.2f} at end)")


# --- numbers for the tables -----------------------------------------------------------


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}"


def median_max(values: Sequence[float | None]) -> tuple[str, str]:
    known = [v for v in values if v is not None]
    if not known:
        return "-", "-"
    return ms(statistics.median(known)), ms(max(known))


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), linear between the nearest ranks."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(a: float | None, b: float | None) -> str:
    """``a / b`` to two decimals, or two significant digits when below 0.1."""
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}" if a / b >= 0.1 else f"{a / b:.2g}"


def print_throughput(
    runs: list[dict[str, Any]], bots: Sequence[str], ratios: Sequence[tuple[str, str]]
) -> None:
    """The throughput table, one row per bot (medians of its runs), then ``a/b`` ratios
    for each pair in ``ratios``."""
    print(
        f"{'bot':<12} {'turns':>6} {'right':>6} {'turns/s':>8} {'min':>6} {'max':>6} "
        f"{'turn med ms':>12} {'turn max ms':>12} {'peak RSS MiB':>13} {'RSS +MiB':>9}"
    )
    rate: dict[str, float] = {}
    rss: dict[str, float] = {}
    grown: dict[str, float] = {}
    for bot in bots:
        mine = [r for r in runs if r["bot"] == bot]
        rates = [r["turns_per_second"] for r in mine]
        rate[bot] = statistics.median(rates)
        rss[bot] = statistics.median(r["rss_mib"] for r in mine)
        grown[bot] = statistics.median(r["rss_delta_mib"] for r in mine)
        print(
            f"{bot:<12} {min(r['turns'] for r in mine):>6} {min(r['right'] for r in mine):>6} "
            f"{rate[bot]:>8.1f} {min(rates):>6.1f} {max(rates):>6.1f} "
            f"{statistics.median(r['latency_median'] for r in mine) * 1000:>12.0f} "
            f"{max(r['latency_max'] for r in mine) * 1000:>12.0f} {rss[bot]:>13.1f} "
            f"{grown[bot]:>9.1f}"
        )
    for name, base in ratios:
        print(
            f"{name}/{base}: turns/s {ratio(rate[name], rate[base])}, peak RSS "
            f"{ratio(rss[name], rss[base])} (grew {grown[name]:.0f} vs {grown[base]:.0f} MiB)"
        )


# --- running a bot under test ---------------------------------------------------------


async def started(
    bot: Runner,
    stop: asyncio.Event,
    wait_for: Callable[[Callable[[], object], float], Awaitable[object]],
    ready: Callable[[], object],
) -> asyncio.Task[None]:
    """``bot`` running, once ``ready()`` (``wait_for`` is the fake's: predicate, timeout)."""
    task = asyncio.create_task(bot.run(stop))
    await wait_for(lambda: ready() or task.done(), 20)
    if task.done():
        task.result()  # a failed start: its exception
    return task


async def stopped(stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    stop.set()
    await asyncio.wait_for(task, 20)


async def settle(calls: Callable[[], int], bot: Runner, quiet: float, timeout: float) -> bool:
    """Wait until no answer is in flight and ``calls()`` (the bot's platform calls so far)
    did not change for ``quiet`` s; False if that did not happen within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = calls()
        await asyncio.sleep(quiet)
        if not bot.busy() and calls() == count:
            return True
    return False
