from __future__ import annotations

from core.user_limits import UserRateLimit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_user_has_their_own_window_and_waits_are_whole_seconds() -> None:
    clock = Clock()
    limit = UserRateLimit(2, 10.0, clock)
    assert limit.try_acquire("a") == 0 and limit.try_acquire("a") == 0
    clock.now += 2.5
    assert limit.try_acquire("a") == 8.0  # 7.5 s left, rounded up
    assert limit.try_acquire("b") == 0, "another user is not affected"
    clock.now += 7.5
    assert limit.try_acquire("a") == 0


def test_refused_messages_do_not_count() -> None:
    clock = Clock()
    limit = UserRateLimit(1, 10.0, clock)
    assert limit.try_acquire("a") == 0
    for _ in range(5):
        clock.now += 1
        assert limit.try_acquire("a") > 0
    clock.now += 5
    assert limit.try_acquire("a") == 0


def test_memory_follows_recently_active_users() -> None:
    clock = Clock()
    limit = UserRateLimit(1, 1.0, clock)
    for i in range(5000):
        limit.try_acquire(f"user{i}")
        clock.now += 0.01  # 100 new users a second, each idle again after 1 s
    assert len(limit) < 2200
