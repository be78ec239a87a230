"""/healthz and /metrics of the in-process app (bots/monitor.py): a Telegram bot against
the fake Bot API, on a PostgreSQL server of the test's own that is stopped and started
under it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from bots.app import App
from bots.config import parse_config
from bots.errors import StartupError
from bots.monitor import Monitor, monitoring
from bots.runner import build_adapter
from core.metrics import NO_METRICS, Metrics
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.telegram_api import FakeTelegram
from tests.pg import INSTALL_HINT, PostgresCluster, find_pg_bin

TOKEN = "123456:monitor-secret-token"


@pytest.fixture
def own_postgres() -> Iterator[PostgresCluster]:
    """A cluster for this test alone: it is stopped and started under the app."""
    bin_dir = find_pg_bin()
    if bin_dir is None:
        if os.environ.get("PARLEY_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PARLEY_REQUIRE_POSTGRES=1 but initdb is missing. {INSTALL_HINT}")
        pytest.skip(INSTALL_HINT)
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def pg_ctl(cluster: PostgresCluster, action: str) -> None:
    if action == "stop":
        cluster._run("pg_ctl", "-D", str(cluster.data), "-m", "fast", "-w", "stop")
    else:
        cluster._run("pg_ctl", "-D", str(cluster.data), "-l", str(cluster.log), "-w", "start")


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, username="parley_bot") as fake:
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:
        yield fake


def config_for(database: str, tg: FakeTelegram, llm: FakeOpenAIServer, **metrics: Any) -> Any:
    return parse_config(
        {
            "database": {"url": database},
            "backends": {
                "fake": {"type": "chat_completions", "base_url": llm.base_url, "model": "m"}
            },
            "bots": [
                {
                    "name": "helper",
                    "platform": "telegram",
                    "token": TOKEN,
                    "api_base_url": tg.api_base_url,
                }
            ],
            "metrics": {"listen": "127.0.0.1", "port": 0, **metrics},
        }
    )


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def health_until(
    session: aiohttp.ClientSession, url: str, status: int, timeout: float = 20
) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got, body = await get(session, f"{url}/healthz")
        if got == status:
            return body
        assert loop.time() < deadline, (got, body)
        await asyncio.sleep(0.1)


async def test_healthz_follows_the_database_and_the_bot(
    own_postgres: PostgresCluster, tg: FakeTelegram, llm: FakeOpenAIServer
) -> None:
    config = config_for(own_postgres.url(), tg, llm)
    async with App(config) as app, aiohttp.ClientSession() as session:
        bot = config.bots[0]
        bots = {"helper": build_adapter(app, bot)}
        adapter = bots["helper"]
        async with monitoring(config.metrics, app.metrics, app.store.engine, bots) as m:
            assert m is not None
            url = m.url
            # Not polling yet: the bot is down, the database is not.
            status, body = await get(session, f"{url}/healthz")
            assert (status, body) == (
                503,
                {
                    "status": "down",
                    "down": ["bot helper"],
                    "database": "ok",
                    "bots": {"helper": "disconnected"},
                },
            )
            stop = asyncio.Event()
            run = asyncio.create_task(adapter.run(stop))
            try:
                body = await health_until(session, url, 200)
                assert body == {"status": "ok", "database": "ok", "bots": {"helper": "connected"}}

                await asyncio.to_thread(pg_ctl, own_postgres, "stop")
                status, body = await get(session, f"{url}/healthz")
                assert status == 503
                assert body["down"] == ["database"] and body["database"] == "unreachable"
                assert body["bots"] == {"helper": "connected"}
                status, text = await get(session, f"{url}/metrics")  # still scrapeable
                assert status == 200 and "parley_turns_total" in text

                await asyncio.to_thread(pg_ctl, own_postgres, "start")
                body = await health_until(session, url, 200)
                assert body["database"] == "ok"
            finally:
                stop.set()
                await asyncio.wait_for(run, 15)
            # Stopped: the bot no longer takes updates.
            status, body = await get(session, f"{url}/healthz")
            assert status == 503 and body["down"] == ["bot helper"]


async def test_a_taken_port_is_one_startup_error(
    tmp_path: Any, tg: FakeTelegram, llm: FakeOpenAIServer
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = config_for(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", tg, llm, port=port)
        async with App(config) as app:
            assert config.metrics is not None and app.metrics is not None
            monitor = Monitor(config.metrics, app.metrics, app.store.engine, {})
            with pytest.raises(StartupError, match=f"metrics: cannot listen on 127.0.0.1:{port} "):
                await monitor.start()


async def test_without_a_metrics_section_nothing_listens_or_counts(
    tmp_path: Any, tg: FakeTelegram, llm: FakeOpenAIServer
) -> None:
    config = config_for(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", tg, llm)
    config = config.model_copy(update={"metrics": None})
    async with App(config) as app:
        assert app.metrics is None
        assert app.service(config.bots[0]).metrics is NO_METRICS
        async with monitoring(config.metrics, app.metrics, app.store.engine, {}) as monitor:
            assert monitor is None


async def test_a_sqlite_app_is_healthy_without_bots(
    tmp_path: Any, tg: FakeTelegram, llm: FakeOpenAIServer
) -> None:
    config = config_for(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}", tg, llm)
    async with App(config) as app, aiohttp.ClientSession() as session:
        assert isinstance(app.metrics, Metrics)
        async with monitoring(config.metrics, app.metrics, app.store.engine, {}) as monitor:
            assert monitor is not None
            status, body = await get(session, f"{monitor.url}/healthz")
            assert (status, body) == (200, {"status": "ok", "database": "ok", "bots": {}})
            status, _ = await get(session, f"{monitor.url}/nothing-here")
            assert status == 404
        with contextlib.suppress(aiohttp.ClientError):  # closed: nothing answers
            await get(session, f"{monitor.url}/healthz")
            pytest.fail("the listener is still up after monitoring() ended")
