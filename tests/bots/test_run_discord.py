"""``parley run`` with a Discord bot, as an operator runs it: a real process against the
fake Discord (REST + gateway, reached through api_base_url and gateway_url) and the fake
LLM; restarts, SIGTERM with an answer in flight, a bad token, a missing intent."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bots.test_cli import spawn
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

TOKEN = "MTAw.run-discord.secret"
BOT = 1_100_000_000_000_000_001
GUILD = 810_000_000_000_000_001
GENERAL = 820_000_000_000_000_001
ALICE = 840_000_000_000_000_001


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN, bot_id=BOT) as fake:
        guild = fake.guild(GUILD, "Parley HQ")
        fake.channel(guild, GENERAL, "general")
        fake.user(ALICE, "alice")
        fake.member(guild, ALICE)
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:
        yield fake


def write_config(tmp_path: Path, dc: FakeDiscord, llm: FakeOpenAIServer) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database: {{url: "sqlite+aiosqlite:///{tmp_path / "run.db"}"}}
backends:
  fake: {{type: chat_completions, base_url: "{llm.base_url}", model: m, max_retries: 0}}
bots:
  - name: helper
    platform: discord
    token: "${{DC_TOKEN}}"
    api_base_url: "{dc.api_base_url}"
    gateway_url: "{dc.gateway_url}"
    shutdown_grace: 8
"""
    )
    return path


async def start(config: Path, dc: FakeDiscord, token: str = TOKEN) -> asyncio.subprocess.Process:
    live = len(dc.identifies)
    process = await spawn("run", "--config", str(config), "-v", env={"DC_TOKEN": token})
    await dc.wait_for(
        lambda: len(dc.identifies) > live or process.returncode is not None, timeout=30
    )
    await asyncio.sleep(0.3)  # READY and GUILD_CREATE reach the client
    return process


async def stop(process: asyncio.subprocess.Process) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, err.decode()


async def test_history_survives_a_restart_and_sigterm_exits_cleanly(
    tmp_path: Path, dc: FakeDiscord, llm: FakeOpenAIServer
) -> None:
    config = write_config(tmp_path, dc, llm)
    first = await start(config, dc)
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> my name is Alice")
    await dc.wait_bot_messages(GENERAL, 1, timeout=20)
    code, err = await stop(first)
    assert code == 0, err
    assert TOKEN not in err and "Traceback" not in err

    second = await start(config, dc)
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> what is my name?")
    await dc.wait_bot_messages(GENERAL, 2, timeout=20)
    code, err = await stop(second)
    assert code == 0, err
    sent = [(m["role"], m["content"]) for m in llm.chat_requests[-1].messages][1:]
    assert sent == [
        ("user", "my name is Alice"),
        ("assistant", "Echo: my name is Alice"),
        ("user", "what is my name?"),
    ]


async def test_sigterm_lets_the_answer_in_flight_finish(
    tmp_path: Path, dc: FakeDiscord, llm: FakeOpenAIServer
) -> None:
    config = write_config(tmp_path, dc, llm)
    process = await start(config, dc)
    slow = " ".join(f"w{i}" for i in range(30))
    llm.script(Behaviour(reply=slow, chunk_delay=0.1))  # about 3 s
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> take your time")
    await dc.wait_bot_messages(GENERAL, 1, timeout=20)
    code, err = await stop(process)
    assert code == 0, err
    [answer] = dc.bot_messages(GENERAL)
    assert answer.content == slow


@pytest.mark.parametrize(
    ("token", "allowed_intents", "says"),
    [
        ("MTAw.not-the.token", None, "Reset Token"),
        (TOKEN, 0, "Message Content"),
    ],
)
async def test_a_start_failure_is_one_line_naming_the_bot_and_the_fix(
    tmp_path: Path,
    dc: FakeDiscord,
    llm: FakeOpenAIServer,
    token: str,
    allowed_intents: int | None,
    says: str,
) -> None:
    if allowed_intents is not None:
        dc.allowed_intents = allowed_intents
    config = write_config(tmp_path, dc, llm)
    process = await spawn("run", "--config", str(config), env={"DC_TOKEN": token})
    _, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert "helper" in lines[0] and says in lines[0]
    assert "not-the" not in lines[0] and TOKEN not in lines[0]
