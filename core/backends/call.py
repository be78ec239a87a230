"""One call to a backend's server, the same for every HTTP backend: its two time limits,
its tries and retries, the words of its errors, its debug logs and its event stream.

Time limits:

- ``timeout`` bounds every wait on the server: connecting, the response headers, the
  first byte of the body and any silence between streamed bytes (and a wait the server
  asks for with ``Retry-After``). An answer that keeps flowing is never cut by it.
- ``max_answer_seconds`` bounds the whole call, from the first line of
  ``stream_message`` to the last byte of the answer: it stops a server that never ends
  (keep-alive comments forever, an endless answer).

Work that is not a wait on the server — reading history, loading the tokenizer,
waiting for a ``max_concurrency`` slot — counts against ``max_answer_seconds`` only,
never against ``timeout``.

Errors say what failed, where and after how many requests, e.g. ``HTTP 503 Service
Unavailable from api.example.com/v1/chat/completions after 4 tries: <server message>``
(the URL without scheme, credentials or query, and redacted); their ``user_message``
stays the plain words for chat users.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

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

from core.errors import ChatGPTError, ChatGPTStreamError, ChatGPTTimeoutError
from core.http import ERROR_BODY_LIMIT, endpoint, error_detail, redact_url
from core.sse import SSEEvent, SSEParser, SSETooLarge, sniff

_T = TypeVar("_T")
_E = TypeVar("_E", bound=ChatGPTError)
#: ``max_answer_seconds`` when a backend is given none.
DEFAULT_MAX_ANSWER_SECONDS = 600.0


class StreamBroken(ChatGPTStreamError):
    """The connection broke or the stream ended early (worth a retry while no answer
    text was handed out)."""


class RetryableFailure(Exception):
    """An attempt failed in a way worth retrying; ``error`` is what to raise if not."""

    def __init__(self, error: ChatGPTError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def check_limits(timeout: float | None, max_answer_seconds: float | None) -> None:
    """``ValueError`` naming the key if a limit is not a positive number (None: none)."""
    for name, value in (("timeout", timeout), ("max_answer_seconds", max_answer_seconds)):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


class Call:
    """The state of one ``stream_message`` (or other request) call; see the module
    docstring. ``redact`` masks the backend's secrets; ``hint`` is added to errors that
    suggest a wrong URL (e.g. "is base_url right?"); ``name`` stands for the server in
    errors until its ``url`` is known."""

    def __init__(
        self,
        *,
        timeout: float | None,
        max_answer_seconds: float | None,
        logger: logging.Logger,
        redact: Callable[[str], str] = str,
        hint: str = "",
        url: str = "",
        name: str = "the server",
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.started = self._loop.time()
        self.timeout = timeout
        self.max_answer_seconds = max_answer_seconds
        self.ends = None if max_answer_seconds is None else self.started + max_answer_seconds
        self.logger = logger
        self.redact = redact
        self.hint = hint
        self.tries = 0
        self.url = ""
        self._name = name  # stands for the server until its URL is known
        self._where: str | None = None
        self.method = "POST"
        self.first_byte: float | None = None  # seconds from sending to the response
        self._sent_at = self.started
        self._quiet_since: float | None = None  # start of the current wait for body bytes
        self._body = False  # some of the current response's body arrived
        if url:
            self.target(url)

    def now(self) -> float:
        return self._loop.time()

    # -- requests and their logs --------------------------------------------------

    def target(self, url: str) -> None:
        """The URL requests of this call go to."""
        self.url = url
        self._where = None

    @property
    def where(self) -> str:
        """The server, as errors and logs name it (host and path, secrets masked).
        Worked out when first needed: a call that succeeds never needs it."""
        if self._where is None:
            self._where = self.redact(endpoint(self.url)) if self.url else self._name
        return self._where

    def sending(self, method: str = "POST", url: str | None = None) -> None:
        """A request is about to be sent: count it, log it."""
        if url is not None:
            self.target(url)
        self.method = method
        self.tries += 1
        self._sent_at = self.now()
        self._quiet_since = None
        self._body = False
        if self.logger.isEnabledFor(logging.DEBUG):
            url = self.redact(redact_url(self.url))
            self.logger.debug("%s %s (try %d)", method, url, self.tries)

    def received(self, response: aiohttp.ClientResponse) -> None:
        """The response's headers arrived: log its status and the time it took."""
        self.first_byte = self.now() - self._sent_at
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(
                "%s %s -> %d %s in %.3f s",
                self.method,
                self.redact(redact_url(self.url)),
                response.status,
                response.reason or "",
                self.first_byte,
            )

    # -- errors -------------------------------------------------------------------

    def message(
        self, what: str, detail: str = "", *, prep: str = "from", hint: bool = False
    ) -> str:
        """``<what> <prep> <where> after <n> tries[: <detail>][ (<hint>)]``, redacted."""
        if self.tries:
            tries = f"{self.tries} {'try' if self.tries == 1 else 'tries'}"
            text = f"{what} {prep} {self.where} after {tries}"
        else:
            text = f"{what} before any request to {self.where}"
        if detail:
            text += f": {detail}"
        if hint and self.hint:
            text += f" ({self.hint})"
        return self.redact(text)

    def fail(
        self,
        cls: type[_E],
        what: str,
        detail: str = "",
        *,
        prep: str = "from",
        hint: bool = False,
        **kwargs: Any,
    ) -> _E:
        """An error of type ``cls`` whose message is ``message(what, detail, ...)``."""
        return cls(self.message(what, detail, prep=prep, hint=hint), **kwargs)

    def timeout_error(self, doing: str, *, total: bool) -> ChatGPTTimeoutError:
        if total:
            what = f"no complete answer within max_answer_seconds={self.max_answer_seconds:g}"
        else:
            what = f"no data within timeout={self.timeout:g} s"
        return ChatGPTTimeoutError(self.message(what, doing))

    # -- waiting ------------------------------------------------------------------

    async def wait(self, awaitable: Awaitable[_T], doing: str) -> _T:
        """Await something from the server: at most ``timeout`` from now, and not past
        the call's end; else ``ChatGPTTimeoutError`` saying which limit and ``doing``."""
        silence = None if self.timeout is None else self.now() + self.timeout
        return await self._until(awaitable, silence, doing)

    async def within_total(self, awaitable: Awaitable[_T], doing: str) -> _T:
        """Await local work (history, tokenizer, a free slot): only the call's end bounds it."""
        return await self._until(awaitable, None, doing)

    async def read(
        self, content: aiohttp.StreamReader, flush_at: float | None = None
    ) -> bytes | None:
        """The next bytes of a response body (b"" at its end), or None if ``flush_at``
        (loop time) came first. The silence allowed is counted from the end of the
        previous read, so returning at ``flush_at`` does not extend it."""
        if self._quiet_since is None:
            self._quiet_since = self.now()
        silence = None if self.timeout is None else self._quiet_since + self.timeout
        limit = _earliest(silence, self.ends)
        try:
            if flush_at is not None and (limit is None or flush_at < limit):
                timer = asyncio.timeout_at(flush_at)
                try:
                    async with timer:
                        chunk = await content.readany()
                except TimeoutError:
                    if timer.expired():
                        return None
                    raise
            else:
                doing = "waiting for more of the answer" if self._body else "waiting for the answer"
                chunk = await self._until(content.readany(), silence, doing)
        except (aiohttp.ClientError, OSError) as exc:
            raise self.broken(exc) from exc
        self._quiet_since = None
        self._body = True
        return chunk

    async def read_body(self, response: aiohttp.ClientResponse, limit: int) -> bytes:
        """A whole (small) response body, read under the call's limits; past ``limit``
        bytes a ``ChatGPTError``, so a server cannot fill the memory."""
        chunks: list[bytes] = []
        size = 0
        while chunk := await self.read(response.content):
            size += len(chunk)
            if size > limit:
                raise self.fail(
                    ChatGPTError,
                    f"a response body over {limit} bytes",
                    status_code=response.status,
                    status_text=response.reason,
                )
            chunks.append(chunk)
        return b"".join(chunks)

    def broken(self, exc: BaseException) -> StreamBroken:
        if isinstance(exc, aiohttp.ClientPayloadError):
            reason = "the server closed it mid-response"
        else:
            reason = str(exc) or type(exc).__name__
        return self.fail(StreamBroken, "connection broke during the answer", reason)

    async def _until(self, awaitable: Awaitable[_T], silence: float | None, doing: str) -> _T:
        end = _earliest(silence, self.ends)
        timer = asyncio.timeout_at(end)
        try:
            async with timer:
                return await awaitable
        except TimeoutError:
            if not timer.expired():
                raise  # not ours
            total = self.ends is not None and (silence is None or self.ends <= silence)
            raise self.timeout_error(doing, total=total) from None

    # -- retries ------------------------------------------------------------------

    async def attempts(
        self,
        attempt: Callable[[], Awaitable[_T]],
        *,
        max_retries: int,
        base_delay: float,
        max_delay: float,
        max_wait: float,
    ) -> _T:
        """``attempt()``, retried as ``retrying`` says. The first try runs outside
        tenacity: building and stepping its retry loop cost more than a local answer,
        so only a call that failed once pays for it (the loop then starts from that
        failure, so waits, counts and logs are the same as for a loop from the start)."""
        try:
            return await attempt()
        except RetryableFailure as failure:
            if max_retries <= 0:
                raise
            first: list[RetryableFailure] = [failure]
        retrying = self.retrying(
            max_retries=max_retries, base_delay=base_delay, max_delay=max_delay, max_wait=max_wait
        )

        async def again() -> _T:
            if first:
                failed = first.pop()
                raise failed from failed.__cause__
            return await attempt()

        result: _T = await retrying(again)
        return result

    def retrying(
        self,
        *,
        max_retries: int,
        base_delay: float,
        max_delay: float,
        max_wait: float,
    ) -> AsyncRetrying:
        """Retries ``RetryableFailure`` after its ``retry_after`` if the server gave one,
        else after ``base_delay * 2**n`` plus up to ``base_delay`` of jitter (capped at
        ``max_delay``); gives up (re-raising) rather than wait longer than ``max_wait``
        or ``timeout``, or past the call's end. Each retry is logged at INFO."""
        backoff = wait_exponential(multiplier=base_delay, max=max_delay) + wait_random(
            0, base_delay
        )

        def wait(state: RetryCallState) -> float:
            failure = _failure(state)
            if isinstance(failure, RetryableFailure) and failure.retry_after is not None:
                return failure.retry_after
            return float(backoff(state))

        def log_retry(state: RetryCallState) -> None:
            self.logger.info(
                "%s; retry %d of %d in %.2f s",
                _failure(state),
                state.attempt_number,
                max_retries,
                state.upcoming_sleep,
            )

        longest = max_wait if self.timeout is None else min(max_wait, self.timeout)
        return AsyncRetrying(
            stop=stop_any(stop_after_attempt(max_retries + 1), _StopEarly(self, longest)),
            wait=wait,
            retry=retry_if_exception_type(RetryableFailure),
            before_sleep=log_retry,
            reraise=True,
        )


class _StopEarly(stop_base):
    """Stop when the next wait is too long or would end past the call's end."""

    def __init__(self, call: Call, longest: float) -> None:
        self.call = call
        self.longest = longest

    def __call__(self, retry_state: RetryCallState) -> bool:
        sleep = retry_state.upcoming_sleep
        ends = self.call.ends
        return sleep > self.longest or (ends is not None and self.call.now() + sleep >= ends)


def _failure(state: RetryCallState) -> BaseException | None:
    outcome = state.outcome
    return outcome.exception() if outcome is not None else None


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


class EventReader:
    """The server-sent events of one response body, read under the call's limits.

    A body that obviously is no event stream (a web page, a JSON document) raises a
    ``ChatGPTError`` with the call's hint at once; a line or event over the parser's
    caps raises ``ChatGPTStreamError``; a broken connection ``StreamBroken``.
    """

    def __init__(self, call: Call, response: aiohttp.ClientResponse) -> None:
        self._call = call
        self._response = response
        self._parser = SSEParser()
        self._sniffed = False
        self.ended = False

    async def next_batch(self, flush_at: float | None = None) -> list[SSEEvent] | None:
        """The events completed by the next chunk of the body (maybe none), or None if
        ``flush_at`` (loop time) came first. At the end of the body: [] and ``ended``."""
        if self.ended:
            return []
        chunk = await self._call.read(self._response.content, flush_at)
        if chunk is None:
            return None
        if not chunk:
            self.ended = True
            return self._parser.close()
        if not self._sniffed:
            await self._sniff(chunk)
        try:
            return self._parser.feed(chunk)
        except SSETooLarge as exc:
            self.ended = True
            raise self._call.fail(
                ChatGPTStreamError, f"{exc} in the event stream", hint=True
            ) from None

    async def _sniff(self, chunk: bytes) -> None:
        if not chunk.strip():
            return  # blank lines: fine for an event stream, tell nothing yet
        self._sniffed = True
        kind = sniff(chunk)
        if kind is None:
            return
        self.ended = True
        body = chunk[:ERROR_BODY_LIMIT]
        try:
            while len(body) < ERROR_BODY_LIMIT and (
                more := await self._call.read(self._response.content)
            ):
                body += more[: ERROR_BODY_LIMIT - len(body)]
        except ChatGPTError:
            pass  # what arrived is enough to say what it is
        what = "a web page" if kind == "markup" else "a JSON document"
        raise self._call.fail(
            ChatGPTError,
            f"{what} instead of an event stream",
            self._call.redact(error_detail(body)),
            hint=True,
            status_code=self._response.status,
            status_text=self._response.reason,
        )
