"""The memory curve's stored conversations: one turn each, the head of its chat's scope
and the platform links, bulk-inserted against the migrated schema (SQLAlchemy Core,
thousands of rows a statement), so 100,000 are stored in seconds, not minutes."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert

from bench.answers import make_answer, short_answer
from core import tokens
from core.store.engine import make_engine
from core.store.models import CONVERSATIONS, MESSAGE_LINKS, MESSAGES, SCOPE_HEADS
from migrations.runner import upgrade_engine

FIRST_CHANNEL = 900_000_000_000_000_000  # Discord channel i is FIRST_CHANNEL + i
BACKEND = "fake"  # the backend's name in the config of the process that reads them
BATCH = 5_000  # conversations per transaction

Counted = tuple[str, int]  # a text and its token count


def _rows(
    i: int, questions: Sequence[Counted], answer: Counted, now: datetime
) -> dict[str, dict[str, Any]]:
    """Conversation ``i``: one turn, the head of its chat's scope, the platform links.
    Even ones belong to the Telegram bot (private chat i // 2 + 1), odd ones to
    Discord (channel FIRST_CHANNEL + i // 2)."""
    telegram = i % 2 == 0
    bot, chat = ("tg", str(i // 2 + 1)) if telegram else ("dc", str(FIRST_CHANNEL + i // 2))
    platform = "telegram" if telegram else "discord"
    conversation, user, assistant = (str(uuid.uuid4()) for _ in range(3))
    (question, question_tokens), (text, answer_tokens) = questions[i % len(questions)], answer
    message = {"conversation_id": conversation, "extra": None, "created_at": now}
    return {
        "conversation": {"id": conversation, "created_at": now},
        "user": {
            **message,
            "id": user,
            "parent_id": None,
            "role": "user",
            "text": question,
            "token_count": question_tokens,
        },
        "assistant": {
            **message,
            "id": assistant,
            "parent_id": user,
            "role": "assistant",
            "text": text,
            "token_count": answer_tokens,
        },
        "head": {
            "bot": bot,
            "scope_key": f"{platform}:chat:{chat}",
            "conversation_id": conversation,
            "parent_message_id": assistant,
            "backend": BACKEND,
            "updated_at": now,
        },
        "asked": {
            "bot": bot,
            "chat_id": chat,
            "platform_message_id": f"{i}1",
            "message_id": user,
            "conversation_id": conversation,
        },
        "answered": {
            "bot": bot,
            "chat_id": chat,
            "platform_message_id": f"{i}2",
            "message_id": assistant,
            "conversation_id": conversation,
        },
    }


async def seed(url: str, conversations: int) -> None:
    """A migrated store holding ``conversations`` one-turn conversations, in bulk
    INSERTs (a few thousand rows a statement), each message with its real token count."""
    engine = make_engine(url)
    try:
        await upgrade_engine(engine)
        questions = [_counted(short_answer(n)) for n in range(50)]
        answer = _counted(make_answer(0, 600))
        now = datetime.now(UTC)
        for start in range(0, conversations, BATCH):
            ids = range(start, min(start + BATCH, conversations))
            batch = [_rows(i, questions, answer, now) for i in ids]
            async with engine.begin() as conn:
                await conn.execute(insert(CONVERSATIONS), [r["conversation"] for r in batch])
                await conn.execute(
                    insert(MESSAGES), [r[k] for r in batch for k in ("user", "assistant")]
                )
                await conn.execute(insert(SCOPE_HEADS), [r["head"] for r in batch])
                await conn.execute(
                    insert(MESSAGE_LINKS), [r[k] for r in batch for k in ("asked", "answered")]
                )
    finally:
        await engine.dispose()


def _counted(text: str) -> Counted:
    return text, tokens.count_message_tokens(text)
