"""HTTP details of the chat completions backend: what a non-200 answer means."""

from __future__ import annotations

import json
from dataclasses import dataclass

import aiohttp

from core.backends.call import Call
from core.backends.chat_completions.stream import AnswerStream
from core.errors import ChatGPTAuthError, ChatGPTError, ChatGPTRateLimitError
from core.http import error_detail, parse_retry_after, read_error_body

#: Besides 5xx, the statuses worth another try.
RETRY_STATUSES = frozenset({408, 429})


@dataclass(slots=True)
class Opened:
    """A 200 response and its stream, read up to the first answer text (``has_text``
    None: the answer is already complete)."""

    response: aiohttp.ClientResponse
    stream: AnswerStream
    has_text: bool | None


def retryable(status: int) -> bool:
    return status in RETRY_STATUSES or status >= 500


async def response_error(
    response: aiohttp.ClientResponse, call: Call, *, has_api_key: bool
) -> tuple[ChatGPTError, float | None]:
    """The error for a non-200 ``response`` (which this closes) and its ``Retry-After``."""
    status, reason = response.status, response.reason or ""
    retry_after = parse_retry_after(response.headers)
    try:
        raw = await call.wait(read_error_body(response), "reading the error")
    finally:
        response.close()
    detail = call.redact(error_detail(raw))
    what = f"HTTP {status}{f' {reason}' if reason else ''}"
    if status in (401, 403):
        if not has_api_key:
            detail = f"{detail} (no api_key is configured for this backend)".lstrip()
        denied = call.fail(ChatGPTAuthError, what, detail, status_code=status, status_text=reason)
        return denied, retry_after
    if status == 429:
        return (
            call.fail(
                ChatGPTRateLimitError,
                what,
                detail,
                retry_after=retry_after,
                status_code=status,
                status_text=reason,
            ),
            retry_after,
        )
    wrong_url = status == 404 and not _is_json(raw)
    error = call.fail(
        ChatGPTError, what, detail, hint=wrong_url, status_code=status, status_text=reason
    )
    return error, retry_after


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return True
