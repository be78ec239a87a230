"""HTTP details of the ChatGPT web protocol: browser headers, errors, redaction."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

from core.errors import ChatGPTAuthError, ChatGPTError, ChatGPTRateLimitError

DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/108.0.0.0 Safari/537.36"
)
SESSION_COOKIE = "__Secure-next-auth.session-token"
CLEARANCE_COOKIE = "cf_clearance"
_MAX_ERROR_BODY = 64 * 1024


def browser_headers(user_agent: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    """The headers the ChatGPT web app sends, with ``extra`` merged over them."""
    headers = {
        "user-agent": user_agent,
        "x-openai-assistant-app-id": "",
        "accept-language": "en-US,en;q=0.9",
        "origin": "https://chat.openai.com",
        "referer": "https://chat.openai.com/chat",
        "sec-ch-ua": '"Not?A_Brand";v="8", "Chromium";v="108", "Google Chrome";v="108"',
        "sec-ch-ua-platform": '"macOS"',
        "sec-fetch-dest": "empty",
        "sec-fetch-mode": "cors",
        "sec-fetch-site": "same-origin",
    }
    headers.update({name.lower(): value for name, value in (extra or {}).items()})
    return headers


class Redactor:
    """Replaces every secret (and every cookie value) in text meant for logs and errors."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str | None) -> None:
        if secret:
            self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    def headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        shown = {}
        for name, value in headers.items():
            if name.lower() == "authorization":
                value = value.split(" ", 1)[0] + " ***"
            elif name.lower() in ("cookie", "set-cookie"):
                value = re.sub(r"=[^;]*", "=***", value)
            shown[name] = self(value)
        return shown


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


async def response_error(
    response: aiohttp.ClientResponse, what: str, redact: Redactor
) -> ChatGPTError:
    """The error for a non-2xx ``response``; the body's JSON ``detail`` becomes the message."""
    status, reason = response.status, response.reason or ""
    try:
        body = await response.content.read(_MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        body = b""
    detail = _detail(body)
    message = f"ChatGPT {what} failed: {status} {reason}".rstrip()
    if detail:
        message += f": {detail}"
    message = redact(message)
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return ChatGPTRateLimitError(message, retry_after=retry_after, status_text=reason)
    if status == 401:
        return ChatGPTAuthError(message, status_code=status, status_text=reason)
    if status == 403:
        return ChatGPTAuthError(
            message + ". Cloudflare refused the request: the clearance token (cf_clearance)"
            " and the user agent must both come from the browser that solved the challenge,"
            " on the same IP address; copy them again from that browser",
            status_code=status,
            status_text=reason,
        )
    return ChatGPTError(message, status_code=status, status_text=reason)


def _detail(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return ""
    detail = data.get("detail", data.get("error")) if isinstance(data, dict) else None
    if isinstance(detail, dict):
        detail = detail.get("message", detail.get("code"))
    if detail is None or isinstance(detail, str):
        return (detail or "")[:500]
    return json.dumps(detail)[:500]
