"""The recent conversations' chains, kept in memory so that a busy chat's next turn
reads its history without a query.

Why this is safe: a stored message never changes once committed (ids are new uuids,
and the only upsert, ``add_messages``, clears this cache), so a chain ending at a given
message id stays true for as long as this process lives, whatever other workers
commit: their turns end at new ids, which miss here and are read from the database.

An entry is a suffix of the chain, oldest first. It is ``complete`` if it starts at the
conversation's root; otherwise it was cut at some budget, and it can only answer a walk
that stops inside it (which is the same walk the SQL would do).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from core.types import StoredMessage

MAX_CHAINS = 1024  # entries; each holds references to messages shared with others


@dataclass(frozen=True, slots=True)
class _Chain:
    messages: tuple[StoredMessage, ...]
    complete: bool  # starts at the conversation's first message


class RecentChains:
    """Chains by the id of their last message, least recently used dropped first."""

    def __init__(self, max_chains: int = MAX_CHAINS) -> None:
        self._chains: OrderedDict[str, _Chain] = OrderedDict()
        self._max_chains = max_chains
        # The largest budget and depth asked for: what a kept suffix must cover.
        self._keep_tokens = 0
        self._keep_depth = 1

    def walk(self, message_id: str, budget: int, max_depth: int) -> list[StoredMessage] | None:
        """What the SQL walk would return (see ``SQLStore.history``), or None if the
        cache cannot tell."""
        self._keep_tokens = max(self._keep_tokens, budget)
        self._keep_depth = max(self._keep_depth, max_depth)
        chain = self._chains.get(message_id)
        if chain is None:
            return None
        self._chains.move_to_end(message_id)
        messages = chain.messages
        used = 0
        start = len(messages)
        while start > 0 and len(messages) - start < max_depth:
            tokens = messages[start - 1].token_count
            if used + tokens > budget:
                return list(messages[start:])
            used += tokens
            start -= 1
        if start == 0 and not chain.complete and len(messages) < max_depth:
            return None  # the walk would go on past what is kept
        return list(messages[start:])

    def remember(self, messages: list[StoredMessage]) -> None:
        """A chain just read from the database (oldest first)."""
        if messages:
            complete = messages[0].parent_id is None
            self._put(messages[-1].id, tuple(messages), complete)

    def extend(self, parent_id: str | None, new: tuple[StoredMessage, ...]) -> None:
        """A committed turn's messages, hanging under ``parent_id``."""
        if not new:
            return
        if parent_id is None:
            self._put(new[-1].id, new, complete=True)
            return
        chain = self._chains.get(parent_id)
        if chain is not None:
            self._put(new[-1].id, chain.messages + new, chain.complete)

    def clear(self) -> None:
        self._chains.clear()

    def _put(self, last_id: str, messages: tuple[StoredMessage, ...], complete: bool) -> None:
        # Keep the newest messages up to the largest budget seen, plus the one that
        # crosses it: every walk for a budget up to that then stops inside the entry.
        used = 0
        start = len(messages)
        floor = max(len(messages) - self._keep_depth, 0)
        while start > floor and used <= self._keep_tokens:
            used += messages[start - 1].token_count
            start -= 1
        if start > 0:
            messages, complete = messages[start:], False
        self._chains[last_id] = _Chain(messages, complete)
        self._chains.move_to_end(last_id)
        while len(self._chains) > self._max_chains:
            self._chains.popitem(last=False)
