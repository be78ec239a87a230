"""The initial schema: conversations, the message tree, scope heads, platform links.

Revision ID: 0001
Revises:
Create Date: 2025-11-24
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(255)
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", ID, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
    )
    op.create_table(
        "messages",
        sa.Column("id", ID, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("parent_id", ID, nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_messages_conversation_id_conversations",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["messages.id"], name="fk_messages_parent_id_messages"
        ),
    )
    op.create_index("ix_messages_parent_id", "messages", ["parent_id"])
    op.create_index("ix_messages_conversation_id", "messages", ["conversation_id"])
    op.create_table(
        "scope_heads",
        sa.Column("bot", ID, nullable=False),
        sa.Column("scope_key", ID, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("parent_message_id", ID, nullable=False),
        sa.Column("backend", ID, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("bot", "scope_key", name="pk_scope_heads"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_scope_heads_conversation_id_conversations",
        ),
        sa.ForeignKeyConstraint(
            ["parent_message_id"],
            ["messages.id"],
            name="fk_scope_heads_parent_message_id_messages",
        ),
    )
    op.create_table(
        "message_links",
        sa.Column("bot", ID, nullable=False),
        sa.Column("chat_id", ID, nullable=False),
        sa.Column("platform_message_id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.PrimaryKeyConstraint("bot", "chat_id", "platform_message_id", name="pk_message_links"),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name="fk_message_links_message_id_messages"
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_message_links_conversation_id_conversations",
        ),
    )


def downgrade() -> None:
    op.drop_table("message_links")
    op.drop_table("scope_heads")
    op.drop_index("ix_messages_conversation_id", table_name="messages")
    op.drop_index("ix_messages_parent_id", table_name="messages")
    op.drop_table("messages")
    op.drop_table("conversations")
