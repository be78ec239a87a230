"""The metrics as the chat service, the backend's retry loop and the store drive them:
the real chat_completions backend against the fake OpenAI server, a real store."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from core.backends.chat_completions import ChatCompletionsBackend
from core.chat_service import ChatService, Outcome
from core.errors import (
    ChatGPTAuthError,
    ChatGPTConnectionError,
    ChatGPTError,
    ChatGPTRateLimitError,
    ChatGPTStreamError,
    ChatGPTTimeoutError,
)
from core.incoming import BotPolicy
from core.metrics import ERROR_KINDS, NO_METRICS, OUTCOMES, Metrics, error_kind, outcome_label
from core.store.sql import SQLStore
from tests.core.test_chat_service import RecordingSink, msg
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

BOT, PLATFORM, BACKEND = "bot", "test", "fake"


def service_with(
    metrics: Metrics, server: FakeOpenAIServer, store: SQLStore, *, max_retries: int = 0
) -> ChatService:
    llm = ChatCompletionsBackend(
        base_url=server.base_url,
        api_key="sk-test",
        model="test-model",
        max_retries=max_retries,
        timeout=10,
        history=store,
        save_history=False,  # the chat service commits the turns
    )
    llm.retry_base_delay = 0.01
    return ChatService(
        policy=BotPolicy(name=BOT, backend=BACKEND),
        backend=llm,
        store=store,
        metrics=metrics.for_bot(BOT, PLATFORM, BACKEND),
    )


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    assert found is not None, (name, labels)
    return found


def turns(metrics: Metrics, outcome: str) -> float:
    return value(metrics, "parley_turns_total", bot=BOT, platform=PLATFORM, outcome=outcome)


def backend(metrics: Metrics, name: str, **labels: str) -> float:
    return value(metrics, name, backend=BACKEND, **labels)


def latency_count(metrics: Metrics, name: str) -> float:
    return value(metrics, f"{name}_count", bot=BOT, platform=PLATFORM)


async def test_an_answer_and_a_failure_move_turns_latency_and_tokens(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    metrics = Metrics()
    service = service_with(metrics, server, store)
    assert all(turns(metrics, outcome) == 0 for outcome in OUTCOMES)  # there from the start

    assert await service.handle(msg("hello there"), RecordingSink()) is Outcome.ANSWERED
    assert turns(metrics, "answered") == 1
    assert latency_count(metrics, "parley_answer_seconds") == 1
    assert latency_count(metrics, "parley_first_text_seconds") == 1
    took = value(metrics, "parley_answer_seconds_sum", bot=BOT, platform=PLATFORM)
    assert 0 < took < 10
    sent = backend(metrics, "parley_backend_tokens_total", direction="in")
    received = backend(metrics, "parley_backend_tokens_total", direction="out")
    assert sent > 0 and received > 0

    server.script(Behaviour.http_error(500, "the model fell over"))
    sink = RecordingSink()
    assert await service.handle(msg("again"), sink) is Outcome.FAILED
    assert sink.errors
    assert turns(metrics, "answered") == 1
    assert turns(metrics, "backend_error") == 1
    assert backend(metrics, "parley_backend_errors_total", kind="server") == 1
    # A failure is no answer: no latency observed, no tokens counted.
    assert latency_count(metrics, "parley_answer_seconds") == 1
    assert backend(metrics, "parley_backend_tokens_total", direction="in") == sent
    assert backend(metrics, "parley_backend_streams_in_flight") == 0
    await service.backend.aclose()


async def test_retries_are_counted_by_kind_and_the_last_failure_as_an_error(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    metrics = Metrics()
    service = service_with(metrics, server, store, max_retries=1)
    server.script(Behaviour.http_error(503))  # then the default: an answer
    assert await service.handle(msg("one"), RecordingSink()) is Outcome.ANSWERED
    assert backend(metrics, "parley_backend_retries_total", kind="server") == 1
    assert backend(metrics, "parley_backend_errors_total", kind="server") == 0

    server.script(*[Behaviour.http_error(429, retry_after=0.01)] * 2)
    assert await service.handle(msg("two"), RecordingSink()) is Outcome.FAILED
    assert backend(metrics, "parley_backend_retries_total", kind="rate_limited") == 1
    assert backend(metrics, "parley_backend_errors_total", kind="rate_limited") == 1
    assert turns(metrics, "answered") == 1 and turns(metrics, "backend_error") == 1
    await service.backend.aclose()


async def test_streams_in_flight_while_an_answer_streams(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    metrics = Metrics()
    service = service_with(metrics, server, store)
    server.script(Behaviour(reply="a slow answer in many words " * 4, chunk_delay=0.05))
    sink = RecordingSink()
    turn = asyncio.create_task(service.handle(msg("take your time"), sink))
    await asyncio.wait_for(sink.first_update.wait(), 10)
    assert backend(metrics, "parley_backend_streams_in_flight") == 1
    assert await turn is Outcome.ANSWERED
    assert backend(metrics, "parley_backend_streams_in_flight") == 0
    await service.backend.aclose()


class RefusingSink(RecordingSink):
    async def complete(self, text: str) -> list[str]:
        raise RuntimeError("the platform refused the message")


async def test_an_answer_the_platform_refused_counts_as_not_delivered(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    metrics = Metrics()
    service = service_with(metrics, server, store)
    assert await service.handle(msg("hi"), RefusingSink()) is Outcome.FAILED
    assert turns(metrics, "not_delivered") == 1
    assert turns(metrics, "failed") == 0 and turns(metrics, "answered") == 0
    await service.backend.aclose()


async def test_cancelled_turns_are_counted_and_leave_no_stream_in_flight(
    server: FakeOpenAIServer, store: SQLStore
) -> None:
    metrics = Metrics()
    service = service_with(metrics, server, store)
    server.script(Behaviour(reply="word " * 100, chunk_delay=0.05))
    sink = RecordingSink()
    turn = asyncio.create_task(service.handle(msg("long one"), sink))
    await asyncio.wait_for(sink.first_update.wait(), 10)
    turn.cancel()
    with pytest.raises(asyncio.CancelledError):
        await turn
    assert turns(metrics, "cancelled") == 1
    assert backend(metrics, "parley_backend_streams_in_flight") == 0
    await service.backend.aclose()


def test_two_apps_in_one_process_keep_their_own_numbers() -> None:
    first, second = Metrics(), Metrics()  # the default registry would refuse the second
    first.for_bot(BOT, PLATFORM, BACKEND).turn("answered", 1.0, 0.5)
    assert value(first, "parley_turns_total", bot=BOT, platform=PLATFORM, outcome="answered") == 1
    assert second.registry.get_sample_value(
        "parley_turns_total", {"bot": BOT, "platform": PLATFORM, "outcome": "answered"}
    ) in (None, 0)


def test_metrics_off_records_nothing_and_does_not_get_in_the_way() -> None:
    NO_METRICS.turn("answered", 1.0, None)
    NO_METRICS.tokens(1, 2)
    NO_METRICS.retried(None)
    NO_METRICS.platform_rate_limited(1.0, "chat")
    with pytest.raises(ChatGPTError), NO_METRICS.streaming():
        raise ChatGPTError("boom")


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ChatGPTAuthError("no"), "auth"),
        (ChatGPTRateLimitError("slow down"), "rate_limited"),
        (ChatGPTTimeoutError("late"), "timeout"),
        (ChatGPTConnectionError("away"), "connection"),
        (ChatGPTStreamError("cut"), "stream"),
        (ChatGPTError("5xx", status_code=502), "server"),
        (ChatGPTError("4xx", status_code=400), "client"),
        (ChatGPTError("429", status_code=429), "rate_limited"),
        (ChatGPTError("401", status_code=401), "auth"),
        (ChatGPTError("?"), "other"),
        (ValueError("not a backend error"), "other"),
        (None, "other"),
    ],
)
def test_error_kinds_come_from_a_fixed_set(error: Any, kind: str) -> None:
    assert error_kind(error) == kind
    assert kind in ERROR_KINDS


@pytest.mark.parametrize(
    ("words", "label"),
    [
        ("answered", "answered"),
        ("failed: HTTP 500 from x after 1 try", "backend_error"),
        ("not delivered", "not_delivered"),
        ("not saved", "not_saved"),
        ("the reply's destination went away", "target_gone"),
        ("cancelled", "cancelled"),
        ("failed", "failed"),
        ("something new one day", "failed"),
    ],
)
def test_turn_outcomes_come_from_a_fixed_set(words: str, label: str) -> None:
    assert outcome_label(words) == label
    assert label in OUTCOMES
