"""A strict in-memory chat platform for the delivery layer's tests.

A test double of the *platform* (what Telegram or Discord would do), not of parley's
HTTP layer: each call takes ``latency`` (half before the platform counts it, half for
the answer to come back), and the platform enforces the per-chat, per-group and global
budgets itself, with its own bookkeeping, answering ``RetryAfter`` when one is
exceeded. It refuses an edit to the text a message already shows (``NotModified``),
drafts where they are not supported (``DraftsUnsupported``), and any text longer than
``max_length``. Faults can be injected; every call is recorded with its time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.delivery.target import (
    DraftsUnsupported,
    NotModified,
    PlatformLimits,
    Rendered,
    RetryAfter,
)


@dataclass
class Call:
    at: float  # when the platform received it
    chat: str
    kind: str  # send | edit | draft | typing
    text: str = ""
    entities: tuple[object, ...] = ()
    message_id: str = ""
    draft_id: int = 0
    first: bool = False
    outcome: str = "ok"  # ok | 429 | not_modified | injected error's class name


@dataclass
class Fault:
    error: Exception
    when: Callable[[Call], bool]
    times: int = 1


@dataclass
class FakePlatform:
    limits: PlatformLimits
    latency: float = 0.002
    clock: Callable[[], float] = time.monotonic
    calls: list[Call] = field(default_factory=list)
    messages: dict[str, Rendered] = field(default_factory=dict)
    drafts: dict[tuple[str, int], Rendered] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    _hits: dict[str, list[float]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(100))

    def target(self, chat: str, *, group: bool = False, drafts: bool = False) -> FakeTarget:
        return FakeTarget(self, chat, group, drafts)

    def inject(self, error: Exception, when: Callable[[Call], bool], times: int = 1) -> None:
        self.faults.append(Fault(error, when, times))

    # --- what tests look at ------------------------------------------------------------

    def of(self, chat: str, *kinds: str, ok: bool = True) -> list[Call]:
        return [
            c
            for c in self.calls
            if c.chat == chat
            and (not kinds or c.kind in kinds)
            and (not ok or c.outcome in ("ok", "not_modified"))
        ]

    @property
    def rejected(self) -> int:
        """429s answered because a budget was exceeded (not injected ones)."""
        return sum(c.outcome == "429" for c in self.calls)

    @property
    def not_modified(self) -> int:
        return sum(c.outcome == "not_modified" for c in self.calls)

    # --- the platform ------------------------------------------------------------------

    def _over(self, key: str, ops: int, period: float, now: float) -> float:
        """Seconds until ``key`` may be spent again (0: now), from the hits of the
        last ``period``."""
        hits = [t for t in self._hits.get(key, []) if t > now - period]
        self._hits[key] = hits
        return 0.0 if len(hits) < ops else hits[-ops] + period - now

    def _spend(self, call: Call, group: bool) -> None:
        lim = self.limits
        budgets = [(f"chat:{call.chat}", lim.chat_ops, lim.chat_period, "chat")]
        if group and lim.group_ops is not None:
            budgets.append((f"group:{call.chat}", lim.group_ops, lim.group_period, "chat"))
        budgets.append(("global", lim.global_ops, lim.global_period, "global"))
        for key, ops, period, scope in budgets:
            wait = self._over(key, ops, period, call.at)
            if wait > 0:
                call.outcome = "429"
                raise RetryAfter(wait, scope)  # type: ignore[arg-type]
        for key, *_ in budgets:
            self._hits.setdefault(key, []).append(call.at)

    async def request(self, target: FakeTarget, call: Call) -> str:
        await asyncio.sleep(self.latency / 2)
        call.at = self.clock()
        self.calls.append(call)
        for fault in self.faults:
            if fault.times > 0 and fault.when(call):
                fault.times -= 1
                call.outcome = type(fault.error).__name__
                await asyncio.sleep(self.latency / 2)
                raise fault.error
        if call.kind != "typing":
            self._spend(call, target.is_group)
        if call.kind in ("send", "edit", "draft"):
            assert call.text.strip(), f"empty text in {call}"
            assert self.limits.measure(call.text) <= self.limits.max_length, call
        result = ""
        rendered = Rendered(call.text, call.entities)
        if call.kind == "send":
            result = call.message_id = str(next(self._ids))
            self.messages[result] = rendered
        elif call.kind == "edit":
            assert call.message_id in self.messages, f"edit of an unknown message {call}"
            if self.messages[call.message_id] == rendered:
                call.outcome = "not_modified"
                raise NotModified()
            self.messages[call.message_id] = rendered
        elif call.kind == "draft":
            assert call.draft_id != 0
            if not target.supports_drafts:
                call.outcome = "DraftsUnsupported"
                raise DraftsUnsupported()
            self.drafts[(call.chat, call.draft_id)] = rendered
        await asyncio.sleep(self.latency / 2)
        return result


@dataclass
class FakeTarget:
    """One chat of the fake platform, as a ``DeliveryTarget``."""

    platform: FakePlatform
    chat: str
    group: bool
    drafts: bool

    @property
    def chat_key(self) -> str:
        return f"fake:{self.chat}"

    @property
    def is_group(self) -> bool:
        return self.group

    @property
    def supports_drafts(self) -> bool:
        return self.drafts

    def _call(self, kind: str, message: Rendered | None = None, **kw: object) -> Call:
        text, entities = (message.text, message.entities) if message else ("", ())
        return Call(0.0, self.chat, kind, text, entities, **kw)  # type: ignore[arg-type]

    async def send(self, message: Rendered, *, first: bool) -> str:
        return await self.platform.request(self, self._call("send", message, first=first))

    async def edit(self, message_id: str, message: Rendered) -> None:
        await self.platform.request(self, self._call("edit", message, message_id=message_id))

    async def draft(self, draft_id: int, message: Rendered) -> None:
        await self.platform.request(self, self._call("draft", message, draft_id=draft_id))

    async def typing(self) -> None:
        await self.platform.request(self, self._call("typing"))


class MarkRenderer:
    """Marks each rendering in its entities, so a test sees which one a message shows.
    ``grow`` makes every ``@`` of a final rendering ``grow`` characters longer (like a
    renderer that spells out links)."""

    def __init__(self, grow: int = 0) -> None:
        self.grow = grow

    def partial(self, markdown: str) -> Rendered:
        return Rendered(markdown, ("partial",))

    def final(self, markdown: str) -> Rendered:
        return Rendered(markdown.replace("@", "@" * (1 + self.grow)), ("final",))

    def plain(self, markdown: str) -> Rendered:
        return Rendered(markdown)
