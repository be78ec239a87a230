"""Telegram's limits, as data for the shared delivery layer."""

from __future__ import annotations

from telegram.constants import FloodLimit, MessageLimit

from adapters.delivery.splitter import utf16_len
from adapters.delivery.target import PlatformLimits

TELEGRAM_LIMITS = PlatformLimits(
    # Telegram counts UTF-16 code units of the text after entity parsing.
    max_length=MessageLimit.MAX_TEXT_LENGTH,
    measure=utf16_len,
    chat_ops=FloodLimit.MESSAGES_PER_SECOND_PER_CHAT,
    chat_period=1.0,
    group_ops=FloodLimit.MESSAGES_PER_MINUTE_PER_GROUP,
    group_period=60.0,
    global_ops=FloodLimit.MESSAGES_PER_SECOND,
    global_period=1.0,
    edit_interval=1.0,
    typing_interval=4.5,  # "typing…" shows for 5 s or until the bot's next message
)
