"""``ChatCompletionsBackend``: the prompt from the history store, the request with its
retries and the streamed answer (see the package docstring for the failure handling)."""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any, NamedTuple

import aiohttp

from core import tokens
from core.backends.answer import Pacer, answer_limit
from core.backends.base import Backend
from core.backends.call import (
    DEFAULT_MAX_ANSWER_SECONDS,
    Call,
    RetryableFailure,
    StreamBroken,
    check_limits,
)
from core.backends.chat_completions.stream import AnswerStream
from core.backends.chat_completions.transport import Opened, response_error, retryable
from core.errors import ChatGPTConnectionError, ChatGPTError, ChatGPTStreamError
from core.http import Redactor, Secret, join_url, redact_url
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
    token count, the conversation of the parent message (None if unknown), how many
    history messages the prompt carries (neither the system message nor the new one)
    and the whole prompt's size in tokens."""

    messages: list[dict[str, str]]
    user_tokens: int
    conversation_id: str | None
    history_messages: int
    tokens: int


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
    keys (``timeout`` and ``max_answer_seconds``: see ``core.backends.call``).
    ``history`` keeps the message tree (default: in memory); with
    ``save_history=False`` finished turns are not written (the chat service commits them
    itself). ``session`` is borrowed, never closed; without one the backend creates and
    owns its own. After ``aclose()`` every call raises ``ChatGPTError``. Subclasses
    that learn their URL late override ``_base_url()``.
    """

    #: Backoff without ``Retry-After``: ``retry_base_delay * 2**n`` plus up to
    #: ``retry_base_delay`` of jitter, capped at ``retry_max_delay`` (seconds).
    retry_base_delay: float = 0.5
    retry_max_delay: float = 20.0
    #: A ``Retry-After`` longer than this (or than ``timeout``) is not waited for: the
    #: rate-limit error is raised.
    max_retry_wait: float = 60.0
    #: Added to errors that suggest a wrong URL.
    url_hint = "is base_url right? OpenAI-compatible servers usually end in /v1"
    #: The server in errors before its URL is known.
    server_name = "the server"

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
        max_answer_seconds: float | None = DEFAULT_MAX_ANSWER_SECONDS,
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
        check_limits(timeout, max_answer_seconds)
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
        self.max_answer_seconds = max_answer_seconds
        #: The longest answer accepted, in characters (see ``core.backends.answer``).
        self.max_answer_chars = answer_limit(max_response_tokens)
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.history: HistoryStore = history if history is not None else InMemoryHistoryStore()
        self.save_history = save_history
        self.headers: dict[str, str] = dict(headers or {})
        self.encoding = tokens.encoding_for_model(model)
        self._session = session
        self._owns_session = session is None
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._closed = False

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
        """``count_tokens`` off the event loop for long texts, and for any text that
        would load tiktoken first (a few hundred ms, once)."""
        if len(text) > LARGE_TEXT or not tokens.cheap_to_count(text, self.encoding):
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

    def _new_call(self, timeout: float | None) -> Call:
        return Call(
            timeout=self.timeout if timeout is None else timeout,
            max_answer_seconds=self.max_answer_seconds,
            logger=logger,
            redact=self._redact,
            hint=self.url_hint,
            url=_completions_url(self.base_url) if self.base_url else "",
            name=self.server_name,
        )

    async def stream_message(
        self,
        text: str,
        *,
        conversation_id: str | None = None,
        parent_message_id: str | None = None,
        message_id: str | None = None,
        timeout: float | None = None,
    ) -> AsyncIterator[ChatResponse]:
        if self._closed:
            raise self._closed_error()
        check_limits(timeout, None)
        call = self._new_call(timeout)
        user_id = message_id or str(uuid.uuid4())
        answer_id = str(uuid.uuid4())

        # The history lookup (a database), the tokenizer's first load and whatever
        # subclasses add (LocalBackend counts with its model) are bounded by the call's
        # max_answer_seconds; only waits on the server are bounded by timeout.
        prompt = await call.within_total(
            self._build_messages(text, parent_message_id, call), "preparing the prompt"
        )
        # A reply to a known message continues its conversation.
        conversation_id = conversation_id or prompt.conversation_id or str(uuid.uuid4())
        body = self._request_body(prompt.messages)
        model = str(body.get("model") or self.model)

        def partial(answer: str, done: bool) -> ChatResponse:
            return ChatResponse(
                text=answer,
                conversation_id=conversation_id,
                message_id=answer_id,
                parent_message_id=user_id,
                model=model,
                done=done,
                prompt_messages=prompt.history_messages if done else None,
                prompt_tokens=prompt.tokens if done else None,
            )

        if self._semaphore.locked():  # a free slot is taken at once, with no timer
            await call.within_total(
                self._semaphore.acquire(),
                f"waiting for a free request slot (max_concurrency={self.max_concurrency})",
            )
        else:
            await self._semaphore.acquire()
        try:
            opened = await self._open_with_retries(body, call)
            stream = opened.stream
            pacer = Pacer()
            try:
                got = opened.has_text
                while got is not None:
                    now = call.now()
                    if pacer.due(stream.answer, now):
                        pacer.shown(stream.answer, now)
                        yield partial(stream.text, done=False)
                    got = await stream.advance(pacer.flush_at(stream.answer))
                await stream.release()  # keep the connection for the next request
            except StreamBroken as exc:  # too late to retry: answer text is out
                raise ChatGPTStreamError(str(exc), partial_text=stream.text) from exc.__cause__
            except ChatGPTError as exc:
                exc.partial_text = exc.partial_text or stream.text
                raise
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
                        token_count=prompt.user_tokens,
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

    async def _build_messages(self, text: str, parent_message_id: str | None, call: Call) -> Prompt:
        """The prompt; the caller bounds this by the call's end, and subclasses may use
        ``call`` for the requests they make."""
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
        # Per-message counts include each message's overhead (count_message_tokens).
        prompt_tokens = (
            tokens.REPLY_PRIMING_TOKENS
            + system_tokens
            + sum(m.token_count for m in chain)
            + user_tokens
        )
        return Prompt(messages, user_tokens, parent_conversation, len(chain), prompt_tokens)

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

    async def _open_with_retries(self, body: dict[str, Any], call: Call) -> Opened:
        # Subclasses may start their server here: a wait on the server like any other.
        base = await call.wait(self._base_url(), "waiting for the server to start")
        url = _completions_url(base)
        call.target(url)
        try:
            opened: Opened = await call.attempts(
                lambda: self._attempt(url, body, call),
                max_retries=self.max_retries,
                base_delay=self.retry_base_delay,
                max_delay=self.retry_max_delay,
                max_wait=self.max_retry_wait,
            )
        except RetryableFailure as failure:
            raise failure.error from failure.__cause__
        return opened

    async def _attempt(self, url: str, body: dict[str, Any], call: Call) -> Opened:
        """One request: send it, check the status, read up to the first answer text."""
        session = self._get_session()
        response: aiohttp.ClientResponse | None = None
        call.sending("POST", url)
        try:
            try:
                response = await call.wait(
                    session.post(url, json=body, headers=self._request_headers()),
                    "waiting for the response",
                )
            except (aiohttp.ClientError, OSError) as exc:
                raise RetryableFailure(
                    call.fail(ChatGPTConnectionError, "could not connect", str(exc), prep="to")
                ) from exc
            call.received(response)
            if response.status != 200:
                error, retry_after = await response_error(
                    response, call, has_api_key=self._api_key is not None
                )
                if retryable(response.status):
                    raise RetryableFailure(error, retry_after)
                raise error
            if response.content_type == "text/html":
                raise call.fail(
                    ChatGPTError,
                    "a web page instead of an event stream",
                    hint=True,
                    status_code=response.status,
                    status_text=response.reason,
                )
            stream = AnswerStream(response, call, self.max_answer_chars)
            try:
                has_text = await stream.first_text()
            except StreamBroken as exc:  # no answer text yet: worth another try
                raise RetryableFailure(ChatGPTStreamError(str(exc))) from exc.__cause__
            return Opened(response, stream, has_text)
        except BaseException:
            if response is not None:
                response.close()
            raise


@functools.lru_cache(maxsize=64)
def _completions_url(base: str) -> str:
    return join_url(base, "/chat/completions")  # parsed once, not on every turn
