"""The typing indicator, shown until the first text of an answer is visible."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from adapters.delivery.scheduler import DeliveryScheduler
from adapters.delivery.target import DeliveryError, DeliveryTarget
from core.incoming import ReplyTargetGone

log = logging.getLogger(__name__)


class TypingLoop:
    """Calls ``target.typing()`` now and every ``typing_interval`` until stopped.

    Typing is not a message, so it spends no chat budget; the scheduler keeps it to
    once per interval per chat, whichever answers in that chat ask, and where the
    platform counts it as a request (Discord) it spends the global budget. Failures are
    ignored (the indicator is cosmetic), except a destination that has gone, which is
    handed to ``on_gone``.
    """

    def __init__(
        self,
        scheduler: DeliveryScheduler,
        target: DeliveryTarget,
        on_gone: Callable[[ReplyTargetGone], None],
    ) -> None:
        self._scheduler = scheduler
        self._target = target
        self._on_gone = on_gone
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def start(self) -> None:
        """Start (inside the event loop; a no-op once started or stopped)."""
        if self._task is None and not self._stopped:
            self._task = asyncio.create_task(self._run(), name="typing")

    def stop(self) -> None:
        self._stopped = True
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def aclose(self) -> None:
        self.stop()
        if self._task is not None and self._task is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        interval = self._scheduler.limits.typing_interval
        while not self._stopped:
            wait = self._scheduler.typing_wait(self._target.chat_key)
            if wait <= 0:
                slot = self._scheduler.typing_slot()
                called = False
                try:
                    await self._target.typing()
                    called = True
                except ReplyTargetGone as exc:
                    called = True  # refused, but the platform counted the request
                    self._stopped = True
                    self._on_gone(exc)
                    return
                except DeliveryError as exc:
                    called = True
                    log.debug("typing indicator refused: %s", exc)
                except Exception as exc:
                    log.debug("typing indicator failed: %s", type(exc).__name__)
                finally:
                    self._scheduler.typing_done(slot, called=called)
                wait = interval
            await asyncio.sleep(wait)
