"""HTTP details of the chat completions backend: error mapping and the retry policy."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base
from yarl import URL

from core.backends.chat_completions.stream import AnswerStream
from core.errors import ChatGPTAuthError, ChatGPTError, ChatGPTRateLimitError
from core.http import error_detail, parse_retry_after, read_error_body

#: Besides 5xx, the statuses worth another try.
RETRY_STATUSES = frozenset({408, 429})


class RetryableFailure(Exception):
    """An attempt failed in a way worth retrying; ``error`` is what to raise."""

    def __init__(self, error: ChatGPTError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


@dataclass(slots=True)
class Opened:
    """A 200 response, its stream read up to the first answer text (None: there is none)."""

    response: aiohttp.ClientResponse
    stream: AnswerStream
    first_delta: str | None


def retry_policy(
    *,
    deadline: float,
    max_retries: int,
    base_delay: float,
    max_delay: float,
    max_wait: float,
    before_sleep: Callable[[RetryCallState], None],
) -> AsyncRetrying:
    """Retries ``RetryableFailure`` after its ``retry_after`` if the server gave one, else
    after ``base_delay * 2**n`` plus up to ``base_delay`` of jitter (capped at
    ``max_delay``); gives up (re-raising) rather than wait past ``deadline`` or over
    ``max_wait``."""
    backoff = wait_exponential(multiplier=base_delay, max=max_delay) + wait_random(0, base_delay)

    def wait(state: RetryCallState) -> float:
        outcome = state.outcome
        failure = outcome.exception() if outcome is not None else None
        if isinstance(failure, RetryableFailure) and failure.retry_after is not None:
            return failure.retry_after
        return float(backoff(state))

    return AsyncRetrying(
        stop=stop_any(stop_after_attempt(max_retries + 1), _StopBeforeDeadline(deadline, max_wait)),
        wait=wait,
        retry=retry_if_exception_type(RetryableFailure),
        before_sleep=before_sleep,
        reraise=True,
    )


class _StopBeforeDeadline(stop_base):
    """Stop when the next wait is too long or would end past the call's deadline."""

    def __init__(self, deadline: float, max_wait: float) -> None:
        self.deadline = deadline
        self.max_wait = max_wait

    def __call__(self, retry_state: RetryCallState) -> bool:
        sleep = retry_state.upcoming_sleep
        now = asyncio.get_running_loop().time()
        return sleep > self.max_wait or now + sleep >= self.deadline


async def response_error(
    response: aiohttp.ClientResponse,
    *,
    host: str,
    redact: Callable[[str], str],
    has_api_key: bool,
) -> tuple[ChatGPTError, float | None]:
    """The error for a non-200 ``response`` (which this closes) and its ``Retry-After``."""
    status, reason = response.status, response.reason or ""
    retry_after = parse_retry_after(response.headers)
    try:
        raw = await read_error_body(response)
    finally:
        response.close()
    detail = redact(error_detail(raw))
    where = f"{host} answered HTTP {status}{f' {reason}' if reason else ''}"
    message = f"{where}: {detail}" if detail else where
    if status in (401, 403):
        if not has_api_key:
            message += " (no api_key is configured for this backend)"
        return ChatGPTAuthError(message, status_code=status, status_text=reason), retry_after
    if status == 429:
        return (
            ChatGPTRateLimitError(
                message, retry_after=retry_after, status_code=status, status_text=reason
            ),
            retry_after,
        )
    if status == 404 and not _is_json(raw):
        message += " (is base_url right? OpenAI-compatible servers usually end in /v1)"
    return ChatGPTError(message, status_code=status, status_text=reason), retry_after


def display_host(url: str) -> str:
    try:
        parsed = URL(url)
    except ValueError:
        return "the server"
    host = parsed.host or "the server"
    return f"{host}:{parsed.port}" if parsed.port and not parsed.is_default_port() else host


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True
