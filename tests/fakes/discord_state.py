"""What the fake Discord keeps: users, guilds, roles, channels, threads, messages,
interactions, calls, and its rate-limit windows (see tests/fakes/discord_api.py for
the server)."""

from __future__ import annotations

import itertools
import math
import re
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "DISCORD_EPOCH_MS",
    "Attachment",
    "Call",
    "Channel",
    "FloodGate",
    "FloodLimits",
    "Guild",
    "Interaction",
    "Revision",
    "Role",
    "Snowflakes",
    "StoredMessage",
    "User",
    "iso",
    "parse_mentions",
]

DISCORD_EPOCH_MS = 1_420_070_400_000


class Snowflakes:
    """Increasing snowflake ids whose timestamp part is the current time, as Discord's."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._last = 0

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = (ms << 22) | (next(self._counter) & 0xFFF)
        if value <= self._last:
            value = self._last + 1
        self._last = value
        return value


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


_USER_MENTION = re.compile(r"<@!?(\d{15,21})>")
_ROLE_MENTION = re.compile(r"<@&(\d{15,21})>")
_EVERYONE = re.compile(r"@(everyone|here)\b")


def parse_mentions(content: str) -> tuple[list[int], list[int], bool]:
    """User ids, role ids (in order, no repeats) and whether @everyone/@here appears."""
    users = list(dict.fromkeys(int(m) for m in _USER_MENTION.findall(content)))
    roles = list(dict.fromkeys(int(m) for m in _ROLE_MENTION.findall(content)))
    return users, roles, bool(_EVERYONE.search(content))


@dataclass
class User:
    id: int
    username: str
    global_name: str | None = None
    bot: bool = False

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": None,
            "public_flags": 0,
            "flags": 0,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass
class Role:
    id: int
    guild_id: int
    name: str
    mentionable: bool = False
    managed: bool = False
    bot_id: int | None = None  # a bot's own managed role
    permissions: int = 0
    position: int = 0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
            "hoist": False,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass
class Guild:
    id: int
    name: str
    owner_id: int
    members: dict[int, list[int]] = field(default_factory=dict)  # user id → role ids
    roles: dict[int, Role] = field(default_factory=dict)
    channel_ids: list[int] = field(default_factory=list)
    joined: float = field(default_factory=time.time)
    # MENTION_EVERYONE for the bot: with it, a bot's @everyone / @here and any role
    # mention ping unless allowed_mentions says otherwise (bots are often admins).
    bot_mention_everyone: bool = True


@dataclass
class Channel:
    """A guild text channel (0), DM (1), category (4), or public/private thread (11/12)."""

    id: int
    type: int
    name: str | None = None
    guild_id: int | None = None
    parent_id: int | None = None
    recipient_id: int | None = None  # DMs
    owner_id: int | None = None  # threads
    last_message_id: int | None = None
    message_count: int = 0
    archived: bool = False
    auto_archive_duration: int = 1440
    forbidden: bool = False  # every write here answers 403 Missing Permissions

    @property
    def is_thread(self) -> bool:
        return self.type in (10, 11, 12)

    def to_dict(self, recipients: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "type": self.type,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
            "flags": 0,
        }
        if self.type == 1:
            data["recipients"] = recipients or []
            return data
        data.update(
            {
                "guild_id": str(self.guild_id),
                "name": self.name,
                "parent_id": str(self.parent_id) if self.parent_id else None,
                "rate_limit_per_user": 0,
            }
        )
        if self.is_thread:
            data.update(
                {
                    "owner_id": str(self.owner_id) if self.owner_id else None,
                    "message_count": self.message_count,
                    "total_message_sent": self.message_count,
                    "member_count": 1,
                    "thread_metadata": {
                        "archived": self.archived,
                        "auto_archive_duration": self.auto_archive_duration,
                        "archive_timestamp": iso(time.time()),
                        "locked": False,
                        "create_timestamp": iso(time.time()),
                    },
                }
            )
        else:
            data.update({"position": 0, "permission_overwrites": [], "nsfw": False, "topic": None})
        return data


@dataclass
class Attachment:
    id: int
    filename: str
    data: bytes
    content_type: str = "text/plain; charset=utf-8"


@dataclass
class Revision:
    """An earlier version of a message's content."""

    content: str
    time: float  # time.monotonic() when this version was replaced


@dataclass
class StoredMessage:
    """A message as the fake holds it: current content, who it pinged, edit history."""

    id: int
    channel_id: int
    guild_id: int | None
    author: User
    content: str
    time: float  # time.monotonic() when sent
    timestamp: float  # time.time() when sent
    from_bot: bool = False  # sent by the fake's bot through the API
    reference: int | None = None  # message_reference.message_id
    mentions: list[int] = field(default_factory=list)  # users pinged
    mention_roles: list[int] = field(default_factory=list)  # roles pinged
    mention_everyone: bool = False
    allowed_mentions: dict[str, Any] | None = None  # as the bot sent it
    attachments: list[Attachment] = field(default_factory=list)
    embeds: list[Any] = field(default_factory=list)
    flags: int = 0  # 64 ephemeral, 128 loading (a deferred interaction)
    type: int | None = None  # None: 0, or 19 for a reply; else a system message type
    interaction_id: int | None = None
    webhook_id: int | None = None
    history: list[Revision] = field(default_factory=list)  # oldest first
    edited: float | None = None
    deleted: bool = False

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & 64)


@dataclass
class Interaction:
    id: int
    token: str
    name: str
    channel_id: int
    guild_id: int | None
    user: User
    options: list[dict[str, Any]]
    created: float  # time.monotonic()
    callback_type: int | None = None  # 4 reply, 5 defer, ...
    callback_time: float | None = None
    ephemeral: bool = False
    original: int | None = None  # message id of the original response
    followups: list[int] = field(default_factory=list)

    @property
    def acknowledged_after(self) -> float | None:
        """Seconds from the interaction to its accepted callback; None while there is
        none (a late one was refused with 10062)."""
        return None if self.callback_time is None else self.callback_time - self.created


@dataclass
class Call:
    """One REST request as it arrived and how it was answered."""

    method: str  # HTTP method
    route: str  # e.g. "POST /channels/{channel_id}/messages" (path as sent if unknown)
    path: str
    params: dict[str, str]  # path parameters
    query: dict[str, str]
    body: Any  # decoded JSON (payload_json for multipart), None without a body
    time: float  # time.monotonic() at arrival
    status: int = 0
    response: Any = None
    retry_after: float | None = None
    finished: float | None = None
    pinged: tuple[list[int], list[int], bool] | None = None
    """Who the message this request posted or edited pinged, as the fake computed it:
    (user ids, role ids, @everyone/@here); None for a request that wrote no message."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def allowed_mentions(self) -> Any:
        """The request's ``allowed_mentions`` as sent (an interaction callback's in its
        ``data``); None if it had none."""
        body: Any = self.body if isinstance(self.body, dict) else {}
        if self.route.endswith("/callback"):
            body = body.get("data")
        return body.get("allowed_mentions") if isinstance(body, dict) else None

    @property
    def channel_id(self) -> int | None:
        value = self.params.get("channel_id")
        return int(value) if value and value.isdigit() else None


@dataclass(frozen=True)
class FloodLimits:
    """Discord's limits as (requests, seconds) windows: message creates and edits per
    channel, and every request of the bot overall."""

    channel: tuple[int, float] = (5, 5.0)
    overall: tuple[int, float] = (50, 1.0)
    slack: float = 0.05


class FloodGate:
    """Sliding windows over accepted requests. A request is refused while ``n`` earlier
    accepted ones of the same scope are younger than ``period - slack`` seconds."""

    def __init__(self) -> None:
        self._ops: dict[tuple[str, int | None], deque[float]] = {}

    def _window(self, name: str, key: int | None, span: float, now: float) -> deque[float]:
        ops = self._ops.setdefault((name, key), deque())
        while ops and ops[0] <= now - span:
            ops.popleft()
        return ops

    def check(
        self, limits: FloodLimits, channel_id: int | None, now: float
    ) -> tuple[float, bool] | None:
        """None (and the request is counted) or (retry_after, is_global), not counted."""
        windows: list[tuple[str, int | None, tuple[int, float]]] = [
            ("overall", None, limits.overall)
        ]
        if channel_id is not None:
            windows.append(("channel", channel_id, limits.channel))
        worst: tuple[float, bool] | None = None
        for name, key, (count, period) in windows:
            span = max(period - limits.slack, 0.0)
            ops = self._window(name, key, span, now)
            if len(ops) >= count > 0:
                wait = ops[-count] + span - now
                if worst is None or wait > worst[0]:
                    worst = (wait, name == "overall")
        if worst is not None:
            return max(round(worst[0], 3), 0.001), worst[1]
        for name, key, _ in windows:
            self._ops[(name, key)].append(now)
        return None

    def bucket(self, limits: FloodLimits, channel_id: int, now: float) -> tuple[int, int, float]:
        """(limit, remaining, reset_after) of a channel's message bucket, for headers."""
        count, period = limits.channel
        span = max(period - limits.slack, 0.0)
        ops = self._window("channel", channel_id, span, now)
        remaining = max(count - len(ops), 0)
        reset_after = (ops[0] + span - now) if ops else period
        return count, remaining, max(math.ceil(reset_after * 1000) / 1000, 0.001)
