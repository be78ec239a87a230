"""Placeholder: being written (issue 3). Replaced by the ChatGPT web protocol client."""

from __future__ import annotations

from typing import Any

from core.backends.base import Backend


class ChatGPTAPI(Backend):  # pragma: no cover - replaced
    def __init__(self, **kwargs: Any) -> None:
        raise NotImplementedError

    def stream_message(self, text: str, **kwargs: Any) -> Any:
        raise NotImplementedError


class ChatGPTConversation:  # pragma: no cover - replaced
    pass
