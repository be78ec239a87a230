"""The fault suite's bot: the running Telegram bot of tests/adapters/telegram (real App,
TelegramAdapter, python-telegram-bot, fake Bot API, fake LLM), with short backend
limits, and what a test reads back from the store afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from bots.app import App
from core.store.models import INBOX, MESSAGES, SCOPE_HEADS

# The bot and its fakes, shared with the Telegram adapter's tests.
from tests.adapters.telegram.conftest import llm, start_bot, tg  # noqa: F401
from tests.fakes.telegram_api import FakeTelegram
from tests.pg import PostgresCluster, find_pg_bin, require_postgres

# Short limits so a fault costs a second, not minutes: silence allowed from the server,
# the cap for one answer, and two retries (the backoff without Retry-After is
# 0.5 s * 2**n plus jitter, see ChatCompletionsBackend.retry_base_delay).
FAST_BACKEND: dict[str, Any] = {"timeout": 1.0, "max_answer_seconds": 8.0, "max_retries": 2}


@dataclass(frozen=True)
class Stored:
    """What the store holds after a run."""

    messages: dict[str, tuple[str | None, str, str]]  # id -> (parent id, role, text)
    heads: dict[str, str]  # scope key -> parent message id
    inbox: list[tuple[str | None, str, str | None]]  # (platform message id, state, outcome)

    def texts(self, role: str) -> list[str]:
        return sorted(text for _, r, text in self.messages.values() if r == role)

    def chain(self, scope_key: str) -> list[str]:
        """The texts from the scope's head back to the root, oldest first; every
        assistant message's parent is a user message whose parent is an assistant
        message (or nothing): a chain without gaps."""
        texts: list[str] = []
        node: str | None = self.heads[scope_key]
        expect = "assistant"
        while node is not None:
            parent, role, text = self.messages[node]
            assert role == expect, f"{node} is a {role} message, expected {expect}"
            texts.append(text)
            expect = "user" if role == "assistant" else "assistant"
            node = parent
        assert expect == "assistant", "the chain starts with a user message"
        return texts[::-1]


async def stored(app: App) -> Stored:
    async with app.store.engine.connect() as conn:
        messages = (
            await conn.execute(
                select(MESSAGES.c.id, MESSAGES.c.parent_id, MESSAGES.c.role, MESSAGES.c.text)
            )
        ).all()
        heads = (
            await conn.execute(select(SCOPE_HEADS.c.scope_key, SCOPE_HEADS.c.parent_message_id))
        ).all()
        inbox = (
            await conn.execute(
                select(INBOX.c.message_id, INBOX.c.state, INBOX.c.outcome).order_by(
                    INBOX.c.created_at
                )
            )
        ).all()
    return Stored(
        messages={m[0]: (m[1], m[2], m[3]) for m in messages},
        heads={h[0]: h[1] for h in heads},
        inbox=[(i[0], i[1], i[2]) for i in inbox],
    )


def answers_by_question(fake: FakeTelegram, chat: int) -> dict[int, list[str]]:
    """The bot's messages in a group by the question they answer: an answer or an
    error quotes its question; a note after a complete answer ("The answer above could
    not be saved") stands alone and belongs to the answer above it."""
    found: dict[int, list[str]] = {}
    question: int | None = None
    for message in fake.bot_messages(chat):
        if message.reply_to is not None:
            question = message.reply_to
        assert question is not None, f"a bot message before any answer: {message.text!r}"
        found.setdefault(question, []).append(message.text or "")
    return found


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A PostgreSQL server of this test's own, free to be stopped and restarted (the
    session's cluster serves other tests of the run)."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        require_postgres()
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
