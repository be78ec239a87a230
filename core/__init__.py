"""parley's platform-agnostic async core: backends, the store and the chat service.

The public names (DESIGN.md "The core API") are re-exported lazily: ``import core``, or
any ``core.*`` module, must not pull in the ChatGPT web client with aiohttp and
markdown-it; ``parley ask`` on another backend never needs them, and every process
start pays for what is imported.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.backends.chatgpt_web import ChatGPTAPI, ChatGPTConversation, ModerationResult
    from core.errors import (
        ChatGPTAuthError,
        ChatGPTConnectionError,
        ChatGPTError,
        ChatGPTRateLimitError,
        ChatGPTStreamError,
        ChatGPTTimeoutError,
    )
    from core.types import ChatResponse

#: Each public name and the module that defines it.
_EXPORTS = {
    "ChatGPTAPI": "core.backends.chatgpt_web",
    "ChatGPTConversation": "core.backends.chatgpt_web",
    "ModerationResult": "core.backends.chatgpt_web",
    "ChatGPTAuthError": "core.errors",
    "ChatGPTConnectionError": "core.errors",
    "ChatGPTError": "core.errors",
    "ChatGPTRateLimitError": "core.errors",
    "ChatGPTStreamError": "core.errors",
    "ChatGPTTimeoutError": "core.errors",
    "ChatResponse": "core.types",
}

__all__ = [
    "ChatGPTAPI",
    "ChatGPTAuthError",
    "ChatGPTConnectionError",
    "ChatGPTConversation",
    "ChatGPTError",
    "ChatGPTRateLimitError",
    "ChatGPTStreamError",
    "ChatGPTTimeoutError",
    "ChatResponse",
    "ModerationResult",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
