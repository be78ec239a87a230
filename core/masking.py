"""Finding secrets in text meant for logs and errors (no heavy imports: the log
filter of every command uses it)."""

from __future__ import annotations

import re
from collections.abc import Iterable

# A secret this short ("ok", "x", "ollama") is also an ordinary word or part of one:
# it is masked only where it stands alone, so logs stay readable ("/v1/...", "api-key").
SHORT_SECRET = 8
# Shorter than this is no secret at all (and masking "a" would shred every line).
TRIVIAL_SECRET = 3


def secrets_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One regex matching every secret: long ones anywhere, short ones only as a whole
    token (not next to a letter, digit, ``_`` or ``-``). Longest first, so a secret
    that contains another is masked whole."""
    parts = []
    for secret in sorted({s for s in secrets if len(s) >= TRIVIAL_SECRET}, key=len, reverse=True):
        escaped = re.escape(secret)
        if len(secret) < SHORT_SECRET:
            escaped = rf"(?<![\w-]){escaped}(?![\w-])"
        parts.append(escaped)
    return re.compile("|".join(parts)) if parts else None
