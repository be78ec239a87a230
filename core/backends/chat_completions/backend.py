"""``ChatCompletionsBackend``: the prompt from the history store, the request with its
retries and the streamed answer (see the package docstring for the failure handling)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import aiohttp
from tenacity import RetryCallState

from core import tokens
from core.backends.base import Backend
from core.backends.chat_completions.stream import AnswerStream, StreamBroken
from core.backends.chat_completions.transport import (
    RETRY_STATUSES,
    Opened,
    RetryableFailure,
    display_host,
    response_error,
    retry_policy,
)
from core.errors import (
    ChatGPTConnectionError,
    ChatGPTError,
    ChatGPTStreamError,
    ChatGPTTimeoutError,
)
from core.http import Redactor, Secret, redact_url
from core.store.history import HistoryStore, InMemoryHistoryStore
from core.types import ChatResponse, StoredMessage

__all__ = ["DEFAULT_SYSTEM_MESSAGE", "ChatCompletionsBackend", "PromptTooLongError"]

# Named as before the split into modules, so logging configured by name still applies.
logger = logging.getLogger("core.backends.chat_completions")

DEFAULT_SYSTEM_MESSAGE = "You are a helpful assistant."
#: Texts longer than this (in characters) are counted in a worker thread: tokenizing
#: 1 MB takes ~0.4 s, which would stall every other chat on the event loop.
LARGE_TEXT = 20_000


class Prompt(NamedTuple):
    """What ``_build_messages`` gives: the request's messages, the new user message's
    token count and the conversation of the parent message (None if unknown)."""

    messages: list[dict[str, str]]
    user_tokens: int
    conversation_id: str | None


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


class ChatCompletionsBackend(Backend):
    """An OpenAI-compatible Chat Completions server, streamed over SSE with aiohttp.

    The keyword arguments up to ``max_retries`` are the ``chat_completions`` config
    keys. ``history`` keeps the message tree (default: in memory); with
    ``save_history=False`` finished turns are not written (the chat service commits them
    itself). ``session`` is borrowed, never closed; without one the backend creates and
    owns its own. After ``aclose()`` every call raises ``ChatGPTError``. Subclasses
    that learn their URL late override ``_base_url()``.
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
        self._api_key = Secret(api_key) if api_key else None
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
        self._closed = False
        self._host = display_host(base_url) if base_url else "the server"

    def __repr__(self) -> str:
        # base_url may carry credentials too (user:password@, ?api-key=).
        return (
            f"{type(self).__name__}(base_url={redact_url(self.base_url)!r}, "
            f"model={self.model!r}, api_key={'<set>' if self._api_key else None})"
        )

    def count_tokens(self, text: str) -> int:
        """What ``text`` adds to a prompt, in the tokenizer this backend budgets with."""
        return tokens.count_message_tokens(text, encoding=self.encoding)

    async def _count_tokens_async(self, text: str) -> int:
        """``count_tokens`` off the event loop for long texts."""
        if len(text) > LARGE_TEXT:
            return await asyncio.to_thread(self.count_tokens, text)
        return self.count_tokens(text)

    @property
    def has_api_key(self) -> bool:
        return self._api_key is not None

    async def _base_url(self) -> str:
        """Where the server lives; subclasses that start their own server override this."""
        return self.base_url

    async def aclose(self) -> None:
        # Without the flag a later call would quietly open a new session nobody closes.
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()  # a borrowed one is left to its owner

    def _closed_error(self) -> ChatGPTError:
        return ChatGPTError(f"the {type(self).__name__} was closed (aclose) and cannot be used")

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
        if self._closed:
            raise self._closed_error()

        try:
            # The history lookup (a database), the tokenizer's first load and whatever
            # subclasses add (LocalBackend starts its model) all count against the call.
            async with asyncio.timeout_at(deadline):
                messages, user_tokens, parent_conversation = await self._build_messages(
                    text, parent_message_id, deadline
                )
        except TimeoutError:
            raise ChatGPTTimeoutError(f"timed out after {limit:g} s preparing the prompt") from None
        # A reply to a known message continues its conversation.
        conversation_id = conversation_id or parent_conversation or str(uuid.uuid4())
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
                    except StreamBroken as exc:  # too late to retry: answer text is out
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
                        token_count=await self._count_tokens_async(answer),
                    ),
                ]
            )
        yield partial(answer, done=True)

    async def _build_messages(
        self, text: str, parent_message_id: str | None, deadline: float
    ) -> Prompt:
        """The prompt; the caller bounds this by ``deadline`` (the loop time the whole
        call must end by), which subclasses may pass on."""
        if not self._tokenizer_ready:  # the first load takes a few hundred ms
            await asyncio.to_thread(tokens.get_encoder, self.encoding)
            self._tokenizer_ready = True
        system = self.system_message
        system_tokens = await self._count_tokens_async(system) if system else 0
        user_tokens = await self._count_tokens_async(text)
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
        parent_conversation: str | None = None
        if parent_message_id:
            chain = await self.history.history(parent_message_id, budget)
            if chain and chain[-1].id == parent_message_id:
                parent_conversation = chain[-1].conversation_id or None
        # A trimmed chain that starts with an answer lost its question: drop it too, as
        # strict chat templates (llama.cpp's Mistral, Gemma) demand user-first turns.
        while chain and chain[0].role == "assistant" and chain[0].parent_id is not None:
            chain.pop(0)
        messages: list[dict[str, str]] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.text} for m in chain)
        messages.append({"role": "user", "content": text})
        return Prompt(messages, user_tokens, parent_conversation)

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
        if self._closed:
            raise self._closed_error()
        if self._session is None or self._session.closed:
            if not self._owns_session:
                raise ChatGPTError("the aiohttp session passed to this backend is closed")
            self._session = self._new_session()
        return self._session

    def _new_session(self) -> aiohttp.ClientSession:
        """The session the backend owns; subclasses may tune its connector."""
        # No aiohttp timeouts: the per-call deadline governs every await.
        return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    def _request_headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", **self.headers}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get()}"
        return headers

    def _redact(self, text: str) -> str:
        # Built per call: ``headers`` is public and may change after construction.
        api_key = self._api_key.get() if self._api_key is not None else None
        return Redactor([api_key], headers=self.headers)(text)

    async def _open_with_retries(
        self, body: dict[str, Any], deadline: float, limit: float
    ) -> Opened:
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

        retrying = retry_policy(
            deadline=deadline,
            max_retries=self.max_retries,
            base_delay=self.retry_base_delay,
            max_delay=self.retry_max_delay,
            max_wait=self.max_retry_wait,
            before_sleep=log_retry,
        )
        try:
            async with asyncio.timeout_at(deadline):  # subclasses may start a server here
                url = (await self._base_url()).rstrip("/") + "/chat/completions"
        except TimeoutError:
            raise ChatGPTTimeoutError(f"the server was not ready within {limit:g} s") from None
        self._host = display_host(url)
        try:
            opened: Opened = await retrying(self._attempt, url, body, deadline, limit)
        except RetryableFailure as failure:
            raise failure.error from failure.__cause__
        return opened

    async def _attempt(
        self, url: str, body: dict[str, Any], deadline: float, limit: float
    ) -> Opened:
        """One request: send it, check the status, read up to the first answer text."""
        session = self._get_session()
        response: aiohttp.ClientResponse | None = None
        stream: AnswerStream | None = None
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    response = await session.post(url, json=body, headers=self._request_headers())
                except TimeoutError:
                    raise
                except (aiohttp.ClientError, OSError) as exc:
                    raise RetryableFailure(
                        ChatGPTConnectionError(self._redact(f"could not reach {self._host}: {exc}"))
                    ) from exc
                if response.status != 200:
                    error, retry_after = await response_error(
                        response,
                        host=self._host,
                        redact=self._redact,
                        has_api_key=self._api_key is not None,
                    )
                    if response.status in RETRY_STATUSES or response.status >= 500:
                        raise RetryableFailure(error, retry_after)
                    raise error
                if response.content_type == "text/html":
                    raise ChatGPTError(
                        f"{self._host} answered with a web page, not an event stream: is "
                        "base_url right? OpenAI-compatible servers usually end in /v1",
                        status_code=response.status,
                        status_text=response.reason,
                    )
                stream = AnswerStream(response, self._redact)
                try:
                    first = await stream.next_delta()
                except StreamBroken as exc:  # no answer text yet: worth another try
                    raise RetryableFailure(ChatGPTStreamError(str(exc))) from exc.__cause__
                return Opened(response, stream, first)
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
