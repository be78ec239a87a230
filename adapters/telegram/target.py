"""One Telegram chat (or forum topic) as a ``DeliveryTarget``: PTB calls in, the
delivery layer's errors out."""

from __future__ import annotations

import datetime as dtm
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import Bot, LinkPreviewOptions, ReplyParameters
from telegram.constants import ChatAction
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from adapters.delivery.target import (
    DraftsUnsupported,
    FormattingRejected,
    MessageGone,
    NotModified,
    Rendered,
)
from adapters.delivery.target import RetryAfter as DeliveryRetryAfter
from core.incoming import ReplyTargetGone

log = logging.getLogger(__name__)
T = TypeVar("T")

NETWORK_ATTEMPTS = 4  # connection errors towards Telegram: 3 retries, 0.5 s .. 2 s apart
# BadRequest descriptions that mean the destination is gone, not that the text is bad.
GONE = ("chat not found", "thread not found", "topic_closed", "topic_deleted", "not enough rights")


def retry_seconds(exc: RetryAfter) -> float:
    """The wait a 429 asked for. PTB 22 stores a timedelta; its public ``retry_after``
    still returns an int with a deprecation warning unless PTB_TIMEDELTA is set."""
    stored = getattr(exc, "_retry_after", None)
    raw = stored if isinstance(stored, dtm.timedelta) else exc.retry_after
    return raw.total_seconds() if isinstance(raw, dtm.timedelta) else float(raw)


def _is_connection_error(exc: BaseException) -> bool:
    # PTB derives BadRequest and friends from NetworkError; only the transport's own
    # failures (connection refused, reset, timed out) are worth sending again.
    refusals = (BadRequest, Forbidden, RetryAfter, ChatMigrated)
    return isinstance(exc, NetworkError) and not isinstance(exc, refusals)


def _is_unsent(exc: BaseException) -> bool:
    # A new message that timed out may have been delivered all the same: sending it
    # again could show the answer twice. Edits, drafts and typing are safe to repeat.
    return _is_connection_error(exc) and not isinstance(exc, TimedOut)


class TelegramTarget:
    def __init__(
        self,
        bot: Bot,
        chat_id: int,
        *,
        private: bool,
        thread_id: int | None = None,
        reply_to: int | None = None,
        wait_base: float = 0.5,
    ) -> None:
        self._bot = bot
        self._chat_id = chat_id
        self._private = private
        self._thread_id = thread_id
        self._reply_to = reply_to
        self._wait_base = wait_base

    @property
    def chat_key(self) -> str:
        return f"telegram:{self._chat_id}"

    @property
    def is_group(self) -> bool:
        return not self._private

    @property
    def supports_drafts(self) -> bool:
        return self._private

    async def send(self, message: Rendered, *, first: bool) -> str:
        reply = None
        if first and self._reply_to is not None and not self._private:
            # In a group the answer quotes the question; in a DM that is only noise.
            reply = ReplyParameters(self._reply_to, allow_sending_without_reply=True)
        sent = await self._call(
            lambda: self._bot.send_message(
                self._chat_id,
                message.text,
                entities=list(message.entities) or None,
                message_thread_id=self._thread_id,
                reply_parameters=reply,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            ),
            idempotent=False,
        )
        return str(sent.message_id)

    async def edit(self, message_id: str, message: Rendered) -> None:
        await self._call(
            lambda: self._bot.edit_message_text(
                message.text,
                chat_id=self._chat_id,
                message_id=int(message_id),
                entities=list(message.entities) or None,
                link_preview_options=LinkPreviewOptions(is_disabled=True),
            )
        )

    async def draft(self, draft_id: int, message: Rendered) -> None:
        try:
            await self._call(
                lambda: self._bot.send_message_draft(
                    self._chat_id,
                    draft_id,
                    message.text,
                    message_thread_id=self._thread_id,
                    entities=list(message.entities) or None,
                )
            )
        except FormattingRejected:
            raise
        except (BadRequest, InvalidToken) as exc:
            # Refused for this chat, or unknown to this server (an older self-hosted
            # Bot API answers 404, which PTB reports as InvalidToken): stream by edits.
            raise DraftsUnsupported(str(exc)) from exc

    async def typing(self) -> None:
        await self._call(
            lambda: self._bot.send_chat_action(
                self._chat_id, ChatAction.TYPING, message_thread_id=self._thread_id
            )
        )

    async def _call(self, request: Callable[[], Awaitable[T]], *, idempotent: bool = True) -> T:
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_is_connection_error if idempotent else _is_unsent),
                stop=stop_after_attempt(NETWORK_ATTEMPTS),
                wait=wait_exponential(multiplier=self._wait_base, max=self._wait_base * 4),
                reraise=True,
            ):
                with attempt:
                    return await request()
        except RetryAfter as exc:
            raise DeliveryRetryAfter(retry_seconds(exc), "chat") from exc
        except Forbidden as exc:  # blocked by the user, removed from the group
            raise ReplyTargetGone(str(exc)) from exc
        except ChatMigrated as exc:  # the group became a supergroup with a new id
            raise ReplyTargetGone(str(exc)) from exc
        except BadRequest as exc:
            text = exc.message.lower()
            if "message is not modified" in text:
                raise NotModified(exc.message) from exc
            if "message to edit not found" in text:
                raise MessageGone(exc.message) from exc
            if "can't parse entities" in text or "entit" in text:
                raise FormattingRejected(exc.message) from exc
            if any(gone in text for gone in GONE):
                raise ReplyTargetGone(exc.message) from exc
            raise
        raise AssertionError("unreachable: tenacity re-raises the last error")
