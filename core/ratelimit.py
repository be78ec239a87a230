"""A sliding-window rate limit: at most ``limit`` hits in any ``period`` seconds.

Our own rather than a library, because none on PyPI does what the callers need:

- aiolimiter is a leaky bucket: a full bucket lets a burst of ``limit`` through and
  then keeps refilling, so about twice ``limit`` pass in the first ``period`` — exactly
  what Telegram's flood control punishes with a long ban.
- ``limits`` counts in whole-second windows only (Telegram's group budget is 20 a
  minute, tests use 0.05 s periods).
- The delivery scheduler must ask three budgets (chat, group, global) whether one more
  hit is allowed *without* consuming any, consume all three only when it sends, count
  a request in flight until its answer arrives, and block one budget for an exact 429
  ``retry_after``. Libraries offer acquire-and-consume only.

The chat service uses the same class for the per-user ``rate_limit: {messages,
per_seconds}``, so nothing here knows about chats or platforms. Memory is bounded by
``limit``: only the newest ``limit`` hits are kept.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable

_EPSILON = 1e-9  # float rounding: "now + wait" may land a hair before the exact time


class SlidingWindow:
    """At most ``limit`` hits in any ``period`` seconds of ``clock`` time.

    A hit at ``t`` counts while ``t <= now < t + period``.
    """

    __slots__ = ("_blocked_until", "_clock", "_hits", "_pending", "limit", "period")

    def __init__(
        self, limit: int, period: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1:
            raise ValueError(f"a rate limit needs at least 1 hit per period, not {limit}")
        if not period > 0:
            raise ValueError(f"a rate limit period must be positive, not {period}")
        self.limit = limit
        self.period = float(period)
        self._clock = clock
        self._hits: list[float] = []  # sorted, at most ``limit`` long
        self._pending = 0  # reservations whose time is not known yet
        self._blocked_until = -math.inf

    def _now(self, now: float | None) -> float:
        return self._clock() if now is None else now

    def _prune(self, now: float) -> None:
        expired = bisect.bisect_right(self._hits, now - self.period)
        if expired:
            del self._hits[:expired]

    def wait_time(self, now: float | None = None, *, spare: int = 0) -> float:
        """0.0 if one more hit is allowed now, else the seconds until it is; with
        ``spare``, one more hit that still leaves ``spare`` hits free.

        ``math.inf`` while the window is full of reservations still in flight: nobody
        knows yet when they will expire.
        """
        now = self._now(now)
        self._prune(now)
        wait = max(0.0, self._blocked_until - now)
        excess = len(self._hits) + self._pending - self.limit + 1 + spare
        if excess > 0:
            if excess > len(self._hits):
                return math.inf
            wait = max(wait, self._hits[excess - 1] + self.period - now)
        return wait if wait > _EPSILON else 0.0

    def hit(self, now: float | None = None) -> None:
        """Count one hit at ``now``."""
        now = self._now(now)
        self._prune(now)
        bisect.insort(self._hits, now)
        if len(self._hits) > self.limit:
            del self._hits[0]

    def reserve(self) -> Reservation:
        """Count a hit whose time is not known yet (a request in flight).

        It blocks like a hit until ``Reservation.done`` dates it — a request is best
        dated when its answer arrives, since the platform counted it at some moment
        before that — or ``Reservation.cancel`` drops it.
        """
        self._pending += 1
        return Reservation(self)

    def block_until(self, t: float) -> None:
        """No hit is allowed before ``t`` (the platform said "retry after")."""
        self._blocked_until = max(self._blocked_until, t)

    def idle(self, now: float | None = None) -> bool:
        """Whether nothing counts any more: no hit in the window, nothing in flight,
        no block (the window can then be dropped and made anew)."""
        now = self._now(now)
        self._prune(now)
        return not self._hits and not self._pending and self._blocked_until <= now


class Reservation:
    """One pending hit of a ``SlidingWindow``; settle it exactly once."""

    __slots__ = ("_window",)

    def __init__(self, window: SlidingWindow) -> None:
        self._window: SlidingWindow | None = window

    def _release(self) -> SlidingWindow | None:
        window, self._window = self._window, None
        if window is not None:
            window._pending -= 1
        return window

    def done(self, now: float | None = None) -> None:
        """The hit happened; it counts from ``now`` (default: the clock)."""
        window = self._release()
        if window is not None:
            window.hit(now)

    def cancel(self) -> None:
        """The hit did not happen after all."""
        self._release()
