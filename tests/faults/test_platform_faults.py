"""Telegram answering 429 (flood control) to the bot's sends and edits: the delivery
layer waits out each ``retry_after`` and every answer still arrives complete, word for
word, once per question, with the conversations committed as shown."""

from __future__ import annotations

from typing import Any

from tests.adapters.telegram.conftest import ALICE, BOB, GROUP, StartBot
from tests.fakes.openai_server import Behaviour
from tests.fakes.telegram_api import FakeTelegram
from tests.fakes.telegram_state import FloodLimits
from tests.faults.conftest import answers_by_question, stored

# Stricter than the limits the bot paces itself by (FAST: 1 op / 0.1 s per chat, 20 /
# 6 s per group), and punishing like Telegram: a refused chat stays refused until its
# retry_after has passed.
STRICT = FloodLimits(chat=(1, 0.3), group=(8, 3.0), overall=(30, 0.1), slack=0.0)


def long_echo(messages: list[dict[str, Any]]) -> str:
    """A long answer that names its question, so a mix-up would show."""
    question = str(messages[-1]["content"])
    return f"About {question}: " + " ".join(f"{question[:3]}{i}" for i in range(40))


async def test_a_flood_of_429s_delays_answers_but_loses_and_doubles_nothing(
    start_bot: StartBot, tg: FakeTelegram
) -> None:
    tg.flood = STRICT
    tg.penalty = True
    bot = await start_bot()
    bot.llm.reply = long_echo
    bot.llm.default = Behaviour(chunk_delay=0.01)
    # And a burst Telegram refuses whatever the pacing: the first sends and edits.
    tg.fail_next("sendMessage", 429, retry_after=1, times=2)
    tg.fail_next("editMessageText", 429, retry_after=1, times=2)
    group = [
        tg.send_text(GROUP, user, f"@parley_bot {text}")
        for user, text in ((ALICE, "apples"), (BOB, "bananas"), (ALICE, "cherries"))
    ]
    tg.send_text(ALICE, ALICE, "dates")
    tg.send_text(BOB, BOB, "elderberries")
    tg.send_text(BOB, BOB, "figs")

    await tg.wait_for(lambda: len(answers_by_question(tg, GROUP)) == 3, timeout=40)
    await tg.wait_bot_messages(BOB, 2, timeout=40)
    await tg.wait_bot_messages(ALICE, 1, timeout=40)
    await bot.settled(1.5)  # a late duplicate would show up here

    print(f"\n{tg.count_429} answers of 429 from Telegram")
    assert tg.count_429 >= 4, "the flood happened"
    found = answers_by_question(tg, GROUP)
    assert [found[q["message_id"]] for q in group] == [
        [long_echo([{"content": text}])] for text in ("apples", "bananas", "cherries")
    ]
    assert [m.text for m in tg.bot_messages(ALICE)] == [long_echo([{"content": "dates"}])]
    assert [m.text for m in tg.bot_messages(BOB)] == [
        long_echo([{"content": text}]) for text in ("elderberries", "figs")
    ]
    assert len(bot.llm.chat_requests) == 6, "each question asked once"
    after = await stored(bot.app)
    assert after.chain(f"telegram:chat:{GROUP}")[::2] == ["apples", "bananas", "cherries"]
    assert after.chain(f"telegram:chat:{BOB}")[::2] == ["elderberries", "figs"]
