"""One scheduler per bot process: every send, edit and draft of every chat goes out
through it, within the platform's per-chat, per-group and global budgets.

The scheduler does not queue texts. Each answer in progress is a ``Lane`` (the sink)
that, asked, says whether it has something to send (``pending``) and, told to, makes
exactly one platform call with its newest text (``step``). Coalescing is therefore
free: whatever arrived while a lane waited for its budget goes out as one call.

Order: one call at a time per chat; among the lanes whose chat budgets allow, final
texts first, then the longest waiting. A 429 blocks what it covers (that chat's budget
or the global one) for exactly ``retry_after`` while the lane keeps its work, so the
newest text is sent once the wait is over and other chats go on meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from adapters.delivery.target import DeliveryError, DeliveryTarget, PlatformLimits, RetryAfter
from core.metrics import NO_METRICS, BotMetrics
from core.ratelimit import Reservation, SlidingWindow

log = logging.getLogger(__name__)

_MAX_NO_DRAFT_CHATS = 10_000  # chats remembered as refusing drafts (oldest forgotten)
# Budgets this large keep one call back from partial edits for the final text; smaller
# ones (Telegram's 1 a second in a private chat) would lose too much of their pace.
RESERVE_FROM = 4


class DeliveryClosed(DeliveryError):
    """The scheduler (or the sink) was closed before the text went out."""


@dataclass(frozen=True, slots=True)
class Pending:
    """What a lane has to send."""

    final: bool
    """A final text (an answer's finished piece or an error): goes before partials."""
    since: float
    """Since when (scheduler clock) the oldest change not yet sent has waited."""
    not_before: float = 0.0
    """Not before this time (a partial edit waits out the edit interval)."""


class Lane(Protocol):
    """One answer in progress, as the scheduler drives it."""

    def pending(self) -> Pending | None:
        """What there is to send now, or None. Cheap: called on every scheduling pass."""

    async def step(self) -> bool:
        """Make at most one platform call with the newest text; whether one was made.
        ``RetryAfter`` propagates (the scheduler waits it out and asks again); the
        lane handles every other error itself."""

    def abort(self, exc: BaseException) -> None:
        """The scheduler is closing: give up, failing whoever waits with ``exc``."""


class _Chat:
    __slots__ = ("budgets", "busy", "lanes", "typed_at")

    def __init__(self, limits: PlatformLimits, is_group: bool, clock: Callable[[], float]):
        self.budgets = [SlidingWindow(limits.chat_ops, limits.chat_period, clock)]
        if is_group and limits.group_ops is not None:
            self.budgets.append(SlidingWindow(limits.group_ops, limits.group_period, clock))
        self.lanes: list[Lane] = []
        self.busy = False
        self.typed_at = -math.inf

    def wait(self, now: float, *, final: bool = True) -> float:
        """Seconds until this chat may take a call. A partial edit also leaves one
        call of every budget of at least ``RESERVE_FROM`` calls free, so the final
        text never waits for a window that streaming edits filled (on Discord's 5
        per 5 s that wait was up to 1.9 s after the model's last token)."""
        return max(
            budget.wait_time(now, spare=0 if final or budget.limit < RESERVE_FROM else 1)
            for budget in self.budgets
        )

    def idle(self, now: float) -> bool:
        return not self.lanes and not self.busy and all(b.idle(now) for b in self.budgets)


class DeliveryScheduler:
    """Runs every lane's platform calls when all the budgets that apply allow.

    ``clock`` must tick with the event loop's time (tests pass ``time.monotonic`` too);
    it dates budget hits, while waiting uses the loop's timers. ``metrics`` hears of
    every 429 and the wait it asked for.
    """

    def __init__(
        self,
        limits: PlatformLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: BotMetrics = NO_METRICS,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self._metrics = metrics
        self._global = SlidingWindow(limits.global_ops, limits.global_period, clock)
        self._chats: dict[str, _Chat] = {}
        self._no_drafts: OrderedDict[str, None] = OrderedDict()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._closed = False

    # --- what sinks call -------------------------------------------------------------

    def attach(self, target: DeliveryTarget, lane: Lane) -> None:
        """Let ``lane`` send into ``target``'s chat (idempotent)."""
        if self._closed:
            raise DeliveryClosed("the delivery scheduler is closed")
        chat = self._chats.get(target.chat_key)
        if chat is None:
            chat = self._chats[target.chat_key] = _Chat(self.limits, target.is_group, self.clock)
        if lane not in chat.lanes:
            chat.lanes.append(lane)
        self.wake()

    def detach(self, target: DeliveryTarget, lane: Lane) -> None:
        chat = self._chats.get(target.chat_key)
        if chat is not None and lane in chat.lanes:
            chat.lanes.remove(lane)

    def wake(self) -> None:
        """A lane has new work: schedule again."""
        self._wake.set()
        if self._loop_task is None and not self._closed:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return  # started by the first wake inside the event loop
            self._loop_task = asyncio.create_task(self._run(), name="delivery-scheduler")

    def drafts_refused(self, chat_key: str) -> bool:
        return chat_key in self._no_drafts

    def refuse_drafts(self, chat_key: str) -> None:
        """Remember that ``chat_key`` refused drafts: later answers there edit instead."""
        self._no_drafts[chat_key] = None
        self._no_drafts.move_to_end(chat_key)
        while len(self._no_drafts) > _MAX_NO_DRAFT_CHATS:
            self._no_drafts.popitem(last=False)

    def typing_wait(self, chat_key: str) -> float:
        """0.0 and counted if the chat may show "typing" now, else the seconds until it
        may: at most once per ``typing_interval`` per chat, whichever sink asks. Where
        typing spends the global budget, it also waits for that; the caller then takes
        ``typing_slot`` for the request."""
        chat = self._chats.get(chat_key)
        now = self.clock()
        wait = 0.0 if chat is None else chat.typed_at + self.limits.typing_interval - now
        if wait <= 0 and self.limits.typing_spends_global:
            wait = self._global.wait_time(now)
            if math.isinf(wait):  # global slots in flight: look again shortly
                wait = self.limits.global_period / max(self.limits.global_ops, 1)
        if wait > 0:
            return wait
        if chat is not None:
            chat.typed_at = now
        return 0.0

    def typing_slot(self) -> Reservation | None:
        """The global slot of a typing request about to be made (None where typing is
        free); settle it with ``typing_done``."""
        return self._global.reserve() if self.limits.typing_spends_global else None

    def typing_done(self, slot: Reservation | None, *, called: bool) -> None:
        if slot is None:
            return
        if called:
            slot.done(self.clock())  # dated when the answer arrived, as sends are
        else:
            slot.cancel()
        self._wake.set()

    # --- lifecycle -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop: calls in flight are cancelled, waiting lanes fail with DeliveryClosed."""
        self._closed = True
        tasks = [*self._calls, *([self._loop_task] if self._loop_task else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        closed = DeliveryClosed("the delivery scheduler was closed")
        for chat in self._chats.values():
            for lane in list(chat.lanes):
                lane.abort(closed)
        self._chats.clear()

    async def __aenter__(self) -> DeliveryScheduler:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- the loop --------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            delay = self._dispatch()
            if delay is None:
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _dispatch(self) -> float | None:
        """Start every call the budgets allow; the seconds until the next may be due."""
        now = self.clock()
        wake_at = math.inf
        ready: list[tuple[bool, float, int, _Chat, Lane]] = []
        for key, chat in list(self._chats.items()):
            if chat.busy:
                continue
            if chat.idle(now) and chat.typed_at + self.limits.typing_interval <= now:
                del self._chats[key]
                continue
            waits: dict[bool, float] = {}  # final or not -> the chat's wait
            for lane in list(chat.lanes):
                try:
                    pending = lane.pending()
                except Exception as exc:  # a bug in a lane must not stop every chat
                    log.exception("a delivery lane failed")
                    chat.lanes.remove(lane)
                    lane.abort(exc)
                    continue
                if pending is None:
                    continue
                if pending.not_before > now:
                    wake_at = min(wake_at, pending.not_before)
                    continue
                chat_wait = waits.get(pending.final)
                if chat_wait is None:
                    chat_wait = waits[pending.final] = chat.wait(now, final=pending.final)
                if chat_wait > 0:
                    wake_at = min(wake_at, now + chat_wait)  # inf: a call is in flight
                    continue
                ready.append((not pending.final, pending.since, len(ready), chat, lane))
        ready.sort(key=lambda r: r[:3])
        started: set[int] = set()
        for _, _, _, chat, lane in ready:
            if id(chat) in started:
                continue
            global_wait = self._global.wait_time(now)
            if global_wait > 0:
                wake_at = min(wake_at, now + global_wait)
                break
            started.add(id(chat))
            self._start(chat, lane)
        return None if wake_at == math.inf else max(wake_at - now, 0.0)

    def _start(self, chat: _Chat, lane: Lane) -> None:
        chat.busy = True
        # Reserved now, dated when the answer arrives: the platform counted the call at
        # some moment in between, so the next one is never early by its clock.
        slots = [budget.reserve() for budget in chat.budgets] + [self._global.reserve()]

        async def call() -> None:
            called = False
            try:
                called = await lane.step()
            except RetryAfter as exc:
                called = True
                until = self.clock() + exc.retry_after
                budget = self._global if exc.scope == "global" else chat.budgets[0]
                budget.block_until(until)
                self._metrics.platform_rate_limited(exc.retry_after, exc.scope)
                log.info("platform asked to wait %.3g s (%s)", exc.retry_after, exc.scope)
            except Exception:
                log.exception("a delivery lane failed to handle its own error")
            finally:
                end = self.clock()
                for slot in slots:
                    if called:
                        slot.done(end)
                    else:
                        slot.cancel()
                chat.busy = False
                self._wake.set()

        task = asyncio.create_task(call())
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)
