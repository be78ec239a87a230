"""Fixtures for the delivery layer: a strict fake platform, a scheduler, and helpers
that stream a text into a sink like the chat service does."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from adapters.delivery.scheduler import DeliveryScheduler
from adapters.delivery.sink import DeliverySink
from adapters.delivery.splitter import split
from adapters.delivery.target import PlatformLimits, Rendered
from tests.adapters.delivery.platform import FakePlatform, MarkRenderer

# Telegram's shape, scaled down ~20x in time so tests are quick.
FAST = PlatformLimits(
    max_length=200,
    chat_ops=1,
    chat_period=0.05,
    group_ops=None,
    group_period=1.0,
    global_ops=30,
    global_period=0.05,
    edit_interval=0.05,
    typing_interval=0.1,
)


@pytest.fixture
def limits() -> PlatformLimits:
    return FAST


@pytest.fixture
def platform(limits: PlatformLimits) -> Iterator[FakePlatform]:
    plat = FakePlatform(limits)
    yield plat
    # However a test drove it, the delivery layer never exceeded a budget and never
    # sent a message the text it already showed (injected faults are not counted).
    assert plat.rejected == 0, [c for c in plat.calls if c.outcome == "429"][:5]
    assert plat.not_modified == 0


@pytest.fixture
async def scheduler(limits: PlatformLimits) -> AsyncIterator[DeliveryScheduler]:
    async with DeliveryScheduler(limits) as sched:
        yield sched


@pytest.fixture
def renderer() -> MarkRenderer:
    return MarkRenderer()


def with_limits(limits: PlatformLimits, **changes: object) -> PlatformLimits:
    return dataclasses.replace(limits, **changes)  # type: ignore[arg-type]


async def stream(
    sink: DeliverySink, text: str, *, step: int = 7, pause: float = 0.002
) -> list[str]:
    """Feed ``text`` growing by ``step`` characters, then complete it."""
    for n in range(step, len(text) + step, step):
        await sink.update(text[:n])
        await asyncio.sleep(pause)
    return await sink.complete(text)


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def finals(text: str, limits: PlatformLimits, renderer: MarkRenderer) -> list[Rendered]:
    return [renderer.final(p) for p in split(text, limits.max_length, limits.measure)]


def answer(words: int, seed: int = 0) -> str:
    """A Markdown answer with paragraphs, sentences and a code block."""
    out = []
    for i in range(words):
        out.append(f"w{(i * 7 + seed) % 97}")
        if i % 11 == 10:
            out.append(".")
        out.append("\n\n" if i % 37 == 36 else " ")
        if i % 90 == 45:
            out.append("\n```python\n" + "".join(f"x{j} = {j}\n" for j in range(12)) + "```\n")
    return "".join(out).strip()
