"""Slash commands end to end: synced at start, deferred within Discord's deadline, the
answer streamed into the deferred response, refusals ephemeral."""

from __future__ import annotations

from tests.adapters.discord.conftest import ALICE, BOB, BOT, GENERAL, GUILD, MODS, StartBot
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.openai_server import Behaviour


async def test_commands_are_synced_globally_or_to_command_guilds(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot()
    assert sorted(c["name"] for c in dc.commands[None]) == ["ask", "help", "reset"]
    await bot.restart()
    await start_bot(command_guilds=[GUILD])
    assert sorted(c["name"] for c in dc.commands[GUILD]) == ["ask", "help", "reset"]


async def test_ask_is_deferred_then_answered_in_place_and_continues_the_scope(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot()
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> my name is Alice")
    await bot.answer(GENERAL, 1)
    text = "@everyone " + " ".join(f"word{i}" for i in range(40))
    bot.llm.script(Behaviour(reply=text, chunk_delay=0.01))
    interaction = dc.slash(GENERAL, BOB, "ask", {"prompt": "what is her name?"})
    [_, answer] = await bot.answer(GENERAL, 2)
    assert interaction.callback_type == 5, "deferred"
    assert interaction.callback_time is not None
    assert interaction.callback_time - interaction.created < 3
    assert answer.id == interaction.original and answer.content == text
    assert not answer.mention_everyone and answer.flags & 128 == 0
    assert bot.prompts()[-1][-1] == ("user", "what is her name?")
    assert bot.prompts()[-1][0] == ("user", "my name is Alice")


async def test_a_long_ask_continues_in_followups(start_bot: StartBot, dc: FakeDiscord) -> None:
    bot = await start_bot()
    long_answer = "\n\n".join(f"Paragraph {i}: " + "lorem ipsum " * 30 for i in range(12))
    bot.llm.script(Behaviour(reply=long_answer))
    interaction = dc.slash(GENERAL, ALICE, "ask", {"prompt": "write a lot"})
    parts = await bot.answer(GENERAL, 3)
    assert parts[0].id == interaction.original
    assert interaction.followups == [p.id for p in parts[1:]]
    assert " ".join(p.content for p in parts).split() == long_answer.split()


async def test_reset_and_help(start_bot: StartBot, dc: FakeDiscord) -> None:
    bot = await start_bot()
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> remember me")
    await bot.answer(GENERAL, 1)
    dc.slash(GENERAL, ALICE, "reset")
    await bot.answer(GENERAL, 2)
    help_call = dc.slash(GENERAL, ALICE, "help")
    [*_, shown] = await bot.answer(GENERAL, 3)
    assert shown.id == help_call.original and "/reset" in shown.content
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> fresh")
    await bot.answer(GENERAL, 4)
    assert bot.prompts()[-1] == [("user", "fresh")]
    assert len(bot.llm.chat_requests) == 2, "commands never reach the backend"


async def test_a_refused_user_gets_an_ephemeral_line_and_no_backend_call(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(allowed_roles=[MODS])
    interaction = dc.slash(GENERAL, BOB, "ask", {"prompt": "let me in"})
    await dc.wait_for(lambda: interaction.callback_type is not None)
    await bot.settled()
    assert interaction.callback_type == 4 and interaction.ephemeral
    refusal = dc.message(GENERAL, interaction.original or 0)
    assert refusal is not None and "not allowed" in refusal.content
    assert bot.llm.chat_requests == []


async def test_commands_behind_a_busy_scope_or_a_slow_backend_are_deferred_in_time(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    # Discord's 3 s window scaled down, as FAST scales Discord's limits: the scope's
    # lock stays held, and the backend silent, well past it.
    dc.interaction_deadline = 0.5
    bot = await start_bot()
    slow = "a slow streamed answer that holds the scope's lock"
    bot.llm.script(
        Behaviour(reply=slow, pause_after=2, pause=1.5),
        Behaviour(reply="the asked answer", delay=1.0),
    )
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> take your time")
    await dc.wait_bot_messages(GENERAL, 1)  # streaming: the lock is held
    reset = dc.slash(GENERAL, BOB, "reset")
    ask = dc.slash(GENERAL, ALICE, "ask", {"prompt": "a quick one"})
    await dc.wait_for(
        lambda: [m.content for m in dc.bot_messages(GENERAL)][2:] == ["the asked answer"],
        timeout=15,
    )
    [first, reset_shown, ask_shown] = dc.bot_messages(GENERAL)
    await bot.settled()
    for interaction in (reset, ask):
        assert interaction.callback_type == 5, "deferred"
        after = interaction.acknowledged_after
        assert after is not None and after < dc.interaction_deadline
    assert not [c for c in dc.calls if c.status == 404], "no Unknown interaction"
    assert first.content == slow
    assert reset_shown.id == reset.original and "fresh conversation" in reset_shown.content
    assert ask_shown.id == ask.original
    # The deferred responses were filled in once the lock was free.
    assert reset_shown.history[-1].time >= first.history[-1].time
    assert bot.prompts()[-1] == [("user", "a quick one")], "asked after the reset"
