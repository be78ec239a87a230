"""The ``parley`` command as a user runs it: a real process, real sockets, a real database."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


async def spawn(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


async def parley(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    process = await spawn(*args, env=env)
    out, err = await asyncio.wait_for(
        process.communicate(stdin.encode() if stdin is not None else b""), 120
    )
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key="sk-cli-secret") as fake:
        yield fake


@pytest.fixture
def config(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database: {{url: "sqlite+aiosqlite:///{tmp_path / "cli.db"}"}}
default_backend: fake
backends:
  fake:
    type: chat_completions
    base_url: {server.base_url}
    api_key: "${{FAKE_KEY}}"
    model: test-model
    max_retries: 0
"""
    )
    return path


async def test_ask_then_continue_sends_the_first_turn(
    server: FakeOpenAIServer, config: Path
) -> None:
    env = {"FAKE_KEY": "sk-cli-secret"}
    first = await parley("ask", "hi", "--config", str(config), env=env)
    assert (first.code, first.out, first.err) == (0, "Echo: hi\n", "")
    again = await parley("ask", "-c", "again", "--config", str(config), env=env)
    assert again.code == 0 and again.out == "Echo: again\n"
    roles = [(m["role"], m["content"]) for m in server.chat_requests[-1].messages]
    assert roles[1:] == [("user", "hi"), ("assistant", "Echo: hi"), ("user", "again")]

    # Without -c a new thread starts; the prompt may come on stdin.
    fresh = await parley("ask", "--config", str(config), stdin="from stdin\n", env=env)
    assert fresh.code == 0
    assert [m["role"] for m in server.chat_requests[-1].messages] == ["system", "user"]


async def test_ask_failure_is_one_line_and_non_zero(server: FakeOpenAIServer, config: Path) -> None:
    server.script(Behaviour.http_error(503))
    failed = await parley("ask", "hi", "--config", str(config), env={"FAKE_KEY": "sk-cli-secret"})
    assert failed.code == 1
    assert failed.out == ""
    # ONE line for the operator: what failed and where, not chat-user text plus warnings.
    assert len(failed.err.splitlines()) == 1, failed.err
    assert failed.err.startswith("parley: error: backend 'fake': ")
    assert "503" in failed.err and "Traceback" not in failed.err
    assert "sk-cli-secret" not in failed.err


async def test_unreachable_backend_and_wrong_key(server: FakeOpenAIServer, config: Path) -> None:
    wrong = await parley("ask", "hi", "--config", str(config), env={"FAKE_KEY": "sk-wrong-key"})
    # The terminal gets the operator's line: what failed and where.
    assert wrong.code == 1 and "401" in wrong.err and "sk-wrong-key" not in wrong.err
    text = config.read_text()  # noqa: ASYNC240 - a tiny local file
    config.write_text(text.replace(server.base_url, "http://127.0.0.1:9/v1"))  # noqa: ASYNC240
    down = await parley("ask", "hi", "--config", str(config), env={"FAKE_KEY": "k"})
    assert down.code == 1 and "127.0.0.1:9" in down.err and "Traceback" not in down.err
    assert len(down.err.splitlines()) == 1


async def test_missing_variable_is_a_clear_error(config: Path) -> None:
    result = await parley("ask", "hi", "--config", str(config))
    assert result.code == 2
    assert result.err.strip().endswith(
        "backends.fake.api_key: environment variable FAKE_KEY is not set"
    )
    assert len(result.err.strip().splitlines()) == 1


async def test_chat_reads_lines_until_end_of_input(server: FakeOpenAIServer, config: Path) -> None:
    env = {"FAKE_KEY": "sk-cli-secret"}
    result = await parley("chat", "--config", str(config), stdin="hello\n/help\nbye\n", env=env)
    assert result.code == 0, result.err
    assert "Echo: hello\n" in result.out and "/reset" in result.out and "Echo: bye\n" in result.out
    assert len(server.chat_requests[-1].messages) == 4  # system, hello, answer, bye
    # `parley run` with the default console bot is the same chat; history persists.
    run = await parley("run", "--config", str(config), stdin="more\n", env=env)
    assert run.code == 0, run.err
    assert len(server.chat_requests[-1].messages) == 6
    new = await parley("chat", "--new", "--config", str(config), stdin="again\n", env=env)
    assert new.code == 0 and len(server.chat_requests[-1].messages) == 2


async def test_config_check_redacts_and_names_bad_keys(tmp_path: Path) -> None:
    env = {
        "OPENAI_API_KEY": "sk-secret-openai",
        "CHATGPT_SESSION_TOKEN": "secret-session",
        "CHATGPT_CLEARANCE_TOKEN": "secret-clearance",
        "DISCORD_BOT_TOKEN": "secret-discord",
        "TELEGRAM_BOT_TOKEN": "123:secret-telegram",
    }
    example = REPO / "config.example.yaml"
    ok = await parley("config", "check", "--config", str(example), env=env)
    assert ok.code == 0, ok.err
    assert "default_backend: openai" in ok.out
    assert not any(secret in ok.out + ok.err for secret in env.values())

    misspelt = tmp_path / "bad.yaml"
    misspelt.write_text(example.read_text().replace("max_concurrency:", "max_concurency:"))
    bad = await parley("config", "check", "--config", str(misspelt), env=env)
    assert bad.code != 0
    assert "backends.openai.max_concurency: unknown key" in bad.err


async def test_db_upgrade_and_current(tmp_path: Path) -> None:
    config = tmp_path / "db.yaml"
    config.write_text(f'database: {{url: "sqlite+aiosqlite:///{tmp_path / "x.db"}"}}\n')
    before = await parley("db", "current", "--config", str(config))
    assert before.code == 0 and before.out.startswith("none")
    up = await parley("db", "upgrade", "--config", str(config))
    assert up.code == 0 and "0002" in up.out
    after = await parley("db", "current", "--config", str(config))
    assert after.out.strip() == "0002"


async def test_ask_with_no_config_uses_the_embedded_model(tmp_path: Path) -> None:
    """The newcomer's path: no config, no key, the real SmolLM2 model."""
    result = await parley("ask", stdin="Name a color.\n")
    assert result.code == 0, result.err
    assert result.out.strip()
    assert (tmp_path / "parley-home" / "parley.db").is_file()


async def test_chat_exits_cleanly_on_sigint(server: FakeOpenAIServer, config: Path) -> None:
    process = await spawn("chat", "--config", str(config), env={"FAKE_KEY": "sk-cli-secret"})
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"hello\n")
    await process.stdin.drain()
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    assert line == b"Echo: hello\n"
    process.send_signal(signal.SIGINT)  # stdin stays open: only the signal can end it
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, err
    assert b"Traceback" not in err


async def test_ctrl_c_mid_answer_stops_and_keeps_the_conversation(
    server: FakeOpenAIServer, config: Path
) -> None:
    env = {"FAKE_KEY": "sk-cli-secret"}
    assert (await parley("chat", "--config", str(config), stdin="hello\n", env=env)).code == 0
    server.script(Behaviour(chunk_delay=1.0, reply="a very slow answer that never ends"))
    process = await spawn("chat", "--config", str(config), env=env)
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"slow please\n")
    await process.stdin.drain()
    assert await asyncio.wait_for(process.stdout.read(2), 60) == b"a "
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 5)  # not the 7 s of answer
    assert process.returncode == 0 and b"Traceback" not in err
    after = await parley("chat", "--config", str(config), stdin="next\n", env=env)
    assert after.code == 0
    sent = [m["content"] for m in server.chat_requests[-1].messages[1:]]
    assert sent == ["hello", "Echo: hello", "next"]


async def test_config_option_works_before_the_command(tmp_path: Path) -> None:
    config = tmp_path / "before.yaml"
    config.write_text("default_backend: mine\nbackends: {mine: {type: local}}\n")
    result = await parley("--config", str(config), "config", "check")
    assert result.code == 0 and "default_backend: mine" in result.out
    missing = await parley("--config", str(tmp_path / "nope.yaml"), "db", "current")
    assert missing.code == 2 and "does not exist" in missing.err


async def test_a_failed_ask_keeps_the_thread_for_continue(
    server: FakeOpenAIServer, config: Path
) -> None:
    env = {"FAKE_KEY": "sk-cli-secret"}
    assert (await parley("ask", "first", "--config", str(config), env=env)).code == 0
    server.script(Behaviour.http_error(500))
    assert (await parley("ask", "doomed", "--config", str(config), env=env)).code == 1
    assert (await parley("ask", "-c", "more", "--config", str(config), env=env)).code == 0
    sent = [m["content"] for m in server.chat_requests[-1].messages[1:]]
    assert sent == ["first", "Echo: first", "more"]


async def test_user_mistakes_never_print_a_traceback(tmp_path: Path) -> None:
    bad_model = tmp_path / "model.yaml"
    bad_model.write_text(
        f'database: {{url: "sqlite+aiosqlite:///{tmp_path / "m.db"}"}}\n'
        "backends: {local: {type: local, model_path: /nonexistent/model.gguf}}\n"
    )
    model = await parley("ask", "hi", "--config", str(bad_model))
    assert model.code == 1 and "model_path" in model.err and "Traceback" not in model.err
    unknown = await parley("ask", "hi", "--backend", "nope", "--config", str(bad_model))
    assert unknown.code == 1 and "no backend named 'nope'" in unknown.err
    folder = await parley("config", "check", "--config", str(tmp_path))
    assert folder.code == 2 and "folder" in folder.err
    empty = await parley("ask", "--config", str(bad_model), stdin="  \n")
    assert empty.code == 2 and "empty" in empty.err
    for result in (model, unknown, folder, empty):
        assert len(result.err.strip().splitlines()) == 1


async def test_closed_output_pipe_ends_quietly(server: FakeOpenAIServer, config: Path) -> None:
    """`parley ask ... | head -c 3`: no traceback, no 'error:' line."""
    server.script(Behaviour(reply=" ".join(["word"] * 400), chunk_delay=0.001))
    read_fd, write_fd = os.pipe()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bots.cli",
        "ask",
        "long please",
        "--config",
        str(config),
        stdout=write_fd,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "FAKE_KEY": "sk-cli-secret"},
    )
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as reader:
        assert await asyncio.to_thread(reader.read, 3) == b"wor"
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    assert err == b""


async def test_parallel_ask_c_processes_form_one_unbroken_thread(
    server: FakeOpenAIServer, config: Path
) -> None:
    """Ten `ask -c` processes on one SQLite file: each turn hangs on the one before, so
    none drops out of the thread (the inbox serialises them across processes)."""
    env = {"FAKE_KEY": "sk-cli-secret"}
    assert (await parley("ask", "q0", "--config", str(config), env=env)).code == 0
    results = await asyncio.gather(
        *(parley("ask", "-c", f"q{i}", "--config", str(config), env=env) for i in range(1, 11))
    )
    assert [r.code for r in results] == [0] * 10, [r.err for r in results]
    last = await parley("ask", "-c", "last", "--config", str(config), env=env)
    assert last.code == 0
    history = [m["content"] for m in server.chat_requests[-1].messages if m["role"] == "user"]
    assert len(history) == 12 and history[0] == "q0" and history[-1] == "last"
    assert sorted(history[1:-1]) == sorted(f"q{i}" for i in range(1, 11))


async def test_twenty_asks_at_once_on_a_new_sqlite_file_all_answer(
    server: FakeOpenAIServer, config: Path
) -> None:
    """Issue 10: 20 `parley ask` processes started together on 2 cores, on a database
    file none has created yet (they race through the migration too), all answer."""
    env = {"FAKE_KEY": "sk-cli-secret"}
    results = await asyncio.gather(
        *(parley("ask", f"question {i}", "--config", str(config), env=env) for i in range(20))
    )
    assert [r.code for r in results] == [0] * 20, [r.err for r in results if r.code]
    assert [r.out for r in results] == [f"Echo: question {i}\n" for i in range(20)]
    asked = sorted(m["content"] for r in server.chat_requests for m in r.messages[-1:])
    assert asked == sorted(f"question {i}" for i in range(20))
