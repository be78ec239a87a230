"""The SQL schema as SQLAlchemy Core tables.

The tables are created and changed ONLY by migrations (migrations/versions/); these
tables are what the store queries and what alembic compares against. Ids are strings:
uuid4 text, or the server's ids for the ChatGPT web backend.

Core ``Table`` objects, not ORM models: the store runs plain statements and never
loads objects, and ``sqlalchemy.orm`` (with its declarative mappers) cost every process
~50 ms to import and set up.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.types import TypeDecorator

ID_LENGTH = 255

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored
    as UTC and come back with ``tzinfo=UTC``.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _id(name: str, *args: Any, **kwargs: Any) -> Column[Any]:
    """A string id column, NOT NULL unless ``nullable=True``."""
    kwargs.setdefault("nullable", False)
    return Column(name, String(ID_LENGTH), *args, **kwargs)


def _timestamp(name: str) -> Column[Any]:
    return Column(name, UTCDateTime, nullable=False, default=utcnow)


CONVERSATIONS = Table(
    "conversations",
    metadata,
    _id("id", primary_key=True),
    _timestamp("created_at"),
)

#: A node of a conversation's message tree; ``parent_id`` points towards the root.
MESSAGES = Table(
    "messages",
    metadata,
    _id("id", primary_key=True),
    _id("conversation_id", ForeignKey("conversations.id")),
    _id("parent_id", ForeignKey("messages.id"), nullable=True),
    Column("role", String(16), nullable=False),
    Column("text", Text, nullable=False),
    Column("token_count", Integer, nullable=False, default=0),
    # SQL NULL (not JSON null) for None: an empty extra reads back without a JSON decode.
    Column("extra", JSON(none_as_null=True), nullable=True),
    _timestamp("created_at"),
    Index("ix_messages_parent_id", "parent_id"),
    Index("ix_messages_conversation_id", "conversation_id"),
)

#: Where a chat scope's next turn hangs.
SCOPE_HEADS = Table(
    "scope_heads",
    metadata,
    _id("bot", primary_key=True),
    _id("scope_key", primary_key=True),
    _id("conversation_id", ForeignKey("conversations.id")),
    _id("parent_message_id", ForeignKey("messages.id")),
    _id("backend"),
    _timestamp("updated_at"),
)

#: A platform message (bot, chat, platform id) and the stored message it carries.
MESSAGE_LINKS = Table(
    "message_links",
    metadata,
    _id("bot", primary_key=True),
    _id("chat_id", primary_key=True),
    _id("platform_message_id", primary_key=True),
    _id("message_id", ForeignKey("messages.id")),
    _id("conversation_id", ForeignKey("conversations.id")),
)


# The inbox's states: a message is ``received`` (durable, waiting for its scope),
# ``answering`` (it holds its scope: at most one per scope, across all processes), then
# ``done`` (kept for a while so that a platform's re-delivery is recognised).
RECEIVED, ANSWERING, DONE = "received", "answering", "done"

#: A message the bot has taken on, from its arrival until its turn is over.
#:
#: The row is what makes a turn safe beyond one process: it is written before the
#: platform learns the message arrived (so a crash cannot lose it), its ``answering``
#: state is the scope's lock across workers (a partial unique index), and it records
#: the platform messages the answer creates (so a restart can mend them).
INBOX = Table(
    "inbox",
    metadata,
    _id("id", primary_key=True),
    _id("bot"),
    _id("scope_key"),
    _id("chat_id"),
    # The platform's id of the user's message; NULL (console) is never a duplicate.
    _id("message_id", nullable=True),
    Column("state", String(16), nullable=False),
    Column("outcome", String(64), nullable=True),
    Column("message", JSON, nullable=False),
    Column("replies", JSON(none_as_null=True), nullable=True),
    _id("worker"),
    _timestamp("heartbeat_at"),
    _timestamp("created_at"),
    Index("uq_inbox_message", "bot", "chat_id", "message_id", unique=True),
    Index(
        "uq_inbox_answering",
        "bot",
        "scope_key",
        unique=True,
        sqlite_where=text("state = 'answering'"),
        postgresql_where=text("state = 'answering'"),
    ),
    Index("ix_inbox_state", "bot", "state"),
)
