"""The answer of one 200 response, read as it streams: SSE chunks, or one JSON completion."""

from __future__ import annotations

import asyncio
import json
from collections import deque

import aiohttp

from core.backends.answer import AnswerTooLong, TextBuilder
from core.backends.call import Call, EventReader, StreamBroken
from core.errors import ChatGPTStreamError
from core.http import ERROR_BODY_LIMIT, error_detail
from core.sse import MAX_EVENT, SSEEvent

__all__ = ["AnswerStream", "StreamBroken"]


class AnswerStream:
    """The answer text of one 200 response: SSE chunks, or one JSON completion.

    ``answer`` holds the text so far, capped at ``max_chars``.
    """

    def __init__(self, response: aiohttp.ClientResponse, call: Call, max_chars: int) -> None:
        self.response = response
        self.answer = TextBuilder(max_chars)
        self.finish_reason: str | None = None
        self._call = call
        self._ended = False
        self._is_json = response.content_type == "application/json"
        self._events = EventReader(call, response)
        self._pending: deque[SSEEvent] = deque()

    @property
    def text(self) -> str:
        return self.answer.text

    async def advance(self, flush_at: float | None = None) -> bool | None:
        """Read on: True once answer text was added, False if ``flush_at`` (loop time)
        came first, None when the answer is complete."""
        if self._is_json:
            return await self._read_json()
        while True:
            while self._pending:
                delta = self._handle(self._pending.popleft())
                if delta is None:
                    self._ended = True
                    return None
                if delta:
                    try:
                        self.answer.append(delta)
                    except AnswerTooLong as exc:
                        raise self._fail(f"{exc}: an answer without end") from None
                    return True
            if self._ended:
                return None
            if self._events.ended:
                self._ended = True
                if self.finish_reason is not None:
                    return None  # some servers omit [DONE] after a finish_reason
                raise self._call.fail(
                    StreamBroken,
                    "answer stream ended before it was complete",
                    partial_text=self.text,
                )
            batch = await self._events.next_batch(flush_at)
            if batch is None:
                return False
            self._pending.extend(batch)

    async def first_text(self) -> bool | None:
        """Read up to the first answer text: True, or None if the answer is complete."""
        while (got := await self.advance()) is False:
            pass
        return got

    async def release(self) -> None:
        """After the end of the answer: read the little left (the chunked-encoding
        trailer) so the connection goes back to the pool instead of being dropped."""
        content = self.response.content
        loop = asyncio.get_running_loop()
        soon = loop.time() + 1.0
        ends = self._call.ends
        try:
            async with asyncio.timeout_at(soon if ends is None else min(ends, soon)):
                drained = 0
                while not content.at_eof() and drained < ERROR_BODY_LIMIT:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    drained += len(chunk)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return  # the caller closes the response, dropping the connection
        if content.at_eof():
            self.response.release()

    def _fail(self, what: str, detail: str = "") -> ChatGPTStreamError:
        self._ended = True
        return self._call.fail(ChatGPTStreamError, what, detail, partial_text=self.text)

    def _unexpected(self, data: str) -> ChatGPTStreamError:
        return self._fail("unexpected event in the answer stream", repr(data[:200]))

    def _handle(self, event: SSEEvent) -> str | None:
        """Answer text in ``event`` ("" for none); None for the end of the stream."""
        data = event.data.strip()
        if data == "[DONE]":
            return None
        if not data:
            return ""
        try:
            chunk = json.loads(data)
        except (ValueError, RecursionError):
            raise self._fail("malformed event in the answer stream", repr(data[:200])) from None
        if not isinstance(chunk, dict):
            raise self._unexpected(data)
        if "error" in chunk or event.event == "error":
            detail = error_detail(data.encode()) or "unknown error"
            raise self._fail("error event in the answer stream", detail)
        choices = chunk.get("choices")
        if choices is None:
            return ""  # e.g. keep-alive or usage-only chunks
        if not isinstance(choices, list):
            raise self._unexpected(data)
        text = ""
        for choice in choices:
            if not isinstance(choice, dict):
                raise self._unexpected(data)
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise self._unexpected(data)
            content = delta.get("content")
            if isinstance(content, str):
                text += content
            elif content is not None:
                raise self._unexpected(data)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return text

    async def _read_json(self) -> bool | None:
        """A server that ignored ``stream: true`` and sent the whole completion."""
        if self._ended:
            return None
        self._ended = True
        raw = await self._call.read_body(self.response, max(MAX_EVENT, 8 * self.answer.limit))
        detail = error_detail(raw) if b'"error"' in raw else ""
        if detail:
            raise self._fail("error in the completion", detail)
        try:
            completion = json.loads(raw)
            choice = completion["choices"][0]
            content = choice["message"].get("content") or ""
            if not isinstance(content, str):
                raise TypeError(type(content).__name__)
        except (ValueError, LookupError, TypeError, AttributeError, RecursionError):
            raise self._fail("unexpected completion", repr(raw[:200])) from None
        self.finish_reason = str(choice.get("finish_reason") or "stop")
        try:
            self.answer.replace(content)
        except AnswerTooLong as exc:
            raise self._fail(f"{exc}: an answer without end") from None
        return True if content else None
