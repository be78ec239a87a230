"""A Telegram bot on PostgreSQL whose server goes away mid-run (``pg_ctl restart``,
``pg_ctl stop`` then ``start``) while answers stream and more messages arrive.

Every message gets exactly one answer or one plain-words error; nothing is committed
twice or half; and once the server is back the same running bot answers again, on
conversations whose chains are unbroken."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from core import turn_gate
from core.chat_service import NO_DATABASE_TEXT, NOT_SAVED_TEXT
from tests.adapters.telegram.conftest import ALICE, Bot, StartBot
from tests.fakes.openai_server import Behaviour
from tests.fakes.telegram_api import FakeTelegram
from tests.faults.conftest import FAST_BACKEND, answers_by_question, stored
from tests.pg import PostgresCluster

GROUP_A, GROUP_B = -100801, -100802


def ask(tg: FakeTelegram, chat: int, text: str) -> int:
    sent = tg.send_text(chat, ALICE, f"@parley_bot {text}")
    return int(sent["message_id"])


async def answered(tg: FakeTelegram, chat: int, n: int) -> None:
    """Wait until ``n`` questions in ``chat`` have their answer or error."""
    await tg.wait_for(lambda: len(answers_by_question(tg, chat)) >= n, timeout=30)


ERRORS = (NO_DATABASE_TEXT,)


def outcomes(tg: FakeTelegram, chat: int, questions: list[int]) -> dict[int, list[str]]:
    """Every question's bot messages, checked: exactly one answer or one plain error,
    and a complete answer at most followed by the note that it was not saved."""
    found = answers_by_question(tg, chat)
    assert sorted(found) == sorted(questions), (found, questions)
    for question, texts in found.items():
        if texts[0] in ERRORS:
            assert len(texts) == 1, (question, texts)
        else:
            assert texts[1:] in ([], [NOT_SAVED_TEXT]), (question, texts)
    return found


async def wait_inbox(
    bot: Bot, check: Callable[[list[tuple[str | None, str, str | None]]], bool]
) -> None:
    """Poll the store until ``check(inbox rows)`` holds (the database may be away)."""
    for _ in range(200):
        try:
            if check((await stored(bot.app)).inbox):
                return
        except Exception:  # away: try again
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"inbox never got there: {(await stored(bot.app)).inbox}")


def no_sql_in_logs(caplog: pytest.LogCaptureFixture) -> None:
    """The operator reads one line per failure: no SQL statement with its parameters
    (the user's text) in a log line."""
    for record in caplog.records:
        if record.levelno >= logging.WARNING:
            assert "[SQL:" not in record.getMessage(), record.getMessage()
            # An outage is one line per message, its traceback only at DEBUG.
            assert record.exc_info is None, f"traceback logged: {record.getMessage()}"


SLOW = " ".join(f"w{i}" for i in range(80))  # 80 chunks 0.05 s apart: about 4 s


async def test_a_postgres_restart_mid_run_loses_and_doubles_nothing(
    start_bot: StartBot,
    tg: FakeTelegram,
    own_postgres: PostgresCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``pg_ctl restart`` while two groups' answers stream and a message waits behind
    each: the answers in flight are kept (their commit finds a fresh connection), the
    waiting messages are answered after them, a message that comes while the server is
    down is told so, and the same bot then goes on answering on unbroken chains."""
    caplog.set_level(logging.INFO)
    chats = (GROUP_A, GROUP_B)
    for chat in chats:
        tg.group(chat, str(chat), supergroup=True)
    bot = await start_bot(database_url=own_postgres.url(), backend=FAST_BACKEND)
    questions: dict[int, list[int]] = {chat: [ask(tg, chat, "first")] for chat in chats}
    for chat in chats:
        await bot.answer(chat)  # the pool now holds connections the restart will cut

    bot.llm.default = Behaviour(reply=SLOW, chunk_delay=0.05)
    for chat in chats:
        questions[chat].append(ask(tg, chat, "slow one"))
        questions[chat].append(ask(tg, chat, "queued"))
    await tg.wait_for(lambda: all(len(tg.bot_messages(chat)) == 2 for chat in chats))
    await wait_inbox(bot, lambda rows: len(rows) == 6)  # the queued ones wait in the inbox
    bot.llm.default = Behaviour()
    restart = asyncio.ensure_future(asyncio.to_thread(own_postgres.restart))
    await asyncio.sleep(0.05)
    for chat in chats:
        questions[chat].append(ask(tg, chat, "during the restart"))
    await restart
    assert all(tg.bot_messages(chat)[1].text != SLOW for chat in chats), "still streaming"

    for chat in chats:
        await answered(tg, chat, 4)
        questions[chat].append(ask(tg, chat, "after"))
        await answered(tg, chat, 5)
    await bot.settled()

    after = await stored(bot.app)
    chains = 0
    for chat in chats:
        found = outcomes(tg, chat, questions[chat])
        first, slow, queued, during, late = (found[q] for q in questions[chat])
        assert first == ["Echo: first"]
        assert slow == [SLOW], "the answer in flight was kept"
        assert queued == ["Echo: queued"], "the waiting message was answered"
        assert late == ["Echo: after"], "the bot answers again, unrestarted"
        chain = after.chain(f"telegram:chat:{chat}")
        expected = ["first", "Echo: first", "slow one", SLOW, "queued", "Echo: queued"]
        if during != [NO_DATABASE_TEXT]:
            assert during == ["Echo: during the restart"]
            expected += ["during the restart", "Echo: during the restart"]
        assert chain == [*expected, "after", "Echo: after"]
        # What was committed is what the model was shown for the last question.
        assert chain[:-1] in [[c for _, c in p] for p in bot.prompts() if p[-1][1] == "after"]
        chains += len(chain)
    assert len(after.messages) == chains, "a message stored outside the chains (twice?)"
    assert all(state == "done" for _, state, _ in after.inbox), after.inbox
    no_sql_in_logs(caplog)


async def test_postgres_down_at_commit_time(
    start_bot: StartBot,
    tg: FakeTelegram,
    own_postgres: PostgresCluster,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server stops while answers stream (in a group, with a message waiting
    behind it, and in a DM) and starts again seconds later: the shown answers are
    followed by a note that they could not be saved and the conversations do not
    advance; the waiting message rides out the outage and is answered after; a message
    sent meanwhile is told the database is away; no inbox entry is left open (one
    left would hold its scope or, at the next start, be "recovered": answered twice or
    marked cut off over a complete answer)."""
    caplog.set_level(logging.INFO)
    tg.group(GROUP_A, "A", supergroup=True)
    bot = await start_bot(database_url=own_postgres.url(), backend=FAST_BACKEND)
    questions = [ask(tg, GROUP_A, "first")]
    tg.send_text(ALICE, ALICE, "my name is Alice")
    await bot.answer(GROUP_A)
    await bot.answer(ALICE)

    bot.llm.default = Behaviour(reply=SLOW, chunk_delay=0.05)
    questions += [ask(tg, GROUP_A, "slow one"), ask(tg, GROUP_A, "queued")]
    tg.send_text(ALICE, ALICE, "tell me a long story")
    await tg.wait_for(lambda: len(tg.bot_messages(GROUP_A)) == 2 and tg.drafts.get(ALICE))
    await wait_inbox(bot, lambda rows: len(rows) == 5)
    bot.llm.default = Behaviour()
    await asyncio.to_thread(own_postgres.stop_server)
    await tg.wait_for(lambda: NOT_SAVED_TEXT in answers_by_question(tg, GROUP_A).get(3, []))
    await tg.wait_bot_messages(ALICE, 3)
    questions.append(ask(tg, GROUP_A, "while it is down"))
    await tg.wait_for(lambda: len(answers_by_question(tg, GROUP_A)) == 3)  # queued: waits
    await asyncio.to_thread(own_postgres.start_server)

    await answered(tg, GROUP_A, 4)
    # Nothing else happens in the DM, yet its entry is closed once the server is back.
    await wait_inbox(bot, lambda rows: all(state == "done" for _, state, _ in rows))
    questions.append(ask(tg, GROUP_A, "after"))
    tg.send_text(ALICE, ALICE, "what is my name?")
    await answered(tg, GROUP_A, 5)
    await tg.wait_bot_messages(ALICE, 4)
    await bot.settled()

    found = outcomes(tg, GROUP_A, questions)
    first, slow, queued, down, late = (found[q] for q in questions)
    assert first == ["Echo: first"]
    assert slow == [SLOW, NOT_SAVED_TEXT]
    assert queued == ["Echo: queued"]
    assert down == [NO_DATABASE_TEXT]
    assert late == ["Echo: after"]
    assert [m.text for m in tg.bot_messages(ALICE)] == [
        "Echo: my name is Alice",
        SLOW,
        NOT_SAVED_TEXT,
        "Echo: what is my name?",
    ]
    after = await stored(bot.app)
    assert after.chain(f"telegram:chat:{GROUP_A}") == [
        "first", "Echo: first", "queued", "Echo: queued", "after", "Echo: after",
    ]  # fmt: skip
    assert after.chain(f"telegram:chat:{ALICE}") == [
        "my name is Alice", "Echo: my name is Alice", "what is my name?", "Echo: what is my name?",
    ]  # fmt: skip
    assert "slow one" not in after.texts("user") and SLOW not in after.texts("assistant")
    assert [outcome for _, _, outcome in after.inbox].count("failed") == 2
    no_sql_in_logs(caplog)


async def test_the_first_message_after_a_quiet_restart_is_answered(
    start_bot: StartBot, tg: FakeTelegram, own_postgres: PostgresCluster
) -> None:
    """Every pooled connection died in the restart; the pool tests one before handing
    it out (pool_pre_ping), so the first message after it is answered, not refused."""
    bot = await start_bot(database_url=own_postgres.url(), backend=FAST_BACKEND)
    tg.send_text(ALICE, ALICE, "my name is Alice")
    await bot.answer(ALICE)
    await asyncio.to_thread(own_postgres.restart)
    tg.send_text(ALICE, ALICE, "what is my name?")
    _, answer = await bot.answer(ALICE, 2)
    assert answer.text == "Echo: what is my name?"
    assert (await stored(bot.app)).chain(f"telegram:chat:{ALICE}") == [
        "my name is Alice", "Echo: my name is Alice", "what is my name?", "Echo: what is my name?",
    ]  # fmt: skip


async def test_a_message_that_waits_longer_than_the_outage_patience_is_told_why(
    start_bot: StartBot,
    tg: FakeTelegram,
    own_postgres: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A waiting message gives up once the database has been away for OUTAGE_PATIENCE
    (shortened here): its user hears that the database is away, not that something
    went wrong, and its entry is closed when the server is back."""
    monkeypatch.setattr(turn_gate, "OUTAGE_PATIENCE", 0.5)
    tg.group(GROUP_A, "A", supergroup=True)
    bot = await start_bot(database_url=own_postgres.url(), backend=FAST_BACKEND)
    bot.llm.default = Behaviour(reply=SLOW, chunk_delay=0.05)
    questions = [ask(tg, GROUP_A, "slow one"), ask(tg, GROUP_A, "queued")]
    await tg.wait_bot_messages(GROUP_A, 1)
    await wait_inbox(bot, lambda rows: len(rows) == 2)
    await asyncio.to_thread(own_postgres.stop_server)
    await answered(tg, GROUP_A, 2)
    await asyncio.to_thread(own_postgres.start_server)
    await wait_inbox(bot, lambda rows: all(state == "done" for _, state, _ in rows))

    bot.llm.default = Behaviour()
    questions.append(ask(tg, GROUP_A, "after"))
    await answered(tg, GROUP_A, 3)
    await bot.settled()
    found = outcomes(tg, GROUP_A, questions)
    assert [found[q] for q in questions] == [
        [SLOW, NOT_SAVED_TEXT],
        [NO_DATABASE_TEXT],
        ["Echo: after"],
    ]
    assert (await stored(bot.app)).chain(f"telegram:chat:{GROUP_A}") == ["after", "Echo: after"]
