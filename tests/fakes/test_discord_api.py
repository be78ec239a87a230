"""The fake Discord driven by the real discord.py over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import discord
import discord.gateway
import discord.http
import pytest
from discord import app_commands

from tests.fakes.discord_api import FakeDiscord, FloodLimits

TOKEN = "MTAw.fake.bot-token"
BOT = 1_100_000_000_000_000_001
GUILD = 810_000_000_000_000_001
GENERAL = 820_000_000_000_000_001
OTHER = 820_000_000_000_000_002
BOT_ROLE = 830_000_000_000_000_001
MODS = 830_000_000_000_000_002
ALICE = 840_000_000_000_000_001
BOB = 840_000_000_000_000_002


def intents(message_content: bool = True) -> discord.Intents:
    value = discord.Intents.default()
    value.message_content = message_content
    return value


def populate(fake: FakeDiscord) -> None:
    guild = fake.guild(GUILD, "Parley HQ", bot_role_id=BOT_ROLE)
    fake.role(guild, MODS, "mods")
    fake.channel(guild, GENERAL, "general")
    fake.channel(guild, OTHER, "other")
    fake.user(ALICE, "alice")
    fake.user(BOB, "bob")
    fake.member(guild, ALICE, [MODS])
    fake.member(guild, BOB)


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN, bot_id=BOT) as fake:
        populate(fake)
        with fake.patched():
            yield fake


class Bot(discord.Client):
    def __init__(
        self,
        *,
        message_content: bool = True,
        intents_: discord.Intents | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            intents=intents_ or intents(message_content), guild_ready_timeout=0.05, **options
        )
        self.received: list[discord.Message] = []
        self.resumed = 0
        self.threads: list[discord.Thread] = []
        self.tree = app_commands.CommandTree(self)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause before a re-IDENTIFY (discord.py's default, for Discord's
        identify rate limit); the fake has no such limit."""

    async def on_message(self, message: discord.Message) -> None:
        self.received.append(message)

    async def on_resumed(self) -> None:
        self.resumed += 1

    async def on_thread_create(self, thread: discord.Thread) -> None:
        self.threads.append(thread)


@contextlib.asynccontextmanager
async def running(client: Bot, token: str = TOKEN) -> AsyncIterator[Bot]:
    await client.login(token)
    task = asyncio.create_task(client.connect())
    try:
        await asyncio.wait_for(client.wait_until_ready(), 10)
        yield client
    finally:
        await client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)


async def until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


def channel(client: Bot, channel_id: int = GENERAL) -> discord.TextChannel:
    found = client.get_channel(channel_id)
    assert isinstance(found, discord.TextChannel)
    return found


# -- patching ---------------------------------------------------------------------


async def test_patched_restores_discord_globals() -> None:
    base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        with fake.patched():
            assert fake.api_base_url == discord.http.Route.BASE
            assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == fake.gateway_url
    assert base == discord.http.Route.BASE
    assert gateway == discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


# -- login, READY, GUILD_CREATE, MESSAGE_CREATE --------------------------------------


async def test_login_ready_and_a_message_reaching_on_message(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        assert client.user is not None and client.user.id == BOT
        assert client.application_id == BOT
        guild = client.get_guild(GUILD)
        assert guild is not None and guild.name == "Parley HQ"
        assert {c.id for c in guild.text_channels} == {GENERAL, OTHER}
        assert guild.get_member(ALICE) is None  # no members intent: only the bot is sent
        me = guild.me
        assert me is not None and me.get_role(BOT_ROLE) is not None
        assert guild.get_role(BOT_ROLE).is_bot_managed()  # type: ignore[union-attr]

        sent = dc.send_message(GENERAL, ALICE, "hello there")
        await until(lambda: client.received)
        [got] = client.received
        assert (got.id, got.content, got.author.id) == (sent.id, "hello there", ALICE)
        assert isinstance(got.author, discord.Member)
        assert [r.id for r in got.author.roles[1:]] == [MODS]
        assert got.channel.id == GENERAL
    assert [c.route for c in dc.calls[:2]] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert dc.identifies[0]["intents"] == intents().value
    assert "token" not in dc.identifies[0]
    assert dc.connections[0].heartbeats >= 1


async def test_a_wrong_token_is_login_failure(dc: FakeDiscord) -> None:
    client = Bot()
    with pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()
    assert dc.calls[-1].status == 401


async def test_a_token_the_gateway_refuses_closes_4004(dc: FakeDiscord) -> None:
    client = Bot()
    await client.login(TOKEN)
    dc.token = "rotated"  # the token was reset on the portal after login
    with pytest.raises(discord.ConnectionClosed) as caught:
        await asyncio.wait_for(client.connect(), 5)
    assert caught.value.code == 4004
    assert dc.connections[-1].close_code == 4004
    await client.close()


async def test_message_content_intent_not_enabled_is_privileged_intents_required() -> None:
    async with FakeDiscord(token=TOKEN, bot_id=BOT, allowed_intents=0) as fake:
        populate(fake)
        with fake.patched():
            client = Bot()
            await client.login(TOKEN)
            with pytest.raises(discord.PrivilegedIntentsRequired):
                await asyncio.wait_for(client.connect(), 5)
            await client.close()
        assert fake.connections[-1].close_code == 4014
        assert not fake.sessions


async def test_without_the_intent_only_mentions_of_the_bot_keep_their_content(
    dc: FakeDiscord,
) -> None:
    async with running(Bot(message_content=False)) as client:
        dc.send_message(GENERAL, ALICE, "chatter")
        dc.send_message(GENERAL, ALICE, f"<@{BOT}> question")
        await until(lambda: len(client.received) == 2)
        assert [m.content for m in client.received] == ["", f"<@{BOT}> question"]
        assert client.user in client.received[1].mentions


async def test_user_messages_carry_mentions_replies_and_attachments(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        first = dc.send_message(GENERAL, BOB, "first")
        dc.send_message(
            GENERAL,
            ALICE,
            f"<@{BOT}> see <@&{MODS}>",
            reference=first,
            attachments=[("notes.md", "# notes\nhello")],
        )
        await until(lambda: len(client.received) == 2)
        got = client.received[1]
        assert got.reference is not None and got.reference.message_id == first.id
        assert isinstance(got.reference.resolved, discord.Message)
        assert got.reference.resolved.author.id == BOB
        assert {u.id for u in got.mentions} == {BOT, BOB}  # a reply pings its author
        assert [r.id for r in got.role_mentions] == [MODS]
        [attachment] = got.attachments
        assert attachment.filename == "notes.md"
        assert await attachment.read() == b"# notes\nhello"


# -- REST ---------------------------------------------------------------------------


async def test_send_edit_typing_fetch_and_delete_round_trip(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        general = channel(client)
        async with general.typing():
            sent = await general.send("hello")
        [typing] = await dc.wait_calls("typing")
        assert typing.route == "POST /channels/{channel_id}/typing"
        edited = await sent.edit(content="hello, world")
        assert edited.content == "hello, world" and edited.edited_at is not None
        [stored] = await dc.wait_bot_messages(GENERAL, 1)
        assert stored.content == "hello, world"
        assert [r.content for r in stored.history] == ["hello"]
        fetched = await general.fetch_message(sent.id)
        assert fetched.content == "hello, world"
        assert (await client.fetch_channel(GENERAL)).id == GENERAL
        # Discord sends the bot its own messages too
        await until(lambda: any(m.id == sent.id for m in client.received))
        await sent.delete()
        assert dc.bot_messages(GENERAL) == []
        with pytest.raises(discord.NotFound) as caught:
            await general.fetch_message(sent.id)
        assert caught.value.code == 10008
    assert dc.calls_to("typing")[0].status == 204


async def test_content_over_2000_characters_is_refused_with_50035(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        general = channel(client)
        ok = await general.send("x" * 2000)
        with pytest.raises(discord.HTTPException) as caught:
            await general.send("x" * 2001)
        assert (caught.value.status, caught.value.code) == (400, 50035)
        assert "2000 or fewer" in caught.value.text
        with pytest.raises(discord.HTTPException) as caught:
            await ok.edit(content="y" * 2001)
        assert caught.value.code == 50035
        assert [len(m.content) for m in dc.bot_messages(GENERAL)] == [2000]


async def test_allowed_mentions_decide_who_is_pinged(dc: FakeDiscord) -> None:
    text = f"@everyone @here <@&{MODS}> <@{ALICE}> hi"
    async with running(Bot()) as client:
        general = channel(client)
        default = await general.send(text)
        assert default.mention_everyone
        assert [r.id for r in default.role_mentions] == [MODS]
        assert [u.id for u in default.mentions] == [ALICE]

        quiet = await general.send(text, allowed_mentions=discord.AllowedMentions.none())
        assert not quiet.mention_everyone and not quiet.role_mentions and not quiet.mentions
        stored = dc.message(GENERAL, quiet.id)
        assert stored is not None and stored.allowed_mentions == {"parse": []}

        alice_only = await general.send(
            text,
            allowed_mentions=discord.AllowedMentions(
                everyone=False, roles=False, users=[discord.Object(ALICE)]
            ),
        )
        assert [u.id for u in alice_only.mentions] == [ALICE] and not alice_only.mention_everyone

        # A streamed edit without allowed_mentions gets Discord's default: it pings.
        edited = await quiet.edit(content="@everyone")
        assert edited.mention_everyone
        quiet_edit = await quiet.edit(
            content="@everyone again", allowed_mentions=discord.AllowedMentions.none()
        )
        assert not quiet_edit.mention_everyone

        question = dc.send_message(GENERAL, ALICE, "question")
        await until(lambda: any(m.id == question.id for m in client.received))
        incoming = next(m for m in client.received if m.id == question.id)
        reply = await incoming.reply("answer")  # no allowed_mentions: the author is pinged
        assert [u.id for u in reply.mentions] == [ALICE]
        quiet_reply = await incoming.reply(
            "answer", allowed_mentions=discord.AllowedMentions.none()
        )
        assert quiet_reply.mentions == []
        assert quiet_reply.reference is not None
        assert quiet_reply.reference.message_id == question.id

    # Each request keeps its own allowed_mentions and whom it pinged, edits included.
    writes = [c for c in dc.calls if c.pinged is not None]
    assert [c.route.split()[0] for c in writes] == ["POST"] * 3 + ["PATCH"] * 2 + ["POST"] * 2
    assert writes[0].allowed_mentions is None
    assert writes[0].pinged == ([ALICE], [MODS], True)
    assert writes[1].allowed_mentions == {"parse": []} and writes[1].pinged == ([], [], False)
    assert writes[3].pinged == ([], [], True), "the edit pinged, though the message now won't"
    assert writes[4].pinged == ([], [], False)
    assert writes[5].pinged == ([ALICE], [], False), "a reply pings its author by default"


async def test_a_role_that_is_not_mentionable_needs_mention_everyone() -> None:
    async with FakeDiscord(token=TOKEN, bot_id=BOT) as fake:
        guild = fake.guild(GUILD, bot_mention_everyone=False)
        fake.role(guild, MODS, "mods")
        fake.channel(guild, GENERAL)
        with fake.patched():
            async with running(Bot()) as client:
                msg = await channel(client).send(f"@everyone <@&{MODS}>")
                assert not msg.mention_everyone and not msg.role_mentions


async def test_parse_users_together_with_a_users_list_is_refused(dc: FakeDiscord) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{dc.api_base_url}/channels/{GENERAL}/messages",
            json={"content": "x", "allowed_mentions": {"parse": ["users"], "users": [str(ALICE)]}},
            headers={"Authorization": f"Bot {TOKEN}"},
        ) as response,
    ):
        body = await response.json()
    assert response.status == 400 and body["code"] == 50035
    assert response.headers["Content-Type"] == "application/json"
    assert "allowed_mentions" in body["errors"]


async def test_a_429_with_via_is_retried_by_discord_py(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        dc.fail_next("POST /channels/{channel_id}/messages", 429, retry_after=0.2)
        sent = await channel(client).send("after the limit")
        assert sent.content == "after the limit"
    posts = dc.calls_to("POST /channels/{channel_id}/messages")
    assert [c.status for c in posts] == [429, 200]
    assert posts[1].time - posts[0].time >= 0.2
    assert dc.count_429 == 1
    assert [m.content for m in dc.bot_messages(GENERAL)] == ["after the limit"]


async def test_flood_mode_answers_429_with_discords_headers() -> None:
    limits = FloodLimits(channel=(5, 5.0), overall=(8, 10.0))
    async with FakeDiscord(token=TOKEN, bot_id=BOT, flood=limits) as fake:
        populate(fake)
        auth = {"Authorization": f"Bot {TOKEN}"}
        async with aiohttp.ClientSession() as http:
            results = []
            for i in range(7):
                async with http.post(
                    f"{fake.api_base_url}/channels/{GENERAL}/messages",
                    json={"content": f"m{i}"},
                    headers=auth,
                ) as r:
                    results.append((r.status, dict(r.headers), await r.json()))
            # Refused requests are not counted: the overall window of 8 holds the 5
            # posts, this GET and two of the three below.
            async with http.get(f"{fake.api_base_url}/channels/{OTHER}", headers=auth) as r:
                other_ok = r.status
            statuses = [s for s, _, _ in results]
            for _ in range(3):
                async with http.get(f"{fake.api_base_url}/users/@me", headers=auth) as r:
                    last = (r.status, dict(r.headers), await r.json())
    assert statuses == [200] * 5 + [429] * 2
    assert other_ok == 200
    _, ok_headers, _ = results[4]
    assert ok_headers["X-RateLimit-Limit"] == "5" and ok_headers["X-RateLimit-Remaining"] == "0"
    _, headers, body = results[5]
    assert headers["Via"] and headers["X-RateLimit-Scope"] == "user"
    assert body["global"] is False and 4 < body["retry_after"] <= 5
    assert len(fake.bot_messages(GENERAL)) == 5
    assert last[0] == 429 and last[2]["global"] is True
    assert last[1]["X-RateLimit-Global"] == "true"
    assert fake.count_429 == 3


async def test_discord_py_keeps_to_the_flood_limits_from_the_headers() -> None:
    limits = FloodLimits(channel=(2, 0.4), overall=(50, 1.0))
    async with FakeDiscord(token=TOKEN, bot_id=BOT, flood=limits) as fake:
        populate(fake)
        with fake.patched():
            async with running(Bot()) as client:
                general = channel(client)
                for i in range(5):
                    await general.send(f"m{i}")
        assert [m.content for m in fake.bot_messages(GENERAL)] == [f"m{i}" for i in range(5)]
        assert fake.count_429 == 0  # discord.py waited on X-RateLimit-Remaining: 0


async def test_missing_permissions_is_403_50013(dc: FakeDiscord) -> None:
    dc.forbid(OTHER)
    async with running(Bot()) as client:
        with pytest.raises(discord.Forbidden) as caught:
            await channel(client, OTHER).send("hi")
        assert caught.value.code == 50013
        assert (await channel(client).send("fine")).content == "fine"


async def test_threads_from_a_message_and_without_one(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        general = channel(client)
        question = dc.send_message(GENERAL, ALICE, f"<@{BOT}> how do I start?")
        await until(lambda: client.received)
        thread = await client.received[0].create_thread(name="how do I start?")
        assert thread.id == question.id and thread.parent_id == GENERAL
        await until(lambda: client.threads)
        assert client.threads[0].id == thread.id
        answer = await thread.send("like this")
        assert dc.bot_messages(thread.id)[0].id == answer.id
        second = await general.create_thread(name="side", type=discord.ChannelType.public_thread)
        assert second.type is discord.ChannelType.public_thread
        assert dc.channels[second.id].parent_id == GENERAL
        with pytest.raises(discord.HTTPException) as caught:
            await client.received[0].create_thread(name="again")
        assert caught.value.code == 160004
        dc.send_message(thread.id, ALICE, "thanks")
        await until(lambda: any(m.channel.id == thread.id for m in client.received))


# -- gateway sessions --------------------------------------------------------------


async def test_reconnect_resumes_and_replays_missed_events(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        await dc.reconnect()
        for i in range(3):
            dc.send_message(GENERAL, ALICE, f"during {i}")
        await until(lambda: client.resumed == 1)
        dc.send_message(GENERAL, ALICE, "after")
        await until(lambda: len(client.received) == 4)
        assert [m.content for m in client.received] == ["during 0", "during 1", "during 2", "after"]
    [resume] = dc.resumes
    assert resume["session_id"] in dc.sessions and resume["seq"] >= 2
    assert dc.connections[1].path == "/resume"
    assert len(dc.identifies) == 1


async def test_a_dropped_socket_resumes_without_losing_events(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        await dc.drop()
        dc.send_message(GENERAL, ALICE, "while down")
        await until(lambda: client.resumed == 1, timeout=10)
        await until(lambda: client.received)
        assert [m.content for m in client.received] == ["while down"]


async def test_invalid_session_makes_discord_py_identify_again(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        await dc.invalid_session()
        await dc.wait_for(lambda: len(dc.identifies) == 2)
        await dc.wait_ready()
        assert len(dc.sessions) == 2
        dc.send_message(GENERAL, ALICE, "new session")
        await until(lambda: client.received, timeout=10)
        assert client.received[0].content == "new session"
    assert dc.resumes == []  # a non-resumable op 9 means a fresh IDENTIFY


# -- interactions ---------------------------------------------------------------------


def add_commands(client: Bot, log: list[Any], delay: float = 0.0) -> None:
    @client.tree.command(name="ask", description="Ask the model")
    async def ask(interaction: discord.Interaction, prompt: str) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            await interaction.response.defer(thinking=True)
            await interaction.followup.send(f"answer to {prompt}")
            await interaction.edit_original_response(content="done")
            log.append("ok")
        except discord.HTTPException as exc:
            log.append(exc)

    @client.tree.command(name="help", description="What the bot does")
    async def help_(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("help text", ephemeral=True)
        log.append("help")


async def test_slash_command_sync_defer_and_followup(dc: FakeDiscord) -> None:
    log: list[Any] = []
    client = Bot()
    add_commands(client, log)
    async with running(client):
        client.tree.copy_global_to(guild=discord.Object(GUILD))
        synced = await client.tree.sync(guild=discord.Object(GUILD))
        assert sorted(c.name for c in synced) == ["ask", "help"]
        assert sorted(c["name"] for c in dc.commands[GUILD]) == ["ask", "help"]
        await client.tree.sync()
        assert len(dc.commands[None]) == 2
        interaction = dc.slash(GENERAL, ALICE, "ask", {"prompt": "hi"})
        await until(lambda: log)
        assert log == ["ok"]
        assert interaction.callback_type == 5 and not interaction.ephemeral
        after = interaction.acknowledged_after
        assert after is not None and 0 <= after < 3
        messages = dc.bot_messages(GENERAL)
        original = dc.message(GENERAL, interaction.original or 0)
        assert original is not None and original.content == "done"
        assert original.flags & 128 == 0 and original.interaction_id == interaction.id
        assert [m.content for m in messages] == ["done", "answer to hi"]

        help_call = dc.slash(GENERAL, BOB, "help")
        await until(lambda: "help" in log)
        assert help_call.callback_type == 4 and help_call.ephemeral
        shown = dc.message(GENERAL, help_call.original or 0)
        assert shown is not None and shown.ephemeral and shown.content == "help text"
    routes = {c.route for c in dc.calls}
    assert "POST /webhooks/{application_id}/{token}" in routes
    assert "PATCH /webhooks/{application_id}/{token}/messages/{message_id}" in routes


async def test_a_callback_after_the_deadline_is_unknown_interaction() -> None:
    async with FakeDiscord(token=TOKEN, bot_id=BOT, interaction_deadline=0.2) as fake:
        populate(fake)
        log: list[Any] = []
        client = Bot()
        add_commands(client, log, delay=0.3)
        with fake.patched():
            async with running(client):
                await client.tree.sync(guild=discord.Object(GUILD))
                interaction = fake.slash(GENERAL, ALICE, "ask", {"prompt": "slow"})
                await until(lambda: log)
        [error] = log
        assert isinstance(error, discord.NotFound) and error.code == 10062
        assert interaction.callback_type is None and interaction.acknowledged_after is None
        assert fake.bot_messages(GENERAL) == []


async def test_the_default_deadline_is_discords_three_seconds() -> None:
    assert FakeDiscord().interaction_deadline == 3.0


async def test_gateway_bot_and_a_second_callback(dc: FakeDiscord) -> None:
    auth = {"Authorization": f"Bot {TOKEN}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{dc.api_base_url}/gateway/bot", headers=auth) as r:
            gateway = await r.json()
        assert gateway["url"] == dc.gateway_url and gateway["shards"] == 1
        interaction = dc.slash(GENERAL, ALICE, "ask", {"prompt": "x"})
        url = f"{dc.api_base_url}/interactions/{interaction.id}/{interaction.token}/callback"
        async with http.post(url, json={"type": 4, "data": {"content": "one"}}) as r:
            assert r.status == 204
        async with http.post(url, json={"type": 4, "data": {"content": "two"}}) as r:
            body = await r.json()
        assert r.status == 400 and body["code"] == 40060


# -- DMs, intents, shards -------------------------------------------------------------


async def test_direct_messages_both_ways(dc: FakeDiscord) -> None:
    async with running(Bot(message_content=False)) as client:
        dm = dc.dm(ALICE)
        dc.send_message(dm, ALICE, "private question")
        await until(lambda: client.received)
        got = client.received[0]
        assert isinstance(got.channel, discord.DMChannel)
        assert got.content == "private question"  # DMs keep content without the intent
        assert (await client.fetch_user(ALICE)).name == "alice"
        answer = await got.author.send("private answer")
        assert answer.channel.id == dm.id
        assert [m.content for m in dc.bot_messages(dm.id)] == ["private answer"]


async def test_events_are_filtered_by_the_intents_identified_with(dc: FakeDiscord) -> None:
    only_dms = discord.Intents.none()
    only_dms.guilds = True
    only_dms.dm_messages = True
    client = Bot(intents_=only_dms)
    async with running(client):
        dc.send_message(GENERAL, ALICE, "in the guild")
        dc.send_message(dc.dm(ALICE), ALICE, "in a DM")
        await until(lambda: client.received)
        await asyncio.sleep(0.05)
        assert [m.content for m in client.received] == ["in a DM"]
    assert dc.identifies[0]["intents"] == only_dms.value


async def test_user_edits_arrive_as_message_update(dc: FakeDiscord) -> None:
    edits: list[tuple[str, str]] = []

    class Editing(Bot):
        async def on_message_edit(self, before: discord.Message, after: discord.Message) -> None:
            edits.append((before.content, after.content))

    async with running(Editing()) as client:
        sent = dc.send_message(GENERAL, ALICE, "frist")
        await until(lambda: client.received)
        dc.edit_message(GENERAL, sent.id, "first")
        await until(lambda: edits)
    assert edits == [("frist", "first")]
    stored = dc.message(GENERAL, sent.id)
    assert stored is not None and [r.content for r in stored.history] == ["frist"]


async def test_each_shard_gets_its_own_guilds(dc: FakeDiscord) -> None:
    second = 810_000_000_005_000_001  # (id >> 22) % 2 == 1
    dc.guild(second, "Second")
    dc.channel(second, OTHER + 10, "general")
    clients = []
    for shard_id in (0, 1):
        clients.append(Bot(shard_id=shard_id, shard_count=2))
    async with running(clients[0]) as zero, running(clients[1]) as one:
        assert [g.id for g in zero.guilds] == [GUILD]
        assert [g.id for g in one.guilds] == [second]
        dc.send_message(OTHER + 10, ALICE, "second guild")
        await until(lambda: one.received)
        await asyncio.sleep(0.05)
        assert zero.received == []
    assert sorted(i["shard"] for i in dc.identifies) == [[0, 2], [1, 2]]


async def test_a_429_without_via_is_not_retried(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        dc.fail_next("POST /channels/{channel_id}/messages", 429, via=False)
        with pytest.raises(discord.HTTPException) as caught:
            await channel(client).send("blocked")
        assert caught.value.status == 429
    assert dc.bot_messages(GENERAL) == []


async def test_a_close_code_4000_makes_discord_py_resume(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        await dc.close_gateway(4000, "Unknown error")
        dc.send_message(GENERAL, ALICE, "after the close")
        await until(lambda: client.received and client.resumed == 1, timeout=10)
        assert [m.content for m in client.received] == ["after the close"]
    assert dc.connections[0].close_code == 4000
    assert len(dc.identifies) == 1 and len(dc.resumes) == 1


async def test_calls_record_the_body_and_a_refused_edit_changes_nothing(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        question = dc.send_message(GENERAL, ALICE, "q")
        await until(lambda: client.received)
        sent = await client.received[0].reply(
            "a", allowed_mentions=discord.AllowedMentions.none(), silent=True
        )
        [post] = dc.calls_to("POST /channels/{channel_id}/messages")
        assert post.body["message_reference"]["message_id"] == question.id
        assert post.body["allowed_mentions"] == {"parse": []}
        assert post.channel_id == GENERAL and post.ok
        stored = dc.message(GENERAL, sent.id)
        assert stored is not None and stored.flags == 4096  # silent: no notification
        with pytest.raises(discord.HTTPException) as caught:
            await sent.edit(content="")
        assert caught.value.code == 50006
        assert stored.content == "a" and stored.history == []


async def test_categories_system_messages_and_other_bots(dc: FakeDiscord) -> None:
    category = dc.channel(GUILD, 850_000_000_000_000_001, "bots", type=4)
    dc.channel(GUILD, 850_000_000_000_000_002, "gpt", category=category)
    dc.user(860_000_000_000_000_001, "otherbot", bot=True)
    async with running(Bot()) as client:
        gpt = channel(client, 850_000_000_000_000_002)
        assert gpt.category_id == category.id
        dc.send_message(gpt.id, ALICE, "", type=7)  # Alice joined
        dc.send_message(gpt.id, 860_000_000_000_000_001, "beep")
        await until(lambda: len(client.received) == 2)
        joined, beep = client.received
        assert joined.type is discord.MessageType.new_member and joined.is_system()
        assert beep.author.bot and not beep.is_system()


async def test_a_session_closed_with_1000_cannot_be_resumed(dc: FakeDiscord) -> None:
    identify = {"op": 2, "d": {"token": TOKEN, "intents": 513, "properties": {}}}
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(dc.gateway_url) as ws:
            assert (await ws.receive_json())["op"] == 10
            await ws.send_json(identify)
            ready = await ws.receive_json()
            assert ready["t"] == "READY" and ready["s"] == 1
            session_id = ready["d"]["session_id"]
            await ws.close(code=1000)
        await dc.wait_for(lambda: dc.sessions[session_id].invalid)
        async with http.ws_connect(ready["d"]["resume_gateway_url"]) as ws:
            await ws.receive_json()  # HELLO
            resume = {"op": 6, "d": {"token": TOKEN, "session_id": session_id, "seq": 1}}
            await ws.send_json(resume)
            assert await ws.receive_json() == {"op": 9, "d": False}


async def test_files_from_the_bot_arrive_as_multipart_attachments(dc: FakeDiscord) -> None:
    async with running(Bot()) as client:
        sent = await channel(client).send(
            "the rest is attached",
            file=discord.File(io.BytesIO(b"long answer"), filename="answer.md"),
        )
        [attachment] = sent.attachments
        assert attachment.filename == "answer.md"
        assert await attachment.read() == b"long answer"
    [stored] = dc.bot_messages(GENERAL)
    assert stored.content == "the rest is attached"
    assert [(a.filename, a.data) for a in stored.attachments] == [("answer.md", b"long answer")]
