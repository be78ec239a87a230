"""The Discord bot: a discord.py Client feeding the chat service.

discord.py does the wire protocol (gateway heartbeats, RESUME after RECONNECT or a
dropped socket, REST rate-limit buckets and their 429s); every answer goes through the
shared delivery layer with Discord's limits. Answers run as our own tasks, so a shutdown
can let them finish within ``shutdown_grace``.

``api_base_url`` and ``gateway_url`` redirect discord.py through two class attributes
(``discord.http.Route.BASE``, ``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY``):
they are process-global, so every Discord bot in one ``parley run`` must use the same
endpoints (a second bot with other ones is refused at start).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import discord
import discord.gateway
import discord.http
import yarl

from adapters.base import Adapter, AdapterStartError, InFlight
from adapters.delivery.scheduler import DeliveryScheduler
from adapters.delivery.sink import DeliverySink
from adapters.delivery.target import PlatformLimits
from adapters.discord.attachments import TooLong, with_attachments
from adapters.discord.auto_thread import ThreadOnAnswer, thread_name
from adapters.discord.commands import command_tree, sync
from adapters.discord.config import DiscordBotConfig
from adapters.discord.limits import DISCORD_LIMITS
from adapters.discord.render import DiscordRenderer
from adapters.discord.target import Channel, DiscordTarget, InteractionTarget
from adapters.discord.updates import NO_TEXT_REPLY, SENDABLE, Inbound, from_a_person, inbound
from core.chat_service import ChatService
from core.http import redact_url
from core.incoming import IncomingMessage, ReplySink, ReplyTargetGone

log = logging.getLogger(__name__)

DISALLOWED_INTENTS = 4014
AUTHENTICATION_FAILED = 4004
BAD_TOKEN = "Discord rejected the bot token; reset it on the developer portal (Bot → Reset Token)"
TOO_LONG_FILES = "Those files are too long for me: the limit is {limit} characters in all."
MISSING_INTENT = (
    "Discord refused the Message Content intent; enable it on the developer portal "
    "(Bot → Privileged Gateway Intents → Message Content Intent)"
)


def intents() -> discord.Intents:
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True
    return wanted


def rest_base(url: str) -> str:
    """``http://host:port`` for a Discord-compatible server means its /api/v10."""
    url = url.rstrip("/")
    return url + "/api/v10" if urlsplit(url).path in ("", "/") else url


class _Endpoints:
    """The process-global redirect of discord.py, shared by the adapters using it and
    undone when the last one stops."""

    users = 0
    saved: tuple[str, yarl.URL] | None = None
    current: tuple[str | None, str | None] = (None, None)

    @classmethod
    @contextlib.contextmanager
    def use(cls, api: str | None, gateway: str | None) -> Iterator[None]:
        if cls.users and cls.current != (api, gateway):
            raise AdapterStartError(
                "every Discord bot in one parley process must use the same api_base_url "
                "and gateway_url (discord.py keeps them process-wide)"
            )
        if not cls.users:
            cls.saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
            cls.current = (api, gateway)
            if api is not None:
                discord.http.Route.BASE = rest_base(api)
            if gateway is not None:
                discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
        cls.users += 1
        try:
            yield
        finally:
            cls.users -= 1
            if not cls.users and cls.saved is not None:
                discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = (
                    cls.saved
                )
                cls.saved, cls.current = None, (None, None)


class _Client(discord.Client):
    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        super().__init__(**options)
        self._adapter = adapter

    async def on_message(self, message: discord.Message) -> None:
        self._adapter.on_message(message)


class _ShardedClient(discord.AutoShardedClient):
    """``shard_count`` (and ``shard_ids``): several processes share one bot's shards."""

    def __init__(self, adapter: DiscordAdapter, **options: Any) -> None:
        super().__init__(**options)
        self._adapter = adapter

    async def on_message(self, message: discord.Message) -> None:
        self._adapter.on_message(message)


class DiscordAdapter(Adapter):
    def __init__(
        self,
        config: DiscordBotConfig,
        service: ChatService,
        *,
        limits: PlatformLimits = DISCORD_LIMITS,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.service = service
        self.limits = limits
        self._client_options = dict(client_options or {})
        self._renderer = DiscordRenderer(limits.max_length)
        self._inflight = InFlight(config.name)
        self._scheduler: DeliveryScheduler | None = None
        self._client: discord.Client | None = None
        self._accepting = False

    @property
    def ready(self) -> bool:
        """Connected, and the guilds of READY are known."""
        return self._client is not None and self._client.is_ready() and self._accepting

    @property
    def connected(self) -> bool:
        """Ready, and the gateway socket (every shard's) open: false while discord.py
        reconnects, though ``is_ready()`` stays true then."""
        client = self._client
        if client is None or not self.ready:
            return False
        if isinstance(client, discord.AutoShardedClient):
            shards = client.shards.values()
            return bool(shards) and not any(shard.is_closed() for shard in shards)
        ws = client.ws
        return ws is not None and ws.open

    async def run(self, stop: asyncio.Event) -> None:
        # parley has no voice: discord.py's warnings about voice libraries are noise.
        discord.VoiceClient.warn_nacl = False
        discord.VoiceClient.warn_dave = False
        with _Endpoints.use(self.config.api_base_url, self.config.gateway_url):
            client = self._build()
            self._client = client
            tree = command_tree(
                client,
                bot=self.config.name,
                policy=self.service.policy,
                answer=self._answer_command,
            )
            try:
                await self._login(client)
                await sync(tree, self._command_guilds(), self.config.name)
                await self._serve(client, stop)
            finally:
                if not client.is_closed():
                    await client.close()

    def _command_guilds(self) -> list[int]:
        try:
            return [int(g) for g in self.config.command_guilds]
        except ValueError:
            raise AdapterStartError(
                "command_guilds: server ids are numbers (Developer Mode → right-click the "
                "server → Copy Server ID)"
            ) from None

    def _build(self) -> discord.Client:
        options: dict[str, Any] = {
            "intents": intents(),
            # The client-wide default too, under every call's own AllowedMentions.none():
            # nothing the bot sends may ping @everyone, @here, a role or a user.
            "allowed_mentions": discord.AllowedMentions.none(),
            **self._client_options,
        }
        if self.config.shard_count is None:
            return _Client(self, **options)
        return _ShardedClient(
            self,
            shard_count=self.config.shard_count,
            shard_ids=self.config.shard_ids,
            **options,
        )

    async def _login(self, client: discord.Client) -> None:
        token = self.config.token.get_secret_value() if self.config.token else ""
        try:
            await client.login(token)
        except discord.LoginFailure:
            raise AdapterStartError(BAD_TOKEN) from None
        except (aiohttp.ClientError, OSError) as exc:
            where = redact_url(discord.http.Route.BASE)
            raise AdapterStartError(
                f"cannot reach the Discord API at {where} ({type(exc).__name__}); check the "
                "network or api_base_url"
            ) from None
        except discord.HTTPException as exc:
            raise AdapterStartError(f"Discord refused to start the bot: {exc.text}") from None

    async def _serve(self, client: discord.Client, stop: asyncio.Event) -> None:
        scheduler = DeliveryScheduler(self.limits, metrics=self.service.metrics)
        self._scheduler = scheduler
        self._accepting = True
        connection = asyncio.ensure_future(client.connect(reconnect=True))
        stopping = asyncio.ensure_future(stop.wait())
        ready = asyncio.ensure_future(client.wait_until_ready())
        recovery: asyncio.Future[None] | None = None
        try:
            await asyncio.wait({connection, stopping, ready}, return_when=asyncio.FIRST_COMPLETED)
            if ready.done() and not connection.done():
                assert client.user is not None
                log.info("bot %s: %s is up on Discord", self.config.name, client.user)
                recovery = asyncio.ensure_future(self.service.keep_recovering(self))
                await asyncio.wait({connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if connection.done():
                self._gateway_failed(connection, started=ready.done())
            log.info("bot %s: stopping", self.config.name)
            self._accepting = False  # no new messages from here on
            await self._inflight.drain(self.config.shutdown_grace)
        finally:
            self._accepting = False
            if recovery is not None:
                recovery.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await recovery
            await self._inflight.drain(0)
            for task in (stopping, ready):
                task.cancel()
            await client.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(connection, 5)
            await scheduler.aclose()

    def _gateway_failed(self, connection: asyncio.Future[None], *, started: bool) -> None:
        """The gateway connection ended by itself: say why, in the operator's words."""
        exc = connection.exception()
        if isinstance(exc, discord.PrivilegedIntentsRequired):
            raise AdapterStartError(MISSING_INTENT) from None
        if isinstance(exc, discord.ConnectionClosed):
            if exc.code == DISALLOWED_INTENTS:
                raise AdapterStartError(MISSING_INTENT) from None
            if exc.code == AUTHENTICATION_FAILED:
                raise AdapterStartError(BAD_TOKEN) from None
        if exc is not None and not started:
            raise AdapterStartError(f"cannot connect to the Discord gateway: {exc}") from None
        if exc is not None:
            raise exc
        raise AdapterStartError("the Discord gateway connection closed")

    def _will_read(self, msg: IncomingMessage) -> bool:
        """Whether the chat service will look at ``msg`` (so its files are worth
        downloading): addressed to the bot, and from someone allowed."""
        policy = self.service.policy
        addressed = (
            msg.is_direct
            or msg.addresses_bot
            or msg.reply_to_bot
            or policy.group_trigger == "always"
        )
        return addressed and policy.is_allowed(msg)

    def on_message(self, message: discord.Message) -> None:
        client = self._client
        if not self._accepting or client is None or client.user is None:
            return
        if isinstance(message.channel, discord.PartialMessageable) and from_a_person(message):
            self._inflight.spawn(self._answer_uncached(message))
            return
        found = self._inbound(message)
        if found is not None:
            # Our own task, so the gateway reader goes on at once; the chat service's
            # per-scope lock keeps one scope's answers in order.
            self._inflight.spawn(self._answer(found))

    def _inbound(self, message: discord.Message, channel: object = None) -> Inbound | None:
        client = self._client
        assert client is not None and client.user is not None
        return inbound(
            message,
            bot=self.config.name,
            bot_id=client.user.id,
            auto_thread=self.config.auto_thread,
            channel=channel,
        )

    async def _answer_uncached(self, message: discord.Message) -> None:
        """A message in a channel discord.py has no object for (a thread it never
        heard of: no GUILD_CREATE or THREAD_CREATE listed it) comes with a
        ``PartialMessageable``: fetched, it is answered like any other. Not kept:
        discord.py has no public API to cache it (it adds the thread itself once a
        THREAD_UPDATE or THREAD_LIST_SYNC names it); until then, one GET per message."""
        client = self._client
        assert client is not None and client.user is not None
        where = message.channel.id
        try:
            channel: object = await client.fetch_channel(where)
        except discord.HTTPException as exc:
            self._dropped(where, f"fetching it failed: {exc.status} {exc.text or exc.code}")
            return
        except (discord.InvalidData, aiohttp.ClientError, OSError) as exc:
            self._dropped(where, f"fetching it failed: {exc or type(exc).__name__}")
            return
        found = self._inbound(message, channel)
        if found is None and not isinstance(channel, SENDABLE):
            self._dropped(where, f"it is a {type(channel).__name__}, not one the bot writes in")
        if found is not None:
            await self._answer(found)

    def _dropped(self, channel_id: int, why: str) -> None:
        log.info(
            "bot %s: dropped a message in channel %s, which discord.py does not know: %s",
            self.config.name,
            channel_id,
            why,
        )

    async def _answer_command(
        self, interaction: discord.Interaction[Any], msg: IncomingMessage, is_command: bool
    ) -> None:
        if not self._accepting:
            await interaction.delete_original_response()
            return
        self._inflight.spawn(self._answer_interaction(interaction, msg, is_command))

    async def _answer_interaction(
        self, interaction: discord.Interaction[Any], msg: IncomingMessage, is_command: bool
    ) -> None:
        assert self._scheduler is not None
        target = InteractionTarget(
            interaction, bot=self.config.name, ping_on_reply=self.config.ping_on_reply
        )
        sink = DeliverySink(
            self._scheduler,
            target,
            self._renderer,
            stream=self.config.stream,
            edit_interval=self.config.edit_interval,
            typing=False,
        )
        try:
            await self.service.handle(msg, sink, commands=is_command)
        finally:
            await sink.aclose()
            if not target.used:  # nothing to say (e.g. an empty prompt): no "thinking…"
                with contextlib.suppress(discord.HTTPException):
                    await interaction.delete_original_response()

    def _sink(
        self, channel: Channel, reply_to: int | None, adopt: Sequence[str] = ()
    ) -> DeliverySink:
        assert self._scheduler is not None
        target = DiscordTarget(
            channel,
            bot=self.config.name,
            reply_to=reply_to,
            ping_on_reply=self.config.ping_on_reply,
        )
        return DeliverySink(
            self._scheduler,
            target,
            self._renderer,
            stream=self.config.stream,
            edit_interval=self.config.edit_interval,
            typing=False,  # the chat service starts it once it decides to answer
            adopt=adopt,
        )

    @contextlib.asynccontextmanager
    async def reply_sink(
        self, msg: IncomingMessage, *, adopt: Sequence[str]
    ) -> AsyncIterator[ReplySink]:
        """Crash recovery's way back into a chat (``core.incoming.Redelivery``)."""
        client = self._client
        assert client is not None
        channel_id = int(msg.chat_id)
        channel = client.get_channel(channel_id) or await client.fetch_channel(channel_id)
        if not isinstance(channel, Channel):
            raise TypeError(f"channel {channel_id} is a {type(channel).__name__}")
        reply_to = None if msg.is_direct or not msg.message_id else int(msg.message_id)
        sink = self._sink(channel, reply_to, adopt)
        try:
            yield sink
        finally:
            await sink.aclose()

    def _reply_sink(self, found: Inbound) -> DeliverySink | ThreadOnAnswer:
        """Where the answer to ``found`` goes: a reply to it in its channel (in a DM
        only noise: no reply there), or, with ``auto_thread``, for a mention in a text
        channel, a thread opened once the chat service decides to answer."""
        raw = found.raw
        if (
            self.config.auto_thread
            and raw is not None
            and isinstance(found.channel, discord.TextChannel)
            and found.message.addresses_bot  # a mention opens one; chatter does not
        ):
            return ThreadOnAnswer(
                raw,
                found.channel,
                self._sink,
                bot=self.config.name,
                name=thread_name(found.message.text),
            )
        return self._sink(found.channel, None if found.message.is_direct else found.message_id)

    async def _answer(self, found: Inbound) -> None:
        sink = self._reply_sink(found)
        try:
            message = found.message
            if found.files and self._will_read(message):
                try:
                    text = await with_attachments(
                        message.text, list(found.files), self.config.max_input_chars
                    )
                except TooLong:
                    await sink.complete(TOO_LONG_FILES.format(limit=self.config.max_input_chars))
                    return
                message = dataclasses.replace(message, text=text)
            if found.has_text:
                await self.service.handle(message, sink)
            else:
                await sink.complete(NO_TEXT_REPLY)
        except ReplyTargetGone:  # NO_TEXT_REPLY only: the chat service catches its own
            log.info("bot %s: Discord channel %s is gone", self.config.name, found.channel.id)
        finally:
            await sink.aclose()
