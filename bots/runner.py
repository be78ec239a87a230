"""``parley run``: every configured bot, side by side, until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import importlib
import logging
from typing import Any

from adapters.base import Adapter, AdapterStartError
from bots.app import App
from bots.config import BotConfig
from bots.errors import StartupError
from bots.monitor import monitoring

log = logging.getLogger(__name__)

# platform -> (module, class, extra). A new platform is one line here plus its package.
PLATFORMS: dict[str, tuple[str, str, str | None]] = {
    "console": ("adapters.console", "ConsoleAdapter", None),
    "telegram": ("adapters.telegram.bot", "TelegramAdapter", "telegram"),
    "discord": ("adapters.discord.bot", "DiscordAdapter", "discord"),
}
# Beyond the adapters' own grace periods: how long a stuck shutdown may take.
SHUTDOWN_MARGIN = 5.0


def build_adapter(app: App, bot: BotConfig) -> Adapter:
    if bot.platform not in PLATFORMS:
        raise StartupError(
            f"bot {bot.name!r}: the {bot.platform} adapter is not available in this "
            "version of parley yet"
        )
    module_name, class_name, extra = PLATFORMS[bot.platform]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if extra is None:
            raise
        raise StartupError(
            f"bot {bot.name!r}: the {bot.platform} extra is not installed "
            f"({exc.name or exc}); run: pip install 'parley[{extra}]'"
        ) from exc
    service = app.service(bot)
    adapter: Any = getattr(module, class_name)
    if bot.platform == "console":
        return adapter(service)  # type: ignore[no-any-return]
    return adapter(bot, service)  # type: ignore[no-any-return]


async def run_bots(app: App, stop: asyncio.Event) -> None:
    """Run every configured bot until ``stop`` is set or all of them finish."""
    if not app.config.bots:
        raise StartupError("no bots are configured (bots: is empty)")
    # Every bot is built (extras, backends) before any starts.
    adapters = [(bot, build_adapter(app, bot)) for bot in app.config.bots]
    bots = {bot.name: adapter for bot, adapter in adapters}
    async with monitoring(app.config.metrics, app.metrics, app.store.engine, bots):
        await _run_adapters(app, adapters, stop)


async def _run_adapters(
    app: App, adapters: list[tuple[BotConfig, Adapter]], stop: asyncio.Event
) -> None:
    tasks = {asyncio.ensure_future(adapter.run(stop)): bot for bot, adapter in adapters}
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if isinstance(error, AdapterStartError):
                    raise StartupError(f"bot {tasks[task].name!r}: {error}") from error
                if error is not None:
                    raise error
    finally:
        if pending:
            stop.set()  # one bot failed: the others shut down cleanly too
            grace = max((b.shutdown_grace for b in app.config.bots), default=0.0)
            _, late = await asyncio.wait(pending, timeout=grace + SHUTDOWN_MARGIN)
            for task in late:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
