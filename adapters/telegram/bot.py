"""The Telegram bot: python-telegram-bot's Application feeding the chat service.

PTB does the wire protocol (polling or webhook, retries of getUpdates); every answer goes
through the shared delivery layer with Telegram's limits. Handlers run as our own tasks,
so a shutdown can let answers in flight finish within ``shutdown_grace``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Sequence
from urllib.parse import urlsplit

from telegram import BotCommand, Update
from telegram.error import BadRequest, Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler

from adapters.base import Adapter, AdapterStartError, InFlight
from adapters.delivery.scheduler import DeliveryScheduler
from adapters.delivery.sink import DeliverySink
from adapters.delivery.target import PlatformLimits
from adapters.telegram.config import TelegramBotConfig
from adapters.telegram.intake import ConfirmingQueue
from adapters.telegram.limits import TELEGRAM_LIMITS
from adapters.telegram.render import TelegramRenderer
from adapters.telegram.target import TelegramTarget
from adapters.telegram.updates import NO_TEXT_REPLY, Inbound, inbound
from core.chat_service import ChatService
from core.http import redact_url
from core.incoming import IncomingMessage, ReplySink, ReplyTargetGone

log = logging.getLogger(__name__)

# PTB 22 warns on every 429 (inside RetryAfter itself) that time periods become
# timedelta objects in its next major version; opting in now is what silences it, and
# our code reads both forms (target.retry_seconds).
os.environ.setdefault("PTB_TIMEDELTA", "true")

COMMANDS = [
    BotCommand("start", "Say hello"),
    BotCommand("help", "How to talk to me"),
    BotCommand("reset", "Start a fresh conversation"),
]
START_ATTEMPTS = 5  # connection errors at start-up: retried, 1 s .. 16 s apart
DEFAULT_API = "https://api.telegram.org/bot"


def file_url(api_base_url: str) -> str:
    """A self-hosted Bot API server serves files under /file/bot<TOKEN>/, next to /bot."""
    base = api_base_url.rstrip("/")
    return base[: -len("/bot")] + "/file/bot" if base.endswith("/bot") else base + "/file"


class TelegramAdapter(Adapter):
    def __init__(
        self,
        config: TelegramBotConfig,
        service: ChatService,
        *,
        limits: PlatformLimits = TELEGRAM_LIMITS,
        start_wait: float = 1.0,
    ) -> None:
        self.config = config
        self.service = service
        self.limits = limits
        self._start_wait = start_wait
        self._renderer = TelegramRenderer()
        self._inflight = InFlight(config.name)
        self._scheduler: DeliveryScheduler | None = None
        self._bot_id = 0
        self._username = ""
        self._app: Application | None = None  # type: ignore[type-arg]
        self._queue = ConfirmingQueue()

    @property
    def api_base_url(self) -> str:
        url = (self.config.api_base_url or DEFAULT_API).rstrip("/")
        # "http://host:8081" for a self-hosted server means its /bot<TOKEN>/ endpoints.
        return url + "/bot" if urlsplit(url).path in ("", "/") else url

    @property
    def connected(self) -> bool:
        """Polling, or the webhook listener, is running."""
        app = self._app
        return app is not None and app.updater is not None and app.updater.running

    async def run(self, stop: asyncio.Event) -> None:
        app = self._build()
        await self._initialize(app, stop)
        if stop.is_set():
            return
        scheduler = DeliveryScheduler(self.limits, metrics=self.service.metrics)
        self._scheduler = scheduler
        self._app = app
        recovery: asyncio.Task[None] | None = None
        try:
            await app.start()
            # Turns a stopped or crashed worker left: mended before new ones start.
            recovery = asyncio.ensure_future(self.service.keep_recovering(self))
            await self._start_updates(app)
            log.info("bot %s: @%s is up (%s)", self.config.name, self._username, self.config.mode)
            await stop.wait()
            log.info("bot %s: stopping", self.config.name)
            if app.updater is not None and app.updater.running:
                await app.updater.stop()  # no new updates from here on
            await self._inflight.drain(self.config.shutdown_grace)
        finally:
            if recovery is not None:
                recovery.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await recovery
            await self._inflight.drain(0)
            if app.running:
                await app.stop()
            await scheduler.aclose()
            await app.shutdown()

    def _build(self) -> Application:  # type: ignore[type-arg]
        token = self.config.token.get_secret_value() if self.config.token else ""
        app = (
            ApplicationBuilder()
            .token(token)
            .base_url(self.api_base_url)
            .base_file_url(file_url(self.api_base_url))
            .update_queue(self._queue)
            .build()
        )
        app.add_handler(TypeHandler(Update, self._on_update))
        app.add_error_handler(self._on_error)
        return app

    async def _initialize(self, app: Application, stop: asyncio.Event) -> None:  # type: ignore[type-arg]
        """getMe (retrying connection errors a few times), then setMyCommands."""
        where = redact_url(self.api_base_url)
        wait = self._start_wait
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                await app.initialize()  # getMe
                break
            except InvalidToken:
                # PTB's message quotes the token itself: say it in our own words.
                raise AdapterStartError(
                    "Telegram rejected the bot token; copy it again from @BotFather into "
                    "the bot's token"
                ) from None
            except (BadRequest, Forbidden) as exc:  # NetworkError's subclasses, not retried
                raise AdapterStartError(
                    f"Telegram refused to start the bot: {exc.message}"
                ) from None
            except NetworkError as exc:
                if attempt == START_ATTEMPTS:
                    raise AdapterStartError(
                        f"cannot reach the Telegram Bot API at {where} after {attempt} tries "
                        f"({exc.message}); check the network or api_base_url"
                    ) from None
                log.warning(
                    "bot %s: Telegram unreachable (%s); retrying in %g s",
                    self.config.name,
                    exc.message,
                    wait,
                )
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                    return
                except TimeoutError:
                    wait *= 2
            except TelegramError as exc:
                raise AdapterStartError(
                    f"Telegram refused to start the bot: {exc.message}"
                ) from None
        self._bot_id = app.bot.id
        self._username = app.bot.username
        try:
            await app.bot.set_my_commands(COMMANDS)
        except TelegramError as exc:  # the command menu is a convenience, not a need
            log.warning("bot %s: could not set the command menu (%s)", self.config.name, exc)

    async def _start_updates(self, app: Application) -> None:  # type: ignore[type-arg]
        updater = app.updater
        assert updater is not None
        allowed = [Update.MESSAGE]
        if self.config.mode == "polling":
            await updater.start_polling(allowed_updates=allowed, error_callback=self._poll_error)
            return
        hook = self.config.webhook
        assert hook is not None  # the config model requires it in webhook mode
        path = hook.path if hook.path is not None else urlsplit(hook.url).path
        if hook.secret_token is None:
            log.warning(
                "bot %s: webhook without a secret_token: anyone who finds its URL can post "
                "updates as any user; set webhook.secret_token",
                self.config.name,
            )
        try:
            await updater.start_webhook(
                listen=hook.listen,
                port=hook.port,
                url_path=path.lstrip("/"),
                webhook_url=hook.url,
                secret_token=hook.secret_token.get_secret_value() if hook.secret_token else None,
                allowed_updates=allowed,
            )
        except OSError as exc:
            raise AdapterStartError(
                f"cannot listen for webhooks on {hook.listen}:{hook.port} ({exc.strerror})"
            ) from None

    def _poll_error(self, exc: TelegramError) -> None:
        # PTB retries getUpdates itself, with backoff; one line per failure is enough.
        log.warning("bot %s: polling Telegram failed (%s); retrying", self.config.name, exc)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("bot %s: error in update handling", self.config.name, exc_info=context.error)

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        safe = self._queue.safe_event(update)
        try:
            found = inbound(
                update, bot=self.config.name, bot_id=self._bot_id, username=self._username
            )
        except BaseException:
            safe.set()  # PTB's error handler logs it; the update is not held back
            raise
        if found is None:
            safe.set()
            return
        # Our own task, so this returns at once and PTB fetches the next update (once
        # the chat service has the message safe); the chat service's per-scope lock
        # keeps one scope's answers in order.
        self._inflight.spawn(self._answer(found, safe))

    def _sink(self, found: IncomingMessage, adopt: Sequence[str] = ()) -> DeliverySink:
        assert self._scheduler is not None and self._app is not None
        target = TelegramTarget(
            self._app.bot,
            int(found.chat_id),
            private=found.is_direct,
            thread_id=int(found.thread_id) if found.thread_id else None,
            reply_to=int(found.message_id) if found.message_id else None,
        )
        return DeliverySink(
            self._scheduler,
            target,
            self._renderer,
            stream=self.config.stream,
            edit_interval=self.config.edit_interval,
            typing=False,  # the chat service starts it once it decides to answer
            adopt=adopt,
        )

    @contextlib.asynccontextmanager
    async def reply_sink(
        self, msg: IncomingMessage, *, adopt: Sequence[str]
    ) -> AsyncIterator[ReplySink]:
        """Crash recovery's way back into a chat (``core.incoming.Redelivery``)."""
        sink = self._sink(msg, adopt)
        try:
            yield sink
        finally:
            await sink.aclose()

    async def _answer(self, found: Inbound, safe: asyncio.Event) -> None:
        sink = self._sink(found.message)
        try:
            if found.has_text:
                await self.service.handle(
                    found.message, sink, commands=found.is_command, received=safe
                )
            else:
                safe.set()
                await sink.complete(NO_TEXT_REPLY)
        except ReplyTargetGone:
            log.info(
                "bot %s: chat %s is gone (blocked or removed)", self.config.name, found.chat_id
            )
        finally:
            safe.set()
            await sink.aclose()
