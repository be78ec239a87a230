"""A protocol-faithful fake Discord (REST API v10 + gateway websocket) on 127.0.0.1.

The real discord.py 2.7 talks to it over loopback sockets::

    async with FakeDiscord() as dc:
        guild = dc.guild(GUILD_ID, "Parley HQ")
        general = dc.channel(guild, CHANNEL_ID, "general")
        alice = dc.user(ALICE_ID, "alice")
        dc.member(guild, alice)
        with dc.patched():                      # discord.py's two globals → the fake
            client = discord.Client(intents=intents, guild_ready_timeout=0.05)
            await client.login(dc.token); task = asyncio.create_task(client.connect())
            await dc.wait_ready()
            dc.send_message(general, alice, "hi <@BOT_ID>")    # a MESSAGE_CREATE
            [answer] = await dc.wait_bot_messages(CHANNEL_ID, 1)

What it does, like discord.com (error codes and texts are Discord's documented ones):

- REST under ``/api/v10``: ``Authorization: Bot <token>`` checked on every route but
  the interaction callback and webhook routes (401 ``{"message": "401: Unauthorized",
  "code": 0}``). GET /users/@me, /users/{id}, /oauth2/applications/@me, /gateway/bot,
  /channels/{id}, /channels/{id}/messages/{mid}; POST /users/@me/channels (a DM);
  POST /channels/{id}/messages (JSON or multipart with ``payload_json``), PATCH and
  DELETE /channels/{id}/messages/{mid}, POST /channels/{id}/typing (204), POST
  /channels/{id}/messages/{mid}/threads (the thread id is the message id) and
  /channels/{id}/threads (THREAD_CREATE dispatched); PUT /applications/{app}/commands
  and /applications/{app}/guilds/{guild}/commands; POST
  /interactions/{id}/{token}/callback, POST /webhooks/{app}/{token} (followups), PATCH
  /webhooks/{app}/{token}/messages/{@original|mid}; GET /attachments/{id}/{name} serves
  what test users attached. Unknown ids → 404 with Discord's codes (10003 channel,
  10008 message, 10013 user, 10015 webhook); another user's message can't be edited
  (403 50005); a channel made ``forbid``-den answers 403 "Missing Permissions" (50013)
  to every write, and so do its threads.
- Content over 2000 characters → 400 code 50035 "Invalid Form Body" with
  ``BASE_TYPE_MAX_LENGTH``; nothing to send → 400 code 50006. Pings are computed the
  way Discord does from the content and ``allowed_mentions`` (``parse``, ``users``,
  ``roles``, ``replied_user``; no allowed_mentions: everything in the content pings,
  and a reply pings the replied-to author); @everyone/@here and role mentions need the
  bot's MENTION_EVERYONE (``Guild.bot_mention_everyone``, default on) unless the role is
  mentionable. ``parse: ["users"]`` with a ``users`` list → 50035, as Discord refuses.
- Every success carries the X-RateLimit-* bucket headers (bucket per channel for
  messages). A 429 has ``Via``, ``Retry-After``, ``X-RateLimit-Scope``, JSON
  ``{"message": "You are being rate limited.", "retry_after": s, "global": b}`` (and
  ``X-RateLimit-Global`` when global); ``fail_next(..., via=False)`` leaves ``Via`` out,
  as a Cloudflare ban does (discord.py raises instead of retrying). Flood mode
  (``flood=True`` or ``FloodLimits``): message creates and edits per channel (5 per
  5 s) and every request overall (50 per s; interaction callbacks are exempt, as on
  Discord) are sliding windows with ``slack`` (0.05 s); a refused request is NOT
  performed, and ``X-RateLimit-Remaining`` tells discord.py the truth, so it paces
  itself.
- Gateway at ``/gateway`` (resume at ``/resume``, READY's ``resume_gateway_url``):
  HELLO, heartbeat ACKs, IDENTIFY (a wrong token → close 4004 "Authentication
  failed."; a privileged intent the application lacks → close 4014 "Disallowed
  intent(s)."), READY (user, application, session_id, resume_gateway_url, guilds
  unavailable, filtered by ``shard``), GUILD_CREATE per guild (channels, threads,
  roles, members with ``flags: 0`` — only the bot without the members intent), then
  dispatches with sequence numbers, each session filtered by its shard
  (``(guild_id >> 22) % shard_count``; DMs go to shard 0) and intents (MESSAGE_* need
  GUILD_MESSAGES or DIRECT_MESSAGES, GUILD_/THREAD_/CHANNEL_* need GUILDS). The bot
  gets its own messages too, as on Discord (not ephemeral ones). RESUME replays every
  event after the given seq, then RESUMED; an unknown or ended session (the client
  closed with 1000/1001, or a non-resumable op 9) gets op 9 (d=false).
  Without the message-content intent, guild messages that neither mention the bot nor
  are its own arrive with empty content, embeds, attachments and components.
- Interactions: ``slash()`` dispatches INTERACTION_CREATE (type 2); the callback must
  come within ``interaction_deadline`` (3 s, Discord's) or gets 404 code 10062
  "Unknown interaction"; a second callback 400 code 40060. Types 4 (reply) and 5
  (defer, a loading original message with flag 128) are stored; flag 64 (ephemeral)
  recorded (ephemeral messages are stored but never dispatched). Followups and
  @original edits follow the same content rules; the interaction token works 15
  minutes.

Test side (sync unless it waits): ``user``, ``guild``, ``role``, ``member``,
``channel``, ``thread``, ``dm`` register state; ``send_message``, ``edit_message``,
``slash`` and ``dispatch`` make events; ``reconnect``, ``invalid_session``, ``drop``
and ``close_gateway`` act on the live gateway sockets; ``messages`` / ``bot_messages``
/ ``message`` give current state (``StoredMessage`` with edit ``history``); ``calls``
/ ``calls_to`` record every REST call (``Call``: its body, its ``allowed_mentions``,
and for each message it posted or edited whom that ``pinged``); an ``Interaction``
keeps when its callback came (``acknowledged_after``); ``commands`` holds synced commands
per guild (None: global); ``identifies``, ``resumes``, ``events``; ``wait_for``,
``wait_ready``, ``wait_bot_messages``, ``wait_calls`` wait; ``fail_next`` and
``forbid`` inject faults; ``count_429`` counts 429s. ``patched()`` /
``patch_discord(api_base_url, gateway_url)`` point discord.py at the fake and restore
it afterwards.

Guessed, not taken from Discord: a message's ``mentions`` / ``mention_roles`` list
only who was actually pinged (what allowed_mentions let through); an edit without
``allowed_mentions`` recomputes pings with the defaults (everything pings), and a
reply's author stays pinged through edits unless the edit's allowed_mentions drop
``replied_user``; content length is counted in code points; a followup before any
callback gets 404 code 10015 "Unknown Webhook"; the
bucket hashes are made up. Deliberate differences: no zlib (plain JSON text frames,
which discord.py accepts); missed heartbeats are not punished and IDENTIFY has no
rate limit (discord.py still pauses 5 s before a re-IDENTIFY unless a test overrides
``Client.before_identify_hook``); no permission system beyond ``forbid`` and
``bot_mention_everyone``; one thread member (the creator).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, Self, TypeVar

from aiohttp import web

from tests.fakes.discord_gateway import (
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILD_PRESENCES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    PRIVILEGED,
    Connection,
    Gateway,
    Session,
)
from tests.fakes.discord_rest import Fault, Rest
from tests.fakes.discord_state import (
    Attachment,
    Call,
    Channel,
    FloodGate,
    FloodLimits,
    Guild,
    Interaction,
    Revision,
    Role,
    Snowflakes,
    StoredMessage,
    User,
    iso,
    parse_mentions,
)
from tests.fakes.loopback import LoopbackServer

__all__ = [
    "INTENT_DIRECT_MESSAGES",
    "INTENT_GUILDS",
    "INTENT_GUILD_MEMBERS",
    "INTENT_GUILD_MESSAGES",
    "INTENT_GUILD_PRESENCES",
    "INTENT_MESSAGE_CONTENT",
    "MAX_CONTENT",
    "Attachment",
    "Call",
    "Channel",
    "Connection",
    "FakeDiscord",
    "FloodLimits",
    "Guild",
    "Interaction",
    "Role",
    "Session",
    "StoredMessage",
    "User",
    "patch_discord",
]

T = TypeVar("T")

MAX_CONTENT = 2000


@contextlib.contextmanager
def patch_discord(http_url: str, gateway_url: str) -> Iterator[None]:
    """Point discord.py's REST base and default gateway at a fake; restore on exit.
    Both are class attributes, so this affects every client in the process."""
    import discord.gateway
    import discord.http
    import yarl

    old_base = discord.http.Route.BASE
    old_gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    discord.http.Route.BASE = http_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
    try:
        yield
    finally:
        discord.http.Route.BASE = old_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = old_gateway


class FakeDiscord(LoopbackServer):
    """See the module docstring. ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(
        self,
        *,
        token: str = "MTAw.fake.bot-token",
        bot_id: int = 1_100_000_000_000_000_001,
        application_id: int | None = None,
        username: str = "parley",
        allowed_intents: int = PRIVILEGED,
        flood: FloodLimits | bool = False,
        interaction_deadline: float = 3.0,
        heartbeat_interval_ms: int = 41_250,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.bot = User(id=bot_id, username=username, bot=True)
        self.application_id = application_id if application_id is not None else bot_id
        self.allowed_intents = allowed_intents  # privileged intents enabled on the portal
        self.flood: FloodLimits | None = (
            flood if isinstance(flood, FloodLimits) else (FloodLimits() if flood else None)
        )
        self.interaction_deadline = interaction_deadline
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.host = host
        self.port = port

        self.users: dict[int, User] = {bot_id: self.bot}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.interactions: dict[int, Interaction] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}
        self.calls: list[Call] = []
        self.identifies: list[dict[str, Any]] = []
        self.resumes: list[dict[str, Any]] = []
        self.connections: list[Connection] = []
        self.sessions: dict[str, Session] = {}
        self.count_429 = 0

        self._messages: dict[int, dict[int, StoredMessage]] = {}
        self._ids = Snowflakes()
        self._flood_gate = FloodGate()
        self._rest = Rest(self)
        self._event = asyncio.Event()
        self._gateway = Gateway(self)
        self._runner: web.AppRunner | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_get("/gateway", self._gateway.handle)
        app.router.add_get("/resume", self._gateway.handle)
        app.router.add_get("/attachments/{id}/{name}", self._attachment)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest.handle)
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
        await self._gateway.close()
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def api_base_url(self) -> str:
        """What ``discord.http.Route.BASE`` gets (an adapter's ``api_base_url``)."""
        return f"{self.url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/resume"

    @property
    def bot_id(self) -> int:
        return self.bot.id

    def patched(self) -> contextlib.AbstractContextManager[None]:
        """discord.py's REST base and gateway pointed at this fake, restored on exit."""
        return patch_discord(self.api_base_url, self.gateway_url)

    def _notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    # -- registering state ------------------------------------------------------------

    def user(
        self, id: int, username: str | None = None, *, bot: bool = False, global_name: str = ""
    ) -> User:
        """Register (or return) a user."""
        existing = self.users.get(id)
        if existing is not None and username is None:
            return existing
        user = User(id=id, username=username or f"user{id}", global_name=global_name or None)
        user.bot = bot
        self.users[id] = user
        return user

    def guild(
        self,
        id: int,
        name: str = "Guild",
        *,
        owner_id: int | None = None,
        bot_role_id: int | None = None,
        bot_mention_everyone: bool = True,
    ) -> Guild:
        """A guild the bot is in, with its @everyone role (id = guild id) and, with
        ``bot_role_id``, the bot's managed role. The bot is a member."""
        guild = Guild(
            id=id,
            name=name,
            owner_id=owner_id or self.bot.id,
            bot_mention_everyone=bot_mention_everyone,
        )
        guild.roles[id] = Role(id=id, guild_id=id, name="@everyone", permissions=0x6400)
        guild.members[self.bot.id] = []
        self.guilds[id] = guild
        if bot_role_id is not None:
            self.role(guild, bot_role_id, self.bot.username, managed=True, bot_id=self.bot.id)
            guild.members[self.bot.id] = [bot_role_id]
        return guild

    def role(
        self,
        guild: int | Guild,
        id: int,
        name: str,
        *,
        mentionable: bool = False,
        managed: bool = False,
        bot_id: int | None = None,
    ) -> Role:
        g = self._guild_arg(guild)
        role = Role(
            id=id,
            guild_id=g.id,
            name=name,
            mentionable=mentionable,
            managed=managed,
            bot_id=bot_id,
            position=len(g.roles),
        )
        g.roles[id] = role
        return role

    def member(self, guild: int | Guild, user: int | User, roles: list[int] | None = None) -> None:
        g, u = self._guild_arg(guild), self._user_arg(user)
        g.members[u.id] = list(roles or [])

    def channel(
        self,
        guild: int | Guild,
        id: int,
        name: str = "general",
        *,
        type: int = 0,
        category: int | Channel | None = None,
    ) -> Channel:
        """A guild text channel (type 0), or a category with ``type=4``; ``category``
        puts a channel under a category (its ``parent_id``)."""
        g = self._guild_arg(guild)
        parent = self._channel_arg(category).id if category is not None else None
        channel = Channel(id=id, type=type, name=name, guild_id=g.id, parent_id=parent)
        return self._add_channel(channel, g)

    def thread(
        self,
        parent: int | Channel,
        id: int,
        name: str = "thread",
        *,
        owner: int | User | None = None,
        private: bool = False,
    ) -> Channel:
        """An existing thread under a text channel (sent in GUILD_CREATE)."""
        p = self._channel_arg(parent)
        assert p.guild_id is not None, "threads live in guild channels"
        channel = Channel(
            id=id,
            type=12 if private else 11,
            name=name,
            guild_id=p.guild_id,
            parent_id=p.id,
            owner_id=self._user_arg(owner).id if owner is not None else self.bot.id,
        )
        return self._add_channel(channel, self.guilds[p.guild_id])

    def dm(self, user: int | User, id: int | None = None) -> Channel:
        """The DM channel between a user and the bot."""
        u = self._user_arg(user)
        for channel in self.channels.values():
            if channel.type == 1 and channel.recipient_id == u.id:
                return channel
        channel = Channel(id=id or self._ids.next(), type=1, recipient_id=u.id)
        return self._add_channel(channel, None)

    def _add_channel(self, channel: Channel, guild: Guild | None) -> Channel:
        self.channels[channel.id] = channel
        self._messages.setdefault(channel.id, {})
        if guild is not None and channel.id not in guild.channel_ids:
            guild.channel_ids.append(channel.id)
        return channel

    def fail_next(
        self,
        route: str,
        status: int,
        message: str | None = None,
        *,
        code: int = 0,
        retry_after: float | None = None,
        is_global: bool = False,
        times: int = 1,
        channel_id: int | None = None,
        via: bool = True,
    ) -> None:
        """The next ``times`` calls matching ``route`` (as ``calls_to`` matches; to
        ``channel_id`` if given) answer ``status`` and do nothing. A 429 carries
        ``retry_after`` (default 0.1 s) and the ``Via`` header, so discord.py retries it;
        ``via=False`` makes it a Cloudflare-style 429, which discord.py raises."""
        self._rest.faults.append(
            Fault(route, status, message, code, retry_after, is_global, times, channel_id, via)
        )

    def forbid(self, channel: int | Channel, forbidden: bool = True) -> None:
        """Writes to this channel answer 403 "Missing Permissions" (code 50013)."""
        self._channel_arg(channel).forbidden = forbidden

    def _guild_arg(self, guild: int | Guild) -> Guild:
        gid = guild.id if isinstance(guild, Guild) else guild
        if gid not in self.guilds:
            raise ValueError(f"unknown guild {gid}: register it with dc.guild()")
        return self.guilds[gid]

    def _user_arg(self, user: int | User) -> User:
        uid = user.id if isinstance(user, User) else user
        if uid not in self.users:
            raise ValueError(f"unknown user {uid}: register it with dc.user()")
        return self.users[uid]

    def _channel_arg(self, channel: int | Channel) -> Channel:
        cid = channel.id if isinstance(channel, Channel) else channel
        if cid not in self.channels:
            raise ValueError(f"unknown channel {cid}: register it with dc.channel()")
        return self.channels[cid]

    # -- what users do ------------------------------------------------------------------

    def send_message(
        self,
        channel: int | Channel,
        user: int | User,
        content: str,
        *,
        reference: int | StoredMessage | None = None,
        mentions: list[int] | None = None,
        attachments: list[tuple[str, str | bytes]] | None = None,
        type: int | None = None,
    ) -> StoredMessage:
        """A user posts; the bot gets MESSAGE_CREATE. Pings come from the content
        (``<@id>``, ``<@&id>``, @everyone) unless ``mentions`` gives the user ids;
        ``attachments`` are (filename, text or bytes), served by the fake; ``type``
        makes a system message (7 member join, 18 thread created, ...)."""
        ch, author = self._channel_arg(channel), self._user_arg(user)
        if len(content) > MAX_CONTENT:
            raise ValueError(f"Discord would refuse {len(content)} characters (max 2000)")
        ref = reference.id if isinstance(reference, StoredMessage) else reference
        if ref is not None and ref not in self._messages[ch.id]:
            raise ValueError(f"no message {ref} in channel {ch.id}")
        msg = self._store(ch, author, content, reference=ref)
        msg.type = type
        users, roles, everyone = parse_mentions(content)
        msg.mentions = list(mentions) if mentions is not None else users
        if ref is not None and mentions is None:
            replied = self._messages[ch.id][ref].author.id
            if replied not in msg.mentions:
                msg.mentions.append(replied)
        msg.mention_roles = roles
        msg.mention_everyone = everyone
        for name, data in attachments or []:
            raw = data.encode() if isinstance(data, str) else data
            msg.attachments.append(Attachment(id=self._ids.next(), filename=name, data=raw))
        self.dispatch("MESSAGE_CREATE", self.message_dict(msg, gateway=True), ch.guild_id)
        return msg

    def edit_message(self, channel: int | Channel, message_id: int, content: str) -> StoredMessage:
        """A user edits their message; the bot gets MESSAGE_UPDATE."""
        ch = self._channel_arg(channel)
        msg = self._messages[ch.id][message_id]
        self._revise(msg, content)
        msg.mentions, msg.mention_roles, msg.mention_everyone = parse_mentions(content)
        self.dispatch("MESSAGE_UPDATE", self.message_dict(msg, gateway=True), ch.guild_id)
        return msg

    def slash(
        self,
        channel: int | Channel,
        user: int | User,
        name: str,
        options: dict[str, Any] | None = None,
    ) -> Interaction:
        """A user runs ``/name``; the bot gets INTERACTION_CREATE. ``options`` maps
        option names to values (strings → type 3, ints → 4, bools → 5)."""
        ch, u = self._channel_arg(channel), self._user_arg(user)
        opts = [
            {
                "name": k,
                "type": 5 if isinstance(v, bool) else 4 if isinstance(v, int) else 3,
                "value": v,
            }
            for k, v in (options or {}).items()
        ]
        interaction = Interaction(
            id=self._ids.next(),
            token="aW50ZXJhY3Rpb24" + secrets.token_urlsafe(24),
            name=name,
            channel_id=ch.id,
            guild_id=ch.guild_id,
            user=u,
            options=opts,
            created=time.monotonic(),
        )
        self.interactions[interaction.id] = interaction
        command_id = next(
            (
                c["id"]
                for scope in (ch.guild_id, None)
                for c in self.commands.get(scope, [])
                if c["name"] == name
            ),
            str(self._ids.next()),
        )
        data: dict[str, Any] = {
            "id": str(interaction.id),
            "application_id": str(self.application_id),
            "type": 2,
            "data": {"id": command_id, "name": name, "type": 1, "options": opts},
            "channel_id": str(ch.id),
            "channel": self.channel_dict(ch),
            "token": interaction.token,
            "version": 1,
            "app_permissions": "562949953421311",
            "locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(ch.guild_id or u.id)},
            "context": 0 if ch.guild_id else 1,
            "attachment_size_limit": 10_485_760,
        }
        if ch.guild_id is not None:
            data["guild_id"] = str(ch.guild_id)
            data["guild_locale"] = "en-US"
            data["member"] = {
                **self._member_dict(ch.guild_id, u.id),
                "user": u.to_dict(),
                "permissions": "562949953421311",
            }
            data["guild"] = {"id": str(ch.guild_id), "locale": "en-US", "features": []}
        else:
            data["user"] = u.to_dict()
        self.dispatch("INTERACTION_CREATE", data, ch.guild_id)
        return interaction

    # -- the gateway, test side -----------------------------------------------------

    def dispatch(self, event: str, data: dict[str, Any], guild_id: int | None = None) -> None:
        """Send a dispatch to every session that sees ``guild_id``'s shard and has the
        intent for it (a session whose socket is gone keeps it for a RESUME)."""
        self._gateway.dispatch(event, data, guild_id)

    @property
    def events(self) -> list[dict[str, Any]]:
        """Every dispatch frame sent, session by session (oldest session first)."""
        return [f for s in self.sessions.values() for f in s.events]

    def _live(self) -> list[Session]:
        return self._gateway.live()

    async def reconnect(self) -> None:
        """Op 7 RECONNECT on every live socket: the client should RESUME."""
        self._gateway.reconnect()

    async def invalid_session(self, resumable: bool = False) -> None:
        """Op 9 INVALID_SESSION on every live socket; not resumable → sessions end."""
        self._gateway.invalid_session(resumable)

    async def drop(self) -> None:
        """Cut every gateway socket without a close frame (a network failure)."""
        self._gateway.drop()

    async def close_gateway(self, code: int, message: str = "") -> None:
        """Close every gateway socket with a close code (e.g. 4000 unknown error)."""
        self._gateway.close_gateway(code, message)

    def _app_flags(self) -> int:
        flags = 0
        if self.allowed_intents & INTENT_GUILD_PRESENCES:
            flags |= 1 << 12
        if self.allowed_intents & INTENT_GUILD_MEMBERS:
            flags |= 1 << 14
        if self.allowed_intents & INTENT_MESSAGE_CONTENT:
            flags |= 1 << 18
        return flags

    # -- JSON shapes ------------------------------------------------------------------

    def _member_dict(self, guild_id: int, user_id: int) -> dict[str, Any]:
        guild = self.guilds[guild_id]
        return {
            "roles": [str(r) for r in guild.members.get(user_id, [])],
            "joined_at": iso(guild.joined),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "nick": None,
            "avatar": None,
            "premium_since": None,
            "communication_disabled_until": None,
        }

    def channel_dict(self, channel: Channel) -> dict[str, Any]:
        recipients = []
        if channel.recipient_id is not None:
            recipients = [self.users[channel.recipient_id].to_dict()]
        return channel.to_dict(recipients)

    def guild_dict(self, guild: Guild) -> dict[str, Any]:
        channels = [self.channels[c] for c in guild.channel_ids]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "unavailable": False,
            "owner_id": str(guild.owner_id),
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "banner": None,
            "description": None,
            "features": [],
            "afk_channel_id": None,
            "afk_timeout": 300,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "vanity_url_code": None,
            "max_members": 500_000,
            "application_id": None,
            "joined_at": iso(guild.joined),
            "large": False,
            "lazy": True,
            "member_count": len(guild.members),
            "roles": [r.to_dict() for r in guild.roles.values()],
            "emojis": [],
            "stickers": [],
            "channels": [self.channel_dict(c) for c in channels if not c.is_thread],
            "threads": [self.channel_dict(c) for c in channels if c.is_thread and not c.archived],
            "members": [
                {**self._member_dict(guild.id, uid), "user": self.users[uid].to_dict()}
                for uid in guild.members
            ],
            "presences": [],
            "voice_states": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "embedded_activities": [],
        }

    def message_dict(
        self, msg: StoredMessage, *, gateway: bool = False, depth: int = 0
    ) -> dict[str, Any]:
        """A message as the API returns it (``gateway``: as MESSAGE_CREATE carries it,
        with guild_id and member, and content hidden without the intent)."""
        guild_id = msg.guild_id
        data: dict[str, Any] = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "author": msg.author.to_dict(),
            "content": msg.content,
            "timestamp": iso(msg.timestamp),
            "edited_timestamp": iso(msg.edited) if msg.edited else None,
            "tts": False,
            "mention_everyone": msg.mention_everyone,
            "mentions": [
                self._mention_dict(uid, guild_id if gateway else None)
                for uid in msg.mentions
                if uid in self.users
            ],
            "mention_roles": [str(r) for r in msg.mention_roles],
            "attachments": [self._attachment_dict(a) for a in msg.attachments],
            "embeds": list(msg.embeds),
            "components": [],
            "pinned": False,
            "type": msg.type if msg.type is not None else 19 if msg.reference else 0,
            "flags": msg.flags,
        }
        if msg.webhook_id is not None:
            data["webhook_id"] = str(msg.webhook_id)
        if msg.interaction_id is not None:
            interaction = self.interactions[msg.interaction_id]
            data["interaction_metadata"] = {
                "id": str(interaction.id),
                "type": 2,
                "user": interaction.user.to_dict(),
                "authorizing_integration_owners": {},
                "name": interaction.name,
                "command_type": 1,
            }
            data["type"] = 20
            data["application_id"] = str(self.application_id)
        if msg.reference is not None:
            data["message_reference"] = {
                "type": 0,
                "message_id": str(msg.reference),
                "channel_id": str(msg.channel_id),
            }
            if guild_id is not None:
                data["message_reference"]["guild_id"] = str(guild_id)
            target = self._messages[msg.channel_id].get(msg.reference)
            data["referenced_message"] = (
                self.message_dict(target, depth=depth + 1)
                if target is not None and not target.deleted and depth == 0
                else None
            )
        if gateway and guild_id is not None:
            data["guild_id"] = str(guild_id)
            if msg.author.id in self.guilds[guild_id].members:
                data["member"] = self._member_dict(guild_id, msg.author.id)
        return data

    def _mention_dict(self, user_id: int, guild_id: int | None) -> dict[str, Any]:
        data = self.users[user_id].to_dict()
        if guild_id is not None and user_id in self.guilds[guild_id].members:
            data["member"] = self._member_dict(guild_id, user_id)
        return data

    def _attachment_dict(self, a: Attachment) -> dict[str, Any]:
        url = f"{self.url}/attachments/{a.id}/{a.filename}"
        return {
            "id": str(a.id),
            "filename": a.filename,
            "size": len(a.data),
            "url": url,
            "proxy_url": url,
            "content_type": a.content_type,
        }

    async def _attachment(self, request: web.Request) -> web.Response:
        for channel in self._messages.values():
            for msg in channel.values():
                for a in msg.attachments:
                    if str(a.id) == request.match_info["id"]:
                        return web.Response(body=a.data, headers={"Content-Type": a.content_type})
        return web.Response(status=404)

    # -- storing ----------------------------------------------------------------------

    def _store(
        self,
        channel: Channel,
        author: User,
        content: str,
        *,
        reference: int | None = None,
        from_bot: bool = False,
        message_id: int | None = None,
    ) -> StoredMessage:
        msg = StoredMessage(
            id=message_id or self._ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=content,
            time=time.monotonic(),
            timestamp=time.time(),
            from_bot=from_bot,
            reference=reference,
        )
        self._messages[channel.id][msg.id] = msg
        channel.last_message_id = msg.id
        channel.message_count += 1
        self._notify()
        return msg

    def _revise(self, msg: StoredMessage, content: str) -> None:
        msg.history.append(Revision(content=msg.content, time=time.monotonic()))
        msg.content = content
        msg.edited = time.time()
        self._notify()

    # -- reading state --------------------------------------------------------------------

    def messages(self, channel_id: int, *, include_deleted: bool = False) -> list[StoredMessage]:
        """A channel's messages in order, as they are now."""
        return [
            m
            for m in self._messages.get(channel_id, {}).values()
            if include_deleted or not m.deleted
        ]

    def bot_messages(self, channel_id: int) -> list[StoredMessage]:
        return [m for m in self.messages(channel_id) if m.from_bot]

    def message(self, channel_id: int, message_id: int) -> StoredMessage | None:
        return self._messages.get(channel_id, {}).get(message_id)

    def calls_to(self, route: str) -> list[Call]:
        """Calls whose route matches exactly ("POST /channels/{channel_id}/messages")
        or, for a bare method name like "typing", whose route ends with it."""
        return [c for c in self.calls if c.route == route or c.route.endswith("/" + route)]

    # -- waiting ----------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait until ``predicate()`` is truthy; return its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._event
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = ", ".join(f"{c.route}→{c.status}" for c in self.calls[-8:])
                raise TimeoutError(f"condition not met within {timeout} s (last calls: {recent})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))

    async def wait_ready(self, sessions: int = 1, timeout: float = 10.0) -> list[Session]:
        """Wait until ``sessions`` sessions have been identified and are connected."""
        return await self.wait_for(
            lambda: live if len(live := self._live()) >= sessions else [], timeout
        )

    async def wait_bot_messages(
        self, channel_id: int, n: int, timeout: float = 10.0
    ) -> list[StoredMessage]:
        return await self.wait_for(
            lambda: found if len(found := self.bot_messages(channel_id)) >= n else [], timeout
        )

    async def wait_calls(self, route: str, n: int = 1, timeout: float = 10.0) -> list[Call]:
        """Wait until ``n`` calls matching ``route`` have been answered."""
        return await self.wait_for(
            lambda: (
                done
                if len(done := [c for c in self.calls_to(route) if c.finished is not None]) >= n
                else []
            ),
            timeout,
        )
