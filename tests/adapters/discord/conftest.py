"""A running Discord bot for tests: the real App (SQLite store, chat_completions backend),
the real DiscordAdapter and discord.py, the fake Discord (REST + gateway) and the fake
LLM, all over loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from adapters.base import AdapterStartError
from adapters.delivery.target import PlatformLimits
from adapters.discord.bot import DiscordAdapter
from adapters.discord.config import DiscordBotConfig
from bots.app import App
from bots.config import parse_config
from tests.fakes.discord_api import FakeDiscord, FloodLimits, StoredMessage
from tests.fakes.openai_server import FakeOpenAIServer

TOKEN = "MTAw.fake.bot-token"
BOT = 1_100_000_000_000_000_001
GUILD = 810_000_000_000_000_001
GENERAL = 820_000_000_000_000_001
OTHER = 820_000_000_000_000_002
THREAD_A = 820_000_000_000_000_011
THREAD_B = 820_000_000_000_000_012
BOT_ROLE = 830_000_000_000_000_001
MODS = 830_000_000_000_000_002
ALICE = 840_000_000_000_000_001
BOB = 840_000_000_000_000_002
OTHER_BOT = 840_000_000_000_000_009
# Discord's limits with every period divided by ten, so tests run in seconds; the fake
# in flood mode enforces the same, scaled, windows.
FAST = PlatformLimits(
    max_length=2000,
    measure=len,
    chat_ops=5,
    chat_period=0.5,
    group_ops=None,
    global_ops=50,
    global_period=0.1,
    edit_interval=0.12,
    typing_interval=0.8,
    typing_spends_global=True,
)
FAST_FLOOD = FloodLimits(channel=(5, 0.5), overall=(50, 0.1), slack=0.02)


@dataclass
class Bot:
    dc: FakeDiscord
    llm: FakeOpenAIServer
    app: App
    adapter: DiscordAdapter
    stop: asyncio.Event
    task: asyncio.Task[None]

    def prompts(self) -> list[list[tuple[str, str]]]:
        """Every chat request's (role, content) pairs, system message left out."""
        return [
            [(m["role"], m["content"]) for m in r.messages if m["role"] != "system"]
            for r in self.llm.chat_requests
        ]

    async def answer(self, channel: int, n: int = 1) -> list[StoredMessage]:
        """Waits until the bot has sent ``n`` messages in ``channel`` and they stopped
        changing; returns them."""
        await self.dc.wait_bot_messages(channel, n, timeout=20)
        await self.settled()
        return self.dc.bot_messages(channel)

    async def settled(self, quiet: float = 0.3) -> None:
        """Waits for the bot to go quiet: no API call for ``quiet`` seconds, nothing in
        flight."""
        while True:
            count = len(self.dc.calls)
            await asyncio.sleep(quiet)
            busy = len(self.adapter._inflight) > 0
            if len(self.dc.calls) == count and not busy:
                return

    async def restart(self) -> None:
        """Stops this adapter and waits for it to end."""
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


def populate(fake: FakeDiscord) -> None:
    guild = fake.guild(GUILD, "Parley HQ", bot_role_id=BOT_ROLE)
    fake.role(guild, MODS, "mods")
    fake.channel(guild, GENERAL, "general")
    fake.channel(guild, OTHER, "other")
    fake.thread(GENERAL, THREAD_A, "thread a", owner=ALICE if ALICE in fake.users else None)
    fake.thread(GENERAL, THREAD_B, "thread b")
    fake.user(ALICE, "alice")
    fake.user(BOB, "bob")
    fake.user(OTHER_BOT, "otherbot", bot=True)
    fake.member(guild, ALICE, [MODS])
    fake.member(guild, BOB)
    fake.member(guild, OTHER_BOT)


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN, bot_id=BOT) as fake:
        populate(fake)
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key="sk-dc") as fake:
        yield fake


StartBot = Callable[..., Any]


@pytest.fixture
async def start_bot(
    dc: FakeDiscord, llm: FakeOpenAIServer, tmp_path: Path
) -> AsyncIterator[StartBot]:
    """``await start_bot(**bot_keys)`` runs a bot until the test ends (or its
    ``restart``); calling it again after a restart runs a new one on the same database."""
    stack = contextlib.AsyncExitStack()

    async def start(limits: PlatformLimits = FAST, **keys: Any) -> Bot:
        bot: dict[str, Any] = {
            "name": "helper",
            "platform": "discord",
            "token": TOKEN,
            "api_base_url": dc.url,  # without /api/v10: the adapter adds it
            "gateway_url": dc.gateway_url,
            **keys,
        }
        config = parse_config(
            {
                "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'dc.db'}"},
                "backends": {
                    "llm": {
                        "type": "chat_completions",
                        "base_url": llm.base_url,
                        "api_key": "sk-dc",
                        "model": "fake-model",
                        "max_retries": 0,
                    }
                },
                "bots": [bot],
            }
        )
        app = await stack.enter_async_context(App(config))
        bot_config = config.bots[0]
        assert isinstance(bot_config, DiscordBotConfig)
        adapter = DiscordAdapter(
            bot_config,
            app.service(bot_config),
            limits=limits,
            client_options={"guild_ready_timeout": 0.05},
        )
        stop = asyncio.Event()
        task = asyncio.ensure_future(adapter.run(stop))

        async def finish() -> None:
            stop.set()
            with contextlib.suppress(AdapterStartError):  # a test about a failed start
                await asyncio.wait_for(task, 15)

        stack.push_async_callback(finish)
        # READY and GUILD_CREATE processed: messages from here on find their channels.
        await dc.wait_for(lambda: task.done() or adapter.ready, timeout=10)
        if task.done():
            task.result()
        return Bot(dc, llm, app, adapter, stop, task)

    async with stack:
        yield start
