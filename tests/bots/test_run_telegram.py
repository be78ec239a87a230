"""``parley run`` with a Telegram bot, as an operator runs it: a real process against the
fake Bot API and the fake LLM; restarts, SIGTERM with an answer in flight, a bad token."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bots.test_cli import spawn
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "654321:run-telegram-secret"
ALICE = 77


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, username="parley_bot") as fake:
        fake.private_chat(ALICE, "Alice")
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:
        yield fake


def write_config(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAIServer) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database: {{url: "sqlite+aiosqlite:///{tmp_path / "run.db"}"}}
backends:
  fake: {{type: chat_completions, base_url: "{llm.base_url}", model: m, max_retries: 0}}
bots:
  - name: helper
    platform: telegram
    token: "${{TG_TOKEN}}"
    api_base_url: "{tg.api_base_url}"
    shutdown_grace: 8
"""
    )
    return path


async def start(config: Path, tg: FakeTelegram, token: str = TOKEN) -> asyncio.subprocess.Process:
    polls = len(tg.calls_to("getUpdates"))
    process = await spawn("run", "--config", str(config), "-v", env={"TG_TOKEN": token})
    await tg.wait_for(
        lambda: len(tg.calls_to("getUpdates")) > polls or process.returncode is not None,
        timeout=30,
    )
    return process


async def stop(process: asyncio.subprocess.Process) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_history_survives_a_restart_and_sigterm_exits_cleanly(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAIServer
) -> None:
    config = write_config(tmp_path, tg, llm)
    first = await start(config, tg)
    tg.send_text(ALICE, ALICE, "my name is Alice")
    await tg.wait_bot_messages(ALICE, 1, timeout=20)
    code, err = await stop(first)
    assert code == 0, err
    assert TOKEN not in err and "Traceback" not in err

    second = await start(config, tg)
    tg.send_text(ALICE, ALICE, "what is my name?")
    await tg.wait_bot_messages(ALICE, 2, timeout=20)
    code, err = await stop(second)
    assert code == 0, err
    sent = [(m["role"], m["content"]) for m in llm.chat_requests[-1].messages][1:]
    assert sent == [
        ("user", "my name is Alice"),
        ("assistant", "Echo: my name is Alice"),
        ("user", "what is my name?"),
    ]


async def test_sigterm_lets_the_answer_in_flight_finish(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAIServer
) -> None:
    config = write_config(tmp_path, tg, llm)
    process = await start(config, tg)
    slow = " ".join(f"w{i}" for i in range(30))
    llm.script(Behaviour(reply=slow, chunk_delay=0.1))  # about 3 s
    tg.send_text(ALICE, ALICE, "take your time")
    await tg.wait_for(lambda: tg.drafts.get(ALICE), timeout=20)
    code, err = await stop(process)
    assert code == 0, err
    [answer] = tg.bot_messages(ALICE)
    assert answer.text == slow


async def test_a_bad_token_stops_run_with_one_line_naming_the_bot(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAIServer
) -> None:
    config = write_config(tmp_path, tg, llm)
    process = await spawn("run", "--config", str(config), env={"TG_TOKEN": "111:not-the-token"})
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "helper" in lines[0] and "token" in lines[0] and "not-the-token" not in lines[0]
