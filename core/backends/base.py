"""The one interface every LLM backend offers, and the one streaming loop behind it.

A backend implements ``stream_message``; ``send_message`` (with ``on_progress``) is
derived here once, so no backend copies the streaming loop.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Self

from core import tokens
from core.errors import ChatGPTStreamError
from core.types import ChatResponse, ProgressCallback


async def collect(
    stream: AsyncIterator[ChatResponse], on_progress: ProgressCallback | None = None
) -> ChatResponse:
    """Drain a ``stream_message`` iterator into its final answer, reporting progress.

    The stream is closed however this ends, so an exception or a cancellation here
    aborts the HTTP request behind it.
    """
    final: ChatResponse | None = None
    try:
        async for partial in stream:
            if partial.done:
                final = partial
            if on_progress is not None:
                result = on_progress(partial)
                if inspect.isawaitable(result):
                    await result
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()
    if final is None:
        raise ChatGPTStreamError("the backend's stream ended without a final answer")
    return final


class Backend(ABC):
    """An LLM that answers a message hanging under ``parent_message_id``."""

    @abstractmethod
    def stream_message(
        self,
        text: str,
        *,
        conversation_id: str | None = None,
        parent_message_id: str | None = None,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[ChatResponse]:
        """Yield partial answers (full text so far); the last one has ``done=True``.

        Partials come at a bounded rate, not one per received piece: each is a copy of
        the whole text (see ``core.backends.answer``). The final one is exact.
        """

    async def send_message(
        self,
        text: str,
        *,
        conversation_id: str | None = None,
        parent_message_id: str | None = None,
        message_id: str | None = None,
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ChatResponse:
        stream = self.stream_message(
            text,
            conversation_id=conversation_id,
            parent_message_id=parent_message_id,
            message_id=message_id,
            timeout=timeout,
        )
        return await collect(stream, on_progress)

    def count_tokens(self, text: str) -> int:
        """What ``text`` adds to a prompt as one chat message, in this backend's tokens.

        The chat service stores this with each message, and history-keeping backends
        spend their budget by these counts, so both must use the same tokenizer.
        """
        return tokens.count_message_tokens(text)

    async def aclose(self) -> None:
        """Release connections and processes; safe to call twice."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
