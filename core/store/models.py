"""The SQL schema as typed declarative models.

The tables are created and changed ONLY by migrations (migrations/versions/); these
models are what the store queries and what alembic compares against. Ids are strings:
uuid4 text, or the server's ids for the ChatGPT web backend.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ConversationRow(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MessageRow(Base):
    """A node of a conversation's message tree; ``parent_id`` points towards the root."""

    __tablename__ = "messages"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("conversations.id"))
    parent_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), ForeignKey("messages.id"))
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    token_count: Mapped[int] = mapped_column(Integer, default=0)
    # SQL NULL (not JSON null) for None: an empty extra reads back without a JSON decode.
    extra: Mapped[dict[str, str] | None] = mapped_column(JSON(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("ix_messages_parent_id", "parent_id"),
        Index("ix_messages_conversation_id", "conversation_id"),
    )


class ScopeHeadRow(Base):
    """Where a chat scope's next turn hangs."""

    __tablename__ = "scope_heads"

    bot: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    scope_key: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("conversations.id"))
    parent_message_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("messages.id"))
    backend: Mapped[str] = mapped_column(String(ID_LENGTH))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MessageLinkRow(Base):
    """A platform message (bot, chat, platform id) and the stored message it carries."""

    __tablename__ = "message_links"

    bot: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    chat_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    platform_message_id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("messages.id"))
    conversation_id: Mapped[str] = mapped_column(String(ID_LENGTH), ForeignKey("conversations.id"))


# The inbox's states: a message is ``received`` (durable, waiting for its scope),
# ``answering`` (it holds its scope: at most one per scope, across all processes), then
# ``done`` (kept for a while so that a platform's re-delivery is recognised).
RECEIVED, ANSWERING, DONE = "received", "answering", "done"


class InboxRow(Base):
    """A message the bot has taken on, from its arrival until its turn is over.

    The row is what makes a turn safe beyond one process: it is written before the
    platform learns the message arrived (so a crash cannot lose it), its ``answering``
    state is the scope's lock across workers (a partial unique index), and it records
    the platform messages the answer creates (so a restart can mend them).
    """

    __tablename__ = "inbox"

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    bot: Mapped[str] = mapped_column(String(ID_LENGTH))
    scope_key: Mapped[str] = mapped_column(String(ID_LENGTH))
    chat_id: Mapped[str] = mapped_column(String(ID_LENGTH))
    # The platform's id of the user's message; NULL (console) is never a duplicate.
    message_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    state: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(64))
    message: Mapped[dict[str, Any]] = mapped_column(JSON)
    replies: Mapped[list[str] | None] = mapped_column(JSON(none_as_null=True))
    worker: Mapped[str] = mapped_column(String(ID_LENGTH))
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
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
