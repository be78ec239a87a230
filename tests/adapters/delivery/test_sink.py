"""DeliverySink against the strict fake platform: streaming, drafts, splitting,
typing, errors. Time-dependent checks compare orders and counts with wide margins:
the test machine is a loaded 2-core box."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest

from adapters.delivery.scheduler import DeliveryClosed, DeliveryScheduler
from adapters.delivery.sink import EMPTY_ANSWER, DeliverySink
from adapters.delivery.target import (
    DraftsUnsupported,
    FormattingRejected,
    NotModified,
    PlatformLimits,
    Rendered,
    RetryAfter,
)
from core.incoming import ReplyTargetGone
from tests.adapters.delivery.conftest import (
    answer,
    eventually,
    finals,
    stream,
    with_limits,
)
from tests.adapters.delivery.platform import FakePlatform, MarkRenderer


def shown(platform: FakePlatform, ids: list[str]) -> list[Rendered]:
    return [platform.messages[i] for i in ids]


async def keep_updating(sink: DeliverySink) -> None:
    """Stream (for at most 5 s) until the sink raises."""
    for n in range(1000):
        await sink.update("Hello" + "!" * n)
        await asyncio.sleep(0.005)


async def test_streams_by_editing_and_delivers_the_exact_final_text(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    text = "Hello there. This is a short answer that streams in a few steps."
    ids = await stream(sink, text, step=3, pause=0.01)
    assert shown(platform, ids) == [Rendered(text, ("final",))]
    calls = platform.of("a", "send", "edit")
    assert calls[0].kind == "send" and calls[0].first and calls[0].entities == ("partial",)
    assert all(c.kind == "edit" and c.message_id == ids[0] for c in calls[1:])
    assert len(calls) >= 3  # it really streamed


async def test_first_text_is_shown_at_once_then_edits_wait_for_the_interval(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("a"), renderer, edit_interval=1.0)
    started = time.monotonic()
    await sink.update("The")
    await eventually(lambda: bool(platform.of("a", "send")))
    first = platform.of("a", "send")[0]
    assert first.at - started < 0.25  # one scheduler tick, not the edit interval
    for n in range(5):
        await sink.update("The answer" + "!" * n)
        await asyncio.sleep(0.03)
    assert platform.of("a", "edit") == []  # within the edit interval: coalesced
    ids = await sink.complete("The answer, complete.")
    assert shown(platform, ids) == [Rendered("The answer, complete.", ("final",))]
    assert len(platform.of("a", "edit")) == 1  # the final edit skips the interval


async def test_many_updates_coalesce_into_few_edits(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("a"), renderer, edit_interval=0.1)
    text = "x" * 150
    started = time.monotonic()
    for i in range(500):
        await sink.update(text[: i * 150 // 500 + 1])
        if i % 5 == 0:
            await asyncio.sleep(0.002)
    ids = await sink.complete(text)
    elapsed = time.monotonic() - started
    calls = platform.of("a", "send", "edit")
    assert len(calls) <= elapsed / 0.1 + 3, (len(calls), elapsed)
    assert shown(platform, ids) == [Rendered(text, ("final",))]


async def test_identical_text_is_never_sent_twice(
    platform: FakePlatform, scheduler: DeliveryScheduler
) -> None:
    same = MarkRenderer()
    same.final = same.partial  # type: ignore[method-assign]  # partial == final rendering
    sink = DeliverySink(scheduler, platform.target("a"), same)
    for _ in range(20):
        await sink.update("same text")
        await asyncio.sleep(0.01)
    ids = await sink.complete("same text")
    assert [c.kind for c in platform.of("a", "send", "edit")] == ["send"]
    assert shown(platform, ids) == [Rendered("same text", ("partial",))]
    # (the platform fixture also checks that no NotModified was ever provoked)


async def test_typing_until_the_first_text_at_most_once_per_interval(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    target = platform.target("a")
    sink = DeliverySink(scheduler, target, renderer)
    other = DeliverySink(scheduler, target, renderer)  # a second answer in the same chat
    await asyncio.sleep(0.45)
    typing = platform.of("a", "typing")
    assert 3 <= len(typing) <= 6, len(typing)
    gaps = [b.at - a.at for a, b in itertools.pairwise(typing)]
    assert min(gaps) >= 0.09, gaps
    await other.aclose()
    await sink.update("Hi")
    await eventually(lambda: bool(platform.of("a", "send")))
    shown_at = platform.of("a", "send")[0].at
    await asyncio.sleep(0.3)
    # (a typing call may still cross the send on its way: give it the latency)
    assert [c for c in platform.of("a", "typing") if c.at > shown_at + 0.01] == []
    await sink.complete("Hi")


async def test_typing_can_wait_until_the_adapter_knows_it_will_answer(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    async with DeliverySink(scheduler, platform.target("g"), renderer, typing=False) as sink:
        await asyncio.sleep(0.15)
        assert platform.of("g", "typing") == []
        sink.start_typing()
        await eventually(lambda: bool(platform.of("g", "typing")))
        ids = await sink.complete("Answered.")
    assert shown(platform, ids) == [Rendered("Answered.", ("final",))]


async def test_without_streaming_typing_lasts_until_the_pieces_are_sent(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("a"), renderer, stream=False)
    text = answer(120)
    for n in range(10, len(text), 40):
        await sink.update(text[:n])
        await asyncio.sleep(0.01)
    assert platform.of("a", "send", "edit", "draft") == []
    assert len(platform.of("a", "typing")) >= 2
    ids = await sink.complete(text)
    assert shown(platform, ids) == finals(text, scheduler.limits, renderer)
    assert len(ids) > 1
    assert [c.kind for c in platform.of("a", "send", "edit")] == ["send"] * len(ids)
    assert [c.first for c in platform.of("a", "send")] == [True] + [False] * (len(ids) - 1)


async def test_a_long_answer_is_split_while_streaming_and_all_ids_returned(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    text = answer(300)
    for n in range(9, len(text), 9):
        await sink.update(text[:n])
        await asyncio.sleep(0.01)
    completed_at = time.monotonic()
    ids = await asyncio.wait_for(sink.complete(text), 20)
    expected = finals(text, scheduler.limits, renderer)
    assert len(expected) >= 5
    assert shown(platform, ids) == expected
    assert ids == [c.message_id for c in platform.of("a", "send")]
    # Finished pieces were finished while streaming, once, and stayed finished.
    for mid in ids[:-1]:
        calls = [c for c in platform.of("a", "send", "edit") if c.message_id == mid]
        assert calls[-1].entities == ("final",)
        assert sum(c.entities == ("final",) for c in calls) == 1
    sends = platform.of("a", "send")
    assert sends[-2].at < completed_at  # pieces went out while streaming


async def test_drafts_preview_the_answer_then_it_is_sent(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("dm", drafts=True), renderer)
    text = "A private answer that streams as a native draft preview, then is sent."
    ids = await stream(sink, text, step=4, pause=0.01)
    drafts = platform.of("dm", "draft")
    assert len(drafts) >= 2 and {c.draft_id for c in drafts} == {drafts[0].draft_id}
    assert drafts[0].draft_id != 0 and all(c.entities == ("partial",) for c in drafts)
    assert [c.kind for c in platform.of("dm", "send", "edit")] == ["send"]
    assert platform.of("dm", "send")[0].first
    assert shown(platform, ids) == [Rendered(text, ("final",))]
    assert [c for c in platform.of("dm", "typing") if c.at > drafts[0].at + 0.01] == []


async def test_drafts_split_long_answers_into_sent_pieces(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("dm", drafts=True), renderer)
    text = answer(200)
    ids = await asyncio.wait_for(stream(sink, text, step=9, pause=0.01), 20)
    assert shown(platform, ids) == finals(text, scheduler.limits, renderer)
    assert platform.of("dm", "edit") == []
    assert len({c.draft_id for c in platform.of("dm", "draft")}) >= 2  # one per piece
    sends = platform.of("dm", "send")
    assert sends[0].at < platform.of("dm", "draft")[-1].at  # pieces sent while streaming


async def test_refused_drafts_fall_back_to_edits_and_are_not_tried_again(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    platform.inject(DraftsUnsupported(), lambda c: c.kind == "draft", times=99)
    target = platform.target("dm", drafts=True)
    text = "An answer in a chat where drafts turn out to be refused."
    ids = await stream(DeliverySink(scheduler, target, renderer), text, step=5, pause=0.01)
    assert shown(platform, ids) == [Rendered(text, ("final",))]
    assert len(platform.of("dm", "draft", ok=False)) == 1
    assert len(platform.of("dm", "edit")) >= 1  # streamed by editing instead
    ids = await stream(DeliverySink(scheduler, target, renderer), "Second answer.", step=3)
    assert len(platform.of("dm", "draft", ok=False)) == 1  # not tried again
    assert shown(platform, ids) == [Rendered("Second answer.", ("final",))]


async def test_final_edit_is_delivered_after_a_429(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    platform.inject(RetryAfter(0.3), lambda c: c.entities == ("final",))
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    text = "An answer whose final edit hits a flood wait and must still arrive whole."
    ids = await stream(sink, text, step=6)
    assert shown(platform, ids) == [Rendered(text, ("final",))]
    refused = next(c for c in platform.calls if c.outcome == "RetryAfter")
    retried = [c for c in platform.of("a", "edit") if c.at > refused.at]
    assert len(retried) == 1 and retried[0].at - refused.at >= 0.3


async def test_refused_formatting_is_resent_as_plain_text(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    platform.inject(FormattingRejected(), lambda c: c.entities == ("final",), times=99)
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    text = "Some *Markdown* the platform will not accept as formatted."
    ids = await stream(sink, text, step=8)
    assert shown(platform, ids) == [Rendered(text)]


async def test_not_modified_counts_as_delivered(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    platform.inject(NotModified(), lambda c: c.entities == ("final",))
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    ids = await stream(sink, "Already shown, says the platform.", step=8)
    assert len(ids) == 1
    assert [c.outcome for c in platform.of("a", "edit", ok=False)][-1] == "NotModified"
    assert not [c for c in platform.of("a", "edit") if c.entities == ("final",)]


async def test_a_final_rendering_over_the_limit_is_cut_smaller(
    platform: FakePlatform, scheduler: DeliveryScheduler
) -> None:
    renderer = MarkRenderer(grow=3)  # every @ renders as @@@@
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    text = " ".join(["see @a and @b"] * 40)
    ids = await asyncio.wait_for(stream(sink, text, step=11), 20)
    messages = shown(platform, ids)
    assert all(len(m.text) <= scheduler.limits.max_length for m in messages)
    assert all(m.entities == ("final",) for m in messages)
    assert " ".join(m.text for m in messages) == text.replace("@", "@@@@")


async def test_blank_final_answer_is_not_an_empty_message(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    ids = await DeliverySink(scheduler, platform.target("a"), renderer).complete("  \n")
    assert shown(platform, ids) == [Rendered(EMPTY_ANSWER, ("final",))]


async def test_a_final_shorter_than_the_stream_clears_the_extra_message(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    text = answer(100)
    for n in range(10, len(text), 10):
        await sink.update(text[:n])
        await asyncio.sleep(0.003)
    await eventually(lambda: len(platform.of("a", "send")) >= 2)
    ids = await sink.complete("Short after all.")
    assert shown(platform, ids) == [Rendered("Short after all.", ("final",))]
    extra = platform.of("a", "send")[1].message_id
    assert platform.messages[extra].text == "…"


async def test_error_mid_stream_leaves_the_partial_and_sends_a_new_message(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("a"), renderer, edit_interval=0.5)
    await sink.update("Half an ans")
    await eventually(lambda: bool(platform.of("a", "send")))
    await sink.update("Half an answer, then the backend")
    await sink.error("The model is unavailable, try again later.")
    sends = platform.of("a", "send")
    assert [c.text for c in sends] == ["Half an ans", "The model is unavailable, try again later."]
    assert sends[1].entities == () and not sends[1].first
    assert platform.of("a", "edit") == []  # the partial stays as it was
    typed = len(platform.of("a", "typing"))
    await asyncio.sleep(0.25)
    assert len(platform.of("a", "typing")) == typed


async def test_error_before_any_text_is_the_first_message(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    await sink.error("Sorry, you are not allowed to use this bot here.")
    assert [(c.text, c.first) for c in platform.of("a", "send")] == [
        ("Sorry, you are not allowed to use this bot here.", True)
    ]


async def test_error_after_complete_is_one_more_message(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    ids = await stream(sink, "The answer.", step=4)
    await sink.error("The answer above could not be saved.")
    sends = platform.of("a", "send")
    assert [c.message_id for c in sends][:1] == ids and len(sends) == 2
    assert sends[1].text == "The answer above could not be saved." and not sends[1].first


async def test_a_gone_chat_surfaces_from_the_sink(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    platform.inject(ReplyTargetGone("blocked"), lambda c: c.kind == "send", times=99)
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    await sink.update("Hel")  # update never waits for the platform...
    with pytest.raises(ReplyTargetGone):  # ... a later call reports it
        await keep_updating(sink)
    assert len(platform.of("a", "send", ok=False)) == 1
    with pytest.raises(ReplyTargetGone):
        await sink.complete("Hello")
    with pytest.raises(ReplyTargetGone):
        await sink.error("Something went wrong")


async def test_a_gone_chat_seen_by_typing_stops_the_answer(
    platform: FakePlatform, scheduler: DeliveryScheduler, renderer: MarkRenderer
) -> None:
    platform.inject(ReplyTargetGone("kicked"), lambda c: c.kind == "typing")
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    with pytest.raises(ReplyTargetGone):
        await keep_updating(sink)


async def test_aclose_stops_typing_and_closing_the_scheduler_fails_waiters(
    platform: FakePlatform, limits: PlatformLimits, renderer: MarkRenderer
) -> None:
    scheduler = DeliveryScheduler(limits)
    platform.inject(RetryAfter(30), lambda c: c.kind == "send")
    sink = DeliverySink(scheduler, platform.target("a"), renderer)
    waiting = asyncio.create_task(sink.complete("never delivered"))
    await eventually(lambda: bool(platform.of("a", "send", ok=False)))
    await scheduler.aclose()
    with pytest.raises(DeliveryClosed):
        await waiting
    quiet = DeliverySink(DeliveryScheduler(limits), platform.target("b"), renderer)
    await eventually(lambda: bool(platform.of("b", "typing")))
    await quiet.aclose()
    typed = len(platform.of("b", "typing"))
    await asyncio.sleep(0.25)
    assert len(platform.of("b", "typing")) == typed


async def test_a_rendering_longer_than_the_limit_is_never_sent(
    platform: FakePlatform, limits: PlatformLimits
) -> None:
    class Huge(MarkRenderer):
        def partial(self, markdown: str) -> Rendered:
            return Rendered(markdown * 3, ("partial",))

    async with DeliveryScheduler(with_limits(limits, max_length=100)) as scheduler:
        sink = DeliverySink(scheduler, platform.target("a"), Huge())
        ids = await stream(sink, "y" * 90, step=30)
    assert all(len(c.text) <= 100 for c in platform.calls)
    assert shown(platform, ids) == [Rendered("y" * 90, ("final",))]
