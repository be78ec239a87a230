from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bots.config import (
    ConfigError,
    LocalBackendConfig,
    database_url,
    load_config,
    parse_config,
    redacted_dump,
    secret_values,
)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_ENV = {
    "OPENAI_API_KEY": "sk-example-secret-1",
    "CHATGPT_SESSION_TOKEN": "session-secret-2",
    "CHATGPT_CLEARANCE_TOKEN": "clearance-secret-3",
    "DISCORD_BOT_TOKEN": "discord-secret-4",
    "TELEGRAM_BOT_TOKEN": "123456:telegram-secret-5",
}


def test_no_config_gives_the_documented_defaults(tmp_path: Path) -> None:
    config, path = load_config(None)
    assert path is None
    assert config.default_backend == "local"
    assert isinstance(config.backends["local"], LocalBackendConfig)
    assert [(b.name, b.platform) for b in config.bots] == [("console", "console")]
    assert database_url(config) == f"sqlite+aiosqlite:///{tmp_path / 'parley-home' / 'parley.db'}"


def test_lookup_order_explicit_then_env_then_local_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / f"{name}.yaml").write_text(
            f"default_backend: {name}\nbackends: {{{name}: {{type: local}}}}\n"
        )
    (tmp_path / "config.yaml").write_text((tmp_path / "c.yaml").read_text())
    assert load_config(None)[0].default_backend == "c"
    monkeypatch.setenv("PARLEY_CONFIG", str(tmp_path / "b.yaml"))
    assert load_config(None)[0].default_backend == "b"
    assert load_config(tmp_path / "a.yaml")[0].default_backend == "a"


def test_example_config_is_valid_and_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in EXAMPLE_ENV.items():
        monkeypatch.setenv(key, value)
    config, _ = load_config(REPO / "config.example.yaml")
    dumped = repr(redacted_dump(config))
    for secret in EXAMPLE_ENV.values():
        assert secret not in dumped
    assert set(secret_values(config)) >= set(EXAMPLE_ENV.values())
    assert {b.platform for b in config.bots} == {"discord", "telegram", "console"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"databse": {}}, "databse: unknown key"),
        (
            {"backends": {"o": {"type": "chat_completions", "bse_url": "x", "model": "m"}}},
            "backends.o.bse_url: unknown key",
        ),
        ({"backends": {"o": {"type": "nope"}}}, "backends.o.type: must be one of"),
        ({"bots": [{"name": "a", "platform": "irc"}]}, "bots[0].platform: must be one of"),
        ({"bots": [{"name": "a", "platform": "discord"}]}, "bots[0].token: a discord bot needs"),
        ({"bots": [{"name": "a", "platform": "console", "backend": "x"}]}, "bots[0].backend"),
        ({"default_backend": "gpt"}, "default_backend: no backend named 'gpt'"),
        (
            {
                "backends": {
                    "o": {
                        "type": "chat_completions",
                        "base_url": "http://u:pw@127.0.0.1/v1",
                        "api_key": "k",
                        "model": "m",
                    }
                }
            },
            "backends.o: base_url has a user name and password and api_key is set too",
        ),
        (
            {
                "bots": [
                    {"name": "a", "platform": "console"},
                    {"name": "a", "platform": "telegram", "token": "123:abc"},
                ]
            },
            "bots[1].name",
        ),
        (
            {"backends": {"local": {"type": "local", "context_size": -1}}},
            "backends.local.context_size",
        ),
        (
            {"backends": {"o": {"type": "chat_completions", "model": "m"}}},
            "backends.o.base_url: required",
        ),
        ([1, 2], "top level must be a mapping"),
        (
            {"bots": [{"name": "a", "platform": "console"}, {"name": "b", "platform": "console"}]},
            "bots[1].platform: only one console bot",
        ),
        (
            {"backends": {"local": {"type": "local", "context_size": 256}}},
            "backends.local: max_response_tokens must be smaller than context_size",
        ),
    ],
)
def test_errors_are_one_line_naming_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_missing_environment_variable_names_key_and_variable() -> None:
    raw = {
        "backends": {
            "local": {"type": "local"},
            "o": {
                "type": "chat_completions",
                "base_url": "x",
                "model": "m",
                "api_key": "${PARLEY_TEST_UNSET_KEY}",
            },
        }
    }
    with pytest.raises(
        ConfigError, match=r"backends\.o\.api_key: environment variable PARLEY_TEST_UNSET_KEY"
    ):
        parse_config(raw, env={})


def test_invalid_yaml_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("bots:\n  - name: a\n   platform: console\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(path)


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_database_password_is_redacted() -> None:
    config = parse_config({"database": {"url": "postgresql+asyncpg://bot:hunter22@db/parley"}})
    assert "hunter22" not in repr(redacted_dump(config))
    assert "hunter22" in secret_values(config)


def test_folder_and_non_utf8_configs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        load_config(tmp_path)
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("default_backend: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(latin1)


def test_credentials_inside_urls_are_redacted() -> None:
    config = parse_config(
        {
            "backends": {
                "local": {"type": "local"},
                "o": {
                    "type": "chat_completions",
                    "base_url": "http://me:pa55word@h/v1",
                    "model": "m",
                },
            }
        }
    )
    assert "pa55word" not in repr(redacted_dump(config))
    assert "pa55word" in secret_values(config)


def test_default_backend_may_be_left_out() -> None:
    one = {"type": "chat_completions", "base_url": "http://127.0.0.1:1/v1", "model": "m"}
    assert parse_config({"backends": {"only": one}}).default_backend == "only"
    assert parse_config({"backends": {"local": {"type": "local"}, "o": one}}).default_backend == (
        "local"
    )
    with pytest.raises(ConfigError, match="default_backend: required when several"):
        parse_config({"backends": {"a": one, "b": one}})


def _openai(**overrides: object) -> dict[str, object]:
    return {
        "type": "chat_completions",
        "base_url": "http://127.0.0.1:1/v1",
        "model": "m",
    } | overrides


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"backends": {"o": _openai(base_url="htps://api.openai.com/v1")}},
            "backends.o.base_url: must be an http:// or https:// URL such as "
            "https://api.openai.com/v1, not htps://",
        ),
        (
            {"backends": {"o": _openai(base_url="not a url")}},
            "backends.o.base_url: must be an http:// or https:// URL",
        ),
        (
            {"backends": {"o": _openai(base_url="http:///v1")}},  # no host
            "backends.o.base_url: must be an http:// or https:// URL",
        ),
        (
            {
                "backends": {
                    "w": {
                        "type": "chatgpt_web",
                        "session_token": "s",
                        "clearance_token": "c",
                        "backend_api_base_url": "chat.openai.com/backend-api",
                    }
                }
            },
            "backends.w.backend_api_base_url: must be an http:// or https:// URL",
        ),
        (
            {
                "bots": [
                    {"name": "t", "platform": "telegram", "token": "1:a", "api_base_url": "ftp://x"}
                ]
            },
            "bots[0].api_base_url: must be an http:// or https:// URL",
        ),
        (
            {
                "bots": [
                    {
                        "name": "d",
                        "platform": "discord",
                        "token": "a",
                        "gateway_url": "https://gateway.discord.gg",
                    }
                ]
            },
            "bots[0].gateway_url: must be a ws:// or wss:// URL such as wss://gateway.example/, "
            "not https://",
        ),
        (
            {"bots": [{"name": "a", "platform": "console", "backend": "gpt"}]},
            "bots[0].backend: no backend named 'gpt' (backends defined: local)",
        ),
        ({"backends": {}}, "backends: at least one backend is needed"),
        ({"backends": None}, "backends: at least one backend is needed"),
        ({"database": {"url": "mysql://u:p@h/db"}}, "database.url: unsupported database 'mysql'"),
        ({"database": {"url": "mysql://u:p@h/db"}}, "sqlite or postgresql"),
        ({"database": {"url": "not a url"}}, "database.url: not a database URL"),
        ({"database": {"url": "sqlite+pysqlite:///x.db"}}, "database.url: parley talks to SQLite"),
        ({"database": {"url": "sqlite+aiosqlite://x.db"}}, "database.url: a SQLite URL has"),
        (
            {"database": {"url": "postgresql+psycopg2://h/db"}},
            "database.url: parley talks to PostgreSQL through asyncpg",
        ),
    ],
)
def test_more_errors_name_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_an_invalid_url_is_not_echoed() -> None:
    # Someone pasted the API key into base_url: the error must not print it.
    with pytest.raises(ConfigError) as info:
        parse_config({"backends": {"o": _openai(base_url="sk-proj-abcdef123456")}})
    assert "sk-proj-abcdef123456" not in str(info.value)


def test_urls_keep_working_and_get_their_async_driver() -> None:
    config = parse_config(
        {
            "database": {"url": "sqlite:///rel.db"},
            "backends": {"o": _openai(base_url=" https://h/v1 ")},
        }
    )
    assert database_url(config) == "sqlite+aiosqlite:///rel.db"
    backend = config.backends["o"]
    assert getattr(backend, "base_url", None) == "https://h/v1"
    pg = parse_config({"database": {"url": "postgres://bot:pw@db/parley"}})
    assert database_url(pg) == "postgresql+asyncpg://bot:pw@db/parley"


def test_secret_query_parameters_are_redacted_and_learnt() -> None:
    config = parse_config(
        {
            "database": {"url": "postgresql+asyncpg://bot:db-pass-77@db/parley?sslmode=require"},
            "backends": {
                "azure": _openai(
                    base_url="https://x.openai.azure.com/v1?api-version=2024&api-key=az-key-123"
                ),
                "web": {
                    "type": "chatgpt_web",
                    "session_token": "s",
                    "clearance_token": "c",
                    "api_base_url": "https://proxy.example/api?token=tok-456",
                },
            },
            "default_backend": "azure",
            "bots": [
                {
                    "name": "d",
                    "platform": "discord",
                    "token": "discord-tok",
                    "gateway_url": "wss://gw.example/?sig=sig-789",
                }
            ],
        }
    )
    dumped = repr(redacted_dump(config))
    for secret in ("db-pass-77", "az-key-123", "tok-456", "sig-789"):
        assert secret not in dumped
        assert secret in secret_values(config)
    assert "api-version=2024" in dumped and "sslmode=require" in dumped
    assert "postgresql+asyncpg://bot:********@db/parley" in dumped


def test_every_unset_variable_is_named_at_once() -> None:
    raw = {
        "backends": {
            "o": _openai(api_key="${PARLEY_T_KEY}"),
            "p": _openai(api_key="${PARLEY_T_KEY}", base_url="${PARLEY_T_URL}"),
        },
        "default_backend": "o",
        "bots": [{"name": "t", "platform": "telegram", "token": "${PARLEY_T_TOKEN}"}],
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw, env={})
    text = str(info.value)
    assert "3 environment variables are not set" in text
    assert "PARLEY_T_KEY (backends.o.api_key, backends.p.api_key)" in text
    assert "PARLEY_T_URL (backends.p.base_url)" in text
    assert "PARLEY_T_TOKEN (bots[0].token)" in text


def test_yaml_errors_say_where_and_what(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("backends:\n  local: {type: local}\nbots:\n  - name: a\n   platform: console\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "not valid YAML at line 5, column 4: expected <block end>" in str(info.value)
    path.write_text("default_backend: local\nbackends:\n\tlocal: {type: local}\n")
    with pytest.raises(ConfigError, match=r"at line 3, column 1: .*tabs"):
        load_config(path)


def test_a_key_given_twice_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("backends: {local: {type: local}}\ndefault_backend: local\nbackends: {}\n")
    with pytest.raises(ConfigError, match="line 3, column 1: the key 'backends' appears twice"):
        load_config(path)
    merged = tmp_path / "merge.yaml"  # an override after a YAML merge key is not a repeat
    merged.write_text(
        "base: &b {type: local, context_size: 1024}\n"
        "backends:\n  local: {<<: *b, context_size: 2048}\n"
    )
    with pytest.raises(ConfigError, match="base: unknown key"):
        load_config(merged)


def test_recursive_and_exploding_aliases_are_refused(tmp_path: Path) -> None:
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("backends: {local: {type: local, completion_params: &a {x: [*a]}}}\n")
    with pytest.raises(ConfigError, match=r"completion_params\.x\[0\]: a YAML alias that contains"):
        load_config(recursive)
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    exploding = tmp_path / "bomb.yaml"
    exploding.write_text("\n".join(bomb) + "\n")
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config(exploding)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(deep)


def test_an_oversized_config_file_is_refused(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 120_000)  # 1.2 MB of comments
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_config(big)


def test_telegram_keys_are_validated_and_the_webhook_secret_redacted() -> None:
    bot: dict[str, Any] = {
        "name": "tg",
        "platform": "telegram",
        "token": "123:bot-token-secret",
        "mode": "webhook",
        "webhook": {"url": "https://bot.example.org/hook", "secret_token": "hook-secret-1"},
        "rate_limit": {"messages": 5, "per_seconds": 60},
    }
    raw = {"bots": [bot]}
    config = parse_config(raw)
    dumped = repr(redacted_dump(config))
    assert "hook-secret-1" not in dumped and "bot-token-secret" not in dumped
    assert {"hook-secret-1", "123:bot-token-secret"} <= set(secret_values(config))
    bot["webhook"] = None
    with pytest.raises(ConfigError, match=r"bots\[0\].*webhook: required when mode is webhook"):
        parse_config(raw)
    bot |= {"webhook": {"url": "https://x/h"}, "rate_limit": {"messages": 0}}
    with pytest.raises(ConfigError, match=r"bots\[0\]\.rate_limit\.messages"):
        parse_config(raw)


def test_the_metrics_section_is_off_when_absent_and_checked_when_present() -> None:
    assert parse_config({}).metrics is None
    assert parse_config({"metrics": None}).metrics is None
    defaults = parse_config({"metrics": {}}).metrics
    assert defaults is not None and (defaults.listen, defaults.port) == ("127.0.0.1", 9464)
    chosen = parse_config({"metrics": {"listen": "0.0.0.0", "port": 0}}).metrics
    assert chosen is not None and (chosen.listen, chosen.port) == ("0.0.0.0", 0)
    assert redacted_dump(parse_config({"metrics": {}}))["metrics"] == {
        "listen": "127.0.0.1",
        "port": 9464,
    }
    with pytest.raises(ConfigError, match=r"metrics\.prot: unknown key"):
        parse_config({"metrics": {"prot": 1}})
    with pytest.raises(ConfigError, match=r"metrics\.port: "):
        parse_config({"metrics": {"port": 70000}})
