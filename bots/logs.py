"""Logging set-up: stderr, parley's own loggers by verbosity, and every configured
secret masked in every record.

``-v`` shows parley's INFO lines (one per turn, retries), ``-vv`` its DEBUG lines
(requests, store timings) and tracebacks. Libraries (aiosqlite, alembic, asyncio,
httpx, telegram, discord...) stay at WARNING: their debug output drowns parley's.
``PARLEY_DEBUG_LIBS=1`` lets them log at the same level as parley, and ``-vvv`` is
``-vv`` with that switched on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable

from core.masking import secrets_pattern

MASK = "********"
#: The top-level packages whose loggers follow ``-v``; every other logger is a library's.
PARLEY_LOGGERS = ("core", "adapters", "bots", "migrations")
DEBUG_LIBS_ENV = "PARLEY_DEBUG_LIBS"


class RedactSecrets(logging.Filter):
    """Masks secret values wherever they appear in a formatted log message.

    Backends already avoid logging credentials; this is the net under that rule,
    e.g. for a library that logs a URL with a Telegram token in it.

    With ``tracebacks=False`` a record's exception is shortened to one line appended to
    the message: a terminal user gets the sentence, ``-vv`` gets the traceback.
    """

    def __init__(self, secrets: Iterable[str], *, tracebacks: bool = True) -> None:
        super().__init__()
        self._pattern = secrets_pattern(secrets)
        self._tracebacks = tracebacks

    def redact(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not self._tracebacks and (error is not None or record.stack_info):
            message = record.getMessage()
            # The first line only: SQLAlchemy appends the statement and its parameters.
            summary = (str(error).strip().splitlines() or [""])[0][:300] if error else ""
            if error is not None and (not summary or summary not in message):
                message += f" ({type(error).__name__}{': ' + summary if summary else ''})"
            record.msg, record.args = message, None
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        if self._pattern is not None:
            message = record.getMessage()
            redacted = self.redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
            if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def _debug_libs() -> bool:
    return os.environ.get(DEBUG_LIBS_ENV, "").strip().lower() not in ("", "0", "false", "no")


def setup_logging(
    verbosity: int,
    secrets: Iterable[str] = (),
    *,
    timestamps: bool = True,
    tracebacks: bool = True,
) -> None:
    """``timestamps=False`` for one-shot terminal commands, where they are noise;
    ``tracebacks=False`` shortens exceptions to one line (see ``RedactSecrets``)."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    libraries = level if verbosity >= 3 or _debug_libs() else logging.WARNING
    handler = logging.StreamHandler()
    fmt = "%(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(f"%(asctime)s {fmt}" if timestamps else fmt))
    handler.addFilter(RedactSecrets(secrets, tracebacks=tracebacks))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(libraries)
    for name in PARLEY_LOGGERS:
        logging.getLogger(name).setLevel(level)
