"""parley's platform-agnostic async core: backends, the store and the chat service."""

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
