"""The Discord bot where things go wrong: deleted messages, 429s discord.py does not
retry, code blocks mid-stream, and the pure helpers behind mentions and fences."""

from __future__ import annotations

import logging

import discord.gateway
import discord.http
import pytest

from adapters.base import AdapterStartError
from adapters.discord.bot import _Endpoints, rest_base
from adapters.discord.render import DiscordRenderer, open_fence
from adapters.discord.updates import strip_mentions
from bots.config import ConfigError, parse_config
from tests.adapters.discord.conftest import BOT, GENERAL, OTHER, StartBot
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.openai_server import Behaviour

ALICE = 840_000_000_000_000_001


def test_mentions_of_the_bot_are_stripped_and_others_kept() -> None:
    assert strip_mentions(f"<@{BOT}> hi", BOT, set()) == ("hi", True)
    assert strip_mentions(f"so <@!{BOT}>, what now", BOT, set()) == ("so , what now", True)
    assert strip_mentions("<@&5> role", BOT, {5}) == ("role", True)
    assert strip_mentions("<@&6> other role <@7>", BOT, {5}) == ("<@&6> other role <@7>", False)
    assert strip_mentions(f"<@{BOT}1> longer id", BOT, set())[1] is False
    assert strip_mentions(f"a\n<@{BOT}>\nb", BOT, set()) == ("a\n \nb", True)


def test_an_open_code_fence_is_closed_while_streaming_only() -> None:
    renderer = DiscordRenderer(max_length=40)
    assert open_fence("```py\nx = 1\n```\ntext") is None
    assert open_fence("text\n```py\nx = 1") == "```"
    assert open_fence("~~~~\n```\nstill code") == "~~~~"
    assert renderer.partial("```py\nx = 1\n").text == "```py\nx = 1\n```"
    assert renderer.final("```py\nx = 1\n").text == "```py\nx = 1\n"
    long = "```\n" + "x" * 36
    assert renderer.partial(long).text == long, "no room for the fence: left as it is"


def test_api_base_url_without_a_path_means_api_v10() -> None:
    assert rest_base("http://127.0.0.1:9000") == "http://127.0.0.1:9000/api/v10"
    assert rest_base("http://127.0.0.1:9000/") == "http://127.0.0.1:9000/api/v10"
    assert rest_base("https://proxy.example/api/v10/") == "https://proxy.example/api/v10"


async def test_a_streamed_message_deleted_mid_answer_still_gets_the_answer(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot()
    text = " ".join(f"word{i}" for i in range(100))
    bot.llm.script(Behaviour(reply=text, chunk_delay=0.01))
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> stream")
    [first] = await dc.wait_bot_messages(GENERAL, 1)
    first.deleted = True  # a moderator removed it while it streamed
    [answer] = await bot.answer(GENERAL)
    assert answer.id != first.id
    assert answer.content == text


async def test_a_429_without_via_on_the_final_is_waited_out(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(stream=False)
    bot.llm.script(Behaviour(reply="a complete answer that must not be cut"))
    dc.fail_next("POST /channels/{channel_id}/messages", 429, retry_after=0.3, via=False)
    dc.send_message(OTHER, ALICE, f"<@{BOT}> go")
    [answer] = await bot.answer(OTHER)
    assert answer.content == "a complete answer that must not be cut"
    assert dc.count_429 == 1


async def test_a_streamed_code_block_is_never_shown_unclosed(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot()
    reply = "Look:\n\n```python\n" + "\n".join(f"x{i} = {i}" for i in range(40)) + "\n```\nDone."
    bot.llm.script(Behaviour(reply=reply, chunk_delay=0.01))
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> code please")
    [answer] = await bot.answer(GENERAL)
    assert answer.content == reply
    shown = [r.content for r in answer.history] + [answer.content]
    assert any("```python" in c for c in shown[:-1]), "the block was seen mid-stream"
    assert all(c.count("```") % 2 == 0 for c in shown)


def test_endpoints_are_process_wide_shared_and_restored() -> None:
    base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    with _Endpoints.use("http://127.0.0.1:1", "ws://127.0.0.1:1/gateway"):
        assert discord.http.Route.BASE == "http://127.0.0.1:1/api/v10"
        with _Endpoints.use("http://127.0.0.1:1", "ws://127.0.0.1:1/gateway"):
            pass  # a second bot on the same endpoints is fine
        assert discord.http.Route.BASE == "http://127.0.0.1:1/api/v10", "still in use"
        with (
            pytest.raises(AdapterStartError, match="same api_base_url"),
            _Endpoints.use("http://127.0.0.1:2", None),
        ):
            pass
    assert base == discord.http.Route.BASE
    assert gateway == discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"shard_ids": [0]}, "shard_ids: needs shard_count"),
        ({"shard_ids": [2], "shard_count": 2}, "shard_ids: each id once, from 0 to 1"),
        ({"shard_ids": [0, 0], "shard_count": 2}, "shard_ids: each id once"),
    ],
)
def test_shard_keys_are_checked_with_one_line(keys: dict[str, object], message: str) -> None:
    bot = {"name": "a", "platform": "discord", "token": "t", **keys}
    with pytest.raises(ConfigError, match=message) as caught:
        parse_config({"bots": [bot]})
    assert "\n" not in str(caught.value)


async def test_a_command_guild_that_is_not_an_id_stops_with_one_line(
    start_bot: StartBot,
) -> None:
    with pytest.raises(AdapterStartError, match="command_guilds: server ids are numbers"):
        await start_bot(command_guilds=["my-server"])


async def test_an_unreachable_api_stops_with_one_line(start_bot: StartBot) -> None:
    with pytest.raises(AdapterStartError, match="cannot reach the Discord API at") as caught:
        await start_bot(api_base_url="http://127.0.0.1:9")
    assert "\n" not in str(caught.value)


async def test_a_message_in_a_thread_discord_py_never_saw_is_answered(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    # Registered after READY / GUILD_CREATE and without THREAD_CREATE: discord.py has
    # no Thread for it, so the message comes with a PartialMessageable.
    bot = await start_bot(allowed_chats=[GENERAL])
    hidden = dc.thread(GENERAL, 820_000_000_000_000_031, "unseen", owner=ALICE)
    question = dc.send_message(hidden, ALICE, f"<@{BOT}> anyone here?")
    [answer] = await bot.answer(hidden.id)
    assert answer.content == "Echo: anyone here?"
    assert answer.reference == question.id
    assert [c.params["channel_id"] for c in dc.calls_to("GET /channels/{channel_id}")] == [
        str(hidden.id)
    ], "the channel was fetched once, for the user's message only"
    dc.send_message(hidden, ALICE, f"<@{BOT}> and again")
    await bot.answer(hidden.id, 2)
    assert [c for _, c in bot.prompts()[-1]] == ["anyone here?", "Echo: anyone here?", "and again"]


async def test_a_message_in_an_unknown_channel_that_cannot_be_fetched_is_logged(
    start_bot: StartBot, dc: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot()
    hidden = dc.thread(GENERAL, 820_000_000_000_000_032, "unseen")
    dc.fail_next("GET /channels/{channel_id}", 403, "Missing Access", code=50001)
    with caplog.at_level(logging.INFO, logger="adapters.discord"):
        dc.send_message(hidden, ALICE, f"<@{BOT}> hello?")
        await dc.wait_calls("GET /channels/{channel_id}")
        await bot.settled()
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].levelno == logging.INFO
    assert str(hidden.id) in dropped[0].getMessage()
    assert "Missing Access" in dropped[0].getMessage()
    assert bot.llm.chat_requests == [] and dc.bot_messages(hidden.id) == []
