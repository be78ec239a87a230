"""ChatGPTAPI's answer streams against the fake: both formats, broken streams, timeouts,
cancellation, rate limits and retries."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from email.utils import formatdate
from typing import Literal

import pytest

from core import (
    ChatGPTAPI,
    ChatGPTConnectionError,
    ChatGPTError,
    ChatGPTRateLimitError,
    ChatGPTStreamError,
    ChatGPTTimeoutError,
    ChatResponse,
)
from tests.core.backends.conftest import MakeAPI
from tests.fakes.chatgpt_web import Answer, FakeChatGPTWeb, SessionReply

FORMATS = pytest.mark.parametrize("fmt", ["classic", "delta"])
Format = Literal["classic", "delta"]


@FORMATS
async def test_answer_and_progress(fake: FakeChatGPTWeb, api: ChatGPTAPI, fmt: Format) -> None:
    fake.answers.append(
        Answer(
            chunks=["The", " answer", " is 2."], format=fmt, message_id="a1", conversation_id="c1"
        )
    )
    seen: list[ChatResponse] = []
    answer = await api.send_message("1+1?", message_id="u1", on_progress=seen.append)
    assert answer == ChatResponse(
        text="The answer is 2.",
        conversation_id="c1",
        message_id="a1",
        parent_message_id="u1",
        model="text-davinci-002-render-sha",
        done=True,
    )
    texts = [p.text for p in seen if not p.done]
    assert texts == ["The", "The answer", "The answer is 2."]  # the user's echo is not shown
    assert seen[-1] == answer
    assert all(p.message_id == "a1" and p.parent_message_id == "u1" for p in seen)


async def test_async_progress_callback(api: ChatGPTAPI) -> None:
    seen: list[str] = []

    async def on_progress(partial: ChatResponse) -> None:
        await asyncio.sleep(0)
        seen.append(partial.text)

    await api.send_message("hi", on_progress=on_progress)
    assert seen[-1] == "Hello, world!" and len(seen) == 4


@FORMATS
async def test_stream_message(fake: FakeChatGPTWeb, api: ChatGPTAPI, fmt: Format) -> None:
    fake.answers.append(Answer(chunks=["a", "b", "c"], format=fmt))
    seen = [partial async for partial in api.stream_message("hi", action="next")]
    assert [(p.text, p.done) for p in seen] == [
        ("a", False),
        ("ab", False),
        ("abc", False),
        ("abc", True),
    ]


@FORMATS
async def test_markdown_false_gives_plain_text(
    fake: FakeChatGPTWeb, make_api: MakeAPI, fmt: Format
) -> None:
    api = make_api(markdown=False)
    fake.answers.append(Answer(chunks=["**Bold** and ", "[a link](https://x.y)"], format=fmt))
    seen: list[str] = []
    answer = await api.send_message("hi", on_progress=lambda p: seen.append(p.text))
    assert answer.text == "Bold and a link"
    assert seen[0] == "Bold and"


@FORMATS
async def test_utf8_split_across_writes(fake: FakeChatGPTWeb, api: ChatGPTAPI, fmt: Format) -> None:
    chunks = ["Grüße ", "aus 東京 ", "🌍!"]
    fake.answers.append(Answer(chunks=chunks, format=fmt, split_utf8=True))
    answer = await api.send_message("hi")
    assert answer.text == "Grüße aus 東京 🌍!"


@FORMATS
async def test_error_event_carries_partial_text(
    fake: FakeChatGPTWeb, api: ChatGPTAPI, fmt: Format
) -> None:
    fake.answers.append(Answer(chunks=["Hal", "f", " way"], format=fmt, error_after=2))
    with pytest.raises(ChatGPTStreamError, match="Something went wrong") as caught:
        await api.send_message("hi")
    assert caught.value.partial_text == "Half"


async def test_error_event_with_an_object(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.answers.append(Answer(error_after=0, error={"message": "Too many requests in 1 hour"}))
    with pytest.raises(ChatGPTStreamError, match="Too many requests in 1 hour") as caught:
        await api.send_message("hi")
    assert caught.value.partial_text == ""


@FORMATS
@pytest.mark.parametrize("after", [0, 2, 3])
async def test_stream_ending_before_done(
    fake: FakeChatGPTWeb, api: ChatGPTAPI, fmt: Format, after: int
) -> None:
    fake.answers.append(Answer(chunks=["a", "b", "c"], format=fmt, truncate_after=after))
    with pytest.raises(ChatGPTStreamError, match=r"\[DONE\]") as caught:
        await api.send_message("hi")
    assert caught.value.partial_text == "abc"[:after]


async def test_connection_dropped_mid_stream(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.answers.append(Answer(chunks=["a", "b", "c"], abort_after=2))
    with pytest.raises(ChatGPTStreamError) as caught:
        await api.send_message("hi")
    assert caught.value.partial_text == "ab"


@FORMATS
async def test_malformed_event(fake: FakeChatGPTWeb, api: ChatGPTAPI, fmt: Format) -> None:
    fake.answers.append(Answer(chunks=["a", "b"], format=fmt, malformed_after=1))
    with pytest.raises(ChatGPTStreamError, match="malformed") as caught:
        await api.send_message("hi")
    assert caught.value.partial_text == "a"


async def test_partial_text_is_plain_when_markdown_is_off(
    fake: FakeChatGPTWeb, make_api: MakeAPI
) -> None:
    api = make_api(markdown=False)
    fake.answers.append(Answer(chunks=["**a**", " b"], truncate_after=2))
    with pytest.raises(ChatGPTStreamError) as caught:
        await api.send_message("hi")
    assert caught.value.partial_text == "a b"


async def test_timeout_aborts_the_request(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.answers.append(Answer(chunks=["a", "b"], stall_after=0))
    started = time.monotonic()
    with pytest.raises(ChatGPTTimeoutError) as caught:
        await api.send_message("hi", timeout=0.2)
    assert time.monotonic() - started < 2
    assert caught.value.partial_text == ""
    await asyncio.wait_for(fake.disconnected.wait(), 2)


async def test_timeout_keeps_partial_text(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.answers.append(Answer(chunks=["first", " never"], stall_after=1))
    with pytest.raises(ChatGPTTimeoutError) as caught:
        await api.send_message("hi", timeout=0.2)
    assert caught.value.partial_text == "first"
    await asyncio.wait_for(fake.disconnected.wait(), 2)


async def test_cancelling_the_task_aborts_the_request(
    fake: FakeChatGPTWeb, api: ChatGPTAPI
) -> None:
    fake.answers.append(Answer(chunks=["a", "b"], stall_after=0))
    task = asyncio.create_task(api.send_message("hi"))
    await asyncio.wait_for(fake.streaming.wait(), 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake.disconnected.wait(), 2)


async def test_leaving_a_stream_early_aborts_the_request(
    fake: FakeChatGPTWeb, api: ChatGPTAPI
) -> None:
    fake.answers.append(Answer(chunks=["a", "b"], stall_after=1))
    stream = api.stream_message("hi")
    async for partial in stream:
        assert partial.text == "a"
        break
    await stream.aclose()
    await asyncio.wait_for(fake.disconnected.wait(), 2)


async def test_rate_limit_with_retry_after_seconds(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.answers.append(
        Answer(status=429, body={"detail": "Slow down"}, headers={"Retry-After": "7"})
    )
    with pytest.raises(ChatGPTRateLimitError, match="Slow down") as caught:
        await api.send_message("hi")
    assert caught.value.retry_after == 7
    assert caught.value.status_code == 429
    assert caught.value.status_text == "Too Many Requests"
    assert len(fake.requests_to("/backend-api/conversation")) == 1


async def test_rate_limit_with_retry_after_date(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    date = formatdate(time.time() + 120, usegmt=True)
    fake.answers.append(Answer(status=429, body={"detail": "x"}, headers={"Retry-After": date}))
    with pytest.raises(ChatGPTRateLimitError) as caught:
        await api.send_message("hi")
    assert caught.value.retry_after is not None
    assert 110 < caught.value.retry_after <= 120


async def test_server_error_detail(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.answers.append(Answer(status=500, body={"detail": "Internal failure"}))
    with pytest.raises(ChatGPTError) as caught:
        await api.send_message("hi")
    assert str(caught.value) == (
        f"HTTP 500 Internal Server Error from 127.0.0.1:{fake.port}/backend-api/conversation"
        " after 1 try: Internal failure"
    )
    assert caught.value.status_code == 500
    assert caught.value.status_text == "Internal Server Error"


async def test_retries_honour_retry_after(fake: FakeChatGPTWeb, make_api: MakeAPI) -> None:
    api = make_api(max_retries=2)
    fake.answers += [
        Answer(status=429, body={"detail": "busy"}, headers={"Retry-After": "0.05"}),
        Answer(status=503, body={"detail": "down"}, headers={"Retry-After": "0"}),
        Answer(chunks=["ok"]),
    ]
    started = time.monotonic()
    answer = await api.send_message("hi")
    assert answer.text == "ok"
    assert time.monotonic() - started >= 0.05
    assert len(fake.requests_to("/backend-api/conversation")) == 3


async def test_retries_give_up(fake: FakeChatGPTWeb, make_api: MakeAPI) -> None:
    api = make_api(max_retries=1)
    fake.answers += [Answer(status=503, body=None, headers={"Retry-After": "0"})] * 2
    with pytest.raises(ChatGPTError) as caught:
        await api.send_message("hi")
    assert caught.value.status_code == 503
    assert len(fake.requests_to("/backend-api/conversation")) == 2


async def test_client_errors_are_not_retried(fake: FakeChatGPTWeb, make_api: MakeAPI) -> None:
    api = make_api(max_retries=3)
    fake.answers.append(Answer(status=400, body={"detail": "bad"}))
    with pytest.raises(ChatGPTError, match="bad"):
        await api.send_message("hi")
    assert len(fake.requests_to("/backend-api/conversation")) == 1


async def test_retry_that_would_pass_the_timeout_is_not_attempted(
    fake: FakeChatGPTWeb, make_api: MakeAPI
) -> None:
    api = make_api(max_retries=3)
    fake.answers.append(Answer(status=429, body=None, headers={"Retry-After": "30"}))
    with pytest.raises(ChatGPTRateLimitError):
        await api.send_message("hi", timeout=1)
    assert len(fake.requests_to("/backend-api/conversation")) == 1


async def test_context_manager_closes_its_session(fake: FakeChatGPTWeb) -> None:
    async with ChatGPTAPI(
        session_token="s",
        clearance_token=fake.clearance_token,
        api_base_url=fake.api_base_url,
        backend_api_base_url=fake.backend_api_base_url,
        access_token=fake.issue_token(),
    ) as api:
        assert (await api.send_message("hi")).text == "Hello, world!"
        session = api._session
        assert session is not None
    assert session.closed
    await api.aclose()  # twice is fine


async def test_timeout_covers_the_token_refresh(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.session_replies.append(SessionReply(delay=1))
    with pytest.raises(ChatGPTTimeoutError):
        await api.send_message("hi", timeout=0.1)
    assert fake.requests_to("/backend-api/conversation") == []


async def test_connection_errors_are_retried(make_api: MakeAPI, fake: FakeChatGPTWeb) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    api = make_api(
        backend_api_base_url=f"http://127.0.0.1:{port}/backend-api",
        max_retries=1,
        access_token=fake.issue_token(),
    )
    started = time.monotonic()
    with pytest.raises(ChatGPTConnectionError):
        await api.send_message("hi")
    assert time.monotonic() - started >= 0.5  # one retry, after the first backoff step


async def test_retried_errors_say_where_and_after_how_many_tries(
    fake: FakeChatGPTWeb, make_api: MakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="core.chatgpt_web")
    api = make_api(max_retries=2)
    fake.answers += [Answer(status=503, body={"detail": "down"}, headers={"Retry-After": "0"})] * 3
    with pytest.raises(ChatGPTError) as caught:
        await api.send_message("hi")
    assert str(caught.value) == (
        f"HTTP 503 Service Unavailable from 127.0.0.1:{fake.port}/backend-api/conversation"
        " after 3 tries: down"
    )
    assert caught.value.user_message.startswith("The AI backend failed to answer.")
    records = [r for r in caplog.records if r.name == "core.chatgpt_web"]
    assert not [r for r in records if r.levelno >= logging.WARNING]
    retries = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert len(retries) == 2 and retries[0].endswith("down; retry 1 of 2 in 0.00 s")


async def test_a_timeout_says_which_limit_and_where(fake: FakeChatGPTWeb, api: ChatGPTAPI) -> None:
    fake.answers.append(Answer(chunks=["a", "b"], stall_after=1))
    with pytest.raises(ChatGPTTimeoutError) as caught:
        await api.send_message("hi", timeout=0.2)
    assert str(caught.value) == (
        f"no data within timeout=0.2 s from 127.0.0.1:{fake.port}/backend-api/conversation"
        " after 1 try: waiting for more of the answer"
    )
