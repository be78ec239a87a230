"""python-telegram-bot's update queue, made to confirm an update only once it is safe.

PTB confirms an update to Telegram as soon as it is in its queue: polling asks for the
next offset, a webhook answers 200. A crash before the chat service has recorded the
message would lose it (Telegram never sends it again). PTB awaits ``put`` on this queue
in both places, so ``put`` here returns only when the adapter says the update is safe:
recorded in the inbox, or known to need nothing that a crash could lose. Subclassing
the queue is the one hook PTB offers between "received" and "confirmed".
"""

from __future__ import annotations

import asyncio
import logging

from telegram import Update

log = logging.getLogger(__name__)

CONFIRM_WAIT = 30.0
"""Longest a confirmation waits for the adapter (a stuck database must not stop
updates from arriving for ever)."""


class ConfirmingQueue(asyncio.Queue[object]):
    def __init__(self) -> None:
        super().__init__()
        self._safe: dict[int, asyncio.Event] = {}

    def safe_event(self, update: object) -> asyncio.Event:
        """The event that ``put`` of ``update`` waits for: set it once it is safe."""
        return self._safe.setdefault(id(update), asyncio.Event())

    async def put(self, item: object) -> None:
        if not isinstance(item, Update):  # PTB's own signals go straight through
            await super().put(item)
            return
        event = self.safe_event(item)
        try:
            await super().put(item)
            await asyncio.wait_for(event.wait(), CONFIRM_WAIT)
        except TimeoutError:
            log.warning(
                "update %s was not recorded within %g s; confirming it to Telegram anyway",
                item.update_id,
                CONFIRM_WAIT,
            )
        finally:
            self._safe.pop(id(item), None)
