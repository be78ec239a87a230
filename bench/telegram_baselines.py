"""The baselines the Telegram benchmark runs parley against, written with plain
python-telegram-bot and aiohttp, the way popular Telegram GPT bots are written.

``NaiveStreamingBot`` streams as those bots do (bench/naive.py): one task per answer, no
shared scheduler; it sends the first delta at once, then edits its message on a fixed
timer (``every_seconds``) or every ``every_chars`` new characters, cuts the text into
4096-character messages, logs and skips whatever Telegram refuses (a 429 included, as
PTB raises it), and makes the final edit once. ``BareBot`` is the least a bot can do:
ask the LLM, send the answer with one sendMessage; no store, no scheduler, history in
a dict.
"""

from __future__ import annotations

import asyncio
import logging

from telegram import Bot, ReplyParameters, Update
from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, MessageHandler, filters

from bench.naive import LlmClient, NaiveMessages, stream_naively

log = logging.getLogger(__name__)

MAX_LENGTH = 4096


class _PtbBot:
    """A PTB application polling the fake, handlers run concurrently."""

    def __init__(self, token: str, api_base_url: str, llm_base_url: str, model: str) -> None:
        self._token = token
        self._api = api_base_url
        self.llm = LlmClient(llm_base_url, model)
        self._in_flight = 0

    def busy(self) -> bool:
        return self._in_flight > 0

    async def run(self, stop: asyncio.Event) -> None:
        app: Application = (  # type: ignore[type-arg]
            ApplicationBuilder().token(self._token).base_url(self._api).concurrent_updates(True)
        ).build()
        app.add_handler(MessageHandler(filters.TEXT, self._on_text))
        async with self.llm.open(), app:
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
        async def send(i: int, part: str) -> int:
            reply = ReplyParameters(reply_to) if i == 0 else None
            return (await bot.send_message(chat_id, part, reply_parameters=reply)).message_id

        async def edit(message_id: int, part: str) -> object:
            return await bot.edit_message_text(part, chat_id=chat_id, message_id=message_id)

        shown = NaiveMessages(MAX_LENGTH, send, edit, TelegramError, f"chat {chat_id}")
        await stream_naively(
            self.llm.deltas([{"role": "user", "content": text}]),
            shown.show,
            every_seconds=self._every_seconds,
            every_chars=self._every_chars,
        )


class BareBot(_PtbBot):
    def __init__(self, token: str, api_base_url: str, llm_base_url: str, model: str) -> None:
        super().__init__(token, api_base_url, llm_base_url, model)
        self._history: dict[int, list[dict[str, str]]] = {}

    async def answer(self, bot: Bot, chat_id: int, reply_to: int, text: str) -> None:
        history = self._history.setdefault(chat_id, [])
        history.append({"role": "user", "content": text})
        answer = await self.llm.answer(history)
        history.append({"role": "assistant", "content": answer})
        await bot.send_message(chat_id, answer, reply_parameters=ReplyParameters(reply_to))
