"""What the fake Bot API keeps: users, chats, messages, calls, drafts, the webhook,
and its flood-control windows (see tests/fakes/telegram_api.py for the server)."""

from __future__ import annotations

import math
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.telegram_markup import Entity

__all__ = [
    "Call",
    "Chat",
    "Draft",
    "FloodGate",
    "FloodLimits",
    "Revision",
    "StoredMessage",
    "User",
    "Webhook",
    "WebhookDelivery",
    "peek_int",
]


def peek_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value.strip()):
        return int(value)
    return None


@dataclass
class User:
    id: int
    first_name: str
    username: str | None = None
    is_bot: bool = False
    last_name: str | None = None
    language_code: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data


@dataclass
class Chat:
    id: int
    type: str  # private | group | supergroup | channel
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    is_forum: bool = False
    bot_admin: bool = False
    members: set[int] = field(default_factory=set)
    topics: dict[int, str] = field(default_factory=dict)  # thread id → name
    last_message_id: int = 0
    last_bot_id: int | None = None  # for privacy mode: the last bot that wrote here

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.type == "private":
            data["first_name"] = self.first_name or ""
            if self.last_name:
                data["last_name"] = self.last_name
        else:
            data["title"] = self.title or ""
        if self.username:
            data["username"] = self.username
        if self.is_forum:
            data["is_forum"] = True
        return data


@dataclass
class Revision:
    """An earlier version of a message's text."""

    text: str | None
    entities: list[Entity]
    time: float  # time.monotonic() when this version was replaced


@dataclass
class StoredMessage:
    """A message as the fake holds it: the current text and entities, edit history."""

    chat_id: int
    message_id: int
    sender: User | None  # None for channel posts
    date: int
    time: float  # time.monotonic() when it was sent
    from_bot: bool = False  # sent by the fake's bot, through the API
    text: str | None = None
    entities: list[Entity] = field(default_factory=list)
    thread_id: int | None = None
    reply_to: int | None = None  # an explicit reply, same chat
    content: dict[str, Any] = field(default_factory=dict)  # sticker, photo, caption, ...
    reply_markup: Any = None
    link_preview_options: Any = None
    disable_notification: bool = False
    parse_mode: str | None = None  # as the bot sent it, for inspection
    history: list[Revision] = field(default_factory=list)  # oldest first
    edit_date: int | None = None
    deleted: bool = False


@dataclass
class Call:
    """One Bot API request as it arrived and how it was answered."""

    method: str  # canonical spelling ("sendMessage") when known, else as sent
    params: dict[str, Any]
    time: float  # time.monotonic() at arrival
    status: int = 0  # HTTP status; 0 while pending or when no answer was sent
    result: Any = None
    description: str | None = None
    retry_after: int | None = None
    finished: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def chat_id(self) -> int | None:
        return peek_int(self.params.get("chat_id"))


@dataclass
class Draft:
    chat_id: int
    draft_id: int
    text: str
    entities: list[Entity]
    thread_id: int | None
    time: float


@dataclass
class Webhook:
    url: str = ""
    secret_token: str | None = None
    allowed_updates: list[str] | None = None
    max_connections: int = 40
    ip_address: str | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None


@dataclass
class WebhookDelivery:
    update_id: int | None
    url: str
    secret_token: str | None  # the header value sent (None: no header)
    status: int | None  # the bot's HTTP status; None when the connection failed
    error: str | None
    time: float


@dataclass(frozen=True)
class FloodLimits:
    """Telegram's limits (telegram.constants.FloodLimit), as (ops, seconds) windows."""

    chat: tuple[int, float] = (1, 1.0)
    group: tuple[int, float] = (20, 60.0)
    overall: tuple[int, float] = (30, 1.0)
    slack: float = 0.05


class FloodGate:
    """Sliding windows over accepted message operations, per ``FloodLimits``.

    An op is refused while ``n`` earlier accepted ops of the same scope are younger
    than ``period - slack`` seconds. With ``penalty`` a refused scope stays refused
    until its retry_after has passed."""

    def __init__(self) -> None:
        self._ops: dict[tuple[str, int | None], deque[float]] = {}
        self._penalty_until: dict[int | None, float] = {}

    def check(
        self, limits: FloodLimits, chat_id: int, is_group: bool, now: float, *, penalty: bool
    ) -> int | None:
        """None (and the op is counted) or the retry_after to answer (not counted)."""
        if penalty:
            for scope in (chat_id, None):
                until = self._penalty_until.get(scope, 0.0)
                if now < until:
                    return max(1, math.ceil(until - now))
        windows: list[tuple[str, int | None, tuple[int, float]]] = [
            ("chat", chat_id, limits.chat),
            ("overall", None, limits.overall),
        ]
        if is_group:
            windows.append(("group", chat_id, limits.group))
        worst = 0.0
        worst_scope: int | None = None
        for name, key, (count, period) in windows:
            span = max(period - limits.slack, 0.0)
            ops = self._ops.setdefault((name, key), deque())
            while ops and ops[0] <= now - span:
                ops.popleft()
            if len(ops) >= count > 0:
                wait = ops[-count] + span - now
                if wait > worst:
                    worst, worst_scope = wait, key
        if worst > 0:
            retry = max(1, math.ceil(worst))
            if penalty:
                self._penalty_until[worst_scope] = now + retry
            return retry
        for name, key, _ in windows:
            self._ops[(name, key)].append(now)
        return None
