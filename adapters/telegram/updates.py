"""Telegram updates as platform-neutral ``IncomingMessage`` s."""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Message, MessageEntity, Update
from telegram.constants import ChatType

from core.incoming import IncomingMessage

PLATFORM = "telegram"
NO_TEXT_REPLY = "I can only read text messages for now."


@dataclass(frozen=True, slots=True)
class Inbound:
    """One update worth acting on: a text message, or a DM without text to answer."""

    message: IncomingMessage
    chat_id: int
    thread_id: int | None
    message_id: int
    has_text: bool
    is_command: bool = False
    """Telegram marked a bot command at the start: "/usr/bin/env?" is a question."""


def _thread_id(message: Message) -> int | None:
    # Only forum topics are threads; replies in ordinary groups carry a thread id too.
    return message.message_thread_id if message.is_topic_message else None


def _reply_to(message: Message, bot_id: int) -> tuple[str | None, bool]:
    reply = message.reply_to_message
    if reply is None or reply.forum_topic_created is not None:
        # In a forum topic every message "replies" to the topic's first service message.
        return None, False
    if message.is_topic_message and reply.message_id == message.message_thread_id:
        return None, False
    sender = reply.from_user
    return str(reply.message_id), sender is not None and sender.id == bot_id


def _strip_mentions(
    text: str, entities: tuple[MessageEntity, ...], bot_id: int, username: str
) -> tuple[str, bool]:
    """Removes mentions of the bot from the text; returns the text and whether the bot
    was addressed (a mention, or a command such as ``/reset@ourbot``)."""
    handle = f"@{username}".lower()
    units = text.encode("utf-16-le")  # entity offsets count UTF-16 code units

    def piece(entity: MessageEntity) -> str:
        return units[entity.offset * 2 : (entity.offset + entity.length) * 2].decode(
            "utf-16-le", errors="replace"
        )

    addressed = False
    cuts: list[MessageEntity] = []
    for entity in entities:
        if entity.type == MessageEntity.BOT_COMMAND:
            addressed = addressed or piece(entity).lower().endswith(handle)
            continue
        mention = entity.type == MessageEntity.MENTION and piece(entity).lower() == handle
        text_mention = (
            entity.type == MessageEntity.TEXT_MENTION
            and entity.user is not None
            and entity.user.id == bot_id
        )
        if mention or text_mention:
            addressed = True
            cuts.append(entity)
    if not cuts:
        return text, addressed
    for entity in sorted(cuts, key=lambda e: e.offset, reverse=True):
        end = (entity.offset + entity.length) * 2
        if units[end : end + 2] == b" \x00":  # "@bot what" -> "what", not " what"
            end += 2
        units = units[: entity.offset * 2] + units[end:]
    stripped = units.decode("utf-16-le", errors="replace")
    return stripped.strip(), addressed


def inbound(update: Update, *, bot: str, bot_id: int, username: str) -> Inbound | None:
    """The message of ``update`` if parley acts on it; None for what it ignores: edits,
    channel posts, other bots, service messages."""
    message = update.message
    if message is None or message.from_user is None or message.chat.type == ChatType.CHANNEL:
        return None
    sender = _sender(message)
    if sender is None:
        return None
    raw = message.text if message.text is not None else message.caption
    entities = message.entities if message.text is not None else message.caption_entities
    text, addressed = _strip_mentions(raw or "", entities, bot_id, username)
    reply_to, reply_to_bot = _reply_to(message, bot_id)
    thread_id = _thread_id(message)
    incoming = IncomingMessage(
        platform=PLATFORM,
        bot=bot,
        chat_id=str(message.chat.id),
        user_id=sender,
        text=text,
        message_id=str(message.message_id),
        reply_to_message_id=reply_to,
        reply_to_bot=reply_to_bot,
        thread_id=str(thread_id) if thread_id is not None else None,
        is_direct=message.chat.type == ChatType.PRIVATE,
        addresses_bot=addressed,
    )
    if raw is None and (
        message.new_chat_members or message.left_chat_member or not incoming.is_direct
    ):
        return None  # service messages, and media without a caption in groups: silence
    command = any(e.type == MessageEntity.BOT_COMMAND and e.offset == 0 for e in entities)
    return Inbound(
        incoming, message.chat.id, thread_id, message.message_id, raw is not None, command
    )


def _sender(message: Message) -> str | None:
    """Who wrote: the user's id; for an anonymous group admin (who writes as the
    group, through @GroupAnonymousBot) the group's id; None for other bots."""
    user = message.from_user
    assert user is not None
    if not user.is_bot:
        return str(user.id)
    if message.sender_chat is not None and message.sender_chat.id == message.chat.id:
        return str(message.sender_chat.id)
    return None
