"""``ChatGPTAPI``: the async counterpart of the ``chatgpt`` npm package's client (v2/v3).

It speaks the ChatGPT web app's own protocol: ``GET {api_base_url}/auth/session`` turns
the browser's session cookie into an access token, ``POST
{backend_api_base_url}/conversation`` streams an answer as server-sent events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from core.backends.answer import DEFAULT_ANSWER_CHARS, Pacer
from core.backends.base import Backend, collect
from core.backends.call import (
    DEFAULT_MAX_ANSWER_SECONDS,
    Call,
    EventReader,
    RetryableFailure,
    StreamBroken,
    check_limits,
)
from core.backends.chatgpt_web.conversation import ChatGPTConversation
from core.backends.chatgpt_web.protocol import AnswerStream, StreamProblem
from core.backends.chatgpt_web.transport import (
    CLEARANCE_COOKIE,
    DEFAULT_USER_AGENT,
    SESSION_COOKIE,
    browser_headers,
    response_error,
)
from core.errors import (
    ChatGPTAuthError,
    ChatGPTConnectionError,
    ChatGPTError,
    ChatGPTRateLimitError,
    ChatGPTStreamError,
)
from core.http import Redactor, join_url, parse_retry_after
from core.markdown import to_plain_text
from core.sse import SSEEvent
from core.types import ChatResponse, ProgressCallback

logger = logging.getLogger("core.chatgpt_web")

DEFAULT_MODEL = "text-davinci-002-render-sha"
MODERATION_MODEL = "text-moderation-playground"
AUTH_TIMEOUT = 60.0  # seconds for one /auth/session request
#: The most a session or moderation response body may have (bytes).
SMALL_BODY_LIMIT = 1 << 20
#: Answers longer than this (characters) are turned into plain text in a worker thread.
LARGE_TEXT = 20_000
URL_HINT = "is backend_api_base_url right?"


@dataclass(frozen=True, slots=True)
class ModerationResult:
    flagged: bool
    blocked: bool
    moderation_id: str


class ChatGPTAPI(Backend):
    """A client of the ChatGPT web backend, authenticated by the browser's cookies.

    ``session_token`` is the ``__Secure-next-auth.session-token`` cookie and
    ``clearance_token`` the Cloudflare ``cf_clearance`` cookie; ``user_agent`` must be
    the user agent of the browser they were copied from. Extra options: ``max_retries``
    (429/5xx/connection errors before any answer byte, honouring Retry-After),
    ``timeout`` (the default of each call's ``timeout``: seconds of silence allowed from
    the server; None: no limit, like the seed package), ``max_answer_seconds`` (the
    most one call may take in all; None: no limit) and ``session`` (an aiohttp session
    to use instead of one owned by this client). See ``core.backends.call``.

    Every request and response status is logged at DEBUG on the ``core.chatgpt_web``
    logger, with the URL redacted; ``debug=True`` adds the headers (tokens and cookies
    masked) and sets that logger to DEBUG unless its level was configured.
    """

    #: A ``Retry-After`` longer than this (or than the call's timeout) is not waited for.
    max_retry_wait: float = 60.0
    #: The longest answer accepted, in characters (see ``core.backends.answer``).
    max_answer_chars: int = DEFAULT_ANSWER_CHARS

    def __init__(
        self,
        *,
        session_token: str,
        clearance_token: str,
        access_token: str | None = None,
        access_token_ttl: float = 3600.0,
        api_base_url: str = "https://chat.openai.com/api",
        backend_api_base_url: str = "https://chat.openai.com/backend-api",
        markdown: bool = True,
        user_agent: str = DEFAULT_USER_AGENT,
        headers: Mapping[str, str] | None = None,
        debug: bool = False,
        model: str = DEFAULT_MODEL,
        max_retries: int = 0,
        timeout: float | None = None,
        max_answer_seconds: float | None = DEFAULT_MAX_ANSWER_SECONDS,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not session_token or not session_token.strip():
            raise ChatGPTError("ChatGPT invalid session token: none given", status_code=401)
        if not clearance_token or not clearance_token.strip():
            raise ChatGPTError("ChatGPT invalid clearance token: none given", status_code=401)
        check_limits(timeout, max_answer_seconds)
        # The default for calls that pass no ``timeout`` (the seed had none: a stalled
        # stream hung forever; a bot wants a bound).
        self._timeout = timeout
        self._max_answer_seconds = max_answer_seconds
        self._session_token = session_token
        self._clearance_token = clearance_token
        self._access_token_ttl = access_token_ttl
        self._api_base_url = api_base_url.rstrip("/")
        self._backend_api_base_url = backend_api_base_url.rstrip("/")
        self._markdown = markdown
        self._user_agent = user_agent
        self._headers = browser_headers(user_agent, headers)
        self._debug = debug
        self._model = model
        self._max_retries = max_retries
        self._session = session
        self._owns_session = session is None
        self._redact = Redactor([session_token, clearance_token, access_token])
        self._user: dict[str, Any] | None = None
        self._access_token: str | None = None
        self._expires_at = 0.0
        self._generation = 0  # bumped by close_session: late refreshes are not cached
        self._refresh: asyncio.Future[str] | None = None
        if access_token:
            self._store_token(access_token)
        if debug and logger.level == logging.NOTSET:
            logger.setLevel(logging.DEBUG)

    def __repr__(self) -> str:
        return (
            f"ChatGPTAPI(api_base_url={self._api_base_url!r}, "
            f"backend_api_base_url={self._backend_api_base_url!r}, model={self._model!r})"
        )

    @property
    def user(self) -> dict[str, Any] | None:
        """The ``user`` object of the last ``/auth/session`` response."""
        return self._user

    @property
    def session_token(self) -> str:
        return self._session_token

    @property
    def clearance_token(self) -> str:
        return self._clearance_token

    @property
    def user_agent(self) -> str:
        return self._user_agent

    # -- auth --------------------------------------------------------------------

    async def init_session(self) -> None:
        await self.refresh_session()

    ensure_auth = init_session

    async def refresh_session(self) -> str:
        """The cached access token, or a fresh one; concurrent callers share one request."""
        if self._access_token is not None and time.monotonic() < self._expires_at:
            return self._access_token
        if self._refresh is None:
            task = asyncio.ensure_future(self._fetch_access_token(self._generation))
            task.add_done_callback(self._refresh_done)
            self._refresh = task
        return await asyncio.shield(self._refresh)

    refresh_access_token = refresh_session

    async def get_is_authenticated(self) -> bool:
        try:
            await self.refresh_session()
        except Exception:
            return False
        return True

    async def close_session(self) -> None:
        """Forget the access token (a refresh in flight is not cached either)."""
        self._access_token = None
        self._generation += 1
        self._refresh = None

    async def reset_session(self) -> None:
        await self.close_session()
        await self.init_session()

    def _store_token(self, token: str) -> None:
        self._redact.add(token)
        self._access_token = token
        self._expires_at = time.monotonic() + self._access_token_ttl

    def _refresh_done(self, task: asyncio.Future[str]) -> None:
        if self._refresh is task:
            self._refresh = None
        if not task.cancelled():
            task.exception()  # retrieved: a refresh nobody waits for any more is no warning

    def _new_call(self, url: str, timeout: float | None, total: float | None) -> Call:
        return Call(
            timeout=timeout,
            max_answer_seconds=total,
            logger=logger,
            redact=self._redact,
            hint=URL_HINT,
            url=url,
        )

    async def _fetch_access_token(self, generation: int) -> str:
        url = join_url(self._api_base_url, "/auth/session")
        cookie = (
            f"{CLEARANCE_COOKIE}={self._clearance_token}; {SESSION_COOKIE}={self._session_token}"
        )
        headers = {**self._headers, "accept": "*/*", "cookie": cookie}
        call = self._new_call(url, AUTH_TIMEOUT, AUTH_TIMEOUT)
        call.sending("GET")
        self._log_headers(headers)
        try:
            async with await call.wait(
                self._http().get(url, headers=headers), "waiting for the session"
            ) as response:
                call.received(response)
                status, reason = response.status, response.reason
                if status >= 400:
                    raise await response_error(response, call)
                raw = await call.read_body(response, SMALL_BODY_LIMIT)
        except (aiohttp.ClientError, OSError) as exc:
            raise self._connection_error(call, exc) from exc
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise call.fail(
                ChatGPTError,
                "unexpected answer",
                "the session response is not JSON",
                status_code=status,
                status_text=reason,
            ) from exc
        data = data if isinstance(data, dict) else {}
        error, token = data.get("error"), data.get("accessToken")
        if error == "RefreshAccessTokenError":
            raise call.fail(
                ChatGPTAuthError,
                "Unauthorized",
                "the session token has expired (RefreshAccessTokenError);"
                f" copy a fresh {SESSION_COOKIE} cookie from the browser",
                status_code=status,
                status_text=reason,
            )
        if error or not isinstance(token, str) or not token:
            detail = f"{error}" if error else "the session response has no accessToken"
            raise call.fail(
                ChatGPTAuthError,
                "Unauthorized",
                f"{detail} (is session_token right and current?)",
                status_code=status,
                status_text=reason,
            )
        self._redact.add(token)
        if generation == self._generation:
            self._store_token(token)
            if isinstance(data.get("user"), dict):
                self._user = data["user"]
        return token

    # -- conversation ------------------------------------------------------------

    async def send_message(
        self,
        text: str,
        *,
        conversation_id: str | None = None,
        parent_message_id: str | None = None,
        message_id: str | None = None,
        action: str = "next",
        timeout: float | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> ChatResponse:
        stream = self.stream_message(
            text,
            conversation_id=conversation_id,
            parent_message_id=parent_message_id,
            message_id=message_id,
            action=action,
            timeout=timeout,
        )
        return await collect(stream, on_progress)

    async def stream_message(
        self,
        text: str,
        *,
        conversation_id: str | None = None,
        parent_message_id: str | None = None,
        message_id: str | None = None,
        action: str = "next",
        timeout: float | None = None,
    ) -> AsyncGenerator[ChatResponse, None]:
        """Partial answers (text so far, ``done=False``, at a bounded rate), then the final
        one (``done=True``, rendered in full when ``markdown`` is off).

        Close the generator (``contextlib.aclosing``) when leaving it early: that aborts
        the HTTP request.
        """
        message_id = message_id or str(uuid.uuid4())
        body: dict[str, Any] = {
            "action": action,
            "messages": [
                {
                    "id": message_id,
                    "role": "user",
                    "content": {"content_type": "text", "parts": [text]},
                }
            ],
            "model": self._model,
            "parent_message_id": parent_message_id or str(uuid.uuid4()),
        }
        if conversation_id:
            body["conversation_id"] = conversation_id
        url = join_url(self._backend_api_base_url, "/conversation")
        check_limits(timeout, None)
        call = self._new_call(
            url, self._timeout if timeout is None else timeout, self._max_answer_seconds
        )
        response = await self._post(body, "text/event-stream", call)
        answer = AnswerStream(self.max_answer_chars)
        answer.conversation_id = conversation_id
        events = EventReader(call, response)
        pending: deque[SSEEvent] = deque()
        pacer = Pacer()

        async def reply(done: bool) -> ChatResponse:
            return ChatResponse(
                text=await self._render(answer.text),
                conversation_id=answer.conversation_id,
                message_id=answer.message_id or "",
                parent_message_id=message_id,
                model=self._model,
                done=done,
            )

        try:
            while True:
                if pending:
                    try:
                        changed = answer.feed(pending.popleft())
                    except StreamProblem as exc:
                        raise call.fail(ChatGPTStreamError, exc.what, exc.detail) from None
                    if answer.done:
                        break
                    if not changed:
                        continue
                else:
                    if events.ended:
                        raise call.fail(StreamBroken, "answer stream ended before [DONE]")
                    shown = answer.message_id is not None and len(answer.answer) > 0
                    batch = await events.next_batch(
                        pacer.flush_at(answer.answer) if shown else None
                    )
                    if batch is not None:
                        pending.extend(batch)
                        continue
                now = call.now()
                if answer.message_id and len(answer.answer) and pacer.due(answer.answer, now):
                    started = time.perf_counter()
                    partial = await reply(done=False)
                    pacer.shown(answer.answer, now, time.perf_counter() - started)
                    yield partial
            if not answer.message_id:
                raise call.fail(ChatGPTStreamError, "answer stream carried no answer message")
        except ChatGPTError as exc:
            exc.partial_text = (await reply(done=False)).text
            self._log_error(exc)
            raise
        finally:
            if response.content.at_eof():
                response.release()  # the connection can be reused
            else:
                response.close()  # aborts the request: the server sees the disconnect
        yield await reply(done=True)

    async def _render(self, text: str) -> str:
        """``text`` as the caller asked for it: Markdown, or plain text (off the event
        loop when long: markdown-it takes about a second per megabyte)."""
        if self._markdown:
            return text
        if len(text) > LARGE_TEXT:
            return await asyncio.to_thread(to_plain_text, text)
        return to_plain_text(text)

    def get_conversation(
        self, conversation_id: str | None = None, parent_message_id: str | None = None
    ) -> ChatGPTConversation:
        return ChatGPTConversation(
            self, conversation_id=conversation_id, parent_message_id=parent_message_id
        )

    async def send_moderation(self, text: str, *, timeout: float | None = None) -> ModerationResult:
        url = join_url(self._backend_api_base_url, "/moderations")
        check_limits(timeout, None)
        call = self._new_call(
            url, self._timeout if timeout is None else timeout, self._max_answer_seconds
        )
        body = {"input": text, "model": MODERATION_MODEL}
        response = await self._post(body, "*/*", call)
        try:
            raw = await call.read_body(response, SMALL_BODY_LIMIT)
        finally:
            response.release()
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise call.fail(ChatGPTError, "unexpected answer", "the response is not JSON") from exc
        data = data if isinstance(data, dict) else {}
        return ModerationResult(
            flagged=bool(data.get("flagged")),
            blocked=bool(data.get("blocked")),
            moderation_id=str(data.get("moderation_id") or ""),
        )

    # -- HTTP --------------------------------------------------------------------

    async def aclose(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),  # cookies are sent explicitly
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
            )
        return self._session

    async def _post(self, body: dict[str, Any], accept: str, call: Call) -> aiohttp.ClientResponse:
        """A 2xx response to an authenticated POST to the call's URL; the caller
        releases it. 429, 5xx and connection errors are retried ``max_retries`` times."""
        data = json.dumps(body)
        try:
            response: aiohttp.ClientResponse = await call.attempts(
                lambda: self._attempt(data, accept, call),
                max_retries=self._max_retries,
                base_delay=0.5,
                max_delay=8.0,
                max_wait=self.max_retry_wait,
            )
        except RetryableFailure as failure:
            self._log_error(failure.error)
            raise failure.error from failure.__cause__
        except ChatGPTError as error:
            self._log_error(error)
            raise
        return response

    async def _attempt(self, data: str, accept: str, call: Call) -> aiohttp.ClientResponse:
        """One try: a 401 drops the access token and sends once more with a fresh one."""
        retried_auth = False
        while True:
            token = await call.wait(self.refresh_session(), "waiting for an access token")
            headers = {
                **self._headers,
                "authorization": f"Bearer {token}",
                "accept": accept,
                "content-type": "application/json",
                "cookie": f"{CLEARANCE_COOKIE}={self._clearance_token}",
            }
            call.sending("POST")
            self._log_headers(headers)
            try:
                response = await call.wait(
                    self._http().post(call.url, data=data, headers=headers),
                    "waiting for the response",
                )
            except (aiohttp.ClientError, OSError) as exc:
                raise RetryableFailure(self._connection_error(call, exc)) from exc
            call.received(response)
            if response.status < 400:
                return response
            try:
                error = await response_error(response, call)
            finally:
                response.close()
            if response.status == 401 and not retried_auth:
                retried_auth = True
                if self._access_token == token:
                    self._access_token = None
                continue
            if isinstance(error, ChatGPTRateLimitError) or response.status >= 500:
                raise RetryableFailure(error, parse_retry_after(response.headers))
            raise error

    def _connection_error(self, call: Call, exc: BaseException) -> ChatGPTError:
        reason = self._redact(str(exc)) or type(exc).__name__
        return call.fail(ChatGPTConnectionError, "could not connect", reason, prep="to")

    def _log_headers(self, headers: Mapping[str, str]) -> None:
        if self._debug:
            logger.debug("headers=%s", self._redact.headers(headers))

    def _log_error(self, error: ChatGPTError) -> None:
        logger.debug("%s: %s", type(error).__name__, self._redact(str(error)))
