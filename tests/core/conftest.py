"""The chat service's fixtures: the fake OpenAI server and a real store at head."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from core.store.sql import SQLStore
from tests.core.test_chat_service import counting_reply
from tests.fakes.openai_server import FakeOpenAIServer


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key="sk-test", reply=counting_reply) as fake:
        yield fake


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SQLStore]:
    sql_store = SQLStore(store_url)
    yield sql_store
    await sql_store.aclose()
