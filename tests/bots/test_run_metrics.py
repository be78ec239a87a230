"""``parley run`` with ``metrics:``, as an operator runs it and Prometheus scrapes it: a
real process with a Telegram bot against the fake Bot API and the fake LLM; /metrics
before and after an answer, a backend failure and a platform 429; /healthz."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from core.metrics import ERROR_KINDS, OUTCOMES, RATE_LIMIT_SCOPES
from tests.bots.test_run_telegram import TOKEN, start, stop
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.fakes.telegram_api import FakeTelegram

API_KEY = "sk-metrics-secret-key"
# Distinctive ids: a test that finds them in /metrics cannot be fooled by a number.
USER = 918273645
CHAT = USER
LISTENING = re.compile(r"metrics on (http://[\d.]+:\d+)/metrics, health on \S+/healthz")


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, username="parley_bot") as fake:
        fake.private_chat(USER, "Mallory")
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key=API_KEY) as fake:
        yield fake


def write_config(tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAIServer) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database: {{url: "sqlite+aiosqlite:///{tmp_path / "run.db"}"}}
backends:
  fake:
    type: chat_completions
    base_url: "{llm.base_url}"
    api_key: "{API_KEY}"
    model: m
    max_retries: 1
bots:
  - name: helper
    platform: telegram
    token: "${{TG_TOKEN}}"
    api_base_url: "{tg.api_base_url}"
metrics: {{listen: 127.0.0.1, port: 0}}
"""
    )
    return path


async def listening_url(process: asyncio.subprocess.Process) -> str:
    """The base URL ``parley run`` logged (port 0: the port it was given)."""
    assert process.stderr is not None
    seen: list[str] = []
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
        assert line, f"parley run ended without logging its metrics listener: {seen}"
        seen.append(line)
        found = LISTENING.search(line)
        if found:
            assert line.startswith(tuple("0123456789")) and " INFO bots.monitor: " in line
            return found.group(1)


class Scraper:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.text = ""

    async def samples(self) -> list[Sample]:
        async with self.session.get(f"{self.url}/metrics") as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            self.text = await response.text()
        return [s for f in text_string_to_metric_families(self.text) for s in f.samples]

    async def value(self, name: str, **labels: str) -> float:
        return value(await self.samples(), name, **labels)

    async def until(self, check: Callable[[list[Sample]], bool], timeout: float = 20) -> None:
        """The turn's numbers move just after its answer shows: scrape until they did."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check(await self.samples()):
            assert loop.time() < deadline, self.text
            await asyncio.sleep(0.05)

    async def health(self) -> tuple[int, Any]:
        async with self.session.get(f"{self.url}/healthz") as response:
            assert response.content_type == "application/json"
            return response.status, await response.json()


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def turns(samples: list[Sample], outcome: str) -> float:
    return value(samples, "parley_turns_total", bot="helper", platform="telegram", outcome=outcome)


async def test_metrics_follow_answers_failures_and_429s_and_health_says_up(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAIServer
) -> None:
    process = await start(write_config(tmp_path, tg, llm), tg)
    try:
        url = await listening_url(process)
        async with aiohttp.ClientSession() as session:
            scrape = Scraper(session, url)
            await check_run(scrape, tg, llm)
    finally:
        code, err = await stop(process)
    assert code == 0, err
    assert TOKEN not in err and API_KEY not in err


async def check_run(scrape: Scraper, tg: FakeTelegram, llm: FakeOpenAIServer) -> None:
    before = await scrape.samples()
    assert turns(before, "answered") == 0 and turns(before, "backend_error") == 0
    assert value(before, "parley_backend_streams_in_flight", backend="fake") == 0
    assert value(before, "process_resident_memory_bytes") > 0
    status, body = await scrape.health()
    up = {"status": "ok", "database": "ok", "bots": {"helper": "connected"}}
    assert (status, body) == (200, up)

    # An answer.
    tg.send_text(CHAT, USER, "hello, my secret passphrase is swordfish")
    await tg.wait_bot_messages(CHAT, 1, timeout=20)
    await scrape.until(lambda s: turns(s, "answered") == 1)
    after = await scrape.samples()
    latency = {"bot": "helper", "platform": "telegram"}
    assert value(after, "parley_answer_seconds_count", **latency) == 1
    assert value(after, "parley_first_text_seconds_count", **latency) == 1
    assert value(after, "parley_backend_tokens_total", backend="fake", direction="in") > 0
    assert value(after, "parley_backend_tokens_total", backend="fake", direction="out") > 0
    assert turns(after, "backend_error") == 0

    # A backend failure: retried once (max_retries: 1), then the user is told.
    llm.script(Behaviour.http_error(503), Behaviour.http_error(503))
    tg.send_text(CHAT, USER, "and again")
    await tg.wait_bot_messages(CHAT, 2, timeout=20)
    await scrape.until(lambda s: turns(s, "backend_error") == 1)
    failed = await scrape.samples()
    assert turns(failed, "answered") == 1
    assert value(failed, "parley_backend_errors_total", backend="fake", kind="server") == 1
    assert value(failed, "parley_backend_retries_total", backend="fake", kind="server") == 1
    assert value(failed, "parley_answer_seconds_count", **latency) == 1  # answers only

    # Telegram says 429 to the answer: waited out, then sent.
    tg.fail_next("sendMessage", 429, retry_after=1, chat_id=CHAT)
    tg.send_text(CHAT, USER, "one more")
    await tg.wait_bot_messages(CHAT, 3, timeout=20)
    await scrape.until(lambda s: turns(s, "answered") == 2)
    limited = await scrape.samples()
    where = {"bot": "helper", "platform": "telegram", "scope": "chat"}
    assert value(limited, "parley_platform_rate_limits_total", **where) == 1
    assert value(limited, "parley_platform_rate_limit_wait_seconds_total", **where) == 1
    assert value(limited, "parley_backend_streams_in_flight", backend="fake") == 0

    assert_nothing_private(scrape.text, limited)


def assert_nothing_private(text: str, samples: list[Sample]) -> None:
    """No secret, no id, no text; every label value from the config or a fixed set."""
    for private in (TOKEN, TOKEN.split(":")[0], API_KEY, str(USER), "swordfish", "Mallory"):
        assert private not in text
    allowed = {
        "bot": {"helper"},
        "platform": {"telegram"},
        "backend": {"fake"},
        "outcome": set(OUTCOMES),
        "kind": set(ERROR_KINDS),
        "scope": set(RATE_LIMIT_SCOPES),
        "direction": {"in", "out"},
    }
    ours = [s for s in samples if s.name.startswith("parley_")]
    assert ours
    for sample in ours:
        for label, label_value in sample.labels.items():
            if label == "le":
                float(label_value)  # a histogram bucket bound
                continue
            assert label_value in allowed[label], (sample.name, label, label_value)
