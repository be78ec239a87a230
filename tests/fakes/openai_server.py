"""A fake OpenAI-compatible Chat Completions server on 127.0.0.1, for tests and benchmarks.

It speaks the real wire protocol over a real socket, so the client under test runs its
whole HTTP stack::

    async with FakeOpenAIServer(api_key="sk-test") as server:
        backend = ChatCompletionsBackend(base_url=server.base_url, api_key="sk-test", ...)
        server.script(Behaviour.http_error(429, retry_after=0.2), Behaviour())
        ...
        server.chat_requests[-1].messages      # what the client sent

What it does, like api.openai.com:

- ``POST /v1/chat/completions``: checks ``Authorization: Bearer <api_key>`` when an
  ``api_key`` is set (401 with OpenAI's error JSON otherwise — the message echoes the
  received key in full, worse than OpenAI, so tests can prove the client redacts it),
  validates the body (400 ``invalid_request_error`` for a missing model or bad
  messages), then streams ``chat.completion.chunk`` events when ``stream`` is true: a
  first chunk with ``role``, one chunk per piece of content, a last chunk with
  ``finish_reason``, an optional usage chunk (``stream_options.include_usage``), then
  ``data: [DONE]``. With ``stream`` false it returns one ``chat.completion`` object.
- ``GET /v1/models`` lists ``model``; ``GET /health`` answers ``{"status": "ok"}``.

The answer text comes from ``reply(messages) -> str`` (sync or async; default
``echo_reply``: ``"Echo: <last user message>"``), split into deltas by ``chunker``
(default: one word, with its trailing space, per delta), or from a behaviour's ``reply``.

Scripting: ``script(*behaviours)`` queues ``Behaviour`` objects; each chat request takes
the next one, and once the queue is empty ``default`` (a normal answer) applies. A
behaviour can answer with an HTTP error (``Behaviour.http_error(status, message,
retry_after=...)``), wait before the first byte (``delay``) or between events
(``chunk_delay``), stall once after n content chunks (``pause_after``, ``pause``), cut
the connection after n content chunks (``disconnect_after``),
send a malformed event (``malformed_after``), an in-stream ``{"error": ...}`` event
(``error_after``), end without ``[DONE]`` (``omit_done``), write the stream in tiny
pieces so multi-byte UTF-8 characters are split across TCP writes (``write_size``; with
an HTTP error status it splits the error body, ``chunk_delay`` apart), or
send raw bytes (``raw_body``, or ``raw_stream``: an async iterator of chunks, for bodies
too large or too long to hold), or answer a streaming request with one JSON completion
like a server that ignores ``stream`` (``ignore_stream``). ``headers`` may override the
``Content-Type``.

Records: every request is appended to ``requests`` (``RecordedRequest`` with method,
path, ``query`` string, headers, parsed JSON ``body``, monotonic ``time``, client
``peer`` address); ``bytes_streamed`` counts the body bytes written to clients;
``chat_requests`` filters the chat completion ones; ``reset()`` forgets records and
the script. ``in_flight`` and ``max_in_flight`` count concurrent chat
requests (a request is in flight from arrival until its response is finished).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

__all__ = ["Behaviour", "FakeOpenAIServer", "RecordedRequest", "echo_reply", "word_chunker"]

ReplyFunction = Callable[[list[dict[str, Any]]], "str | Awaitable[str]"]
VALID_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def echo_reply(messages: list[dict[str, Any]]) -> str:
    """The default answer: ``"Echo: "`` and the last user message."""
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            return f"Echo: {content if isinstance(content, str) else json.dumps(content)}"
    return "Echo: (nothing)"


def word_chunker(text: str) -> list[str]:
    """One delta per word, each with its trailing whitespace (leading space kept too)."""
    return re.findall(r"\s*\S+\s*|\s+", text) or ([text] if text else [])


@dataclass
class Behaviour:
    """What the fake does for one chat request. The defaults give a normal answer.

    ``disconnect_after`` / ``malformed_after`` / ``error_after`` / ``pause_after`` count
    content chunks sent before the fault (0: right after the role chunk).
    """

    status: int = 200
    error_message: str | None = None
    error_type: str = "server_error"
    error_code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunk_delay: float = 0.0
    pause_after: int | None = None
    pause: float = 0.0
    reply: str | None = None
    disconnect_after: int | None = None
    malformed_after: int | None = None
    error_after: int | None = None
    omit_done: bool = False
    write_size: int | None = None
    raw_body: bytes | None = None
    raw_stream: Callable[[], AsyncIterator[bytes]] | None = None
    finish_reason: str = "stop"
    ignore_stream: bool = False

    @classmethod
    def http_error(
        cls,
        status: int,
        message: str | None = None,
        *,
        retry_after: float | str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> Behaviour:
        """An OpenAI-style JSON error; ``retry_after`` sets the ``Retry-After`` header
        (a number of seconds, or a string such as an HTTP date)."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = (
                retry_after if isinstance(retry_after, str) else f"{retry_after:g}"
            )
        default_type = {
            400: "invalid_request_error",
            401: "invalid_request_error",
            403: "permission_error",
            404: "invalid_request_error",
            429: "rate_limit_exceeded",
        }.get(status, "server_error")
        return cls(
            status=status,
            error_message=message or f"fake error {status}",
            error_type=error_type or default_type,
            headers=extra,
            delay=delay,
        )


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float
    peer: tuple[str, int] | None = None  # the client's address: equal ports = a reused connection
    query: str = ""

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The ``messages`` of a chat request (empty for other requests)."""
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return list(self.body["messages"])
        return []


class FakeOpenAIServer(LoopbackServer):
    """See the module docstring. ``base_url`` is ``http://127.0.0.1:PORT/v1``."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        reply: ReplyFunction | None = None,
        model: str = "fake-model",
        chunker: Callable[[str], list[str]] = word_chunker,
        default: Behaviour | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.api_key = api_key
        self.reply: ReplyFunction = reply or echo_reply
        self.model = model
        self.chunker = chunker
        self.default = default or Behaviour()
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.bytes_streamed = 0
        self._queue: deque[Behaviour] = deque()
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(
            app, shutdown_timeout=0.1, handler_cancellation=True, access_log=None
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    # -- scripting and records --------------------------------------------------------

    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next chat requests, in order."""
        self._queue.extend(behaviours)

    def reset(self) -> None:
        """Forget recorded requests, scripted behaviours and the concurrency peak."""
        self.requests.clear()
        self._queue.clear()
        self.max_in_flight = self.in_flight

    @property
    def pending(self) -> int:
        """Scripted behaviours not used yet."""
        return len(self._queue)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # -- handlers ---------------------------------------------------------------------

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", errors="replace")
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            headers=dict(request.headers),
            body=body,
            time=time.monotonic(),
            peer=request.transport.get_extra_info("peername") if request.transport else None,
            query=request.query_string,
        )
        self.requests.append(recorded)
        return recorded

    @staticmethod
    def _error(
        status: int,
        message: str,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> web.Response:
        body = {"error": {"message": message, "type": error_type, "param": param, "code": code}}
        return web.json_response(body, status=status, headers=headers)

    def _auth_error(self, request: web.Request) -> web.Response | None:
        if self.api_key is None:
            return None
        header = request.headers.get("Authorization", "")
        if not header:
            return self._error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        scheme, _, key = header.partition(" ")
        if scheme != "Bearer" or key != self.api_key:
            return self._error(401, f"Incorrect API key provided: {key}.", code="invalid_api_key")
        return None

    async def _health(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"status": "ok"})

    async def _not_found(self, request: web.Request) -> web.Response:
        await self._record(request)
        return self._error(404, f"Unknown request URL: {request.method} {request.path}.")

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        if (denied := self._auth_error(request)) is not None:
            return denied
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}
        return web.json_response({"object": "list", "data": [model]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            recorded = await self._record(request)
            behaviour = self._queue.popleft() if self._queue else self.default
            if behaviour.delay:
                await asyncio.sleep(behaviour.delay)
            if (denied := self._auth_error(request)) is not None:
                return denied
            if behaviour.status != 200:
                error = self._error(
                    behaviour.status,
                    behaviour.error_message or f"fake error {behaviour.status}",
                    behaviour.error_type,
                    behaviour.error_code,
                    headers=behaviour.headers,
                )
                if behaviour.write_size:
                    return await self._error_in_pieces(request, error, behaviour)
                return error
            body = recorded.body
            if (invalid := self._validate(body)) is not None:
                return invalid
            if behaviour.reply is not None:
                text = behaviour.reply
            else:
                produced = self.reply(body["messages"])
                text = await produced if inspect.isawaitable(produced) else produced
            if body.get("stream") and not behaviour.ignore_stream:
                return await self._stream(request, body, behaviour, text)
            return self._completion(body, behaviour, text)
        finally:
            self.in_flight -= 1
            if task is not None:
                self._tasks.discard(task)

    async def _error_in_pieces(
        self, request: web.Request, error: web.Response, behaviour: Behaviour
    ) -> web.StreamResponse:
        """``error`` written ``write_size`` bytes at a time, ``chunk_delay`` apart."""
        assert isinstance(error.body, bytes)
        response = web.StreamResponse(
            status=error.status, headers={"Content-Type": "application/json", **behaviour.headers}
        )
        await response.prepare(request)
        await self._write(response, error.body, behaviour.write_size, behaviour.chunk_delay)
        await response.write_eof()
        return response

    async def _write(
        self, response: web.StreamResponse, data: bytes, size: int | None, pause: float = 0.0
    ) -> None:
        """``data`` in ``size``-byte writes, ``pause`` (at least 1 ms) apart."""
        self.bytes_streamed += len(data)
        if not size:
            await response.write(data)
            return
        for start in range(0, len(data), size):
            await response.write(data[start : start + size])
            # Separate TCP segments, not one coalesced read.
            await asyncio.sleep(max(pause, 0.001))

    def _validate(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return self._error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body.get("model"), str) or not body["model"]:
            return self._error(400, "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._error(400, "'messages' must be a non-empty array", param="messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in VALID_ROLES:
                return self._error(
                    400, f"Invalid value for 'messages[{i}].role'.", param=f"messages[{i}]"
                )
            if not isinstance(message.get("content"), str | list):
                return self._error(
                    400,
                    f"Invalid type for 'messages[{i}].content'.",
                    param=f"messages[{i}].content",
                )
        for key in ("max_tokens", "max_completion_tokens"):
            if key in body and (not isinstance(body[key], int) or body[key] < 1):
                return self._error(400, f"Invalid '{key}': must be a positive integer.")
        return None

    def _completion(self, body: dict[str, Any], behaviour: Behaviour, text: str) -> web.Response:
        prompt_tokens = sum(len(str(m.get("content", "")).split()) + 3 for m in body["messages"])
        completion_tokens = len(text.split())
        return web.json_response(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": behaviour.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    async def _stream(
        self, request: web.Request, body: dict[str, Any], behaviour: Behaviour, text: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **behaviour.headers,
            },
        )
        await response.prepare(request)

        async def write(data: bytes) -> None:
            await self._write(response, data, behaviour.write_size)

        if behaviour.raw_body is not None:
            await write(behaviour.raw_body)
            await response.write_eof()
            return response
        if behaviour.raw_stream is not None:
            async for chunk in behaviour.raw_stream():
                await write(chunk)
            await response.write_eof()
            return response

        chunk_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            chunk = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": body["model"],
                "system_fingerprint": "fp_fake",
                "choices": [
                    {
                        "index": 0,
                        "delta": delta,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
            }
            return b"data: " + json.dumps(chunk, ensure_ascii=False).encode() + b"\n\n"

        await write(event({"role": "assistant", "content": ""}))
        pieces = self.chunker(text)
        for sent in range(len(pieces) + 1):
            if behaviour.disconnect_after == sent:
                # Cut the TCP connection mid-body: the client sees an incomplete payload.
                if request.transport is not None:
                    request.transport.close()
                raise asyncio.CancelledError  # aiohttp stops handling this request
            if behaviour.malformed_after == sent:
                await write(b'data: {"id": "' + chunk_id.encode() + b'", "choices": [{"delta\n\n')
                await response.write_eof()
                return response
            if behaviour.error_after == sent:
                error = {
                    "error": {
                        "message": behaviour.error_message or "The server had an error.",
                        "type": behaviour.error_type,
                        "param": None,
                        "code": behaviour.error_code,
                    }
                }
                await write(b"data: " + json.dumps(error).encode() + b"\n\n")
                await response.write_eof()
                return response
            if sent == len(pieces):
                break
            if behaviour.chunk_delay:
                await asyncio.sleep(behaviour.chunk_delay)
            if behaviour.pause_after == sent:
                await asyncio.sleep(behaviour.pause)
            await write(event({"content": pieces[sent]}))
        if not behaviour.omit_done:
            await write(event({}, behaviour.finish_reason))
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                usage = {
                    "id": chunk_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": body["model"],
                    "choices": [],
                    "usage": {
                        "prompt_tokens": 0,
                        "completion_tokens": len(pieces),
                        "total_tokens": len(pieces),
                    },
                }
                await write(b"data: " + json.dumps(usage).encode() + b"\n\n")
            await write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response
