"""A protocol-faithful fake of the ChatGPT web backend (chat.openai.com), on loopback.

It serves what the web app talks to:

- ``GET /api/auth/session``: NextAuth's session endpoint. With the right
  ``__Secure-next-auth.session-token`` cookie it answers ``{user, expires,
  accessToken}``; without it, ``{}`` like the real one.
- ``POST /backend-api/conversation``: the answer as server-sent events, in the classic
  format (full text so far in ``message.content.parts[0]``) or the newer ``delta``
  format (JSON-patch-like operations), ending with ``data: [DONE]``.
- ``POST /backend-api/moderations``: ``{flagged, blocked, moderation_id}``.

Like Cloudflare, it answers 403 with an HTML page when the ``cf_clearance`` cookie is
wrong; like the backend, 401 when the bearer token is not one it issued. Every request
is recorded (headers, cookies, JSON body), and the replies are scriptable through the
``session_replies``, ``answers`` and ``moderation_replies`` queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from aiohttp import web
from multidict import CIMultiDict

SESSION_TOKEN = "sess-SECRET-eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..fake"
CLEARANCE_TOKEN = "cf-SECRET-0123456789abcdef-1700000000-0-150"
DEFAULT_USER = {"id": "user-abc", "name": "Ada", "email": "ada@example.com", "image": None}
AUTO = "<auto>"  # SessionReply.access_token: issue a fresh token


@dataclass
class Recorded:
    method: str
    path: str
    headers: CIMultiDict[str]
    cookies: dict[str, str]
    json: Any


@dataclass
class SessionReply:
    """One answer of ``/api/auth/session``."""

    access_token: str | None = AUTO
    user: dict[str, Any] | None = field(default_factory=lambda: dict(DEFAULT_USER))
    expires: str = "2099-01-01T00:00:00.000Z"
    error: str | None = None
    status: int = 200
    raw_body: str | None = None  # sent as is instead of the JSON
    delay: float = 0.0


@dataclass
class Answer:
    """One answer of ``/backend-api/conversation``.

    The answer is sent as one event per chunk. ``*_after=N`` act after N chunk events:
    ``error_after`` sends an event whose ``error`` is set, ``malformed_after`` an event
    that is not JSON, ``truncate_after`` ends the response cleanly without ``[DONE]``,
    ``abort_after`` drops the connection in the middle of the chunked body.
    A ``status`` other than 200 answers with ``body`` (JSON) and ``headers`` instead.
    ``raw_stream`` (an async iterator of chunks) is sent as the body instead of the
    events, as ``content_type``.
    """

    chunks: list[str] = field(default_factory=lambda: ["Hello", ", ", "world!"])
    format: Literal["classic", "delta"] = "classic"
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    conversation_id: str | None = None  # None: the request's, or a new one
    echo_user: bool = True
    delay: float = 0.0  # before each chunk event
    stall_after: int | None = None  # after N chunk events, send nothing more (for a minute)
    error_after: int | None = None
    error: Any = "Something went wrong. Please try again later."
    malformed_after: int | None = None
    truncate_after: int | None = None
    abort_after: int | None = None  # like truncate_after, but the connection is reset
    split_utf8: bool = False  # write each event in two pieces, cut inside a character
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_stream: Callable[[], AsyncIterator[bytes]] | None = None
    content_type: str = "text/event-stream"


class FakeChatGPTWeb:
    def __init__(
        self, *, session_token: str = SESSION_TOKEN, clearance_token: str = CLEARANCE_TOKEN
    ) -> None:
        self.session_token = session_token
        self.clearance_token = clearance_token
        self.requests: list[Recorded] = []
        self.session_replies: list[SessionReply] = []
        self.answers: list[Answer] = []
        self.moderation_replies: list[tuple[int, Any]] = []
        self.valid_tokens: set[str] = set()
        self.reject_all_tokens = False
        self.disconnected = asyncio.Event()  # a client went away mid-answer
        self.streaming = asyncio.Event()  # an answer has started
        self.bytes_streamed = 0  # raw_stream bytes written
        self._issued = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        app = web.Application()
        app.router.add_get("/api/auth/session", self._session)
        app.router.add_post("/backend-api/conversation", self._conversation)
        app.router.add_post("/backend-api/moderations", self._moderations)
        self._app = app

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(
            self._app, handler_cancellation=True, shutdown_timeout=0.1, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def backend_api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/backend-api"

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    @property
    def session_requests(self) -> int:
        return len(self.requests_to("/api/auth/session"))

    def issue_token(self) -> str:
        self._issued += 1
        token = f"access-{self._issued}-SECRET"
        self.valid_tokens.add(token)
        return token

    # -- handlers ----------------------------------------------------------------

    async def _record(self, request: web.Request) -> Recorded:
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
        recorded = Recorded(
            request.method, request.path, CIMultiDict(request.headers), dict(request.cookies), body
        )
        self.requests.append(recorded)
        return recorded

    def _gate(self, recorded: Recorded) -> web.Response | None:
        """Cloudflare's and the backend's checks: 403 without clearance, 401 without token."""
        if recorded.cookies.get("cf_clearance") != self.clearance_token:
            return web.Response(
                status=403,
                text="<!DOCTYPE html><title>Just a moment...</title>",
                content_type="text/html",
            )
        if recorded.path.startswith("/backend-api/"):
            auth = recorded.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ")
            if self.reject_all_tokens or token not in self.valid_tokens:
                detail = {"message": "Your authentication token has expired.", "code": "expired"}
                return web.json_response({"detail": detail}, status=401)
        return None

    async def _session(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        reply = self.session_replies.pop(0) if self.session_replies else SessionReply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if (refused := self._gate(recorded)) is not None:
            return refused
        if reply.raw_body is not None:
            return web.Response(status=reply.status, text=reply.raw_body)
        if reply.status != 200:
            return web.json_response({"detail": "session lookup failed"}, status=reply.status)
        if recorded.cookies.get("__Secure-next-auth.session-token") != self.session_token:
            return web.json_response({})  # NextAuth: no session
        data: dict[str, Any] = {"user": reply.user, "expires": reply.expires}
        token = self.issue_token() if reply.access_token == AUTO else reply.access_token
        if token is not None:
            data["accessToken"] = token
        if reply.error is not None:
            data["error"] = reply.error
        return web.json_response(data)

    async def _moderations(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if (refused := self._gate(recorded)) is not None:
            return refused
        status, body = (
            self.moderation_replies.pop(0)
            if self.moderation_replies
            else (200, {"flagged": False, "blocked": False, "moderation_id": "modr-1"})
        )
        return web.json_response(body, status=status)

    async def _conversation(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        if (refused := self._gate(recorded)) is not None:
            return refused
        answer = self.answers.pop(0) if self.answers else Answer()
        if answer.status != 200:
            return web.json_response(answer.body, status=answer.status, headers=answer.headers)
        body = recorded.json
        conversation_id = answer.conversation_id or body.get("conversation_id") or str(uuid.uuid4())
        response = web.StreamResponse(headers={"Content-Type": answer.content_type})
        await response.prepare(request)
        self.streaming.set()
        try:
            if answer.raw_stream is not None:
                async for chunk in answer.raw_stream():
                    self.bytes_streamed += len(chunk)
                    await response.write(chunk)
                await response.write_eof()
                return response
            for event in self._events(answer, body, conversation_id):
                if event is None:  # a chunk boundary
                    if answer.delay:
                        await asyncio.sleep(answer.delay)
                    continue
                if event == b"<stall>":
                    await asyncio.sleep(60)
                if event == b"<truncate>":
                    return response  # the stream simply ends, without [DONE]
                if event == b"<abort>":
                    assert request.transport is not None
                    request.transport.abort()
                    return response
                await self._write(response, event, answer.split_utf8)
            await response.write_eof()
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnected.set()
            raise
        return response

    @staticmethod
    async def _write(response: web.StreamResponse, event: bytes, split: bool) -> None:
        cut = next((i + 1 for i, b in enumerate(event) if b >= 0xC0), None) if split else None
        if cut is None:
            await response.write(event)
            return
        await response.write(event[:cut])  # ends after a multi-byte character's first byte
        await asyncio.sleep(0.005)
        await response.write(event[cut:])

    def _events(
        self, answer: Answer, body: dict[str, Any], conversation_id: str
    ) -> list[bytes | None]:
        user = body["messages"][0]
        user_message = {
            "id": user["id"],
            "author": {"role": "user", "name": None, "metadata": {}},
            "content": user["content"],
            "status": "finished_successfully",
            "recipient": "all",
        }

        def message(text: str, status: str = "in_progress") -> dict[str, Any]:
            return {
                "id": answer.message_id,
                "author": {"role": "assistant", "name": None, "metadata": {}},
                "create_time": time.time(),
                "content": {"content_type": "text", "parts": [text]},
                "status": status,
                "end_turn": status == "finished_successfully" or None,
                "weight": 1.0,
                "metadata": {"model_slug": body.get("model"), "parent_id": user["id"]},
                "recipient": "all",
            }

        def data(payload: Any, event: str | None = None) -> bytes:
            head = f"event: {event}\n" if event else ""
            return f"{head}data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

        def envelope(msg: dict[str, Any] | None) -> dict[str, Any]:
            return {"message": msg, "conversation_id": conversation_id, "error": None}

        events: list[bytes | None] = []
        delta = answer.format == "delta"
        if delta:
            events.append(data("v1", "delta_encoding"))
        if answer.echo_user:
            echo = envelope(user_message)
            events.append(data({"p": "", "o": "add", "v": echo}, "delta") if delta else data(echo))
        if delta:
            events.append(data({"p": "", "o": "add", "v": envelope(message(""))}, "delta"))
        text = ""
        for index, chunk in enumerate(answer.chunks):
            if index == answer.stall_after:
                events.append(b"<stall>")
            if index == answer.error_after:
                events.append(data({**envelope(None), "error": answer.error}))
            if index == answer.malformed_after:
                events.append(b'data: {"message": {"id": \n\n')
            if index == answer.truncate_after:
                events.append(b"<truncate>")
            if index == answer.abort_after:
                events.append(b"<abort>")
            events.append(None)
            text += chunk
            if not delta:
                events.append(data(envelope(message(text))))
            elif index == 0:
                op = {"p": "/message/content/parts/0", "o": "append", "v": chunk}
                events.append(data(op, "delta"))
            elif index < len(answer.chunks) - 1:
                events.append(data({"v": chunk}, "delta"))
            else:
                ops = [
                    {"p": "/message/content/parts/0", "o": "append", "v": chunk},
                    {"p": "/message/status", "o": "replace", "v": "finished_successfully"},
                    {"p": "/message/end_turn", "o": "replace", "v": True},
                    {"p": "/message/metadata", "o": "append", "v": {"is_complete": True}},
                ]
                events.append(data({"p": "", "o": "patch", "v": ops}, "delta"))
        after = len(answer.chunks)
        if answer.error_after == after:
            events.append(data({**envelope(None), "error": answer.error}))
        if answer.malformed_after == after:
            events.append(b"data: {oops\n\n")
        if answer.truncate_after == after:
            events.append(b"<truncate>")
        if answer.abort_after == after:
            events.append(b"<abort>")
        if not delta:
            events.append(data(envelope(message(text, "finished_successfully"))))
        events.append(data({"type": "message_stream_complete", "conversation_id": conversation_id}))
        events.append(b"data: [DONE]\n\n")
        return events
