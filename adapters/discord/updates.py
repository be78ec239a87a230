"""Discord messages as platform-neutral ``IncomingMessage`` s.

Scopes in a thread: a thread is a chat of its own (``chat_id`` and ``thread_id`` are
the thread), so under ``scope: chat`` or ``thread`` it is a conversation apart from
its channel's. Its parent channel and that channel's category are in ``also_chats``:
``allowed_chats`` may list channels or categories, and covers their threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import discord

from adapters.discord.attachments import is_text
from adapters.discord.target import Channel
from core.incoming import IncomingMessage

PLATFORM = "discord"
NO_TEXT_REPLY = "I can only read text messages for now."
# What a user writes; everything else (joins, pins, thread starters...) is a system message.
_USER_TYPES = (discord.MessageType.default, discord.MessageType.reply)
SENDABLE = (
    discord.TextChannel,
    discord.Thread,
    discord.DMChannel,
    discord.VoiceChannel,
    discord.StageChannel,
)


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message worth acting on: a text message, or a DM without text to answer."""

    message: IncomingMessage
    channel: Channel
    message_id: int
    has_text: bool
    files: tuple[discord.Attachment, ...] = ()
    """Text attachments to read into the message, once the bot is sure to look at it."""
    raw: discord.Message | None = None


def _reply_to(message: discord.Message, bot_id: int) -> tuple[str | None, bool]:
    ref = message.reference
    if ref is None or ref.message_id is None or ref.type != discord.MessageReferenceType.reply:
        return None, False  # a forward quotes a message; it does not continue from it
    replied = ref.resolved if isinstance(ref.resolved, discord.Message) else ref.cached_message
    return str(ref.message_id), replied is not None and replied.author.id == bot_id


def _bot_roles(message: discord.Message, bot_id: int) -> set[int]:
    """The bot's managed role(s) among the roles the message mentions."""
    return {
        role.id
        for role in message.role_mentions
        if role.tags is not None and role.tags.bot_id == bot_id
    }


def strip_mentions(text: str, bot_id: int, role_ids: set[int]) -> tuple[str, bool]:
    """Removes mentions of the bot (``<@id>``, ``<@!id>``, ``<@&its role>``) from the
    text; returns the text and whether there was one."""
    ids = "|".join([f"@!?{bot_id}", *(f"@&{r}" for r in sorted(role_ids))])
    pattern = re.compile(rf"[ \t]*<(?:{ids})>[ \t]*")
    stripped, count = pattern.subn(" ", text)
    return (stripped.strip(), True) if count else (text, False)


def from_a_person(message: discord.Message) -> bool:
    """Written by a user: not by a bot (the bot itself too), a webhook or the system."""
    author = message.author
    if author.bot or author.system or message.webhook_id is not None:
        return False
    return message.type in _USER_TYPES


def inbound(
    message: discord.Message,
    *,
    bot: str,
    bot_id: int,
    auto_thread: bool = False,
    channel: object = None,
) -> Inbound | None:
    """The message if parley acts on it; None for what it ignores: other bots (and
    itself), webhooks, system messages, guild messages without text, channels it cannot
    answer in. With ``auto_thread``, every message in a thread the bot opened is
    addressed to it. ``channel``: the message's channel, fetched, where discord.py had
    only a ``PartialMessageable`` for it."""
    if not from_a_person(message):
        return None
    channel = message.channel if channel is None else channel
    if not isinstance(channel, SENDABLE):
        return None
    author = message.author
    direct = isinstance(channel, discord.DMChannel)
    raw = message.content
    files = tuple(a for a in message.attachments if is_text(a))
    if not raw and not files and not direct:
        return None  # an image alone, or no message-content intent: nothing to read
    text, addressed = strip_mentions(raw, bot_id, _bot_roles(message, bot_id))
    if auto_thread and isinstance(channel, discord.Thread) and channel.owner_id == bot_id:
        addressed = True  # the conversation goes on in the thread it opened
    reply_to, reply_to_bot = _reply_to(message, bot_id)
    thread = isinstance(channel, discord.Thread)
    chat_id = channel.id  # a thread is a chat of its own; its channel is in also_chats
    roles = author.roles if isinstance(author, discord.Member) else []
    incoming = IncomingMessage(
        platform=PLATFORM,
        bot=bot,
        chat_id=str(chat_id),
        user_id=str(author.id),
        text=text,
        message_id=str(message.id),
        reply_to_message_id=reply_to,
        reply_to_bot=reply_to_bot,
        thread_id=str(channel.id) if thread else None,
        is_direct=direct,
        addresses_bot=addressed,
        guild_id=str(message.guild.id) if message.guild is not None else None,
        also_chats=chat_aliases(channel),
        user_roles=tuple(str(role.id) for role in roles),
    )
    return Inbound(incoming, channel, message.id, bool(raw or files), files, message)


def chat_aliases(channel: object) -> tuple[str, ...]:
    """The ids besides the chat's own that ``allowed_chats`` may name: a thread's parent
    channel, and the category of the channel (or of the thread's parent)."""
    ids: list[str] = []
    parent = channel
    if isinstance(channel, discord.Thread):
        if channel.parent_id is not None:
            ids.append(str(channel.parent_id))
        parent = channel.parent
    category = getattr(parent, "category_id", None)
    if category is not None:
        ids.append(str(category))
    return tuple(ids)
