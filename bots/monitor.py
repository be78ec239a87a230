"""The ``metrics:`` listener of ``parley run``: Prometheus ``/metrics`` and ``/healthz``.

``/healthz`` answers 200 when the database answers a ``SELECT 1`` within
``HEALTH_TIMEOUT`` and every bot is connected to its platform (polling or its webhook
running, the Discord gateway open), else 503; both with a small JSON body naming what
is down, for a supervisor or a load balancer. The body says no more than "unreachable"
about the database: the listener may face a network, the log has the details.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.base import Adapter
from bots.config import MetricsConfig
from bots.errors import StartupError
from core.metrics import Metrics
from core.store.errors import describe_database_error

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0  # seconds the database has to answer a health check


class Monitor:
    """The HTTP listener; ``start`` binds it, ``aclose`` stops it."""

    def __init__(
        self,
        config: MetricsConfig,
        metrics: Metrics,
        engine: AsyncEngine,
        bots: Mapping[str, Adapter],
        *,
        timeout: float = HEALTH_TIMEOUT,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.engine = engine
        self.bots = bots
        self.timeout = timeout
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._down: list[str] = []  # at the last check: its changes are logged

    async def start(self) -> str:
        """Listen; returns the base URL, with the port bound (``port: 0`` picks one)."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.listen, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise StartupError(
                f"metrics: cannot listen on {self.config.listen}:{self.config.port} "
                f"({exc.strerror or exc})"
            ) from None
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        return self.url

    async def aclose(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether all is well, and the JSON body that says so (or what is down)."""
        database, why = await self._database()
        bots = {
            name: "connected" if adapter.connected else "disconnected"
            for name, adapter in self.bots.items()
        }
        down = ([] if database == "ok" else ["database"]) + [
            f"bot {name}" for name, state in bots.items() if state != "connected"
        ]
        if down != self._down:  # logged as it changes: a supervisor polls every few seconds
            if down:
                detail = f" (database: {why})" if why else ""
                log.warning("health: down: %s%s", ", ".join(down), detail)
            else:
                log.info("health: everything is up again")
            self._down = down
        body: dict[str, Any] = {"status": "down" if down else "ok"}
        if down:
            body["down"] = down
        body["database"] = database
        body["bots"] = bots
        return not down, body

    async def _database(self) -> tuple[str, str]:
        """``ok``, ``timeout`` or ``unreachable``, and why for the log."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except TimeoutError:
            return "timeout", f"no answer within {self.timeout:g} s"
        except Exception as exc:
            return "unreachable", describe_database_error(exc)
        return "ok", ""

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, body = await self.health()
        return web.json_response(body, status=200 if ok else 503)


@contextlib.asynccontextmanager
async def monitoring(
    config: MetricsConfig | None,
    metrics: Metrics | None,
    engine: AsyncEngine,
    bots: Mapping[str, Adapter],
) -> AsyncIterator[Monitor | None]:
    """The listener while the bots run; nothing without a ``metrics:`` section."""
    if config is None or metrics is None:
        yield None
        return
    monitor = Monitor(config, metrics, engine, bots)
    url = await monitor.start()
    log.info("metrics on %s/metrics, health on %s/healthz", url, url)
    try:
        yield monitor
    finally:
        await monitor.aclose()
