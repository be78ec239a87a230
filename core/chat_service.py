"""The shared chat service: one message in, one answer out, the turn committed.

Every adapter calls ``ChatService.handle``; no adapter streams, stores or locks on its
own. See DESIGN.md "Data flow of one message".
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from core.backends.base import Backend, collect
from core.errors import ChatGPTError
from core.incoming import BotPolicy, IncomingMessage, ReplySink, ReplyTargetGone
from core.types import ChatResponse, ScopeHead, StoredMessage, Turn

log = logging.getLogger(__name__)

HELP_TEXT = (
    "Talk to me and I'll answer. In groups, mention me or reply to one of my messages.\n"
    "Reply to an older answer of mine to branch the conversation from there.\n"
    "Commands:\n"
    "/help - this message\n"
    "/reset - start a fresh conversation\n"
)
START_TEXT = "Hi! I'm a chat bot. Send me a message and I'll answer.\n\n" + HELP_TEXT
RESET_TEXT = "Done: the next message starts a fresh conversation."
DENIED_TEXT = "Sorry, you are not allowed to use this bot here."
INTERNAL_ERROR_TEXT = "Something went wrong on my side and the message was not answered."
NOT_SAVED_TEXT = "The answer above could not be saved; the next message won't see it."
COMMANDS = frozenset({"start", "help", "reset"})
LONG_TEXT = 20_000  # characters; longer texts are tokenized off the event loop


class ConversationStore(Protocol):
    """What the chat service needs from the store (core/store/sql.py implements it)."""

    async def get_head(self, bot: str, scope_key: str) -> ScopeHead | None: ...

    async def reset_head(self, bot: str, scope_key: str) -> None: ...

    async def find_link(
        self, bot: str, chat_id: str, platform_message_id: str
    ) -> StoredMessage | None: ...

    async def commit_turn(self, turn: Turn) -> None: ...


class Outcome(Enum):
    IGNORED = "ignored"
    DENIED = "denied"
    COMMAND = "command"
    ANSWERED = "answered"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Command:
    """``/reset@SomeBot extra`` -> name ``reset``, target ``SomeBot``."""

    name: str
    target: str | None

    @classmethod
    def parse(cls, text: str) -> Command | None:
        stripped = text.strip()
        if not stripped.startswith("/") or len(stripped) == 1:
            return None
        word = stripped[1:].split(maxsplit=1)[0]
        name, _, target = word.partition("@")
        return cls(name.lower(), target or None)


class ChatService:
    """Decides, resolves the scope, streams the answer and commits the turn."""

    def __init__(self, *, policy: BotPolicy, backend: Backend, store: ConversationStore) -> None:
        self.policy = policy
        self.backend = backend
        self.store = store
        # Locks die with their last waiter, so idle scopes cost no memory.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, scope_key: str) -> asyncio.Lock:
        lock = self._locks.get(scope_key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[scope_key] = lock
        return lock

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
    ) -> Outcome:
        """Answer ``msg`` through ``sink``.

        ``new_conversation`` starts a fresh conversation, but the scope's head only moves
        if the answer succeeds. ``commands=False`` treats a leading ``/`` as text.
        """
        command = Command.parse(msg.text) if commands else None
        if not self._is_for_us(msg, command):
            return Outcome.IGNORED
        if not self.policy.is_allowed(msg):
            await _tell(sink, DENIED_TEXT)
            return Outcome.DENIED
        try:
            if command is not None:
                return await self._command(command, msg, sink)
            text = msg.text.strip()
            if not text:
                return Outcome.IGNORED
            scope_key = self.policy.scope_key(msg)
            async with self._lock(scope_key):
                where = (None, None) if new_conversation else await self._where(msg, scope_key)
                return await self._answer(msg, text, scope_key, where, sink)
        except asyncio.CancelledError:
            raise
        except ReplyTargetGone:
            log.info("bot %s: the reply's destination went away", self.policy.name)
            return Outcome.FAILED
        except Exception:
            log.exception("bot %s: unexpected error while handling a message", self.policy.name)
            await _tell(sink, INTERNAL_ERROR_TEXT)
            return Outcome.FAILED

    async def _command(self, command: Command, msg: IncomingMessage, sink: ReplySink) -> Outcome:
        if command.name == "start":
            await sink.complete(START_TEXT)
        elif command.name == "help":
            await sink.complete(HELP_TEXT)
        elif command.name == "reset":
            async with self._lock(self.policy.scope_key(msg)):
                await self.reset(msg)
            await sink.complete(RESET_TEXT)
        else:
            await sink.complete(f"Unknown command /{command.name}. Try /help.")
        return Outcome.COMMAND

    async def _where(self, msg: IncomingMessage, scope_key: str) -> tuple[str | None, str | None]:
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
        head = await self.store.get_head(self.policy.name, scope_key)
        if head is not None and head.backend == self.policy.backend:
            return head.conversation_id, head.parent_message_id
        return None, None

    async def _answer(
        self,
        msg: IncomingMessage,
        text: str,
        scope_key: str,
        where: tuple[str | None, str | None],
        sink: ReplySink,
    ) -> Outcome:
        conversation_id, parent_id = where
        user_message_id = str(uuid.uuid4())
        try:
            final = await self._stream(text, conversation_id, parent_id, user_message_id, sink)
        except ChatGPTError as exc:
            log.warning("bot %s: backend failed: %s", self.policy.name, exc)
            await _tell(sink, exc.user_message)
            return Outcome.FAILED

        try:
            platform_ids = await sink.complete(final.text)
        except ReplyTargetGone:
            raise
        except Exception:
            # The platform refused the answer (deleted channel, lost permission): the
            # user never saw it, so the conversation must not move on either.
            log.exception("bot %s: could not deliver the answer", self.policy.name)
            return Outcome.FAILED

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
        links = [(msg.chat_id, pid, assistant.id) for pid in platform_ids]
        if msg.message_id:
            links.append((msg.chat_id, msg.message_id, user.id))
        turn = Turn(self.policy.name, scope_key, self.policy.backend, user, assistant, links)
        try:
            await self.store.commit_turn(turn)
        except Exception:
            log.exception("bot %s: could not save the turn", self.policy.name)
            await _tell(sink, NOT_SAVED_TEXT)
            return Outcome.FAILED
        return Outcome.ANSWERED

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
    ) -> ChatResponse:
        stream = self.backend.stream_message(
            text,
            conversation_id=conversation_id,
            parent_message_id=parent_id,
            message_id=message_id,
        )

        async def show(partial: ChatResponse) -> None:
            if not partial.done:
                await sink.update(partial.text)

        # collect() closes the stream on any exit, aborting the request if a sink fails.
        return await collect(stream, show)


async def _tell(sink: ReplySink, text: str) -> None:
    """Report a problem to the user; a sink that fails at that too is only logged."""
    try:
        await sink.error(text)
    except Exception:
        log.exception("could not tell the user: %s", text)
