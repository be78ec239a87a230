"""A protocol-faithful fake Telegram Bot API server on 127.0.0.1, for tests and benchmarks.

The real python-telegram-bot talks to it over a loopback socket::

    async with FakeTelegram(token="123:abc", username="parley_bot") as tg:
        app = (ApplicationBuilder().token(tg.token).base_url(tg.api_base_url)
               .base_file_url(tg.file_base_url).build())
        tg.private_chat(42, "Alice")
        tg.send_text(42, 42, "hello")                 # a user writes; the bot polls it
        [answer] = await tg.wait_bot_messages(42, 1)  # what the bot sent, current state
        tg.calls_to("sendMessage")[-1].params         # what PTB put on the wire

What it does, like api.telegram.org (error texts are Telegram's, taken from the Bot API
server's and tdlib's sources where they say them):

- ``POST|GET /bot<TOKEN>/<method>`` with a form-encoded, multipart or JSON body and/or
  a query string. Method names are case-insensitive, as Telegram's are. Another token
  → 401 "Unauthorized"; an unknown method → 404 "Not Found" (PTB maps both to
  InvalidToken). Replies are ``{"ok": true, "result": ...}``; errors
  ``{"ok": false, "error_code": N, "description": "..."}``, a 429 also with
  ``parameters.retry_after`` (integer seconds) and a ``Retry-After`` header.
- getMe, logOut, close, getUpdates (offset confirms and drops older updates, a negative
  offset keeps the last -offset, limit 1..100, timeout long polling, allowed_updates
  remembered between calls; a newer getUpdates ends an older pending one with 409
  "terminated by other getUpdates request"), setWebhook / deleteWebhook /
  getWebhookInfo (while a webhook is set getUpdates answers 409, and each update is
  POSTed as JSON to the URL, with ``X-Telegram-Bot-Api-Secret-Token`` when a
  secret_token was given, one at a time, retried every ``webhook_retry_delay`` s until
  the bot answers 2xx; each attempt is recorded in ``webhook_deliveries``),
  setMyCommands / getMyCommands / deleteMyCommands (per scope and language),
  sendMessage, editMessageText, deleteMessage, sendChatAction, sendMessageDraft,
  getChat, getChatMember. Unknown parameters are ignored, as Telegram ignores them.
- Texts are processed as Telegram does (tests/fakes/telegram_markup.py): parse_mode
  HTML / MarkdownV2 / Markdown is parsed into entities, or refused with "Bad Request:
  can't parse entities: <tdlib's message>"; with a parse_mode, ``entities`` is ignored;
  explicit entities are checked ("can't parse MessageEntity: Unsupported type
  specified", "entity beginning at UTF-16 offset 0 ends after the end of the text at
  UTF-16 offset 9"); control characters become spaces, the text is trimmed, mentions /
  commands / URLs / hashtags get their entities. Then: no ``text`` → "message text is
  empty", nothing left → "message must be non-empty", more than 4096 UTF-16 code units
  → "message is too long". Editing to the same text, entities and reply markup →
  "message is not modified: ...". Only the bot's own messages can be edited; the bot
  can delete its own messages, and any in a private chat (others in groups only as
  ``bot_admin``).
- Forum topics: a message in a topic has ``message_thread_id`` and
  ``is_topic_message``, and, when it replies to nothing, ``reply_to_message`` = the
  topic's ``forum_topic_created`` service message (a real Telegram quirk). An unknown
  thread in a forum → "message thread not found"; outside forums the thread id is
  ignored.
- Privacy mode (``privacy_mode=True``; Telegram's default for new bots): in groups
  where the bot is not admin, only commands for this bot (``/cmd@bot``, or ``/cmd`` if
  this bot was the last bot to write there), replies to the bot's messages and service
  messages are delivered; mentions are not. Messages from other bots are not delivered
  to bots unless ``deliver_bot_messages`` (Telegram never delivers them).
- Flood mode (``flood=True`` or a ``FloodLimits``): message operations
  (``FLOOD_OPS``: sendMessage, editMessageText, sendMessageDraft, deleteMessage;
  sendChatAction is free) beyond the limits get 429 "Too Many Requests: retry after N"
  and are NOT performed. Each limit ``(n, period)`` is a sliding window: an op is
  refused while ``n`` earlier accepted ops in the same scope are younger than
  ``period - slack`` seconds; ``slack`` (default 0.05 s) absorbs loopback jitter for a
  client that paces itself exactly at the limit. ``retry_after`` = seconds until the
  window frees, rounded up, at least 1. Scopes: one chat (``chat``), one group or
  supergroup (``group``, on top of ``chat``), the whole bot (``overall``). Ops are
  counted when they pass the check, whether or not they then fail with a 400. With
  ``penalty = True`` a refused scope keeps answering 429 until its retry_after has
  passed, as Telegram does, and those 429s count too. ``count_429`` counts every 429.

Test side (sync unless it waits): ``user``, ``private_chat``, ``group``, ``channel``,
``create_topic`` register state; ``send_text``, ``send_sticker``, ``send_photo``,
``send_document``, ``send_voice``, ``edit_text``, ``channel_post`` and ``send_update``
make what users do arrive as updates; ``messages`` / ``bot_messages`` give the current
state of a chat (``StoredMessage`` with edit ``history``); ``calls`` / ``calls_to``
record every API call (``Call``); ``drafts`` every draft per chat; ``wait_for``,
``wait_bot_messages`` and ``wait_calls`` wait; ``fail_next``, ``drop_next``, ``block``
and ``reject_drafts`` inject faults; ``post_webhook`` POSTs an update with any secret.

Guessed, not taken from Telegram (no source at hand says them): the descriptions of
sendMessageDraft refusals (``DRAFT_NOT_PRIVATE``, ``DRAFTS_UNAVAILABLE``,
``DRAFT_ID_ZERO``, and "message is too long" for a long draft), the setMyCommands and
setWebhook validation texts, "message can't be deleted" for another user's group
message, "user not found" from getChatMember, "bot was kicked from the channel chat",
"MESSAGE_ID_INVALID" for inline_message_id (not supported). Deliberate differences: any
http(s) webhook URL is accepted (Telegram wants HTTPS on 443/80/88/8443 and refuses
loopback addresses); URLs are detected only with a scheme or ``www.``; a webhook gets
one update at a time. Shutdown answers open long polls with ``[]`` at once so tests do
not wait for their timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import aiohttp
from aiohttp import web

from tests.fakes.loopback import LoopbackServer
from tests.fakes.telegram_markup import (
    Entity,
    EntityError,
    FormatError,
    ParseError,
    entities_from_json,
    finalize,
    parse_html,
    parse_markdown,
    parse_markdown_v2,
    utf16_len,
)
from tests.fakes.telegram_state import (
    Call,
    Chat,
    Draft,
    FloodGate,
    FloodLimits,
    Revision,
    StoredMessage,
    User,
    Webhook,
    WebhookDelivery,
    peek_int,
)

__all__ = [
    "BLOCKED",
    "CONFLICT_TERMINATED",
    "CONFLICT_WEBHOOK",
    "DRAFTS_UNAVAILABLE",
    "DRAFT_ID_ZERO",
    "DRAFT_NOT_PRIVATE",
    "FLOOD_OPS",
    "KICKED_GROUP",
    "KICKED_SUPERGROUP",
    "MAX_TEXT_UTF16",
    "NOT_MODIFIED",
    "Call",
    "Chat",
    "Draft",
    "FakeTelegram",
    "FloodLimits",
    "Revision",
    "StoredMessage",
    "User",
    "Webhook",
    "WebhookDelivery",
]

T = TypeVar("T")

MAX_TEXT_UTF16 = 4096
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
    "delete the webhook first"
)
CONFLICT_TERMINATED = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance "
    "is running"
)
BLOCKED = "Forbidden: bot was blocked by the user"
KICKED_GROUP = "Forbidden: bot was kicked from the group chat"
KICKED_SUPERGROUP = "Forbidden: bot was kicked from the supergroup chat"
KICKED_CHANNEL = "Forbidden: bot was kicked from the channel chat"  # guessed
# Guessed: Telegram documents the rules (private chats only, non-zero draft_id) but no
# source gives the texts. MTProto-style names are what the Bot API passes through.
DRAFT_NOT_PRIVATE = "Bad Request: TEXTDRAFT_PEER_INVALID"
DRAFT_ID_ZERO = "Bad Request: draft_id must be non-zero"
DRAFTS_UNAVAILABLE = (
    "Bad Request: method sendMessageDraft is available only for bots with forum topic mode enabled"
)

FLOOD_OPS = frozenset({"sendMessage", "editMessageText", "sendMessageDraft", "deleteMessage"})
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)
# What getUpdates / a webhook deliver when allowed_updates is not set (Telegram's rule).
DEFAULT_EXCLUDED_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
# Form values that stay strings (the rest are JSON-decoded, falling back to the string):
# a text "42" is the text "42", not the number.
STRING_PARAMS = frozenset(
    {
        "text",
        "parse_mode",
        "url",
        "secret_token",
        "action",
        "language_code",
        "caption",
        "ip_address",
        "inline_message_id",
        "emoji",
        "title",
        "name",
        "description",
        "business_connection_id",
        "message_effect_id",
    }
)
_DEFAULT_SECRET: Any = object()


@dataclass
class _Fault:
    method: str
    status: int
    description: str
    retry_after: int | None
    times: int
    chat_id: int | None
    drop: bool = False


class ApiError(Exception):
    def __init__(self, status: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.retry_after is not None:
            data["parameters"] = {"retry_after": self.retry_after}
        return data


class _Drop(Exception):
    """Close the connection without an answer."""


@dataclass
class _Reply:
    result: Any
    description: str | None = None


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1")
    return bool(value)


def _as_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _decode_form(key: str, value: str) -> Any:
    if key in STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _default_description(status: int, retry_after: int | None) -> str:
    return {
        400: "Bad Request: fake failure",
        401: "Unauthorized",
        403: BLOCKED,
        404: "Not Found",
        409: CONFLICT_TERMINATED,
        429: f"Too Many Requests: retry after {retry_after}",
        500: "Internal Server Error",
        502: "Bad Gateway",
    }.get(status, f"Error {status}")


def _json_response(body: dict[str, Any], status: int = 200, **headers: str) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


class FakeTelegram(LoopbackServer):
    """See the module docstring. ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(
        self,
        *,
        token: str = "123:abc",
        username: str = "parley_bot",
        first_name: str = "Parley",
        bot_id: int | None = None,
        flood: FloodLimits | bool = False,
        penalty: bool = False,
        privacy_mode: bool = False,
        deliver_bot_messages: bool = False,
        webhook_retry_delay: float = 0.5,
        first_update_id: int = 100_000_001,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        prefix = token.split(":", 1)[0]
        self.bot = User(
            id=bot_id if bot_id is not None else (int(prefix) if prefix.isdigit() else 1),
            first_name=first_name,
            username=username,
            is_bot=True,
        )
        self.flood: FloodLimits | None = (
            flood if isinstance(flood, FloodLimits) else (FloodLimits() if flood else None)
        )
        self.penalty = penalty
        self.privacy_mode = privacy_mode
        self.deliver_bot_messages = deliver_bot_messages
        self.webhook_retry_delay = webhook_retry_delay
        self.reject_drafts = False
        self.host = host
        self.port = port

        self.users: dict[int, User] = {}
        self.chats: dict[int, Chat] = {}
        self.calls: list[Call] = []
        self.drafts: dict[int, list[Draft]] = {}
        self.updates: list[dict[str, Any]] = []  # every update ever queued
        self.webhook = Webhook()
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self.blocked: set[int] = set()
        self.count_429 = 0
        self.logged_out = False

        self._messages: dict[int, dict[int, StoredMessage]] = {}
        self._queue: list[dict[str, Any]] = []  # updates not confirmed yet
        self._next_update_id = first_update_id
        self._allowed_updates: list[str] | None = None
        self._active_poll: object | None = None
        self._faults: list[_Fault] = []
        self._flood_gate = FloodGate()
        self._event = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._webhook_task: asyncio.Task[None] | None = None
        self._methods: dict[str, Callable[[Call, dict[str, Any]], Awaitable[Any]]] = {
            "getMe": self._get_me,
            "logOut": self._log_out,
            "close": self._log_out,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "deleteMessage": self._delete_message,
            "sendChatAction": self._send_chat_action,
            "sendMessageDraft": self._send_message_draft,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
        }
        self._canonical = {name.lower(): name for name in self._methods}

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
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
        """Answer open long polls with ``[]`` at once, stop webhook delivery, stop."""
        self._closing = True
        self._notify()
        if self._webhook_task is not None:
            self._webhook_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._webhook_task
            self._webhook_task = None
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def api_base_url(self) -> str:
        """What PTB's ``base_url`` gets; the token is appended by PTB."""
        return f"{self.url}/bot"

    @property
    def file_base_url(self) -> str:
        return f"{self.url}/file/bot"

    @property
    def bot_id(self) -> int:
        return self.bot.id

    @property
    def username(self) -> str | None:
        return self.bot.username

    # -- registering users and chats ------------------------------------------------

    def user(
        self,
        id: int,
        first_name: str | None = None,
        username: str | None = None,
        is_bot: bool = False,
        *,
        last_name: str | None = None,
        language_code: str | None = None,
    ) -> User:
        """Register (or update) a user; returns it."""
        existing = self.users.get(id)
        if existing is not None and first_name is None:
            if username is not None:
                existing.username = username
            return existing
        user = User(
            id=id,
            first_name=first_name or f"User{id}",
            username=username,
            is_bot=is_bot,
            last_name=last_name,
            language_code=language_code,
        )
        self.users[id] = user
        return user

    def private_chat(
        self,
        user_id: int,
        first_name: str | None = None,
        *,
        username: str | None = None,
        last_name: str | None = None,
        language_code: str | None = None,
    ) -> Chat:
        """The private chat of a user with the bot (chat id = user id), as after /start."""
        user = self.user(
            user_id, first_name, username, last_name=last_name, language_code=language_code
        )
        chat = Chat(
            id=user_id,
            type="private",
            first_name=user.first_name,
            last_name=user.last_name,
            username=user.username,
            members={user_id},
        )
        return self._add_chat(chat)

    def group(
        self,
        chat_id: int,
        title: str = "Group",
        supergroup: bool = False,
        forum: bool = False,
        *,
        username: str | None = None,
        bot_admin: bool = False,
    ) -> Chat:
        """A group the bot is in; ``forum`` implies a supergroup."""
        kind = "supergroup" if supergroup or forum else "group"
        chat = Chat(
            id=chat_id,
            type=kind,
            title=title,
            username=username,
            is_forum=forum,
            bot_admin=bot_admin,
        )
        return self._add_chat(chat)

    def channel(self, chat_id: int, title: str = "Channel", *, username: str | None = None) -> Chat:
        """A channel the bot administers (bots in channels always are)."""
        chat = Chat(id=chat_id, type="channel", title=title, username=username, bot_admin=True)
        return self._add_chat(chat)

    def _add_chat(self, chat: Chat) -> Chat:
        old = self.chats.get(chat.id)
        if old is not None:  # keep what happened there
            chat.members |= old.members
            chat.topics = old.topics
            chat.last_message_id = old.last_message_id
            chat.last_bot_id = old.last_bot_id
        self.chats[chat.id] = chat
        self._messages.setdefault(chat.id, {})
        return chat

    def create_topic(
        self, chat: int | Chat, name: str = "Topic", *, user: int | None = None
    ) -> int:
        """Open a forum topic; returns its thread id (the id of its service message).
        Created by ``user`` (the bot gets the service message as an update) or, by
        default, by the bot itself (no update, as the bot does not see its own)."""
        target = self._chat_arg(chat)
        if not target.is_forum:
            raise ValueError(f"chat {target.id} is not a forum: create it with forum=True")
        sender = self._user_arg(user) if user is not None else self.bot
        msg = self._store(
            target,
            sender,
            content={"forum_topic_created": {"name": name, "icon_color": 7322096}},
        )
        msg.thread_id = msg.message_id
        target.topics[msg.message_id] = name
        if user is not None:
            self._deliver(target, msg, "message")
        return msg.message_id

    # -- what users do ------------------------------------------------------------------

    def send_text(
        self,
        chat: int | Chat,
        user: int | User,
        text: str,
        *,
        reply_to: int | dict[str, Any] | StoredMessage | None = None,
        thread_id: int | None = None,
        entities: list[Entity] | None = None,
    ) -> dict[str, Any]:
        """A user writes ``text``; returns the new message as the bot will see it.
        Entities Telegram adds by itself (``bot_command`` for /cmd[@bot], ``mention``
        for @name, url, hashtag, ...) are added; ``entities`` adds explicit ones."""
        target, sender = self._chat_arg(chat), self._user_arg(user)
        try:
            clean, found = finalize(text, [dict(e) for e in entities or []], allow_empty=False)
        except FormatError as exc:
            raise ValueError(f"Telegram would refuse this text: {exc}") from None
        msg = self._store(
            target,
            sender,
            text=clean,
            entities=self._fill_users(found),
            reply_to=self._reply_arg(target, reply_to),
            thread_id=thread_id,
        )
        return self._deliver(target, msg, "message")

    def send_sticker(
        self,
        chat: int | Chat,
        user: int | User,
        *,
        emoji: str = "👍",
        reply_to: int | dict[str, Any] | StoredMessage | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        target, sender = self._chat_arg(chat), self._user_arg(user)
        file_id = f"fake-sticker-{target.id}-{target.last_message_id + 1}"
        sticker = {
            "file_id": file_id,
            "file_unique_id": file_id[-16:],
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
        }
        msg = self._store(
            target,
            sender,
            content={"sticker": sticker},
            reply_to=self._reply_arg(target, reply_to),
            thread_id=thread_id,
        )
        return self._deliver(target, msg, "message")

    def send_photo(
        self,
        chat: int | Chat,
        user: int | User,
        *,
        caption: str | None = None,
        reply_to: int | dict[str, Any] | StoredMessage | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        target = self._chat_arg(chat)
        file_id = f"fake-photo-{target.id}-{target.last_message_id + 1}"
        sizes = [
            {
                "file_id": f"{file_id}-{side}",
                "file_unique_id": f"{file_id}-{side}"[-16:],
                "width": side,
                "height": side,
                "file_size": side * 40,
            }
            for side in (90, 320, 800)
        ]
        return self._send_media(chat, user, {"photo": sizes}, caption, reply_to, thread_id)

    def send_document(
        self,
        chat: int | Chat,
        user: int | User,
        *,
        caption: str | None = None,
        file_name: str = "notes.txt",
        mime_type: str = "text/plain",
        reply_to: int | dict[str, Any] | StoredMessage | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        target = self._chat_arg(chat)
        file_id = f"fake-document-{target.id}-{target.last_message_id + 1}"
        document = {
            "file_id": file_id,
            "file_unique_id": file_id[-16:],
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": 1234,
        }
        return self._send_media(chat, user, {"document": document}, caption, reply_to, thread_id)

    def send_voice(
        self,
        chat: int | Chat,
        user: int | User,
        *,
        duration: int = 3,
        reply_to: int | dict[str, Any] | StoredMessage | None = None,
        thread_id: int | None = None,
    ) -> dict[str, Any]:
        target = self._chat_arg(chat)
        file_id = f"fake-voice-{target.id}-{target.last_message_id + 1}"
        voice = {
            "file_id": file_id,
            "file_unique_id": file_id[-16:],
            "duration": duration,
            "mime_type": "audio/ogg",
            "file_size": 4321,
        }
        return self._send_media(chat, user, {"voice": voice}, None, reply_to, thread_id)

    def _send_media(
        self,
        chat: int | Chat,
        user: int | User,
        content: dict[str, Any],
        caption: str | None,
        reply_to: int | dict[str, Any] | StoredMessage | None,
        thread_id: int | None,
    ) -> dict[str, Any]:
        target, sender = self._chat_arg(chat), self._user_arg(user)
        if caption:
            text, found = finalize(caption, [], allow_empty=True)
            if text:
                content["caption"] = text
                if found:
                    content["caption_entities"] = found
        msg = self._store(
            target,
            sender,
            content=content,
            reply_to=self._reply_arg(target, reply_to),
            thread_id=thread_id,
        )
        return self._deliver(target, msg, "message")

    def edit_text(
        self, chat: int | Chat, message_id: int, text: str, *, entities: list[Entity] | None = None
    ) -> dict[str, Any]:
        """A user edits their message; the bot gets an ``edited_message`` update."""
        target = self._chat_arg(chat)
        msg = self._messages[target.id].get(message_id)
        if msg is None or msg.deleted:
            raise ValueError(f"no message {message_id} in chat {target.id}")
        clean, found = finalize(text, [dict(e) for e in entities or []], allow_empty=False)
        self._revise(msg, clean, self._fill_users(found))
        return self._deliver(target, msg, "edited_message")

    def channel_post(self, chat: int | Chat, text: str) -> dict[str, Any]:
        """A post in a channel; the bot gets a ``channel_post`` update."""
        target = self._chat_arg(chat)
        if target.type != "channel":
            raise ValueError(f"chat {target.id} is not a channel: create it with tg.channel()")
        clean, found = finalize(text, [], allow_empty=False)
        msg = self._store(target, None, text=clean, entities=found)
        return self._deliver(target, msg, "channel_post")

    def send_update(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Queue any update as given (an ``update_id`` is added if missing)."""
        update = dict(raw)
        if "update_id" in update:
            self._next_update_id = max(self._next_update_id, int(update["update_id"]) + 1)
        else:
            update["update_id"] = self._next_update_id
            self._next_update_id += 1
        self.updates.append(update)
        self._queue.append(update)
        self._notify()
        return update

    # -- faults -------------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        status: int,
        description: str | None = None,
        retry_after: int | None = None,
        times: int = 1,
        *,
        chat_id: int | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` (to ``chat_id`` if given) answer
        ``status`` without doing anything. A 429 carries ``retry_after`` (default 1)."""
        if status == 429 and retry_after is None:
            retry_after = 1
        self._faults.append(
            _Fault(
                method=method,
                status=status,
                description=description or _default_description(status, retry_after),
                retry_after=retry_after,
                times=times,
                chat_id=chat_id,
            )
        )

    def drop_next(self, method: str, times: int = 1, *, chat_id: int | None = None) -> None:
        """The next ``times`` calls of ``method`` get their connection closed, unanswered
        (the client sees a network error)."""
        self._faults.append(_Fault(method, 0, "", None, times, chat_id, drop=True))

    def block(self, chat_id: int) -> None:
        """Every call to this chat answers 403: a user who blocked the bot, or a group
        that removed it."""
        self.blocked.add(chat_id)

    def unblock(self, chat_id: int) -> None:
        self.blocked.discard(chat_id)

    # -- reading state --------------------------------------------------------------------

    def messages(
        self, chat_id: int, thread_id: int | None = None, *, include_deleted: bool = False
    ) -> list[StoredMessage]:
        """A chat's messages in order, as they are now (``thread_id`` None: all)."""
        return [
            m
            for m in self._messages.get(chat_id, {}).values()
            if (include_deleted or not m.deleted)
            and (thread_id is None or m.thread_id == thread_id)
        ]

    def bot_messages(self, chat_id: int, thread_id: int | None = None) -> list[StoredMessage]:
        """The messages the bot sent to a chat (not deleted), as they are now."""
        return [m for m in self.messages(chat_id, thread_id) if m.from_bot]

    def message(self, chat_id: int, message_id: int) -> StoredMessage | None:
        return self._messages.get(chat_id, {}).get(message_id)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates queued and not yet confirmed by getUpdates or a webhook."""
        return list(self._queue)

    def commands_for(
        self, scope: dict[str, Any] | None = None, language_code: str = ""
    ) -> list[dict[str, str]]:
        """The bot's commands for a scope (default scope) and language."""
        return list(self.commands.get((self._scope_key(scope), language_code), []))

    # -- waiting ----------------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Wait until ``predicate()`` is truthy; return its value. Re-checked on every
        call and state change (and every 50 ms for time-based conditions)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._event
            value = predicate()
            if value:
                return value
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = ", ".join(f"{c.method}→{c.status}" for c in self.calls[-8:])
                raise TimeoutError(f"condition not met within {timeout} s (last calls: {recent})")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.05))

    async def wait_bot_messages(
        self, chat_id: int, n: int, timeout: float = 10.0, *, thread_id: int | None = None
    ) -> list[StoredMessage]:
        """Wait until the bot has at least ``n`` messages in the chat; return them all."""
        return await self.wait_for(
            lambda: found if len(found := self.bot_messages(chat_id, thread_id)) >= n else [],
            timeout,
        )

    async def wait_calls(self, method: str, n: int = 1, timeout: float = 10.0) -> list[Call]:
        """Wait until ``n`` calls of ``method`` have been answered; return them all."""
        return await self.wait_for(
            lambda: (
                done
                if len(done := [c for c in self.calls_to(method) if c.finished is not None]) >= n
                else []
            ),
            timeout,
        )

    # -- webhook, test side ----------------------------------------------------------------

    async def post_webhook(
        self, update: dict[str, Any], *, secret_token: str | None = _DEFAULT_SECRET
    ) -> int | None:
        """POST one update to the registered webhook URL with the given secret (default:
        the registered one; None: no header), as Telegram would; records the delivery
        and returns the bot's HTTP status (None if the connection failed). The update
        is not queued."""
        if not self.webhook.url:
            raise RuntimeError("no webhook is set")
        secret = self.webhook.secret_token if secret_token is _DEFAULT_SECRET else secret_token
        return await self._post_update(update, secret)

    # -- HTTP -------------------------------------------------------------------------------

    async def _not_found(self, request: web.Request) -> web.Response:
        self.calls.append(
            Call(
                method=request.path,
                params={},
                time=time.monotonic(),
                status=404,
                description="Not Found",
                finished=time.monotonic(),
            )
        )
        return _json_response({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        call = Call(method=request.match_info["method"], params={}, time=time.monotonic())
        self.calls.append(call)
        headers: dict[str, str] = {}
        try:
            call.params = await self._read_params(request)
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            canonical = self._canonical.get(call.method.lower())
            if canonical is None:
                raise ApiError(404, "Not Found")
            call.method = canonical
            reply = await self._dispatch(call)
            call.status, call.result = 200, reply.result
            body: dict[str, Any] = {"ok": True, "result": reply.result}
            if reply.description:
                body["description"] = call.description = reply.description
        except ApiError as exc:
            call.status, call.description, call.retry_after = (
                exc.status,
                exc.description,
                exc.retry_after,
            )
            body = exc.body()
            if exc.status == 429:
                self.count_429 += 1
                headers["Retry-After"] = str(exc.retry_after or 1)
        except asyncio.CancelledError:  # the client went away (a cancelled long poll)
            call.finished = time.monotonic()
            self._notify()
            raise
        except _Drop:
            call.finished = time.monotonic()
            self._notify()
            if request.transport is not None:
                request.transport.close()
            raise asyncio.CancelledError from None
        call.finished = time.monotonic()
        self._notify()
        return _json_response(body, call.status, **headers)

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: _decode_form(k, v) for k, v in request.query.items()}
        if not request.can_read_body:
            return params
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise ApiError(400, "Bad Request: can't parse JSON object") from None
            if isinstance(body, dict):
                params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, str):
                    params[key] = _decode_form(key, value)
                else:  # an uploaded file
                    params[key] = {"file_name": getattr(value, "filename", None)}
        return params

    async def _dispatch(self, call: Call) -> _Reply:
        p = call.params
        chat_id = peek_int(p.get("chat_id"))
        for fault in self._faults:
            if fault.method == call.method and fault.chat_id in (None, chat_id):
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                if fault.drop:
                    raise _Drop
                raise ApiError(fault.status, fault.description, fault.retry_after)
        if chat_id is not None and chat_id in self.blocked and "chat_id" in p:
            raise ApiError(403, self._blocked_text(chat_id))
        if self.flood is not None and call.method in FLOOD_OPS and chat_id in self.chats:
            assert chat_id is not None
            retry = self._flood_gate.check(
                self.flood, chat_id, self.chats[chat_id].is_group, call.time, penalty=self.penalty
            )
            if retry is not None:
                raise ApiError(429, f"Too Many Requests: retry after {retry}", retry)
        result = await self._methods[call.method](call, p)
        return result if isinstance(result, _Reply) else _Reply(result)

    def _blocked_text(self, chat_id: int) -> str:
        chat = self.chats.get(chat_id)
        kind = chat.type if chat is not None else "private"
        return {
            "group": KICKED_GROUP,
            "supergroup": KICKED_SUPERGROUP,
            "channel": KICKED_CHANNEL,
        }.get(kind, BLOCKED)

    # -- storing and delivering ---------------------------------------------------------

    def _chat_arg(self, chat: int | Chat) -> Chat:
        chat_id = chat.id if isinstance(chat, Chat) else chat
        found = self.chats.get(chat_id)
        if found is None:
            raise ValueError(
                f"unknown chat {chat_id}: register it with tg.private_chat() or tg.group()"
            )
        return found

    def _user_arg(self, user: int | User) -> User:
        user_id = user.id if isinstance(user, User) else user
        found = self.users.get(user_id)
        if found is None:
            raise ValueError(f"unknown user {user_id}: register it with tg.user()")
        return found

    def _reply_arg(
        self, chat: Chat, reply_to: int | dict[str, Any] | StoredMessage | None
    ) -> int | None:
        if reply_to is None:
            return None
        if isinstance(reply_to, StoredMessage):
            message_id = reply_to.message_id
        elif isinstance(reply_to, dict):
            message_id = int(reply_to["message_id"])
        else:
            message_id = reply_to
        target = self._messages[chat.id].get(message_id)
        if target is None or target.deleted:
            raise ValueError(f"no message {message_id} in chat {chat.id} to reply to")
        return message_id

    def _fill_users(self, entities: list[Entity]) -> list[Entity]:
        for e in entities:
            if e["type"] == "text_mention":
                known = self.users.get(e["user"]["id"])
                e["user"] = (
                    known.to_dict() if known else {"is_bot": False, "first_name": "", **e["user"]}
                )
        return entities

    def _store(
        self,
        chat: Chat,
        sender: User | None,
        *,
        from_bot: bool = False,
        text: str | None = None,
        entities: list[Entity] | None = None,
        reply_to: int | None = None,
        thread_id: int | None = None,
        content: dict[str, Any] | None = None,
    ) -> StoredMessage:
        if thread_id is not None and chat.is_forum and thread_id not in chat.topics:
            raise ValueError(
                f"no topic {thread_id} in chat {chat.id}: create it with tg.create_topic()"
            )
        if not chat.is_forum:
            thread_id = None
        if thread_id is None and reply_to is not None and chat.is_forum:
            thread_id = self._messages[chat.id][reply_to].thread_id
        chat.last_message_id += 1
        msg = StoredMessage(
            chat_id=chat.id,
            message_id=chat.last_message_id,
            sender=sender,
            date=int(time.time()),
            time=time.monotonic(),
            from_bot=from_bot,
            text=text,
            entities=entities or [],
            thread_id=thread_id,
            reply_to=reply_to,
            content=content or {},
        )
        self._messages[chat.id][msg.message_id] = msg
        if sender is not None:
            chat.members.add(sender.id)
            if sender.is_bot:
                chat.last_bot_id = sender.id
        self._notify()
        return msg

    def _revise(self, msg: StoredMessage, text: str, entities: list[Entity]) -> None:
        msg.history.append(Revision(msg.text, msg.entities, time.monotonic()))
        msg.text, msg.entities = text, entities
        msg.edit_date = int(time.time())
        self._notify()

    def message_dict(self, msg: StoredMessage, *, nested: bool = True) -> dict[str, Any]:
        """The Bot API Message object for a stored message."""
        chat = self.chats[msg.chat_id]
        data: dict[str, Any] = {"message_id": msg.message_id}
        if msg.sender is not None:
            data["from"] = msg.sender.to_dict()
        else:
            data["sender_chat"] = chat.to_dict()
        data["chat"] = chat.to_dict()
        data["date"] = msg.date
        if msg.thread_id is not None:
            data["message_thread_id"] = msg.thread_id
            data["is_topic_message"] = True
        if nested:
            reply_id = msg.reply_to
            if reply_id is None and msg.thread_id is not None and msg.thread_id != msg.message_id:
                reply_id = msg.thread_id  # in a topic, the topic's first message
            target = self._messages[chat.id].get(reply_id) if reply_id is not None else None
            if target is not None and not target.deleted:
                data["reply_to_message"] = self.message_dict(target, nested=False)
        if msg.edit_date is not None:
            data["edit_date"] = msg.edit_date
        if msg.text is not None:
            data["text"] = msg.text
            if msg.entities:
                data["entities"] = msg.entities
        data.update(msg.content)
        if msg.link_preview_options is not None:
            data["link_preview_options"] = msg.link_preview_options
        if msg.reply_markup is not None:
            data["reply_markup"] = msg.reply_markup
        return data

    def _visible_to_bot(self, chat: Chat, msg: StoredMessage) -> bool:
        if msg.sender is not None and msg.sender.is_bot and not self.deliver_bot_messages:
            return False
        if not (self.privacy_mode and chat.is_group) or chat.bot_admin:
            return True
        if msg.text is None and "caption" not in msg.content:
            return True  # service messages and media without a caption
        if msg.reply_to is not None and self._messages[chat.id][msg.reply_to].from_bot:
            return True
        text = msg.text if msg.text is not None else msg.content.get("caption", "")
        entities = msg.entities if msg.text is not None else msg.content.get("caption_entities", [])
        units = text.encode("utf-16-le")
        for e in entities:
            if e["type"] != "bot_command":
                continue
            command = units[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le")
            _, _, addressee = command.partition("@")
            if addressee.lower() == (self.bot.username or "").lower():
                return True
            if not addressee and chat.last_bot_id == self.bot.id:
                return True
        return False

    def _deliver(self, chat: Chat, msg: StoredMessage, kind: str) -> dict[str, Any]:
        data = self.message_dict(msg)
        if self._visible_to_bot(chat, msg):
            self.send_update({kind: data})
        return data

    def _notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    # -- parameters -------------------------------------------------------------------------

    def _target_chat(self, p: dict[str, Any]) -> Chat:
        raw = p.get("chat_id")
        if raw is None or raw == "":
            raise ApiError(400, "Bad Request: chat_id is empty")
        if isinstance(raw, str) and raw.startswith("@"):
            for chat in self.chats.values():
                if chat.username and chat.username.lower() == raw[1:].lower():
                    return chat
            raise ApiError(400, "Bad Request: chat not found")
        chat_id = peek_int(raw)
        found = self.chats.get(chat_id) if chat_id is not None else None
        if found is None:
            raise ApiError(400, "Bad Request: chat not found")
        return found

    def _format(
        self, p: dict[str, Any], *, allow_empty: bool, entities_key: str = "entities"
    ) -> tuple[str, list[Entity]]:
        """The text as Telegram stores it, or the ApiError Telegram answers."""
        raw = p.get("text")
        text = raw if isinstance(raw, str) else ("" if raw is None else json.dumps(raw))
        if not text and not allow_empty:
            raise ApiError(400, "Bad Request: message text is empty")
        mode = p.get("parse_mode")
        mode = mode.strip().lower() if isinstance(mode, str) else ""
        try:
            if text and mode and mode != "none":
                parser = {
                    "html": parse_html,
                    "markdown": parse_markdown,
                    "markdownv2": parse_markdown_v2,
                }.get(mode)
                if parser is None:
                    raise ApiError(400, "Bad Request: unsupported parse_mode")
                text, entities = parser(text)
            else:
                entities = entities_from_json(p.get(entities_key))
            text, entities = finalize(text, entities, allow_empty=allow_empty)
        except ParseError as exc:
            raise ApiError(400, f"Bad Request: can't parse entities: {exc}") from None
        except EntityError as exc:
            raise ApiError(400, f"Bad Request: can't parse MessageEntity: {exc}") from None
        except FormatError as exc:
            message = str(exc)
            raise ApiError(400, f"Bad Request: {message[:1].lower()}{message[1:]}") from None
        if utf16_len(text) > MAX_TEXT_UTF16:
            raise ApiError(400, "Bad Request: message is too long")
        return text, self._fill_users(entities)

    def _thread(self, chat: Chat, p: dict[str, Any]) -> int | None:
        thread_id = peek_int(p.get("message_thread_id"))
        if not chat.is_forum or thread_id is None:
            return None
        if thread_id not in chat.topics:
            raise ApiError(400, "Bad Request: message thread not found")
        return thread_id

    # -- methods ------------------------------------------------------------------------

    async def _get_me(self, call: Call, p: dict[str, Any]) -> Any:
        return {
            **self.bot.to_dict(),
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _log_out(self, call: Call, p: dict[str, Any]) -> Any:
        self.logged_out = True
        return True

    async def _get_updates(self, call: Call, p: dict[str, Any]) -> Any:
        if self.webhook.url:
            raise ApiError(409, CONFLICT_WEBHOOK)
        offset = peek_int(p.get("offset")) or 0
        limit = min(max(peek_int(p.get("limit")) or 100, 1), 100)
        timeout = max(peek_int(p.get("timeout")) or 0, 0)
        allowed = _as_json(p.get("allowed_updates"))
        if isinstance(allowed, list):
            self._allowed_updates = [str(kind) for kind in allowed]
        if offset > 0:
            self._queue = [u for u in self._queue if u["update_id"] >= offset]
        elif offset < 0:
            self._queue = self._queue[offset:]
        me = object()
        self._active_poll = me
        self._notify()  # an older pending poll sees it was superseded
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                event = self._event
                if self._active_poll is not me:
                    raise ApiError(409, CONFLICT_TERMINATED)
                if self.webhook.url:
                    raise ApiError(409, CONFLICT_WEBHOOK)
                self._queue = [u for u in self._queue if self._allowed(u, self._allowed_updates)]
                batch = self._queue[:limit]
                remaining = deadline - loop.time()
                if batch or remaining <= 0 or self._closing:
                    return batch
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            if self._active_poll is me:
                self._active_poll = None

    @staticmethod
    def _allowed(update: dict[str, Any], allowed: list[str] | None) -> bool:
        kinds = [key for key in update if key != "update_id"]
        if allowed:
            return any(kind in allowed for kind in kinds)
        return not any(kind in DEFAULT_EXCLUDED_UPDATES for kind in kinds)

    async def _set_webhook(self, call: Call, p: dict[str, Any]) -> Any:
        url = p.get("url")
        url = url.strip() if isinstance(url, str) else ""
        if not url:
            return await self._delete_webhook(call, p)
        if not re.match(r"(?i)https?://[^/\s]+", url):
            raise ApiError(400, "Bad Request: bad webhook: invalid webhook URL specified")
        secret = p.get("secret_token")
        secret = secret if isinstance(secret, str) and secret else None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        allowed = _as_json(p.get("allowed_updates"))
        same = self.webhook.url == url
        self.webhook = Webhook(
            url=url,
            secret_token=secret,
            allowed_updates=[str(a) for a in allowed] if isinstance(allowed, list) else None,
            max_connections=peek_int(p.get("max_connections")) or 40,
            ip_address=p.get("ip_address") if isinstance(p.get("ip_address"), str) else None,
        )
        if _as_bool(p.get("drop_pending_updates")):
            self._queue.clear()
        if self._webhook_task is None or self._webhook_task.done():
            self._webhook_task = asyncio.create_task(self._webhook_loop())
        self._notify()
        return _Reply(True, "Webhook is already set" if same else "Webhook was set")

    async def _delete_webhook(self, call: Call, p: dict[str, Any]) -> Any:
        had = bool(self.webhook.url)
        self.webhook = Webhook()
        if _as_bool(p.get("drop_pending_updates")):
            self._queue.clear()
        self._notify()
        return _Reply(True, "Webhook was deleted" if had else "Webhook is already deleted")

    async def _get_webhook_info(self, call: Call, p: dict[str, Any]) -> Any:
        hook = self.webhook
        info: dict[str, Any] = {
            "url": hook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }
        if hook.url:
            info["max_connections"] = hook.max_connections
            if hook.ip_address:
                info["ip_address"] = hook.ip_address
            if hook.allowed_updates is not None:
                info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
        return info

    @staticmethod
    def _scope_key(scope: Any) -> str:
        scope = _as_json(scope)
        if not isinstance(scope, dict) or not scope.get("type"):
            return "default"
        parts = [str(scope["type"])]
        for key in ("chat_id", "user_id"):
            if key in scope:
                parts.append(f"{key}={scope[key]}")
        return ":".join(parts)

    async def _set_my_commands(self, call: Call, p: dict[str, Any]) -> Any:
        commands = _as_json(p.get("commands"))
        if commands is None:
            commands = []
        if not isinstance(commands, list):
            raise ApiError(400, "Bad Request: Expected an Array of BotCommand")
        if len(commands) > 100:
            raise ApiError(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        cleaned: list[dict[str, str]] = []
        for item in commands:
            if not isinstance(item, dict):
                raise ApiError(400, "Bad Request: can't parse BotCommand: expected an Object")
            name = str(item.get("command", "")).lower()
            description = str(item.get("description", ""))
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": name, "description": description})
        language = p.get("language_code")
        key = (self._scope_key(p.get("scope")), language if isinstance(language, str) else "")
        self.commands[key] = cleaned
        return True

    async def _get_my_commands(self, call: Call, p: dict[str, Any]) -> Any:
        language = p.get("language_code")
        key = (self._scope_key(p.get("scope")), language if isinstance(language, str) else "")
        return list(self.commands.get(key, []))

    async def _delete_my_commands(self, call: Call, p: dict[str, Any]) -> Any:
        language = p.get("language_code")
        key = (self._scope_key(p.get("scope")), language if isinstance(language, str) else "")
        self.commands.pop(key, None)
        return True

    async def _send_message(self, call: Call, p: dict[str, Any]) -> Any:
        text, entities = self._format(p, allow_empty=False)
        chat = self._target_chat(p)
        thread_id = self._thread(chat, p)
        reply = _as_json(p.get("reply_parameters"))
        if isinstance(reply, dict):
            reply_id = peek_int(reply.get("message_id"))
            reply_chat = peek_int(reply.get("chat_id"))
            tolerant = _as_bool(reply.get("allow_sending_without_reply"))
        else:
            reply_id = peek_int(p.get("reply_to_message_id"))
            reply_chat = None
            tolerant = _as_bool(p.get("allow_sending_without_reply"))
        if reply_id is not None:
            target = self._messages[chat.id].get(reply_id)
            if target is None or target.deleted or reply_chat not in (None, chat.id):
                if not tolerant:
                    raise ApiError(400, "Bad Request: message to be replied not found")
                reply_id = None
        msg = self._store(
            chat,
            self.bot,
            from_bot=True,
            text=text,
            entities=entities,
            reply_to=reply_id,
            thread_id=thread_id,
        )
        msg.parse_mode = p.get("parse_mode") if isinstance(p.get("parse_mode"), str) else None
        msg.reply_markup = _as_json(p.get("reply_markup"))
        options = _as_json(p.get("link_preview_options"))
        msg.link_preview_options = options if isinstance(options, dict) else None
        msg.disable_notification = _as_bool(p.get("disable_notification"))
        return self.message_dict(msg)

    def _own_message(self, chat: Chat, p: dict[str, Any], missing: str) -> StoredMessage:
        message_id = peek_int(p.get("message_id"))
        if message_id is None:
            raise ApiError(400, "Bad Request: message identifier is not specified")
        msg = self._messages[chat.id].get(message_id)
        if msg is None or msg.deleted:
            raise ApiError(400, f"Bad Request: {missing} not found")
        return msg

    async def _edit_message_text(self, call: Call, p: dict[str, Any]) -> Any:
        text, entities = self._format(p, allow_empty=False)
        if p.get("chat_id") in (None, "") and p.get("inline_message_id"):
            raise ApiError(400, "Bad Request: MESSAGE_ID_INVALID")
        chat = self._target_chat(p)
        msg = self._own_message(chat, p, "message to edit")
        if not msg.from_bot:
            raise ApiError(400, "Bad Request: message can't be edited")
        if msg.text is None:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        markup = _as_json(p.get("reply_markup"))
        if text == msg.text and entities == msg.entities and markup == msg.reply_markup:
            raise ApiError(400, NOT_MODIFIED)
        self._revise(msg, text, entities)
        msg.reply_markup = markup
        if isinstance(p.get("parse_mode"), str):
            msg.parse_mode = p["parse_mode"]
        return self.message_dict(msg)

    async def _delete_message(self, call: Call, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        msg = self._own_message(chat, p, "message to delete")
        if not msg.from_bot and chat.type != "private" and not chat.bot_admin:
            raise ApiError(400, "Bad Request: message can't be deleted")
        msg.deleted = True
        self._notify()
        return True

    async def _send_chat_action(self, call: Call, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        if p.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        self._thread(chat, p)
        return True

    async def _send_message_draft(self, call: Call, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        if self.reject_drafts:
            raise ApiError(400, DRAFTS_UNAVAILABLE)
        if chat.type != "private":
            raise ApiError(400, DRAFT_NOT_PRIVATE)
        draft_id = peek_int(p.get("draft_id"))
        if not draft_id:
            raise ApiError(400, DRAFT_ID_ZERO)
        text, entities = self._format(p, allow_empty=True)
        draft = Draft(
            chat_id=chat.id,
            draft_id=draft_id,
            text=text,
            entities=entities,
            thread_id=peek_int(p.get("message_thread_id")),
            time=call.time,
        )
        self.drafts.setdefault(chat.id, []).append(draft)
        self._notify()
        return True

    async def _get_chat(self, call: Call, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        return {
            **chat.to_dict(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _get_chat_member(self, call: Call, p: dict[str, Any]) -> Any:
        chat = self._target_chat(p)
        user_id = peek_int(p.get("user_id"))
        if user_id == self.bot.id:
            if chat.bot_admin:
                return {
                    "status": "administrator",
                    "user": self.bot.to_dict(),
                    "can_be_edited": False,
                    "is_anonymous": False,
                    "can_manage_chat": True,
                    "can_delete_messages": True,
                    "can_manage_video_chats": False,
                    "can_restrict_members": False,
                    "can_promote_members": False,
                    "can_change_info": False,
                    "can_invite_users": True,
                    "can_post_stories": False,
                    "can_edit_stories": False,
                    "can_delete_stories": False,
                }
            return {"status": "member", "user": self.bot.to_dict()}
        user = self.users.get(user_id) if user_id is not None else None
        if user is None:
            raise ApiError(400, "Bad Request: user not found")
        status = "member" if user.id in chat.members else "left"
        return {"status": status, "user": user.to_dict()}

    # -- webhook delivery ---------------------------------------------------------------

    async def _webhook_loop(self) -> None:
        while self.webhook.url and not self._closing:
            event = self._event
            allowed = self.webhook.allowed_updates
            self._queue = [u for u in self._queue if self._allowed(u, allowed)]
            if not self._queue:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), 1.0)
                continue
            update = self._queue[0]
            status = await self._post_update(update, self.webhook.secret_token)
            if status is not None and 200 <= status < 300:
                if self._queue and self._queue[0] is update:
                    self._queue.pop(0)
                self._notify()
            else:
                await asyncio.sleep(self.webhook_retry_delay)

    async def _post_update(self, update: dict[str, Any], secret: str | None) -> int | None:
        if self._client is None:
            self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["X-Telegram-Bot-Api-Secret-Token"] = secret
        url = self.webhook.url
        status: int | None = None
        error: str | None = None
        try:
            async with self._client.post(
                url, data=json.dumps(update, ensure_ascii=False).encode(), headers=headers
            ) as response:
                await response.read()
                status = response.status
                if not 200 <= status < 300:
                    error = f"Wrong response from the webhook: {status} {response.reason}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            error = f"Connection failed: {exc.__class__.__name__}"
        self.webhook_deliveries.append(
            WebhookDelivery(
                update_id=update.get("update_id"),
                url=url,
                secret_token=secret,
                status=status,
                error=error,
                time=time.monotonic(),
            )
        )
        if error is not None:
            self.webhook.last_error_date = int(time.time())
            self.webhook.last_error_message = error
        self._notify()
        return status
