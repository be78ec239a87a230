"""The Discord keys of a bot entry (``platform: discord``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from adapters.settings import Id, PlatformBotSettings


class DiscordBotConfig(PlatformBotSettings):
    platform: Literal["discord"]
    allowed_guilds: list[Id] = Field(default_factory=list)
    allowed_roles: list[Id] = Field(default_factory=list)
    gateway_url: str | None = None
    shard_count: int | None = Field(None, gt=0)
    shard_ids: list[int] | None = None
    auto_thread: bool = False
    command_guilds: list[Id] = Field(default_factory=list)
    ping_on_reply: bool = False
