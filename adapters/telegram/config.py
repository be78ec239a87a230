"""The Telegram keys of a bot entry (``platform: telegram``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from adapters.settings import PlatformBotSettings, Strict


class WebhookConfig(Strict):
    url: str = Field(min_length=1)  # the public https URL Telegram posts updates to
    listen: str = "127.0.0.1"  # where parley's webhook server binds (behind a reverse proxy)
    port: int = Field(8443, gt=0, lt=65536)
    path: str | None = None  # default: the path of `url`
    secret_token: SecretStr | None = (
        None  # checked on every request: X-Telegram-Bot-Api-Secret-Token
    )


class TelegramBotConfig(PlatformBotSettings):
    platform: Literal["telegram"]
    mode: Literal["polling", "webhook"] = "polling"
    webhook: WebhookConfig | None = None

    @model_validator(mode="after")
    def _webhook(self) -> TelegramBotConfig:
        if self.mode == "webhook" and self.webhook is None:
            raise ValueError("webhook: required when mode is webhook (webhook: {url: ...})")
        return self
