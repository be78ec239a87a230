"""The baselines the Discord benchmark runs parley against, written with plain discord.py
and aiohttp, the way popular Discord GPT bots are written.

``NaiveStreamingBot`` streams as those bots do (bench/naive.py): one task per answer (the
task discord.py starts for each ``on_message``), no shared scheduler; it replies with
the first delta at once, then edits its message every second, cuts the text into
2000-character messages wherever that falls, and logs and skips whatever Discord
refuses. discord.py's own rate-limit handling stays as it is, because that is what those
bots get: it waits when a bucket's ``X-RateLimit-Remaining`` reaches 0, and waits out and
retries a 429 that carries ``Via``. ``BareBot`` is the least a bot can do: ask the LLM,
send the answer (cut the same way) as one reply; no store, no scheduler, history in a
dict per channel.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord

from bench.naive import LlmClient, NaiveMessages, naive_parts, stream_naively
from tests.fakes.discord_api import patch_discord

log = logging.getLogger(__name__)

MAX_LENGTH = 2000


class _Client(discord.Client):
    def __init__(self, bot: _DpyBot, **options: Any) -> None:
        super().__init__(**options)
        self._bot = bot

    async def on_message(self, message: discord.Message) -> None:
        if message.author.bot or not message.content:
            return
        await self._bot.on_message(message)


class _DpyBot:
    """A discord.py client on the fake's REST API and gateway."""

    def __init__(
        self, token: str, api_base_url: str, gateway_url: str, llm_base_url: str, model: str
    ) -> None:
        self._token = token
        self._endpoints = (api_base_url, gateway_url)
        self.llm = LlmClient(llm_base_url, model)
        self._client: discord.Client | None = None
        self._in_flight = 0

    def busy(self) -> bool:
        return self._in_flight > 0

    def ready(self) -> bool:
        return self._client is not None and self._client.is_ready()

    async def run(self, stop: asyncio.Event) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        # A short wait for GUILD_CREATEs after READY: start-up only, not what is measured.
        client = _Client(self, intents=intents, guild_ready_timeout=0.05)
        self._client = client
        with patch_discord(*self._endpoints):
            async with self.llm.open():
                await client.login(self._token)
                connection = asyncio.ensure_future(client.connect())
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                await client.close()
                await connection  # a failed connection: its exception

    async def on_message(self, message: discord.Message) -> None:
        self._in_flight += 1
        try:
            await self.answer(message)
        except Exception as exc:
            log.warning("answer failed: %s", exc)
        finally:
            self._in_flight -= 1

    async def answer(self, message: discord.Message) -> None:
        raise NotImplementedError


class NaiveStreamingBot(_DpyBot):
    async def answer(self, message: discord.Message) -> None:
        channel = message.channel

        async def send(i: int, part: str) -> discord.Message:
            return await (message.reply(part) if i == 0 else channel.send(part))

        async def edit(sent: discord.Message, part: str) -> object:
            return await sent.edit(content=part)

        shown = NaiveMessages(
            MAX_LENGTH, send, edit, discord.DiscordException, f"channel {channel.id}"
        )
        await stream_naively(
            self.llm.deltas([{"role": "user", "content": message.content}]),
            shown.show,
            every_seconds=1.0,
        )


class BareBot(_DpyBot):
    def __init__(
        self, token: str, api_base_url: str, gateway_url: str, llm_base_url: str, model: str
    ) -> None:
        super().__init__(token, api_base_url, gateway_url, llm_base_url, model)
        self._history: dict[int, list[dict[str, str]]] = {}

    async def answer(self, message: discord.Message) -> None:
        history = self._history.setdefault(message.channel.id, [])
        history.append({"role": "user", "content": message.content})
        answer = await self.llm.answer(history)
        history.append({"role": "assistant", "content": answer})
        for i, part in enumerate(naive_parts(answer, MAX_LENGTH)):
            await (message.reply(part) if i == 0 else message.channel.send(part))
