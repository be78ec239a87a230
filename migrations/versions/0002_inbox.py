"""The inbox: messages taken on, the scope lock across workers, crash recovery.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(255)
TIMESTAMP = sa.DateTime(timezone=True)
ANSWERING = sa.text("state = 'answering'")


def upgrade() -> None:
    op.create_table(
        "inbox",
        sa.Column("id", ID, nullable=False),
        sa.Column("bot", ID, nullable=False),
        sa.Column("scope_key", ID, nullable=False),
        sa.Column("chat_id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(64), nullable=True),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("replies", sa.JSON(), nullable=True),
        sa.Column("worker", ID, nullable=False),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_inbox"),
    )
    op.create_index("uq_inbox_message", "inbox", ["bot", "chat_id", "message_id"], unique=True)
    op.create_index(
        "uq_inbox_answering",
        "inbox",
        ["bot", "scope_key"],
        unique=True,
        sqlite_where=ANSWERING,
        postgresql_where=ANSWERING,
    )
    op.create_index("ix_inbox_state", "inbox", ["bot", "state"])


def downgrade() -> None:
    op.drop_index("ix_inbox_state", table_name="inbox")
    op.drop_index("uq_inbox_answering", table_name="inbox")
    op.drop_index("uq_inbox_message", table_name="inbox")
    op.drop_table("inbox")
