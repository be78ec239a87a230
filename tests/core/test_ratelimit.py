"""core/ratelimit.py: the sliding window the delivery scheduler and the per-user
``rate_limit`` share."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ratelimit import SlidingWindow


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_allows_limit_hits_then_waits_for_the_oldest_to_expire() -> None:
    window = SlidingWindow(3, 1.0, clock=Clock())
    for t in (0.0, 0.2, 0.4):
        assert window.wait_time(t) == 0.0
        window.hit(t)
    assert window.wait_time(0.5) == pytest.approx(0.5)
    assert window.wait_time(0.999) == pytest.approx(0.001)
    assert window.wait_time(1.0) == 0.0  # the hit at 0.0 no longer counts
    window.hit(1.0)
    assert window.wait_time(1.0) == pytest.approx(0.2)


def test_asking_consumes_nothing_and_the_default_time_is_the_clock() -> None:
    clock = Clock()
    window = SlidingWindow(1, 2.0, clock=clock)
    for _ in range(100):
        assert window.wait_time() == 0.0
    window.hit()
    clock.now = 1.5
    assert window.wait_time() == pytest.approx(0.5)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=1, max_value=5),
    st.floats(min_value=0.1, max_value=5),
    st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=80),
)
def test_a_greedy_caller_never_exceeds_the_limit_in_any_window(
    limit: int, period: float, gaps: list[float]
) -> None:
    """Unlike a leaky bucket, no burst-then-refill: any period holds at most limit."""
    window = SlidingWindow(limit, period, clock=Clock())
    now, hits = 0.0, []
    for gap in gaps:
        now += gap
        wait = window.wait_time(now)
        now += wait  # wait exactly as long as told, then go
        assert window.wait_time(now) == 0.0
        window.hit(now)
        hits.append(now)
    for i, start in enumerate(hits):
        inside = [t for t in hits[i:] if t < start + period - 1e-9]
        assert len(inside) <= limit


def test_block_until_holds_every_hit_back_until_then() -> None:
    window = SlidingWindow(5, 1.0, clock=Clock())
    window.block_until(3.0)
    assert window.wait_time(1.0) == pytest.approx(2.0)
    window.block_until(2.0)  # an earlier block does not shorten it
    assert window.wait_time(2.5) == pytest.approx(0.5)
    assert window.wait_time(3.0) == 0.0


def test_a_reservation_counts_until_dated_then_expires_from_its_date() -> None:
    window = SlidingWindow(2, 1.0, clock=Clock())
    first = window.reserve()
    second = window.reserve()
    assert window.wait_time(0.0) == math.inf  # full of calls still in flight
    first.done(0.5)
    assert window.wait_time(0.6) == pytest.approx(0.9)
    second.cancel()  # that call never happened
    assert window.wait_time(0.6) == 0.0
    second.done(0.7)  # settling twice changes nothing
    assert window.wait_time(0.6) == 0.0
    assert not window.idle(1.4) and window.idle(1.5)


def test_memory_is_bounded_by_the_limit() -> None:
    window = SlidingWindow(4, 1000.0, clock=Clock())
    for t in range(10_000):
        window.hit(float(t) / 1000)
    assert len(window._hits) == 4


def test_a_per_user_rate_limit() -> None:
    """How the chat service uses it: ``rate_limit: {messages: 2, per_seconds: 60}``."""
    clock = Clock()
    users: dict[str, SlidingWindow] = {}

    def allow(user: str) -> float:
        window = users.setdefault(user, SlidingWindow(2, 60, clock=clock))
        wait = window.wait_time()
        if wait == 0:
            window.hit()
        return wait

    assert allow("ann") == 0 and allow("ann") == 0
    clock.now = 10
    assert allow("ann") == pytest.approx(50)  # "try again in 50 s"
    assert allow("bob") == 0
    clock.now = 60
    assert allow("ann") == 0


@pytest.mark.parametrize(("limit", "period"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_nonsense_limits_are_refused(limit: int, period: float) -> None:
    with pytest.raises(ValueError, match="rate limit"):
        SlidingWindow(limit, period)
