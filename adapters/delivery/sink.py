"""The reply sink every chat platform uses: a streamed answer in, messages out.

A ``DeliverySink`` is one answer in one chat (``core.incoming.ReplySink``). It keeps
the newest text and what each of its messages shows; the shared ``DeliveryScheduler``
decides when it may make its next platform call, and the sink then makes the one that
brings the platform closest to the newest text (so queued updates coalesce, and no
message is ever sent the same text twice).

What the platform shows, in order: the answer's finished pieces (each at most
``max_length`` once rendered, in its final rendering), then, while streaming, the piece
still growing in its partial rendering — as a draft where the platform has drafts,
else as a message that is edited. ``update`` never waits for the platform;
``complete`` and ``error`` wait until their text is delivered.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal

from adapters.delivery.scheduler import DeliveryClosed, DeliveryScheduler, Pending
from adapters.delivery.splitter import MIN_LIMIT, cut, skip_separator, split, split_first
from adapters.delivery.target import (
    DeliveryTarget,
    DraftsUnsupported,
    FormattingRejected,
    MessageGone,
    NotModified,
    Rendered,
    Renderer,
    RetryAfter,
)
from adapters.delivery.typing_loop import TypingLoop
from core.incoming import ReplyTargetGone

EMPTY_ANSWER = "(empty answer)"
"""Shown when the model's final answer is blank: platforms refuse empty messages."""
_GONE = "…"
"""Left in a streamed message that the final answer no longer reaches."""

Style = Literal["final", "plain", "partial", "note", "gone"]


@dataclass(slots=True)
class _Shown:
    """What one message (or the draft) shows now, and from what source."""

    source: tuple[Style, str]
    rendered: Rendered
    at: float
    id: str = ""  # the platform's message id; the draft's is in ``_Draft``


@dataclass(slots=True)
class _Draft:
    index: int  # which piece of the answer it previews
    id: int
    shown: _Shown | None = None


@dataclass(frozen=True, slots=True)
class _Op:
    kind: Literal["send", "edit", "draft"]
    index: int  # the piece / message; -1 for a note
    style: Style
    source: str
    not_before: float = 0.0

    @property
    def final(self) -> bool:
        return self.style != "partial"


class DeliverySink:
    """One answer in one chat, delivered through ``scheduler`` to ``target``.

    ``stream``: show the answer while it grows (else only typing until ``complete``).
    ``edit_interval``: least seconds between two partial updates of one message
    (default: the platform's). ``typing``: show the typing indicator from now on
    (False: only once ``start_typing`` is called, e.g. when it is not yet known that
    the message will be answered). ``adopt``: ids of messages this bot sent earlier for
    this answer (before a restart); the answer's first pieces replace their text.
    """

    def __init__(
        self,
        scheduler: DeliveryScheduler,
        target: DeliveryTarget,
        renderer: Renderer,
        *,
        stream: bool = True,
        edit_interval: float | None = None,
        typing: bool = True,
        adopt: Sequence[str] = (),
    ) -> None:
        limits = scheduler.limits
        if limits.max_length < MIN_LIMIT:
            raise ValueError(f"max_length {limits.max_length} is below {MIN_LIMIT}")
        self._scheduler = scheduler
        self._target = target
        self._renderer = renderer
        self._limit = limits.max_length
        self._measure = limits.measure
        self._stream = stream
        interval = limits.edit_interval if edit_interval is None else edit_interval
        if target.is_group and limits.group_ops:
            # Edits faster than the group budget refills (Telegram: 20 a minute) spend it
            # within seconds, and the final text would then wait for the window: stream
            # at the budget's own pace instead.
            interval = max(interval, limits.group_period / limits.group_ops)
        self._interval = interval
        self._drafts = target.supports_drafts and not scheduler.drafts_refused(target.chat_key)
        self._clock = scheduler.clock

        # The answer, as far as it has streamed.
        self._text = ""
        self._offset = 0  # where the piece still growing starts in _text ...
        self._reopen = ""  # ... after this reopened fence line
        self._pieces: list[str] = []  # finished pieces
        self._partial = ""  # the growing piece, as it would be shown
        self._final: list[str] | None = None  # the final answer's pieces
        self._notes: deque[str] = deque()  # error texts to send
        self._stopped = False  # error() mid-stream: partial messages stay as they are

        # What the platform shows. Adopted messages (an earlier process's, see
        # ``adopt``) show something unknown, so the first answer pieces edit them.
        self._messages: list[_Shown] = [
            _Shown(("gone", ""), Rendered(""), 0.0, message_id) for message_id in adopt
        ]
        self._watchers: list[Callable[[Sequence[str]], None]] = []
        self._draft: _Draft | None = None
        self._plain: set[int] = set()  # pieces whose formatting was refused
        self._partial_plain = False
        self._sent_any = bool(adopt)
        self._rendered: dict[str, Rendered] = {}

        self._failure: BaseException | None = None
        self._done = asyncio.Event()
        self._dirty_at: float | None = None
        self._idle = True  # the scheduler last saw nothing to do: wake it on new work
        self._typing = TypingLoop(scheduler, target, self._fail)
        scheduler.attach(target, self)
        if typing:
            self.start_typing()

    # --- ReplySink -------------------------------------------------------------------

    async def update(self, text: str) -> None:
        """The answer so far (the full text). Returns at once; the newest text goes
        out when the budgets allow."""
        self._raise_failure()
        if self._final is not None or self._stopped or not self._stream:
            return
        self._text = text
        self._advance()
        self._poke()

    async def complete(self, text: str) -> list[str]:
        """Deliver the final answer; the ids of every message that carries it."""
        self._raise_failure()
        self._typing.stop()
        self._final = [
            p for piece in split(text, self._limit, self._measure) for p in self._fit(piece)
        ]
        if not self._final:
            self._final = [EMPTY_ANSWER]
        await self._deliver()
        return [shown.id for shown in self._messages[: len(self._final)]]

    async def error(self, text: str, *, detail: str | None = None) -> None:
        """Send ``text`` as a new plain message; streamed messages stay as they are.
        ``detail`` (the operator's line) is not for the chat: the chat service logs it."""
        if isinstance(self._failure, ReplyTargetGone):
            raise self._failure
        self._failure = None  # a failed edit must not keep the user from hearing why
        self._typing.stop()
        if self._final is None:
            self._stopped = True
        self._notes.append(text)
        await self._deliver()

    def watch_sent(self, callback: Callable[[Sequence[str]], None]) -> None:
        """Call ``callback`` with the ids of the answer's messages whenever one is
        added (the chat service records them for crash recovery)."""
        self._watchers.append(callback)

    def start_typing(self) -> None:
        """Show "typing" now and every ``typing_interval`` until the first text is
        visible (or ``complete`` / ``error``). Needs the running event loop."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # constructed outside the loop: no indicator
        self._typing.start()

    # --- cleanup ---------------------------------------------------------------------

    def cancel(self) -> None:
        """Stop: no typing, nothing more sent; a waiting ``complete`` fails."""
        self._typing.stop()
        self._scheduler.detach(self._target, self)
        if not self._done.is_set():
            self._fail(DeliveryClosed("the reply was cancelled"))

    async def aclose(self) -> None:
        self.cancel()
        await self._typing.aclose()

    async def __aenter__(self) -> DeliverySink:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- Lane (driven by the scheduler) ------------------------------------------------

    def pending(self) -> Pending | None:
        op = self._next_op()
        if op is None:
            self._idle = True
            self._settle()
            return None
        if self._dirty_at is None:
            self._dirty_at = self._clock()
        return Pending(final=op.final, since=self._dirty_at, not_before=op.not_before)

    async def step(self) -> bool:
        op = self._next_op()
        if op is None:
            self._settle()
            return False
        since, self._dirty_at = self._dirty_at, None
        rendered = self._render(op)
        if self._already_shown(op, rendered):
            self._record(op, rendered, "")
            self._after_step(since)
            return False
        now = self._clock()
        try:
            result = await self._call(op, rendered)
        except RetryAfter:
            self._dirty_at = since if self._dirty_at is None else min(since or now, self._dirty_at)
            raise
        except NotModified:
            self._record(op, rendered, "")
        except FormattingRejected as exc:
            if op.style == "final":
                self._plain.add(op.index)
            elif op.style == "partial" and not self._partial_plain:
                self._partial_plain = True
            else:
                self._fail(exc)
        except DraftsUnsupported:
            self._drafts = False
            self._scheduler.refuse_drafts(self._target.chat_key)
        except Exception as exc:
            self._fail(exc)
        else:
            self._record(op, rendered, result, now)
        self._after_step(since)
        return True

    def abort(self, exc: BaseException) -> None:
        self._fail(exc)

    # --- what to send next -------------------------------------------------------------

    def _plan(self) -> list[tuple[Style, str]]:
        """What each piece of the answer should show, in order."""
        if self._final is not None:
            return [
                ("plain" if i in self._plain else "final", p) for i, p in enumerate(self._final)
            ]
        if self._stopped or not self._stream:
            return []
        plan: list[tuple[Style, str]] = [
            ("plain" if i in self._plain else "final", p) for i, p in enumerate(self._pieces)
        ]
        if self._partial.strip():
            plan.append(("partial", self._partial))
        return plan

    def _next_op(self) -> _Op | None:
        if self._failure is not None:
            return None
        if self._notes:
            return _Op("send", -1, "note", self._notes[0])
        plan = self._plan()
        for i, (style, source) in enumerate(plan):
            if style == "partial":
                return self._partial_op(i, source)
            if i >= len(self._messages):
                return _Op("send", i, style, source)
            if self._messages[i].source != (style, source):
                return _Op("edit", i, style, source)
        if self._final is not None:
            # Streamed messages the final answer no longer reaches (it came out shorter).
            for i in range(len(plan), len(self._messages)):
                if self._messages[i].source[0] != "gone":
                    return _Op("edit", i, "gone", _GONE)
        return None

    def _partial_op(self, i: int, source: str) -> _Op | None:
        if self._drafts:
            draft = self._draft
            shown = draft.shown if draft is not None and draft.index == i else None
        else:
            shown = self._messages[i] if i < len(self._messages) else None
        if shown is None:
            return _Op("draft" if self._drafts else "send", i, "partial", source)
        if shown.source == ("partial", source):
            return None
        return _Op(
            "draft" if self._drafts else "edit",
            i,
            "partial",
            source,
            not_before=shown.at + self._interval,
        )

    # --- rendering ---------------------------------------------------------------------

    def _final_rendering(self, source: str) -> Rendered:
        rendered = self._rendered.get(source)
        if rendered is None:
            rendered = self._rendered[source] = self._renderer.final(source)
        return rendered

    def _fit(self, piece: str, limit: int | None = None) -> list[str]:
        """``piece`` cut smaller while its final rendering measures over the limit."""
        limit = self._limit if limit is None else limit
        size = self._measure(self._final_rendering(piece).text)
        if size <= self._limit:
            return [piece]
        smaller = min(limit - 1, limit * self._limit // size)
        if smaller < MIN_LIMIT:
            return [piece]  # shown in its plain rendering, cut to the limit if need be
        return [q for p in split(piece, smaller, self._measure) for q in self._fit(p, smaller)]

    def _render(self, op: _Op) -> Rendered:
        source = op.source
        candidates: list[Rendered] = []
        if op.style == "final":
            candidates.append(self._final_rendering(source))
        elif op.style == "partial" and not self._partial_plain:
            candidates.append(self._renderer.partial(source))
        if op.style in ("final", "plain", "partial"):
            candidates.append(self._renderer.plain(source))
        for rendered in candidates:
            if rendered.text.strip() and self._measure(rendered.text) <= self._limit:
                return rendered
        # Plain text, cut to the limit: never refused for its length or its formatting.
        text = candidates[-1].text if candidates and candidates[-1].text.strip() else source
        return Rendered(split_first(text, self._limit, self._measure)[0] or _GONE)

    def _already_shown(self, op: _Op, rendered: Rendered) -> bool:
        if op.kind == "edit":
            return self._messages[op.index].rendered == rendered
        if op.kind == "draft":
            draft = self._draft
            return (
                draft is not None
                and draft.index == op.index
                and draft.shown is not None
                and draft.shown.rendered == rendered
            )
        return False

    # --- the platform call ---------------------------------------------------------------

    async def _call(self, op: _Op, rendered: Rendered) -> str:
        target = self._target
        if op.kind == "send":
            return await target.send(rendered, first=not self._sent_any)
        if op.kind == "edit":
            try:
                await target.edit(self._messages[op.index].id, rendered)
            except MessageGone:
                # Deleted under us (a group admin, the user in a DM): the answer must
                # still arrive, so this piece becomes a new message.
                return await target.send(rendered, first=False)
            return self._messages[op.index].id
        if self._draft is None or self._draft.index != op.index:
            self._draft = _Draft(op.index, random.randint(1, 2**31 - 1))
        await target.draft(self._draft.id, rendered)
        return ""

    def _record(
        self, op: _Op, rendered: Rendered, message_id: str, now: float | None = None
    ) -> None:
        """The platform now shows ``rendered`` for ``op``."""
        now = self._clock() if now is None else now
        shown = _Shown((op.style, op.source), rendered, now, message_id)
        if op.kind == "send":
            self._sent_any = True
            if op.style == "note":
                self._notes.popleft()
            else:
                self._messages.append(shown)
                self._tell_watchers()
        elif op.kind == "edit":
            shown.id = message_id or self._messages[op.index].id
            renewed = shown.id != self._messages[op.index].id  # resent: it was deleted
            self._messages[op.index] = shown
            if renewed:
                self._tell_watchers()
        elif self._draft is not None:
            self._draft.shown = shown
        if rendered.text.strip():
            self._typing.stop()

    def _tell_watchers(self) -> None:
        ids = [shown.id for shown in self._messages]
        for callback in self._watchers:
            callback(ids)

    def _after_step(self, since: float | None) -> None:
        if self._dirty_at is None and self._next_op() is not None:
            self._dirty_at = since
        self._settle()

    # --- streaming ---------------------------------------------------------------------

    def _advance(self) -> None:
        """Finish every piece whose end can no longer move; keep the growing one."""
        while True:
            current = self._reopen + self._text[self._offset :]
            lead = skip_separator(current)
            body = current[lead:]
            where = cut(body, self._limit, self._measure)
            if where is None or not where.settled:
                self._partial = where.piece if where is not None else body.rstrip()
                return
            self._pieces.extend(self._fit(where.piece))
            start = self._offset + lead + where.rest_start - len(self._reopen)
            assert start > self._offset, "a cut always makes progress"
            self._offset, self._reopen = start, where.reopen

    # --- waiting -----------------------------------------------------------------------

    def _poke(self) -> None:
        if self._dirty_at is None:
            self._dirty_at = self._clock()
        if self._idle:
            self._idle = False
            self._scheduler.wake()

    async def _deliver(self) -> None:
        """Wait until everything planned is shown (or has failed)."""
        self._done.clear()
        self._scheduler.attach(self._target, self)
        self._idle = True
        self._poke()
        self._settle()
        await self._done.wait()
        self._raise_failure()

    def _settle(self) -> None:
        if self._done.is_set() or self._failure is not None:
            return
        finishing = self._final is not None or self._stopped or self._notes
        if finishing and self._next_op() is None:
            self._done.set()
            self._scheduler.detach(self._target, self)

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        self._typing.stop()
        self._done.set()
        self._scheduler.detach(self._target, self)

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
