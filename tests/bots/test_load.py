"""Load: 1,000 messages over 200 chats through two ``parley run`` worker processes on one
PostgreSQL, Telegram webhooks behind a loopback round-robin proxy, against the fake Bot
API and the fake LLM. Every message is answered exactly once and every chat's store
chain is one unbroken line; turns/s and p50/p95 latency are printed (``pytest -s``)."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import text

from core.store.sql import SQLStore
from tests.bots.test_cli import spawn
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "654321:load-secret"
SECRET = "load-hook-secret"
CHATS = 200
PER_CHAT = 5
USER = 500
GROUP_BASE = -100_900_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RoundRobinProxy:
    """The operator's reverse proxy: each POST goes to the next worker, headers kept.
    Written here because a test needs nothing more than this (no nginx on CI)."""

    def __init__(self, ports: list[int]) -> None:
        self._targets = itertools.cycle(ports)
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self.port = _free_port()
        self.answered: dict[int, int] = dict.fromkeys(ports, 0)  # 2xx per worker port

    async def __aenter__(self) -> RoundRobinProxy:
        self._client = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None and self._client is not None
        await self._runner.cleanup()
        await self._client.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._client is not None
        port = next(self._targets)
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("content-type", "x-telegram-bot-api-secret-token")
        }
        try:
            async with self._client.post(
                f"http://127.0.0.1:{port}{request.path}", data=await request.read(), headers=headers
            ) as response:
                if 200 <= response.status < 300:
                    self.answered[port] += 1
                return web.Response(status=response.status, body=await response.read())
        except aiohttp.ClientError:
            return web.Response(status=502)  # worker not up yet: Telegram retries


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(token=TOKEN, username="parley_bot", webhook_retry_delay=0.1) as fake:
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:
        yield fake


def write_config(
    path: Path, db: str, llm: FakeOpenAIServer, tg: FakeTelegram, proxy: int, port: int
) -> Path:
    path.write_text(
        f"""
database: {{url: "{db}"}}
backends:
  fake: {{type: chat_completions, base_url: "{llm.base_url}", model: m, max_retries: 0}}
bots:
  - name: helper
    platform: telegram
    token: "${{TG_TOKEN}}"
    api_base_url: "{tg.api_base_url}"
    mode: webhook
    webhook:
      url: "http://127.0.0.1:{proxy}/hook"
      listen: 127.0.0.1
      port: {port}
      secret_token: "{SECRET}"
"""
    )
    return path


def chat_ids() -> list[int]:
    """Half private chats, half groups (answered on an @mention)."""
    return [USER + i for i in range(CHATS // 2)] + [GROUP_BASE - i for i in range(CHATS // 2)]


async def test_1000_messages_over_200_chats_through_two_workers(
    tmp_path: Path, tg: FakeTelegram, llm: FakeOpenAIServer, fresh_postgres_url: str
) -> None:
    chats = chat_ids()
    for chat in chats:
        if chat > 0:
            tg.private_chat(chat, f"User{chat}")
        else:
            tg.group(chat, f"Group{chat}", supergroup=True)
            tg.user(USER, "Alice")
    ports = [_free_port(), _free_port()]
    async with RoundRobinProxy(ports) as proxy:
        workers = []
        for n, port in enumerate(ports):
            config = write_config(
                tmp_path / f"w{n}.yaml", fresh_postgres_url, llm, tg, proxy.port, port
            )
            workers.append(await spawn("run", "--config", str(config), env={"TG_TOKEN": TOKEN}))
            if n == 0:  # the first one migrates; the second starts on a database at head
                await tg.wait_for(lambda: tg.webhook.url, timeout=30)
        await tg.wait_for(lambda: len(tg.calls_to("setWebhook")) >= 2, timeout=30)
        await asyncio.sleep(1.0)  # the second worker's listener is bound after setWebhook

        sent: dict[tuple[int, int], tuple[str, float]] = {}  # (chat, message_id) → question
        started = time.monotonic()
        for i in range(PER_CHAT):
            for chat in chats:
                question = f"q{chat}-{i}"
                body = question if chat > 0 else f"@parley_bot {question}"
                msg = tg.send_text(chat, chat if chat > 0 else USER, body)
                sent[(chat, msg["message_id"])] = (question, time.monotonic())

        expected = {
            chat: sorted(f"Echo: {q}" for (c, _), (q, _) in sent.items() if c == chat)
            for chat in chats
        }

        def answered() -> int:
            return (
                sum(
                    sorted(str(m.text) for m in tg.bot_messages(chat)) == expected[chat]
                    for chat in chats
                )
                * PER_CHAT
            )

        try:
            deadline = time.monotonic() + 80
            while answered() < len(sent):
                assert time.monotonic() < deadline, (
                    f"{answered() // PER_CHAT} of {CHATS} chats answered; "
                    f"{len(tg.pending_updates)} updates not delivered"
                )
                await asyncio.sleep(0.2)
            elapsed = time.monotonic() - started
        finally:
            for process in workers:
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
            errors = [(await asyncio.wait_for(p.communicate(), 30))[1].decode() for p in workers]
        for process, err in zip(workers, errors, strict=True):
            assert process.returncode == 0, err[-3000:]
            assert "Traceback" not in err and TOKEN not in err, err[-3000:]

    # Both workers took their share of the webhooks (round robin: about half each).
    assert min(proxy.answered.values()) >= len(sent) // 4, proxy.answered
    # Exactly one answer per message, nothing else from the bot.
    latencies = []
    final_at: dict[tuple[int, str], float] = {}
    for call in tg.calls:
        if call.method in ("sendMessage", "editMessageText") and 200 <= call.status < 300:
            final_at[(int(call.params["chat_id"]), str(call.params.get("text")))] = call.time
    asked = {(chat, q): (mid, at) for (chat, mid), (q, at) in sent.items()}
    for chat in chats:
        bot = tg.bot_messages(chat)
        assert sorted(str(m.text) for m in bot) == expected[chat]  # each once, nothing else
        for m in bot:
            mid, at = asked[(chat, str(m.text).removeprefix("Echo: "))]
            # Private chats are answered plainly; in groups the answer replies to the ask.
            assert m.reply_to == (None if chat > 0 else mid)
            latencies.append(final_at[(chat, str(m.text))] - at)

    # Each chat: one unbroken chain of PER_CHAT turns (the walk follows parent ids).
    store = SQLStore(fresh_postgres_url)
    try:
        async with store.engine.connect() as conn:
            heads = (
                await conn.execute(text("SELECT scope_key, parent_message_id FROM scope_heads"))
            ).all()
            [[turns]] = (
                await conn.execute(text("SELECT count(*) FROM messages WHERE role = 'user'"))
            ).all()
        assert len(heads) == CHATS
        assert turns == CHATS * PER_CHAT
        seen: set[str] = set()
        for _, head in heads:
            chain = await store.history(head, 10**9)
            assert [m.role for m in chain] == ["user", "assistant"] * PER_CHAT
            for parent, child in itertools.pairwise(chain):
                assert child.parent_id == parent.id
            for user, answer in zip(chain[::2], chain[1::2], strict=True):
                assert answer.text == f"Echo: {user.text}"
            questions = {m.text for m in chain if m.role == "user"}
            assert len(questions) == PER_CHAT
            assert not questions & seen  # one chat's chain holds only its own messages
            seen |= questions
    finally:
        await store.aclose()

    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(0.95 * (len(latencies) - 1))]
    print(
        f"\nload: {len(sent)} turns over {CHATS} chats, 2 workers, PostgreSQL: "
        f"{elapsed:.1f} s, {len(sent) / elapsed:.1f} turns/s, "
        f"latency p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"
    )
