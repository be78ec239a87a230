"""What the person at the terminal sees when things go wrong: real ``parley`` processes,
real sockets, real SQLite files. Each problem is one line on stderr, never a traceback
(that comes with ``-vv``), and secrets never show."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path

import pytest

from tests.bots.test_cli import REPO, Result, parley
from tests.fakes.chatgpt_web import CLEARANCE_TOKEN, SESSION_TOKEN, FakeChatGPTWeb
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

KEY = "sk-operator-secret"
ENV = {"FAKE_KEY": KEY}


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key=KEY) as fake:
        yield fake


def write_config(tmp_path: Path, server: FakeOpenAIServer, extra: str = "", **db: str) -> Path:
    url = db.get("url", f"sqlite+aiosqlite:///{tmp_path / 'op.db'}")
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database: {{url: "{url}"}}
default_backend: fake
backends:
  fake:
    type: chat_completions
    base_url: {server.base_url}
    api_key: "${{FAKE_KEY}}"
    model: test-model
    max_retries: 0
  other:
    type: chat_completions
    base_url: {server.base_url}
    api_key: "${{FAKE_KEY}}"
    model: other-model
    max_retries: 0
{extra}"""
    )
    return path


def one_line(result: Result) -> str:
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    return lines[0]


# -- point 1 and 2: URLs and databases ------------------------------------------------


async def test_config_check_redacts_secrets_in_every_url(tmp_path: Path) -> None:
    config = tmp_path / "urls.yaml"
    config.write_text(
        """
database: {url: "postgresql://bot:pg-pass-1234@127.0.0.1:9/parley"}
default_backend: azure
backends:
  azure:
    type: chat_completions
    base_url: "https://x.openai.azure.com/openai/v1?api-version=2024-10&api-key=az-key-5678"
    model: m
bots:
  - name: t
    platform: telegram
    token: "123:tg-token-abcd"
    api_base_url: "http://127.0.0.1:8081/bot?access_token=tg-proxy-9012"
"""
    )
    result = await parley("config", "check", "--config", str(config))
    assert result.code == 0, result.err
    for secret in ("pg-pass-1234", "az-key-5678", "tg-token-abcd", "tg-proxy-9012"):
        assert secret not in result.out + result.err
    assert "postgresql+asyncpg://bot:********@127.0.0.1:9/parley" in result.out
    assert "api-version=2024-10&api-key=********" in result.out
    assert "access_token=********" in result.out


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("base_url", "htps://api.example/v1", "must be an http:// or https:// URL"),
        ("base_url", "not a url", "must be an http:// or https:// URL"),
    ],
)
async def test_a_bad_base_url_names_its_key(
    tmp_path: Path, key: str, value: str, message: str
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"backends: {{o: {{type: chat_completions, model: m, {key}: '{value}'}}}}\n")
    result = await parley("config", "check", "--config", str(config))
    assert result.code == 2
    assert f"backends.o.{key}: {message}" in one_line(result)


@pytest.fixture
def no_asyncpg(tmp_path: Path) -> dict[str, str]:
    """An environment in which ``import asyncpg`` fails, as without the postgres extra."""
    blocker = tmp_path / "blocker" / "asyncpg"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text('raise ImportError("No module named asyncpg")\n')
    return {"PYTHONPATH": f"{blocker.parent}:{REPO}"}


async def test_postgres_without_asyncpg_is_one_line_everywhere(
    tmp_path: Path, no_asyncpg: dict[str, str]
) -> None:
    config = tmp_path / "pg.yaml"
    config.write_text('database: {url: "postgresql+asyncpg://bot:pw-4321@127.0.0.1:9/db"}\n')
    for command in (("config", "check"), ("db", "current"), ("db", "upgrade"), ("ask", "hi")):
        result = await parley(*command, "--config", str(config), env=no_asyncpg)
        assert result.code == 2, (command, result.err)
        line = one_line(result)
        assert "database.url: PostgreSQL needs the asyncpg driver" in line
        assert "pip install 'parley[postgres]'" in line
        assert "pw-4321" not in line


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://u:p@127.0.0.1/db", "database.url: unsupported database 'mysql'"),
        ("just some words", "database.url: not a database URL"),
    ],
)
async def test_unusable_database_urls_are_one_line(tmp_path: Path, url: str, message: str) -> None:
    config = tmp_path / "db.yaml"
    config.write_text(f'database: {{url: "{url}"}}\n')
    for command in (("config", "check"), ("db", "current"), ("chat",)):
        result = await parley(*command, "--config", str(config))
        assert result.code == 2
        line = one_line(result)
        assert message in line and "sqlite or postgresql" in line


async def test_db_and_the_app_word_a_read_only_database_alike(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()  # an empty database file, never migrated
    config = tmp_path / "ro.yaml"
    config.write_text(f'database: {{url: "sqlite+aiosqlite:///file:{path}?mode=ro&uri=true"}}\n')
    upgrade = await parley("db", "upgrade", "--config", str(config))
    ask = await parley("ask", "hi", "--config", str(config))
    assert upgrade.code == 1 and ask.code == 1
    assert one_line(upgrade) == one_line(ask)
    assert "the database is read-only; check database.url" in one_line(ask)


async def test_an_unreachable_database_masks_its_password(tmp_path: Path) -> None:
    config = tmp_path / "pg.yaml"
    config.write_text('database: {url: "postgresql+asyncpg://bot:pw-8765@127.0.0.1:9/db"}\n')
    result = await parley("ask", "hi", "--config", str(config))
    assert result.code == 1
    line = one_line(result)
    assert "postgresql+asyncpg://bot:********@127.0.0.1:9/db" in line
    assert "connection was refused" in line and "pw-8765" not in line


# -- point 5: one line for the operator -----------------------------------------------


async def test_a_read_only_database_is_one_line_and_the_traceback_needs_vv(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    db = tmp_path / "op.db"
    assert (
        await parley("ask", "first", "--config", str(write_config(tmp_path, server)), env=ENV)
    ).code == 0
    read_only = write_config(
        tmp_path, server, url=f"sqlite+aiosqlite:///file:{db}?mode=ro&uri=true"
    )
    result = await parley("ask", "second", "--config", str(read_only), env=ENV)
    assert result.code == 1
    assert result.out == ""  # refused before the backend: the answer could not be kept
    line = one_line(result)
    assert line.startswith("parley: error: cannot take the message on")
    assert line.endswith("the database is read-only")
    verbose = await parley("ask", "third", "-vv", "--config", str(read_only), env=ENV)
    assert "Traceback" in verbose.err and "readonly database" in verbose.err


async def test_a_full_disk_is_one_line(tmp_path: Path, server: FakeOpenAIServer) -> None:
    config = write_config(tmp_path, server)
    for command in (("ask", "hi"), ("config", "check"), ("chat",)):
        with open("/dev/full", "w") as full:  # noqa: ASYNC230 - a device, opened once
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bots.cli",
                *command,
                "--config",
                str(config),
                stdin=asyncio.subprocess.PIPE,
                stdout=full,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "PYTHONPATH": str(REPO), **ENV},
            )
            _, err = await process.communicate(b"hi\nagain\n")
        assert process.returncode == 1, err
        text = err.decode()
        assert len(text.splitlines()) == 1 and "Traceback" not in text, text
        assert "No space left on device" in text


async def test_config_file_problems_are_one_line(tmp_path: Path) -> None:
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("backends: &b {local: {type: local, completion_params: {x: *b}}}\n")
    huge = tmp_path / "huge.yaml"
    huge.write_text("#" * (1024 * 1024 + 1) + "\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("backends:\n  local: {type: local\nbots: []\n")
    unset = tmp_path / "unset.yaml"
    unset.write_text(
        "backends:\n  o: {type: chat_completions, base_url: '${PARLEY_T_URL}', model: m,"
        " api_key: '${PARLEY_T_KEY}'}\n"
    )
    empty = tmp_path / "empty.yaml"
    empty.write_text("backends: {}\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(
        "backends: {local: {type: local}}\nbots: [{name: c, platform: console, backend: gpt}]\n"
    )
    expected = {
        recursive: "a YAML alias that contains itself",
        huge: "larger than 1 MiB",
        broken: "not valid YAML at line 3, column 5:",
        unset: "2 environment variables are not set: PARLEY_T_URL (backends.o.base_url), "
        "PARLEY_T_KEY (backends.o.api_key)",
        empty: "backends: at least one backend is needed",
        unknown: "bots[0].backend: no backend named 'gpt' (backends defined: local)",
    }
    for path, message in expected.items():
        result = await parley("ask", "hi", "--config", str(path))
        assert result.code == 2, result.err
        assert message in one_line(result), path.name


async def test_version() -> None:
    result = await parley("--version")
    assert result.code == 0
    assert result.out.strip() == f"parley {metadata.version('parley')}"


# -- point 6: logs ----------------------------------------------------------------------


async def test_v_gives_one_line_per_turn_and_vv_parleys_debug_only(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    config = str(write_config(tmp_path, server))
    quiet = await parley("ask", "hi", "--config", config, env=ENV)
    assert quiet.err == ""
    verbose = await parley("ask", "hi", "-v", "--config", config, env=ENV)
    turn_lines = [line for line in verbose.err.splitlines() if "core.chat_service" in line]
    assert len(turn_lines) == 1, verbose.err
    assert "bot ask, backend fake: answered;" in turn_lines[0]
    assert " s in all" in turn_lines[0]
    assert "DEBUG" not in verbose.err

    debug = await parley("ask", "hi", "-vv", "--config", config, env=ENV)
    loggers = {line.split()[1] for line in debug.err.splitlines() if line.startswith("DEBUG ")}
    assert "core.store.sql:" in loggers  # store timings
    assert all(name.split(".")[0] in ("core", "adapters", "bots", "migrations") for name in loggers)
    assert KEY not in debug.err

    libs = await parley(
        "ask", "hi", "-vv", "--config", config, env={**ENV, "PARLEY_DEBUG_LIBS": "1"}
    )
    lib_loggers = {line.split()[1] for line in libs.err.splitlines() if line.startswith("DEBUG ")}
    assert any(name.startswith(("aiosqlite", "alembic", "asyncio")) for name in lib_loggers)


# -- point 7: conversations ---------------------------------------------------------------


async def test_ask_continue_with_another_backend_carries_the_thread(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    config = str(write_config(tmp_path, server))
    assert (await parley("ask", "hi", "--config", config, env=ENV)).code == 0
    other = await parley("ask", "-c", "again", "--backend", "other", "--config", config, env=ENV)
    assert other.code == 0 and other.err == ""
    request = server.chat_requests[-1]
    assert request.body["model"] == "other-model"
    sent = [(m["role"], m["content"]) for m in request.messages[1:]]
    assert sent == [("user", "hi"), ("assistant", "Echo: hi"), ("user", "again")]


async def test_chat_new_keeps_the_old_thread_until_its_first_answer(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    config = str(write_config(tmp_path, server))
    assert (await parley("chat", "--config", config, stdin="old\n", env=ENV)).code == 0
    server.script(Behaviour.http_error(500))
    failed = await parley("chat", "--new", "--config", config, stdin="fresh\n", env=ENV)
    assert failed.code == 0 and "500" in one_line(failed)
    kept = await parley("chat", "--config", config, stdin="more\n", env=ENV)
    assert kept.code == 0
    assert [m["content"] for m in server.chat_requests[-1].messages[1:]] == [
        "old",
        "Echo: old",
        "more",
    ]
    new = await parley("chat", "--new", "--config", config, stdin="one\ntwo\n", env=ENV)
    assert new.code == 0
    # The second line continues the new conversation, not the old one.
    assert [m["content"] for m in server.chat_requests[-1].messages[1:]] == [
        "one",
        "Echo: one",
        "two",
    ]


async def test_console_help_speaks_of_the_terminal(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    config = str(write_config(tmp_path, server))
    result = await parley("chat", "--config", config, stdin="/help\n", env=ENV)
    assert result.code == 0
    assert "/reset" in result.out and "Ctrl-D" in result.out
    assert "group" not in result.out.lower() and "mention" not in result.out.lower()


async def test_max_input_chars_refuses_without_a_backend_call(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    config = str(
        write_config(
            tmp_path, server, "bots: [{name: term, platform: console, max_input_chars: 5}]\n"
        )
    )
    result = await parley("ask", "far too long", "--config", config, env=ENV)
    assert result.code == 1
    assert one_line(result) == (
        "parley: error: That message is too long for me: 12 characters, the limit is 5."
    )
    assert server.chat_requests == []


async def test_switching_to_a_server_history_backend_says_a_new_thread_starts(
    tmp_path: Path, server: FakeOpenAIServer
) -> None:
    async with FakeChatGPTWeb() as web:
        extra = f"""  web:
    type: chatgpt_web
    session_token: "{SESSION_TOKEN}"
    clearance_token: "{CLEARANCE_TOKEN}"
    api_base_url: {web.api_base_url}
    backend_api_base_url: {web.backend_api_base_url}
    max_retries: 0
"""
        config = str(write_config(tmp_path, server, extra))
        assert (await parley("ask", "hi", "--config", config, env=ENV)).code == 0
        switched = await parley(
            "ask", "-c", "again", "--backend", "web", "--config", config, env=ENV
        )
        assert switched.code == 0, switched.err
        assert one_line(switched) == (
            "parley: The last conversation here was with backend 'fake', which 'web' cannot "
            "continue; starting a new conversation with 'web'."
        )
        # The web backend was not handed the other backend's message ids.
        body = web.requests_to("/backend-api/conversation")[-1].json
        assert body.get("conversation_id") is None


async def test_a_database_from_a_newer_parley_says_so(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    config = tmp_path / "newer.yaml"
    config.write_text(f'database: {{url: "sqlite+aiosqlite:///{path}"}}\n')
    assert (await parley("db", "upgrade", "--config", str(config))).code == 0
    with sqlite3.connect(path) as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    for command in (("db", "upgrade"), ("ask", "hi")):
        result = await parley(*command, "--config", str(config))
        assert result.code == 1
        assert "schema revision 9999, which this version of parley does not know" in one_line(
            result
        )
