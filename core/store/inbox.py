"""The inbox table's queries: messages taken on, the scope lock, crash recovery.

See ``InboxRow`` (core/store/models.py) for what a row means, and core/turn_gate.py
for how the chat service uses it. Every method is one short transaction: nothing holds
a database connection while an answer streams.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.store.models import ANSWERING, DONE, RECEIVED, InboxRow, utcnow


@dataclass(frozen=True, slots=True)
class InboxEntry:
    id: str
    bot: str
    scope_key: str
    chat_id: str
    message_id: str | None
    state: str
    message: dict[str, Any]
    replies: tuple[str, ...]
    worker: str
    heartbeat_at: datetime
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Holder:
    """The entry that holds a scope: who answers it, and their last heartbeat."""

    id: str
    worker: str
    heartbeat_at: datetime


_COLUMNS = (
    InboxRow.id,
    InboxRow.bot,
    InboxRow.scope_key,
    InboxRow.chat_id,
    InboxRow.message_id,
    InboxRow.state,
    InboxRow.message,
    InboxRow.replies,
    InboxRow.worker,
    InboxRow.heartbeat_at,
    InboxRow.created_at,
)

_INSERT = insert(InboxRow)
_TAKE = (
    update(InboxRow)
    .where(InboxRow.id == bindparam("entry"), InboxRow.state == RECEIVED)
    .values(state=ANSWERING, worker=bindparam("owner"), heartbeat_at=bindparam("now"))
)
_HOLDER = select(InboxRow.id, InboxRow.worker, InboxRow.heartbeat_at).where(
    InboxRow.bot == bindparam("bot"),
    InboxRow.scope_key == bindparam("scope_key"),
    InboxRow.state == ANSWERING,
)
_REPLIES = (
    update(InboxRow)
    .where(InboxRow.id == bindparam("entry"))
    .values(replies=bindparam("new_replies", type_=InboxRow.replies.type))
)
_FINISH = (
    update(InboxRow)
    .where(
        InboxRow.id == bindparam("entry"),
        InboxRow.worker == bindparam("owner"),
        InboxRow.state != DONE,
    )
    .values(state=DONE, outcome=bindparam("new_outcome"), heartbeat_at=bindparam("now"))
)
_HEARTBEAT = (
    update(InboxRow)
    .where(InboxRow.worker == bindparam("owner"), InboxRow.state != DONE)
    .values(heartbeat_at=bindparam("now"))
)
_UNFINISHED = (
    select(*_COLUMNS)
    .where(InboxRow.bot == bindparam("bot"), InboxRow.state != DONE)
    .order_by(InboxRow.created_at)
)
_CLAIM = (
    update(InboxRow)
    .where(
        InboxRow.id == bindparam("entry"),
        InboxRow.worker == bindparam("old_owner"),
        InboxRow.state != DONE,
    )
    .values(state=RECEIVED, worker=bindparam("new_owner"), heartbeat_at=bindparam("now"))
)
_REQUEUE = (
    update(InboxRow)
    .where(
        InboxRow.id == bindparam("entry"),
        InboxRow.worker == bindparam("owner"),
        InboxRow.state == ANSWERING,
    )
    .values(state=RECEIVED)
)
_PRUNE = delete(InboxRow).where(InboxRow.state == DONE, InboxRow.heartbeat_at < bindparam("before"))


class LeaseLost(Exception):
    """This worker's entry was taken over by another (it was thought dead)."""


class SQLInbox:
    """The inbox on the store's engine; ``write`` is the store's SQLite write lock."""

    def __init__(
        self,
        engine: AsyncEngine,
        write: Callable[[], contextlib.AbstractAsyncContextManager[object]],
    ) -> None:
        self._engine = engine
        self._write = write

    async def receive(
        self,
        *,
        entry: str,
        bot: str,
        scope_key: str,
        chat_id: str,
        message_id: str | None,
        message: dict[str, Any],
        worker: str,
    ) -> bool:
        """Record a new message; False if this platform message is already known (a
        platform's re-delivery, or another worker got it first)."""
        now = utcnow()
        row = {
            "id": entry,
            "bot": bot,
            "scope_key": scope_key,
            "chat_id": chat_id,
            "message_id": message_id,
            "state": RECEIVED,
            "outcome": None,
            "message": message,
            "replies": None,
            "worker": worker,
            "heartbeat_at": now,
            "created_at": now,
        }
        try:
            async with self._write(), self._engine.begin() as conn:
                await conn.execute(_INSERT, row)
        except IntegrityError:
            return False
        return True

    async def take(self, entry: str, *, bot: str, scope_key: str, worker: str) -> Holder | None:
        """Make ``entry`` the one answering its scope. None on success; else the entry
        that holds the scope now. LeaseLost if ``entry`` is no longer waiting."""
        params = {"entry": entry, "owner": worker, "now": utcnow()}
        try:
            async with self._write(), self._engine.begin() as conn:
                taken = (await conn.execute(_TAKE, params)).rowcount
        except IntegrityError:
            taken = 0
        else:
            if taken != 1:
                raise LeaseLost(entry)
            return None
        async with self._engine.connect() as conn:
            row = (await conn.execute(_HOLDER, {"bot": bot, "scope_key": scope_key})).first()
        if row is None:  # it finished in between: try again at once
            return Holder("", "", utcnow())
        return Holder(row[0], row[1], row[2])

    async def note_replies(self, entry: str, replies: Sequence[str]) -> None:
        async with self._write(), self._engine.begin() as conn:
            await conn.execute(_REPLIES, {"entry": entry, "new_replies": list(replies)})

    async def finish(self, entry: str, outcome: str, *, worker: str) -> None:
        async with self._write(), self._engine.begin() as conn:
            await finish_in(conn, entry, outcome, worker=worker)

    async def requeue(self, entry: str, *, worker: str) -> None:
        """Give the scope back, keeping the entry (the next start of this worker's
        bot takes it over and resolves it)."""
        async with self._write(), self._engine.begin() as conn:
            await conn.execute(_REQUEUE, {"entry": entry, "owner": worker})

    async def heartbeat(self, worker: str) -> None:
        async with self._write(), self._engine.begin() as conn:
            await conn.execute(_HEARTBEAT, {"owner": worker, "now": utcnow()})

    async def unfinished(self, bot: str) -> list[InboxEntry]:
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_UNFINISHED, {"bot": bot})).all()
        return [
            InboxEntry(
                id, bot_, scope, chat, mid, state, message, tuple(replies or ()), worker, hb, at
            )
            for id, bot_, scope, chat, mid, state, message, replies, worker, hb, at in rows
        ]

    async def claim(self, entry: str, *, old: str, new: str) -> bool:
        """Take a dead worker's entry over (it waits again, owned by ``new``)."""
        params = {"entry": entry, "old_owner": old, "new_owner": new, "now": utcnow()}
        async with self._write(), self._engine.begin() as conn:
            return bool((await conn.execute(_CLAIM, params)).rowcount == 1)

    async def prune(self, before: datetime) -> int:
        """Forget finished entries older than ``before``."""
        async with self._write(), self._engine.begin() as conn:
            return int((await conn.execute(_PRUNE, {"before": before})).rowcount)


async def finish_in(conn: AsyncConnection, entry: str, outcome: str, *, worker: str) -> None:
    """Mark ``entry`` done inside ``conn``'s transaction (a turn's commit does this).
    LeaseLost if another worker has taken it over."""
    params = {"entry": entry, "new_outcome": outcome[:64], "owner": worker, "now": utcnow()}
    if (await conn.execute(_FINISH, params)).rowcount != 1:
        raise LeaseLost(entry)
