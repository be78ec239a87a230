"""``auto_thread`` end to end: a thread is opened only for a message the bot will
answer; every refusal replies in the channel and leaves no empty thread behind."""

from __future__ import annotations

from tests.adapters.discord.conftest import ALICE, BOB, BOT, GENERAL, MODS, StartBot
from tests.fakes.discord_api import FakeDiscord

THREADS = "POST /channels/{channel_id}/messages/{message_id}/threads"


async def test_refused_and_ignored_messages_open_no_thread(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(
        auto_thread=True,
        max_input_chars=60,
        rate_limit={"messages": 1, "per_seconds": 60},
        allowed_roles=[MODS],  # Alice is a mod, Bob is not
    )
    too_long = dc.send_message(GENERAL, ALICE, f"<@{BOT}> " + "far too long " * 10)
    [refusal] = await bot.answer(GENERAL, 1)
    assert "too long" in refusal.content and "60" in refusal.content
    assert refusal.reference == too_long.id, "the refusal replies in the channel"

    files = dc.send_message(
        GENERAL, ALICE, f"<@{BOT}> read this", attachments=[("big.txt", "x" * 100)]
    )
    [_, files_refusal] = await bot.answer(GENERAL, 2)
    assert "too long" in files_refusal.content and files_refusal.reference == files.id

    dc.send_message(GENERAL, ALICE, f"<@{BOT}>")  # a bare mention: nothing to answer
    dc.send_message(GENERAL, BOB, f"<@{BOT}> let me in")  # denied: silence in a server
    fair = dc.send_message(GENERAL, ALICE, f"<@{BOT}> a fair question")
    [answer] = await bot.answer(fair.id)  # a thread opened from a message has its id
    assert answer.content == "Echo: a fair question"
    assert dc.channels[fair.id].parent_id == GENERAL

    again = dc.send_message(GENERAL, ALICE, f"<@{BOT}> and another one")
    [*_, limited] = await bot.answer(GENERAL, 3)
    assert "faster than I can answer" in limited.content
    assert limited.reference == again.id
    await bot.settled()

    [opened] = dc.calls_to(THREADS)
    assert opened.params["message_id"] == str(fair.id), "only the answered message"
    assert [m.content for m in dc.bot_messages(fair.id)] == ["Echo: a fair question"]
    assert len(dc.bot_messages(GENERAL)) == 3
    assert bot.prompts() == [[("user", "a fair question")]]
