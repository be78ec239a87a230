"""A Telegram bot whose LLM server misbehaves: 429 floods, 5xx, stalls, connections cut
mid-answer. Each fault either heals within the retries (the user sees the full answer,
once) or ends in one plain-words message, with nothing committed: the next message is
answered on the conversation as it stood before the failed turn."""

from __future__ import annotations

import logging
import time

import pytest

from core.errors import (
    ChatGPTError,
    ChatGPTRateLimitError,
    ChatGPTStreamError,
    ChatGPTTimeoutError,
)
from tests.adapters.telegram.conftest import ALICE, GROUP, StartBot
from tests.fakes.openai_server import Behaviour
from tests.fakes.telegram_api import FakeTelegram
from tests.faults.conftest import FAST_BACKEND, stored

SCOPE = f"telegram:chat:{ALICE}"  # the DM's scope key (scope: chat)

BUSY = ChatGPTRateLimitError("", retry_after=0.2).user_message
FAILED = ChatGPTError("").user_message
SLOW = ChatGPTTimeoutError("").user_message
CUT_OFF = ChatGPTStreamError("").user_message


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """A backend failure is the operator's one line, never a traceback in the log."""
    for record in caplog.records:
        assert record.exc_info is None, f"traceback logged: {record.getMessage()}"


async def test_a_429_flood_is_waited_out_as_retry_after_says(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(backend=FAST_BACKEND)
    bot.llm.script(
        Behaviour.http_error(429, "Rate limit reached", retry_after=0.4),
        Behaviour.http_error(429, "Rate limit reached", retry_after=0.4),
    )
    tg.send_text(ALICE, ALICE, "are you there?")
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: are you there?"
    first, second, third = (r.time for r in bot.llm.chat_requests)
    assert second - first >= 0.4 and third - second >= 0.4, "Retry-After was not honoured"
    assert third - first < 2.0, "waited far longer than Retry-After asked"
    assert (await stored(bot.app)).chain(SCOPE) == ["are you there?", "Echo: are you there?"]


async def test_a_429_that_never_stops_is_one_plain_message_and_nothing_is_kept(
    start_bot: StartBot, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot(backend=FAST_BACKEND)
    tg.send_text(ALICE, ALICE, "my name is Alice")
    await bot.answer(ALICE)
    bot.llm.default = Behaviour.http_error(429, "Rate limit reached", retry_after=0.2)
    caplog.set_level(logging.WARNING)
    tg.send_text(ALICE, ALICE, "what is the capital of France?")
    started = time.monotonic()
    _, refusal = await bot.answer(ALICE, 2)
    assert refusal.text == BUSY  # "The AI backend is busy. Please try again in 0.2 seconds."
    assert time.monotonic() - started < 3
    assert len(bot.llm.chat_requests) == 1 + 3, "one try and max_retries=2 retries"
    no_tracebacks(caplog)

    after = await stored(bot.app)
    assert "what is the capital of France?" not in after.texts("user")
    assert after.chain(SCOPE) == ["my name is Alice", "Echo: my name is Alice"]

    bot.llm.default = Behaviour()
    tg.send_text(ALICE, ALICE, "what is my name?")
    *_, answer = await bot.answer(ALICE, 3)
    assert answer.text == "Echo: what is my name?"
    assert bot.prompts()[-1] == [
        ("user", "my name is Alice"),
        ("assistant", "Echo: my name is Alice"),
        ("user", "what is my name?"),
    ]
    assert len(tg.bot_messages(ALICE)) == 3, "each message answered exactly once"


# The backoff between 5xx tries (0.5 s, then 1 s, plus up to 0.5 s of jitter) must fit
# in ``timeout``, which also bounds each wait between tries.
RETRYING_BACKEND = {**FAST_BACKEND, "timeout": 3.0}


async def test_5xx_answers_are_retried_until_one_succeeds(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(backend=RETRYING_BACKEND)
    bot.llm.script(Behaviour.http_error(503), Behaviour.http_error(500))
    tg.send_text(ALICE, ALICE, "hello through the storm")
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: hello through the storm"
    assert [r.path for r in bot.llm.chat_requests] == ["/v1/chat/completions"] * 3
    assert (await stored(bot.app)).chain(SCOPE) == [
        "hello through the storm",
        "Echo: hello through the storm",
    ]


async def test_a_backend_that_keeps_failing_gets_one_plain_error_and_no_traceback(
    start_bot: StartBot, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot(backend=RETRYING_BACKEND)
    bot.llm.default = Behaviour.http_error(502, "upstream connect error")
    caplog.set_level(logging.INFO)
    tg.send_text(ALICE, ALICE, "anyone home?")
    [refusal] = await bot.answer(ALICE)
    assert refusal.text == FAILED  # "The AI backend failed to answer. Please try again ..."
    assert len(bot.llm.chat_requests) == 3
    no_tracebacks(caplog)
    operator = [r.getMessage() for r in caplog.records if "HTTP 502" in r.getMessage()]
    assert any("after 3 tries" in line for line in operator), operator
    after = await stored(bot.app)
    assert after.messages == {} and after.heads == {}
    assert [state for _, state, _ in after.inbox] == ["done"]

    bot.llm.default = Behaviour()
    tg.send_text(ALICE, ALICE, "now?")
    _, answer = await bot.answer(ALICE, 2)
    assert answer.text == "Echo: now?"
    assert bot.prompts()[-1] == [("user", "now?")]


@pytest.mark.parametrize(
    "stall",
    [
        pytest.param(Behaviour(delay=30), id="no-headers"),
        pytest.param(Behaviour(pause_after=0, pause=30), id="headers-then-nothing"),
        pytest.param(Behaviour(reply="one two three four", pause_after=2, pause=30), id="mid"),
    ],
)
async def test_a_stalled_server_is_given_up_on_in_bounded_time(
    start_bot: StartBot, tg: FakeTelegram, stall: Behaviour
) -> None:
    """timeout=1 s of silence: no headers, headers and the role chunk only, or a few
    words and then nothing. Timeouts are not retried (the server is there, just slow)."""
    bot = await start_bot(backend=FAST_BACKEND)
    bot.llm.script(stall)
    started = time.monotonic()
    tg.send_text(ALICE, ALICE, "tell me something")
    [refusal] = await bot.answer(ALICE)
    took = time.monotonic() - started
    assert refusal.text == SLOW  # "The AI backend took too long to answer. Please try again."
    assert 1.0 <= took < 4.0, took
    assert (await stored(bot.app)).messages == {}

    tg.send_text(ALICE, ALICE, "and now?")
    _, answer = await bot.answer(ALICE, 2)
    assert answer.text == "Echo: and now?"
    assert bot.prompts()[-1] == [("user", "and now?")]


async def test_a_connection_cut_before_any_text_is_retried_unseen(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(backend=FAST_BACKEND)
    bot.llm.script(Behaviour(disconnect_after=0))
    tg.send_text(ALICE, ALICE, "hi")
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: hi"
    assert len(bot.llm.chat_requests) == 2


async def test_a_connection_cut_mid_answer_says_so_and_the_chain_stays(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    """In a group the partial answer is a real message: it stays as it was, a second
    message says the answer broke off, and the next question is asked on the history
    as it was before the broken turn."""
    bot = await start_bot(backend=FAST_BACKEND)
    tg.send_text(GROUP, ALICE, "@parley_bot remember: blue")
    await bot.answer(GROUP)
    story = " ".join(f"w{i}" for i in range(20))
    bot.llm.script(Behaviour(reply=story, chunk_delay=0.05, disconnect_after=10))
    tg.send_text(GROUP, ALICE, "@parley_bot tell me a story")
    _, partial, notice = await bot.answer(GROUP, 3)
    assert partial.text == " ".join(f"w{i}" for i in range(10))[: len(partial.text or "")]
    assert partial.text, "some of the answer was shown"
    assert notice.text == CUT_OFF  # "The AI backend's answer was cut off. Please try again."
    assert len(bot.llm.chat_requests) == 2, "text was out: no retry"
    scope = f"telegram:chat:{GROUP}"
    after = await stored(bot.app)
    assert "tell me a story" not in after.texts("user")
    assert after.chain(scope) == ["remember: blue", "Echo: remember: blue"]

    tg.send_text(GROUP, ALICE, "@parley_bot what colour?")
    *_, answer = await bot.answer(GROUP, 4)
    assert answer.text == "Echo: what colour?"
    assert bot.prompts()[-1] == [
        ("user", "remember: blue"),
        ("assistant", "Echo: remember: blue"),
        ("user", "what colour?"),
    ]
    assert (await stored(bot.app)).chain(scope)[-2:] == ["what colour?", "Echo: what colour?"]
