"""HTTP details of the ChatGPT web protocol: browser headers, cookies and errors.

The helpers every backend shares (``Retry-After``, error bodies, redaction) are in
``core.http``.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from core.backends.call import Call
from core.errors import ChatGPTAuthError, ChatGPTError, ChatGPTRateLimitError
from core.http import error_detail, parse_retry_after, read_error_body

DEFAULT_USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/108.0.0.0 Safari/537.36"
)
SESSION_COOKIE = "__Secure-next-auth.session-token"
CLEARANCE_COOKIE = "cf_clearance"


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


async def response_error(response: aiohttp.ClientResponse, call: Call) -> ChatGPTError:
    """The error for a non-2xx ``response``; the body's error detail joins the message."""
    status, reason = response.status, response.reason or ""
    raw = await call.wait(read_error_body(response), "reading the error")
    detail = call.redact(error_detail(raw, limit=500))
    what = f"HTTP {status} {reason}".rstrip()
    if status == 429:
        retry_after = parse_retry_after(response.headers)
        return call.fail(
            ChatGPTRateLimitError, what, detail, retry_after=retry_after, status_text=reason
        )
    if status == 401:
        return call.fail(ChatGPTAuthError, what, detail, status_code=status, status_text=reason)
    if status == 403:
        explained = (
            "Cloudflare refused the request: the clearance token (cf_clearance) and the user "
            "agent must both come from the browser that solved the challenge, on the same IP "
            "address; copy them again from that browser"
        )
        detail = f"{detail}. {explained}" if detail else explained
        return call.fail(ChatGPTAuthError, what, detail, status_code=status, status_text=reason)
    wrong_url = status == 404 and not raw.lstrip().startswith((b"{", b"["))
    return call.fail(
        ChatGPTError, what, detail, hint=wrong_url, status_code=status, status_text=reason
    )
