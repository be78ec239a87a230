"""What every platform adapter is to the application: something that runs until stopped.

An adapter turns platform events into ``IncomingMessage`` calls on its ``ChatService``
and hands each answer to a reply sink; the application never learns platform details.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class AdapterStartError(Exception):
    """The adapter cannot start (bad token, missing extra...): one sentence for the
    operator, which the application prefixes with the bot's name."""


class Adapter(ABC):
    @abstractmethod
    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down cleanly. Raises
        ``AdapterStartError`` if it cannot start."""

    @property
    def connected(self) -> bool:
        """Whether the bot is connected to its platform now (``/healthz``). One with no
        connection to lose (the console) always is."""
        return True


class InFlight:
    """The answers an adapter is working on, so a shutdown can let them finish within
    a grace period and cancel what is left, and no task is ever left dangling."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("bot %s: a handler failed", self._name, exc_info=task.exception())

    async def drain(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for the answers in flight, then cancel the rest."""
        if self._tasks and grace > 0:
            log.info("bot %s: letting %d answer(s) finish", self._name, len(self._tasks))
            await asyncio.wait(set(self._tasks), timeout=grace)
        leftover = set(self._tasks)
        for task in leftover:
            task.cancel()
        if leftover:
            log.warning("bot %s: cancelled %d unfinished answer(s)", self._name, len(leftover))
            with contextlib.suppress(Exception):
                await asyncio.gather(*leftover, return_exceptions=True)
