from __future__ import annotations

from pathlib import Path

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
