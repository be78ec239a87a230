"""The per-user ``rate_limit: {messages, per_seconds}`` of a bot."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from core.ratelimit import SlidingWindow


class UserRateLimit:
    """At most ``messages`` answered per user in any ``per_seconds`` seconds.

    One window per user who wrote recently; windows that have emptied are dropped
    whenever the table has doubled since the last sweep, so memory follows the number
    of recently active users, not of all users ever seen.
    """

    def __init__(
        self, messages: int, per_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.messages = messages
        self.per_seconds = per_seconds
        self._clock = clock
        self._windows: dict[str, SlidingWindow] = {}
        self._sweep_at = 1024

    def __len__(self) -> int:
        return len(self._windows)

    def try_acquire(self, user: str) -> float:
        """0.0 if ``user`` may send one more message now (and counts it); otherwise the
        seconds until they may, rounded up."""
        now = self._clock()
        window = self._windows.get(user)
        if window is None:
            if len(self._windows) >= self._sweep_at:
                self._sweep(now)
            window = self._windows[user] = SlidingWindow(
                self.messages, self.per_seconds, self._clock
            )
        wait = window.wait_time(now)
        if wait > 0:
            return float(math.ceil(wait))
        window.hit(now)
        return 0.0

    def _sweep(self, now: float) -> None:
        self._windows = {k: w for k, w in self._windows.items() if not w.idle(now)}
        self._sweep_at = max(1024, 2 * len(self._windows))
