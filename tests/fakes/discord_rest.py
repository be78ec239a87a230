"""The fake Discord's REST API v10 (see tests/fakes/discord_api.py for what it does)."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_request import FileField

from tests.fakes.discord_state import (
    Attachment,
    Call,
    Channel,
    Guild,
    Interaction,
    StoredMessage,
    parse_mentions,
)

if TYPE_CHECKING:
    from tests.fakes.discord_api import FakeDiscord

__all__ = ["ApiError", "Rest", "form_error"]

MAX_CONTENT = 2000
FLAG_SUPPRESS_EMBEDS = 4
FLAG_EPHEMERAL = 64
FLAG_SUPPRESS_NOTIFICATIONS = 4096
FLAG_LOADING = 128
# Routes authorised by the interaction token in the path, not by the bot token.
_TOKENLESS = ("/interactions/", "/webhooks/")
_COMMAND_NAME = re.compile(r"^[-_\w]{1,32}$")


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        code: int = 0,
        errors: dict[str, Any] | None = None,
        *,
        retry_after: float | None = None,
        is_global: bool = False,
        via: bool = True,
    ) -> None:
        super().__init__(message)
        self.via = via  # a 429 without Via is Cloudflare's, which discord.py does not retry
        self.status = status
        self.message = message
        self.code = code
        self.errors = errors
        self.retry_after = retry_after
        self.is_global = is_global

    def body(self) -> dict[str, Any]:
        if self.status == 429:
            return {
                "message": self.message,
                "retry_after": self.retry_after,
                "global": self.is_global,
                **({"code": self.code} if self.code else {}),
            }
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            data["errors"] = self.errors
        return data


def form_error(field: str, code: str, message: str) -> ApiError:
    """Discord's 400 "Invalid Form Body" (50035) for one field (dotted for nesting)."""
    errors: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for part in reversed(field.split(".")):
        errors = {part: errors}
    return ApiError(400, "Invalid Form Body", 50035, errors)


def unknown(what: str, code: int) -> ApiError:
    return ApiError(404, f"Unknown {what}", code)


MISSING_PERMISSIONS = ApiError(403, "Missing Permissions", 50013)


@dataclass
class Fault:
    route: str
    status: int
    message: str | None
    code: int
    retry_after: float | None
    is_global: bool
    times: int
    channel_id: int | None
    via: bool = True


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    # Exactly "application/json": aiohttp's json_response adds "; charset=utf-8", and
    # discord.py's json_or_text then treats the body as text and crashes in login.
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


Handler = Callable[[Call], Awaitable[Any]]


class Rest:
    def __init__(self, fake: FakeDiscord) -> None:
        self.fake = fake
        self.faults: list[Fault] = []
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/users/@me", self._me),
            ("POST", "/users/@me/channels", self._create_dm),
            ("GET", "/users/{user_id}", self._get_user),
            ("GET", "/oauth2/applications/@me", self._application),
            ("GET", "/gateway/bot", self._gateway_bot),
            ("GET", "/gateway", self._gateway_plain),
            ("GET", "/channels/{channel_id}", self._get_channel),
            ("POST", "/channels/{channel_id}/messages", self._create_message),
            ("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message),
            ("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message),
            ("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message),
            ("POST", "/channels/{channel_id}/typing", self._typing),
            (
                "POST",
                "/channels/{channel_id}/messages/{message_id}/threads",
                self._thread_from_message,
            ),
            ("POST", "/channels/{channel_id}/threads", self._thread_without_message),
            ("PUT", "/applications/{application_id}/commands", self._put_commands),
            ("GET", "/applications/{application_id}/commands", self._get_commands),
            (
                "PUT",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._put_commands,
            ),
            (
                "GET",
                "/applications/{application_id}/guilds/{guild_id}/commands",
                self._get_commands,
            ),
            ("POST", "/interactions/{interaction_id}/{token}/callback", self._callback),
            ("POST", "/webhooks/{application_id}/{token}", self._followup),
            (
                "GET",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._get_webhook_message,
            ),
            (
                "PATCH",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._edit_webhook_message,
            ),
            (
                "DELETE",
                "/webhooks/{application_id}/{token}/messages/{message_id}",
                self._delete_webhook_message,
            ),
        ]
        self.routes = [
            (
                method,
                template,
                re.compile(
                    "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
                ),
                handler,
            )
            for method, template, handler in routes
        ]

    # -- the HTTP side ----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        fake = self.fake
        path = "/" + request.match_info["tail"]
        call = Call(
            method=request.method,
            route=f"{request.method} {path}",
            path=path,
            params={},
            query=dict(request.query),
            body=None,
            time=time.monotonic(),
        )
        fake.calls.append(call)
        headers: dict[str, str] = {}
        try:
            handler = self._match(call)
            call.body = await self._read_body(request, call)
            if not path.startswith(_TOKENLESS) and (
                request.headers.get("Authorization") != f"Bot {fake.token}"
            ):
                raise ApiError(401, "401: Unauthorized", 0)
            self._check_faults(call)
            self._check_flood(call)
            result = await handler(call)
            call.status = 204 if result is None else 200
            call.response = result
            headers.update(self._bucket_headers(call))
        except ApiError as exc:
            call.status, call.response = exc.status, exc.body()
            if exc.status == 429:
                fake.count_429 += 1
                call.retry_after = exc.retry_after
                if exc.via:
                    headers["Via"] = "1.1 google"
                headers.update(
                    {
                        "Retry-After": str(math.ceil(exc.retry_after or 1)),
                        "X-RateLimit-Scope": "global" if exc.is_global else "user",
                    }
                )
                if exc.is_global:
                    headers["X-RateLimit-Global"] = "true"
        call.finished = time.monotonic()
        fake._notify()
        if call.status == 204:
            return web.Response(status=204, headers=headers)
        return json_response(call.response, call.status, headers)

    def _match(self, call: Call) -> Handler:
        path_found = False
        for method, template, pattern, handler in self.routes:
            m = pattern.match(call.path)
            if m is None:
                continue
            path_found = True
            if method == call.method:
                call.route = f"{method} {template}"
                call.params = m.groupdict()
                return handler
        if path_found:
            raise ApiError(405, "405: Method Not Allowed", 0)
        raise ApiError(404, "404: Not Found", 0)

    async def _read_body(self, request: web.Request, call: Call) -> Any:
        if not request.can_read_body:
            return None
        if request.content_type == "multipart/form-data":
            form = await request.post()
            body: dict[str, Any] = {}
            files: list[Attachment] = []
            for key, value in form.items():
                if key == "payload_json" and isinstance(value, str):
                    body = json.loads(value)
                elif isinstance(value, FileField):
                    files.append(
                        Attachment(
                            id=self.fake._ids.next(),
                            filename=value.filename,
                            data=value.file.read(),
                            content_type=value.content_type,
                        )
                    )
            body["_files"] = files
            return body
        raw = await request.read()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "400: Bad Request", 50109) from None  # "request body is
            # invalid JSON"

    def _check_faults(self, call: Call) -> None:
        for fault in self.faults:
            if (fault.route == call.route or call.route.endswith("/" + fault.route)) and (
                fault.channel_id in (None, call.channel_id)
            ):
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                if fault.status == 429:
                    raise ApiError(
                        429,
                        fault.message or "You are being rate limited.",
                        fault.code,
                        retry_after=fault.retry_after if fault.retry_after is not None else 0.1,
                        is_global=fault.is_global,
                        via=fault.via,
                    )
                raise ApiError(fault.status, fault.message or "fake failure", fault.code)

    def _counts_per_channel(self, call: Call) -> bool:
        return call.route in (
            "POST /channels/{channel_id}/messages",
            "PATCH /channels/{channel_id}/messages/{message_id}",
        )

    def _check_flood(self, call: Call) -> None:
        limits = self.fake.flood
        if limits is None:
            return
        if call.path.startswith("/interactions/"):
            return  # Discord's global limit does not apply to interaction callbacks
        channel = call.channel_id if self._counts_per_channel(call) else None
        refused = self.fake._flood_gate.check(limits, channel, call.time)
        if refused is not None:
            retry, is_global = refused
            raise ApiError(
                429,
                "You are being rate limited.",
                0 if is_global else 20028,
                retry_after=retry,
                is_global=is_global,
            )

    def _bucket_headers(self, call: Call) -> dict[str, str]:
        limits = self.fake.flood
        if limits is not None and self._counts_per_channel(call) and call.channel_id:
            limit, remaining, reset_after = self.fake._flood_gate.bucket(
                limits, call.channel_id, call.time
            )
            bucket = "a06de0de4a4c1b0ae6d4d3b5e5b1ab30"  # made up, one per route
        else:
            # Without flood mode a bucket never runs dry, so discord.py never waits.
            limit, remaining, reset_after = 50, 49, 1.0
            bucket = f"{abs(hash(call.route.split(' ', 1)[1])) & 0xFFFFFFFF:032x}"
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket,
        }

    # -- helpers ------------------------------------------------------------------------

    def _channel(self, call: Call) -> Channel:
        channel = self.fake.channels.get(int(call.params["channel_id"]))
        if channel is None:
            raise unknown("Channel", 10003)
        return channel

    def _writable(self, call: Call) -> Channel:
        channel = self._channel(call)
        parent = self.fake.channels.get(channel.parent_id or 0)
        if channel.forbidden or (parent is not None and parent.forbidden):
            raise MISSING_PERMISSIONS
        return channel

    def _own(self, channel: Channel, message_id: str) -> StoredMessage:
        msg = self.fake.message(channel.id, int(message_id)) if message_id.isdigit() else None
        if msg is None or msg.deleted:
            raise unknown("Message", 10008)
        return msg

    def _content(self, body: dict[str, Any], *, required: bool) -> str:
        content = body.get("content")
        content = "" if content is None else str(content)
        if len(content) > MAX_CONTENT:
            raise form_error("content", "BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        if required and not content.strip() and not body.get("embeds") and not body.get("_files"):
            raise ApiError(400, "Cannot send an empty message", 50006)
        return content

    def pings(
        self,
        content: str,
        allowed: Any,
        guild: Guild | None,
        replied_author: int | None,
    ) -> tuple[list[int], list[int], bool]:
        """Who a bot's message pings, as Discord computes it (see the module docstring
        of discord_api)."""
        users, roles, everyone = parse_mentions(content)
        if allowed is None:
            parse, only_users, only_roles, replied = {"users", "roles", "everyone"}, [], [], True
        else:
            if not isinstance(allowed, dict):
                raise form_error("allowed_mentions", "MODEL_TYPE_CONVERT", "Only dictionaries")
            parse = set(allowed.get("parse") or [])
            only_users = [int(u) for u in allowed.get("users") or []]
            only_roles = [int(r) for r in allowed.get("roles") or []]
            replied = bool(allowed.get("replied_user", False))
            for kind, listed in (("users", only_users), ("roles", only_roles)):
                if kind in parse and listed:
                    raise form_error(
                        "allowed_mentions",
                        "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                        f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.',
                    )
        pinged = [
            u for u in users if u in self.fake.users and ("users" in parse or u in only_users)
        ]
        pinged_roles: list[int] = []
        if guild is not None:
            pinged_roles = [
                r
                for r in roles
                if r in guild.roles
                and ("roles" in parse or r in only_roles)
                and (guild.roles[r].mentionable or guild.bot_mention_everyone)
            ]
        pings_everyone = (
            everyone and "everyone" in parse and guild is not None and guild.bot_mention_everyone
        )
        if replied and replied_author is not None and replied_author not in pinged:
            pinged.append(replied_author)
        return pinged, pinged_roles, pings_everyone

    def _reference(self, channel: Channel, body: dict[str, Any]) -> int | None:
        ref = body.get("message_reference")
        if not isinstance(ref, dict) or ref.get("message_id") is None:
            return None
        target = self.fake.message(channel.id, int(ref["message_id"]))
        if target is None or target.deleted:
            if ref.get("fail_if_not_exists", True):
                raise form_error(
                    "message_reference", "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message"
                )
            return None
        return target.id

    def _bot_message(
        self,
        channel: Channel,
        body: dict[str, Any],
        *,
        required: bool = True,
        flags: int = 0,
        interaction: Interaction | None = None,
        call: Call | None = None,
    ) -> StoredMessage:
        fake = self.fake
        content = self._content(body, required=required)
        reference = self._reference(channel, body)
        guild = fake.guilds.get(channel.guild_id or 0)
        replied = None
        if reference is not None:
            target = fake.message(channel.id, reference)
            replied = target.author.id if target is not None else None
        allowed = body.get("allowed_mentions")
        users, roles, everyone = self.pings(content, allowed, guild, replied)
        msg = fake._store(channel, fake.bot, content, reference=reference, from_bot=True)
        msg.mentions, msg.mention_roles, msg.mention_everyone = users, roles, everyone
        msg.allowed_mentions = allowed
        if call is not None:
            call.pinged = (users, roles, everyone)
        msg.embeds = list(body.get("embeds") or [])
        msg.attachments = list(body.get("_files") or [])
        kept = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS
        if interaction is not None:
            kept |= FLAG_EPHEMERAL  # ephemeral exists only for interaction responses
        msg.flags = flags | (int(body.get("flags") or 0) & kept)
        if interaction is not None:
            msg.interaction_id = interaction.id
            msg.webhook_id = fake.application_id
        if not msg.ephemeral:
            fake.dispatch("MESSAGE_CREATE", fake.message_dict(msg, gateway=True), channel.guild_id)
        return msg

    def _edit(
        self, msg: StoredMessage, body: dict[str, Any], call: Call | None = None
    ) -> StoredMessage:
        fake = self.fake
        if msg.author.id != fake.bot.id:
            raise ApiError(403, "Cannot edit a message authored by another user", 50005)
        content = self._content(body, required=False) if "content" in body else msg.content
        embeds = list(body.get("embeds") or []) if "embeds" in body else msg.embeds
        if not content.strip() and not embeds and not msg.attachments:
            raise ApiError(400, "Cannot send an empty message", 50006)
        if "content" in body:
            # Pings are recomputed for the new content (guessed: with Discord's defaults
            # when the edit has no allowed_mentions); a reply keeps pinging its author
            # only if it did so far and the edit's allowed_mentions still allow it.
            replied = None
            target = fake.message(msg.channel_id, msg.reference) if msg.reference else None
            if target is not None and target.author.id in msg.mentions:
                replied = target.author.id
            allowed = body.get("allowed_mentions")
            guild = fake.guilds.get(msg.guild_id or 0)
            users, roles, everyone = self.pings(content, allowed, guild, replied)
            fake._revise(msg, content)
            msg.mentions, msg.mention_roles, msg.mention_everyone = users, roles, everyone
            msg.allowed_mentions = allowed
            if call is not None:
                call.pinged = (users, roles, everyone)
        msg.embeds = embeds
        msg.flags &= ~FLAG_LOADING
        if not msg.ephemeral:
            fake.dispatch("MESSAGE_UPDATE", fake.message_dict(msg, gateway=True), msg.guild_id)
        return msg

    # -- routes ----------------------------------------------------------------------

    async def _me(self, call: Call) -> Any:
        return {
            **self.fake.bot.to_dict(),
            "verified": True,
            "mfa_enabled": False,
            "locale": "en-US",
        }

    async def _create_dm(self, call: Call) -> Any:
        body = call.body or {}
        user_id = int(body.get("recipient_id", 0))
        if user_id not in self.fake.users:
            raise unknown("User", 10013)
        return self.fake.channel_dict(self.fake.dm(user_id))

    async def _get_user(self, call: Call) -> Any:
        user_id = call.params["user_id"]
        user = self.fake.users.get(int(user_id)) if user_id.isdigit() else None
        if user is None:
            raise unknown("User", 10013)
        return user.to_dict()

    async def _application(self, call: Call) -> Any:
        fake = self.fake
        owner = next((u for u in fake.users.values() if not u.bot), fake.bot)
        return {
            "id": str(fake.application_id),
            "name": fake.bot.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "hook": True,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "owner": owner.to_dict(),
            "team": None,
            "flags": fake._app_flags(),
            "bot": fake.bot.to_dict(),
            "interactions_endpoint_url": None,
            "redirect_uris": [],
            "approximate_guild_count": len(fake.guilds),
            "integration_types_config": {"0": {}},
        }

    async def _gateway_bot(self, call: Call) -> Any:
        return {
            "url": self.fake.gateway_url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000,
                "remaining": 999,
                "reset_after": 86_400_000,
                "max_concurrency": 1,
            },
        }

    async def _gateway_plain(self, call: Call) -> Any:
        return {"url": self.fake.gateway_url}

    async def _get_channel(self, call: Call) -> Any:
        return self.fake.channel_dict(self._channel(call))

    async def _create_message(self, call: Call) -> Any:
        channel = self._writable(call)
        body = call.body if isinstance(call.body, dict) else {}
        return self.fake.message_dict(self._bot_message(channel, body, call=call))

    async def _get_message(self, call: Call) -> Any:
        channel = self._channel(call)
        return self.fake.message_dict(self._own(channel, call.params["message_id"]))

    async def _edit_message(self, call: Call) -> Any:
        channel = self._writable(call)
        msg = self._own(channel, call.params["message_id"])
        body = call.body if isinstance(call.body, dict) else {}
        return self.fake.message_dict(self._edit(msg, body, call))

    async def _delete_message(self, call: Call) -> Any:
        channel = self._writable(call)
        msg = self._own(channel, call.params["message_id"])
        msg.deleted = True
        self.fake.dispatch(
            "MESSAGE_DELETE",
            {
                "id": str(msg.id),
                "channel_id": str(channel.id),
                **({"guild_id": str(channel.guild_id)} if channel.guild_id else {}),
            },
            channel.guild_id,
        )
        return None

    async def _typing(self, call: Call) -> Any:
        self._writable(call)
        return None

    def _new_thread(
        self, parent: Channel, thread_id: int, body: dict[str, Any], kind: int
    ) -> dict[str, Any]:
        fake = self.fake
        name = str(body.get("name") or "")
        if not 1 <= len(name) <= 100:
            raise form_error("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        if parent.type != 0:
            raise ApiError(400, "Cannot execute action on this channel type", 50024)
        thread = fake.thread(parent, thread_id, name, private=kind == 12)
        thread.auto_archive_duration = int(body.get("auto_archive_duration") or 4320)
        data = fake.channel_dict(thread)
        fake.dispatch(
            "THREAD_CREATE",
            {
                **data,
                "newly_created": True,
                "member": {
                    "id": str(thread.id),
                    "user_id": str(fake.bot.id),
                    "join_timestamp": data["thread_metadata"]["create_timestamp"],
                    "flags": 1,
                },
            },
            parent.guild_id,
        )
        return data

    async def _thread_from_message(self, call: Call) -> Any:
        parent = self._writable(call)
        msg = self._own(parent, call.params["message_id"])
        if msg.id in self.fake.channels:
            raise ApiError(400, "A thread has already been created for this message", 160004)
        return self._new_thread(parent, msg.id, call.body or {}, 11)

    async def _thread_without_message(self, call: Call) -> Any:
        parent = self._writable(call)
        body = call.body or {}
        kind = int(body.get("type") or 12)  # Discord's default is a private thread
        return self._new_thread(parent, self.fake._ids.next(), body, kind)

    def _scope(self, call: Call) -> int | None:
        if int(call.params["application_id"]) != self.fake.application_id:
            raise ApiError(403, "Missing Access", 50001)
        guild_id = call.params.get("guild_id")
        if guild_id is None:
            return None
        if int(guild_id) not in self.fake.guilds:
            raise ApiError(403, "Missing Access", 50001)
        return int(guild_id)

    async def _put_commands(self, call: Call) -> Any:
        fake = self.fake
        scope = self._scope(call)
        body = call.body if isinstance(call.body, list) else []
        old = {c["name"]: c for c in fake.commands.get(scope, [])}
        stored: list[dict[str, Any]] = []
        for index, command in enumerate(body):
            name = str(command.get("name", ""))
            kind = int(command.get("type", 1))
            if not _COMMAND_NAME.match(name) or (kind == 1 and name != name.lower()):
                raise form_error(f"{index}.name", "APPLICATION_COMMAND_INVALID_NAME", "Invalid")
            description = str(command.get("description", ""))
            if kind == 1 and not 1 <= len(description) <= 100:
                raise form_error(
                    f"{index}.description",
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 100 in length.",
                )
            entry = {
                "id": old[name]["id"] if name in old else str(fake._ids.next()),
                "application_id": str(fake.application_id),
                "version": str(fake._ids.next()),
                "default_member_permissions": None,
                "type": kind,
                "nsfw": False,
                **{k: v for k, v in command.items() if k not in ("id", "application_id")},
            }
            entry.setdefault("options", [])
            if scope is not None:
                entry["guild_id"] = str(scope)
            stored.append(entry)
        fake.commands[scope] = stored
        return stored

    async def _get_commands(self, call: Call) -> Any:
        return self.fake.commands.get(self._scope(call), [])

    def _interaction_by_token(self, call: Call) -> Interaction:
        if int(call.params["application_id"]) != self.fake.application_id:
            raise unknown("Webhook", 10015)
        for interaction in self.fake.interactions.values():
            if interaction.token == call.params["token"]:
                if interaction.callback_type is None:
                    raise unknown("Webhook", 10015)  # guessed: no followup before a callback
                if time.monotonic() - interaction.created > 15 * 60:
                    raise ApiError(401, "Invalid Webhook Token", 50027)
                return interaction
        raise unknown("Webhook", 10015)

    async def _callback(self, call: Call) -> Any:
        fake = self.fake
        interaction = fake.interactions.get(int(call.params["interaction_id"]))
        if interaction is None or interaction.token != call.params["token"]:
            raise unknown("interaction", 10062)
        if interaction.callback_type is not None:
            raise ApiError(400, "Interaction has already been acknowledged.", 40060)
        if call.time - interaction.created > fake.interaction_deadline:
            raise unknown("interaction", 10062)
        body = call.body if isinstance(call.body, dict) else {}
        kind = int(body.get("type", 0))
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        assert isinstance(data, dict)
        channel = fake.channels[interaction.channel_id]
        ephemeral = bool(int(data.get("flags") or 0) & FLAG_EPHEMERAL)
        msg: StoredMessage | None = None
        if kind == 4:
            msg = self._bot_message(channel, data, interaction=interaction, call=call)
        elif kind == 5:
            msg = self._bot_message(
                channel,
                {"content": "", "flags": data.get("flags")},
                required=False,
                flags=FLAG_LOADING,
                interaction=interaction,
            )
        elif kind not in (1, 6, 7, 8, 9, 10, 12):
            raise form_error("type", "BASE_TYPE_CHOICES", f"Value must be one of ... (got {kind})")
        interaction.callback_type = kind
        interaction.callback_time = call.time
        interaction.ephemeral = ephemeral
        if msg is not None:
            interaction.original = msg.id
        if call.query.get("with_response") not in ("1", "true", "True"):
            return None
        result: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": 2,
                "response_message_id": str(msg.id) if msg else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": ephemeral,
            },
        }
        if kind in (4, 5):
            result["resource"] = {"type": kind}
            if msg is not None:
                result["resource"]["message"] = fake.message_dict(msg)
        return result

    async def _followup(self, call: Call) -> Any:
        interaction = self._interaction_by_token(call)
        channel = self.fake.channels[interaction.channel_id]
        body = call.body if isinstance(call.body, dict) else {}
        msg = self._bot_message(channel, body, interaction=interaction, call=call)
        interaction.followups.append(msg.id)
        if call.query.get("wait") not in ("1", "true", "True"):
            return None
        return self.fake.message_dict(msg)

    def _webhook_message(self, call: Call) -> StoredMessage:
        interaction = self._interaction_by_token(call)
        mid = call.params["message_id"]
        if mid == "@original":
            if interaction.original is None:
                raise unknown("Message", 10008)
            mid = str(interaction.original)
        elif int(mid) not in (interaction.original, *interaction.followups):
            raise unknown("Message", 10008)
        return self._own(self.fake.channels[interaction.channel_id], mid)

    async def _get_webhook_message(self, call: Call) -> Any:
        return self.fake.message_dict(self._webhook_message(call))

    async def _edit_webhook_message(self, call: Call) -> Any:
        msg = self._webhook_message(call)
        body = call.body if isinstance(call.body, dict) else {}
        return self.fake.message_dict(self._edit(msg, body, call))

    async def _delete_webhook_message(self, call: Call) -> Any:
        msg = self._webhook_message(call)
        msg.deleted = True
        return None
