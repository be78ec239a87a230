"""The chat service's side of the inbox: one turn per scope across processes.

Why a row and not a PostgreSQL advisory lock or a compare-and-set of the head:

- an advisory lock is held by a connection, so every answer streaming for 30 s would
  tie up one pooled connection (and SQLite has no such lock at all);
- a compare-and-set of the head in ``commit_turn`` notices the conflict only after the
  answer has been shown, and the shown answer can then neither be committed in its
  thread nor taken back;
- the inbox row is needed anyway for crash recovery (the message must be durable before
  the platform learns it arrived, and the answer's platform messages must be known to
  mend them after a kill -9). Its ``answering`` state, under a partial unique index, is
  the scope's lock on SQLite and PostgreSQL alike; taking it is one short UPDATE, and
  nothing holds a connection while the answer streams.

A waiting turn polls (from 20 ms up to 0.5 s apart; turns of one scope in one process
first wait in line in the chat service, in the order they arrived, so only one of them
polls). A message that finds its scope free takes it as it is recorded (one INSERT).
A holder that died is noticed by ``core.workers.is_gone`` and its entry handed to the
recovery.

The database may go away for a moment (a restart, a failover). A waiting turn rides
that out for up to ``OUTAGE_PATIENCE`` (its message is safe in the inbox, and waiting
is all it does); an entry that could not be marked done is marked later, in the
background, so that it neither holds its scope nor looks, to this worker's next start,
like a turn a crash interrupted (which the recovery would answer a second time, or
mark "cut off" over a complete answer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.incoming import IncomingMessage
from core.store.errors import describe_database_error
from core.store.inbox import InboxEntry, LeaseLost, SQLInbox, Taken
from core.store.models import utcnow
from core.types import ScopeHead
from core.workers import HEARTBEAT_SECONDS, is_gone, this_worker

log = logging.getLogger(__name__)

FIRST_POLL = 0.02
LAST_POLL = 0.5
OUTAGE_PATIENCE = 20.0  # seconds a waiting turn waits for the database to come back
SETTLE_FIRST = 0.5  # then doubling up to HEARTBEAT_SECONDS: retrying owed finishes

# The inbox entries this process is handling, over all its bots' gates: an entry of
# this worker that is not here was left by a turn that could not give it back.
_handling: set[str] = set()


@dataclass(eq=False, slots=True)
class Ticket:
    """One message's entry in the inbox, while this process handles it."""

    id: str
    scope_key: str
    replies: tuple[str, ...] = ()
    # Once the ticket answers its scope: where the turn hangs, read as it was taken.
    taken: bool = False
    head: ScopeHead | None = None
    finished: bool = False
    _noted: tuple[str, ...] = ()
    _writer: asyncio.Task[None] | None = field(default=None, repr=False)


class TurnGate:
    """Receives, serialises and finishes one bot's turns through the inbox."""

    def __init__(self, inbox: SQLInbox, bot: str, *, on_dead_holder: Callable[[], None]) -> None:
        self.inbox = inbox
        self.bot = bot
        self.worker = str(this_worker())
        self._on_dead_holder = on_dead_holder
        self._active: set[Ticket] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        # Entries whose finish failed (the database was away): id -> outcome.
        self._owed: dict[str, str] = {}
        self._settler: asyncio.Task[None] | None = None

    async def receive(
        self, msg: IncomingMessage, scope_key: str, *, take: bool = False
    ) -> Ticket | None:
        """Record ``msg``; None if it is already known (a re-delivery). With ``take``
        (no other turn of the scope waits in this process), it answers its scope at
        once if no other process holds it."""
        ticket = Ticket(str(uuid.uuid4()), scope_key)
        reception = await self.inbox.receive(
            entry=ticket.id,
            bot=self.bot,
            scope_key=scope_key,
            chat_id=msg.chat_id,
            message_id=msg.message_id,
            message=msg.to_record(),
            worker=self.worker,
            take=take,
        )
        if reception is None:
            return None
        ticket.taken, ticket.head = reception.taken, reception.head
        self._activate(ticket)
        return ticket

    def resume(self, entry: InboxEntry) -> Ticket:
        """A claimed entry of a dead worker, handled here from now on."""
        ticket = Ticket(entry.id, entry.scope_key, entry.replies, _noted=entry.replies)
        self._activate(ticket)
        return ticket

    async def take(self, ticket: Ticket) -> None:
        """Wait until ``ticket`` answers its scope (LeaseLost if taken over)."""
        wait = FIRST_POLL
        told = False
        loop = asyncio.get_running_loop()
        outage: float | None = None  # when the database stopped answering
        while not ticket.taken:
            try:
                holder = await self.inbox.take(
                    ticket.id, bot=self.bot, scope_key=ticket.scope_key, worker=self.worker
                )
                if isinstance(holder, Taken):
                    ticket.taken, ticket.head = True, holder.head
                    return
                if self._left_by_us(holder.worker, holder.id):
                    # Ours, but no turn of this process has it: a requeue after a
                    # cancellation failed, or a finish owed since the database was
                    # away. Nobody will finish it but us.
                    outcome = self._owed.get(holder.id, "interrupted")
                    # LeaseLost here is about that entry, not ours: finished meanwhile.
                    with contextlib.suppress(LeaseLost):
                        await self.inbox.finish(holder.id, outcome, worker=self.worker)
                    self._owed.pop(holder.id, None)
                    continue
            except LeaseLost:
                raise
            except Exception as exc:
                if outage is None:
                    outage = loop.time()
                    log.warning(
                        "bot %s: the database is away (%s); a message in scope %s waits for it",
                        self.bot,
                        describe_database_error(exc),
                        ticket.scope_key,
                    )
                if loop.time() - outage > OUTAGE_PATIENCE:
                    raise
                await asyncio.sleep(wait)
                wait = min(wait * 1.5, LAST_POLL)
                continue
            outage = None
            if holder.id and is_gone(holder.worker, holder.heartbeat_at, utcnow()):
                if not told:
                    log.warning(
                        "bot %s: the worker answering scope %s is gone (%s); recovering its turn",
                        self.bot,
                        ticket.scope_key,
                        holder.worker,
                    )
                    told = True
                self._on_dead_holder()
            await asyncio.sleep(wait)
            wait = min(wait * 1.5, LAST_POLL)

    def _left_by_us(self, worker: str, entry: str) -> bool:
        return worker == self.worker and bool(entry) and entry not in _handling

    async def cancelled(self, ticket: Ticket) -> None:
        """The turn was cancelled (a shutdown past its grace): free the scope for this
        process's next turns, and leave the entry for the next start to resolve."""
        self._forget(ticket)
        ticket.finished = True
        try:
            await asyncio.shield(self.inbox.requeue(ticket.id, worker=self.worker))
        except (Exception, asyncio.CancelledError) as exc:
            log.debug("bot %s: could not requeue a cancelled turn (%s)", self.bot, exc)

    def track(self, ticket: Ticket, replies: Sequence[str]) -> None:
        """The answer's platform messages so far; written in the background, the
        newest list winning, at most one write at a time per ticket."""
        ticket.replies = tuple(replies)
        if ticket._writer is None or ticket._writer.done():
            ticket._writer = asyncio.get_running_loop().create_task(self._note(ticket))

    async def _note(self, ticket: Ticket) -> None:
        while ticket.replies != ticket._noted and not ticket.finished:
            replies = ticket.replies
            try:
                await self.inbox.note_replies(ticket.id, replies)
            except Exception as exc:  # recovery then knows less; the turn goes on
                log.warning(
                    "bot %s: could not record reply ids (%s)",
                    self.bot,
                    describe_database_error(exc),
                )
                return
            ticket._noted = replies

    async def flush(self, ticket: Ticket) -> None:
        """Wait for the reply ids written so far."""
        if ticket._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(ticket._writer)

    def committed(self, ticket: Ticket) -> None:
        """The turn's commit marked the entry done."""
        ticket.finished = True
        self._forget(ticket)

    async def finish(self, ticket: Ticket, outcome: str) -> None:
        """Mark the entry done (if the commit did not). If the database is away, it is
        marked in the background once it is back (or by the next turn of its scope)."""
        if ticket.finished:
            return
        ticket.finished = True
        self._forget(ticket)
        try:
            await self.inbox.finish(ticket.id, outcome, worker=self.worker)
        except LeaseLost:
            pass
        except Exception as exc:
            log.warning(
                "bot %s: could not close the inbox entry (%s); retrying in the background",
                self.bot,
                describe_database_error(exc),
            )
            self._owed[ticket.id] = outcome
            if self._settler is None or self._settler.done():
                self._settler = asyncio.get_running_loop().create_task(self._settle())

    async def _settle(self) -> None:
        """Finish the owed entries, retrying while the database is away."""
        wait = SETTLE_FIRST
        while self._owed:
            await asyncio.sleep(wait)
            for entry, outcome in list(self._owed.items()):
                try:
                    await self.inbox.finish(entry, outcome, worker=self.worker)
                except LeaseLost:  # taken over, or finished by the scope's next turn
                    pass
                except Exception:
                    wait = min(wait * 2, HEARTBEAT_SECONDS)
                    break
                self._owed.pop(entry, None)

    # -- heartbeat ----------------------------------------------------------------------

    def _forget(self, ticket: Ticket) -> None:
        self._active.discard(ticket)
        _handling.discard(ticket.id)

    def _activate(self, ticket: Ticket) -> None:
        self._active.add(ticket)
        _handling.add(ticket.id)
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        while self._active:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            if not self._active:
                return
            try:
                await self.inbox.heartbeat(self.worker)
            except Exception as exc:  # the database is away: turns fail on their own
                log.debug("bot %s: heartbeat failed (%s)", self.bot, exc)
