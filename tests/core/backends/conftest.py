"""Fixtures for the backends: fake servers on loopback and clients pointed at them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from core import ChatGPTAPI
from tests.fakes.chatgpt_web import CLEARANCE_TOKEN, SESSION_TOKEN, FakeChatGPTWeb

MakeAPI = Callable[..., ChatGPTAPI]


@pytest.fixture
async def fake() -> AsyncIterator[FakeChatGPTWeb]:
    async with FakeChatGPTWeb() as server:
        yield server


@pytest.fixture
async def make_api(fake: FakeChatGPTWeb) -> AsyncIterator[MakeAPI]:
    """Builds ChatGPTAPI clients of the fake (keyword arguments override); closes them."""
    made: list[ChatGPTAPI] = []

    def make(**kwargs: Any) -> ChatGPTAPI:
        options: dict[str, Any] = {
            "session_token": SESSION_TOKEN,
            "clearance_token": CLEARANCE_TOKEN,
            "api_base_url": fake.api_base_url,
            "backend_api_base_url": fake.backend_api_base_url,
        }
        options.update(kwargs)
        api = ChatGPTAPI(**options)
        made.append(api)
        return api

    yield make
    for api in made:
        await api.aclose()


@pytest.fixture
def api(make_api: MakeAPI) -> ChatGPTAPI:
    return make_api()
