"""What the Telegram benchmark's bots talk to: the fake Bot API with its chats (the fake
LLM's answers are bench/answers.py's), parley's bot started as the tests start it, and
what a user saw, read back from the fake."""

from __future__ import annotations

from pathlib import Path

from adapters.delivery.target import PlatformLimits
from adapters.telegram.bot import TelegramAdapter
from adapters.telegram.config import TelegramBotConfig
from adapters.telegram.limits import TELEGRAM_LIMITS
from bench.harness import ParleyRunner
from bots.config import BotConfig
from core.chat_service import ChatService
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.telegram_api import FLOOD_OPS, FakeTelegram
from tests.fakes.telegram_state import Call

TOKEN = "123456:bench-telegram-token"
USERNAME = "parley_bot"
TEXT_OPS = ("sendMessageDraft", "sendMessage", "editMessageText")  # what shows text
FIRST_USER = 5001
FIRST_GROUP = -1009001


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


class ParleyBot(ParleyRunner):
    """parley's Telegram bot, with Telegram's real limits unless told otherwise."""

    def __init__(
        self,
        tg: FakeTelegram,
        llm: FakeOpenAIServer,
        folder: Path,
        slots: int,
        limits: PlatformLimits = TELEGRAM_LIMITS,
    ) -> None:
        bot = {"platform": "telegram", "token": TOKEN, "api_base_url": tg.api_base_url}
        super().__init__(folder, llm.base_url, slots, bot)
        self._limits = limits

    def adapter(self, bot: BotConfig, service: ChatService) -> TelegramAdapter:
        assert isinstance(bot, TelegramBotConfig)
        return TelegramAdapter(bot, service, limits=self._limits)


def message_calls(tg: FakeTelegram) -> int:
    """How many message calls the bot has made (for ``bench.harness.settle``)."""
    return sum(1 for c in tg.calls if c.method in FLOOD_OPS)


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
