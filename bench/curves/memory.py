"""Peak RSS of a ``parley run`` process with one Telegram and one Discord bot, against the
fake Bot API, the fake Discord and the fake LLM (all in this process, so the child's
peak is parley's alone), after it has answered a few messages on each platform: with
100,000 conversations in its SQLite store, and with an empty store (the baseline, in
the same run). The peak is the kernel's high-water mark, /proc/PID/status VmHWM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.curves.stored import BACKEND, FIRST_CHANNEL, seed
from bench.curves.table import markdown, number
from bench.harness import ROOT, ratio
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.telegram_api import FakeTelegram

TG_TOKEN = "654321:curves-telegram-secret"
DC_TOKEN = "MTAw.curves-discord.secret"
DC_BOT = 1_100_000_000_000_000_001
GUILD = 810_000_000_000_000_001
ALICE = 840_000_000_000_000_001  # who writes on Discord


@dataclass(frozen=True)
class Sizes:
    conversations: int  # stored in the loaded store, half per bot
    chats: int  # per platform and round, each asking one question at once (stored ones)
    rounds: int  # runs per store, interleaved


FULL = Sizes(conversations=100_000, chats=5, rounds=2)
QUICK = Sizes(conversations=2_000, chats=1, rounds=1)


@dataclass
class Run:
    """One ``parley run`` from start to SIGTERM."""

    startup: float  # seconds until both bots were connected
    peak_kib: int  # VmHWM
    end_kib: int  # VmRSS once the answers were in
    answered: int
    history: list[int]  # history messages in each answered prompt


@dataclass
class Point:
    store: str
    conversations: int
    database_mib: float
    seed_seconds: float = 0.0
    runs: list[Run] = field(default_factory=list)

    @property
    def peak_mib(self) -> float:
        return statistics.median(r.peak_kib for r in self.runs) / 1024


# -- the process -----------------------------------------------------------------------


@dataclass
class Fakes:
    tg: FakeTelegram
    dc: FakeDiscord
    llm: FakeOpenAIServer

    def config(self, database: Path) -> str:
        return f"""
database: {{url: "sqlite+aiosqlite:///{database}"}}
backends:
  {BACKEND}: {{type: chat_completions, base_url: "{self.llm.base_url}", model: m, max_retries: 0}}
bots:
  - name: tg
    platform: telegram
    token: "${{TG_TOKEN}}"
    api_base_url: "{self.tg.api_base_url}"
  - name: dc
    platform: discord
    token: "${{DC_TOKEN}}"
    api_base_url: "{self.dc.api_base_url}"
    gateway_url: "{self.dc.gateway_url}"
"""


@contextlib.asynccontextmanager
async def fakes(chats: int) -> AsyncIterator[Fakes]:
    """The fakes, with ``chats`` Telegram users and Discord channels: the ones whose
    conversations are stored first (see ``_rows``)."""
    async with (
        FakeTelegram(token=TG_TOKEN, username="parley_bot") as tg,
        FakeDiscord(token=DC_TOKEN, bot_id=DC_BOT) as dc,
        FakeOpenAIServer() as llm,
    ):
        guild = dc.guild(GUILD, "Curves")
        dc.user(ALICE, "alice")
        dc.member(guild, ALICE)
        for chat in range(chats):
            tg.private_chat(chat + 1, f"User{chat + 1}")
            dc.channel(guild, FIRST_CHANNEL + chat, f"chat-{chat}")
        yield Fakes(tg, dc, llm)


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])  # "VmHWM:	  183456 kB"
    raise RuntimeError(f"no {key} in /proc/{pid}/status")


def _command() -> list[str]:
    """``parley``, the console script, next to this Python; else its module."""
    script = Path(sys.executable).with_name("parley")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bots.cli"]


async def run_once(f: Fakes, chats: range, database: Path, log: Path) -> Run:
    """Start ``parley run`` on ``database``, have each of ``chats`` ask once on each
    platform, read its memory once all are answered, then SIGTERM it (it must exit 0)."""
    config = database.with_suffix(".yaml")
    config.write_text(f.config(database))
    polls, identifies, asked = (
        len(f.tg.calls_to("getUpdates")),
        len(f.dc.identifies),
        len(f.llm.chat_requests),
    )
    tg_before = {c: len(f.tg.bot_messages(c + 1)) for c in chats}
    dc_before = {c: len(f.dc.bot_messages(FIRST_CHANNEL + c)) for c in chats}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TG_TOKEN": TG_TOKEN, "DC_TOKEN": DC_TOKEN}
    started = time.monotonic()
    with log.open("ab") as err:
        process = await asyncio.create_subprocess_exec(
            *_command(), "run", "--config", str(config),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=err, env=env, cwd=ROOT,
        )  # fmt: skip
    try:
        await f.tg.wait_for(
            lambda: (
                (len(f.tg.calls_to("getUpdates")) > polls and len(f.dc.identifies) > identifies)
                or process.returncode is not None
            ),
            timeout=60,
        )
        if process.returncode is not None:
            raise RuntimeError(f"parley run exited with {process.returncode}: see {log}")
        startup = time.monotonic() - started
        await asyncio.sleep(0.3)  # READY and GUILD_CREATE reach the Discord client
        for chat in chats:
            f.tg.send_text(chat + 1, chat + 1, f"hello from telegram chat {chat}")
            f.dc.send_message(FIRST_CHANNEL + chat, ALICE, f"<@{DC_BOT}> hello from channel {chat}")
        for chat in chats:
            await f.tg.wait_bot_messages(chat + 1, tg_before[chat] + 1, timeout=60)
            await f.dc.wait_bot_messages(FIRST_CHANNEL + chat, dc_before[chat] + 1, timeout=60)
        await asyncio.sleep(0.3)  # the turns' commits after the answers were shown
        peak, end = _status_kib(process.pid, "VmHWM"), _status_kib(process.pid, "VmRSS")
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 60)
    if code != 0:
        raise RuntimeError(f"parley run exited with {code} after SIGTERM: see {log}")
    prompts = [r.messages for r in f.llm.chat_requests[asked:]]
    # Each prompt: the system message, the stored history, the question.
    return Run(startup, peak, end, len(prompts), [len(p) - 2 for p in prompts])


async def measure(folder: Path, sizes: Sizes) -> list[Point]:
    empty_db, loaded_db = folder / "empty.db", folder / "loaded.db"
    await seed(f"sqlite+aiosqlite:///{empty_db}", 0)
    started = time.monotonic()
    await seed(f"sqlite+aiosqlite:///{loaded_db}", sizes.conversations)
    seeded = time.monotonic() - started
    points = {
        empty_db: Point("empty (baseline)", 0, _mib(empty_db)),
        loaded_db: Point("loaded", sizes.conversations, _mib(loaded_db), seeded),
    }
    async with fakes(sizes.chats * sizes.rounds) as f:
        for r in range(sizes.rounds):
            # New chats each round: a store's prompts carry only what was seeded in it.
            chats = range(r * sizes.chats, (r + 1) * sizes.chats)
            for database, point in points.items():
                point.runs.append(await run_once(f, chats, database, folder / "parley.log"))
    return list(points.values())


def _span(values: Sequence[int]) -> str:
    low, high = min(values, default=0), max(values, default=0)
    return f"{low}" if low == high else f"{low}-{high}"


def _mib(database: Path) -> float:
    files = [database, database.with_name(database.name + "-wal")]
    return sum(p.stat().st_size for p in files if p.exists()) / 2**20


def table(points: Sequence[Point]) -> str:
    base = points[0]
    header = [
        "store",
        "conversations stored",
        "database MiB",
        "startup s",
        "answered",
        "history per prompt",
        "peak RSS MiB",
        "vs empty",
        "RSS at end MiB",
        "seeded in s",
    ]
    rows = [
        [
            p.store,
            f"{p.conversations:,}",
            number(p.database_mib, 1),
            number(statistics.median(r.startup for r in p.runs), 2),
            f"{min(r.answered for r in p.runs)}",
            _span([n for r in p.runs for n in r.history]),
            number(p.peak_mib, 1),
            ratio(p.peak_mib, base.peak_mib),
            number(statistics.median(r.end_kib for r in p.runs) / 1024, 1),
            number(p.seed_seconds, 1),
        ]
        for p in points
    ]
    return markdown(header, rows)
