"""``parley run`` as an operator runs it (a real process, default verbosity) through a
backend that keeps failing and a PostgreSQL restart: the user gets one plain message,
the operator one line and no traceback, and the process serves on, unrestarted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.errors import ChatGPTError
from tests.bots.test_cli import spawn
from tests.bots.test_run_telegram import TOKEN, stop
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.fakes.telegram_api import FakeTelegram
from tests.pg import PostgresCluster

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


async def test_backend_failure_and_postgres_restart_under_parley_run(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAIServer, own_postgres: PostgresCluster
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"""
database: {{url: "{own_postgres.url()}"}}
backends:
  fake: {{type: chat_completions, base_url: "{llm.base_url}", model: m, max_retries: 1,
          timeout: 3}}
bots:
  - {{name: helper, platform: telegram, token: "${{TG_TOKEN}}",
      api_base_url: "{tg.api_base_url}"}}
"""
    )
    process = await spawn("run", "--config", str(config), env={"TG_TOKEN": TOKEN})
    try:
        await tg.wait_for(lambda: tg.calls_to("getUpdates") or process.returncode, timeout=30)
        assert process.returncode is None
        tg.send_text(ALICE, ALICE, "my name is Alice")
        await tg.wait_bot_messages(ALICE, 1, timeout=20)

        llm.default = Behaviour.http_error(502, "upstream connect error")
        tg.send_text(ALICE, ALICE, "are you there?")
        await tg.wait_bot_messages(ALICE, 2, timeout=20)
        llm.default = Behaviour()

        await asyncio.to_thread(own_postgres.restart)
        tg.send_text(ALICE, ALICE, "what is my name?")
        await tg.wait_bot_messages(ALICE, 3, timeout=20)
    finally:
        code, err = await stop(process)
    assert code == 0, err
    assert [m.text for m in tg.bot_messages(ALICE)] == [
        "Echo: my name is Alice",
        ChatGPTError("").user_message,
        "Echo: what is my name?",
    ]
    assert [m["content"] for m in llm.chat_requests[-1].messages][1:] == [
        "my name is Alice",
        "Echo: my name is Alice",
        "what is my name?",
    ]
    assert "Traceback" not in err and TOKEN not in err, err
    [failure] = [line for line in err.splitlines() if "502" in line]
    assert "WARNING" in failure and "after 2 tries" in failure, failure
