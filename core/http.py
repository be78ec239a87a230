"""HTTP helpers the backends share: endpoint URLs, ``Retry-After``, error bodies and
keeping secrets out of logs and error messages."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from yarl import URL

from core.masking import secrets_pattern

if TYPE_CHECKING:  # the store's and the CLI's error messages use this module without HTTP
    import aiohttp

__all__ = [
    "ERROR_BODY_LIMIT",
    "SECRET_HEADER",
    "Redactor",
    "Secret",
    "endpoint",
    "error_detail",
    "join_url",
    "parse_retry_after",
    "read_error_body",
    "redact_url",
]

#: How much of an error body is read: enough for any JSON error, not a whole web page.
ERROR_BODY_LIMIT = 64 * 1024
#: Header names whose values are credentials.
SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|password", re.IGNORECASE)
#: Shorter values of secret-looking headers are not redacted: replacing "1" or "yes"
#: everywhere would garble messages while hiding nothing.
_MIN_HEADER_SECRET = 6
_DETAIL_KEYS = ("message", "detail", "msg", "code")


# -- endpoints -----------------------------------------------------------------------


def join_url(base: str, path: str) -> str:
    """``base`` with ``path`` appended to its path, its query kept (Azure's
    ``.../v1?api-version=...``): ``join_url("https://h/v1/?q=1", "/chat/completions")`` is
    ``https://h/v1/chat/completions?q=1``. The text is kept as written (no re-encoding)."""
    parts = urlsplit(base)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + path, fragment=""))


def endpoint(url: str) -> str:
    """Where a request went, for error messages and logs: ``host[:port]/path``, without
    scheme, credentials or query (which may carry keys), e.g.
    ``api.example.com/v1/chat/completions``."""
    try:
        parsed = URL(redact_url(url))
    except (TypeError, ValueError):
        return "the server"
    if not parsed.host:
        return "the server"
    host = parsed.raw_host or parsed.host
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    if parsed.explicit_port is not None and not parsed.is_default_port():
        host = f"{host}:{parsed.port}"
    return host + parsed.raw_path.rstrip("/")


# -- Retry-After ---------------------------------------------------------------------


def parse_retry_after(
    headers_or_value: Mapping[str, str] | str | None, now: datetime | None = None
) -> float | None:
    """Seconds to wait before a retry, or None if the server did not say (or said nonsense).

    Takes a response's headers or just the ``Retry-After`` value. In headers,
    ``retry-after-ms`` (OpenAI's, in milliseconds) wins over ``Retry-After``, which is
    delta-seconds or an HTTP date. A negative wait or a past date means no wait (0).
    """
    if headers_or_value is None or isinstance(headers_or_value, str):
        value = headers_or_value
    else:
        millis = _finite(_header(headers_or_value, "retry-after-ms"))
        if millis is not None:
            return max(millis / 1000.0, 0.0)
        value = _header(headers_or_value, "retry-after")
    value = (value or "").strip()
    if not value:
        return None
    seconds = _finite(value)
    if seconds is None:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(seconds, 0.0)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict, whose keys may be spelled in any case
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def _finite(value: str | None) -> float | None:
    """``value`` as a finite number; None for anything else (NaN would compare as a wait)."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# -- error bodies --------------------------------------------------------------------


async def read_error_body(response: aiohttp.ClientResponse, limit: int = ERROR_BODY_LIMIT) -> bytes:
    """Up to ``limit`` bytes of an error response's body, read until EOF or ``limit``.

    If reading fails part-way, what arrived before the failure (maybe b"").
    """
    # One ``read(n)`` returns as soon as any bytes are buffered: a body that arrives in
    # several TCP segments would be cut after the first (half a JSON error).
    import aiohttp  # loaded by then: the response came from it

    chunks: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = await response.content.read(limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except (aiohttp.ClientError, OSError):  # OSError includes TimeoutError
        pass
    return b"".join(chunks)


def error_detail(body: bytes, *, limit: int = 300) -> str:
    """The human part of an error body, at most ``limit`` characters ("" for none).

    Understands OpenAI's ``{"error": {"message": ...}}``, FastAPI's and ChatGPT's
    ``{"detail": ...}`` and kin; other JSON and plain text are given whitespace-collapsed.
    Markup (an HTML error page, a Cloudflare challenge) gives "": it is kilobytes of noise
    that the status line already sums up.
    """
    text = body.decode("utf-8", errors="replace").strip()
    if not text or text.startswith("<"):
        return ""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        found = _message_in(data.get("error", data))
        if found:
            return found[:limit]
    return " ".join(text.split())[:limit]


def _message_in(error: object, nested: bool = False) -> str:
    """The message in an ``error`` value: itself if a string, else its first message key."""
    if isinstance(error, str):
        return error
    if not isinstance(error, dict):
        return ""
    for key in _DETAIL_KEYS:
        value = error.get(key)
        if not value:
            continue
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and not nested:  # {"detail": {"message": ...}}
            found = _message_in(value, nested=True)
            if found:
                return found
        return json.dumps(value)
    return ""


# -- secrets -------------------------------------------------------------------------


class Secret:
    """A string that never shows itself in reprs (tracebacks with locals, debuggers)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__


#: Query parameters whose values are credentials: ``api-key``, ``api_key``, ``key``,
#: ``token``, ``access_token``, ``sig``, ``signature``, ``secret``, ``password``,
#: ``auth``, ``session``... (a substring match: masking a harmless ``design=`` costs less
#: than showing an Azure SAS ``sig=``).
SECRET_QUERY = re.compile(r"key|token|secret|passw|pwd|auth|sig|credential|session|cookie", re.I)
#: What a masked part of a URL shows, as in ``parley config check`` and the logs.
URL_MASK = "********"


def redact_url(url: str) -> str:
    """``url`` fit for output and logs: the password (or a user name that stands alone,
    which may be a token) and the values of secret-looking query parameters
    (``SECRET_QUERY``) shown as ``********``. Anything else is returned unchanged."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return URL_MASK  # unparsable: it might still hold a secret
    masked = parsed
    if parsed.password is not None:
        masked = masked.with_password(URL_MASK)
    elif parsed.user:  # a user name alone may be a token (https://TOKEN@host)
        masked = masked.with_user(URL_MASK)
    if any(SECRET_QUERY.search(name) for name in parsed.query):
        masked = masked.with_query(
            [(k, URL_MASK if SECRET_QUERY.search(k) else v) for k, v in parsed.query.items()]
        )
    return url if masked is parsed else str(masked)


def url_secrets(url: str) -> list[str]:
    """The parts of ``url`` that ``redact_url`` masks, as written and percent-decoded,
    for a log filter that must mask them wherever else they turn up."""
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        return [url] if url else []
    found: list[str | None] = []
    if parsed.password is not None:
        found += [parsed.raw_password, parsed.password]
    elif parsed.user:
        found += [parsed.raw_user, parsed.user]
    for name, value in parsed.query.items():
        if SECRET_QUERY.search(name):
            found.append(value)
    for pair in parsed.raw_query_string.split("&"):
        name, _, value = pair.partition("=")
        if SECRET_QUERY.search(name):
            found.append(value)
    return list(dict.fromkeys(s for s in found if s))


class Redactor:
    """Replaces every known secret with ``***`` in text meant for logs and errors."""

    def __init__(
        self, secrets: Iterable[str | None] = (), *, headers: Mapping[str, str] | None = None
    ) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for secret in secrets:
            self.add(secret)
        self.add_headers(headers or {})

    def add(self, secret: str | None) -> None:
        if secret and secret not in self._secrets:
            self._secrets.add(secret)
            self._pattern = secrets_pattern(self._secrets)

    def add_headers(self, headers: Mapping[str, str]) -> None:
        """Treat the values of secret-looking headers (``SECRET_HEADER``) as secrets."""
        for name, value in headers.items():
            if SECRET_HEADER.search(name) and len(value) >= _MIN_HEADER_SECRET:
                self.add(value)

    def __call__(self, text: str) -> str:
        return self._pattern.sub("***", text) if self._pattern is not None else text

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """``headers`` fit for a debug log: credentials masked, the auth scheme kept."""
        shown = {}
        for name, value in headers.items():
            lowered = name.lower()
            if lowered == "authorization":
                value = value.split(" ", 1)[0] + " ***"
            elif lowered in ("cookie", "set-cookie"):
                value = re.sub(r"=[^;]*", "=***", value)
            elif SECRET_HEADER.search(name):
                value = "***"
            shown[name] = self(value)
        return shown
