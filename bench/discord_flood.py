"""What Discord users see when many channels stream long answers at once.

1. Flood: 24 channels each mention the bot at the same moment; the fake LLM streams a
   ~6,000-character answer to every one (about 8 s each); the fake Discord enforces
   Discord's limits (5 message creates/edits per 5 s per channel, 50 requests per
   second overall) and answers 429 beyond them. Reported: 429s received, final texts
   complete, REST calls per answer, and the time from the question to the first text
   the user sees (the fake LLM sends its first token at once).
2. Throughput: 24 channels × 4 turns, each channel asking again when its answer has
   arrived, short answers: turns per second end to end.

One process, everything over loopback: the real App (SQLite), the real DiscordAdapter
and discord.py, the fakes from tests/fakes/. Run: ``python -m bench.discord_flood``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from adapters.delivery.target import PlatformLimits
from adapters.discord.bot import DiscordAdapter
from adapters.discord.config import DiscordBotConfig
from adapters.discord.limits import DISCORD_LIMITS
from bots.app import App
from bots.config import parse_config
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

TOKEN = "MTAw.bench.token"
BOT = 1_100_000_000_000_000_001
GUILD = 810_000_000_000_000_001
USER = 840_000_000_000_000_001
FIRST_CHANNEL = 820_000_000_000_000_100
# The budgets lifted for the throughput run: parley's own overhead shows, not Discord's.
UNLIMITED = replace(DISCORD_LIMITS, chat_ops=1_000, global_ops=100_000, edit_interval=0.05)


def long_answer(i: int, chars: int) -> str:
    words: list[str] = []
    n = 0
    while n < chars:
        word = f"w{i}x{len(words)}"
        if len(words) % 60 == 59:
            word += "."  # sentences and paragraphs, as a model writes
        if len(words) % 180 == 179:
            word += "\n\n"
        words.append(word)
        n += len(word) + 1
    return " ".join(words).replace("\n\n ", "\n\n")


async def run_bot(
    dc: FakeDiscord, llm: FakeOpenAIServer, folder: Path, limits: PlatformLimits, slots: int
) -> tuple[App, DiscordAdapter, asyncio.Event, asyncio.Task[None]]:
    config = parse_config(
        {
            "database": {"url": f"sqlite+aiosqlite:///{folder / 'bench.db'}"},
            "backends": {
                "llm": {
                    "type": "chat_completions",
                    "base_url": llm.base_url,
                    "model": "m",
                    "max_retries": 0,
                    "max_concurrency": slots,
                }
            },
            "bots": [
                {
                    "name": "bench",
                    "platform": "discord",
                    "token": TOKEN,
                    "api_base_url": dc.url,
                    "gateway_url": dc.gateway_url,
                    "group_trigger": "always",
                }
            ],
        }
    )
    app = App(config)
    await app.__aenter__()
    bot = config.bots[0]
    assert isinstance(bot, DiscordBotConfig)
    adapter = DiscordAdapter(
        bot, app.service(bot), limits=limits, client_options={"guild_ready_timeout": 0.05}
    )
    stop = asyncio.Event()
    task = asyncio.ensure_future(adapter.run(stop))
    await dc.wait_for(lambda: adapter.ready or task.done(), timeout=20)
    return app, adapter, stop, task


async def settle(dc: FakeDiscord, adapter: DiscordAdapter, quiet: float = 1.0) -> None:
    while True:
        count = len(dc.calls)
        await asyncio.sleep(quiet)
        if len(dc.calls) == count and len(adapter._inflight) == 0:
            return


async def flood(channels: int, chars: int, folder: Path) -> dict[str, Any]:
    async with FakeDiscord(token=TOKEN, bot_id=BOT, flood=True) as dc:
        guild = dc.guild(GUILD)
        ids = [FIRST_CHANNEL + i for i in range(channels)]
        for cid in ids:
            dc.channel(guild, cid, f"c{cid - FIRST_CHANNEL}")
        dc.user(USER, "user")
        dc.member(guild, USER)
        async with FakeOpenAIServer() as llm:
            answers = [long_answer(i, chars) for i in range(channels)]
            llm.script(*[Behaviour(reply=a, chunk_delay=0.008) for a in answers])
            app, adapter, stop, task = await run_bot(dc, llm, folder, DISCORD_LIMITS, channels)
            # Login and the command sync are requests the scheduler does not see: let
            # them leave the global window before the flood starts.
            await asyncio.sleep(DISCORD_LIMITS.global_period * 1.1)
            try:
                asked = {cid: dc.send_message(cid, USER, f"question {cid}").time for cid in ids}
                await dc.wait_for(lambda: all(dc.bot_messages(c) for c in ids), timeout=60)
                await settle(dc, adapter)
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
                await app.__aexit__(None, None, None)
            # The fake answers in request order, so which answer went to which channel
            # is not fixed: a channel is complete if its text is one of the answers.
            expected = {" ".join(a.split()) for a in answers}
            complete = sum(
                " ".join(" ".join(m.content for m in dc.bot_messages(c)).split()) in expected
                for c in ids
            )
            first = [min(m.time for m in dc.bot_messages(c)) - asked[c] for c in ids]
            rest = [c for c in dc.calls if c.route.startswith(("POST /channels", "PATCH /ch"))]
            return {
                "channels": channels,
                "answer_chars": chars,
                "429s": dc.count_429,
                "complete": complete,
                "calls_per_answer": len(rest) / channels,
                "first_text_median_s": statistics.median(first),
                "first_text_max_s": max(first),
            }


async def throughput(channels: int, turns: int, folder: Path) -> dict[str, Any]:
    async with FakeDiscord(token=TOKEN, bot_id=BOT) as dc:
        guild = dc.guild(GUILD)
        ids = [FIRST_CHANNEL + i for i in range(channels)]
        for cid in ids:
            dc.channel(guild, cid, f"c{cid - FIRST_CHANNEL}")
        dc.user(USER, "user")
        dc.member(guild, USER)
        async with FakeOpenAIServer() as llm:
            app, _, stop, task = await run_bot(dc, llm, folder, UNLIMITED, channels)
            try:
                start = time.monotonic()

                async def converse(cid: int) -> None:
                    for turn in range(1, turns + 1):
                        dc.send_message(cid, USER, f"turn {turn}")
                        await dc.wait_bot_messages(cid, turn, timeout=60)

                await asyncio.gather(*(converse(c) for c in ids))
                elapsed = time.monotonic() - start
            finally:
                stop.set()
                await asyncio.wait_for(task, 30)
                await app.__aexit__(None, None, None)
            return {
                "channels": channels,
                "turns": channels * turns,
                "seconds": round(elapsed, 2),
                "turns_per_s": round(channels * turns / elapsed, 1),
            }


async def main(quick: bool) -> None:
    channels = 6 if quick else 24
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        result = await flood(channels, 2_000 if quick else 6_000, Path(a))
        print("flood:", result)
        print("throughput:", await throughput(channels, 4, Path(b)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6 channels, shorter answers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("discord").setLevel(logging.ERROR)
    warnings.simplefilter("ignore", DeprecationWarning)
    asyncio.run(main(args.quick))
