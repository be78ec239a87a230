"""The answer of one 200 response, read as it streams: SSE chunks, or one JSON completion."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable

import aiohttp

from core.errors import ChatGPTStreamError
from core.http import ERROR_BODY_LIMIT, error_detail
from core.sse import SSEEvent, iter_sse


class StreamBroken(ChatGPTStreamError):
    """The transport broke or the stream ended early (retryable if no text yet)."""


class AnswerStream:
    """The answer text of one 200 response: SSE chunks, or one JSON completion."""

    def __init__(self, response: aiohttp.ClientResponse, redact: Callable[[str], str]) -> None:
        self.response = response
        self.text = ""
        self.finish_reason: str | None = None
        self._redact = redact
        self._ended = False
        self._is_json = response.content_type == "application/json"
        self._events: AsyncIterator[SSEEvent] = iter_sse(response.content.iter_any())

    async def next_delta(self) -> str | None:
        """The next non-empty piece of answer text, or None once the answer is complete."""
        if self._ended:
            return None
        if self._is_json:
            return await self._read_json()
        while True:
            try:
                event = await anext(self._events)
            except StopAsyncIteration:
                self._ended = True
                if self.finish_reason is not None:
                    return None  # some servers omit [DONE] after a finish_reason
                raise StreamBroken(
                    "the answer stream ended before it was complete", partial_text=self.text
                ) from None
            except TimeoutError:
                raise
            except (aiohttp.ClientError, OSError) as exc:
                self._ended = True
                raise StreamBroken(
                    self._redact(f"the connection broke during the answer: {_describe(exc)}"),
                    partial_text=self.text,
                ) from exc
            delta = self._handle(event)
            if delta is None:
                self._ended = True
                return None
            if delta:
                self.text += delta
                return delta

    async def release(self, deadline: float) -> None:
        """After the end of the answer: read the little left (the chunked-encoding
        trailer) so the connection goes back to the pool instead of being dropped."""
        if isinstance(self._events, AsyncGenerator):
            await self._events.aclose()
        content = self.response.content
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + 1.0)):
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

    def _fail(self, message: str) -> ChatGPTStreamError:
        self._ended = True
        return ChatGPTStreamError(self._redact(message), partial_text=self.text)

    def _handle(self, event: SSEEvent) -> str | None:
        """Answer text in ``event`` ("" for none); None for the end of the stream."""
        data = event.data.strip()
        if data == "[DONE]":
            return None
        if not data:
            return ""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._fail(f"the server sent a malformed stream event: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise self._fail(f"the server sent an unexpected stream event: {data[:200]!r}")
        if "error" in chunk or event.event == "error":
            detail = error_detail(data.encode()) or "unknown error"
            raise self._fail(f"the server reported an error during the answer: {detail}")
        choices = chunk.get("choices")
        if choices is None:
            return ""  # e.g. keep-alive or usage-only chunks
        if not isinstance(choices, list):
            raise self._fail(f"the server sent an unexpected stream event: {data[:200]!r}")
        text = ""
        for choice in choices:
            if not isinstance(choice, dict):
                raise self._fail(f"the server sent an unexpected stream event: {data[:200]!r}")
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise self._fail(f"the server sent an unexpected stream event: {data[:200]!r}")
            content = delta.get("content")
            if isinstance(content, str):
                text += content
            elif content is not None:
                raise self._fail(f"the server sent an unexpected stream event: {data[:200]!r}")
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return text

    async def _read_json(self) -> str | None:
        """A server that ignored ``stream: true`` and sent the whole completion."""
        self._ended = True
        try:
            raw = await self.response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise StreamBroken(
                self._redact(f"the connection broke during the answer: {_describe(exc)}")
            ) from exc
        detail = error_detail(raw) if b'"error"' in raw else ""
        if detail:
            raise self._fail(f"the server reported an error: {detail}")
        try:
            completion = json.loads(raw)
            choice = completion["choices"][0]
            content = choice["message"].get("content") or ""
            if not isinstance(content, str):
                raise TypeError(type(content).__name__)
        except (ValueError, LookupError, TypeError, AttributeError):
            raise self._fail(f"the server sent an unexpected completion: {raw[:200]!r}") from None
        self.finish_reason = str(choice.get("finish_reason") or "stop")
        self.text = content
        return content or None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the server closed it mid-response"
    return str(exc) or type(exc).__name__
