"""Logging set-up: stderr, and every configured secret masked in every record."""

from __future__ import annotations

import logging
from collections.abc import Iterable

MASK = "********"


class RedactSecrets(logging.Filter):
    """Masks secret values wherever they appear in a formatted log message.

    Backends already avoid logging credentials; this is the net under that rule,
    e.g. for a library that logs a URL with a Telegram token in it.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            redacted = self.redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
            if record.exc_info and record.exc_text is None and record.exc_info[1] is not None:
                record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        return True


def setup_logging(verbosity: int, secrets: Iterable[str] = (), *, timestamps: bool = True) -> None:
    """``timestamps=False`` for one-shot terminal commands, where they are noise."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler()
    fmt = "%(levelname)s %(name)s: %(message)s"
    handler.setFormatter(logging.Formatter(f"%(asctime)s {fmt}" if timestamps else fmt))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
