"""The Discord keys of a bot entry (``platform: discord``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from adapters.settings import Id, PlatformBotSettings


class DiscordBotConfig(PlatformBotSettings):
    platform: Literal["discord"]
    allowed_guilds: list[Id] = Field(default_factory=list)
    allowed_roles: list[Id] = Field(default_factory=list)
    gateway_url: str | None = None
    shard_count: int | None = Field(None, gt=0)
    shard_ids: list[int] | None = None  # this process's shards; default: all of shard_count
    auto_thread: bool = False
    command_guilds: list[Id] = Field(default_factory=list)
    ping_on_reply: bool = False

    @model_validator(mode="after")
    def _shards(self) -> DiscordBotConfig:
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise ValueError("shard_ids: needs shard_count (the bot's total number of shards)")
        bad = [i for i in self.shard_ids if not 0 <= i < self.shard_count]
        if bad or not self.shard_ids or len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError(
                f"shard_ids: each id once, from 0 to {self.shard_count - 1} (shard_count - 1)"
            )
        return self
