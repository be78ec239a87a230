"""The app's store: conversations, message trees, scope heads and platform links in SQL.

The same queries run on SQLite (``sqlite+aiosqlite://``) and PostgreSQL
(``postgresql+asyncpg://``). The schema comes from migrations (migrations/runner.py),
never from ``metadata.create_all``.

The chat service calls ``history``, ``get_head``, ``find_link`` and ``commit_turn`` on
every turn, so their statements are built ONCE (module level, parameters as
``bindparam``) instead of per call: building a SQLAlchemy statement, and then its cache
key, cost more CPU than the SQLite query itself. A prebuilt statement memoizes its cache
key, so each call is a compiled-cache hit plus parameter binding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache, partial
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, Row, Select, bindparam, delete, literal, select
from sqlalchemy.engine import Connection

from core.store.chains import RecentChains
from core.store.engine import configure_sqlite, make_engine, parse_database_url, sqlite_file
from core.store.inbox import GET_HEAD, SQLInbox, finish_in
from core.store.models import CONVERSATIONS, MESSAGE_LINKS, MESSAGES, SCOPE_HEADS, utcnow
from core.store.prepared import Prepared
from core.store.units import EngineUnits, SQLiteUnits, Units
from core.types import ScopeHead, StoredMessage, Turn

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["SQLStore", "ScopeHead", "Turn"]

log = logging.getLogger(__name__)

# Bind parameters are 32-bit integers on PostgreSQL; no budget is larger than this.
_MAX_INT = 2**31 - 1

# -- prebuilt reads -------------------------------------------------------------------

# A message's columns as selected: id, conversation, parent, role, text, tokens, extra.
_MessageSelect = Select[str, str, str | None, str, str, int, dict[str, str] | None]
_MessageRow = Row[str, str, str | None, str, str, int, dict[str, str] | None]


def _select_messages() -> _MessageSelect:
    """SELECT of a message's columns, in ``_to_messages``' unpacking order."""
    return select(
        MESSAGES.c.id,
        MESSAGES.c.conversation_id,
        MESSAGES.c.parent_id,
        MESSAGES.c.role,
        MESSAGES.c.text,
        MESSAGES.c.token_count,
        MESSAGES.c.extra,
    )


def _history_statement() -> _MessageSelect:
    """The chain ending at :message_id, oldest first, in one recursive query.

    Walks parent ids towards the root while the running sum of ``token_count`` stays
    within :budget, for at most :max_depth messages. Each step carries the message's
    columns, so no message is looked up twice (a join back to ``messages`` doubled
    the walk's index lookups).
    """
    budget = bindparam("budget", type_=Integer)  # one parameter, used twice
    columns = (
        MESSAGES.c.id,
        MESSAGES.c.conversation_id,
        MESSAGES.c.parent_id,
        MESSAGES.c.role,
        MESSAGES.c.text,
        MESSAGES.c.token_count,
        MESSAGES.c.extra,
    )
    anchor = (
        select(
            *columns,
            literal(1, Integer).label("depth"),
            MESSAGES.c.token_count.label("used"),
        )
        .where(MESSAGES.c.id == bindparam("message_id"), MESSAGES.c.token_count <= budget)
        .cte("chain", recursive=True)
    )
    parent = MESSAGES.alias("parent")
    used = anchor.c.used + parent.c.token_count
    step = (
        select(
            *(parent.c[column.key] for column in columns),
            anchor.c.depth + 1,
            used,
        )
        .join(anchor, parent.c.id == anchor.c.parent_id)
        .where(used <= budget, anchor.c.depth < bindparam("max_depth", type_=Integer))
    )
    chain = anchor.union_all(step)
    return select(
        chain.c.id,
        chain.c.conversation_id,
        chain.c.parent_id,
        chain.c.role,
        chain.c.text,
        chain.c.token_count,
        chain.c.extra,
    ).order_by(chain.c.depth.desc())


_HISTORY = Prepared(_history_statement())

_GET_MESSAGE = Prepared(_select_messages().where(MESSAGES.c.id == bindparam("message_id")))

_FIND_LINK = Prepared(
    _select_messages()
    .join(MESSAGE_LINKS, MESSAGE_LINKS.c.message_id == MESSAGES.c.id)
    .where(
        MESSAGE_LINKS.c.bot == bindparam("bot"),
        MESSAGE_LINKS.c.chat_id == bindparam("chat_id"),
        MESSAGE_LINKS.c.platform_message_id == bindparam("platform_message_id"),
    )
)

_RESET_HEAD = delete(SCOPE_HEADS).where(
    SCOPE_HEADS.c.bot == bindparam("bot"), SCOPE_HEADS.c.scope_key == bindparam("scope_key")
)


def _to_messages(rows: Iterable[_MessageRow] | Iterable[tuple[Any, ...]]) -> list[StoredMessage]:
    # Positional unpacking: far cheaper per row than Row attribute access by name.
    # ``extra`` comes back decoded by the JSON type (or the asyncpg codec), or None.
    return [
        StoredMessage(id, conv, parent, role, text, tokens, extra or {})
        for id, conv, parent, role, text, tokens, extra in rows
    ]


# -- prebuilt writes (the upserts are dialect-specific) -----------------------------


@dataclass(frozen=True, slots=True)
class _Writes:
    conversations: Prepared  # insert if missing
    messages: Prepared  # upsert by id; only the content changes
    head: Prepared  # upsert by (bot, scope key)
    links: Prepared  # upsert by (bot, chat id, platform message id)


@cache
def _writes(dialect_name: str) -> _Writes:
    """The upserts for one dialect, built on first use and then shared."""
    # Each dialect's module is imported when it is used (the PostgreSQL one is ~25 ms).
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    elif dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    else:
        raise NotImplementedError(
            f"parley's SQL store supports SQLite and PostgreSQL, not {dialect_name}"
        )
    messages = insert(MESSAGES)
    head = insert(SCOPE_HEADS)
    links = insert(MESSAGE_LINKS)
    return _Writes(
        conversations=Prepared(
            insert(CONVERSATIONS).on_conflict_do_nothing(index_elements=[CONVERSATIONS.c.id]),
            column_keys=("id", "created_at"),
        ),
        messages=Prepared(
            messages.on_conflict_do_update(
                index_elements=[MESSAGES.c.id],
                set_={
                    "text": messages.excluded.text,
                    "token_count": messages.excluded.token_count,
                    "extra": messages.excluded.extra,
                },
            ),
            column_keys=_MESSAGE_KEYS,
        ),
        head=Prepared(
            head.on_conflict_do_update(
                index_elements=[SCOPE_HEADS.c.bot, SCOPE_HEADS.c.scope_key],
                set_={
                    "conversation_id": head.excluded.conversation_id,
                    "parent_message_id": head.excluded.parent_message_id,
                    "backend": head.excluded.backend,
                    "updated_at": head.excluded.updated_at,
                },
            ),
            column_keys=_HEAD_KEYS,
        ),
        links=Prepared(
            links.on_conflict_do_update(
                index_elements=[
                    MESSAGE_LINKS.c.bot,
                    MESSAGE_LINKS.c.chat_id,
                    MESSAGE_LINKS.c.platform_message_id,
                ],
                set_={
                    "message_id": links.excluded.message_id,
                    "conversation_id": links.excluded.conversation_id,
                },
            ),
            column_keys=_LINK_KEYS,
        ),
    )


# The columns each write's parameters carry (see the row builders below).
_MESSAGE_KEYS = (
    "id", "conversation_id", "parent_id", "role", "text", "token_count", "extra", "created_at",
)  # fmt: skip
_HEAD_KEYS = ("bot", "scope_key", "conversation_id", "parent_message_id", "backend", "updated_at")
_LINK_KEYS = ("bot", "chat_id", "platform_message_id", "message_id", "conversation_id")


def _conversation_rows(ids: Iterable[str], now: datetime) -> list[dict[str, Any]]:
    return [{"id": cid, "created_at": now} for cid in dict.fromkeys(ids)]


def _message_rows(messages: Sequence[StoredMessage], now: datetime) -> list[dict[str, Any]]:
    """Parameters for ``_Writes.messages``, deduplicated by id (last wins).

    PostgreSQL refuses to update one row twice in one statement. An empty ``extra`` is
    stored as SQL NULL, which reads back without a JSON decode.
    """
    rows = {
        m.id: {
            "id": m.id,
            "conversation_id": m.conversation_id,
            "parent_id": m.parent_id,
            "role": m.role,
            "text": m.text,
            "token_count": m.token_count,
            "extra": dict(m.extra) if m.extra else None,
            "created_at": now,
        }
        for m in messages
    }
    return list(rows.values())


class SQLStore:
    """Implements ``HistoryStore`` (core/store/history.py) and the chat service's store.

    ``max_history_depth`` caps how many messages one ``history`` walk returns, whatever
    the token budget (zero-token messages would otherwise walk a whole long thread).
    Every operation is one unit of work (core/store/units.py): on a SQLite file, one
    hand-off to the store's database thread, where concurrent units commit together.
    ``engine`` is an async engine on the same database, for migrations and checks; on
    a SQLite file no store operation needs it, so it is built when first asked for
    (a one-shot ``parley ask`` at head never builds it: ~30 ms of start-up).
    """

    def __init__(self, url: str, *, max_history_depth: int = 10_000, **engine_kwargs: Any) -> None:
        self.url = url
        self.max_history_depth = max_history_depth
        parsed = parse_database_url(url)
        path = sqlite_file(parsed)
        self._engine: AsyncEngine | None = None
        self._engine_kwargs = engine_kwargs
        if path is None:
            self._engine = make_engine(parsed, **engine_kwargs)
            dialect = self._engine.dialect.name
        else:
            dialect = parsed.get_backend_name()
        self.dialect_name = dialect
        _writes(dialect)  # refuse an unsupported database now, not at the first commit
        # On SQLite (one writer at a time) without the database thread, concurrent
        # turns would queue in SQLite's busy handler, sleeping up to 100 ms a retry while
        # holding pooled connections; in-process they queue on this lock instead.
        self._writing = asyncio.Lock() if dialect == "sqlite" else None
        self.units: Units
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.units = SQLiteUnits(parsed, partial(configure_sqlite, wal=True))
        else:
            self.units = EngineUnits(self.engine, self._write, group=dialect == "postgresql")
        self.inbox = SQLInbox(self.units, dialect)
        self._chains = RecentChains()  # busy chats' histories, without a query

    @property
    def engine(self) -> AsyncEngine:
        """An async engine on the store's database (built on first use)."""
        if self._engine is None:
            self._engine = make_engine(parse_database_url(self.url), **self._engine_kwargs)
        return self._engine

    async def aclose(self) -> None:
        try:
            await self.units.aclose()
        finally:
            if self._engine is not None:
                await self._engine.dispose()

    def _write(self) -> contextlib.AbstractAsyncContextManager[object]:
        return self._writing if self._writing is not None else contextlib.nullcontext()

    # -- HistoryStore -------------------------------------------------------------

    async def history(self, message_id: str, max_tokens: int) -> list[StoredMessage]:
        """The chain ending at ``message_id``, oldest first, in one recursive query.

        Walks parent ids towards the root and stops before the running sum of
        ``token_count`` would exceed ``max_tokens`` (or after ``max_history_depth``).
        """
        budget = min(max_tokens, _MAX_INT)
        depth = min(self.max_history_depth, _MAX_INT)
        if budget < 0 or depth < 1:
            return []
        cached = self._chains.walk(message_id, budget, depth)
        if cached is not None:
            return cached
        params = {"message_id": message_id, "budget": budget, "max_depth": depth}
        rows = await self.units.read(lambda conn: _HISTORY.execute(conn, params).all(), long=True)
        messages = _to_messages(rows)
        self._chains.remember(messages)
        return messages

    async def add_messages(self, messages: list[StoredMessage]) -> None:
        """Record messages (an upsert per id), creating their conversations if missing."""
        if not messages:
            return
        writes = _writes(self.dialect_name)
        now = utcnow()
        conversations = _conversation_rows((m.conversation_id for m in messages), now)
        rows = _message_rows(messages, now)

        def unit(conn: Connection) -> None:
            writes.conversations.execute(conn, conversations)
            writes.messages.execute(conn, rows)

        await self.units.write(unit)
        self._chains.clear()  # an upsert may have changed a message that is cached

    # -- the chat service's store ------------------------------------------------------

    async def get_head(self, bot: str, scope_key: str) -> ScopeHead | None:
        params = {"bot": bot, "scope_key": scope_key}
        row = await self.units.read(lambda conn: GET_HEAD.execute(conn, params).first())
        if row is None:
            return None
        conversation_id, parent_message_id, backend = row
        return ScopeHead(conversation_id, parent_message_id, backend)

    async def reset_head(self, bot: str, scope_key: str) -> None:
        """Forget the scope's head: its next turn starts a new conversation."""
        params = {"bot": bot, "scope_key": scope_key}
        await self.units.write(lambda conn: conn.execute(_RESET_HEAD, params))

    async def find_link(
        self, bot: str, chat_id: str, platform_message_id: str
    ) -> StoredMessage | None:
        """The stored message a platform message id maps to."""
        params = {"bot": bot, "chat_id": chat_id, "platform_message_id": platform_message_id}
        rows = await self.units.read(lambda conn: _FIND_LINK.execute(conn, params).all())
        messages = _to_messages(rows)
        return messages[0] if messages else None

    async def get_message(self, message_id: str) -> StoredMessage | None:
        params = {"message_id": message_id}
        rows = await self.units.read(lambda conn: _GET_MESSAGE.execute(conn, params).all())
        messages = _to_messages(rows)
        return messages[0] if messages else None

    async def commit_turn(self, turn: Turn, *, entry: str | None = None, worker: str = "") -> None:
        """Write a finished turn in ONE transaction: all of it, or (on error) nothing.

        The conversation row if missing, both messages, the scope head (now the
        assistant message) and the platform links (written last); and the inbox
        ``entry`` marked done, which releases the scope (``LeaseLost``, and nothing
        written, if another worker has taken the entry over).
        """
        user, assistant = turn.user, turn.assistant
        writes = _writes(self.dialect_name)
        now = utcnow()
        conversations = _conversation_rows((user.conversation_id, assistant.conversation_id), now)
        messages = _message_rows((user, assistant), now)
        head = {
            "bot": turn.bot,
            "scope_key": turn.scope_key,
            "conversation_id": assistant.conversation_id,
            "parent_message_id": assistant.id,
            "backend": turn.backend,
            "updated_at": now,
        }
        conversation_of = {
            user.id: user.conversation_id,
            assistant.id: assistant.conversation_id,
        }
        links = list(
            {
                (chat_id, platform_id): {
                    "bot": turn.bot,
                    "chat_id": chat_id,
                    "platform_message_id": platform_id,
                    "message_id": message_id,
                    "conversation_id": conversation_of.get(message_id, assistant.conversation_id),
                }
                for chat_id, platform_id, message_id in turn.links
            }.values()
        )

        def unit(conn: Connection) -> None:
            writes.conversations.execute(conn, conversations)
            writes.messages.execute(conn, messages)
            writes.head.execute(conn, head)
            if links:
                writes.links.execute(conn, links)
            if entry is not None:
                finish_in(conn, entry, "answered", worker=worker)

        started = time.perf_counter()
        await self.units.write(unit)
        self._chains.extend(user.parent_id, (user, assistant))
        log.debug("commit_turn: %d links in %.1f ms", len(links), _ms(started))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
