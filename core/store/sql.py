"""The app's store: conversations, message trees, scope heads and platform links in SQL.

The same queries run on SQLite (``sqlite+aiosqlite://``) and PostgreSQL
(``postgresql+asyncpg://``). The schema comes from migrations (migrations/runner.py),
never from ``metadata.create_all``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy import Integer, delete, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.orm import aliased

from core.store.engine import make_engine
from core.store.models import ConversationRow, MessageLinkRow, MessageRow, ScopeHeadRow, utcnow
from core.types import Role, ScopeHead, StoredMessage, Turn

__all__ = ["SQLStore", "ScopeHead", "Turn"]

# Bind parameters are 32-bit integers on PostgreSQL; no budget is larger than this.
_MAX_INT = 2**31 - 1

_MESSAGE_COLUMNS = (
    MessageRow.id,
    MessageRow.conversation_id,
    MessageRow.parent_id,
    MessageRow.role,
    MessageRow.text,
    MessageRow.token_count,
    MessageRow.extra,
)


def _to_message(row: Any) -> StoredMessage:
    return StoredMessage(
        id=row.id,
        conversation_id=row.conversation_id,
        parent_id=row.parent_id,
        role=cast(Role, row.role),
        text=row.text,
        token_count=row.token_count,
        extra=dict(row.extra or {}),
    )


class SQLStore:
    """Implements ``HistoryStore`` (core/store/history.py) and the chat service's store.

    ``max_history_depth`` caps how many messages one ``history`` walk returns, whatever
    the token budget (zero-token messages would otherwise walk a whole long thread).
    """

    def __init__(self, url: str, *, max_history_depth: int = 10_000, **engine_kwargs: Any) -> None:
        self.url = url
        self.max_history_depth = max_history_depth
        self.engine: AsyncEngine = make_engine(url, **engine_kwargs)

    async def aclose(self) -> None:
        await self.engine.dispose()

    # -- HistoryStore -------------------------------------------------------------

    async def history(self, message_id: str, max_tokens: int) -> list[StoredMessage]:
        """The chain ending at ``message_id``, oldest first, in one recursive query.

        Walks parent ids towards the root and stops before the running sum of
        ``token_count`` would exceed ``max_tokens`` (or after ``max_history_depth``).
        """
        budget = min(max_tokens, _MAX_INT)
        if budget < 0 or self.max_history_depth < 1:
            return []
        anchor = (
            select(
                MessageRow.id.label("id"),
                MessageRow.parent_id.label("parent_id"),
                literal(1, Integer).label("depth"),
                MessageRow.token_count.label("used"),
            )
            .where(MessageRow.id == message_id, MessageRow.token_count <= budget)
            .cte("chain", recursive=True)
        )
        parent = aliased(MessageRow, name="parent")
        used = anchor.c.used + parent.token_count
        step = (
            select(parent.id, parent.parent_id, anchor.c.depth + 1, used)
            .join(anchor, parent.id == anchor.c.parent_id)
            .where(used <= budget, anchor.c.depth < self.max_history_depth)
        )
        chain = anchor.union_all(step)
        query = (
            select(*_MESSAGE_COLUMNS)
            .join(chain, MessageRow.id == chain.c.id)
            .order_by(chain.c.depth.desc())
        )
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_to_message(row) for row in rows]

    async def add_messages(self, messages: list[StoredMessage]) -> None:
        """Record messages (an upsert per id), creating their conversations if missing."""
        if not messages:
            return
        async with self.engine.begin() as conn:
            await self._ensure_conversations(conn, (m.conversation_id for m in messages))
            await self._upsert_messages(conn, messages)

    # -- the chat service's store ------------------------------------------------------

    async def get_head(self, bot: str, scope_key: str) -> ScopeHead | None:
        query = select(
            ScopeHeadRow.conversation_id, ScopeHeadRow.parent_message_id, ScopeHeadRow.backend
        ).where(ScopeHeadRow.bot == bot, ScopeHeadRow.scope_key == scope_key)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        return ScopeHead(
            conversation_id=row.conversation_id,
            parent_message_id=row.parent_message_id,
            backend=row.backend,
        )

    async def reset_head(self, bot: str, scope_key: str) -> None:
        """Forget the scope's head: its next turn starts a new conversation."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(ScopeHeadRow).where(
                    ScopeHeadRow.bot == bot, ScopeHeadRow.scope_key == scope_key
                )
            )

    async def find_link(
        self, bot: str, chat_id: str, platform_message_id: str
    ) -> StoredMessage | None:
        """The stored message a platform message id maps to."""
        query = (
            select(*_MESSAGE_COLUMNS)
            .join(MessageLinkRow, MessageLinkRow.message_id == MessageRow.id)
            .where(
                MessageLinkRow.bot == bot,
                MessageLinkRow.chat_id == chat_id,
                MessageLinkRow.platform_message_id == platform_message_id,
            )
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _to_message(row)

    async def get_message(self, message_id: str) -> StoredMessage | None:
        query = select(*_MESSAGE_COLUMNS).where(MessageRow.id == message_id)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _to_message(row)

    async def commit_turn(self, turn: Turn) -> None:
        """Write a finished turn in ONE transaction: all of it, or (on error) nothing.

        The conversation row if missing, both messages, the scope head (now the
        assistant message) and the platform links.
        """
        user, assistant = turn.user, turn.assistant
        conversation_of = {
            user.id: user.conversation_id,
            assistant.id: assistant.conversation_id,
        }
        now = utcnow()
        async with self.engine.begin() as conn:
            insert = _insert_for(conn)
            await self._ensure_conversations(
                conn, (user.conversation_id, assistant.conversation_id)
            )
            await self._upsert_messages(conn, [user, assistant])
            head = insert(ScopeHeadRow).values(
                bot=turn.bot,
                scope_key=turn.scope_key,
                conversation_id=assistant.conversation_id,
                parent_message_id=assistant.id,
                backend=turn.backend,
                updated_at=now,
            )
            await conn.execute(
                head.on_conflict_do_update(
                    index_elements=[ScopeHeadRow.bot, ScopeHeadRow.scope_key],
                    set_={
                        "conversation_id": head.excluded.conversation_id,
                        "parent_message_id": head.excluded.parent_message_id,
                        "backend": head.excluded.backend,
                        "updated_at": head.excluded.updated_at,
                    },
                )
            )
            links = {
                (chat_id, platform_id): {
                    "bot": turn.bot,
                    "chat_id": chat_id,
                    "platform_message_id": platform_id,
                    "message_id": message_id,
                    "conversation_id": conversation_of.get(message_id, assistant.conversation_id),
                }
                for chat_id, platform_id, message_id in turn.links
            }
            if links:
                link = insert(MessageLinkRow)
                await conn.execute(
                    link.on_conflict_do_update(
                        index_elements=[
                            MessageLinkRow.bot,
                            MessageLinkRow.chat_id,
                            MessageLinkRow.platform_message_id,
                        ],
                        set_={
                            "message_id": link.excluded.message_id,
                            "conversation_id": link.excluded.conversation_id,
                        },
                    ),
                    list(links.values()),
                )

    # -- helpers ------------------------------------------------------------------

    @staticmethod
    async def _ensure_conversations(conn: AsyncConnection, ids: Iterable[str]) -> None:
        now = utcnow()
        rows = [{"id": cid, "created_at": now} for cid in dict.fromkeys(ids)]
        stmt = _insert_for(conn)(ConversationRow).on_conflict_do_nothing(
            index_elements=[ConversationRow.id]
        )
        await conn.execute(stmt, rows)

    @staticmethod
    async def _upsert_messages(conn: AsyncConnection, messages: list[StoredMessage]) -> None:
        """Insert messages in order; an existing id gets its content updated.

        Ids are deduplicated (last wins) because PostgreSQL refuses to update one row
        twice in one statement. Tree position (conversation, parent) never changes.
        """
        now = utcnow()
        rows = {
            m.id: {
                "id": m.id,
                "conversation_id": m.conversation_id,
                "parent_id": m.parent_id,
                "role": m.role,
                "text": m.text,
                "token_count": m.token_count,
                "extra": dict(m.extra) or None,
                "created_at": now,
            }
            for m in messages
        }
        stmt = _insert_for(conn)(MessageRow)
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[MessageRow.id],
                set_={
                    "text": stmt.excluded.text,
                    "token_count": stmt.excluded.token_count,
                    "extra": stmt.excluded.extra,
                },
            ),
            list(rows.values()),
        )


def _insert_for(conn: AsyncConnection) -> Any:
    """The dialect's INSERT with ``on_conflict_do_nothing`` / ``on_conflict_do_update``."""
    name = conn.dialect.name
    if name == "sqlite":
        return sqlite.insert
    if name == "postgresql":
        return postgresql.insert
    raise NotImplementedError(f"parley's SQL store supports SQLite and PostgreSQL, not {name}")
