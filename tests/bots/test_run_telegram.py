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


GROUP = -100700


async def test_kill_9_mid_answer_then_restart_mends_every_chain(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAIServer
) -> None:
    """A worker killed mid-stream: after the restart the group's half-shown answer says
    it was cut off, the DM nobody saw answered is answered, nothing committed twice."""
    tg.group(GROUP, "Friends", supergroup=True)
    config = write_config(tmp_path, tg, llm)
    process = await start(config, tg)
    slow = " ".join(f"w{i}" for i in range(200))
    llm.default = Behaviour(reply=slow, chunk_delay=0.05)  # about 10 s each
    tg.send_text(GROUP, ALICE, "@parley_bot tell me a long story")
    tg.send_text(ALICE, ALICE, "and one for me")
    await tg.wait_for(lambda: tg.bot_messages(GROUP) and tg.drafts.get(ALICE), timeout=20)
    # A message's id is known only once its send returns, and is then recorded in
    # the background: a kill within those milliseconds leaves it unknown (and the
    # turn is answered anew instead of mended).
    await asyncio.sleep(0.5)
    [partial] = tg.bot_messages(GROUP)
    assert partial.text != slow  # still streaming
    process.kill()
    await process.wait()
    assert tg.bot_messages(ALICE) == []

    llm.default = Behaviour()
    second = await start(config, tg)
    [dm] = await tg.wait_bot_messages(ALICE, 1, timeout=20)
    assert dm.text == "Echo: and one for me"
    await tg.wait_for(lambda: "cut off" in (tg.bot_messages(GROUP)[0].text or ""), timeout=20)
    [mended] = tg.bot_messages(GROUP)
    assert mended.message_id == partial.message_id and "again" in (mended.text or "")

    # Both chains go on from where they stood: the cut-off turn was never committed.
    tg.send_text(GROUP, ALICE, "@parley_bot again please")
    await tg.wait_bot_messages(GROUP, 2, timeout=20)
    tg.send_text(ALICE, ALICE, "thanks")
    await tg.wait_bot_messages(ALICE, 2, timeout=20)
    code, err = await stop(second)
    assert code == 0, err
    prompts = [[m["content"] for m in r.messages] for r in llm.chat_requests]
    group_prompt = next(p for p in prompts if p[-1] == "again please")
    assert "tell me a long story" not in group_prompt
    dm_prompt = next(p for p in prompts if p[-1] == "thanks")
    assert dm_prompt[-3:] == ["and one for me", "Echo: and one for me", "thanks"]
    assert sum(p[-1] == "and one for me" for p in prompts) == 2  # killed once, answered once
