"""The error hierarchy every backend raises.

``ChatGPTError`` is the base for all backends (the name comes from the seed package);
the chat service turns any of them into a plain-words reply for the chat user.
"""

from __future__ import annotations


class ChatGPTError(Exception):
    """A failed request to an LLM backend.

    ``partial_text`` holds whatever answer text had streamed before the failure.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        status_text: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.status_text = status_text
        self.partial_text = partial_text

    @property
    def user_message(self) -> str:
        """What to tell a chat user, in plain words."""
        return "The AI backend failed to answer. Please try again in a moment."


class ChatGPTAuthError(ChatGPTError):
    """Credentials were missing, rejected or expired."""

    @property
    def user_message(self) -> str:
        return "The AI backend rejected the bot's credentials; the bot's admin needs to fix them."


class ChatGPTRateLimitError(ChatGPTError):
    """The backend asked us to slow down (HTTP 429)."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        status_code: int | None = 429,
        status_text: str | None = None,
        partial_text: str = "",
    ) -> None:
        super().__init__(
            message, status_code=status_code, status_text=status_text, partial_text=partial_text
        )
        self.retry_after = retry_after

    @property
    def user_message(self) -> str:
        if self.retry_after:
            return f"The AI backend is busy. Please try again in {self.retry_after:g} seconds."
        return "The AI backend is busy right now. Please try again in a moment."


class ChatGPTTimeoutError(ChatGPTError):
    """The request took longer than its timeout."""

    @property
    def user_message(self) -> str:
        return "The AI backend took too long to answer. Please try again."


class ChatGPTConnectionError(ChatGPTError):
    """The backend could not be reached."""

    @property
    def user_message(self) -> str:
        return "The AI backend could not be reached. Please try again later."


class ChatGPTStreamError(ChatGPTError):
    """The answer stream was malformed, carried an error, or ended early."""

    @property
    def user_message(self) -> str:
        return "The AI backend's answer was cut off. Please try again."
