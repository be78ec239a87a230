"""Abuse end to end: the per-user rate limit, and mass mentions in everything the bot
sends besides answers (backend failures, refusals) on every route it sends by."""

from __future__ import annotations

from tests.adapters.discord.conftest import ALICE, BOB, BOT, GENERAL, GUILD, MODS, StartBot
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.openai_server import Behaviour

EVERYONE_ROLE = 830_000_000_000_000_003
LIMITED = "You're sending messages faster than I can answer"


async def test_the_per_user_rate_limit_refuses_the_extra_message_without_a_backend_call(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    bot = await start_bot(rate_limit={"messages": 2, "per_seconds": 60})
    dm = dc.dm(ALICE)
    for n in range(3):
        dc.send_message(dm, ALICE, f"message {n}")
        await bot.answer(dm.id, n + 1)
    [*_, refusal] = dc.bot_messages(dm.id)
    assert refusal.content.startswith(LIMITED) and "try again in 60 s" in refusal.content
    assert [p[-1] for p in bot.prompts()] == [("user", "message 0"), ("user", "message 1")]

    ask = dc.slash(GENERAL, ALICE, "ask", {"prompt": "via the command then"})
    await dc.wait_for(lambda: (m := dc.message(GENERAL, ask.original or 0)) and m.content)
    await bot.settled()
    shown = dc.message(GENERAL, ask.original or 0)
    assert shown is not None and shown.content.startswith(LIMITED), "a command counts too"

    dc.send_message(GENERAL, BOB, f"<@{BOT}> someone else")  # the limit is per user
    [_, answer] = await bot.answer(GENERAL, 2)
    assert answer.content == "Echo: someone else"
    assert len(bot.llm.chat_requests) == 3


async def test_failures_and_refusals_ping_nobody_on_any_route(
    start_bot: StartBot, dc: FakeDiscord
) -> None:
    dc.role(GUILD, EVERYONE_ROLE, "all", mentionable=True)
    pings = f"@everyone @here <@&{MODS}> <@&{EVERYONE_ROLE}> <@{BOB}> <@{ALICE}>"
    bot = await start_bot(max_input_chars=120, allowed_roles=[MODS])  # Bob is no mod
    bot.llm.script(
        Behaviour.http_error(500, f"{pings} the server broke"),
        Behaviour(
            reply=f"{pings} " + "partial " * 60,
            chunk_delay=0.01,
            error_after=40,
            error_message=f"{pings} cut off",
        ),
        Behaviour(reply=f"{pings} " + "partial " * 60, chunk_delay=0.01, error_after=40),
    )
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> fail please")
    [failed] = await bot.answer(GENERAL, 1)
    assert "AI backend" in failed.content
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> stream, then fail")
    [*_, partial, cut] = await bot.answer(GENERAL, 3)
    assert "@everyone" in partial.content and "AI backend" in cut.content
    dc.send_message(GENERAL, ALICE, f"<@{BOT}> {pings} " + "too long " * 20)
    [*_, too_long] = await bot.answer(GENERAL, 4)
    assert "too long" in too_long.content
    ask = dc.slash(GENERAL, ALICE, "ask", {"prompt": "stream, then fail, via the command"})
    long_ask = dc.slash(GENERAL, ALICE, "ask", {"prompt": f"{pings} " + "too long " * 20})
    denied = dc.slash(GENERAL, BOB, "ask", {"prompt": f"{pings} let me in"})
    await dc.wait_for(
        lambda: all(
            (m := dc.message(GENERAL, i.original or 0)) is not None and m.content
            for i in (ask, long_ask, denied)
        )
    )
    await dc.wait_for(lambda: ask.followups)
    await bot.settled()
    assert denied.ephemeral and denied.callback_type == 4
    followup = dc.message(GENERAL, ask.followups[0])
    assert followup is not None and "AI backend" in followup.content

    written = [c for c in dc.calls if c.pinged is not None]
    routes = {c.route for c in written}
    assert routes >= {
        "POST /channels/{channel_id}/messages",
        "PATCH /channels/{channel_id}/messages/{message_id}",
        "PATCH /webhooks/{application_id}/{token}/messages/{message_id}",
        "POST /interactions/{interaction_id}/{token}/callback",
        "POST /webhooks/{application_id}/{token}",  # the /ask failure, after its partial
    }, routes
    for call in written:
        allowed = call.allowed_mentions
        assert allowed is not None and allowed.get("parse") == [], (call.route, allowed)
        assert not allowed.get("users") and not allowed.get("roles"), (call.route, allowed)
        assert not allowed.get("replied_user"), (call.route, allowed)
        assert call.pinged == ([], [], False), (call.route, call.pinged)
    for msg in dc.bot_messages(GENERAL):
        assert (msg.mentions, msg.mention_roles, msg.mention_everyone) == ([], [], False)
