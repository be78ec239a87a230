"""Where backends without server-side history keep the message tree.

``HistoryStore`` is the small extension point; ``InMemoryHistoryStore`` is the
reference implementation used when a backend runs standalone. The SQL store
(core/store/sql.py) implements the same protocol with one recursive query.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.types import StoredMessage


@runtime_checkable
class HistoryStore(Protocol):
    async def history(self, message_id: str, max_tokens: int) -> list[StoredMessage]:
        """The chain ending at ``message_id``, oldest first.

        Walks parent ids from ``message_id`` towards the root and stops before the
        running sum of ``token_count`` would exceed ``max_tokens``.
        """
        ...

    async def add_messages(self, messages: list[StoredMessage]) -> None:
        """Record finished messages (idempotent per id)."""
        ...


class InMemoryHistoryStore:
    """A dict of messages; lost on exit. For standalone use and tests."""

    def __init__(self) -> None:
        self._messages: dict[str, StoredMessage] = {}

    async def history(self, message_id: str, max_tokens: int) -> list[StoredMessage]:
        chain: list[StoredMessage] = []
        used = 0
        current = self._messages.get(message_id)
        while current is not None:
            if used + current.token_count > max_tokens:
                break
            used += current.token_count
            chain.append(current)
            current = self._messages.get(current.parent_id) if current.parent_id else None
        chain.reverse()
        return chain

    async def add_messages(self, messages: list[StoredMessage]) -> None:
        for message in messages:
            self._messages[message.id] = message

    def __len__(self) -> int:
        return len(self._messages)
