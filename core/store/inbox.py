"""The inbox table's queries: messages taken on, the scope lock, crash recovery.

See ``INBOX`` (core/store/models.py) for what a row means, and core/turn_gate.py
for how the chat service uses it. Every method is one short unit of work
(core/store/units.py): nothing holds a database connection while an answer streams.
A new message that finds its scope free is recorded as ``answering`` straight away,
and the scope's head is read in the same unit, so an uncontended turn takes its scope
in one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, exists, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from core.store.models import ANSWERING, DONE, INBOX, RECEIVED, SCOPE_HEADS, utcnow
from core.store.prepared import Prepared
from core.store.units import Units
from core.types import ScopeHead


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
    INBOX.c.id,
    INBOX.c.bot,
    INBOX.c.scope_key,
    INBOX.c.chat_id,
    INBOX.c.message_id,
    INBOX.c.state,
    INBOX.c.message,
    INBOX.c.replies,
    INBOX.c.worker,
    INBOX.c.heartbeat_at,
    INBOX.c.created_at,
)


@dataclass(frozen=True, slots=True)
class Reception:
    """A new message recorded: ``taken`` if it answers its scope already (the scope was
    free), and then the scope's ``head`` as it stood."""

    taken: bool
    head: ScopeHead | None = None


@dataclass(frozen=True, slots=True)
class Taken:
    """The entry answers its scope now; ``head`` is where its turn hangs."""

    head: ScopeHead | None


GET_HEAD = Prepared(
    select(
        SCOPE_HEADS.c.conversation_id, SCOPE_HEADS.c.parent_message_id, SCOPE_HEADS.c.backend
    ).where(
        SCOPE_HEADS.c.bot == bindparam("bot"), SCOPE_HEADS.c.scope_key == bindparam("scope_key")
    )
)


_ROW_KEYS = (
    "id", "bot", "scope_key", "chat_id", "message_id", "state", "outcome", "message",
    "replies", "worker", "heartbeat_at", "created_at",
)  # fmt: skip


@cache
def _insert(dialect_name: str) -> Prepared:
    """INSERT ... ON CONFLICT DO NOTHING, which both dialects apply to every unique
    index: a known platform message, and (for an ``answering`` row) a held scope."""
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # imported only when used: the PostgreSQL dialect is ~25 ms of start-up
        from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
    return Prepared(insert(INBOX).on_conflict_do_nothing(), column_keys=_ROW_KEYS)


_other = INBOX.alias("other")
# The NOT EXISTS makes a busy scope a plain "0 rows" on SQLite, where one writer at a
# time makes it exact; on PostgreSQL two takers can both pass it, and the partial
# unique index then refuses the second (IntegrityError, handled in ``take``).
_TAKE = Prepared(
    update(INBOX)
    .where(
        INBOX.c.id == bindparam("entry"),
        INBOX.c.state == RECEIVED,
        ~exists().where(
            _other.c.bot == bindparam("of_bot"),
            _other.c.scope_key == bindparam("of_scope"),
            _other.c.state == ANSWERING,
        ),
    )
    .values(state=ANSWERING, worker=bindparam("owner"), heartbeat_at=bindparam("now"))
)
_STATE = Prepared(select(INBOX.c.state).where(INBOX.c.id == bindparam("entry")))
_HOLDER = Prepared(
    select(INBOX.c.id, INBOX.c.worker, INBOX.c.heartbeat_at).where(
        INBOX.c.bot == bindparam("bot"),
        INBOX.c.scope_key == bindparam("scope_key"),
        INBOX.c.state == ANSWERING,
    )
)
_REPLIES = Prepared(
    update(INBOX)
    .where(INBOX.c.id == bindparam("entry"))
    .values(replies=bindparam("new_replies", type_=INBOX.c.replies.type))
)
_FINISH = Prepared(
    update(INBOX)
    .where(
        INBOX.c.id == bindparam("entry"),
        INBOX.c.worker == bindparam("owner"),
        INBOX.c.state != DONE,
    )
    .values(state=DONE, outcome=bindparam("new_outcome"), heartbeat_at=bindparam("now"))
)
_HEARTBEAT = (
    update(INBOX)
    .where(INBOX.c.worker == bindparam("owner"), INBOX.c.state != DONE)
    .values(heartbeat_at=bindparam("now"))
)
_UNFINISHED = (
    select(*_COLUMNS)
    .where(INBOX.c.bot == bindparam("bot"), INBOX.c.state != DONE)
    .order_by(INBOX.c.created_at)
)
_CLAIM = (
    update(INBOX)
    .where(
        INBOX.c.id == bindparam("entry"),
        INBOX.c.worker == bindparam("old_owner"),
        INBOX.c.state != DONE,
    )
    .values(state=RECEIVED, worker=bindparam("new_owner"), heartbeat_at=bindparam("now"))
)
_REQUEUE = (
    update(INBOX)
    .where(
        INBOX.c.id == bindparam("entry"),
        INBOX.c.worker == bindparam("owner"),
        INBOX.c.state == ANSWERING,
    )
    .values(state=RECEIVED)
)
_PRUNE = delete(INBOX).where(INBOX.c.state == DONE, INBOX.c.heartbeat_at < bindparam("before"))


class LeaseLost(Exception):
    """This worker's entry was taken over by another (it was thought dead)."""


def _head(conn: Connection, bot: str, scope_key: str) -> ScopeHead | None:
    row = GET_HEAD.execute(conn, {"bot": bot, "scope_key": scope_key}).first()
    return None if row is None else ScopeHead(row[0], row[1], row[2])


class SQLInbox:
    """The inbox's queries, run as units of the store's database."""

    def __init__(self, units: Units, dialect_name: str) -> None:
        self._units = units
        self._insert = _insert(dialect_name)

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
        take: bool = False,
    ) -> Reception | None:
        """Record a new message; None if this platform message is already known (a
        platform's re-delivery, or another worker got it first). With ``take``, the
        entry answers its scope at once if the scope is free."""
        now = utcnow()
        row = {
            "id": entry,
            "bot": bot,
            "scope_key": scope_key,
            "chat_id": chat_id,
            "message_id": message_id,
            "state": ANSWERING if take else RECEIVED,
            "outcome": None,
            "message": message,
            "replies": None,
            "worker": worker,
            "heartbeat_at": now,
            "created_at": now,
        }
        waiting = {**row, "state": RECEIVED}
        insert = self._insert

        def unit(conn: Connection) -> Reception | None:
            # As ``answering`` first; 0 rows if the scope is busy or the message known.
            if take and insert.execute(conn, row).rowcount == 1:
                return Reception(True, _head(conn, bot, scope_key))
            if insert.execute(conn, waiting).rowcount == 1:
                return Reception(False)
            return None

        return await self._units.write(unit)

    async def take(self, entry: str, *, bot: str, scope_key: str, worker: str) -> Taken | Holder:
        """Make ``entry`` the one answering its scope: ``Taken`` on success, else the
        entry that holds the scope now. LeaseLost if ``entry`` is no longer waiting."""
        params = {
            "entry": entry,
            "owner": worker,
            "now": utcnow(),
            "of_bot": bot,
            "of_scope": scope_key,
        }

        def unit(conn: Connection) -> Taken | Holder | None:
            if _TAKE.execute(conn, params).rowcount == 1:
                return Taken(_head(conn, bot, scope_key))
            if _STATE.execute(conn, {"entry": entry}).scalar() != RECEIVED:
                return None  # raised outside: a unit that raises costs its batch a retry
            return _holder(conn, bot, scope_key)

        try:
            result = await self._units.write(unit)
        except IntegrityError:  # PostgreSQL: another worker took the scope just now
            result = await self._units.read(lambda conn: _holder(conn, bot, scope_key))
        if result is None:
            raise LeaseLost(entry)
        return result

    async def note_replies(self, entry: str, replies: Sequence[str]) -> None:
        params = {"entry": entry, "new_replies": list(replies)}
        await self._units.write(lambda conn: _REPLIES.execute(conn, params))

    async def finish(self, entry: str, outcome: str, *, worker: str) -> None:
        await self._units.write(lambda conn: finish_in(conn, entry, outcome, worker=worker))

    async def requeue(self, entry: str, *, worker: str) -> None:
        """Give the scope back, keeping the entry (the next start of this worker's
        bot takes it over and resolves it)."""
        params = {"entry": entry, "owner": worker}
        await self._units.write(lambda conn: conn.execute(_REQUEUE, params))

    async def heartbeat(self, worker: str) -> None:
        params = {"owner": worker, "now": utcnow()}
        await self._units.write(lambda conn: conn.execute(_HEARTBEAT, params))

    async def unfinished(self, bot: str) -> list[InboxEntry]:
        rows = await self._units.read(lambda conn: conn.execute(_UNFINISHED, {"bot": bot}).all())
        return [
            InboxEntry(
                id, bot_, scope, chat, mid, state, message, tuple(replies or ()), worker, hb, at
            )
            for id, bot_, scope, chat, mid, state, message, replies, worker, hb, at in rows
        ]

    async def claim(self, entry: str, *, old: str, new: str) -> bool:
        """Take a dead worker's entry over (it waits again, owned by ``new``)."""
        params = {"entry": entry, "old_owner": old, "new_owner": new, "now": utcnow()}
        return await self._units.write(lambda conn: conn.execute(_CLAIM, params).rowcount == 1)

    async def prune(self, before: datetime) -> int:
        """Forget finished entries older than ``before``."""
        return await self._units.write(
            lambda conn: int(conn.execute(_PRUNE, {"before": before}).rowcount)
        )


def _holder(conn: Connection, bot: str, scope_key: str) -> Holder:
    row = _HOLDER.execute(conn, {"bot": bot, "scope_key": scope_key}).first()
    if row is None:  # it finished in between: try again at once
        return Holder("", "", utcnow())
    return Holder(row[0], row[1], row[2])


def finish_in(conn: Connection, entry: str, outcome: str, *, worker: str) -> None:
    """Mark ``entry`` done inside ``conn``'s transaction (a turn's commit does this).
    LeaseLost if another worker has taken it over."""
    params = {"entry": entry, "new_outcome": outcome[:64], "owner": worker, "now": utcnow()}
    if _FINISH.execute(conn, params).rowcount != 1:
        raise LeaseLost(entry)
