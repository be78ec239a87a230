"""Prometheus metrics: the instruments, and the hooks the chat service, the backends'
retry loop and the delivery scheduler call where the numbers already are.

Every label value is bounded: bot and backend names come from the config, platforms,
outcomes, error kinds and scopes from the fixed sets below. No user, chat or message
id, and no text, is ever a label.

With metrics off (no ``metrics:`` section) everything goes to ``NO_METRICS``, whose
hooks do nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final

from core.errors import (
    ChatGPTAuthError,
    ChatGPTConnectionError,
    ChatGPTError,
    ChatGPTRateLimitError,
    ChatGPTStreamError,
    ChatGPTTimeoutError,
)

if TYPE_CHECKING:  # prometheus_client (~20 ms) loads only when metrics are on
    from prometheus_client import CollectorRegistry

#: Turn outcomes (``parley_turns_total{outcome}``).
OUTCOMES: Final = (
    "answered",
    "backend_error",  # the backend failed (after its retries)
    "not_delivered",  # the platform refused the answer
    "not_saved",  # shown, but the store could not commit it
    "target_gone",  # the chat went away (bot blocked, channel deleted)
    "cancelled",  # stopped mid-answer (shutdown)
    "failed",  # anything else
)
#: Backend error kinds (``parley_backend_errors_total{kind}``, ``..._retries_total``).
ERROR_KINDS: Final = (
    "auth",
    "rate_limited",
    "timeout",
    "connection",
    "stream",
    "server",
    "client",
    "other",
)
RATE_LIMIT_SCOPES: Final = ("chat", "global")
#: Seconds; LLM answers take from a fraction of a second to minutes.
ANSWER_BUCKETS: Final = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
FIRST_TEXT_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)

# The _TurnLog's outcome words (core/chat_service.py) -> the outcome label.
_OUTCOME_WORDS: Final = {
    "answered": "answered",
    "not delivered": "not_delivered",
    "not saved": "not_saved",
    "the reply's destination went away": "target_gone",
    "cancelled": "cancelled",
}


def outcome_label(outcome: str) -> str:
    """The ``outcome`` label of a turn from its log line's outcome words."""
    if outcome.startswith("failed: "):  # _TurnLog.failed(): a backend error
        return "backend_error"
    return _OUTCOME_WORDS.get(outcome, "failed")


def error_kind(error: BaseException | None) -> str:
    """The ``kind`` label of a backend error."""
    if isinstance(error, ChatGPTAuthError):
        return "auth"
    if isinstance(error, ChatGPTRateLimitError):
        return "rate_limited"
    if isinstance(error, ChatGPTTimeoutError):
        return "timeout"
    if isinstance(error, ChatGPTConnectionError):
        return "connection"
    if isinstance(error, ChatGPTStreamError):
        return "stream"
    if isinstance(error, ChatGPTError) and error.status_code is not None:
        if error.status_code == 429:
            return "rate_limited"
        if error.status_code in (401, 403):
            return "auth"
        if error.status_code >= 500:
            return "server"
        if error.status_code >= 400:
            return "client"
    return "other"


_NULL: Final = contextlib.nullcontext()


class BotMetrics:
    """One bot's instruments, as the chat service, its backend and its platform see
    them. This base records nothing: it is ``NO_METRICS``, the default with metrics off."""

    def turn(self, outcome: str, seconds: float, first_text: float | None) -> None:
        """A turn that reached the backend ended: ``outcome`` in the turn log's words,
        ``seconds`` in all, ``first_text`` seconds to the first text (None: none came)."""

    def tokens(self, sent: int, received: int) -> None:
        """Tokens of a finished answer: the prompt sent, the answer received."""

    def streaming(self) -> AbstractContextManager[None]:
        """Around one backend stream: counts it in flight, and its error if it fails;
        the backend's retries within it are counted for this bot's backend."""
        return _NULL

    def retried(self, error: BaseException | None) -> None:
        """The backend retries a request that failed with ``error``."""

    def platform_rate_limited(self, seconds: float, scope: str) -> None:
        """The platform answered 429: nothing in ``scope`` may go out for ``seconds``."""


NO_METRICS: Final = BotMetrics()

# The bot whose backend stream runs in this task: the backends' retry loop reports to
# it without every backend carrying a metrics object (see backend_retried).
_streaming: ContextVar[BotMetrics | None] = ContextVar("parley_streaming", default=None)


def backend_retried(error: BaseException | None) -> None:
    """Count a retry for the backend streaming in this task (core/backends/call.py)."""
    metrics = _streaming.get()
    if metrics is not None:
        metrics.retried(error)


class Metrics:
    """The metric objects of one application, in their own registry (never the
    process-wide default one, so several apps or tests in one process don't collide)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        ProcessCollector(registry=r)  # CPU, memory, open files: the first questions asked
        self.turns = Counter(
            "parley_turns",
            "Turns that reached the backend, by how they ended",
            ["bot", "platform", "outcome"],
            registry=r,
        )
        self.answer_seconds = Histogram(
            "parley_answer_seconds",
            "Seconds from asking the backend to the answer delivered and saved (answered turns)",
            ["bot", "platform"],
            buckets=ANSWER_BUCKETS,
            registry=r,
        )
        self.first_text_seconds = Histogram(
            "parley_first_text_seconds",
            "Seconds from asking the backend to the first text of the answer",
            ["bot", "platform"],
            buckets=FIRST_TEXT_BUCKETS,
            registry=r,
        )
        self.backend_errors = Counter(
            "parley_backend_errors",
            "Backend streams that failed (after their retries), by kind",
            ["backend", "kind"],
            registry=r,
        )
        self.backend_retries = Counter(
            "parley_backend_retries",
            "Backend requests retried, by the kind of failure retried",
            ["backend", "kind"],
            registry=r,
        )
        self.backend_tokens = Counter(
            "parley_backend_tokens",
            "Tokens of answered turns: in (the prompt sent) and out (the answer)",
            ["backend", "direction"],
            registry=r,
        )
        self.backend_streams = Gauge(
            "parley_backend_streams_in_flight",
            "Backend answers streaming now",
            ["backend"],
            registry=r,
        )
        self.platform_rate_limits = Counter(
            "parley_platform_rate_limits",
            "HTTP 429 answers from the chat platform",
            ["bot", "platform", "scope"],
            registry=r,
        )
        self.platform_rate_limit_wait = Counter(
            "parley_platform_rate_limit_wait_seconds",
            "Seconds the chat platform's 429 answers asked to wait",
            ["bot", "platform", "scope"],
            registry=r,
        )

    def for_bot(self, bot: str, platform: str, backend: str) -> BotMetrics:
        return _BotInstruments(self, bot, platform, backend)


class _BotInstruments(BotMetrics):
    """The label children resolved once per bot (and every series there from the
    start, at zero): the hooks only add."""

    def __init__(self, metrics: Metrics, bot: str, platform: str, backend: str) -> None:
        self._turns = {o: metrics.turns.labels(bot, platform, o) for o in OUTCOMES}
        self._answer = metrics.answer_seconds.labels(bot, platform)
        self._first_text = metrics.first_text_seconds.labels(bot, platform)
        self._errors = {k: metrics.backend_errors.labels(backend, k) for k in ERROR_KINDS}
        self._retries = {k: metrics.backend_retries.labels(backend, k) for k in ERROR_KINDS}
        self._tokens_in = metrics.backend_tokens.labels(backend, "in")
        self._tokens_out = metrics.backend_tokens.labels(backend, "out")
        self._streams = metrics.backend_streams.labels(backend)
        self._limited = {
            s: metrics.platform_rate_limits.labels(bot, platform, s) for s in RATE_LIMIT_SCOPES
        }
        self._waited = {
            s: metrics.platform_rate_limit_wait.labels(bot, platform, s) for s in RATE_LIMIT_SCOPES
        }

    def turn(self, outcome: str, seconds: float, first_text: float | None) -> None:
        label = outcome_label(outcome)
        self._turns[label].inc()
        if label == "answered":
            self._answer.observe(seconds)
        if first_text is not None:
            self._first_text.observe(first_text)

    def tokens(self, sent: int, received: int) -> None:
        self._tokens_in.inc(max(sent, 0))
        self._tokens_out.inc(max(received, 0))

    @contextlib.contextmanager
    def _stream(self) -> Iterator[None]:
        token = _streaming.set(self)
        self._streams.inc()
        try:
            yield
        except ChatGPTError as exc:
            self._errors[error_kind(exc)].inc()
            raise
        finally:
            self._streams.dec()
            _streaming.reset(token)

    def streaming(self) -> AbstractContextManager[None]:
        return self._stream()

    def retried(self, error: BaseException | None) -> None:
        self._retries[error_kind(error)].inc()

    def platform_rate_limited(self, seconds: float, scope: str) -> None:
        if scope not in self._limited:
            scope = "chat"
        self._limited[scope].inc()
        self._waited[scope].inc(max(seconds, 0.0))
