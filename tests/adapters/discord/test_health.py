"""``DiscordAdapter.connected`` (for /healthz): up once READY, down while discord.py
reconnects a dropped gateway (its ``is_ready()`` stays true then) and after a stop."""

from __future__ import annotations

import asyncio

from tests.adapters.discord.conftest import StartBot
from tests.fakes.discord_api import FakeDiscord


async def test_connected_follows_the_gateway(start_bot: StartBot, dc: FakeDiscord) -> None:
    bot = await start_bot()
    assert bot.adapter.connected
    seen: list[bool] = []

    async def watch() -> None:
        while True:
            seen.append(bot.adapter.connected)
            # Every loop iteration: the reconnect may take only a few of them.
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        await dc.drop()  # the socket cut without a close frame: discord.py resumes
        await dc.wait_for(lambda: dc.resumes and bot.adapter.connected, timeout=20)
    finally:
        watcher.cancel()
    assert False in seen, "never seen disconnected while the gateway was down"
    assert bot.adapter._client is not None and bot.adapter._client.is_ready()

    bot.stop.set()
    await asyncio.wait_for(bot.task, 15)
    assert not bot.adapter.connected
