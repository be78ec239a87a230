"""Platform- and backend-neutral value types shared across the core."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """One answer (or the part of it streamed so far).

    ``message_id`` is the answer's id: pass it back as the next ``parent_message_id``.
    ``parent_message_id`` is the id of the user message the answer replies to.
    """

    text: str
    conversation_id: str | None
    message_id: str
    parent_message_id: str | None
    model: str | None = None
    done: bool = True
    # Set on the final answer by backends that build the prompt from parley's store:
    # how many history messages, and how many tokens in all, the request carried.
    prompt_messages: int | None = None
    prompt_tokens: int | None = None

    @property
    def response(self) -> str:
        """The seed package's v3 name for ``text``."""
        return self.text


ProgressCallback = Callable[[ChatResponse], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A node of a conversation's message tree."""

    id: str
    conversation_id: str
    parent_id: str | None
    role: Role
    text: str
    token_count: int = 0
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScopeHead:
    """Where a chat scope's next turn hangs, and which backend produced it."""

    conversation_id: str
    parent_message_id: str
    backend: str


@dataclass(frozen=True, slots=True)
class Turn:
    """One finished exchange, committed by the store in one transaction."""

    bot: str
    scope_key: str
    backend: str
    user: StoredMessage
    assistant: StoredMessage
    links: list[tuple[str, str, str]]  # (chat id, platform message id, message id)
