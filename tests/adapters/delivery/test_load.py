"""20 chats streaming long answers at once through one scheduler, against a platform
that answers 429 the moment any budget is exceeded: no 429, every final text whole."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.delivery.scheduler import DeliveryScheduler
from adapters.delivery.sink import DeliverySink
from adapters.delivery.target import PlatformLimits
from tests.adapters.delivery.conftest import FAST, answer, eventually, finals, with_limits
from tests.adapters.delivery.platform import FakePlatform, MarkRenderer


@pytest.fixture
def limits() -> PlatformLimits:
    # Demand (20 chats x 1 call / 0.05 s) is twice the global budget, and a quarter
    # of the chats are groups with their own tighter budget.
    return with_limits(FAST, max_length=1000, global_ops=10, group_ops=8, group_period=0.5)


async def test_twenty_chats_stream_long_answers_without_a_single_429(
    platform: FakePlatform, limits: PlatformLimits, renderer: MarkRenderer
) -> None:
    texts = [answer(1800, seed=n) for n in range(20)]  # ~9,000 characters each
    first_seen: list[float] = []

    async def chat(n: int, scheduler: DeliveryScheduler) -> list[str]:
        target = platform.target(f"c{n}", group=n % 4 == 0)
        sink = DeliverySink(scheduler, target, renderer)
        text = texts[n]
        started = time.monotonic()
        for end in range(40, len(text) + 40, 40):
            await sink.update(text[:end])
            if end == 40:
                await eventually(lambda: bool(platform.of(f"c{n}", "send")))
                first_seen.append(platform.of(f"c{n}", "send")[0].at - started)
            await asyncio.sleep(0.004)
        ids = await sink.complete(text)
        await sink.aclose()
        return ids

    async with DeliveryScheduler(limits) as scheduler:
        got = await asyncio.wait_for(
            asyncio.gather(*(chat(n, scheduler) for n in range(20))), timeout=60
        )
    for n, ids in enumerate(got):
        assert [platform.messages[i] for i in ids] == finals(texts[n], limits, renderer)
        assert len(ids) >= 8
    assert platform.rejected == 0
    # The first text shows within a few global ticks even with 20 chats starting at once.
    assert max(first_seen) < 0.5, first_seen
    calls = sum(c.kind in ("send", "edit") for c in platform.calls)
    assert calls < 20 * 60  # coalesced: far fewer calls than the ~225 updates per answer
