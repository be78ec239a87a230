"""The chat completions backend over real HTTP against tests/fakes/openai_server.py."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from core import tokens
from core.backends.chat_completions import ChatCompletionsBackend, PromptTooLongError
from core.errors import (
    ChatGPTAuthError,
    ChatGPTConnectionError,
    ChatGPTError,
    ChatGPTRateLimitError,
    ChatGPTStreamError,
    ChatGPTTimeoutError,
)
from core.store.history import InMemoryHistoryStore
from core.types import ChatResponse, StoredMessage
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

KEY = "sk-test-VERYSECRET-0123456789"
SYSTEM = "You are a helpful assistant."


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer(api_key=KEY) as server:
        yield server


def make_backend(server: FakeOpenAIServer, **overrides: Any) -> ChatCompletionsBackend:
    options: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": KEY,
        "model": "gpt-4o-mini",
        "max_model_tokens": 100_000,
        "max_response_tokens": 100,
    }
    options.update(overrides)
    backend = ChatCompletionsBackend(**options)
    backend.retry_base_delay = 0.01  # fast backoff; Retry-After is still honoured
    return backend


@pytest.fixture
async def backend(server: FakeOpenAIServer) -> AsyncIterator[ChatCompletionsBackend]:
    backend = make_backend(server)
    try:
        yield backend
    finally:
        await backend.aclose()


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached in time")


async def collect(backend: ChatCompletionsBackend, text: str, **kwargs: Any) -> list[ChatResponse]:
    return [partial async for partial in backend.stream_message(text, **kwargs)]


# -- streaming and the request ----------------------------------------------------------


async def test_streams_growing_partials_then_the_final_answer(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    partials = await collect(backend, "one two three")

    assert [p.text for p in partials] == [
        "Echo: ",
        "Echo: one ",
        "Echo: one two ",
        "Echo: one two three",
        "Echo: one two three",
    ]
    assert [p.done for p in partials] == [False] * 4 + [True]
    final = partials[-1]
    assert final.model == "gpt-4o-mini"
    assert len({(p.message_id, p.parent_message_id, p.conversation_id) for p in partials}) == 1

    (request,) = server.chat_requests
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.body["stream"] is True
    assert request.body["model"] == "gpt-4o-mini"
    assert request.body["max_tokens"] == 100
    assert request.messages == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "one two three"},
    ]


async def test_send_message_reports_progress(backend: ChatCompletionsBackend) -> None:
    seen: list[str] = []

    async def on_progress(partial: ChatResponse) -> None:
        seen.append(partial.text)

    answer = await backend.send_message("hi there", on_progress=on_progress)

    assert answer.text == "Echo: hi there" == seen[-1]
    assert answer.response == answer.text
    assert seen == ["Echo: ", "Echo: hi ", "Echo: hi there", "Echo: hi there"]


async def test_ids_are_ours(server: FakeOpenAIServer, backend: ChatCompletionsBackend) -> None:
    answer = await backend.send_message("hi", message_id="user-1", conversation_id="conv-1")

    assert answer.parent_message_id == "user-1"
    assert answer.conversation_id == "conv-1"
    assert answer.message_id not in ("user-1", "conv-1")
    assert not answer.message_id.startswith("chatcmpl-")  # the server's id is not used

    fresh = await backend.send_message("hi")
    assert fresh.conversation_id and fresh.conversation_id != "conv-1"
    assert fresh.parent_message_id and fresh.parent_message_id != fresh.message_id


async def test_a_reply_without_conversation_id_continues_the_parents(
    backend: ChatCompletionsBackend,
) -> None:
    first = await backend.send_message("one")
    second = await backend.send_message("two", parent_message_id=first.message_id)
    third = await backend.send_message("three", parent_message_id=second.message_id)
    assert first.conversation_id == second.conversation_id == third.conversation_id
    # An explicit id still wins; an unknown parent starts a new conversation.
    other = await backend.send_message(
        "four", conversation_id="mine", parent_message_id=third.message_id
    )
    assert other.conversation_id == "mine"
    stray = await backend.send_message("five", parent_message_id="not-stored")
    assert stray.conversation_id not in (first.conversation_id, "mine")


async def test_count_tokens_uses_the_backends_encoding(server: FakeOpenAIServer) -> None:
    text = "Hello, world! 日本語 🎉"  # 8 tokens in o200k_base, 11 in cl100k_base
    async with (
        make_backend(server, model="gpt-4") as old,
        make_backend(server, model="gpt-4o") as new,
    ):
        assert old.count_tokens(text) == tokens.TOKENS_PER_MESSAGE + 11
        assert new.count_tokens(text) == tokens.TOKENS_PER_MESSAGE + 8
        answer = await old.send_message(text)
        store = old.history
        assert isinstance(store, InMemoryHistoryStore)
        user, reply = await store.history(answer.message_id, 10_000)
        assert user.token_count == old.count_tokens(text)
        assert reply.token_count == old.count_tokens(answer.text)


async def test_a_huge_message_is_counted_off_the_event_loop(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    rng = random.Random(1)
    words = ["".join(rng.choices("abcdefghij", k=rng.randint(3, 10))) for _ in range(5000)]
    text = " ".join(rng.choices(words, k=300_000))  # ~2 MB, ~1M tokens
    started = time.perf_counter()
    backend.count_tokens(text)
    blocking = time.perf_counter() - started  # what counting on the loop would stall it

    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.002)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    try:
        with pytest.raises(PromptTooLongError):
            await backend.send_message(text)
    finally:
        done.set()
        await ticking
    assert max(gaps) < blocking / 2
    assert server.chat_requests == []


def test_repr_hides_credentials_in_the_base_url() -> None:
    backend = ChatCompletionsBackend(
        base_url="https://bob:PW-SECRET@llm.example/v1?api-key=KEY-SECRET&api-version=2024",
        api_key=KEY,
        model="m",
    )
    shown = repr(backend)
    assert "SECRET" not in shown
    assert "llm.example/v1" in shown and "api-version=2024" in shown
    assert "<set>" in shown
    assert "https://llm.example/v1" in repr(
        ChatCompletionsBackend(base_url="https://llm.example/v1", model="m")
    )


async def test_completion_params_are_merged(server: FakeOpenAIServer) -> None:
    params = {"temperature": 0.2, "stream_options": {"include_usage": True}}
    async with make_backend(server, completion_params=params, system_message=None) as backend:
        assert (await backend.send_message("x")).text == "Echo: x"
        body = server.chat_requests[-1].body
        assert body["temperature"] == 0.2
        assert body["max_tokens"] == 100
        assert body["messages"] == [{"role": "user", "content": "x"}]

    params = {"max_completion_tokens": 50}
    async with make_backend(server, completion_params=params) as backend:
        await backend.send_message("x")
        body = server.chat_requests[-1].body
        assert body["max_completion_tokens"] == 50
        assert "max_tokens" not in body  # o-series models reject it


async def test_no_authorization_header_without_a_key() -> None:
    async with (
        FakeOpenAIServer() as server,
        make_backend(server, api_key=None) as backend,
    ):
        await backend.send_message("x")
        assert "Authorization" not in server.chat_requests[0].headers
        assert not backend.has_api_key


async def test_multibyte_characters_split_across_writes(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    reply = "héllo 日本語 🎉 naïve"
    server.script(Behaviour(reply=reply, write_size=7))  # 7: misaligned with UTF-8
    assert (await backend.send_message("x")).text == reply


async def test_a_server_that_ignores_stream(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    server.script(Behaviour(ignore_stream=True, reply="all at once"))
    partials = await collect(backend, "x")
    assert partials[-1].text == "all at once"
    assert partials[-1].done


async def test_base_url_hook_for_subclasses(server: FakeOpenAIServer) -> None:
    class Late(ChatCompletionsBackend):
        async def _base_url(self) -> str:
            return server.base_url + "/"

    async with Late(base_url="", api_key=KEY, model="m") as backend:
        assert (await backend.send_message("x")).text == "Echo: x"


async def test_connections_are_reused(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    for text in ("one", "two", "three"):
        await backend.send_message(text)
    assert len({request.peer for request in server.chat_requests}) == 1


async def test_a_borrowed_session_is_not_closed(server: FakeOpenAIServer) -> None:
    async with aiohttp.ClientSession() as session:
        backend = make_backend(server, session=session)
        await backend.send_message("x")
        await backend.aclose()
        assert not session.closed
        with pytest.raises(ChatGPTError, match="closed"):
            await backend.send_message("y")
        assert not session.closed


async def test_a_closed_backend_opens_no_new_session(server: FakeOpenAIServer) -> None:
    backend = make_backend(server)
    await backend.send_message("x")
    await backend.aclose()
    await backend.aclose()  # idempotent
    with pytest.raises(ChatGPTError, match="closed"):
        await backend.send_message("y")
    with pytest.raises(ChatGPTError, match="closed"):
        backend._get_session()
    assert backend._session is None  # nothing left open for "Unclosed client session"
    assert len(server.chat_requests) == 1


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_model_tokens"):
        ChatCompletionsBackend(
            base_url="http://x/v1", model="m", max_model_tokens=100, max_response_tokens=100
        )
    with pytest.raises(ValueError, match="max_concurrency"):
        ChatCompletionsBackend(base_url="http://x/v1", model="m", max_concurrency=0)


# -- history ---------------------------------------------------------------------------


async def test_three_turns_carry_the_history_in_order(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    first = await backend.send_message("turn one")
    second = await backend.send_message(
        "turn two", conversation_id=first.conversation_id, parent_message_id=first.message_id
    )
    third = await backend.send_message(
        "turn three", conversation_id=second.conversation_id, parent_message_id=second.message_id
    )

    assert server.chat_requests[2].messages == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "turn one"},
        {"role": "assistant", "content": "Echo: turn one"},
        {"role": "user", "content": "turn two"},
        {"role": "assistant", "content": "Echo: turn two"},
        {"role": "user", "content": "turn three"},
    ]
    assert third.conversation_id == first.conversation_id
    store = backend.history
    assert isinstance(store, InMemoryHistoryStore)
    assert len(store) == 6
    chain = await store.history(third.message_id, 10_000)
    assert [m.text for m in chain][-2:] == ["turn three", "Echo: turn three"]
    assert chain[0].parent_id is None
    for parent, child in itertools.pairwise(chain):
        assert child.parent_id == parent.id
    assert chain[-1].token_count == tokens.count_message_tokens("Echo: turn three")


async def test_a_reply_to_an_older_answer_branches(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    first = await backend.send_message("root")
    await backend.send_message("main line", parent_message_id=first.message_id)
    await backend.send_message("branch", parent_message_id=first.message_id)

    assert [m["content"] for m in server.chat_requests[2].messages] == [
        SYSTEM,
        "root",
        "Echo: root",
        "branch",
    ]


async def _three_turns(backend: ChatCompletionsBackend) -> ChatResponse:
    answer: ChatResponse | None = None
    for text in ("first question about apples", "second about pears", "third about plums"):
        answer = await backend.send_message(
            text, parent_message_id=answer.message_id if answer else None
        )
    assert answer is not None
    return answer


@pytest.mark.parametrize("extra", ["older_pair", "older_answer_only"])
async def test_a_small_budget_drops_the_oldest_turns(server: FakeOpenAIServer, extra: str) -> None:
    store = InMemoryHistoryStore()
    async with make_backend(server, history=store) as big:
        last = await _three_turns(big)
    chain = await store.history(last.message_id, 10_000)
    newest_pair = chain[-2].token_count + chain[-1].token_count
    if extra == "older_pair":  # room for turns 2 and 3 exactly
        room = newest_pair + chain[-4].token_count + chain[-3].token_count
        expected = chain[-4:]
    else:  # room for turn 2's answer but not its question: the orphan answer goes too
        room = newest_pair + chain[-3].token_count
        expected = chain[-2:]
    new = "and now?"
    fixed = (
        tokens.REPLY_PRIMING_TOKENS
        + tokens.count_message_tokens(SYSTEM)
        + tokens.count_message_tokens(new)
    )
    async with make_backend(
        server, history=store, max_response_tokens=10, max_model_tokens=10 + fixed + room
    ) as small:
        await small.send_message(new, parent_message_id=last.message_id)

    sent = server.chat_requests[-1].messages
    assert sent == [
        {"role": "system", "content": SYSTEM},
        *({"role": m.role, "content": m.text} for m in expected),
        {"role": "user", "content": new},
    ]
    assert tokens.count_chat_tokens(sent) <= 10 + fixed + room - 10


async def test_a_message_over_the_budget_alone_is_a_clear_error(server: FakeOpenAIServer) -> None:
    async with make_backend(server, max_model_tokens=60, max_response_tokens=20) as backend:
        with pytest.raises(PromptTooLongError) as caught:
            await backend.send_message("word " * 200)
    error = caught.value
    assert isinstance(error, ChatGPTError)
    assert "too long" in str(error)
    assert f"about {error.needed} tokens" in str(error)
    assert error.needed > error.available
    assert "shorten" in error.user_message
    assert server.chat_requests == []


async def test_save_history_false_reads_but_does_not_write(server: FakeOpenAIServer) -> None:
    store = InMemoryHistoryStore()
    async with make_backend(server, history=store) as writer:
        first = await writer.send_message("remember me")
    async with make_backend(server, history=store, save_history=False) as reader:
        answer = await reader.send_message("and?", parent_message_id=first.message_id)

    assert answer.text == "Echo: and?"
    assert [m["content"] for m in server.chat_requests[-1].messages][1:3] == [
        "remember me",
        "Echo: remember me",
    ]
    assert len(store) == 2


# -- retries ---------------------------------------------------------------------------


async def test_429_waits_for_retry_after_then_succeeds(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    server.script(Behaviour.http_error(429, "Rate limit reached", retry_after=0.2))

    answer = await backend.send_message("x")

    assert answer.text == "Echo: x"
    first, second = server.chat_requests
    assert second.time - first.time >= 0.19
    assert second.time - first.time < 1.0


async def test_429_until_retries_run_out(server: FakeOpenAIServer) -> None:
    server.script(*[Behaviour.http_error(429, "slow down", retry_after=0.01)] * 3)
    async with make_backend(server, max_retries=2) as backend:
        with pytest.raises(ChatGPTRateLimitError) as caught:
            await backend.send_message("x")
    assert caught.value.retry_after == pytest.approx(0.01)
    assert caught.value.status_code == 429
    assert "slow down" in str(caught.value)
    assert len(server.chat_requests) == 3


async def test_a_long_retry_after_is_not_waited_for(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    server.script(Behaviour.http_error(429, retry_after=3600))
    started = time.monotonic()
    with pytest.raises(ChatGPTRateLimitError) as caught:
        await backend.send_message("x")
    assert time.monotonic() - started < 4  # generous for loaded CI; waiting would be 3600
    assert caught.value.retry_after == pytest.approx(3600)
    assert len(server.chat_requests) == 1


async def test_500_then_success(server: FakeOpenAIServer, backend: ChatCompletionsBackend) -> None:
    server.script(Behaviour.http_error(500), Behaviour.http_error(503))
    assert (await backend.send_message("x")).text == "Echo: x"
    assert len(server.chat_requests) == 3


async def test_persistent_500_after_all_retries(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    server.script(*[Behaviour.http_error(500, "The server had an error")] * 10)
    with pytest.raises(ChatGPTError) as caught:
        await backend.send_message("x")
    error = caught.value
    assert type(error) is ChatGPTError
    assert error.status_code == 500
    assert error.status_text == "Internal Server Error"
    assert "The server had an error" in str(error)
    assert len(server.chat_requests) == backend.max_retries + 1


async def test_client_errors_are_not_retried(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    server.script(Behaviour.http_error(400, "maximum context length is 128000 tokens"))
    with pytest.raises(ChatGPTError) as caught:
        await backend.send_message("x")
    assert caught.value.status_code == 400
    assert "maximum context length" in str(caught.value)
    assert len(server.chat_requests) == 1


@pytest.mark.parametrize("status", [400, 404])
async def test_an_error_body_that_arrives_in_pieces_is_read_whole(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend, status: int
) -> None:
    error = Behaviour.http_error(status, "The model `gpt-9` does not exist or you lack access")
    server.script(dataclasses.replace(error, write_size=16, chunk_delay=0.02))
    with pytest.raises(ChatGPTError) as caught:
        await backend.send_message("x")
    message = str(caught.value)
    assert message.endswith(": The model `gpt-9` does not exist or you lack access")
    assert "base_url" not in message  # a JSON 404 is the server's answer, not a wrong URL
    assert caught.value.status_code == status


async def test_a_stream_cut_before_any_text_is_retried(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    server.script(Behaviour(disconnect_after=0))
    assert (await backend.send_message("x")).text == "Echo: x"
    assert len(server.chat_requests) == 2

    server.script(*[Behaviour(disconnect_after=0)] * 4)
    with pytest.raises(ChatGPTStreamError) as caught:
        await backend.send_message("x")
    assert type(caught.value) is ChatGPTStreamError
    assert caught.value.partial_text == ""
    assert len(server.chat_requests) == 2 + backend.max_retries + 1


async def test_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = ChatCompletionsBackend(
        base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, model="m", max_retries=1
    )
    backend.retry_base_delay = 0.01
    async with backend:
        with pytest.raises(ChatGPTConnectionError) as caught:
            await backend.send_message("x")
    assert f"127.0.0.1:{port}" in str(caught.value)


# -- failures --------------------------------------------------------------------------


async def test_timeout_before_the_first_byte(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    server.script(Behaviour(delay=5))
    started = time.monotonic()
    with pytest.raises(ChatGPTTimeoutError):
        await backend.send_message("x", timeout=0.2)
    assert time.monotonic() - started < 4  # the server would take 5
    assert len(server.chat_requests) == 1  # a timeout is not retried


class SlowHistory(InMemoryHistoryStore):
    """A history store that answers slowly, like a database under load."""

    async def history(self, message_id: str, max_tokens: int) -> list[StoredMessage]:
        await asyncio.sleep(3)
        return await super().history(message_id, max_tokens)


async def test_max_answer_seconds_covers_building_the_prompt(server: FakeOpenAIServer) -> None:
    async with make_backend(server, history=SlowHistory(), max_answer_seconds=0.2) as backend:
        started = time.monotonic()
        with pytest.raises(ChatGPTTimeoutError, match="preparing the prompt") as caught:
            await backend.send_message("x", parent_message_id="parent")
    assert time.monotonic() - started < 2  # the store would take 3
    assert "max_answer_seconds=0.2" in str(caught.value)
    assert server.chat_requests == []


async def test_a_slow_history_does_not_eat_the_servers_timeout(server: FakeOpenAIServer) -> None:
    class SlowerHistory(InMemoryHistoryStore):
        async def history(self, message_id: str, max_tokens: int) -> list[StoredMessage]:
            await asyncio.sleep(0.4)
            return await super().history(message_id, max_tokens)

    server.script(Behaviour(delay=0.4))
    async with make_backend(server, history=SlowerHistory(), timeout=0.6) as backend:
        answer = await backend.send_message("x", parent_message_id="parent")
    assert answer.text == "Echo: x"  # 0.4 s reading history + 0.4 s of server silence


async def test_configured_timeout_during_the_stream(server: FakeOpenAIServer) -> None:
    server.script(Behaviour(reply="a b c", pause_after=1, pause=5))
    async with make_backend(server, timeout=0.5) as backend:
        started = time.monotonic()
        with pytest.raises(ChatGPTTimeoutError) as caught:
            await backend.send_message("x")
    assert caught.value.partial_text == "a "
    assert time.monotonic() - started < 4  # the server would pause 5


async def test_disconnect_mid_stream_keeps_partial_text_and_saves_nothing(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    server.script(Behaviour(reply="one two three four", disconnect_after=2))
    with pytest.raises(ChatGPTStreamError) as caught:
        await backend.send_message("x")
    assert caught.value.partial_text == "one two "
    assert len(server.chat_requests) == 1  # text was out: no retry
    store = backend.history
    assert isinstance(store, InMemoryHistoryStore)
    assert len(store) == 0


@pytest.mark.parametrize(
    ("behaviour", "message"),
    [
        (Behaviour(reply="one two", malformed_after=1), "malformed"),
        (Behaviour(reply="one two", error_after=1, error_message="overloaded"), "overloaded"),
        (Behaviour(reply="one two", omit_done=True), "ended before"),
    ],
)
async def test_broken_streams(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend, behaviour: Behaviour, message: str
) -> None:
    server.script(behaviour)
    with pytest.raises(ChatGPTStreamError, match=message) as caught:
        await backend.send_message("x")
    assert caught.value.partial_text in ("one ", "one two")
    assert len(server.chat_requests) == 1


async def test_an_error_event_before_any_text(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    server.script(Behaviour(error_after=0, error_message="model is loading"))
    with pytest.raises(ChatGPTStreamError, match="model is loading") as caught:
        await backend.send_message("x")
    assert caught.value.partial_text == ""


async def test_the_api_key_never_leaks(
    server: FakeOpenAIServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-ALSOSECRET-987654321"
    async with make_backend(server, api_key=wrong) as backend:
        assert wrong not in repr(backend)
        with pytest.raises(ChatGPTAuthError) as caught:  # the fake echoes the key in full
            await backend.send_message("x")
        assert len(server.chat_requests) == 1  # auth errors are not retried
        error = caught.value
        assert error.status_code == 401
        assert "Incorrect API key provided: ***" in str(error)
        for text in (str(error), repr(error), repr(error.args), str(error.status_text)):
            assert wrong not in text
            assert "ALSOSECRET" not in text

    server.script(*[Behaviour.http_error(500, f"upstream said {KEY}")] * 2)
    async with make_backend(server, max_retries=1) as backend:
        with pytest.raises(ChatGPTError) as server_error:
            await backend.send_message("x")
        assert KEY not in str(server_error.value)
        assert KEY not in repr(backend) and KEY not in repr(vars(backend))
    assert "upstream said ***" in caplog.text  # the retry was logged, redacted
    assert KEY not in caplog.text and wrong not in caplog.text


# -- concurrency and cancellation ------------------------------------------------------


async def test_max_concurrency_is_honoured(server: FakeOpenAIServer) -> None:
    server.default = Behaviour(chunk_delay=0.05)
    async with make_backend(server, max_concurrency=2) as backend:
        answers = await asyncio.gather(*(backend.send_message(f"m{i}") for i in range(6)))
    assert [a.text for a in answers] == [f"Echo: m{i}" for i in range(6)]
    assert server.max_in_flight == 2


async def test_cancelling_aborts_the_request(server: FakeOpenAIServer) -> None:
    server.script(Behaviour(reply="a b c d e f", chunk_delay=0.2))
    async with make_backend(server, max_concurrency=1) as backend:
        task = asyncio.create_task(backend.send_message("x"))
        await until(lambda: server.in_flight == 1)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await until(lambda: server.in_flight == 0)  # the server saw the connection go
        # The slot was released: the next request goes through.
        assert (await backend.send_message("y")).text == "Echo: y"


async def test_a_wrong_base_url_gets_a_hint() -> None:
    from aiohttp import web

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>welcome</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/chat/completions", html)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        for base_url, status in (
            (f"http://127.0.0.1:{port}", 200),
            (f"http://127.0.0.1:{port}/x", 404),
        ):
            async with ChatCompletionsBackend(base_url=base_url, model="m") as backend:
                with pytest.raises(ChatGPTError, match="usually end in /v1") as caught:
                    await backend.send_message("x")
                assert caught.value.status_code == status
    finally:
        await runner.cleanup()


# -- what the operator sees ------------------------------------------------------------


async def test_a_base_url_with_a_query_keeps_it(server: FakeOpenAIServer) -> None:
    base_url = f"{server.base_url}/?api-version=2024-06-01&api-key=Q-SECRET"  # Azure style
    async with make_backend(server, base_url=base_url) as backend:
        assert (await backend.send_message("x")).text == "Echo: x"
        server.script(Behaviour.http_error(400, "bad deployment"))
        with pytest.raises(ChatGPTError) as caught:
            await backend.send_message("x")
    (request, _) = server.chat_requests
    assert request.path == "/v1/chat/completions"
    assert request.query == "api-version=2024-06-01&api-key=Q-SECRET"
    assert "Q-SECRET" not in str(caught.value) and "api-version" not in str(caught.value)


async def test_errors_say_what_failed_where_and_after_how_many_tries(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    server.script(*[Behaviour.http_error(503, "overloaded, try later")] * 4)
    with pytest.raises(ChatGPTError) as caught:
        await backend.send_message("x")
    assert str(caught.value) == (
        f"HTTP 503 Service Unavailable from 127.0.0.1:{server.port}/v1/chat/completions "
        "after 4 tries: overloaded, try later"
    )
    assert caught.value.user_message == (
        "The AI backend failed to answer. Please try again in a moment."
    )

    server.script(Behaviour.http_error(500), Behaviour.http_error(400, "no such model"))
    with pytest.raises(ChatGPTError, match=r"^HTTP 400 Bad Request from .* after 2 tries: no"):
        await backend.send_message("x")


async def test_connection_and_stream_errors_say_where_too(server: FakeOpenAIServer) -> None:
    async with make_backend(server, max_retries=0) as backend:
        server.script(Behaviour(reply="a b c", disconnect_after=1))
        with pytest.raises(ChatGPTStreamError) as broken:
            await backend.send_message("x")
    where = f"127.0.0.1:{server.port}/v1/chat/completions after 1 try"
    assert str(broken.value).startswith(f"connection broke during the answer from {where}")
    assert broken.value.user_message == "The AI backend's answer was cut off. Please try again."


async def test_retries_are_info_and_requests_debug(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="core.backends.chat_completions")
    server.script(Behaviour.http_error(503, "busy", retry_after=0.05))
    await backend.send_message("x")
    records = [r for r in caplog.records if r.name == "core.backends.chat_completions"]
    assert not [r for r in records if r.levelno >= logging.WARNING]
    (retry,) = [r for r in records if r.levelno == logging.INFO]
    assert "HTTP 503 Service Unavailable" in retry.getMessage()
    assert "busy; retry 1 of 3 in 0.05 s" in retry.getMessage()
    debug = [r.getMessage() for r in records if r.levelno == logging.DEBUG]
    url = f"{server.base_url}/chat/completions"
    assert f"POST {url} (try 1)" in debug and f"POST {url} (try 2)" in debug
    assert any(m.startswith(f"POST {url} -> 503 Service Unavailable in ") for m in debug)
    assert any(m.startswith(f"POST {url} -> 200 OK in ") for m in debug)
    assert KEY not in caplog.text


async def test_the_final_answer_says_what_the_prompt_carried(
    server: FakeOpenAIServer, backend: ChatCompletionsBackend
) -> None:
    first = await backend.send_message("one")
    assert first.prompt_messages == 0
    assert first.prompt_tokens == tokens.count_chat_tokens(server.chat_requests[-1].messages)
    partials = await collect(backend, "two", parent_message_id=first.message_id)
    final = partials[-1]
    assert final.prompt_messages == 2  # "one" and its answer; not the system message
    assert final.prompt_tokens == tokens.count_chat_tokens(server.chat_requests[-1].messages)
    assert all(p.prompt_messages is None and p.prompt_tokens is None for p in partials[:-1])
