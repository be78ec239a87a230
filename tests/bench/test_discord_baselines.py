"""The Discord benchmark's baselines do what the benchmark says of them, against the
fake Discord and the fake LLM over loopback: the naive bot streams on its 1 s timer and
cuts at 2000 characters wherever that falls; the bare bot sends the whole answer once,
with the channel's history; and the judging helpers tell a cut word from a clean split."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bench.answers import MODEL, TimedAnswers, make_answer, squeezed, word_for_word
from bench.discord_baselines import BareBot, NaiveStreamingBot, _DpyBot
from bench.discord_world import BOT, SEND, TOKEN, add_channels, first_visible, prompt, shown_parts
from bench.harness import percentile, started, stopped
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.openai_server import FakeOpenAIServer

SEED = 7  # make_answer(SEED, 2500) has a word across character 2000


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDiscord, FakeOpenAIServer, TimedAnswers]]:
    answers = TimedAnswers(chunk_chars=8)
    async with (
        FakeDiscord(token=TOKEN, bot_id=BOT) as dc,
        answers.server(0.004) as llm,  # ~2,500 characters in ~1.3 s
    ):
        yield dc, llm, answers


async def _running(
    fakes: tuple[FakeDiscord, FakeOpenAIServer, TimedAnswers],
    kind: type[_DpyBot],
    stop: asyncio.Event,
) -> tuple[int, int, str, asyncio.Task[None]]:
    """One channel whose answer is make_answer(SEED, 2500), and ``kind`` answering there:
    (channel, user, answer, the bot's task)."""
    dc, llm, answers = fakes
    [(channel, user)] = add_channels(dc, 1)
    answer = answers.answers[channel] = make_answer(SEED, 2500)
    bot = kind(TOKEN, dc.api_base_url, dc.gateway_url, llm.base_url, MODEL)
    return channel, user, answer, await started(bot, stop, dc.wait_for, bot.ready)


async def test_the_naive_bot_streams_on_a_timer_and_cuts_at_2000_mid_word(
    fakes: tuple[FakeDiscord, FakeOpenAIServer, TimedAnswers],
) -> None:
    dc, llm, answers = fakes
    stop = asyncio.Event()
    channel, user, answer, task = await _running(fakes, NaiveStreamingBot, stop)
    assert not answer[1999].isspace() and not answer[2000].isspace()
    dc.send_message(channel, user, prompt(channel))
    await dc.wait_for(lambda: len(llm.chat_requests) == 1 and llm.in_flight == 0, timeout=20)
    await dc.wait_for(lambda: "".join(shown_parts(dc, channel)) == answer, timeout=10)
    await stopped(stop, task)

    first, second = dc.bot_messages(channel)
    assert len(first.content) == 2000 and first.content + second.content == answer
    assert first.history, "the first message was edited while the answer streamed"
    seen = first_visible([c for c in dc.calls if c.channel_id == channel])
    assert seen is not None and seen < answers.last_token[channel]  # text before the end
    assert first.reference is not None  # a reply to the question
    parts = shown_parts(dc, channel)
    assert squeezed("".join(parts)) == squeezed(answer)  # complete,
    assert not word_for_word(parts, answer)  # but a word is cut in two


async def test_the_bare_bot_sends_the_whole_answer_once_with_the_channels_history(
    fakes: tuple[FakeDiscord, FakeOpenAIServer, TimedAnswers],
) -> None:
    dc, llm, answers = fakes
    answers.chunk_chars = 500  # nothing streams here: no need to wait for it
    stop = asyncio.Event()
    channel, user, answer, task = await _running(fakes, BareBot, stop)
    for turn in range(2):
        dc.send_message(channel, user, prompt(channel, turn))
        await dc.wait_bot_messages(channel, 2 * (turn + 1), timeout=20)
    await stopped(stop, task)

    sends = [c for c in dc.calls if c.route == SEND]
    assert len(sends) == 4 and not [c for c in dc.calls if c.route.startswith("PATCH")]
    assert [len(m.content) for m in dc.bot_messages(channel)] == [2000, len(answer) - 2000] * 2
    roles = [m["role"] for m in llm.chat_requests[1].messages]
    assert roles == ["user", "assistant", "user"]


def test_word_for_word_tells_a_cut_word_from_a_clean_split() -> None:
    assert word_for_word(["Hello there.", "General words."], "Hello there.\n\nGeneral words.")
    assert not word_for_word(["Hello the", "re."], "Hello there.")
    assert not word_for_word(["Hello."], "Hello there.")
    assert squeezed("Hello the" + "re.") == squeezed("Hello there.")


def test_percentile_is_linear_between_ranks() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0], 95) == pytest.approx(1.95)
    assert percentile([5.0], 95) == 5.0
