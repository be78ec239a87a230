"""What adapters hand to the chat service, and what it hands back to them.

Who hears about a failure. Every failure has two readers: the chat user, who gets
``text`` (plain words: "The AI backend is busy..."), and the operator, who needs
``detail`` (what failed, where, after how many tries: "backend 'openai': HTTP 503
from api.example/v1/chat/completions after 4 tries: ..."). The chat service passes
both to ``ReplySink.error``:

- a platform sink (Telegram, Discord) shows the chat user ``text`` and returns
  None; the service then logs ``detail`` at WARNING for the log of ``parley run``;
- a sink whose reader IS the operator (the terminal of ``parley ask`` / ``chat``)
  shows ``detail`` instead and returns True; the service then logs it at INFO only,
  so the terminal shows one line, not the chat-user text plus a warning.

A sink may also offer ``async def notice(self, text: str) -> None`` for one-line
remarks about the conversation itself (e.g. that a new one starts because the bot's
backend changed); the console prints it on stderr, and sinks without it are skipped.
And ``def start_typing(self) -> None``, called once the service has decided to answer
(and before it waits for the scope's lock), so a platform shows "typing…" only for
messages the bot will answer, never for group chatter it ignores.
Before that, ``async def answering(self, msg: IncomingMessage) -> IncomingMessage`` is
awaited at the same point (every check passed, the backend will be asked): the sink may
move the answer elsewhere and returns the message as it now stands, whose chat and
thread then decide the scope. Discord's ``auto_thread`` opens its thread there, so a
refused or ignored message never leaves an empty thread behind. And
``def watch_sent(self, callback: Callable[[Sequence[str]], None]) -> None``: the sink
calls ``callback`` with the platform ids of the answer's messages whenever a new one
exists, so that a restart after a crash can find and mend them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal, Protocol

Scope = Literal["chat", "user", "chat_user", "thread"]
GroupTrigger = Literal["mention", "always"]


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One chat message, stripped of everything platform-specific."""

    platform: str
    bot: str
    chat_id: str
    user_id: str
    text: str
    message_id: str | None = None
    reply_to_message_id: str | None = None
    reply_to_bot: bool = False
    thread_id: str | None = None
    is_direct: bool = False
    addresses_bot: bool = False
    guild_id: str | None = None
    user_roles: tuple[str, ...] = ()
    also_chats: tuple[str, ...] = ()
    """Other ids that count as this chat for ``allowed_chats``: a Discord thread's own
    id and the category of its channel."""

    def to_record(self) -> dict[str, Any]:
        """The message as JSON-able data (the inbox keeps it for crash recovery)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> IncomingMessage:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        for name in ("user_roles", "also_chats"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


class ReplyTargetGone(Exception):
    """Raised by a sink whose destination no longer exists (a closed pipe, a deleted
    channel): the turn is dropped quietly, since nobody is there to tell."""


class ReplySink(Protocol):
    """Where an answer goes. The adapter's sink owns the platform's limits
    (message length, edit rate, formatting, flood waits)."""

    async def update(self, text: str) -> None:
        """The answer so far (the full text, not a delta)."""

    async def complete(self, text: str) -> list[str]:
        """The final answer; returns the platform ids of the messages that carry it."""

    async def error(self, text: str, *, detail: str | None = None) -> bool | None:
        """Tell the user, in plain words (``text``), that something went wrong.

        ``detail`` is the operator's line (see the module docstring). Return True only
        if it was shown to the operator (a terminal sink); platform sinks return None.
        """


class Redelivery(Protocol):
    """How an adapter reaches a chat again after a restart (crash recovery)."""

    def reply_sink(
        self, msg: IncomingMessage, *, adopt: Sequence[str]
    ) -> contextlib.AbstractAsyncContextManager[ReplySink]:
        """A sink answering ``msg`` as if it had just arrived. ``adopt``: platform ids
        of messages already showing (part of) this answer, which the sink edits
        instead of sending anew."""
        ...


@dataclass(frozen=True, slots=True)
class BotPolicy:
    """The platform-neutral part of one bot's config."""

    name: str
    backend: str
    scope: Scope = "chat"
    group_trigger: GroupTrigger = "mention"
    allowed_users: frozenset[str] = frozenset()
    allowed_chats: frozenset[str] = frozenset()
    allowed_guilds: frozenset[str] = frozenset()
    allowed_roles: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    max_input_chars: int | None = None
    """Longer messages are answered with a refusal and never reach the backend."""
    rate_limit: tuple[int, float] | None = None
    """(messages, per_seconds) answered per user; more get "try again in N s"."""
    shared_history: frozenset[str] = frozenset()
    """Backends whose history lives in parley's store (chat_completions, local): a scope
    whose last turn was with one of them continues with another of them, e.g. after
    the bot's backend changed. Any other switch starts a new conversation."""

    def is_allowed(self, msg: IncomingMessage) -> bool:
        if msg.user_id in self.admins:
            return True
        if self.allowed_users and msg.user_id not in self.allowed_users:
            return False
        # allowed_chats restricts group chats; who may DM the bot is allowed_users' job.
        if (
            self.allowed_chats
            and not msg.is_direct
            and self.allowed_chats.isdisjoint((msg.chat_id, *msg.also_chats))
        ):
            return False
        if msg.is_direct and (self.allowed_guilds or self.allowed_roles) and not self.allowed_users:
            # A DM has no server and no roles to check: a bot limited to some servers or
            # roles must not be open to anyone who shares a server with it.
            return False
        if (
            self.allowed_guilds
            and msg.guild_id is not None
            and msg.guild_id not in self.allowed_guilds
        ):
            return False
        return not (
            self.allowed_roles
            and msg.guild_id is not None
            and not self.allowed_roles.intersection(msg.user_roles)
        )

    def scope_key(self, msg: IncomingMessage) -> str:
        base = f"{msg.platform}:"
        if self.scope == "user":
            return f"{base}user:{msg.user_id}"
        if self.scope == "chat_user":
            return f"{base}chat:{msg.chat_id}:user:{msg.user_id}"
        if self.scope == "thread" and msg.thread_id:
            return f"{base}chat:{msg.chat_id}:thread:{msg.thread_id}"
        return f"{base}chat:{msg.chat_id}"
