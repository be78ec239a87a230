"""Config sections become working backends; the chat service drives each alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.settings import ConsoleBotConfig
from bots.app import App
from bots.backends import build_backend
from bots.config import parse_config
from core import ChatGPTAPI, ChatGPTTimeoutError
from core.chat_service import Outcome
from core.incoming import IncomingMessage
from tests.fakes.chatgpt_web import CLEARANCE_TOKEN, SESSION_TOKEN, Answer, FakeChatGPTWeb


class Sink:
    def __init__(self) -> None:
        self.text: str | None = None
        self.errors: list[str] = []

    async def update(self, text: str) -> None:
        pass

    async def complete(self, text: str) -> list[str]:
        self.text = text
        return []

    async def error(self, text: str, *, detail: str | None = None) -> None:
        self.errors.append(text)


@pytest.fixture
async def fake() -> AsyncIterator[FakeChatGPTWeb]:
    async with FakeChatGPTWeb() as server:
        yield server


def web_config(fake: FakeChatGPTWeb, tmp_path: Path, **extra: object) -> dict[str, object]:
    section = {
        "type": "chatgpt_web",
        "session_token": "${SESSION}",
        "clearance_token": "${CLEARANCE}",
        "api_base_url": fake.api_base_url,
        "backend_api_base_url": fake.backend_api_base_url,
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0",
        "headers": {"x-extra": "1"},
        "model": "gpt-4o",
        "access_token_ttl": 60,
        "markdown": False,
        "max_retries": 0,
        **extra,
    }
    return {
        "database": {"url": f"sqlite+aiosqlite:///{tmp_path / 'web.db'}"},
        "default_backend": "web",
        "backends": {"web": section},
    }


async def test_every_chatgpt_web_key_reaches_the_client(
    fake: FakeChatGPTWeb, tmp_path: Path
) -> None:
    config = parse_config(
        web_config(fake, tmp_path), env={"SESSION": SESSION_TOKEN, "CLEARANCE": CLEARANCE_TOKEN}
    )
    backend = build_backend(config.backends["web"], history=None)
    assert isinstance(backend, ChatGPTAPI)
    try:
        assert backend.session_token == SESSION_TOKEN
        assert backend.clearance_token == CLEARANCE_TOKEN
        assert backend.user_agent == "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0"
        fake.answers.append(Answer(chunks=["**bold**", " text"]))
        answer = await backend.send_message("hi")
        assert answer.text == "bold text"  # markdown: false
        request = fake.requests_to("/backend-api/conversation")[-1]
        assert request.json["model"] == "gpt-4o"
        assert request.headers["x-extra"] == "1"
        assert request.headers["User-Agent"].endswith("TestBrowser/1.0")
    finally:
        await backend.aclose()


async def test_chat_service_keeps_the_servers_ids_in_the_scope_head(
    fake: FakeChatGPTWeb, tmp_path: Path
) -> None:
    config = parse_config(
        web_config(fake, tmp_path), env={"SESSION": SESSION_TOKEN, "CLEARANCE": CLEARANCE_TOKEN}
    )
    bot = ConsoleBotConfig(name="web-bot", platform="console")
    msg = IncomingMessage(
        platform="console", bot="web-bot", chat_id="t", user_id="u", text="one", is_direct=True
    )
    first_answer = Answer(chunks=["first"], conversation_id="conv-from-server")
    fake.answers.extend([first_answer, Answer(chunks=["second"])])
    async with App(config) as app:
        service = app.service(bot)
        sink = Sink()
        assert await service.handle(msg, sink) is Outcome.ANSWERED
        assert sink.text == "first"
        head = await app.store.get_head("web-bot", "console:chat:t")
        assert head is not None
        assert head.conversation_id == "conv-from-server"
        assert head.parent_message_id == first_answer.message_id
        await service.handle(msg, Sink())
    second = fake.requests_to("/backend-api/conversation")[-1].json
    assert second["conversation_id"] == "conv-from-server"
    assert second["parent_message_id"] == first_answer.message_id


async def test_chatgpt_web_failure_reaches_the_user_in_plain_words(
    fake: FakeChatGPTWeb, tmp_path: Path
) -> None:
    config = parse_config(
        web_config(fake, tmp_path), env={"SESSION": SESSION_TOKEN, "CLEARANCE": CLEARANCE_TOKEN}
    )
    fake.answers.append(
        Answer(status=429, body={"detail": "slow down"}, headers={"Retry-After": "30"})
    )
    msg = IncomingMessage(
        platform="console", bot="b", chat_id="t", user_id="u", text="one", is_direct=True
    )
    async with App(config) as app:
        service = app.service(ConsoleBotConfig(name="b", platform="console"))
        sink = Sink()
        assert await service.handle(msg, sink) is Outcome.FAILED
        assert sink.errors == ["The AI backend is busy. Please try again in 30 seconds."]
        assert await app.store.get_head("b", "console:chat:t") is None


async def test_configured_timeout_bounds_a_stalled_answer(
    fake: FakeChatGPTWeb, tmp_path: Path
) -> None:
    config = parse_config(
        web_config(fake, tmp_path, timeout=0.3),
        env={"SESSION": SESSION_TOKEN, "CLEARANCE": CLEARANCE_TOKEN},
    )
    backend = build_backend(config.backends["web"], history=None)
    fake.answers.append(Answer(chunks=["a", "b"], stall_after=1))
    try:
        with pytest.raises(ChatGPTTimeoutError) as info:
            await asyncio.wait_for(backend.send_message("hi"), 10)
        assert info.value.partial_text == "a"
    finally:
        await backend.aclose()
