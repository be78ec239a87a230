"""``ChatGPTConversation``: one thread of messages, its ids carried from turn to turn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from core.types import ChatResponse, ProgressCallback

if TYPE_CHECKING:
    from core.backends.chatgpt_web.client import ChatGPTAPI


class ChatGPTConversation:
    """Sends each message as a reply to the previous answer.

    The ids advance only when an answer completes; concurrent sends run one after the
    other, each on the answer before it.
    """

    def __init__(
        self,
        api: ChatGPTAPI,
        *,
        conversation_id: str | None = None,
        parent_message_id: str | None = None,
    ) -> None:
        self._api = api
        self._conversation_id = conversation_id
        self._parent_message_id = parent_message_id
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return (
            f"ChatGPTConversation(conversation_id={self._conversation_id!r}, "
            f"parent_message_id={self._parent_message_id!r})"
        )

    @property
    def api(self) -> ChatGPTAPI:
        return self._api

    @property
    def conversation_id(self) -> str | None:
        return self._conversation_id

    @property
    def parent_message_id(self) -> str | None:
        """The id of the last answer: the next message replies to it."""
        return self._parent_message_id

    async def send_message(
        self,
        text: str,
        *,
        message_id: str | None = None,
        action: str = "next",
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ChatResponse:
        async with self._lock:
            response = await self._api.send_message(
                text,
                conversation_id=self._conversation_id,
                parent_message_id=self._parent_message_id,
                message_id=message_id,
                action=action,
                timeout=timeout,
                on_progress=on_progress,
            )
            self._advance(response)
            return response

    async def stream_message(
        self,
        text: str,
        *,
        message_id: str | None = None,
        action: str = "next",
        timeout: float | None = None,
    ) -> AsyncGenerator[ChatResponse, None]:
        """Like ``ChatGPTAPI.stream_message``; the ids advance with the final answer."""
        async with self._lock:
            stream = self._api.stream_message(
                text,
                conversation_id=self._conversation_id,
                parent_message_id=self._parent_message_id,
                message_id=message_id,
                action=action,
                timeout=timeout,
            )
            try:
                async for partial in stream:
                    if partial.done:
                        self._advance(partial)
                    yield partial
            finally:
                await stream.aclose()

    def _advance(self, response: ChatResponse) -> None:
        self._conversation_id = response.conversation_id or self._conversation_id
        self._parent_message_id = response.message_id
