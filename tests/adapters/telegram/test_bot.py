"""The Telegram bot end to end: real PTB over loopback against the fake Bot API, the
fake LLM, and the real store."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.adapters.telegram.conftest import ALICE, BOB, FAST_FLOOD, FORUM, GROUP, StartBot
from tests.fakes.openai_server import Behaviour
from tests.fakes.telegram_api import FakeTelegram


async def test_a_dm_is_answered_streamed_as_drafts_then_sent_and_remembered(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot()
    bot.llm.default = Behaviour(chunk_delay=0.15)
    tg.send_text(ALICE, ALICE, "hello there, how are you today?")
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: hello there, how are you today?"
    assert tg.calls_to("sendChatAction"), "typing was shown"
    assert tg.drafts.get(ALICE), "the answer streamed as a draft"
    assert not tg.calls_to("editMessageText"), "DMs stream with drafts, not edits"
    tg.send_text(ALICE, ALICE, "and again")
    await bot.answer(ALICE, 2)
    assert bot.prompts()[-1] == [
        ("user", "hello there, how are you today?"),
        ("assistant", "Echo: hello there, how are you today?"),
        ("user", "and again"),
    ]


async def test_commands_are_registered_and_answered(start_bot: StartBot, tg: FakeTelegram) -> None:
    bot = await start_bot()
    assert [c["command"] for c in tg.commands_for()] == ["start", "help", "reset"]
    tg.send_text(ALICE, ALICE, "/start")
    [greeting] = await bot.answer(ALICE)
    assert "/reset" in (greeting.text or "")
    tg.send_text(ALICE, ALICE, "remember me")
    await bot.answer(ALICE, 2)
    tg.send_text(ALICE, ALICE, "/reset")
    await bot.answer(ALICE, 3)
    tg.send_text(ALICE, ALICE, "fresh")
    await bot.answer(ALICE, 4)
    assert bot.prompts()[-1] == [("user", "fresh")]
    assert len(bot.llm.chat_requests) == 2, "commands never reach the backend"


async def test_groups_answer_mentions_replies_and_commands_only(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot()
    tg.send_text(GROUP, ALICE, "just chatting")
    tg.send_text(GROUP, ALICE, "@parley_bot what is up?")
    [answer] = await bot.answer(GROUP)
    assert answer.text == "Echo: what is up?"
    assert answer.reply_to is not None, "in a group the answer quotes the question"
    tg.send_text(GROUP, BOB, "thanks", reply_to=answer.message_id)
    await bot.answer(GROUP, 2)
    assert len(bot.llm.chat_requests) == 2, "the unaddressed message was ignored"
    assert bot.prompts()[-1][-1] == ("user", "thanks")


async def test_group_trigger_always_answers_everything(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(group_trigger="always")
    tg.send_text(GROUP, ALICE, "just chatting")
    [answer] = await bot.answer(GROUP)
    assert answer.text == "Echo: just chatting"


async def test_scope_chat_user_keeps_one_conversation_per_person_in_a_group(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(scope="chat_user", group_trigger="always")
    tg.send_text(GROUP, ALICE, "I am Alice")
    await bot.answer(GROUP, 1)
    tg.send_text(GROUP, BOB, "I am Bob")
    await bot.answer(GROUP, 2)
    tg.send_text(GROUP, ALICE, "who am I?")
    await bot.answer(GROUP, 3)
    assert bot.prompts()[-1] == [
        ("user", "I am Alice"),
        ("assistant", "Echo: I am Alice"),
        ("user", "who am I?"),
    ]


async def test_forum_topics_are_their_own_scope(start_bot: StartBot, tg: FakeTelegram) -> None:
    bot = await start_bot(scope="thread", group_trigger="always")
    one = tg.create_topic(FORUM, "one")
    two = tg.create_topic(FORUM, "two")
    tg.send_text(FORUM, ALICE, "topic one", thread_id=one)
    [first] = await bot.answer(FORUM, 1, thread_id=one)
    assert first.thread_id == one
    tg.send_text(FORUM, ALICE, "topic two", thread_id=two)
    await bot.answer(FORUM, 1, thread_id=two)
    tg.send_text(FORUM, ALICE, "back in one", thread_id=one)
    await bot.answer(FORUM, 2, thread_id=one)
    assert bot.prompts()[-1] == [
        ("user", "topic one"),
        ("assistant", "Echo: topic one"),
        ("user", "back in one"),
    ]


async def test_a_reply_to_an_older_answer_branches_from_it(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot()
    tg.send_text(ALICE, ALICE, "first")
    [first] = await bot.answer(ALICE, 1)
    tg.send_text(ALICE, ALICE, "second")
    await bot.answer(ALICE, 2)
    tg.send_text(ALICE, ALICE, "branch", reply_to=first.message_id)
    await bot.answer(ALICE, 3)
    assert bot.prompts()[-1] == [
        ("user", "first"),
        ("assistant", "Echo: first"),
        ("user", "branch"),
    ]
    tg.send_text(ALICE, ALICE, "and on")  # the head moved to the branch
    await bot.answer(ALICE, 4)
    assert [c for _, c in bot.prompts()[-1]] == [
        "first",
        "Echo: first",
        "branch",
        "Echo: branch",
        "and on",
    ]


async def test_a_long_answer_is_split_and_a_reply_to_its_second_part_branches(
    start_bot: StartBot, tg: FakeTelegram, llm: object
) -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 20 for i in range(20)]
    long_answer = "\n\n".join(paragraphs)  # ~11,000 characters
    bot = await start_bot()
    bot.llm.script(Behaviour(reply=long_answer))
    tg.send_text(GROUP, ALICE, "@parley_bot write a lot")
    await bot.tg.wait_for(lambda: len(bot.llm.chat_requests) == 1)
    parts = await bot.answer(GROUP, 3)
    assert len(parts) == 3
    assert all(len((p.text or "").encode("utf-16-le")) // 2 <= 4096 for p in parts)
    assert "\n\n".join(p.text or "" for p in parts).split() == long_answer.split()
    tg.send_text(GROUP, ALICE, "about part two", reply_to=parts[1].message_id)
    await bot.answer(GROUP, 4)
    branch = bot.prompts()[-1]
    assert branch[-2][0] == "assistant" and branch[-2][1].split() == long_answer.split()
    assert branch[-1] == ("user", "about part two")


async def test_five_quick_messages_are_answered_as_one_unbroken_chain(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot()
    for i in range(5):
        tg.send_text(ALICE, ALICE, f"m{i}")
    await bot.answer(ALICE, 5)
    prompts = bot.prompts()
    assert len(prompts) == 5
    for i, prompt in enumerate(prompts):
        expected: list[tuple[str, str]] = []
        for j in range(i):
            expected += [("user", f"m{j}"), ("assistant", f"Echo: m{j}")]
        assert prompt == [*expected, ("user", f"m{i}")]
    assert [m.text for m in tg.bot_messages(ALICE)] == [f"Echo: m{i}" for i in range(5)]


async def test_markdown_becomes_entities_and_a_refused_text_is_resent_plain(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(stream=False)
    bot.llm.script(Behaviour(reply="This is **bold** and `code`"))
    tg.send_text(ALICE, ALICE, "format")
    [answer] = await bot.answer(ALICE)
    assert answer.text == "This is bold and code"
    assert {e["type"] for e in answer.entities} >= {"bold", "code"}
    assert all(c.params.get("parse_mode") is None for c in tg.calls_to("sendMessage"))
    bot.llm.script(Behaviour(reply="Again **bold**"))
    tg.fail_next("sendMessage", 400, "Bad Request: can't parse entities: whatever")
    tg.send_text(ALICE, ALICE, "format again")
    answers = await bot.answer(ALICE, 2)
    assert answers[-1].text == "Again bold" and not answers[-1].entities


async def test_no_text_is_explained_in_a_dm_and_ignored_in_a_group(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(group_trigger="always")
    tg.send_sticker(GROUP, ALICE)
    tg.send_sticker(ALICE, ALICE)
    [reply] = await bot.answer(ALICE)
    assert reply.text == "I can only read text messages for now."
    tg.send_photo(ALICE, ALICE, caption="what is this?")
    await bot.answer(ALICE, 2)
    assert bot.prompts()[-1] == [("user", "what is this?")]
    assert tg.bot_messages(GROUP) == []


async def test_access_lists_refuse_politely_in_dms_silently_in_groups(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(allowed_users=[ALICE], admins=[])
    tg.send_text(BOB, BOB, "let me in")
    [refusal] = await bot.answer(BOB)
    assert "not allowed" in (refusal.text or "")
    tg.send_text(GROUP, BOB, "@parley_bot me too")
    tg.send_text(ALICE, ALICE, "ok?")
    await bot.answer(ALICE)
    await bot.settled()
    assert tg.bot_messages(GROUP) == []
    assert bot.prompts() == [[("user", "ok?")]]


async def test_a_backend_failure_is_told_in_plain_words_and_commits_nothing(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot()
    tg.send_text(ALICE, ALICE, "one")
    await bot.answer(ALICE, 1)
    bot.llm.script(Behaviour.http_error(503, "overloaded"))
    tg.send_text(ALICE, ALICE, "two")
    [_, failure] = await bot.answer(ALICE, 2)
    assert "AI backend" in (failure.text or "")
    assert "503" not in (failure.text or ""), "operator detail stays in the log"
    tg.send_text(ALICE, ALICE, "three")
    await bot.answer(ALICE, 3)
    assert bot.prompts()[-1] == [("user", "one"), ("assistant", "Echo: one"), ("user", "three")]


async def test_a_user_who_blocked_the_bot_is_logged_and_nothing_breaks(
    start_bot: StartBot, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot()
    tg.block(BOB)
    with caplog.at_level(logging.INFO):
        tg.send_text(BOB, BOB, "hi")
        await tg.wait_for(lambda: len(bot.llm.chat_requests) == 1 or None)
        await bot.settled()
    tg.send_text(ALICE, ALICE, "still there?")
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: still there?"
    assert not bot.task.done()
    tg.unblock(BOB)
    tg.send_text(BOB, BOB, "again")
    await bot.answer(BOB)
    assert bot.prompts()[-1] == [("user", "again")], "the undelivered turn was not committed"


async def test_a_429_on_the_final_text_is_waited_out_and_the_answer_completes(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot()
    bot.llm.script(Behaviour(reply="a complete answer that must not be cut", chunk_delay=0.02))
    tg.fail_next("editMessageText", 429, retry_after=1, times=1)
    tg.fail_next("sendMessage", 429, retry_after=1, times=1)
    tg.send_text(GROUP, ALICE, "@parley_bot go")
    [answer] = await bot.answer(GROUP)
    assert answer.text == "a complete answer that must not be cut"


async def test_streaming_in_flood_mode_gets_no_429(start_bot: StartBot, tg: FakeTelegram) -> None:
    tg.flood = FAST_FLOOD
    bot = await start_bot()
    text = " ".join(f"word{i}" for i in range(400))
    for chat, user in ((GROUP, ALICE), (ALICE, ALICE), (BOB, BOB)):
        bot.llm.script(Behaviour(reply=text, chunk_delay=0.002))
        tg.send_text(chat, user, "@parley_bot talk" if chat == GROUP else "talk")
    for chat in (GROUP, ALICE, BOB):
        [answer] = await bot.answer(chat)
        assert answer.text == text
    assert tg.count_429 == 0
    assert len(tg.calls_to("editMessageText")) >= 2, "the group answer streamed by edits"


async def test_refused_drafts_fall_back_to_edits(start_bot: StartBot, tg: FakeTelegram) -> None:
    tg.reject_drafts = True
    bot = await start_bot()
    bot.llm.script(Behaviour(reply=" ".join(["word"] * 60), chunk_delay=0.01))
    tg.send_text(ALICE, ALICE, "stream")
    [answer] = await bot.answer(ALICE)
    assert answer.text == " ".join(["word"] * 60)
    assert tg.calls_to("editMessageText"), "streamed by editing instead"


async def test_a_bad_token_stops_with_one_line(tg: FakeTelegram, start_bot: StartBot) -> None:
    from adapters.base import AdapterStartError

    with pytest.raises(AdapterStartError, match="rejected the bot token") as caught:
        await start_bot(token="999:wrong")
    assert "999:wrong" not in str(caught.value)
    assert "\n" not in str(caught.value)


async def test_webhook_mode_checks_the_secret_token(
    start_bot: StartBot, tg: FakeTelegram, unused_tcp_port: int
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/tg/hook"
    bot = await start_bot(
        mode="webhook",
        webhook={"url": url, "port": unused_tcp_port, "secret_token": "s3cret-token"},
    )
    assert tg.webhook is not None
    tg.send_text(ALICE, ALICE, "via webhook")
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: via webhook"
    status = await tg.post_webhook(
        {"update_id": 5, "message": tg.message_dict(answer)}, secret_token="wrong"
    )
    assert status == 403
    await asyncio.sleep(0)


async def test_rate_limit_and_input_cap_answer_without_a_backend_call(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(rate_limit={"messages": 2, "per_seconds": 60}, max_input_chars=50)
    tg.send_text(ALICE, ALICE, "x" * 51)
    [too_long] = await bot.answer(ALICE)
    assert "too long" in (too_long.text or "") and "50" in (too_long.text or "")
    for i in range(3):
        tg.send_text(ALICE, ALICE, f"q{i}")
    texts = [m.text or "" for m in (await bot.answer(ALICE, 4))[1:]]
    assert sorted(t for t in texts if t.startswith("Echo")) == ["Echo: q0", "Echo: q1"]
    assert any("try again in 60 s" in t for t in texts)
    assert len(bot.llm.chat_requests) == 2


async def test_group_chatter_the_bot_ignores_shows_no_typing(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot()
    for i in range(3):
        tg.send_text(GROUP, ALICE, f"chatter {i}")
    await tg.wait_for(lambda: not tg.pending_updates)
    await bot.settled()
    assert not tg.calls_to("sendChatAction"), "no typing for messages the bot ignores"
    tg.send_text(GROUP, ALICE, "@parley_bot now you")
    await bot.answer(GROUP)
    assert tg.calls_to("sendChatAction"), "typing for the message it answers"
    assert len(bot.llm.chat_requests) == 1
