"""The shared chat service: one message in, one answer out, the turn committed.

Every adapter calls ``ChatService.handle``; no adapter streams, stores or locks on its
own. See DESIGN.md "Data flow of one message".
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass, field
from datetime import timedelta
from enum import Enum
from typing import Protocol

from core.backends.base import Backend, collect
from core.errors import ChatGPTError
from core.incoming import BotPolicy, IncomingMessage, Redelivery, ReplySink, ReplyTargetGone
from core.metrics import NO_METRICS, BotMetrics
from core.store.errors import describe_database_error, is_database_error
from core.store.inbox import InboxEntry, LeaseLost, SQLInbox
from core.store.models import utcnow
from core.turn_gate import Ticket, TurnGate
from core.types import ChatResponse, StoredMessage, Turn
from core.user_limits import UserRateLimit
from core.workers import is_gone

log = logging.getLogger(__name__)

# The chat platforms' help; an adapter passes its own to ``handle`` (the console's
# speaks of the terminal, see adapters/console.py).
HELP_TEXT = (
    "Talk to me and I'll answer. In groups, mention me or reply to one of my messages.\n"
    "Reply to an older answer of mine to branch the conversation from there.\n"
    "Commands:\n"
    "/help - this message\n"
    "/reset - start a fresh conversation\n"
)
GREETING = "Hi! I'm a chat bot. Send me a message and I'll answer.\n\n"
START_TEXT = GREETING + HELP_TEXT
RESET_TEXT = "Done: the next message starts a fresh conversation."
DENIED_TEXT = "Sorry, you are not allowed to use this bot here."
INTERNAL_ERROR_TEXT = "Something went wrong on my side and the message was not answered."
NO_DATABASE_TEXT = "I can't reach my database right now, so I can't answer; please try again later."
NOT_SAVED_TEXT = "The answer above could not be saved; the next message won't see it."
RATE_LIMITED_TEXT = "You're sending messages faster than I can answer; try again in {wait:g} s."
TOO_LONG_TEXT = "That message is too long for me: {length} characters, the limit is {limit}."
INTERRUPTED_TEXT = (
    "(This answer was cut off: I was restarted before it was finished. Send your message "
    "again to get a full answer.)"
)
RECOVERY_PERIOD = 30.0  # seconds between two looks for turns of dead workers
KEEP_DONE = timedelta(days=1)  # how long a finished message is remembered (re-deliveries)
COMMANDS = frozenset({"start", "help", "reset"})
LONG_TEXT = 20_000  # characters; longer texts are tokenized off the event loop


class ConversationStore(Protocol):
    """What the chat service needs from the store (core/store/sql.py implements it)."""

    async def reset_head(self, bot: str, scope_key: str) -> None: ...

    async def find_link(
        self, bot: str, chat_id: str, platform_message_id: str
    ) -> StoredMessage | None: ...

    async def commit_turn(
        self, turn: Turn, *, entry: str | None = None, worker: str = ""
    ) -> None: ...

    @property
    def inbox(self) -> SQLInbox: ...


class Outcome(Enum):
    IGNORED = "ignored"
    DENIED = "denied"
    COMMAND = "command"
    ANSWERED = "answered"
    FAILED = "failed"
    TOO_LONG = "too long"  # refused by max_input_chars, before the backend
    RATE_LIMITED = "rate limited"  # refused by rate_limit, before the backend
    DUPLICATE = "duplicate"  # already taken on (a platform's re-delivery)


@dataclass(frozen=True, slots=True)
class Command:
    """``/reset@SomeBot extra`` -> name ``reset``, target ``SomeBot``."""

    name: str
    target: str | None

    @classmethod
    def parse(cls, text: str) -> Command | None:
        stripped = text.strip()
        if not stripped.startswith("/") or not stripped[1:2].isalnum():
            return None  # "/" alone or "/ hi" is no command
        word = stripped[1:].split(maxsplit=1)[0]
        name, _, target = word.partition("@")
        return cls(name.lower(), target or None)


class ChatService:
    """Decides, resolves the scope, streams the answer and commits the turn."""

    def __init__(
        self,
        *,
        policy: BotPolicy,
        backend: Backend,
        store: ConversationStore,
        metrics: BotMetrics = NO_METRICS,
    ) -> None:
        self.policy = policy
        self.backend = backend
        self.store = store
        self.metrics = metrics  # core/metrics.py; the adapters' schedulers report to it too
        # Locks die with their last waiter, so idle scopes cost no memory.
        self._lines: weakref.WeakValueDictionary[str, _ScopeLine] = weakref.WeakValueDictionary()
        self._rate = UserRateLimit(*policy.rate_limit) if policy.rate_limit else None
        self._gate = TurnGate(store.inbox, policy.name, on_dead_holder=self._recover_soon)
        self._recovering = asyncio.Lock()
        self._redelivery: Redelivery | None = None
        self._background: set[asyncio.Task[object]] = set()

    def _line(self, scope_key: str) -> _ScopeLine:
        line = self._lines.get(scope_key)
        if line is None:
            line = _ScopeLine()
            self._lines[scope_key] = line
        return line

    def _is_for_us(self, msg: IncomingMessage, command: Command | None) -> bool:
        if msg.is_direct or msg.addresses_bot or msg.reply_to_bot:
            return True
        if command is not None:
            # In a group, ``/help@OtherBot`` and commands we don't know belong to
            # another bot; the adapter sets addresses_bot for ``@OurBot``.
            return command.target is None and command.name in COMMANDS
        return self.policy.group_trigger == "always"

    async def reset(self, msg: IncomingMessage) -> None:
        await self.store.reset_head(self.policy.name, self.policy.scope_key(msg))

    async def handle(
        self,
        msg: IncomingMessage,
        sink: ReplySink,
        *,
        new_conversation: bool = False,
        commands: bool = True,
        help_text: str | None = None,
        received: asyncio.Event | None = None,
        _resumed: Ticket | None = None,
    ) -> Outcome:
        """Answer ``msg`` through ``sink``.

        ``new_conversation`` starts a fresh conversation, but the scope's head only moves
        if the answer succeeds. ``commands=False`` treats a leading ``/`` as text.
        ``help_text`` is the adapter's answer to ``/help`` (default: ``HELP_TEXT``, the
        chat platforms' text; ``/start`` greets and then shows it too).
        ``received`` is set as soon as the message is safe: recorded in the inbox, or
        known to need no answer that a crash could lose. An adapter confirms the
        platform's delivery only then.
        """
        try:
            return await self._handle(
                msg, sink, new_conversation, commands, help_text, received, _resumed
            )
        finally:
            if received is not None:
                received.set()

    async def _handle(
        self,
        msg: IncomingMessage,
        sink: ReplySink,
        new_conversation: bool,
        commands: bool,
        help_text: str | None,
        received: asyncio.Event | None,
        resumed: Ticket | None,
    ) -> Outcome:
        command = Command.parse(msg.text) if commands and resumed is None else None
        if not self._is_for_us(msg, command):
            return Outcome.IGNORED
        if not self.policy.is_allowed(msg):
            # A polite word in private; in a group, silence (no noise for the others).
            if msg.is_direct:
                await _tell(sink, DENIED_TEXT)
            return Outcome.DENIED
        try:
            if command is not None:
                return await self._command(command, msg, sink, help_text or HELP_TEXT)
            text = msg.text.strip()
            if not text:
                return Outcome.IGNORED
            limit = self.policy.max_input_chars
            if limit is not None and len(text) > limit:
                refusal = TOO_LONG_TEXT.format(length=len(text), limit=limit)
                log.info("bot %s: refused a message of %d characters", self.policy.name, len(text))
                await _tell(sink, refusal, refusal)
                return Outcome.TOO_LONG
            fresh = resumed is None  # a recovered turn was counted when it first came
            if self._rate is not None and fresh and msg.user_id not in self.policy.admins:
                wait = self._rate.try_acquire(f"{msg.platform}:{msg.user_id}")
                if wait:
                    log.info("bot %s: user %s is rate-limited", self.policy.name, msg.user_id)
                    refusal = RATE_LIMITED_TEXT.format(wait=wait)
                    await _tell(sink, refusal, refusal)
                    return Outcome.RATE_LIMITED
            answering = getattr(sink, "answering", None)
            if answering is not None:
                msg = await answering(msg)  # e.g. moved into a thread opened for it
            scope_key = self.policy.scope_key(msg)
            line = self._line(scope_key)
            # Its place in the scope's line is taken now, on arrival, so that the turns
            # of one scope are answered in the order they came, however long each one's
            # inbox write takes (on PostgreSQL they run side by side). First in line:
            # the receive takes the scope too (one round trip, no polling).
            place = line.join()
            alone = resumed is None and place.done()
            try:
                try:
                    ticket = resumed or await self._gate.receive(msg, scope_key, take=alone)
                except Exception as exc:
                    # Refused before the backend is asked: an answer could not be kept.
                    detail = f"cannot take the message on: {describe_database_error(exc)}"
                    await self._report(sink, NO_DATABASE_TEXT, detail, exc, known=True)
                    return Outcome.FAILED
                if ticket is None:
                    log.info(
                        "bot %s: message %s in chat %s was taken on already; "
                        "not answering it twice",
                        self.policy.name,
                        msg.message_id,
                        msg.chat_id,
                    )
                    return Outcome.DUPLICATE
                if received is not None:
                    received.set()
                start_typing = getattr(sink, "start_typing", None)
                if start_typing is not None:
                    start_typing()
                return await self._take_and_answer(msg, text, place, ticket, sink, new_conversation)
            finally:
                line.leave(place)
        except asyncio.CancelledError:
            raise
        except ReplyTargetGone:
            log.info("bot %s: the reply's destination went away", self.policy.name)
            return Outcome.FAILED
        except Exception as exc:
            # Backend and platform errors are handled where they happen; what is left
            # is most often the database going away mid-turn (waiting for the scope,
            # reading the head or the history): the user hears that, not "my side".
            if is_database_error(exc):
                detail = f"the database failed during the turn: {describe_database_error(exc)}"
                await self._report(sink, NO_DATABASE_TEXT, detail, exc, known=True)
            else:
                detail = f"unexpected error while handling a message: {_one_line(exc)}"
                await self._report(sink, INTERNAL_ERROR_TEXT, detail, exc)
            return Outcome.FAILED

    async def _take_and_answer(
        self,
        msg: IncomingMessage,
        text: str,
        place: asyncio.Future[None],
        ticket: Ticket,
        sink: ReplySink,
        new_conversation: bool,
    ) -> Outcome:
        """Answer once the turns before it in this process are done (``place``) and
        ``ticket`` has its scope in the inbox."""
        outcome = Outcome.FAILED
        try:
            await place
            await self._gate.take(ticket)
            if new_conversation:
                where: tuple[str | None, str | None] = (None, None)
            else:
                where = await self._where(msg, ticket, sink)
            outcome = await self._answer(msg, text, ticket.scope_key, where, sink, ticket)
        except LeaseLost:
            log.warning(
                "bot %s: another worker took this turn over (it thought this one dead)",
                self.policy.name,
            )
            return Outcome.FAILED
        except asyncio.CancelledError:
            # Stopping mid-answer: the entry stays, and the next start mends the turn.
            await self._gate.cancelled(ticket)
            raise
        except BaseException:
            await self._gate.finish(ticket, "failed")
            raise
        await self._gate.finish(ticket, outcome.value)
        return outcome

    async def _command(
        self, command: Command, msg: IncomingMessage, sink: ReplySink, help_text: str
    ) -> Outcome:
        if command.name == "start":
            await sink.complete(GREETING + help_text)
        elif command.name == "help":
            await sink.complete(help_text)
        elif command.name == "reset":
            line = self._line(self.policy.scope_key(msg))
            place = line.join()
            try:
                await place  # after the turns that came before it
                await self.reset(msg)
            finally:
                line.leave(place)
            await sink.complete(RESET_TEXT)
        else:
            await sink.complete(f"Unknown command /{command.name}. Try /help.")
        return Outcome.COMMAND

    async def _where(
        self, msg: IncomingMessage, ticket: Ticket, sink: ReplySink
    ) -> tuple[str | None, str | None]:
        """The conversation id and parent message id the new turn hangs under."""
        if msg.reply_to_message_id:
            linked = await self.store.find_link(
                self.policy.name, msg.chat_id, msg.reply_to_message_id
            )
            if linked is not None:
                # Replying to a bot answer branches from it; replying to a user's
                # message re-asks from the point before that message.
                parent = linked.id if linked.role == "assistant" else linked.parent_id
                if parent is not None:
                    return linked.conversation_id, parent
        head = ticket.head  # read as the scope was taken
        if head is None:
            return None, None
        ours, theirs = self.policy.backend, head.backend
        if theirs == ours:
            return head.conversation_id, head.parent_message_id
        if {ours, theirs} <= self.policy.shared_history:
            # Both read the history from parley's store: the thread carries over.
            log.info(
                "bot %s: continuing a conversation of backend %r with backend %r",
                self.policy.name,
                theirs,
                ours,
            )
            return head.conversation_id, head.parent_message_id
        # One of them keeps its history on its own server (chatgpt_web): the other
        # cannot continue it.
        remark = (
            f"The last conversation here was with backend {theirs!r}, which {ours!r} "
            f"cannot continue; starting a new conversation with {ours!r}."
        )
        notice = getattr(sink, "notice", None)
        # A sink with notice() is read by the operator: the remark once, not twice.
        log.log(logging.DEBUG if notice else logging.INFO, "bot %s: %s", self.policy.name, remark)
        if notice is not None:
            await notice(remark)
        return None, None

    async def _answer(
        self,
        msg: IncomingMessage,
        text: str,
        scope_key: str,
        where: tuple[str | None, str | None],
        sink: ReplySink,
        ticket: Ticket,
    ) -> Outcome:
        conversation_id, parent_id = where
        user_message_id = str(uuid.uuid4())
        turn_log = _TurnLog(self.policy, self.metrics)
        watch_sent = getattr(sink, "watch_sent", None)
        if watch_sent is not None:
            watch_sent(lambda ids: self._gate.track(ticket, ids))
        try:
            try:
                final = await self._stream(
                    text, conversation_id, parent_id, user_message_id, sink, turn_log
                )
            except ChatGPTError as exc:
                shown = await _tell(
                    sink, exc.user_message, f"backend {self.policy.backend!r}: {_one_line(exc)}"
                )
                turn_log.failed(_one_line(exc), shown=shown)
                return Outcome.FAILED
            except _SinkFailed as failure:
                return await self._undelivered(failure.error, sink, turn_log)
            turn_log.final = final
            try:
                platform_ids = await sink.complete(final.text)
            except ReplyTargetGone:
                raise
            except Exception as exc:
                # The platform refused the answer (deleted channel, lost permission): the
                # user never saw it, so the conversation must not move on either.
                return await self._undelivered(exc, sink, turn_log)
            outcome = await self._commit(
                msg, text, scope_key, where, user_message_id, final, platform_ids, sink, ticket
            )
            if outcome is Outcome.ANSWERED:
                turn_log.answered()
            else:
                turn_log.outcome = "not saved"
            return outcome
        except ReplyTargetGone:
            turn_log.outcome = "the reply's destination went away"
            raise
        except asyncio.CancelledError:
            turn_log.outcome = "cancelled"
            raise
        finally:
            turn_log.emit()

    async def _report(
        self, sink: ReplySink, text: str, detail: str, exc: BaseException, *, known: bool = False
    ) -> None:
        """Tell the user ``text``; log ``detail`` with the traceback, at ERROR unless the
        sink's reader is the operator (who has just read ``detail``). A ``known`` failure
        (the database went away: ``detail`` says all there is) is one WARNING line, its
        traceback only at DEBUG: an outage must not fill the log with one per message."""
        shown = await _tell(sink, text, detail)
        if known:
            log.log(
                logging.INFO if shown else logging.WARNING, "bot %s: %s", self.policy.name, detail
            )
            log.debug("bot %s: %s", self.policy.name, detail, exc_info=exc)
            return
        level = logging.INFO if shown else logging.ERROR
        log.log(level, "bot %s: %s", self.policy.name, detail, exc_info=exc)

    async def _undelivered(
        self, exc: BaseException, sink: ReplySink, turn_log: _TurnLog
    ) -> Outcome:
        detail = f"could not deliver the answer: {_one_line(exc)}"
        await self._report(sink, INTERNAL_ERROR_TEXT, detail, exc)
        turn_log.outcome = "not delivered"
        return Outcome.FAILED

    async def _commit(
        self,
        msg: IncomingMessage,
        text: str,
        scope_key: str,
        where: tuple[str | None, str | None],
        user_message_id: str,
        final: ChatResponse,
        platform_ids: list[str],
        sink: ReplySink,
        ticket: Ticket,
    ) -> Outcome:
        conversation_id, parent_id = where
        conv = final.conversation_id or conversation_id or str(uuid.uuid4())
        user = StoredMessage(
            id=final.parent_message_id or user_message_id,
            conversation_id=conv,
            parent_id=parent_id,
            role="user",
            text=text,
            token_count=await self._count(text),
        )
        assistant = StoredMessage(
            id=final.message_id,
            conversation_id=conv,
            parent_id=user.id,
            role="assistant",
            text=final.text,
            token_count=await self._count(final.text),
        )
        self.metrics.tokens(final.prompt_tokens or user.token_count, assistant.token_count)
        links = [(msg.chat_id, pid, assistant.id) for pid in platform_ids]
        if msg.message_id:
            links.append((msg.chat_id, msg.message_id, user.id))
        turn = Turn(self.policy.name, scope_key, self.policy.backend, user, assistant, links)
        try:
            await self.store.commit_turn(turn, entry=ticket.id, worker=self._gate.worker)
        except LeaseLost:
            raise
        except Exception as exc:
            detail = (
                "the answer was shown but could not be saved, so the next message won't "
                f"see it: {describe_database_error(exc)}"
            )
            await self._report(sink, NOT_SAVED_TEXT, detail, exc, known=is_database_error(exc))
            return Outcome.FAILED
        self._gate.committed(ticket)
        return Outcome.ANSWERED

    # -- crash recovery ------------------------------------------------------------------

    async def keep_recovering(self, redelivery: Redelivery, every: float = RECOVERY_PERIOD) -> None:
        """Mend dead workers' turns now and every ``every`` seconds, and forget finished
        messages after ``KEEP_DONE``; runs until cancelled (an adapter's background)."""
        pruned_at = 0.0
        while True:
            try:
                await self.recover(redelivery)
                if time.monotonic() - pruned_at > 3600:
                    pruned_at = time.monotonic()
                    await self.store.inbox.prune(utcnow() - KEEP_DONE)
            except Exception as exc:  # the database is away: try again next time
                log.warning("bot %s: crash recovery failed (%s)", self.policy.name, _one_line(exc))
            await asyncio.sleep(every)

    async def recover(self, redelivery: Redelivery | None = None) -> int:
        """Take over the turns of workers that died, and resolve each: an answer that
        had become visible is edited to say it was cut off; a message not yet answered
        visibly is answered now. Without ``redelivery`` (the console) they are only
        closed. Returns how many were taken over."""
        if redelivery is not None:
            self._redelivery = redelivery
        redelivery = self._redelivery
        async with self._recovering:
            inbox = self.store.inbox
            now = utcnow()
            tickets: list[tuple[InboxEntry, Ticket]] = []
            for entry in await inbox.unfinished(self.policy.name):
                if entry.worker == self._gate.worker:
                    continue
                if not is_gone(entry.worker, entry.heartbeat_at, now):
                    continue
                if await inbox.claim(entry.id, old=entry.worker, new=self._gate.worker):
                    tickets.append((entry, self._gate.resume(entry)))
        if tickets:
            log.info(
                "bot %s: resolving %d turn(s) left by a stopped worker",
                self.policy.name,
                len(tickets),
            )
        await asyncio.gather(*(self._resolve(e, t, redelivery) for e, t in tickets))
        return len(tickets)

    async def _resolve(
        self, entry: InboxEntry, ticket: Ticket, redelivery: Redelivery | None
    ) -> None:
        try:
            msg = IncomingMessage.from_record(entry.message)
            if redelivery is None:
                await self._gate.finish(ticket, "interrupted")
            elif ticket.replies:
                async with redelivery.reply_sink(msg, adopt=ticket.replies[-1:]) as sink:
                    await sink.complete(INTERRUPTED_TEXT)
                await self._gate.finish(ticket, "interrupted")
            else:
                async with redelivery.reply_sink(msg, adopt=()) as sink:
                    await self.handle(msg, sink, _resumed=ticket)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "bot %s: could not resolve an interrupted turn in chat %s (%s)",
                self.policy.name,
                entry.chat_id,
                _one_line(exc),
            )
            await self._gate.finish(ticket, "lost")

    async def _recover_quietly(self) -> None:
        try:
            await self.recover()
        except Exception as exc:  # a waiting turn notices again, and keep_recovering runs
            log.warning("bot %s: crash recovery failed (%s)", self.policy.name, _one_line(exc))

    def _recover_soon(self) -> None:
        if self._recovering.locked():
            return
        task = asyncio.get_running_loop().create_task(self._recover_quietly())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _count(self, text: str) -> int:
        # A huge paste would block the loop for a noticeable time while tokenizing.
        if len(text) > LONG_TEXT:
            return await asyncio.to_thread(self.backend.count_tokens, text)
        return self.backend.count_tokens(text)

    async def _stream(
        self,
        text: str,
        conversation_id: str | None,
        parent_id: str | None,
        message_id: str,
        sink: ReplySink,
        turn_log: _TurnLog,
    ) -> ChatResponse:
        stream = self.backend.stream_message(
            text,
            conversation_id=conversation_id,
            parent_message_id=parent_id,
            message_id=message_id,
        )

        async def show(partial: ChatResponse) -> None:
            if partial.text and turn_log.first_text is None:
                turn_log.first_text = time.monotonic()
            if not partial.done:
                try:
                    await sink.update(partial.text)
                except (ReplyTargetGone, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    raise _SinkFailed(exc) from exc

        # collect() closes the stream on any exit, aborting the request if a sink fails.
        with self.metrics.streaming():
            return await collect(stream, show)


class _ScopeLine:
    """A scope's turns in this process, one at a time in the order they arrived.

    A place is taken with ``join`` (synchronously, on arrival) and given up with
    ``leave``, whatever happened; the place's future is done when its turn has come.
    Lines die with their last turn (the chat service keeps them weakly), so idle
    scopes cost no memory.
    """

    __slots__ = ("__weakref__", "_places")

    def __init__(self) -> None:
        self._places: deque[asyncio.Future[None]] = deque()

    def join(self) -> asyncio.Future[None]:
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._places:
            place.set_result(None)  # nobody before it
        self._places.append(place)
        return place

    def leave(self, place: asyncio.Future[None]) -> None:
        first = bool(self._places) and self._places[0] is place
        self._places.remove(place)
        if first and self._places and not self._places[0].done():
            self._places[0].set_result(None)


class _SinkFailed(Exception):
    """The sink raised while showing a partial answer (not the backend's fault)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _one_line(exc: BaseException) -> str:
    """An exception as one line, with no traceback: a backend error's whole text (the
    backends word it for the operator), else the first line (a database error goes on
    with the SQL statement and its parameters, i.e. the user's text)."""
    if isinstance(exc, ChatGPTError):
        text = " ".join(str(exc).split())
    else:
        text = (str(exc).strip().splitlines() or [""])[0][:300]
        text = f"{type(exc).__name__}: {text}" if text else ""
    return text or type(exc).__name__


@dataclass
class _TurnLog:
    """The one INFO line per turn: bot, backend, what was sent, how long it took."""

    policy: BotPolicy
    metrics: BotMetrics = NO_METRICS
    started: float = field(default_factory=time.monotonic)
    first_text: float | None = None
    final: ChatResponse | None = None
    outcome: str = "failed"
    level: int = logging.INFO

    def answered(self) -> None:
        self.outcome = "answered"

    def failed(self, detail: str, *, shown: bool) -> None:
        self.outcome = f"failed: {detail}"
        # The operator must hear of a failure: in the log, unless the sink showed it.
        self.level = logging.INFO if shown else logging.WARNING

    def emit(self) -> None:
        now = time.monotonic()
        final = self.final
        if final is not None and final.prompt_messages is not None:
            tokens = f", {final.prompt_tokens} tokens" if final.prompt_tokens is not None else ""
            sent = f"sent {final.prompt_messages} history messages{tokens}"
        else:
            sent = "history not reported by the backend"
        first = f"{self.first_text - self.started:.2f} s" if self.first_text else "none"
        ttft = self.first_text - self.started if self.first_text else None
        self.metrics.turn(self.outcome, now - self.started, ttft)
        log.log(
            self.level,
            "bot %s, backend %s: %s; %s; first text after %s, %.2f s in all",
            self.policy.name,
            self.policy.backend,
            self.outcome,
            sent,
            first,
            now - self.started,
        )


async def _tell(sink: ReplySink, text: str, detail: str | None = None) -> bool:
    """Report a problem to the user (``text``) and the operator (``detail``, see
    core/incoming.py); True if the sink showed ``detail`` to the operator. A sink that
    fails at that too is only logged."""
    try:
        return bool(await sink.error(text, detail=detail))
    except ReplyTargetGone:
        return False
    except Exception:
        log.exception("could not tell the user: %s", text)
        return False
