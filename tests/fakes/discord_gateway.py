"""The fake Discord's gateway websocket (see tests/fakes/discord_api.py for what it does)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

if TYPE_CHECKING:
    from tests.fakes.discord_api import FakeDiscord

__all__ = [
    "INTENT_DIRECT_MESSAGES",
    "INTENT_GUILDS",
    "INTENT_GUILD_MEMBERS",
    "INTENT_GUILD_MESSAGES",
    "INTENT_GUILD_PRESENCES",
    "INTENT_MESSAGE_CONTENT",
    "PRIVILEGED",
    "Connection",
    "Gateway",
    "Session",
]

INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT


def _intent_for(event: str, guild_id: int | None) -> int:
    """The intent a dispatch needs (0: always sent)."""
    if event.startswith("MESSAGE_"):
        return INTENT_GUILD_MESSAGES if guild_id is not None else INTENT_DIRECT_MESSAGES
    if event.startswith(("GUILD_", "THREAD_", "CHANNEL_")):
        return INTENT_GUILDS
    return 0


@dataclass
class Session:
    """A gateway session: survives its socket, so a RESUME can replay what it missed."""

    id: str
    intents: int
    shard: tuple[int, int]
    events: list[dict[str, Any]] = field(default_factory=list)  # every dispatch sent
    seq: int = 0
    ws: web.WebSocketResponse | None = None
    invalid: bool = False

    def sees(self, guild_id: int | None) -> bool:
        shard_id, count = self.shard
        return ((guild_id or 0) >> 22) % count == shard_id


@dataclass
class Connection:
    """One gateway socket as it happened (for tests to inspect)."""

    path: str
    query: dict[str, str]
    received: list[dict[str, Any]] = field(default_factory=list)
    close_code: int | None = None  # the fake's close code if it closed, else the client's
    heartbeats: int = 0


class Gateway:
    """Gateway sockets and sessions; the state tests read lives on the fake."""

    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self._sockets: set[web.WebSocketResponse] = set()
        self._outboxes: dict[web.WebSocketResponse, asyncio.Queue[Any]] = {}
        self._conns: dict[web.WebSocketResponse, Connection] = {}

    async def close(self) -> None:
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001)

    def dispatch(self, event: str, data: dict[str, Any], guild_id: int | None = None) -> None:
        """Send a dispatch to every live session that sees ``guild_id``'s shard (sessions
        whose socket is gone keep it for a RESUME)."""
        needed = _intent_for(event, guild_id)
        for session in list(self.fake.sessions.values()):
            if session.invalid or not session.sees(guild_id):
                continue
            if needed and not session.intents & needed:
                continue
            self._send_dispatch(session, event, self._as_seen(session, event, data))

    def _as_seen(self, session: Session, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Without the message-content intent, guild messages lose their content unless
        they mention the bot (or are the bot's own), as Discord does."""
        if (
            event not in ("MESSAGE_CREATE", "MESSAGE_UPDATE")
            or "guild_id" not in data
            or session.intents & INTENT_MESSAGE_CONTENT
        ):
            return data
        bot = str(self.fake.bot.id)
        if data["author"]["id"] == bot or any(m["id"] == bot for m in data.get("mentions", [])):
            return data
        return {**data, "content": "", "embeds": [], "attachments": [], "components": []}

    def _send_dispatch(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.events.append(frame)
        if session.ws is not None:
            self._send_frame(session.ws, frame)
        self.fake._notify()

    def _send_frame(self, ws: web.WebSocketResponse, frame: dict[str, Any] | None) -> None:
        """Queue a frame on a socket's writer (one writer keeps frames in order)."""
        outbox = self._outboxes.get(ws)
        if outbox is not None:
            outbox.put_nowait(frame)

    async def _writer(self, ws: web.WebSocketResponse, outbox: asyncio.Queue[Any]) -> None:
        while True:
            frame = await outbox.get()
            if isinstance(frame, tuple):  # (close code, message)
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.close(code=frame[0], message=frame[1].encode())
                return
            if ws.closed:
                continue
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(json.dumps(frame, ensure_ascii=False))

    def live(self) -> list[Session]:
        return [s for s in self.fake.sessions.values() if s.ws is not None and not s.ws.closed]

    def reconnect(self) -> None:
        """Op 7 RECONNECT on every live socket: the client should RESUME."""
        for session in self.live():
            assert session.ws is not None
            self._send_frame(session.ws, {"op": 7, "d": None})

    def invalid_session(self, resumable: bool = False) -> None:
        """Op 9 INVALID_SESSION on every live socket; not resumable → sessions end."""
        for session in self.live():
            assert session.ws is not None
            if not resumable:
                session.invalid = True
            self._send_frame(session.ws, {"op": 9, "d": resumable})

    def drop(self) -> None:
        """Cut every gateway socket without a close frame (a network failure)."""
        for ws in list(self._sockets):
            request_transport = getattr(ws, "_fake_transport", None)
            if request_transport is not None:
                request_transport.abort()

    def close_gateway(self, code: int, message: str = "") -> None:
        """Close every gateway socket with a close code (e.g. 4000 unknown error)."""
        for ws in list(self._sockets):
            self._close(ws, code, message)

    # -- the wire side ----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        ws._fake_transport = request.transport  # type: ignore[attr-defined]  # for drop()
        conn = Connection(path=request.path, query=dict(request.query))
        self.fake.connections.append(conn)
        self._conns[ws] = conn
        self._sockets.add(ws)
        session: Session | None = None
        outbox: asyncio.Queue[Any] = asyncio.Queue()
        self._outboxes[ws] = outbox
        writer = asyncio.create_task(self._writer(ws, outbox))
        try:
            self._send_frame(
                ws, {"op": 10, "d": {"heartbeat_interval": self.fake.heartbeat_interval_ms}}
            )
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                conn.received.append(frame)
                op, d = frame.get("op"), frame.get("d")
                if op == 1:
                    conn.heartbeats += 1
                    self._send_frame(ws, {"op": 11})
                elif op == 2:
                    session = self._identify(ws, d)
                elif op == 6:
                    session = self._resume(ws, d)
                self.fake._notify()
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            self._outboxes.pop(ws, None)
            self._conns.pop(ws, None)
            self._sockets.discard(ws)
            if conn.close_code is None:
                conn.close_code = ws.close_code
                if session is not None and ws.close_code in (1000, 1001):
                    session.invalid = True  # a client's 1000/1001 close ends its session
            if session is not None and session.ws is ws:
                session.ws = None
            self.fake._notify()
        return ws

    def _close(self, ws: web.WebSocketResponse, code: int, message: str) -> None:
        conn = self._conns.get(ws)
        if conn is not None:
            conn.close_code = code
        outbox = self._outboxes.get(ws)
        if outbox is not None:
            outbox.put_nowait((code, message))

    def _identify(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> Session | None:
        self.fake.identifies.append({k: v for k, v in d.items() if k != "token"})
        if d.get("token") != self.fake.token:
            self._close(ws, 4004, "Authentication failed.")
            return None
        intents = int(d.get("intents", 0))
        if intents & PRIVILEGED & ~self.fake.allowed_intents:
            self._close(ws, 4014, "Disallowed intent(s).")
            return None
        shard = d.get("shard") or [0, 1]
        session = Session(
            id=secrets.token_hex(16), intents=intents, shard=(int(shard[0]), int(shard[1]))
        )
        self.fake.sessions[session.id] = session
        session.ws = ws
        guilds = [g for g in self.fake.guilds.values() if session.sees(g.id)]
        self._send_dispatch(
            session,
            "READY",
            {
                "v": 10,
                "user": {**self.fake.bot.to_dict(), "verified": True, "mfa_enabled": False},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": session.id,
                "resume_gateway_url": self.fake.resume_gateway_url,
                "session_type": "normal",
                "shard": [session.shard[0], session.shard[1]],
                "application": {
                    "id": str(self.fake.application_id),
                    "flags": self.fake._app_flags(),
                },
                "private_channels": [],
                "presences": [],
                "relationships": [],
                "user_settings": {},
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": [],
                "auth": {},
                "_trace": ["fake-discord"],
            },
        )
        for g in guilds:
            data = self.fake.guild_dict(g)
            if not intents & INTENT_GUILD_MEMBERS:  # Discord then sends only the bot itself
                data["members"] = [
                    m for m in data["members"] if m["user"]["id"] == str(self.fake.bot.id)
                ]
            self._send_dispatch(session, "GUILD_CREATE", data)
        return session

    def _resume(self, ws: web.WebSocketResponse, d: dict[str, Any]) -> Session | None:
        self.fake.resumes.append({k: v for k, v in d.items() if k != "token"})
        if d.get("token") != self.fake.token:
            self._close(ws, 4004, "Authentication failed.")
            return None
        session = self.fake.sessions.get(str(d.get("session_id")))
        if session is None or session.invalid:
            self._send_frame(ws, {"op": 9, "d": False})
            return None
        session.ws = ws
        after = int(d.get("seq") or 0)
        for frame in session.events:
            if frame["s"] > after:
                self._send_frame(ws, frame)
        self._send_dispatch(session, "RESUMED", {"_trace": ["fake-discord"]})
        return session
