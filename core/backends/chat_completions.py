"""The OpenAI-compatible Chat Completions backend (type ``chat_completions``).

Talks to any server with ``POST {base_url}/chat/completions`` and SSE streaming:
OpenAI, Ollama, vLLM, llama.cpp, LM Studio, OpenRouter. These servers keep no history,
so the message tree lives in a ``HistoryStore``: the prompt is the system message, the
chain of stored messages ending at ``parent_message_id`` (as much as fits the token
budget, newest kept) and the new user message.

Failure handling, in order:

- ``timeout`` is one deadline for the whole call: waiting for a free slot
  (``max_concurrency``), every attempt, the waits between them and the stream.
- 408/429/5xx answers, connection failures and streams that break before the first
  answer text are retried up to ``max_retries`` times with exponential backoff and
  jitter, or after the server's ``Retry-After``. A wait that would pass the deadline (or
  a ``Retry-After`` longer than ``max_retry_wait``) is not taken: the error is raised.
- Once answer text was yielded nothing is retried: a broken stream raises
  ``ChatGPTStreamError`` carrying the partial text, and nothing is saved.
- The API key never appears in reprs, logs or error messages (server messages that
  echo it are redacted).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

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

from core import tokens
from core.backends.base import Backend
from core.errors import (
    ChatGPTAuthError,
    ChatGPTConnectionError,
    ChatGPTError,
    ChatGPTRateLimitError,
    ChatGPTStreamError,
    ChatGPTTimeoutError,
)
from core.sse import SSEEvent, iter_sse
from core.store.history import HistoryStore, InMemoryHistoryStore
from core.types import ChatResponse, StoredMessage

__all__ = ["ChatCompletionsBackend", "PromptTooLongError"]

logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_MESSAGE = "You are a helpful assistant."
_RETRY_STATUSES = frozenset({408, 429})
_ERROR_BODY_LIMIT = 64 * 1024
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|password", re.IGNORECASE)


class PromptTooLongError(ChatGPTError):
    """The new message alone does not fit the backend's prompt budget."""

    def __init__(self, message: str, *, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available

    @property
    def user_message(self) -> str:
        return (
            f"Your message is too long for this bot's model (about {self.needed} tokens; "
            f"it has room for {max(self.available, 0)}). Please shorten it."
        )


class _Secret:
    """A string that never shows itself in reprs (tracebacks with locals, debuggers)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


class _RetryableFailure(Exception):
    """Internal: an attempt failed in a way worth retrying; ``error`` is what to raise."""

    def __init__(self, error: ChatGPTError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _StreamBroken(ChatGPTStreamError):
    """Internal: the transport broke or the stream ended early (retryable if no text yet)."""


@dataclass(slots=True)
class _Opened:
    response: aiohttp.ClientResponse
    stream: _AnswerStream
    first_delta: str | None


class ChatCompletionsBackend(Backend):
    """An OpenAI-compatible Chat Completions server, streamed over SSE with aiohttp.

    The keyword arguments up to ``max_retries`` are the ``chat_completions`` config
    keys. ``history`` keeps the message tree (default: in memory); with
    ``save_history=False`` finished turns are not written (the chat service commits them
    itself). ``session`` is borrowed, never closed; without one the backend creates and
    owns its own. Subclasses that learn their URL late override ``_base_url()``.
    """

    #: Backoff without ``Retry-After``: ``retry_base_delay * 2**n`` plus up to
    #: ``retry_base_delay`` of jitter, capped at ``retry_max_delay`` (seconds).
    retry_base_delay: float = 0.5
    retry_max_delay: float = 20.0
    #: A ``Retry-After`` longer than this is not waited for: the rate-limit error is raised.
    max_retry_wait: float = 60.0

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        model: str,
        system_message: str | None = DEFAULT_SYSTEM_MESSAGE,
        max_model_tokens: int = 4096,
        max_response_tokens: int = 1000,
        completion_params: dict[str, Any] | None = None,
        timeout: float = 120.0,
        max_concurrency: int = 8,
        max_retries: int = 3,
        history: HistoryStore | None = None,
        save_history: bool = True,
        headers: dict[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not model:
            raise ValueError("model must not be empty")
        if max_response_tokens < 1:
            raise ValueError("max_response_tokens must be at least 1")
        if max_model_tokens <= max_response_tokens:
            raise ValueError(
                f"max_model_tokens ({max_model_tokens}) must be larger than "
                f"max_response_tokens ({max_response_tokens})"
            )
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        self.base_url = base_url
        self._api_key = _Secret(api_key) if api_key else None
        self.model = model
        self.system_message = system_message or None
        self.max_model_tokens = max_model_tokens
        self.max_response_tokens = max_response_tokens
        self.completion_params: dict[str, Any] = dict(completion_params or {})
        self.timeout = float(timeout)
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.history: HistoryStore = history if history is not None else InMemoryHistoryStore()
        self.save_history = save_history
        self.headers: dict[str, str] = dict(headers or {})
        self.encoding = tokens.encoding_for_model(model)
        self._session = session
        self._owns_session = session is None
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._tokenizer_ready = False
        self._host = _display_host(base_url) if base_url else "the server"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key={'<set>' if self._api_key else None})"
        )

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    async def _base_url(self) -> str:
        """Where the server lives; subclasses that start their own server override this."""
        return self.base_url

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()
        if not self._owns_session:
            self._session = session  # borrowed: keep using it, the owner closes it

    # -- the conversation -------------------------------------------------------------

    async def stream_message(
        self,
        text: str,
        *,
        conversation_id: str | None = None,
        parent_message_id: str | None = None,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[ChatResponse]:
        limit = self.timeout if timeout is None else timeout
        deadline = asyncio.get_running_loop().time() + limit
        user_id = message_id or str(uuid.uuid4())
        answer_id = str(uuid.uuid4())
        conversation_id = conversation_id or str(uuid.uuid4())

        messages, user_tokens = await self._build_messages(text, parent_message_id)
        body = self._request_body(messages)
        model = str(body.get("model") or self.model)

        def partial(answer: str, done: bool) -> ChatResponse:
            return ChatResponse(
                text=answer,
                conversation_id=conversation_id,
                message_id=answer_id,
                parent_message_id=user_id,
                model=model,
                done=done,
            )

        try:
            async with asyncio.timeout_at(deadline):
                await self._semaphore.acquire()
        except TimeoutError:
            raise ChatGPTTimeoutError(
                f"timed out after {limit:g} s waiting for a free "
                f"request slot (max_concurrency={self.max_concurrency})"
            ) from None
        try:
            opened = await self._open_with_retries(body, deadline, limit)
            stream = opened.stream
            try:
                delta = opened.first_delta
                while delta is not None:
                    yield partial(stream.text, done=False)
                    try:
                        async with asyncio.timeout_at(deadline):
                            delta = await stream.next_delta()
                    except TimeoutError:
                        raise ChatGPTTimeoutError(
                            f"the answer took longer than {limit:g} s",
                            partial_text=stream.text,
                        ) from None
                    except _StreamBroken as exc:  # too late to retry: answer text is out
                        raise ChatGPTStreamError(
                            str(exc), partial_text=exc.partial_text
                        ) from exc.__cause__
                await stream.release(deadline)  # keep the connection for the next request
            finally:
                opened.response.close()  # a no-op after release()
        finally:
            self._semaphore.release()

        answer = stream.text
        if self.save_history:
            await self.history.add_messages(
                [
                    StoredMessage(
                        id=user_id,
                        conversation_id=conversation_id,
                        parent_id=parent_message_id,
                        role="user",
                        text=text,
                        token_count=user_tokens,
                    ),
                    StoredMessage(
                        id=answer_id,
                        conversation_id=conversation_id,
                        parent_id=user_id,
                        role="assistant",
                        text=answer,
                        token_count=tokens.count_message_tokens(answer, encoding=self.encoding),
                    ),
                ]
            )
        yield partial(answer, done=True)

    async def _build_messages(
        self, text: str, parent_message_id: str | None
    ) -> tuple[list[dict[str, str]], int]:
        """The prompt, and the token count of the new user message."""
        if not self._tokenizer_ready:  # the first load takes a few hundred ms
            await asyncio.to_thread(tokens.get_encoder, self.encoding)
            self._tokenizer_ready = True
        enc = self.encoding
        system = self.system_message
        system_tokens = tokens.count_message_tokens(system, encoding=enc) if system else 0
        user_tokens = tokens.count_message_tokens(text, encoding=enc)
        prompt_room = (
            self.max_model_tokens
            - self.max_response_tokens
            - tokens.REPLY_PRIMING_TOKENS
            - system_tokens
        )
        budget = prompt_room - user_tokens
        if budget < 0:
            raise PromptTooLongError(
                f"the message is too long: it needs about {user_tokens} tokens, but the prompt "
                f"has room for {max(prompt_room, 0)} (max_model_tokens {self.max_model_tokens} "
                f"- max_response_tokens {self.max_response_tokens} - the system message "
                f"and overhead)",
                needed=user_tokens,
                available=prompt_room,
            )
        chain: list[StoredMessage] = []
        if parent_message_id:
            chain = await self.history.history(parent_message_id, budget)
        # A trimmed chain that starts with an answer lost its question: drop it too, as
        # strict chat templates (llama.cpp's Mistral, Gemma) demand user-first turns.
        while chain and chain[0].role == "assistant" and chain[0].parent_id is not None:
            chain.pop(0)
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.text} for m in chain)
        messages.append({"role": "user", "content": text})
        return messages, user_tokens

    def _request_body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": self.max_response_tokens}
        body.update(self.completion_params)
        if "max_completion_tokens" in self.completion_params:
            body.pop("max_tokens", None)  # o-series models reject max_tokens
        body["messages"] = messages
        body["stream"] = True
        return body

    # -- HTTP -------------------------------------------------------------------------

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise ChatGPTError("the aiohttp session passed to this backend is closed")
            # No aiohttp timeouts: the per-call deadline governs every await.
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        return self._session

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", **self.headers}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get()}"
        return headers

    def _redact(self, text: str) -> str:
        secrets = [self._api_key.get()] if self._api_key is not None else []
        secrets += [v for k, v in self.headers.items() if _SECRET_HEADER.search(k) and len(v) >= 6]
        for secret in secrets:
            if secret:
                text = text.replace(secret, "***")
        return text

    async def _open_with_retries(
        self, body: dict[str, Any], deadline: float, limit: float
    ) -> _Opened:
        backoff = wait_exponential(
            multiplier=self.retry_base_delay, max=self.retry_max_delay
        ) + wait_random(0, self.retry_base_delay)

        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            failure = outcome.exception() if outcome is not None else None
            if isinstance(failure, _RetryableFailure) and failure.retry_after is not None:
                return failure.retry_after
            return float(backoff(state))

        def log_retry(state: RetryCallState) -> None:
            outcome = state.outcome
            failure = outcome.exception() if outcome is not None else None
            logger.warning(
                "chat completions request to %s failed (%s); retry %d of %d in %.2f s",
                self._host,
                failure,
                state.attempt_number,
                self.max_retries,
                state.upcoming_sleep,
            )

        retrying = AsyncRetrying(
            stop=stop_any(
                stop_after_attempt(self.max_retries + 1),
                _StopBeforeDeadline(deadline, self.max_retry_wait),
            ),
            wait=wait,
            retry=retry_if_exception_type(_RetryableFailure),
            before_sleep=log_retry,
            reraise=True,
        )
        url = (await self._base_url()).rstrip("/") + "/chat/completions"
        self._host = _display_host(url)
        try:
            opened: _Opened = await retrying(self._attempt, url, body, deadline, limit)
        except _RetryableFailure as failure:
            raise failure.error from failure.__cause__
        return opened

    async def _attempt(
        self, url: str, body: dict[str, Any], deadline: float, limit: float
    ) -> _Opened:
        """One request: send it, check the status, read up to the first answer text."""
        session = self._get_session()
        response: aiohttp.ClientResponse | None = None
        stream: _AnswerStream | None = None
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    response = await session.post(url, json=body, headers=self._request_headers())
                except TimeoutError:
                    raise
                except (aiohttp.ClientError, OSError) as exc:
                    raise _RetryableFailure(
                        ChatGPTConnectionError(self._redact(f"could not reach {self._host}: {exc}"))
                    ) from exc
                if response.status != 200:
                    error, retry_after = await self._http_error(response)
                    if response.status in _RETRY_STATUSES or response.status >= 500:
                        raise _RetryableFailure(error, retry_after)
                    raise error
                if response.content_type == "text/html":
                    raise ChatGPTError(
                        f"{self._host} answered with a web page, not an event stream: is "
                        "base_url right? OpenAI-compatible servers usually end in /v1",
                        status_code=response.status,
                        status_text=response.reason,
                    )
                stream = _AnswerStream(response, self._redact)
                try:
                    first = await stream.next_delta()
                except _StreamBroken as exc:  # no answer text yet: worth another try
                    raise _RetryableFailure(ChatGPTStreamError(str(exc))) from exc.__cause__
                return _Opened(response, stream, first)
        except TimeoutError:
            if response is not None:
                response.close()
            raise ChatGPTTimeoutError(
                f"{self._host} did not answer within {limit:g} s",
                partial_text=stream.text if stream is not None else "",
            ) from None
        except BaseException:
            if response is not None:
                response.close()
            raise

    async def _http_error(
        self, response: aiohttp.ClientResponse
    ) -> tuple[ChatGPTError, float | None]:
        status, reason = response.status, response.reason or ""
        retry_after = _retry_after(response.headers)
        try:
            raw = await response.content.read(_ERROR_BODY_LIMIT)
        except (aiohttp.ClientError, OSError):
            raw = b""
        finally:
            response.close()
        detail = self._redact(_error_detail(raw))
        where = f"{self._host} answered HTTP {status}{f' {reason}' if reason else ''}"
        message = f"{where}: {detail}" if detail else where
        if status in (401, 403):
            if self._api_key is None:
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


class _StopBeforeDeadline(stop_base):
    """Stop when the next wait is too long or would end past the call's deadline."""

    def __init__(self, deadline: float, max_wait: float) -> None:
        self.deadline = deadline
        self.max_wait = max_wait

    def __call__(self, retry_state: RetryCallState) -> bool:
        sleep = retry_state.upcoming_sleep
        now = asyncio.get_running_loop().time()
        return sleep > self.max_wait or now + sleep >= self.deadline


class _AnswerStream:
    """The answer text of one 200 response: SSE chunks, or one JSON completion."""

    def __init__(self, response: aiohttp.ClientResponse, redact: Callable[[str], str]) -> None:
        self.response = response
        self.text = ""
        self.finish_reason: str | None = None
        self._redact = redact
        self._ended = False
        self._is_json = response.content_type == "application/json"
        self._events: AsyncIterator[SSEEvent] = iter_sse(response.content.iter_any())

    async def next_delta(self) -> str | None:
        """The next non-empty piece of answer text, or None once the answer is complete."""
        if self._ended:
            return None
        if self._is_json:
            return await self._read_json()
        while True:
            try:
                event = await anext(self._events)
            except StopAsyncIteration:
                self._ended = True
                if self.finish_reason is not None:
                    return None  # some servers omit [DONE] after a finish_reason
                raise _StreamBroken(
                    "the answer stream ended before it was complete", partial_text=self.text
                ) from None
            except TimeoutError:
                raise
            except (aiohttp.ClientError, OSError) as exc:
                self._ended = True
                raise _StreamBroken(
                    self._redact(f"the connection broke during the answer: {_describe(exc)}"),
                    partial_text=self.text,
                ) from exc
            delta = self._handle(event)
            if delta is None:
                self._ended = True
                return None
            if delta:
                self.text += delta
                return delta

    async def release(self, deadline: float) -> None:
        """After the end of the answer: read the little left (the chunked-encoding
        trailer) so the connection goes back to the pool instead of being dropped."""
        if isinstance(self._events, AsyncGenerator):
            await self._events.aclose()
        content = self.response.content
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout_at(min(deadline, loop.time() + 1.0)):
                drained = 0
                while not content.at_eof() and drained < _ERROR_BODY_LIMIT:
                    chunk = await content.readany()
                    if not chunk:
                        break
                    drained += len(chunk)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return  # the caller closes the response, dropping the connection
        if content.at_eof():
            self.response.release()

    def _fail(self, message: str) -> ChatGPTStreamError:
        self._ended = True
        return ChatGPTStreamError(self._redact(message), partial_text=self.text)

    def _handle(self, event: SSEEvent) -> str | None:
        """Answer text in ``event`` ("" for none); None for the end of the stream."""
        data = event.data.strip()
        if data == "[DONE]":
            return None
        if not data:
            return ""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._fail(f"the server sent a malformed stream event: {data[:200]!r}") from None
        if not isinstance(chunk, dict):
            raise self._fail(f"the server sent an unexpected stream event: {data[:200]!r}")
        if "error" in chunk or event.event == "error":
            detail = _error_detail(data.encode()) or "unknown error"
            raise self._fail(f"the server reported an error during the answer: {detail}")
        choices = chunk.get("choices")
        if choices is None:
            return ""  # e.g. keep-alive or usage-only chunks
        if not isinstance(choices, list):
            raise self._fail(f"the server sent an unexpected stream event: {data[:200]!r}")
        text = ""
        for choice in choices:
            if not isinstance(choice, dict):
                raise self._fail(f"the server sent an unexpected stream event: {data[:200]!r}")
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise self._fail(f"the server sent an unexpected stream event: {data[:200]!r}")
            content = delta.get("content")
            if isinstance(content, str):
                text += content
            elif content is not None:
                raise self._fail(f"the server sent an unexpected stream event: {data[:200]!r}")
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return text

    async def _read_json(self) -> str | None:
        """A server that ignored ``stream: true`` and sent the whole completion."""
        self._ended = True
        try:
            raw = await self.response.read()
        except (aiohttp.ClientError, OSError) as exc:
            raise _StreamBroken(
                self._redact(f"the connection broke during the answer: {_describe(exc)}")
            ) from exc
        detail = _error_detail(raw) if b'"error"' in raw else ""
        if detail:
            raise self._fail(f"the server reported an error: {detail}")
        try:
            completion = json.loads(raw)
            choice = completion["choices"][0]
            content = choice["message"].get("content") or ""
            if not isinstance(content, str):
                raise TypeError(type(content).__name__)
        except (ValueError, LookupError, TypeError, AttributeError):
            raise self._fail(f"the server sent an unexpected completion: {raw[:200]!r}") from None
        self.finish_reason = str(choice.get("finish_reason") or "stop")
        self.text = content
        return content or None


def _display_host(url: str) -> str:
    try:
        parsed = URL(url)
    except ValueError:
        return "the server"
    host = parsed.host or "the server"
    return f"{host}:{parsed.port}" if parsed.port and not parsed.is_default_port() else host


def _error_detail(raw: bytes) -> str:
    """The human part of an error body: OpenAI's ``{"error": {"message": ...}}`` and kin."""
    text = raw.decode("utf-8", errors="replace").strip()
    if not text:
        return ""
    try:
        body = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:300]
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, str):
            return error[:300]
        if isinstance(error, dict):
            for key in ("message", "detail", "msg"):
                value = error.get(key)
                if isinstance(value, str) and value:
                    return value[:300]
                if value:
                    return json.dumps(value)[:300]
    return " ".join(text.split())[:300]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the server closed it mid-response"
    return str(exc) or type(exc).__name__


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def _retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(float(value) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(seconds, 0.0)
