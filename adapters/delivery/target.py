"""What a platform hands the shared delivery layer: its limits, its calls, its errors.

Every platform sink (Telegram, Discord) is this module's data plus one ``DeliveryTarget``
per chat; the scheduler, the splitter and the typing loop are shared and never learn
which platform they serve.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol


@dataclass(frozen=True, slots=True)
class PlatformLimits:
    """A platform's limits as data (Telegram: PTB's ``FloodLimit``; Discord: its docs)."""

    max_length: int
    """Longest message, in the platform's own units (see ``measure``)."""
    measure: Callable[[str], int] = len
    """How the platform counts a text's length (Telegram: UTF-16 code units)."""
    chat_ops: int = 1
    chat_period: float = 1.0
    """Sends, edits and drafts allowed per chat in any ``chat_period`` seconds."""
    group_ops: int | None = None
    group_period: float = 60.0
    """An extra budget that only group chats spend (Telegram: 20 a minute)."""
    global_ops: int = 30
    global_period: float = 1.0
    """Everything the bot sends, all chats together."""
    edit_interval: float = 1.0
    """Least seconds between two edits of one streamed message (the bot's
    ``edit_interval`` key overrides it)."""
    typing_interval: float = 4.5
    """The typing indicator fades after ~5 s (Telegram) / ~10 s (Discord): re-sent this
    often until the first text is visible."""
    typing_spends_global: bool = False
    """Whether a typing request counts against ``global_ops`` (Discord: every REST
    request does; Telegram's message limits leave chat actions out)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One message's text as the platform receives it: plain text plus formatting
    entities (Telegram ``MessageEntity`` objects); no entities means plain text."""

    text: str
    entities: tuple[Any, ...] = ()


class DeliveryError(Exception):
    """Base of what a ``DeliveryTarget`` raises for the delivery layer to act on."""


class RetryAfter(DeliveryError):
    """The platform said "slow down" (HTTP 429): nothing in ``scope`` may be sent for
    ``retry_after`` seconds. ``scope`` is ``"chat"`` for one chat's limit (Telegram's
    429s, Discord's per-route buckets) or ``"global"`` for the whole bot."""

    def __init__(self, retry_after: float, scope: Literal["chat", "global"] = "chat") -> None:
        super().__init__(f"rate limited for {retry_after:g} s ({scope})")
        self.retry_after = retry_after
        self.scope = scope


class NotModified(DeliveryError):
    """The platform already shows exactly this text: counts as delivered."""


class FormattingRejected(DeliveryError):
    """The platform refused the formatting (entities): resend the text as plain."""


class MessageGone(DeliveryError):
    """The message to edit no longer exists (someone deleted it): send the text anew."""


class DraftsUnsupported(DeliveryError):
    """Streaming drafts were refused here: stream by editing a message instead."""


# A destination that no longer exists (blocked bot, deleted channel, removed from the
# group) is ``core.incoming.ReplyTargetGone``: the chat service drops the turn quietly.


class DeliveryTarget(Protocol):
    """One chat's calls on one platform. Each call is one API request; it raises the
    errors above (or ``ReplyTargetGone``) and never retries or sleeps by itself."""

    @property
    def chat_key(self) -> str:
        """Identifies the chat's budget, e.g. ``"telegram:-1001234"``."""

    @property
    def is_group(self) -> bool:
        """Whether the group budget applies."""

    @property
    def supports_drafts(self) -> bool:
        """Whether ``draft`` may be tried (Telegram private chats)."""

    async def send(self, message: Rendered, *, first: bool) -> str:
        """Send a new message; returns its platform id. ``first`` marks the answer's
        first message (the one that replies to the user's message)."""

    async def edit(self, message_id: str, message: Rendered) -> None:
        """Replace the text of a message this bot sent."""

    async def draft(self, draft_id: int, message: Rendered) -> None:
        """Show or update a streaming preview (Telegram ``sendMessageDraft``)."""

    async def typing(self) -> None:
        """Show the typing indicator."""


class Renderer(Protocol):
    """Turns the model's Markdown into what the platform shows."""

    def partial(self, markdown: str) -> Rendered:
        """A text still streaming: cheap, and safe however the Markdown is cut."""

    def final(self, markdown: str) -> Rendered:
        """A finished piece (at most ``max_length`` in Markdown source)."""

    def plain(self, markdown: str) -> Rendered:
        """The fallback when the platform refused the formatting."""
