"""The bot-entry keys every platform shares; each platform's package extends them.

As opsdroid's connectors do, an adapter owns its config model (``adapters/telegram/
config.py``, ``adapters/discord/config.py``); ``bots/config.py`` only composes them, so a
new platform is a new model here and never a new branch in the config loader. These
modules import pydantic only, never the platform library: ``parley config check`` works
without the platform's extra installed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

Id = str | int


class Strict(BaseModel):
    """Unknown keys are errors, values are frozen once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RateLimit(Strict):
    """At most ``messages`` answered per user in any ``per_seconds`` seconds."""

    messages: int = Field(gt=0)
    per_seconds: float = Field(gt=0)


class BotSettings(Strict):
    name: str = Field(min_length=1)
    token: SecretStr | None = None
    backend: str | None = None  # None: default_backend
    scope: Literal["chat", "user", "chat_user", "thread"] = "chat"
    group_trigger: Literal["mention", "always"] = "mention"
    allowed_users: list[Id] = Field(default_factory=list)
    allowed_chats: list[Id] = Field(default_factory=list)
    admins: list[Id] = Field(default_factory=list)
    rate_limit: RateLimit | None = None
    max_input_chars: int = Field(16_000, gt=0)
    shutdown_grace: float = Field(8.0, ge=0)  # seconds in-flight answers may finish


class ConsoleBotConfig(BotSettings):
    platform: Literal["console"]


class PlatformBotSettings(BotSettings):
    """What the chat platforms (not the terminal) add: a token, endpoints, streaming."""

    token: SecretStr | None = None  # required; checked with a clearer message by the loader
    api_base_url: str | None = None
    stream: bool = True  # edit the answer in place as it grows
    edit_interval: float | None = Field(None, gt=0)  # seconds; None: the platform's default
