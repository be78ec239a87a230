"""The application: the store, the backends and one chat service per bot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from types import TracebackType
from typing import Self

from bots.backends import STORE_HISTORY_TYPES, build_backend
from bots.config import BotConfig, ParleyConfig, database_url
from bots.database import database_error
from bots.errors import StartupError
from core.backends.base import Backend
from core.chat_service import ChatService
from core.errors import ChatGPTError
from core.incoming import BotPolicy
from core.metrics import NO_METRICS, Metrics
from core.store.sql import SQLStore
from migrations.runner import upgrade_store

log = logging.getLogger(__name__)


def policy_for(
    bot: BotConfig, backend: str, shared_history: frozenset[str] = frozenset()
) -> BotPolicy:
    """``shared_history``: the names of the backends whose history is in parley's store
    (``App.shared_history``)."""

    def ids(values: list[str | int]) -> frozenset[str]:
        return frozenset(str(v) for v in values)

    return BotPolicy(
        name=bot.name,
        backend=backend,
        scope=bot.scope,
        group_trigger=bot.group_trigger,
        allowed_users=ids(bot.allowed_users),
        allowed_chats=ids(bot.allowed_chats),
        allowed_guilds=ids(getattr(bot, "allowed_guilds", [])),  # Discord only
        allowed_roles=ids(getattr(bot, "allowed_roles", [])),
        admins=ids(bot.admins),
        max_input_chars=bot.max_input_chars,
        rate_limit=(
            (bot.rate_limit.messages, bot.rate_limit.per_seconds) if bot.rate_limit else None
        ),
        shared_history=shared_history,
    )


class App:
    """Owns every long-lived resource; ``async with App(config)`` opens and closes them."""

    def __init__(self, config: ParleyConfig) -> None:
        self.config = config
        self.url = database_url(config)
        self._store: SQLStore | None = None
        self._backends: dict[str, Backend] = {}
        # Its own registry per app: several apps (tests) in one process don't collide.
        self.metrics = Metrics() if config.metrics is not None else None

    @property
    def store(self) -> SQLStore:
        if self._store is None:
            raise RuntimeError("App is not open")
        return self._store

    async def __aenter__(self) -> Self:
        store: SQLStore | None = None
        try:
            store = SQLStore(self.url)
            await upgrade_store(store)  # through the store's connections
        except Exception as exc:
            if store is not None:
                await store.aclose()
            raise database_error(self.config, exc) from exc
        self._store = store
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            with contextlib.suppress(Exception):
                await backend.aclose()
        if self._store is not None:
            await self._store.aclose()
            self._store = None

    def backend(self, name: str) -> Backend:
        if name not in self.config.backends:
            known = ", ".join(sorted(self.config.backends))
            raise StartupError(f"no backend named {name!r} (backends defined: {known})")
        if name not in self._backends:
            try:
                backend = build_backend(self.config.backends[name], history=self.store)
            except (ChatGPTError, ValueError) as exc:  # e.g. a missing model file
                raise StartupError(f"backend {name!r}: {exc}") from exc
            self._backends[name] = backend
        return self._backends[name]

    @property
    def shared_history(self) -> frozenset[str]:
        """The configured backends that read their history from parley's store."""
        return frozenset(
            name for name, b in self.config.backends.items() if b.type in STORE_HISTORY_TYPES
        )

    def service(self, bot: BotConfig, backend: str | None = None) -> ChatService:
        name = backend or self.config.backend_for(bot)
        metrics = self.metrics.for_bot(bot.name, bot.platform, name) if self.metrics else None
        return ChatService(
            policy=policy_for(bot, name, self.shared_history),
            backend=self.backend(name),
            store=self.store,
            metrics=metrics or NO_METRICS,
        )


def install_stop_signals(stop: asyncio.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set ``stop``; returns a function that removes the handlers."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread, or Windows
            pass

    def remove() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return remove
