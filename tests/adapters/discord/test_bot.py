"""The Discord bot end to end: real discord.py over loopback against the fake Discord
(REST + gateway), the fake LLM, and the real store."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

import pytest

from adapters.base import AdapterStartError
from tests.adapters.discord.conftest import (
    ALICE,
    BOB,
    BOT,
    BOT_ROLE,
    FAST,
    FAST_FLOOD,
    GENERAL,
    GUILD,
    MODS,
    OTHER,
    OTHER_BOT,
    THREAD_A,
    THREAD_B,
    StartBot,
)
from tests.fakes.discord_api import FakeDiscord, FloodLimits
from tests.fakes.openai_server import Behaviour


async def test_a_mention_in_a_channel_is_answered_as_a_reply_and_chatter_is_not(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot()
    dc.send_message(GENERAL, ALICE, "just chatting")
    question = dc.send_message(GENERAL, ALICE, f"<@{BOT}> what is up?")
    [answer] = await bot.answer(GENERAL)
    assert answer.content == "Echo: what is up?"
    assert answer.reference == question.id, "in a server the answer replies to the question"
    assert answer.mentions == [], "the author is not pinged (ping_on_reply is off)"
    assert len(bot.llm.chat_requests) == 1, "the unaddressed message was ignored"
    assert dc.calls_to("typing"), "typing was shown"


async def test_the_bots_role_mention_and_the_nick_form_address_it(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot()
    dc.send_message(GENERAL, ALICE, f"<@&{BOT_ROLE}> via the role")
    await bot.answer(GENERAL, 1)
    dc.send_message(GENERAL, BOB, f"hey <@!{BOT}> via the nick form")
    await bot.answer(GENERAL, 2)
    dc.send_message(GENERAL, BOB, f"<@&{MODS}> another role is not us")
    await bot.settled()
    assert [p[-1] for p in bot.prompts()] == [
        ("user", "via the role"),
        ("user", "hey via the nick form"),
    ]


async def test_group_trigger_always_answers_everything_but_other_bots(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(group_trigger="always")
    dc.send_message(GENERAL, OTHER_BOT, "I am a bot")
    dc.send_message(GENERAL, ALICE, "just chatting")
    [answer] = await bot.answer(GENERAL)
    assert answer.content == "Echo: just chatting"
    dc.send_message(GENERAL, ALICE, "a pin", type=6)  # a system message
    await bot.settled()
    assert len(bot.llm.chat_requests) == 1


async def test_a_dm_is_answered_without_quoting_and_remembered(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot()
    dm = dc.dm(ALICE)
    dc.send_message(dm, ALICE, "hello there")
    [answer] = await bot.answer(dm.id)
    assert answer.content == "Echo: hello there"
    assert answer.reference is None
    dc.send_message(dm, ALICE, "and again")
    await bot.answer(dm.id, 2)
    assert bot.prompts()[-1] == [
        ("user", "hello there"),
        ("assistant", "Echo: hello there"),
        ("user", "and again"),
    ]


async def test_a_reply_to_an_older_answer_branches_from_it(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot()
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> first")
    [first] = await bot.answer(GENERAL, 1)
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> second")
    await bot.answer(GENERAL, 2)
    dc.send_message(GENERAL, BOB, "branch", reference=first.id)  # a reply is a trigger
    await bot.answer(GENERAL, 3)
    assert bot.prompts()[-1] == [
        ("user", "first"),
        ("assistant", "Echo: first"),
        ("user", "branch"),
    ]
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> and on")  # the head moved to the branch
    await bot.answer(GENERAL, 4)
    assert [c for _, c in bot.prompts()[-1]] == [
        "first",
        "Echo: first",
        "branch",
        "Echo: branch",
        "and on",
    ]


async def test_a_long_answer_is_split_and_a_reply_to_its_second_part_branches(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    code = "```python\n" + "\n".join(f"print({i})  # a line of code" for i in range(200)) + "\n```"
    long_answer = "Here is the code:\n\n" + code + "\n\nThat was it."
    bot = await start_bot()
    bot.llm.script(Behaviour(reply=long_answer))
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> write a lot")
    parts = await bot.answer(GENERAL, 3)
    assert len(parts) == 3
    assert all(len(p.content) <= 2000 for p in parts)
    for part in parts:  # a code block cut by a split is closed and reopened
        assert part.content.count("```") % 2 == 0, part.content[-80:]
    assert parts[1].content.startswith("```python\n")
    dc.send_message(GENERAL, ALICE, "about part two", reference=parts[1].id)
    await bot.answer(GENERAL, 4)
    branch = bot.prompts()[-1]
    assert branch[-2][0] == "assistant" and branch[-2][1] == long_answer
    assert branch[-1] == ("user", "about part two")


async def test_streaming_by_edits_in_flood_mode_gets_no_429(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    dc.flood = FAST_FLOOD
    bot = await start_bot()
    text = " ".join(f"word{i}" for i in range(700))  # ~5,500 characters: three messages
    bot.llm.script(
        Behaviour(reply=text, chunk_delay=0.003),
        Behaviour(reply=text, chunk_delay=0.003),
    )
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> talk")
    dc.send_message(OTHER, BOB, f"<@{BOT}> talk too")
    for channel in (GENERAL, OTHER):
        parts = await bot.answer(channel, 3)
        assert " ".join(p.content for p in parts).split() == text.split()
        assert any(p.history for p in parts), "the answer streamed by edits"
    assert dc.count_429 == 0


async def test_mass_mentions_in_the_answer_ping_nobody(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    dc.role(dc.guilds[next(iter(dc.guilds))], 830_000_000_000_000_003, "all", mentionable=True)
    reply = f"@everyone and @here, <@&{MODS}> <@&830000000000000003> and <@{BOB}>: " + "look " * 30
    bot = await start_bot()
    bot.llm.script(Behaviour(reply=reply, chunk_delay=0.01))
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> ping everyone")
    [answer] = await bot.answer(GENERAL)
    assert answer.content == reply.strip()
    assert answer.history, "streamed: the edits were checked too"
    assert not answer.mention_everyone
    assert answer.mention_roles == []
    assert answer.mentions == []
    for call in dc.calls_to("POST /channels/{channel_id}/messages") + dc.calls_to(
        "PATCH /channels/{channel_id}/messages/{message_id}"
    ):
        assert call.body is not None and call.body["allowed_mentions"]["parse"] == []


async def test_ping_on_reply_pings_the_author_only(start_bot: StartBot, dc: FakeDiscord) -> None:
    bot = await start_bot(ping_on_reply=True)
    bot.llm.script(Behaviour(reply="@everyone hello"))
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> hi")
    [answer] = await bot.answer(GENERAL)
    assert answer.mentions == [ALICE]
    assert not answer.mention_everyone


async def test_each_thread_is_its_own_scope_with_scope_thread(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(scope="thread", group_trigger="always")
    dc.send_message(THREAD_A, ALICE, "I am in thread a")
    await bot.answer(THREAD_A, 1)
    dc.send_message(THREAD_B, ALICE, "I am in thread b")
    await bot.answer(THREAD_B, 1)
    dc.send_message(THREAD_A, BOB, "where am I?")
    await bot.answer(THREAD_A, 2)
    assert [c for _, c in bot.prompts()[-1]] == [
        "I am in thread a",
        "Echo: I am in thread a",
        "where am I?",
    ]


async def test_allowed_chats_lists_the_parent_channel_of_a_thread(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(allowed_chats=[GENERAL], group_trigger="always")
    dc.send_message(OTHER, ALICE, "not here")
    dc.send_message(THREAD_A, ALICE, "in general's thread")
    await bot.answer(THREAD_A, 1)
    await bot.settled()
    assert dc.bot_messages(OTHER) == []
    assert [p[-1] for p in bot.prompts()] == [("user", "in general's thread")]


async def test_a_backend_failure_is_told_in_plain_words_and_commits_nothing(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot()
    dm = dc.dm(ALICE)
    dc.send_message(dm, ALICE, "one")
    await bot.answer(dm.id, 1)
    bot.llm.script(Behaviour.http_error(503, "overloaded"))
    dc.send_message(dm, ALICE, "two")
    [_, failure] = await bot.answer(dm.id, 2)
    assert "AI backend" in failure.content
    assert "503" not in failure.content, "operator detail stays in the log"
    dc.send_message(dm, ALICE, "three")
    await bot.answer(dm.id, 3)
    assert bot.prompts()[-1] == [("user", "one"), ("assistant", "Echo: one"), ("user", "three")]


async def test_a_channel_without_permission_is_logged_and_nothing_breaks(
    start_bot: StartBot, dc: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot()
    dc.forbid(OTHER)
    with caplog.at_level(logging.WARNING):
        dc.send_message(OTHER, BOB, f"<@{BOT}> hi")
        await dc.wait_for(lambda: len(bot.llm.chat_requests) == 1 or None)
        await bot.settled()
    assert any("permissions" in r.getMessage() for r in caplog.records)
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> still there?")
    [answer] = await bot.answer(GENERAL)
    assert answer.content == "Echo: still there?"
    assert not bot.task.done()
    dc.forbid(OTHER, False)
    dc.send_message(OTHER, BOB, f"<@{BOT}> again")
    await bot.answer(OTHER)
    assert bot.prompts()[-1] == [("user", "again")], "the undelivered turn was not committed"


async def test_a_bad_token_stops_with_one_line(start_bot: StartBot) -> None:
    with pytest.raises(AdapterStartError, match="rejected the bot token") as caught:
        await start_bot(token="MTAw.wrong.token")
    assert "wrong" not in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_a_missing_message_content_intent_says_what_to_enable(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    dc.allowed_intents = 0
    with pytest.raises(AdapterStartError, match="Message Content"):
        await start_bot()


async def test_a_gateway_reconnect_mid_answer_loses_nothing(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot()
    text = " ".join(f"word{i}" for i in range(80))
    bot.llm.script(Behaviour(reply=text, chunk_delay=0.01), Behaviour(reply="second answer"))
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> long one")
    await dc.wait_bot_messages(GENERAL, 1)
    await dc.reconnect()  # op 7 while the answer streams
    dc.send_message(GENERAL, BOB, f"<@{BOT}> while reconnecting")
    await dc.wait_for(lambda: dc.resumes, timeout=10)
    parts = await bot.answer(GENERAL, 2)
    assert parts[0].content == text
    assert parts[1].content == "second answer"


async def test_the_conversation_survives_a_restart(start_bot: StartBot, dc: FakeDiscord) -> None:
    bot = await start_bot()
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> remember the word kumquat")
    await bot.answer(GENERAL, 1)
    await bot.restart()
    bot = await start_bot()
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> what was the word?")
    await bot.answer(GENERAL, 2)
    assert bot.prompts()[-1] == [
        ("user", "remember the word kumquat"),
        ("assistant", "Echo: remember the word kumquat"),
        ("user", "what was the word?"),
    ]


async def test_sigterm_lets_an_answer_in_flight_finish(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(shutdown_grace=5)
    text = " ".join(f"word{i}" for i in range(60))
    bot.llm.script(Behaviour(reply=text, chunk_delay=0.01))
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> go")
    await dc.wait_for(lambda: bot.llm.chat_requests)
    bot.stop.set()
    dc.send_message(GENERAL, BOB, f"<@{BOT}> too late")
    await asyncio.wait_for(bot.task, 10)
    [answer] = dc.bot_messages(GENERAL)
    assert answer.content == text
    assert len(bot.llm.chat_requests) == 1


async def test_many_channels_streaming_at_once_stay_within_the_global_limit(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    # discord.py paces each channel's bucket from the headers, but learns of the global
    # limit only from a 429: keeping under it is the shared scheduler's job.
    channels = [820_000_000_000_000_100 + i for i in range(12)]
    for channel in channels:
        dc.channel(dc.guilds[next(iter(dc.guilds))], channel, f"c{channel % 100}")
    dc.flood = FloodLimits(channel=(5, 0.5), overall=(10, 0.1), slack=0.02)
    bot = await start_bot(limits=replace(FAST, global_ops=10, global_period=0.1))
    text = " ".join(f"word{i}" for i in range(150))
    bot.llm.script(*[Behaviour(reply=text, chunk_delay=0.01) for _ in channels])
    for channel in channels:
        dc.send_message(channel, ALICE, f"<@{BOT}> talk")
    for channel in channels:
        [answer] = await bot.answer(channel)
        assert answer.content == text
    assert dc.count_429 == 0, [(c.route, round(c.time, 3)) for c in dc.calls if c.status == 429]


@pytest.mark.parametrize("fault", ["drop", "invalid_session"])
async def test_a_dropped_socket_or_resumable_invalid_session_loses_nothing(
    start_bot: StartBot, dc: FakeDiscord, fault: str
) -> None:
    bot = await start_bot()
    text = " ".join(f"word{i}" for i in range(60))
    bot.llm.script(Behaviour(reply=text, chunk_delay=0.01), Behaviour(reply="second answer"))
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> long one")
    await dc.wait_bot_messages(GENERAL, 1)
    if fault == "drop":
        await dc.drop()
    else:
        await dc.invalid_session(resumable=True)
    dc.send_message(GENERAL, BOB, f"<@{BOT}> meanwhile")  # replayed on RESUME
    parts = await bot.answer(GENERAL, 2)
    assert [p.content for p in parts] == [text, "second answer"]
    assert len(dc.identifies) == 1, "resumed, not identified anew"


async def test_allowed_roles_and_guilds_admit_only_who_they_name(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(allowed_roles=[str(MODS)], allowed_guilds=[GUILD])
    dc.send_message(GENERAL, BOB, f"<@{BOT}> I lack the role")
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> I am a mod")
    await bot.answer(GENERAL, 1)
    await bot.settled()
    assert [p[-1] for p in bot.prompts()] == [("user", "I am a mod")]
    dm = dc.dm(BOB)
    dc.send_message(dm, BOB, "a DM has no roles to check")
    [refusal] = await bot.answer(dm.id, 1)
    assert "not allowed" in refusal.content, "a role-limited bot is not open by DM"
    assert len(bot.prompts()) == 1


async def test_a_process_serves_only_its_shards_guilds(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    # 810...001 >> 22 is even: shard 0 of 2. A second guild on shard 1.
    other_guild = next(
        g for g in range(GUILD + (1 << 22), GUILD + (4 << 22), 1 << 22) if (g >> 22) % 2 == 1
    )
    far = dc.channel(dc.guild(other_guild, "Far"), 820_000_000_000_000_200, "far")
    dc.member(other_guild, ALICE)
    bot = await start_bot(shard_count=2, shard_ids=[1])
    assert [i["shard"] for i in dc.identifies] == [[1, 2]]
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> shard 0 is not mine")
    dc.send_message(far, ALICE, f"<@{BOT}> shard 1 is")
    [answer] = await bot.answer(far.id)
    assert answer.content == "Echo: shard 1 is"
    assert dc.bot_messages(GENERAL) == []


async def test_text_attachments_are_read_as_part_of_the_message(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(max_input_chars=200)
    dc.send_message(
        GENERAL,
        ALICE,
        f"<@{BOT}> what does this do?",
        attachments=[("main.py", "print('hi')\n"), ("photo.png", b"\x89PNG\r\n")],
    )
    await bot.answer(GENERAL, 1)
    assert bot.prompts()[-1][-1] == (
        "user",
        "what does this do?\n\n[attached file main.py]\nprint('hi')",
    )
    dc.send_message(GENERAL, BOB, "chatter with a file", attachments=[("notes.md", "# hi")])
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> and this?", attachments=[("big.txt", "x" * 190)])
    [_, refusal] = await bot.answer(GENERAL, 2)
    assert "too long" in refusal.content and "200" in refusal.content
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> huge", attachments=[("huge.log", "y" * 5000)])
    [*_, refusal2] = await bot.answer(GENERAL, 3)
    assert "too long" in refusal2.content
    assert len(bot.llm.chat_requests) == 1, "no backend call for what was refused"
    downloads = [c for c in dc.calls if "attachments" in c.path]
    assert not any(
        "notes.md" in c.path or "huge.log" in c.path or "photo" in c.path for c in downloads
    )


async def test_auto_thread_opens_a_thread_per_question_and_goes_on_there(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(auto_thread=True, scope="thread")
    question = dc.send_message(GENERAL, ALICE, f"<@{BOT}> How do tides work?\nDetails please")
    [answer] = await bot.answer(question.id)  # a thread opened from a message has its id
    thread = dc.channels[question.id]
    assert thread.name == "How do tides work?" and thread.parent_id == GENERAL
    assert answer.content == "Echo: How do tides work?\nDetails please"
    assert dc.bot_messages(GENERAL) == [], "the answer went to the thread"
    dc.send_message(thread, ALICE, "and the moon?")  # no mention needed in its thread
    await bot.answer(thread.id, 2)
    assert [c for _, c in bot.prompts()[-1]][-1] == "and the moon?"
    assert len(bot.prompts()[-1]) == 3
    other = dc.send_message(GENERAL, BOB, f"<@{BOT}> something else")
    await bot.answer(other.id)
    assert bot.prompts()[-1] == [("user", "something else")], "each thread its own scope"


async def test_auto_thread_without_thread_permission_answers_in_the_channel(
    start_bot: StartBot, dc: FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot(auto_thread=True)
    dc.fail_next("threads", 403, "Missing Permissions", code=50013)
    with caplog.at_level(logging.WARNING):
        dc.send_message(GENERAL, ALICE, f"<@{BOT}> hi")
        [answer] = await bot.answer(GENERAL)
    assert answer.content == "Echo: hi"
    assert any("Create Public Threads" in r.getMessage() for r in caplog.records)


async def test_auto_thread_threads_are_their_own_conversation_under_scope_chat(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    """The default scope: a thread is a chat of its own, its channel only counts for
    allowed_chats; and only a mention opens a thread, not every message."""
    bot = await start_bot(auto_thread=True, group_trigger="always", allowed_chats=[GENERAL])
    dc.send_message(GENERAL, BOB, "just chatting")
    [plain] = await bot.answer(GENERAL)
    assert plain.content == "Echo: just chatting", "chatter is answered in the channel"
    first = dc.send_message(GENERAL, ALICE, f"<@{BOT}> first question")
    await bot.answer(first.id)
    second = dc.send_message(GENERAL, ALICE, f"<@{BOT}> second question")
    await bot.answer(second.id)
    assert bot.prompts()[-1] == [("user", "second question")], "a new thread starts afresh"
    dc.send_message(dc.channels[first.id], ALICE, "back in the first")
    await bot.answer(first.id, 2)
    assert [c for _, c in bot.prompts()[-1]] == [
        "first question",
        "Echo: first question",
        "back in the first",
    ]
