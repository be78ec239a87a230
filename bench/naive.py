"""How popular GPT bots are written, the platform aside; the baselines
(bench/*_baselines.py) put a platform's library under these.

- ``LlmClient``: plain aiohttp against Chat Completions, streaming over SSE.
- ``stream_naively``: one answer's loop. It shows the first delta at once, then the
  whole text so far on a fixed timer (or every N new characters), then once more at
  the end; nothing is shared between answers.
- ``NaiveMessages``: one answer's messages. The text is cut every ``limit`` characters
  wherever that falls (mid-word, mid-code-block); a changed part is edited, a new one
  sent; a refusal is logged and the rest of that update skipped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, Self, TypeVar

import aiohttp

log = logging.getLogger(__name__)

M = TypeVar("M")


class LlmClient:
    def __init__(self, llm_base_url: str, model: str) -> None:
        self._url = f"{llm_base_url}/chat/completions"
        self._model = model
        self._session: aiohttp.ClientSession | None = None

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator[Self]:
        """The client with its HTTP session, for the time of the ``async with``."""
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            self._session = session
            try:
                yield self
            finally:
                self._session = None

    async def deltas(self, messages: list[dict[str, str]]) -> AsyncIterator[str]:
        """The LLM's answer, delta by delta."""
        assert self._session is not None
        body: dict[str, Any] = {"model": self._model, "messages": messages, "stream": True}
        async with self._session.post(self._url, json=body) as response:
            response.raise_for_status()
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                data = line[6:].strip()
                if data == b"[DONE]":
                    return
                choices = json.loads(data).get("choices") or [{}]
                content = choices[0].get("delta", {}).get("content")
                if content:
                    yield content

    async def answer(self, messages: list[dict[str, str]]) -> str:
        return "".join([d async for d in self.deltas(messages)])


def naive_parts(text: str, limit: int) -> list[str]:
    return [text[i : i + limit] for i in range(0, len(text), limit)]


async def stream_naively(
    deltas: AsyncIterator[str],
    show: Callable[[str], Awaitable[None]],
    *,
    every_seconds: float | None = 1.0,
    every_chars: int | None = None,
) -> None:
    answer = ""
    last_time = -math.inf  # the first delta is shown at once
    last_size = -math.inf
    async for delta in deltas:
        answer += delta
        now = time.monotonic()
        due_time = every_seconds is not None and now - last_time >= every_seconds
        due_size = every_chars is not None and len(answer) - last_size >= every_chars
        if due_time or due_size:
            await show(answer)
            last_time, last_size = time.monotonic(), len(answer)
    await show(answer)  # the final edit, once


class NaiveMessages(Generic[M]):
    """``send(i, part)`` sends the i-th part and returns its message; ``edit(message,
    part)`` changes one; ``errors`` are what the library raises for a refusal."""

    def __init__(
        self,
        limit: int,
        send: Callable[[int, str], Awaitable[M]],
        edit: Callable[[M, str], Awaitable[object]],
        errors: type[Exception] | tuple[type[Exception], ...],
        where: str,
    ) -> None:
        self._limit = limit
        self._send = send
        self._edit = edit
        self._errors = errors
        self._where = where
        self.shown: list[tuple[M, str]] = []

    async def show(self, text: str) -> None:
        for i, part in enumerate(naive_parts(text, self._limit)):
            try:
                if i < len(self.shown):
                    message, old = self.shown[i]
                    if old != part:
                        await self._edit(message, part)
                        self.shown[i] = (message, part)
                else:
                    self.shown.append((await self._send(i, part), part))
            except self._errors as exc:
                log.warning("%s: %s", self._where, exc)  # and skip, as those bots do
                return
