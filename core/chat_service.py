"""The shared chat service: one message in, one answer out, the turn committed.

Every adapter calls ``ChatService.handle``; no adapter streams, stores or locks on its
own. See DESIGN.md "Data flow of one message".
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from enum import Enum
from typing import Protocol

from core.backends.base import Backend
from core.errors import ChatGPTError
from core.incoming import BotPolicy, IncomingMessage, ReplySink
from core.tokens import count_message_tokens
from core.types import ScopeHead, StoredMessage, Turn

log = logging.getLogger(__name__)

HELP_TEXT = (
    "Talk to me and I'll answer. In groups, mention me or reply to one of my messages.\n"
    "Reply to an older answer of mine to branch the conversation from there.\n"
    "Commands:\n"
    "/help - this message\n"
    "/reset - start a fresh conversation\n"
)
START_TEXT = "Hi! I'm a chat bot. Send me a message and I'll answer.\n\n" + HELP_TEXT
DENIED_TEXT = "Sorry, you are not allowed to use this bot here."
INTERNAL_ERROR_TEXT = "Something went wrong on my side and the message was not answered."


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

    def is_triggered(self, msg: IncomingMessage) -> bool:
        if msg.is_direct or msg.addresses_bot or msg.reply_to_bot:
            return True
        if msg.text.lstrip().startswith("/"):
            return True
        return self.policy.group_trigger == "always"

    async def reset(self, msg: IncomingMessage) -> None:
        await self.store.reset_head(self.policy.name, self.policy.scope_key(msg))

    async def handle(
        self, msg: IncomingMessage, sink: ReplySink, *, new_conversation: bool = False
    ) -> Outcome:
        if not self.is_triggered(msg):
            return Outcome.IGNORED
        if not self.policy.is_allowed(msg):
            await sink.error(DENIED_TEXT)
            return Outcome.DENIED
        command = _command(msg.text)
        if command is not None:
            return await self._command(command, msg, sink)
        text = msg.text.strip()
        if not text:
            return Outcome.IGNORED
        scope_key = self.policy.scope_key(msg)
        async with self._lock(scope_key):
            if new_conversation:
                await self.store.reset_head(self.policy.name, scope_key)
            return await self._answer(msg, text, scope_key, sink)

    async def _command(self, command: str, msg: IncomingMessage, sink: ReplySink) -> Outcome:
        if command == "start":
            await sink.complete(START_TEXT)
        elif command == "help":
            await sink.complete(HELP_TEXT)
        elif command == "reset":
            async with self._lock(self.policy.scope_key(msg)):
                await self.reset(msg)
            await sink.complete("Done: the next message starts a fresh conversation.")
        else:
            await sink.complete(f"Unknown command /{command}. Try /help.")
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
        self, msg: IncomingMessage, text: str, scope_key: str, sink: ReplySink
    ) -> Outcome:
        conversation_id, parent_id = await self._where(msg, scope_key)
        try:
            final = None
            async for partial in self.backend.stream_message(
                text,
                conversation_id=conversation_id,
                parent_message_id=parent_id,
                message_id=str(uuid.uuid4()),
            ):
                if partial.done:
                    final = partial
                else:
                    await sink.update(partial.text)
            if final is None:
                raise ChatGPTError("the backend's stream ended without a final answer")
        except ChatGPTError as exc:
            log.warning("bot %s: backend failed: %s", self.policy.name, exc)
            await sink.error(exc.user_message)
            return Outcome.FAILED
        except Exception:
            log.exception("bot %s: unexpected error while answering", self.policy.name)
            await sink.error(INTERNAL_ERROR_TEXT)
            return Outcome.FAILED

        try:
            platform_ids = await sink.complete(final.text)
        except Exception:
            # The platform refused the answer (deleted channel, lost permission): the
            # user never saw it, so the conversation must not move on either.
            log.exception("bot %s: could not deliver the answer", self.policy.name)
            return Outcome.FAILED
        conv = final.conversation_id or conversation_id or str(uuid.uuid4())
        user_id = final.parent_message_id or str(uuid.uuid4())
        user = StoredMessage(
            id=user_id,
            conversation_id=conv,
            parent_id=parent_id,
            role="user",
            text=text,
            token_count=count_message_tokens(text),
        )
        assistant = StoredMessage(
            id=final.message_id,
            conversation_id=conv,
            parent_id=user_id,
            role="assistant",
            text=final.text,
            token_count=count_message_tokens(final.text),
        )
        links = [(msg.chat_id, pid, assistant.id) for pid in platform_ids]
        if msg.message_id:
            links.append((msg.chat_id, msg.message_id, user.id))
        turn = Turn(self.policy.name, scope_key, self.policy.backend, user, assistant, links)
        try:
            await self.store.commit_turn(turn)
        except Exception:
            log.exception("bot %s: could not save the turn", self.policy.name)
            await sink.error("The answer above could not be saved; the next message won't see it.")
            return Outcome.FAILED
        return Outcome.ANSWERED


def _command(text: str) -> str | None:
    """``/reset@MyBot extra`` -> ``reset``; anything not starting with ``/`` -> None."""
    stripped = text.strip()
    if not stripped.startswith("/") or len(stripped) == 1:
        return None
    word = stripped[1:].split(maxsplit=1)[0]
    return word.split("@", 1)[0].lower()
