"""Discord shards over processes, black-box: two ``parley run`` processes of one bot,
``shard_count: 2`` with ``shard_ids: [0]`` and ``[1]``, on one PostgreSQL, against the
fake Discord (which routes each guild's events to the shard
``(guild_id >> 22) % shard_count`` and DMs to shard 0, as Discord does) and the fake LLM.

Each process asks the LLM for its own model name, so every LLM request says which
process answered it; the fake's gateway sessions say which shard each message went to.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from core.store.sql import SQLStore
from tests.bots.test_run_discord import TOKEN, start, stop
from tests.fakes.discord_api import FakeDiscord, StoredMessage
from tests.fakes.openai_server import FakeOpenAIServer

BOT = 1_100_000_000_000_000_001
ALICE = 840_000_000_000_000_001
BOB = 840_000_000_000_000_002
# Adding 1 << 22 to a guild id moves it to the next shard (of 2): two guilds per shard.
GUILDS = [810_000_000_000_000_001 + (k << 22) for k in range(4)]
CHANNELS = {guild: 820_000_000_000_000_001 + k for k, guild in enumerate(GUILDS)}
PER_CHANNEL = 3


def shard_of(guild: int | None) -> int:
    return 0 if guild is None else (guild >> 22) % 2


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN, bot_id=BOT) as fake:
        fake.user(ALICE, "alice")
        fake.user(BOB, "bob")
        for n, guild in enumerate(GUILDS):
            g = fake.guild(guild, f"Server {n}")
            fake.channel(g, CHANNELS[guild], "general")
            fake.member(g, ALICE)
            fake.member(g, BOB)
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:
        yield fake


def write_config(
    tmp_path: Path, dc: FakeDiscord, llm: FakeOpenAIServer, db: str, shard: int
) -> Path:
    path = tmp_path / f"shard-{shard}.yaml"
    path.write_text(
        f"""
database: {{url: "{db}"}}
backends:
  fake: {{type: chat_completions, base_url: "{llm.base_url}", model: shard-{shard}, max_retries: 0}}
bots:
  - name: helper
    platform: discord
    token: "${{DC_TOKEN}}"
    api_base_url: "{dc.api_base_url}"
    gateway_url: "{dc.gateway_url}"
    shard_count: 2
    shard_ids: [{shard}]
"""
    )
    return path


def answered_by(llm: FakeOpenAIServer) -> dict[str, list[str]]:
    """Each question the LLM was asked → the models (processes) that asked it."""
    asked: dict[str, list[str]] = {}
    for request in llm.chat_requests:
        question = request.messages[-1]["content"]
        asked.setdefault(question, []).append(request.body["model"])
    return asked


def shards_that_saw(dc: FakeDiscord, message: StoredMessage) -> list[tuple[int, int]]:
    """The shards whose gateway sessions were sent ``message``'s MESSAGE_CREATE."""
    return sorted(
        s.shard
        for s in dc.sessions.values()
        if any(e["t"] == "MESSAGE_CREATE" and e["d"]["id"] == str(message.id) for e in s.events)
    )


def ask_round(
    dc: FakeDiscord, channels: dict[int, int | None], rounds: range
) -> dict[int, list[tuple[StoredMessage, str]]]:
    """Several questions in each channel at once (channel → its guild, None for a DM);
    returns channel → [(message, question)] in the order sent."""
    sent: dict[int, list[tuple[StoredMessage, str]]] = {c: [] for c in channels}
    for i in rounds:
        for channel, guild in channels.items():
            author = ALICE if i % 2 == 0 else BOB
            question = f"q{channel}-{i}"
            if guild is None:
                msg = dc.send_message(channel, ALICE, question)
            else:
                msg = dc.send_message(channel, author, f"<@{BOT}> {question}")
            sent[channel].append((msg, question))
    return sent


async def wait_answers(dc: FakeDiscord, sent: dict[int, list[tuple[StoredMessage, str]]]) -> None:
    """Until each channel shows an answer to each of its questions, streamed in full."""

    def done(channel: int) -> bool:
        shown = {a.content for a in dc.bot_messages(channel)}
        return all(f"Echo: {q}" in shown for _, q in sent[channel])

    await dc.wait_for(lambda: all(done(c) for c in sent), timeout=30)
    # A second answer to one message would ask the LLM again at once (delivery may lag:
    # parley keeps to Discord's 5 messages per 5 s per channel).
    await asyncio.sleep(0.5)


async def test_two_processes_split_the_shards_and_one_survives_the_others_sigterm(
    tmp_path: Path, dc: FakeDiscord, llm: FakeOpenAIServer, fresh_postgres_url: str
) -> None:
    started = time.monotonic()
    dm = dc.dm(ALICE)
    channels: dict[int, int | None] = {CHANNELS[g]: g for g in GUILDS} | {dm.id: None}
    processes = []
    try:
        for shard in (0, 1):  # one after the other: the first one migrates the database
            config = write_config(tmp_path, dc, llm, fresh_postgres_url, shard)
            process = await start(config, dc)
            assert process.returncode is None, (await process.communicate())[1].decode()
            processes.append(process)
        assert [i["shard"] for i in dc.identifies] == [[0, 2], [1, 2]]
        for session in dc.sessions.values():  # each shard was told of its own guilds only
            told = [int(e["d"]["id"]) for e in session.events if e["t"] == "GUILD_CREATE"]
            assert told == [g for g in GUILDS if shard_of(g) == session.shard[0]]
        up = time.monotonic()

        sent = ask_round(dc, channels, range(PER_CHANNEL))
        await wait_answers(dc, sent)
        both = time.monotonic()

        # Every message: seen by its guild's shard only, answered once, by that process.
        asked = answered_by(llm)
        for channel, questions in sent.items():
            owner = shard_of(channels[channel])
            for msg, question in questions:
                assert shards_that_saw(dc, msg) == [(owner, 2)], question
                assert asked.get(question) == [f"shard-{owner}"], question
            # In a guild the answer replies to its question; in a DM it is a plain message.
            in_dm = channels[channel] is None
            replies = {f"Echo: {q}": None if in_dm else m.id for m, q in questions}
            assert {a.content: a.reference for a in dc.bot_messages(channel)} == replies
            assert len(dc.bot_messages(channel)) == len(questions)
        assert len(llm.chat_requests) == len(channels) * PER_CHANNEL

        # SIGTERM shard 1's process: shard 0's process goes on with its guilds and the DM.
        code, err = await stop(processes[1])
        assert code == 0, err[-3000:]
        assert "Traceback" not in err and TOKEN not in err, err[-3000:]
        stopped = time.monotonic()
        orphan_channel = CHANNELS[GUILDS[1]]  # shard 1's: nobody is connected for it now
        orphan = dc.send_message(orphan_channel, ALICE, f"<@{BOT}> anyone on shard 1?")
        alive = {c: g for c, g in channels.items() if shard_of(g) == 0}
        later = ask_round(dc, alive, range(PER_CHANNEL, PER_CHANNEL + 2))
        await wait_answers(dc, later)
        asked = answered_by(llm)
        for channel, questions in later.items():
            for _, question in questions:
                assert asked.get(question) == ["shard-0"], question
            assert sorted(a.content for a in dc.bot_messages(channel)) == sorted(
                f"Echo: {q}" for _, q in sent[channel] + questions
            )
        assert len(llm.chat_requests) == len(channels) * PER_CHANNEL + 2 * len(alive)
        assert shards_that_saw(dc, orphan) == [], "shard 1's session ended with its process"
        assert len(dc.bot_messages(orphan_channel)) == PER_CHANNEL
        assert "anyone on shard 1?" not in asked
        survived = time.monotonic()
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        errors = [(await asyncio.wait_for(p.communicate(), 30))[1].decode() for p in processes]
    for process, err in zip(processes, errors, strict=True):
        assert process.returncode == 0, err[-3000:]
        assert "Traceback" not in err and TOKEN not in err, err[-3000:]

    # The store: one unbroken chain per channel, whichever process wrote it, holding
    # that channel's questions in the order the channel shows their answers.
    shown = {c: [a.content.removeprefix("Echo: ") for a in dc.bot_messages(c)] for c in channels}
    store = SQLStore(fresh_postgres_url)
    try:
        async with store.engine.connect() as conn:
            heads = (await conn.execute(text("SELECT parent_message_id FROM scope_heads"))).all()
        assert len(heads) == len(channels)
        chains = []
        for (head,) in heads:
            chain = await store.history(head, 10**9)
            for parent, child in itertools.pairwise(chain):
                assert child.parent_id == parent.id
            assert [m.role for m in chain] == ["user", "assistant"] * (len(chain) // 2)
            for user, answer in zip(chain[::2], chain[1::2], strict=True):
                assert answer.text == f"Echo: {user.text}"
            chains.append([m.text for m in chain if m.role == "user"])
        assert sorted(chains) == sorted(shown.values())
        for channel, order in shown.items():
            asked_here = {q for _, q in sent[channel] + later.get(channel, [])}
            assert set(order) == asked_here and len(order) == len(asked_here)
    finally:
        await store.aclose()
    print(
        f"\nshards: both up in {up - started:.1f} s; {len(channels) * PER_CHANNEL} turns over "
        f"2 processes in {both - up:.1f} s; shard 1 stopped on SIGTERM in "
        f"{stopped - both:.1f} s; then {sum(len(q) for q in later.values())} turns on "
        f"shard 0 in {survived - stopped:.1f} s"
    )
