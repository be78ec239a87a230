"""One Discord channel (text channel, thread or DM) as a ``DeliveryTarget``: discord.py
calls in, the delivery layer's errors out.

discord.py already waits out the 429s Discord answers with a ``Via`` header and retries
dropped connections and 5xx answers, so each call here is one request as far as the
delivery layer knows; what it still raises is mapped to the shared errors.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import discord

from adapters.delivery.target import MessageGone, Rendered
from adapters.delivery.target import RetryAfter as DeliveryRetryAfter
from core.incoming import ReplyTargetGone

log = logging.getLogger(__name__)
T = TypeVar("T")

# Discord's JSON error codes (https://discord.com/developers/docs/topics/opcodes-and-status-codes)
UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
DEFAULT_RETRY = 1.0  # a 429 that names no wait (a proxy's) is waited out this long

Channel = (
    discord.TextChannel
    | discord.Thread
    | discord.DMChannel
    | discord.VoiceChannel
    | discord.StageChannel
)


def retry_after(exc: discord.HTTPException) -> tuple[float, bool]:
    """The wait and whether it is global, from a 429 discord.py did not retry (one
    without ``Via``: Cloudflare's, or a proxy's)."""
    headers = exc.response.headers
    try:
        wait = float(headers.get("Retry-After", DEFAULT_RETRY))
    except ValueError:
        wait = DEFAULT_RETRY
    is_global = headers.get("X-RateLimit-Global") == "true" or (
        headers.get("X-RateLimit-Scope") == "global"
    )
    return max(wait, 0.0), is_global


class _DiscordCalls:
    """What every Discord target shares: the budget key, allowed mentions, and the
    mapping of discord.py's errors to the delivery layer's."""

    def __init__(self, channel_id: int, *, bot: str, ping_on_reply: bool) -> None:
        self._channel_id = channel_id
        self._bot = bot
        self._told_forbidden = False
        # Whatever the model wrote, @everyone, @here, roles and users never ping; only
        # the author replied to, and only if the bot's config asks for it.
        self._mentions = discord.AllowedMentions.none()
        self._mentions.replied_user = ping_on_reply

    @property
    def chat_key(self) -> str:
        return f"discord:{self._channel_id}"

    @property
    def is_group(self) -> bool:
        return False  # Discord has no per-guild budget; its limits are per channel

    @property
    def supports_drafts(self) -> bool:
        return False

    async def draft(self, draft_id: int, message: Rendered) -> None:
        raise AssertionError("Discord has no drafts (supports_drafts is False)")

    async def _call(self, request: Callable[[], Awaitable[T]], *, editing: bool) -> T:
        try:
            return await request()
        except discord.RateLimited as exc:  # longer than max_ratelimit_timeout
            raise DeliveryRetryAfter(exc.retry_after, "chat") from exc
        except discord.Forbidden as exc:  # Missing Permissions / Access, or a closed DM
            # The chat service drops the turn quietly; the operator must still learn
            # why the bot is silent in this channel (once per answer, not per call).
            if not self._told_forbidden:
                self._told_forbidden = True
                log.warning(
                    "bot %s: Discord refused to let the bot write in channel %s (%s); "
                    "check its permissions there (View Channel, Send Messages, Read "
                    "Message History, Send Messages in Threads)",
                    self._bot,
                    self._channel_id,
                    exc.text or exc.code,
                )
            raise ReplyTargetGone(f"403 {exc.code}: {exc.text}") from exc
        except discord.NotFound as exc:
            if editing and exc.code == UNKNOWN_MESSAGE:
                raise MessageGone(exc.text) from exc
            raise ReplyTargetGone(f"404 {exc.code}: {exc.text}") from exc
        except discord.HTTPException as exc:
            if exc.status == 429:
                wait, is_global = retry_after(exc)
                raise DeliveryRetryAfter(wait, "global" if is_global else "chat") from exc
            raise


class DiscordTarget(_DiscordCalls):
    def __init__(
        self,
        channel: Channel,
        *,
        bot: str = "",
        reply_to: int | None = None,
        ping_on_reply: bool = False,
    ) -> None:
        super().__init__(channel.id, bot=bot, ping_on_reply=ping_on_reply)
        self._channel = channel
        self._reply_to = reply_to

    async def send(self, message: Rendered, *, first: bool) -> str:
        if not first or self._reply_to is None:
            sent = await self._call(
                lambda: self._channel.send(message.text, allowed_mentions=self._mentions),
                editing=False,
            )
            return str(sent.id)
        reference = discord.MessageReference(
            message_id=self._reply_to,
            channel_id=self._channel.id,
            guild_id=self._channel.guild.id if self._channel.guild else None,
            fail_if_not_exists=False,  # the question was deleted: answer anyway
        )
        sent = await self._call(
            lambda: self._channel.send(
                message.text, reference=reference, allowed_mentions=self._mentions
            ),
            editing=False,
        )
        return str(sent.id)

    async def edit(self, message_id: str, message: Rendered) -> None:
        partial = self._channel.get_partial_message(int(message_id))
        await self._call(
            lambda: partial.edit(content=message.text, allowed_mentions=self._mentions),
            editing=True,
        )

    async def typing(self) -> None:
        # Awaiting Typing sends one indicator (the context manager would loop).
        await self._call(lambda: self._channel.typing(), editing=False)


class InteractionTarget(_DiscordCalls):
    """A slash command's answer: the deferred "thinking…" response is its first
    message (edited into the answer), further pieces are followups."""

    def __init__(
        self, interaction: discord.Interaction[Any], *, bot: str = "", ping_on_reply: bool = False
    ) -> None:
        super().__init__(interaction.channel_id or 0, bot=bot, ping_on_reply=ping_on_reply)
        self._interaction = interaction
        self._original: str | None = None

    @property
    def used(self) -> bool:
        """Whether the deferred response became a message."""
        return self._original is not None

    async def send(self, message: Rendered, *, first: bool) -> str:
        interaction = self._interaction
        if self._original is None:
            shown = await self._call(
                lambda: interaction.edit_original_response(
                    content=message.text, allowed_mentions=self._mentions
                ),
                editing=False,
            )
            self._original = str(shown.id)
            return self._original
        sent = await self._call(
            lambda: interaction.followup.send(
                message.text, allowed_mentions=self._mentions, wait=True
            ),
            editing=False,
        )
        return str(sent.id)

    async def edit(self, message_id: str, message: Rendered) -> None:
        interaction = self._interaction
        if message_id == self._original:
            await self._call(
                lambda: interaction.edit_original_response(
                    content=message.text, allowed_mentions=self._mentions
                ),
                editing=True,
            )
            return
        await self._call(
            lambda: interaction.followup.edit_message(
                int(message_id), content=message.text, allowed_mentions=self._mentions
            ),
            editing=True,
        )

    async def typing(self) -> None:
        """The deferred response already shows "thinking…"."""
