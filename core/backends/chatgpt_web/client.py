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
from collections.abc import AsyncGenerator, Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from core.backends.base import Backend, collect
from core.backends.chatgpt_web.conversation import ChatGPTConversation
from core.backends.chatgpt_web.protocol import AnswerStream
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
    ChatGPTTimeoutError,
)
from core.http import Redactor, parse_retry_after
from core.markdown import to_plain_text
from core.sse import SSEParser
from core.types import ChatResponse, ProgressCallback

logger = logging.getLogger("core.chatgpt_web")

DEFAULT_MODEL = "text-davinci-002-render-sha"
MODERATION_MODEL = "text-moderation-playground"
AUTH_TIMEOUT = 60.0  # seconds for one /auth/session request
_T = TypeVar("_T")


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
    (429/5xx/connection errors before any answer byte, honouring Retry-After) and
    ``session`` (an aiohttp session to use instead of one owned by this client).

    ``debug=True`` logs every request and response status on the ``core.chatgpt_web``
    logger (set to DEBUG unless its level was configured), with tokens and cookies
    redacted.
    """

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
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        if not session_token or not session_token.strip():
            raise ChatGPTError("ChatGPT invalid session token: none given", status_code=401)
        if not clearance_token or not clearance_token.strip():
            raise ChatGPTError("ChatGPT invalid clearance token: none given", status_code=401)
        # The default for calls that pass no ``timeout`` (the seed had none: a stalled
        # stream hung forever; a bot wants a bound).
        self._timeout = timeout
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

    async def _fetch_access_token(self, generation: int) -> str:
        url = f"{self._api_base_url}/auth/session"
        cookie = (
            f"{CLEARANCE_COOKIE}={self._clearance_token}; {SESSION_COOKIE}={self._session_token}"
        )
        headers = {**self._headers, "accept": "*/*", "cookie": cookie}
        what = "auth token refresh"
        self._log_request("GET", url, headers)
        try:
            timeout = aiohttp.ClientTimeout(total=AUTH_TIMEOUT)
            async with self._http().get(url, headers=headers, timeout=timeout) as response:
                self._log_response("GET", url, response)
                status, reason = response.status, response.reason
                if status >= 400:
                    raise await response_error(response, what, self._redact)
                data = await response.json(content_type=None)
        except TimeoutError as exc:
            raise ChatGPTTimeoutError(f"ChatGPT {what} timed out") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise self._connection_error(what, url, exc) from exc
        except ValueError as exc:
            raise ChatGPTError(f"ChatGPT {what} failed: the session response is not JSON") from exc
        data = data if isinstance(data, dict) else {}
        error, token = data.get("error"), data.get("accessToken")
        prefix = "ChatGPT failed to refresh auth token: Unauthorized"
        if error == "RefreshAccessTokenError":
            raise ChatGPTAuthError(
                f"{prefix}: the session token has expired (RefreshAccessTokenError);"
                f" copy a fresh {SESSION_COOKIE} cookie from the browser",
                status_code=status,
                status_text=reason,
            )
        if error or not isinstance(token, str) or not token:
            detail = f"{error}" if error else "the session response has no accessToken"
            raise ChatGPTAuthError(
                self._redact(f"{prefix}: {detail}"), status_code=status, status_text=reason
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
        """Partial answers (text so far, ``done=False``), then the final one (``done=True``).

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
        deadline = _deadline(self._timeout if timeout is None else timeout)
        url = f"{self._backend_api_base_url}/conversation"
        response = await self._post(url, body, "text/event-stream", "conversation", deadline)
        answer, parser = AnswerStream(), SSEParser()
        answer.conversation_id = conversation_id

        def reply(done: bool) -> ChatResponse:
            return ChatResponse(
                text=answer.text if self._markdown else to_plain_text(answer.text),
                conversation_id=answer.conversation_id,
                message_id=answer.message_id or "",
                parent_message_id=message_id,
                model=self._model,
                done=done,
            )

        try:
            while not answer.done:
                chunk = await _read(response, deadline)
                for event in parser.feed(chunk) if chunk else parser.close():
                    if answer.feed(event) and answer.message_id:
                        yield reply(done=False)
                    if answer.done:
                        break
                if not chunk and not answer.done:
                    raise ChatGPTStreamError("ChatGPT's answer stream ended before [DONE]")
            if not answer.message_id:
                raise ChatGPTStreamError("ChatGPT's answer stream carried no answer message")
        except ChatGPTError as exc:
            exc.partial_text = reply(done=False).text
            self._log_error(exc)
            raise
        finally:
            if response.content.at_eof():
                response.release()  # the connection can be reused
            else:
                response.close()  # aborts the request: the server sees the disconnect
        yield reply(done=True)

    def get_conversation(
        self, conversation_id: str | None = None, parent_message_id: str | None = None
    ) -> ChatGPTConversation:
        return ChatGPTConversation(
            self, conversation_id=conversation_id, parent_message_id=parent_message_id
        )

    async def send_moderation(self, text: str, *, timeout: float | None = None) -> ModerationResult:
        deadline = _deadline(self._timeout if timeout is None else timeout)
        url = f"{self._backend_api_base_url}/moderations"
        body = {"input": text, "model": MODERATION_MODEL}
        response = await self._post(url, body, "*/*", "moderation", deadline)
        try:
            data = await _within(deadline, response.json(content_type=None))
        except (aiohttp.ClientError, OSError) as exc:
            raise self._connection_error("moderation", url, exc) from exc
        except ValueError as exc:
            raise ChatGPTError("ChatGPT moderation failed: the response is not JSON") from exc
        finally:
            response.release()
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

    async def _post(
        self, url: str, body: dict[str, Any], accept: str, what: str, deadline: float | None
    ) -> aiohttp.ClientResponse:
        """A 2xx response to an authenticated POST; the caller releases it.

        A 401 drops the access token and retries once with a fresh one; 429, 5xx and
        connection errors are retried ``max_retries`` times.
        """
        data = json.dumps(body)
        retried_auth, attempt = False, 0
        while True:
            token = await _within(deadline, self.refresh_session())
            headers = {
                **self._headers,
                "authorization": f"Bearer {token}",
                "accept": accept,
                "content-type": "application/json",
                "cookie": f"{CLEARANCE_COOKIE}={self._clearance_token}",
            }
            self._log_request("POST", url, headers)
            error: ChatGPTError
            retry_after: float | None = None
            try:
                response = await _within(
                    deadline, self._http().post(url, data=data, headers=headers)
                )
            except (aiohttp.ClientError, OSError) as exc:
                error = self._connection_error(what, url, exc)
                error.__cause__ = exc
            else:
                self._log_response("POST", url, response)
                if response.status < 400:
                    return response
                try:
                    error = await _within(deadline, response_error(response, what, self._redact))
                finally:
                    response.close()
                retry_after = parse_retry_after(response.headers)
                if response.status == 401 and not retried_auth:
                    retried_auth = True
                    if self._access_token == token:
                        self._access_token = None
                    continue
            retryable = isinstance(error, ChatGPTConnectionError | ChatGPTRateLimitError) or (
                error.status_code is not None and error.status_code >= 500
            )
            delay = min(0.5 * 2**attempt, 8.0) if retry_after is None else retry_after
            loop_time = asyncio.get_running_loop().time()
            if (
                not retryable
                or attempt >= self._max_retries
                or (deadline is not None and loop_time + delay >= deadline)
            ):
                self._log_error(error)
                raise error
            attempt += 1
            logger.info("%s; retry %d in %.1f s", error, attempt, delay)
            await asyncio.sleep(delay)

    def _connection_error(self, what: str, url: str, exc: BaseException) -> ChatGPTError:
        reason = self._redact(str(exc)) or type(exc).__name__
        return ChatGPTConnectionError(f"ChatGPT {what} failed: cannot reach {url}: {reason}")

    def _log_request(self, method: str, url: str, headers: Mapping[str, str]) -> None:
        if self._debug:
            logger.debug("%s %s headers=%s", method, url, self._redact.headers(headers))

    def _log_response(self, method: str, url: str, response: aiohttp.ClientResponse) -> None:
        if self._debug:
            logger.debug("%s %s -> %d %s", method, url, response.status, response.reason)

    def _log_error(self, error: ChatGPTError) -> None:
        if self._debug:
            logger.debug("%s: %s", type(error).__name__, self._redact(str(error)))


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else asyncio.get_running_loop().time() + timeout


async def _within(deadline: float | None, awaitable: Awaitable[_T]) -> _T:
    """Await ``awaitable`` until ``deadline`` (loop time); past it, ChatGPTTimeoutError."""
    timeout = asyncio.timeout_at(deadline)
    try:
        async with timeout:
            return await awaitable
    except TimeoutError as exc:
        if timeout.expired():
            raise ChatGPTTimeoutError("ChatGPT timed out waiting for response") from exc
        raise


async def _read(response: aiohttp.ClientResponse, deadline: float | None) -> bytes:
    try:
        return await _within(deadline, response.content.readany())
    except (aiohttp.ClientError, OSError) as exc:
        raise ChatGPTStreamError(f"ChatGPT's answer stream was cut off: {exc!r}") from exc
