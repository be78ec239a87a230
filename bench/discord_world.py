"""What the Discord benchmark's bots talk to: the fake Discord with one server of
channels, each with a user of its own (the fake LLM's answers are bench/answers.py's),
parley's bot started as the tests start it, and what a user saw, read back from the
fake."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from adapters.delivery.target import PlatformLimits
from adapters.discord.bot import DiscordAdapter
from adapters.discord.config import DiscordBotConfig
from adapters.discord.limits import DISCORD_LIMITS
from bench.harness import ParleyRunner, Runner
from bots.config import BotConfig
from core.chat_service import ChatService
from tests.fakes.discord_api import Call, FakeDiscord
from tests.fakes.openai_server import FakeOpenAIServer

TOKEN = "MTAw.bench.token"
BOT = 1_100_000_000_000_000_001
GUILD = 810_000_000_000_000_001
FIRST_CHANNEL = 820_000_000_000_000_100
FIRST_USER = 840_000_000_000_000_100
SEND = "POST /channels/{channel_id}/messages"
EDIT = "PATCH /channels/{channel_id}/messages/{message_id}"
TYPING = "POST /channels/{channel_id}/typing"
TEXT_OPS = (SEND, EDIT)  # what shows text
# discord.py's client waits this long for GUILD_CREATEs after READY (2 s by default):
# start-up only, shortened for every bot alike.
GUILD_READY_TIMEOUT = 0.05


class DiscordRunner(Runner, Protocol):
    def ready(self) -> bool:
        """Connected, and the guilds are known: messages from here on are answered."""


def add_channels(dc: FakeDiscord, n: int) -> list[tuple[int, int]]:
    """(channel id, user id) for ``n`` text channels in one server, each with its own
    member, who talks there."""
    guild = dc.guild(GUILD)
    chats: list[tuple[int, int]] = []
    for i in range(n):
        channel, user = FIRST_CHANNEL + i, FIRST_USER + i
        dc.channel(guild, channel, f"c{i}")
        dc.user(user, f"user{i}")
        dc.member(guild, user)
        chats.append((channel, user))
    return chats


def prompt(channel: int, turn: int = 0) -> str:
    return f"chat-{channel} turn {turn}: tell me about rate limits"


class ParleyBot(ParleyRunner):
    """parley's Discord bot, with Discord's real limits unless told otherwise, answering
    every message (``group_trigger: always``) as the baselines do."""

    def __init__(
        self,
        dc: FakeDiscord,
        llm: FakeOpenAIServer,
        folder: Path,
        slots: int,
        limits: PlatformLimits = DISCORD_LIMITS,
    ) -> None:
        bot = {
            "platform": "discord",
            "token": TOKEN,
            "api_base_url": dc.url,
            "gateway_url": dc.gateway_url,
            "group_trigger": "always",
        }
        super().__init__(folder, llm.base_url, slots, bot)
        self._limits = limits
        self._discord: DiscordAdapter | None = None

    def adapter(self, bot: BotConfig, service: ChatService) -> DiscordAdapter:
        assert isinstance(bot, DiscordBotConfig)
        options = {"guild_ready_timeout": GUILD_READY_TIMEOUT}
        self._discord = DiscordAdapter(bot, service, limits=self._limits, client_options=options)
        return self._discord

    def ready(self) -> bool:
        return self._discord is not None and self._discord.ready


def message_calls(dc: FakeDiscord) -> int:
    """How many message calls the bot has made (for ``bench.harness.settle``)."""
    return sum(1 for c in dc.calls if c.route in TEXT_OPS)


def first_visible(calls: list[Call]) -> float | None:
    """When the first text of ``calls`` (one channel's) arrived at Discord (an accepted
    message or edit with content): what the user first sees of the answer."""
    for call in calls:
        if (
            call.route in TEXT_OPS
            and call.ok
            and str((call.body or {}).get("content") or "").strip()
        ):
            return call.time
    return None


def last_shown(calls: list[Call]) -> float | None:
    """When the last accepted message call of ``calls`` (one channel's) arrived."""
    times = [c.time for c in calls if c.route in TEXT_OPS and c.ok]
    return max(times) if times else None


def shown_parts(dc: FakeDiscord, channel: int) -> list[str]:
    """The bot's messages in ``channel``, as they read now."""
    return [m.content for m in dc.bot_messages(channel)]
