"""DeliveryScheduler: budgets per chat, per group and overall, 429s for exactly what they
cover, finals first. Driven through sinks against the strict fake platform, which
answers 429 itself whenever a budget is exceeded (the fixture checks it never did)."""

from __future__ import annotations

import asyncio
import time

from adapters.delivery.scheduler import DeliveryScheduler
from adapters.delivery.sink import DeliverySink
from adapters.delivery.target import PlatformLimits, RetryAfter
from tests.adapters.delivery.conftest import answer, eventually, finals, stream, with_limits
from tests.adapters.delivery.platform import Call, FakePlatform, MarkRenderer

MESSAGES = ("send", "edit", "draft")


def busiest(calls: list[Call], period: float) -> int:
    """The most calls in any ``period`` seconds."""
    times = [c.at for c in calls]
    return max(sum(1 for u in times if t <= u < t + period) for t in times)


def nth(kind: str, chat: str, n: int) -> object:
    """A fault predicate: the ``n``-th ``kind`` call in ``chat`` (1-based)."""
    seen = 0

    def when(call: Call) -> bool:
        nonlocal seen
        if call.chat == chat and call.kind == kind:
            seen += 1
            return seen == n
        return False

    return when


async def test_a_chat_429_holds_back_that_chat_only_for_exactly_retry_after(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    platform.inject(RetryAfter(0.4, "chat"), nth("edit", "a", 2))  # type: ignore[arg-type]
    text = answer(120)
    sinks = [DeliverySink(scheduler, platform.target(c), renderer) for c in "ab"]
    ids = await asyncio.gather(*(stream(s, text, step=4, pause=0.01) for s in sinks))
    refused = next(c for c in platform.calls if c.outcome == "RetryAfter")
    after = [c for c in platform.of("a", *MESSAGES) if c.at > refused.at]
    assert 0.4 <= after[0].at - refused.at < 0.4 + 0.3  # waited out, and no longer
    during = [c for c in platform.of("b", *MESSAGES) if refused.at < c.at < refused.at + 0.4]
    assert len(during) >= 3  # the other chat went on meanwhile
    for got in ids:
        assert [platform.messages[i] for i in got] == finals(text, scheduler.limits, renderer)


async def test_a_global_429_pauses_every_chat(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    platform.inject(RetryAfter(0.3, "global"), nth("edit", "a", 2))  # type: ignore[arg-type]
    text = answer(80)
    sinks = [DeliverySink(scheduler, platform.target(c), renderer) for c in "abc"]
    ids = await asyncio.gather(*(stream(s, text, step=4, pause=0.01) for s in sinks))
    refused = next(c for c in platform.calls if c.outcome == "RetryAfter")
    slack = 0.05  # calls already on their way when the 429 came back (a loaded loop)
    quiet = [
        c
        for c in platform.calls
        if c.kind in MESSAGES and refused.at + slack < c.at < refused.at + 0.3
    ]
    assert quiet == []
    assert any(c.at > refused.at + 0.3 for c in platform.of("b", *MESSAGES))
    for got in ids:
        assert [platform.messages[i] for i in got] == finals(text, scheduler.limits, renderer)


async def test_finals_go_out_before_other_chats_partials(
    platform: FakePlatform, limits: PlatformLimits, renderer: MarkRenderer
) -> None:
    # The global budget is the bottleneck: one call per 0.1 s for everyone.
    tight = with_limits(limits, global_ops=1, global_period=0.1, chat_ops=10)
    platform.limits = tight
    async with DeliveryScheduler(tight) as scheduler:
        busy = [DeliverySink(scheduler, platform.target(c), renderer) for c in "bcde"]
        stop = asyncio.Event()

        async def chatter(sink: DeliverySink) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                await sink.update(f"partial number {n}")
                await asyncio.sleep(0.005)

        tasks = [asyncio.create_task(chatter(s)) for s in busy]
        final = DeliverySink(scheduler, platform.target("a"), renderer)
        await final.update("almost")
        await eventually(lambda: bool(platform.of("a", "send")))
        await asyncio.sleep(0.25)  # the others have partials queued all the time
        asked = time.monotonic()
        ids = await final.complete("The final answer.")
        stop.set()
        await asyncio.gather(*tasks)
        for sink in busy:
            await sink.aclose()
    next_calls = [c for c in platform.calls if c.kind in MESSAGES and c.at > asked]
    # At most the one call already on its way went before the final edit.
    assert [c.chat for c in next_calls[:2]].count("a") == 1, [c.chat for c in next_calls[:3]]
    assert platform.messages[ids[0]].text == "The final answer."


async def test_group_chats_also_spend_the_group_budget(
    platform: FakePlatform, limits: PlatformLimits, renderer: MarkRenderer
) -> None:
    grouped = with_limits(limits, group_ops=3, group_period=0.4)
    platform.limits = grouped
    text = answer(150)
    async with DeliveryScheduler(grouped) as scheduler:
        group = DeliverySink(scheduler, platform.target("g", group=True), renderer)
        private = DeliverySink(scheduler, platform.target("p"), renderer)
        got = await asyncio.gather(
            stream(group, text, step=6, pause=0.01), stream(private, text, step=6, pause=0.01)
        )
    assert busiest(platform.of("g", *MESSAGES), 0.4) == 3  # used, never exceeded
    assert busiest(platform.of("p", *MESSAGES), 0.4) > 3  # a private chat is freer
    for ids in got:
        assert [platform.messages[i] for i in ids] == finals(text, grouped, renderer)


async def test_typing_spends_the_global_budget_only_where_the_platform_counts_it() -> None:
    free = PlatformLimits(max_length=100, global_ops=1, global_period=10.0)
    counted = PlatformLimits(
        max_length=100, global_ops=1, global_period=10.0, typing_spends_global=True
    )
    async with DeliveryScheduler(free) as scheduler:
        assert scheduler.typing_slot() is None
        assert scheduler.typing_wait("a") == 0.0
        assert scheduler.typing_wait("b") == 0.0
    async with DeliveryScheduler(counted) as scheduler:
        slot = scheduler.typing_slot()
        assert scheduler.typing_wait("b") > 0, "a typing request in flight holds the slot"
        scheduler.typing_done(slot, called=True)
        assert scheduler.typing_wait("b") > 5, "the one request per 10 s is spent"
    async with DeliveryScheduler(counted) as scheduler:
        scheduler.typing_done(scheduler.typing_slot(), called=False)
        assert scheduler.typing_wait("c") == 0.0, "a request never made costs nothing"


async def test_streaming_edits_leave_the_final_text_a_call(
    platform: FakePlatform, limits: PlatformLimits, renderer: MarkRenderer
) -> None:
    """Discord-like: 5 calls a chat per period. Edits as fast as allowed fill the
    window early; the final text must not wait for it to drain."""
    roomy = with_limits(limits, chat_ops=5, chat_period=1.0, edit_interval=0.01)
    platform.limits = roomy
    async with DeliveryScheduler(roomy) as scheduler:
        sink = DeliverySink(scheduler, platform.target("a"), renderer)
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 0.4:
            n += 1
            await sink.update(f"partial {n}")
            await asyncio.sleep(0.005)
        asked = time.monotonic()
        ids = await sink.complete("The final answer.")
        done = time.monotonic()
    calls = platform.of("a", *MESSAGES)
    assert done - asked < 0.2  # not the ~0.6 s until the first call leaves the window
    assert busiest(calls[:-1], 1.0) == 4  # partials kept one call back...
    assert busiest(calls, 1.0) == 5  # ...which the final text used
    assert platform.messages[ids[0]].text == "The final answer."
