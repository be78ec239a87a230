"""A running Telegram bot for tests: the real App (SQLite store, chat_completions backend),
the real TelegramAdapter and python-telegram-bot, the fake Bot API and the fake LLM,
all over loopback."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from adapters.base import AdapterStartError
from adapters.delivery.splitter import utf16_len
from adapters.delivery.target import PlatformLimits
from adapters.telegram.bot import TelegramAdapter
from adapters.telegram.config import TelegramBotConfig
from bots.app import App
from bots.config import parse_config
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.telegram_state import FloodLimits

TOKEN = "123456:test-telegram-token"
# Telegram's limits with every period divided by ten, so tests run in seconds; the fake
# in flood mode enforces the same, scaled, windows.
FAST = PlatformLimits(
    max_length=4096,
    measure=utf16_len,
    chat_ops=1,
    chat_period=0.1,
    group_ops=20,
    group_period=6.0,
    global_ops=30,
    global_period=0.1,
    edit_interval=0.1,
    typing_interval=0.45,
)
FAST_FLOOD = FloodLimits(chat=(1, 0.1), group=(20, 6.0), overall=(30, 0.1), slack=0.02)
ALICE, BOB = 1001, 1002
GROUP, FORUM = -100500, -100600


@dataclass
class Bot:
    tg: FakeTelegram
    llm: FakeOpenAIServer
    app: App
    adapter: TelegramAdapter
    stop: asyncio.Event
    task: asyncio.Task[None]
    extra: dict[str, Any] = field(default_factory=dict)

    def prompts(self) -> list[list[tuple[str, str]]]:
        """Every chat request's (role, content) pairs, system message left out."""
        return [
            [(m["role"], m["content"]) for m in r.messages if m["role"] != "system"]
            for r in self.llm.chat_requests
        ]

    async def answer(self, chat: int, n: int = 1, thread_id: int | None = None) -> list[Any]:
        """Waits until the bot has sent ``n`` messages in ``chat`` and they stopped
        changing; returns them."""
        await self.tg.wait_bot_messages(chat, n, thread_id=thread_id, timeout=20)
        await self.settled()
        return self.tg.bot_messages(chat, thread_id)

    async def settled(self, quiet: float = 0.3) -> None:
        """Waits for the bot to go quiet: no API call for ``quiet`` seconds, nothing in
        flight."""
        while True:
            count = len(self.tg.calls)
            await asyncio.sleep(quiet)
            busy = len(self.adapter._inflight) > 0
            if len(self.tg.calls) == count and not busy:
                return


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, username="parley_bot") as fake:
        fake.private_chat(ALICE, "Alice")
        fake.private_chat(BOB, "Bob")
        fake.user(ALICE, "Alice")
        fake.user(BOB, "Bob")
        fake.group(GROUP, "Friends", supergroup=True)
        fake.group(FORUM, "Forum", supergroup=True, forum=True)
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key="sk-tg") as fake:
        yield fake


StartBot = Callable[..., Any]


@pytest.fixture
async def start_bot(
    tg: FakeTelegram, llm: FakeOpenAIServer, tmp_path: Path
) -> AsyncIterator[StartBot]:
    """``await start_bot(**bot_keys)`` runs a bot until the test ends. ``backend`` adds
    or overrides keys of the chat_completions backend (retries, timeouts);
    ``database_url`` replaces the SQLite file (e.g. a PostgreSQL database)."""
    stack = contextlib.AsyncExitStack()

    async def start(
        limits: PlatformLimits = FAST,
        *,
        backend: dict[str, Any] | None = None,
        database_url: str | None = None,
        **keys: Any,
    ) -> Bot:
        bot: dict[str, Any] = {
            "name": "helper",
            "platform": "telegram",
            "token": TOKEN,
            "api_base_url": tg.api_base_url,
            **keys,
        }
        config = parse_config(
            {
                "database": {"url": database_url or f"sqlite+aiosqlite:///{tmp_path / 'tg.db'}"},
                "backends": {
                    "llm": {
                        "type": "chat_completions",
                        "base_url": llm.base_url,
                        "api_key": "sk-tg",
                        "model": "fake-model",
                        "max_retries": 0,
                        **(backend or {}),
                    }
                },
                "bots": [bot],
            }
        )
        app = await stack.enter_async_context(App(config))
        bot_config = config.bots[0]
        assert isinstance(bot_config, TelegramBotConfig)
        adapter = TelegramAdapter(bot_config, app.service(bot_config), limits=limits)
        stop = asyncio.Event()
        task = asyncio.ensure_future(adapter.run(stop))

        async def finish() -> None:
            stop.set()
            with contextlib.suppress(AdapterStartError):  # a test about a failed start
                await asyncio.wait_for(task, 15)

        stack.push_async_callback(finish)
        calls = "getUpdates" if bot.get("mode", "polling") == "polling" else "setWebhook"
        await tg.wait_for(lambda: tg.calls_to(calls) or task.done(), timeout=10)
        if task.done():
            task.result()
        return Bot(tg, llm, app, adapter, stop, task)

    async with stack:
        yield start
