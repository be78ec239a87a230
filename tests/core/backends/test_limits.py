"""Time limits and caps against slow, endless and hostile servers, for both HTTP
backends, over real loopback HTTP against the fakes in tests/fakes/."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from core import tokens
from core.backends import answer
from core.backends.chat_completions import ChatCompletionsBackend
from core.errors import ChatGPTError, ChatGPTStreamError, ChatGPTTimeoutError
from core.markdown import to_plain_text
from core.types import ChatResponse
from tests.core.backends.conftest import MakeAPI
from tests.fakes.chatgpt_web import Answer, FakeChatGPTWeb
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

KEY = "sk-limits-SECRET-123456"


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key=KEY) as server:
        yield server


@pytest.fixture
async def make_backend(
    server: FakeOpenAIServer,
) -> AsyncIterator[Callable[..., ChatCompletionsBackend]]:
    made: list[ChatCompletionsBackend] = []

    def make(**overrides: Any) -> ChatCompletionsBackend:
        options: dict[str, Any] = {
            "base_url": server.base_url,
            "api_key": KEY,
            "model": "gpt-4o-mini",
            "max_model_tokens": 100_000,
            "max_response_tokens": 100,
        }
        options.update(overrides)
        backend = ChatCompletionsBackend(**options)
        backend.retry_base_delay = 0.01
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


MakeBackend = Callable[..., ChatCompletionsBackend]
WORDS = " ".join(f"w{i}" for i in range(10))  # ten deltas


async def endless(piece: bytes, every: float) -> AsyncIterator[bytes]:
    while True:
        yield piece
        await asyncio.sleep(every)


# -- timeout: silence, not length ------------------------------------------------------


async def test_a_flowing_answer_outlives_the_timeout(
    server: FakeOpenAIServer, make_backend: MakeBackend
) -> None:
    server.script(Behaviour(reply=WORDS, chunk_delay=0.3))  # ~3 s in all
    backend = make_backend(timeout=1)
    started = time.monotonic()
    answer = await backend.send_message("x")
    assert answer.text == WORDS
    assert time.monotonic() - started > 2.5


async def test_chatgpt_web_flowing_answer_outlives_the_timeout(
    fake: FakeChatGPTWeb, make_api: MakeAPI
) -> None:
    chunks = [f"w{i} " for i in range(10)]
    fake.answers.append(Answer(chunks=chunks, delay=0.3))
    api = make_api(timeout=1)
    started = time.monotonic()
    assert (await api.send_message("hi")).text == "".join(chunks)
    assert time.monotonic() - started > 2.5


async def test_a_stall_longer_than_the_timeout_fails(
    server: FakeOpenAIServer, make_backend: MakeBackend
) -> None:
    server.script(Behaviour(reply=WORDS, chunk_delay=0.3, pause_after=3, pause=5))
    backend = make_backend(timeout=1, max_retries=3)
    started = time.monotonic()
    with pytest.raises(ChatGPTTimeoutError) as caught:
        await backend.send_message("x")
    assert time.monotonic() - started < 3.5  # 0.9 s of answer + 1 s of silence
    assert caught.value.partial_text == "w0 w1 w2 "
    message = str(caught.value)
    assert "timeout=1 s" in message and f"127.0.0.1:{server.port}/v1/chat/completions" in message
    assert len(server.chat_requests) == 1


async def test_chatgpt_web_stall_longer_than_the_timeout_fails(
    fake: FakeChatGPTWeb, make_api: MakeAPI
) -> None:
    fake.answers.append(Answer(chunks=["a", "b", "c", "d"], delay=0.3, stall_after=2))
    api = make_api(timeout=1)
    started = time.monotonic()
    with pytest.raises(ChatGPTTimeoutError, match="timeout=1 s") as caught:
        await api.send_message("hi")
    assert time.monotonic() - started < 3.5
    assert caught.value.partial_text == "ab"
    await asyncio.wait_for(fake.disconnected.wait(), 2)


# -- max_answer_seconds: the total cap -------------------------------------------------


async def test_max_answer_seconds_stops_an_endless_answer(
    server: FakeOpenAIServer, make_backend: MakeBackend
) -> None:
    server.script(Behaviour(reply="word " * 100_000, chunk_delay=0.02))
    backend = make_backend(timeout=1, max_answer_seconds=1.5)
    started = time.monotonic()
    with pytest.raises(ChatGPTTimeoutError, match=r"max_answer_seconds=1\.5") as caught:
        await backend.send_message("x")
    assert 1.4 < time.monotonic() - started < 3
    assert caught.value.partial_text.startswith("word word ")
    await asyncio.sleep(0.2)
    assert server.in_flight == 0  # the request was aborted


async def test_max_answer_seconds_stops_endless_keep_alives(
    server: FakeOpenAIServer, make_backend: MakeBackend
) -> None:
    server.script(Behaviour(raw_stream=lambda: endless(b": keep-alive\n\n", 0.1)))
    backend = make_backend(timeout=0.5, max_answer_seconds=1)
    started = time.monotonic()
    with pytest.raises(ChatGPTTimeoutError, match="max_answer_seconds=1"):
        await backend.send_message("x")
    assert time.monotonic() - started < 2.5


async def test_chatgpt_web_max_answer_seconds(fake: FakeChatGPTWeb, make_api: MakeAPI) -> None:
    fake.answers.append(Answer(chunks=["more "] * 100_000, delay=0.02, format="delta"))
    api = make_api(timeout=1, max_answer_seconds=1)
    started = time.monotonic()
    with pytest.raises(ChatGPTTimeoutError, match="max_answer_seconds=1") as caught:
        await api.send_message("hi")
    assert time.monotonic() - started < 2.5
    assert caught.value.partial_text.startswith("more more")
    await asyncio.wait_for(fake.disconnected.wait(), 2)


# -- what the network deadline does not include ----------------------------------------


async def test_loading_the_tokenizer_does_not_eat_the_timeout(
    server: FakeOpenAIServer, make_backend: MakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tokens.count_tokens
    slow = [True]

    def slow_first_load(text: str, encoding: str = tokens.DEFAULT_ENCODING) -> int:
        if slow and slow.pop():
            time.sleep(0.5)  # the first count loads the tokenizer: a cold disk cache
        return real(text, encoding)

    monkeypatch.setattr(tokens, "count_tokens", slow_first_load)
    monkeypatch.setattr(tokens, "cheap_to_count", lambda text, encoding: False)  # a thread
    server.script(Behaviour(delay=0.4))
    backend = make_backend(timeout=0.6)
    assert (await backend.send_message("x")).text == "Echo: x"
    assert not slow  # the slow load happened


async def test_waiting_for_a_free_slot_does_not_eat_the_timeout(
    server: FakeOpenAIServer, make_backend: MakeBackend
) -> None:
    server.default = Behaviour(reply=WORDS, chunk_delay=0.1)  # ~1 s per answer
    backend = make_backend(timeout=0.5, max_concurrency=1)
    answers = await asyncio.gather(backend.send_message("a"), backend.send_message("b"))
    assert [a.text for a in answers] == [WORDS, WORDS]
    first, second = server.chat_requests
    assert second.time - first.time > 0.9  # the second waited for the slot


# -- caps ------------------------------------------------------------------------------


async def fifty_megabytes_without_a_newline() -> AsyncIterator[bytes]:
    piece = b"data: " + b"x" * 65530
    for _ in range(800):
        yield piece


async def test_a_line_without_end_fails_the_turn_with_bounded_memory(
    server: FakeOpenAIServer, make_backend: MakeBackend
) -> None:
    server.script(Behaviour(raw_stream=fifty_megabytes_without_a_newline))
    backend = make_backend()
    tracemalloc.start()
    try:
        with pytest.raises(ChatGPTStreamError, match="line longer than 1 MiB") as caught:
            await backend.send_message("x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "is base_url right?" in str(caught.value)
    assert peak < 16 * 2**20  # both ends of the socket, in this one process
    await asyncio.sleep(0.2)
    assert server.bytes_streamed < 16 * 2**20  # the client hung up long before 50 MB
    assert len(server.chat_requests) == 1  # and did not ask again


async def test_chatgpt_web_line_without_end(fake: FakeChatGPTWeb, make_api: MakeAPI) -> None:
    fake.answers.append(Answer(raw_stream=fifty_megabytes_without_a_newline))
    api = make_api()
    with pytest.raises(ChatGPTStreamError, match="line longer than 1 MiB") as caught:
        await api.send_message("hi")
    assert "is backend_api_base_url right?" in str(caught.value)
    await asyncio.wait_for(fake.disconnected.wait(), 2)
    assert fake.bytes_streamed < 16 * 2**20


async def test_an_answer_over_its_cap_fails_the_turn(
    server: FakeOpenAIServer, make_backend: MakeBackend
) -> None:
    backend = make_backend(max_response_tokens=100)
    cap = backend.max_answer_chars
    assert cap == 65536  # the floor: 100 tokens x 64 characters is less
    server.script(Behaviour(reply="abcdefghi " * 10_000))  # 100 000 characters
    with pytest.raises(ChatGPTStreamError, match="65536 characters") as caught:
        await backend.send_message("x")
    assert 60_000 < len(caught.value.partial_text) <= cap
    assert make_backend(max_response_tokens=4000).max_answer_chars == 4000 * 64


async def test_chatgpt_web_answer_over_its_cap(fake: FakeChatGPTWeb, make_api: MakeAPI) -> None:
    api = make_api()
    api.max_answer_chars = 5000
    fake.answers.append(Answer(chunks=["0123456789"] * 1000, format="delta"))
    with pytest.raises(ChatGPTStreamError, match="5000 characters") as caught:
        await api.send_message("hi")
    assert len(caught.value.partial_text) <= 5000


# -- linear work on the answer path -------------------------------------------------


@pytest.fixture
def growth_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Partials only when the text grew by 1/GROWTH: none because time passed, so the
    work counted below does not depend on how fast this machine is."""
    monkeypatch.setattr(answer, "PARTIAL_INTERVAL", 3600.0)


def within_linear_bound(partials: list[ChatResponse], answer_length: int) -> None:
    """Each partial is a copy of the text so far (and maybe a rendering of it): all of
    them together must stay a constant times the answer, not grow with its square as
    one partial per tiny delta would."""
    copied = sum(len(p.text) for p in partials[:-1])
    bound = (answer.GROWTH + 2) * answer_length
    assert copied <= bound, f"{copied} characters copied for a {answer_length}-character answer"


@pytest.mark.usefixtures("growth_only")
async def test_tiny_deltas_cost_linear_work(
    server: FakeOpenAIServer, make_backend: MakeBackend
) -> None:
    size = 20_000
    server.script(Behaviour(reply="x" * size))
    server.chunker = list  # one character per event
    backend = make_backend(max_response_tokens=1000)
    partials = [p async for p in backend.stream_message("x")]
    assert partials[-1].text == "x" * size
    assert len(partials) > 10
    within_linear_bound(partials, size)


@pytest.mark.usefixtures("growth_only")
@pytest.mark.parametrize("markdown", [True, False])
async def test_chatgpt_web_tiny_deltas_cost_linear_work(
    fake: FakeChatGPTWeb, make_api: MakeAPI, markdown: bool
) -> None:
    chunks = ["**b** ", "word ", "- item\n"] * 2000
    fake.answers.append(Answer(chunks=chunks, format="delta"))
    api = make_api(markdown=markdown)
    partials = [p async for p in api.stream_message("hi")]
    full = "".join(chunks)
    # The final text is exact: the whole answer, rendered once if asked for plain text.
    assert partials[-1].text == (full if markdown else to_plain_text(full))
    assert len(partials) > 10
    within_linear_bound(partials, len(full))


async def test_a_pending_partial_is_handed_out_while_the_server_is_quiet(
    server: FakeOpenAIServer, make_backend: MakeBackend
) -> None:
    # Small deltas just after a partial are held back; if the server then goes quiet,
    # they still reach the reader within the partial interval, not with the next delta.
    text = "a" * 400 + "b" * 10
    server.script(Behaviour(reply=text, pause_after=2, pause=1.0))
    server.chunker = lambda t: [t[:400], "b" * 5, "b" * 5]
    backend = make_backend()
    seen: list[tuple[float, str]] = []
    started = time.monotonic()
    async for partial in backend.stream_message("x"):
        seen.append((time.monotonic() - started, partial.text))
    early = [text for at, text in seen if at < 0.5]
    assert early[-1] == "a" * 400 + "b" * 5  # before the server went on, after 1 s
    assert seen[-1][1] == text


# -- bodies that are no event stream ---------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/event-stream", "text/plain", "application/x-ndjson"]
)
async def test_a_web_page_gets_the_base_url_hint_at_once(
    server: FakeOpenAIServer, make_backend: MakeBackend, content_type: str
) -> None:
    page = b"<!DOCTYPE html><html><body>Welcome to nginx!</body></html>"
    server.script(
        *[Behaviour(raw_body=page, headers={"Content-Type": content_type})] * 4,
    )
    backend = make_backend(max_retries=3)
    with pytest.raises(ChatGPTError) as caught:
        await backend.send_message("x")
    assert not isinstance(caught.value, ChatGPTStreamError)
    message = str(caught.value)
    assert "a web page instead of an event stream" in message
    assert "is base_url right?" in message and "nginx" not in message
    assert len(server.chat_requests) == 1  # not retried


async def test_a_json_error_in_an_event_stream_body(
    server: FakeOpenAIServer, make_backend: MakeBackend
) -> None:
    body = b'{"error": {"message": "deployment not found"}}'
    server.script(*[Behaviour(raw_body=body)] * 4)
    backend = make_backend(max_retries=3)
    with pytest.raises(ChatGPTError, match="JSON document instead of an event stream") as caught:
        await backend.send_message("x")
    assert "deployment not found" in str(caught.value)
    assert len(server.chat_requests) == 1


async def test_chatgpt_web_a_web_page_with_status_200(
    fake: FakeChatGPTWeb, make_api: MakeAPI
) -> None:
    async def page() -> AsyncIterator[bytes]:
        yield b"<html><title>Log in</title></html>"

    fake.answers.append(Answer(raw_stream=page, content_type="text/html"))
    with pytest.raises(ChatGPTError, match="is backend_api_base_url right") as caught:
        await make_api(max_retries=2).send_message("hi")
    assert "a web page instead of an event stream" in str(caught.value)
    assert len(fake.requests_to("/backend-api/conversation")) == 1
