"""The baselines the Telegram benchmark runs parley against, written with plain
python-telegram-bot and aiohttp, the way popular Telegram GPT bots are written.

``NaiveStreamingBot`` streams as those bots do: one task per answer, no shared
scheduler; it sends the first delta at once, then edits its message on a fixed timer
(``every_seconds``) or every ``every_chars`` new characters, cuts the text into
4096-character messages, logs and skips whatever Telegram refuses (a 429 included, as
PTB raises it), and makes the final edit once. ``BareBot`` is the least a bot can do:
ask the LLM, send the answer with one sendMessage; no store, no scheduler, history in
a dict.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from telegram import Bot, ReplyParameters, Update
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters

log = logging.getLogger(__name__)

MAX_LENGTH = 4096


class _PtbBot:
    """A PTB application polling the fake, handlers run concurrently."""

    def __init__(self, token: str, api_base_url: str, llm_base_url: str, model: str) -> None:
        self._token = token
        self._api = api_base_url
        self._url = f"{llm_base_url}/chat/completions"
        self._model = model
        self._in_flight = 0
        self.session: aiohttp.ClientSession | None = None

    def busy(self) -> bool:
        return self._in_flight > 0

    async def run(self, stop: asyncio.Event) -> None:
        app: Application = (  # type: ignore[type-arg]
            ApplicationBuilder().token(self._token).base_url(self._api).concurrent_updates(True)
        ).build()
        app.add_handler(MessageHandler(filters.TEXT, self._on_text))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            self.session = session
            async with app:
                await app.start()
                assert app.updater is not None
                await app.updater.start_polling(allowed_updates=[Update.MESSAGE])
                await stop.wait()
                await app.updater.stop()
                await app.stop()

    async def _on_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.text is None:
            return
        self._in_flight += 1
        try:
            await self.answer(context.bot, message.chat_id, message.message_id, message.text)
        except Exception as exc:
            log.warning("answer failed: %s", exc)
        finally:
            self._in_flight -= 1

    async def answer(self, bot: Bot, chat_id: int, reply_to: int, text: str) -> None:
        raise NotImplementedError

    async def deltas(self, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        """The LLM's answer, delta by delta (Chat Completions streaming over SSE)."""
        assert self.session is not None
        body: dict[str, Any] = {"model": self._model, "messages": messages, "stream": True}
        async with self.session.post(self._url, json=body) as response:
            response.raise_for_status()
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    return
                choices = json.loads(data).get("choices") or [{}]
                content = choices[0].get("delta", {}).get("content")
                if content:
                    yield content


class NaiveStreamingBot(_PtbBot):
    def __init__(
        self,
        token: str,
        api_base_url: str,
        llm_base_url: str,
        model: str,
        *,
        every_seconds: float | None = 1.0,
        every_chars: int | None = None,
    ) -> None:
        super().__init__(token, api_base_url, llm_base_url, model)
        self._every_seconds = every_seconds
        self._every_chars = every_chars

    async def answer(self, bot: Bot, chat_id: int, reply_to: int, text: str) -> None:
        shown: list[tuple[int, str]] = []  # message id, text, per 4096-character part
        answer = ""
        last_time = -math.inf  # the first delta is shown at once
        last_size = -math.inf
        async for delta in self.deltas([{"role": "user", "content": text}]):
            answer += delta
            now = time.monotonic()
            seconds, chars = self._every_seconds, self._every_chars
            due_time = seconds is not None and now - last_time >= seconds
            due_size = chars is not None and len(answer) - last_size >= chars
            if due_time or due_size:
                await self._show(bot, chat_id, reply_to, answer, shown)
                last_time, last_size = time.monotonic(), len(answer)
        await self._show(bot, chat_id, reply_to, answer, shown)  # the final edit, once

    async def _show(
        self, bot: Bot, chat_id: int, reply_to: int, text: str, shown: list[tuple[int, str]]
    ) -> None:
        parts = [text[i : i + MAX_LENGTH] for i in range(0, len(text), MAX_LENGTH)]
        for i, part in enumerate(parts):
            try:
                if i < len(shown):
                    message_id, old = shown[i]
                    if old != part:
                        await bot.edit_message_text(part, chat_id=chat_id, message_id=message_id)
                        shown[i] = (message_id, part)
                else:
                    reply = ReplyParameters(reply_to) if i == 0 else None
                    sent = await bot.send_message(chat_id, part, reply_parameters=reply)
                    shown.append((sent.message_id, part))
            except TelegramError as exc:
                log.warning("chat %s: %s", chat_id, exc)  # and skip, as those bots do
                return


class BareBot(_PtbBot):
    def __init__(self, token: str, api_base_url: str, llm_base_url: str, model: str) -> None:
        super().__init__(token, api_base_url, llm_base_url, model)
        self._history: dict[int, list[dict[str, str]]] = {}

    async def answer(self, bot: Bot, chat_id: int, reply_to: int, text: str) -> None:
        history = self._history.setdefault(chat_id, [])
        history.append({"role": "user", "content": text})
        answer = "".join([d async for d in self.deltas(history)])
        history.append({"role": "assistant", "content": answer})
        await bot.send_message(chat_id, answer, reply_parameters=ReplyParameters(reply_to))
