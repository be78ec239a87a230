"""The model's Markdown as Telegram text + entities.

telegramify-markdown converts Markdown to plain text plus ``MessageEntity`` objects, so
nothing is sent with a ``parse_mode`` and nothing can fail Telegram's parser because of
what the model wrote (chatgpt-md-converter's HTML would still go through that parser).
"""

from __future__ import annotations

import logging

import telegramify_markdown
from telegram import MessageEntity

from adapters.delivery.target import Rendered

log = logging.getLogger(__name__)


def _entity(raw: telegramify_markdown.MessageEntity) -> MessageEntity:
    return MessageEntity(
        type=raw.type,
        offset=raw.offset,
        length=raw.length,
        url=raw.url,
        language=raw.language,
        custom_emoji_id=raw.custom_emoji_id,
    )


class TelegramRenderer:
    """Markdown in, ``Rendered`` (text + Telegram entities) out; never raises."""

    def final(self, markdown: str) -> Rendered:
        try:
            text, entities = telegramify_markdown.convert(markdown)
        except Exception:  # a converter bug must not cost the user the answer
            log.debug("markdown conversion failed; sending plain text", exc_info=True)
            return Rendered(markdown)
        if not text.strip():  # e.g. an answer that was only markup
            return Rendered(markdown)
        # text_mention needs a user object the converter cannot know: drop it.
        kept = tuple(_entity(e) for e in entities if e.type != "text_mention")
        return Rendered(text, kept)

    def partial(self, markdown: str) -> Rendered:
        # Unclosed markers simply stay visible until the model closes them.
        return self.final(markdown)

    def plain(self, markdown: str) -> Rendered:
        return Rendered(self.final(markdown).text)
