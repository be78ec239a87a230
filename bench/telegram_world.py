"""What the Telegram benchmark's bots talk to: the fake Bot API, the fake LLM with
answers whose first and last tokens are timed, parley's bot started as the tests start
it, and what a user saw, read back from the fake."""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, SupportsIndex, overload

from adapters.delivery.target import PlatformLimits
from adapters.telegram.bot import TelegramAdapter
from adapters.telegram.config import TelegramBotConfig
from adapters.telegram.limits import TELEGRAM_LIMITS
from bots.app import App
from bots.config import parse_config
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.fakes.telegram_api import FLOOD_OPS, FakeTelegram
from tests.fakes.telegram_state import Call

TOKEN = "123456:bench-telegram-token"
USERNAME = "parley_bot"
MODEL = "bench-model"
TEXT_OPS = ("sendMessageDraft", "sendMessage", "editMessageText")  # what shows text
FIRST_USER = 5001
FIRST_GROUP = -1009001
_KEY = re.compile(r"\bchat-(-?\d+)\b")

_PROSE = (
    "the quick answer covers every part of the question with care while each step of "
    "the reasoning stays short clear and plain so that a reader can follow along from "
    "start to end without getting lost in detail model text stream message chat user "
    "group limit budget window second minute reply split paragraph sentence"
)
_WORDS = _PROSE.split()


def make_answer(seed: int, chars: int) -> str:
    """About ``chars`` characters of plain prose in paragraphs: no Markdown, so the final
    text is the model's text, and paragraph breaks for the splitter to cut at."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < chars:
        goal = rng.randint(350, 650)
        sentences: list[str] = []
        size = 0
        while size < goal:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 14))]
            sentence = " ".join(words).capitalize() + "."
            sentences.append(sentence)
            size += len(sentence) + 1
        paragraph = " ".join(sentences)
        paragraphs.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(paragraphs)


def short_answer(seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(_WORDS) for _ in range(12)).capitalize() + "."


def squeezed(text: str) -> str:
    """``text`` without whitespace: Telegram trims each message, and a split may drop
    the blank line it cut at, so answers are compared modulo whitespace."""
    return "".join(text.split())


class _TimedPieces(list[str]):
    """An answer's deltas that note when the fake LLM takes the first and the last one
    to write (it writes each right after reading it), on this process's monotonic clock."""

    def __init__(self, pieces: Iterable[str], key: int, world: TimedAnswers) -> None:
        super().__init__(pieces)
        self._key = key
        self._world = world

    @overload
    def __getitem__(self, index: SupportsIndex) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...
    def __getitem__(self, index: SupportsIndex | slice) -> str | list[str]:
        if isinstance(index, slice):
            return list.__getitem__(self, index)
        i = index.__index__()
        if i == 0:
            self._world.first_token.setdefault(self._key, time.monotonic())
        if i == len(self) - 1:
            self._world.last_token[self._key] = time.monotonic()
        return list.__getitem__(self, i)


@dataclass
class TimedAnswers:
    """The fake LLM's answers, one per chat (a prompt names its chat as ``chat-<id>``),
    with the moment each answer's first and last token was written."""

    answers: dict[int, str] = field(default_factory=dict)
    chunk_chars: int = 4
    first_token: dict[int, float] = field(default_factory=dict)
    last_token: dict[int, float] = field(default_factory=dict)
    _by_text: dict[str, int] = field(default_factory=dict)

    def key_of(self, messages: list[dict[str, Any]]) -> int:
        for message in reversed(messages):
            if message.get("role") == "user":
                found = _KEY.search(str(message.get("content")))
                if found:
                    return int(found.group(1))
        raise ValueError("a prompt without its chat-<id>")

    def reply(self, messages: list[dict[str, Any]]) -> str:
        key = self.key_of(messages)
        text = self.answers[key]
        self._by_text[text] = key
        return text

    def chunker(self, text: str) -> list[str]:
        pieces = [text[i : i + self.chunk_chars] for i in range(0, len(text), self.chunk_chars)]
        key = self._by_text.get(text)
        return pieces if key is None else _TimedPieces(pieces, key, self)

    def server(self, chunk_delay: float) -> FakeOpenAIServer:
        return FakeOpenAIServer(
            reply=self.reply,
            chunker=self.chunker,
            model=MODEL,
            default=Behaviour(chunk_delay=chunk_delay),
        )


def add_chats(tg: FakeTelegram, privates: int, groups: int) -> list[tuple[int, int, bool]]:
    """(chat id, user id, is group) for ``privates`` private chats and ``groups``
    supergroups, each with its own user."""
    chats: list[tuple[int, int, bool]] = []
    for i in range(privates):
        user = FIRST_USER + i
        tg.private_chat(user, f"User{i}")
        chats.append((user, user, False))
    for i in range(groups):
        user = FIRST_USER + privates + i
        tg.user(user, f"Member{i}")
        chat = FIRST_GROUP - i
        tg.group(chat, f"Group {i}", supergroup=True)
        chats.append((chat, user, True))
    return chats


def prompt(chat: int, is_group: bool, turn: int = 0) -> str:
    text = f"chat-{chat} turn {turn}: tell me about flood limits"
    return f"@{USERNAME} {text}" if is_group else text


class Runner(Protocol):
    """A bot under test, running against the fakes until ``stop`` is set."""

    async def run(self, stop: asyncio.Event) -> None: ...

    def busy(self) -> bool:
        """Whether an answer is still being worked on."""


class ParleyBot:
    """parley's Telegram bot as ``parley run`` builds it: the real App (SQLite in
    ``folder``), a chat_completions backend at the fake LLM, the adapter with Telegram's
    real limits unless told otherwise."""

    def __init__(
        self,
        tg: FakeTelegram,
        llm: FakeOpenAIServer,
        folder: Path,
        slots: int,
        limits: PlatformLimits = TELEGRAM_LIMITS,
    ) -> None:
        self._limits = limits
        self._config = parse_config(
            {
                "database": {"url": f"sqlite+aiosqlite:///{folder / 'bench.db'}"},
                "backends": {
                    "llm": {
                        "type": "chat_completions",
                        "base_url": llm.base_url,
                        "model": MODEL,
                        "max_retries": 0,
                        # As many requests at once as chats: the baselines have no cap.
                        "max_concurrency": slots,
                    }
                },
                "bots": [
                    {
                        "name": "bench",
                        "platform": "telegram",
                        "token": TOKEN,
                        "api_base_url": tg.api_base_url,
                    }
                ],
            }
        )
        self._adapter: TelegramAdapter | None = None

    async def run(self, stop: asyncio.Event) -> None:
        async with App(self._config) as app:
            bot = self._config.bots[0]
            assert isinstance(bot, TelegramBotConfig)
            self._adapter = TelegramAdapter(bot, app.service(bot), limits=self._limits)
            await self._adapter.run(stop)

    def busy(self) -> bool:
        # The adapter's answers in flight (the test harness reads the same count).
        return self._adapter is not None and len(self._adapter._inflight) > 0


async def settle(tg: FakeTelegram, bot: Runner, quiet: float, timeout: float) -> bool:
    """Wait until no answer is in flight and no message call came for ``quiet`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = sum(1 for c in tg.calls if c.method in FLOOD_OPS)
        await asyncio.sleep(quiet)
        if not bot.busy() and sum(1 for c in tg.calls if c.method in FLOOD_OPS) == count:
            return True
    return False


def first_visible(calls: list[Call]) -> float | None:
    """When the first text of ``calls`` (one chat's) arrived at Telegram (an accepted
    draft, message or edit with text): what the user first sees of the answer."""
    for call in calls:
        if call.method in TEXT_OPS and call.ok and str(call.params.get("text", "")).strip():
            return call.time
    return None


def last_shown(calls: list[Call]) -> float | None:
    """When the last accepted message call of ``calls`` (one chat's) arrived."""
    times = [c.time for c in calls if c.method in FLOOD_OPS and c.ok]
    return max(times) if times else None


def shown_text(tg: FakeTelegram, chat: int) -> str:
    return "".join(m.text or "" for m in tg.bot_messages(chat))
