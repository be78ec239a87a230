"""Telegram edge cases found in review (real PTB over loopback against the fake Bot API)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import time
from pathlib import Path

import pytest

from adapters.delivery.splitter import utf16_len
from tests.adapters.telegram.conftest import ALICE, BOB, FAST_FLOOD, FORUM, GROUP, StartBot
from tests.fakes.openai_server import Behaviour
from tests.fakes.telegram_api import FakeTelegram


def u16(s: str | None) -> int:
    return utf16_len(s or "")


async def test_group_edit_stream_stalls_once_the_group_budget_is_spent(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    """FAST limits: 20 ops / 6 s per group, edit interval 0.1 s (Telegram x 1/10).
    A ~3 s stream spends the group budget in ~2 s; the final then waits for the window."""
    tg.flood = FAST_FLOOD
    bot = await start_bot()
    words = " ".join(f"w{i}" for i in range(300))
    bot.llm.script(Behaviour(reply=words, chunk_delay=0.01))  # ~3 s of streaming
    tg.send_text(GROUP, ALICE, "@parley_bot talk")
    t0 = time.monotonic()
    await tg.wait_for(lambda: any(m.text == words for m in tg.bot_messages(GROUP)), timeout=30)
    took = time.monotonic() - t0
    edits = [c.time for c in tg.calls_to("editMessageText")]
    gaps = [b - a for a, b in itertools.pairwise(edits)]
    print(f"\nfinal after {took:.2f} s; edits={len(edits)}; max gap {max(gaps):.2f} s")
    assert tg.count_429 == 0
    # The user sees the answer frozen for > 2 s (x10 on Telegram: > 20 s) before the end.
    assert max(gaps) < 2.0, f"answer frozen for {max(gaps):.2f} s (x10 on real Telegram)"


async def test_a_reply_to_the_second_part_of_a_split_dm_answer_branches(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    paragraphs = [f"Paragraph {i}: " + "lorem ipsum dolor sit amet " * 20 for i in range(20)]
    long_answer = "\n\n".join(paragraphs)
    bot = await start_bot()
    bot.llm.script(Behaviour(reply=long_answer, chunk_delay=0.0005))
    tg.send_text(ALICE, ALICE, "write a lot")
    parts = await bot.answer(ALICE, 3)
    assert all(u16(d.text) <= 4096 for d in tg.drafts.get(ALICE, []))
    tg.send_text(ALICE, ALICE, "about part three", reply_to=parts[2].message_id)
    await bot.answer(ALICE, 4)
    assert bot.prompts()[-1][-2][0] == "assistant"
    assert bot.prompts()[-1][-1] == ("user", "about part three")


async def test_markdown_that_grows_in_conversion_is_split_within_4096(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    """'---' becomes eight em dashes: 4,000 characters of Markdown render to ~10,000."""
    answer = "\n\n".join(["intro line", *(["---"] * 800), "the end"])
    bot = await start_bot(stream=False)
    bot.llm.script(Behaviour(reply=answer))
    tg.send_text(ALICE, ALICE, "rules")
    await tg.wait_for(
        lambda: any("the end" in (m.text or "") for m in tg.bot_messages(ALICE)), timeout=20
    )
    await bot.settled()
    parts = tg.bot_messages(ALICE)
    assert all(u16(p.text) <= 4096 for p in parts)
    assert sum((p.text or "").count("—") for p in parts) == 800 * 8


async def test_a_forum_topic_deleted_mid_answer_crashes_nothing(
    start_bot: StartBot, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot(scope="thread", group_trigger="always")
    topic = tg.create_topic(FORUM, "doomed")
    words = " ".join(f"w{i}" for i in range(200))
    bot.llm.script(Behaviour(reply=words, chunk_delay=0.01))
    with caplog.at_level(logging.INFO):
        tg.send_text(FORUM, ALICE, "go", thread_id=topic)
        await tg.wait_for(lambda: tg.bot_messages(FORUM, topic), timeout=10)
        # The topic is deleted: Telegram deletes its messages too.
        del tg.chats[FORUM].topics[topic]
        for m in tg.messages(FORUM, topic):
            m.deleted = True
        await bot.settled(1.0)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    print("\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records[-8:]))
    assert not bot.task.done()
    assert not errors, [r.getMessage() for r in errors]


async def test_a_streamed_message_deleted_mid_answer_still_gets_the_answer(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    """A group admin deletes the bot's half-written message: the final edit fails
    with 'message to edit not found'."""
    bot = await start_bot()
    words = " ".join(f"w{i}" for i in range(200))
    bot.llm.script(Behaviour(reply=words, chunk_delay=0.01))
    tg.send_text(GROUP, ALICE, "@parley_bot go")
    await tg.wait_for(lambda: tg.bot_messages(GROUP), timeout=10)
    for m in tg.bot_messages(GROUP):
        m.deleted = True
    await bot.settled(1.0)
    texts = [m.text for m in tg.bot_messages(GROUP)]
    print("\nshown:", [t[:60] if t else t for t in texts])
    assert words in texts


async def test_a_long_retry_after_on_the_final_is_waited_out(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot()
    tg.fail_next("sendMessage", 429, retry_after=3)
    tg.send_text(ALICE, ALICE, "hi")
    t0 = time.monotonic()
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: hi"
    assert 2.9 < time.monotonic() - t0 < 6
    assert len(tg.calls_to("sendMessage")) == 2


async def test_start_addressed_to_us_in_a_group(start_bot: StartBot, tg: FakeTelegram) -> None:
    bot = await start_bot()
    tg.send_text(GROUP, ALICE, "/start@parley_bot")
    [greeting] = await bot.answer(GROUP)
    assert "/reset" in (greeting.text or "")
    tg.send_text(GROUP, ALICE, "/help@other_bot")
    await bot.settled()
    assert len(tg.bot_messages(GROUP)) == 1


async def test_a_caption_with_a_mention_in_a_group(start_bot: StartBot, tg: FakeTelegram) -> None:
    bot = await start_bot()
    tg.send_photo(GROUP, ALICE, caption="@parley_bot what is this?")
    [answer] = await bot.answer(GROUP)
    assert answer.text == "Echo: what is this?"


async def test_allowed_chats_admits_a_forum_topic_and_what_of_dms(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(allowed_chats=[FORUM], group_trigger="always")
    topic = tg.create_topic(FORUM, "t")
    tg.send_text(FORUM, ALICE, "in topic", thread_id=topic)
    await bot.answer(FORUM, 1, thread_id=topic)
    tg.send_text(GROUP, ALICE, "other group")
    tg.send_text(BOB, BOB, "a stranger's DM")
    await bot.settled()
    assert tg.bot_messages(GROUP) == []
    # Documented ("group ids; empty: every group"), but: any Telegram user may DM the
    # bot although the operator restricted it to one chat.
    assert [m.text for m in tg.bot_messages(BOB)] == ["Echo: a stranger's DM"]


async def test_an_anonymous_group_admin_is_answered(start_bot: StartBot, tg: FakeTelegram) -> None:
    """Anonymous admins write as @GroupAnonymousBot (is_bot=True) with the group as
    sender_chat: a person, not another bot."""
    bot = await start_bot()
    group = {"id": GROUP, "type": "supergroup", "title": "Friends"}
    text = "@parley_bot hello from an anonymous admin"
    anonymous = {"id": 1087968824, "is_bot": True, "first_name": "Group"}
    anonymous["username"] = "GroupAnonymousBot"
    message = {"message_id": 900, "date": 0, "chat": group, "from": anonymous}
    message |= {"sender_chat": group, "text": text}
    message["entities"] = [{"type": "mention", "offset": 0, "length": 11}]
    tg.send_update({"message": message})
    [answer] = await bot.answer(GROUP)
    assert answer.text == "Echo: hello from an anonymous admin"
    other_bot = dict(message, message_id=901, sender_chat=None)
    other_bot["from"] = {"id": 555, "is_bot": True, "first_name": "Other"}
    tg.send_update({"message": {k: v for k, v in other_bot.items() if v is not None}})
    await bot.settled()
    assert len(bot.llm.chat_requests) == 1, "other bots are still ignored"


async def test_scheduler_forgets_idle_chats(start_bot: StartBot, tg: FakeTelegram) -> None:
    bot = await start_bot()
    for uid in range(2000, 2040):
        tg.private_chat(uid, f"U{uid}")
        tg.user(uid, f"U{uid}")
        tg.send_text(uid, uid, "hi")
    await tg.wait_for(lambda: len(bot.llm.chat_requests) == 40, timeout=30)
    await bot.settled(1.0)
    scheduler = bot.adapter._scheduler
    assert scheduler is not None
    await asyncio.sleep(1.0)
    tg.send_text(ALICE, ALICE, "wake the scheduler")
    await bot.answer(ALICE)
    await asyncio.sleep(1.0)
    tg.send_text(ALICE, ALICE, "again")
    await bot.answer(ALICE, 2)
    print("\nchats remembered:", len(scheduler._chats))
    assert len(scheduler._chats) <= 2


async def test_shutdown_while_a_final_waits_out_a_long_429(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(shutdown_grace=1, stream=False)
    tg.fail_next("sendMessage", 429, retry_after=30)
    tg.send_text(ALICE, ALICE, "hi")
    await tg.wait_for(lambda: tg.count_429 == 1, timeout=10)
    t0 = time.monotonic()
    bot.stop.set()
    await asyncio.wait_for(bot.task, 10)
    took = time.monotonic() - t0
    print(f"\nstopped after {took:.2f} s; user sees {[m.text for m in tg.bot_messages(ALICE)]}")
    assert took < 3


async def test_a_dropped_connection_on_send_is_retried(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    bot = await start_bot(stream=False)
    tg.drop_next("sendMessage", 2)
    tg.send_text(ALICE, ALICE, "hi")
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: hi"


async def test_getme_connection_errors_at_start_are_retried(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    tg.drop_next("getMe", 2)
    bot = await start_bot()
    tg.send_text(ALICE, ALICE, "hi")
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: hi"


async def test_a_dm_starting_with_a_path_is_a_question_not_a_command(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    """Telegram marks no bot_command in "/usr/bin/python ..." (a command may not be
    followed by '/'); parley parses any leading '/' as a command."""
    bot = await start_bot()
    update = tg.send_text(ALICE, ALICE, "/usr/bin/python3 crashes on start, why?")
    print("\nentities:", update.get("entities"))
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: /usr/bin/python3 crashes on start, why?", answer.text


@pytest.mark.parametrize("suffix", ["", "/tg/hook/"])
async def test_webhook_urls_without_a_path_or_with_a_trailing_slash(
    start_bot: StartBot, tg: FakeTelegram, unused_tcp_port: int, suffix: str
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}{suffix}"
    bot = await start_bot(
        mode="webhook", webhook={"url": url, "port": unused_tcp_port, "secret_token": "s-1"}
    )
    tg.send_text(ALICE, ALICE, "via webhook")
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: via webhook"


async def test_group_stream_of_markdown_that_grows_stays_within_4096(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    answer = "\n\n".join(["intro line", *(["---"] * 800), "the end"])
    bot = await start_bot()
    bot.llm.script(Behaviour(reply=answer, chunk_delay=0.0005))
    tg.send_text(GROUP, ALICE, "@parley_bot rules")
    await tg.wait_for(
        lambda: any("the end" in (m.text or "") for m in tg.bot_messages(GROUP)), timeout=30
    )
    await bot.settled()
    parts = tg.bot_messages(GROUP)
    assert all(u16(p.text) <= 4096 for p in parts)
    assert sum((p.text or "").count("—") for p in parts) == 800 * 8


async def test_a_server_without_drafts_or_command_menus_still_gets_answers(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    """An older self-hosted Bot API knows neither sendMessageDraft nor (say)
    setMyCommands: 404, which PTB reports as InvalidToken."""
    tg.fail_next("setMyCommands", 404, "Not Found")
    tg.fail_next("sendMessageDraft", 404, "Not Found", times=50)
    bot = await start_bot(api_base_url=tg.url)  # no /bot: the adapter adds it
    bot.llm.script(Behaviour(reply=" ".join(["word"] * 40), chunk_delay=0.02))
    tg.send_text(ALICE, ALICE, "stream please")
    [answer] = await bot.answer(ALICE)
    assert answer.text == " ".join(["word"] * 40)
    assert len(tg.calls_to("sendMessageDraft")) == 1, "drafts tried once, then edits"


async def test_an_update_is_confirmed_only_once_it_is_recorded(
    start_bot: StartBot, tg: FakeTelegram, tmp_path: Path
) -> None:
    """While the database cannot take the message, Telegram is not told it arrived (a
    crash then would otherwise lose it); once it is recorded, it is confirmed and
    answered."""
    bot = await start_bot()
    blocker = sqlite3.connect(tmp_path / "tg.db", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # another process writing, for a second
        tg.send_text(ALICE, ALICE, "hold on")
        await asyncio.sleep(1.0)
        assert [u["message"]["text"] for u in tg.pending_updates] == ["hold on"]
        assert tg.bot_messages(ALICE) == []
    finally:
        blocker.rollback()
        blocker.close()
    [answer] = await bot.answer(ALICE)
    assert answer.text == "Echo: hold on"
    await tg.wait_for(lambda: not tg.pending_updates, timeout=10)


async def test_a_retried_webhook_delivery_is_answered_once(
    start_bot: StartBot, tg: FakeTelegram, unused_tcp_port: int
) -> None:
    """Telegram re-sends an update when it thinks the delivery failed (a timeout, a
    restart behind the proxy): the same message must not get a second answer."""
    url = f"http://127.0.0.1:{unused_tcp_port}/tg/hook"
    bot = await start_bot(
        mode="webhook", webhook={"url": url, "port": unused_tcp_port, "secret_token": "s-2"}
    )
    tg.send_text(ALICE, ALICE, "only once please")
    [answer] = await bot.answer(ALICE)
    [question] = [m for m in tg.messages(ALICE) if m.message_id != answer.message_id]
    update_id = tg.webhook_deliveries[-1].update_id
    for _ in range(2):
        status = await tg.post_webhook(
            {"update_id": update_id, "message": tg.message_dict(question)}
        )
        assert status == 200
    await asyncio.sleep(0.5)
    assert [m.text for m in tg.bot_messages(ALICE)] == ["Echo: only once please"]
    assert len(bot.llm.chat_requests) == 1
