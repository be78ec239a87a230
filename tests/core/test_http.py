"""core.http: Retry-After, error-body details and redaction, shared by the backends."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import UTC, datetime
from email.utils import formatdate

import aiohttp
import pytest
from multidict import CIMultiDict

from core.http import (
    SECRET_HEADER,
    Redactor,
    Secret,
    endpoint,
    error_detail,
    join_url,
    parse_retry_after,
    read_error_body,
    redact_url,
)
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer

NOW = datetime(2024, 1, 1, 12, 0, 0, tzinfo=UTC)

# -- Retry-After ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("12", 12),
        ("1.5", 1.5),
        (" 7 ", 7),
        ("0", 0),
        ("-3", 0),  # negative: no wait
        ("Mon, 01 Jan 2024 12:00:30 GMT", 30),
        ("Mon, 01 Jan 2024 11:00:00 GMT", 0),  # in the past: no wait
        ("Mon, 01 Jan 2024 12:01:00 -0000", 60),  # a date without a zone counts as UTC
    ],
)
def test_retry_after_value(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "nan", "inf", "-inf", "12 s"])
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_retry_after_date_defaults_to_now() -> None:
    when = formatdate(time.time() + 30, usegmt=True)
    assert parse_retry_after(when) == pytest.approx(30, abs=2)
    assert parse_retry_after(formatdate(time.time() - 30, usegmt=True)) == 0


def test_retry_after_from_headers() -> None:
    assert parse_retry_after(CIMultiDict({"Retry-After": "2.5"})) == 2.5
    assert (
        parse_retry_after(CIMultiDict({"retry-after": "Mon, 01 Jan 2024 12:00:10 GMT"}), NOW) == 10
    )
    assert parse_retry_after(CIMultiDict()) is None
    assert parse_retry_after(CIMultiDict({"Content-Type": "text/plain"})) is None
    # A plain dict is searched without regard to case, like real headers.
    assert parse_retry_after({"RETRY-AFTER": "4"}) == 4


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert parse_retry_after(CIMultiDict({"retry-after-ms": "150", "Retry-After": "9"})) == 0.15
    assert parse_retry_after({"Retry-After-Ms": "2500"}) == 2.5
    assert parse_retry_after(CIMultiDict({"retry-after-ms": "-20"})) == 0


@pytest.mark.parametrize("millis", ["soon", "", "nan", "inf"])
def test_retry_after_ms_garbage_falls_back_to_retry_after(millis: str) -> None:
    assert parse_retry_after(CIMultiDict({"retry-after-ms": millis, "Retry-After": "3"})) == 3
    assert parse_retry_after(CIMultiDict({"retry-after-ms": millis})) is None


# -- error bodies --------------------------------------------------------------------


def body(data: object) -> bytes:
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (
            body({"error": {"message": "Incorrect API key", "type": "x", "code": "bad_key"}}),
            "Incorrect API key",
        ),
        (body({"error": {"message": "", "code": "rate_limited"}}), "rate_limited"),
        (body({"error": "model is loading"}), "model is loading"),
        (body({"error": {"msg": "vLLM says no"}}), "vLLM says no"),
        (body({"detail": "Input too long"}), "Input too long"),
        (body({"detail": {"message": "nested", "code": "c"}}), "nested"),
        (body({"detail": {"code": "only_code"}}), "only_code"),
        (body({"detail": [{"loc": ["body"], "msg": "bad"}]}), '[{"loc": ["body"], "msg": "bad"}]'),
        # JSON without a known key, and JSON that is no object: the whole body, compacted.
        (b'{"status": "down",\n "retry": true}', '{"status": "down", "retry": true}'),
        (b'["a", "b"]', '["a", "b"]'),
        (b"upstream  timed out\r\n", "upstream timed out"),
        (b"", ""),
        (b"  \n ", ""),
        (
            "Zugriff verweigert \u2013 \u00e4\u00f6\u00fc".encode(),
            "Zugriff verweigert \u2013 \u00e4\u00f6\u00fc",
        ),
        (b"bad \xff byte", "bad \ufffd byte"),
    ],
)
def test_error_detail(raw: bytes, detail: str) -> None:
    assert error_detail(raw) == detail


@pytest.mark.parametrize(
    "raw",
    [
        b"<!DOCTYPE html><title>Just a moment...</title><script>challenge()</script>",
        b"\n  <html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        b'<?xml version="1.0"?><Error><Code>AccessDenied</Code></Error>',
    ],
)
def test_error_detail_of_markup_is_empty(raw: bytes) -> None:
    assert error_detail(raw) == ""


def test_error_detail_is_truncated() -> None:
    assert error_detail(body({"detail": "x" * 1000})) == "x" * 300
    assert error_detail(b"y" * 1000, limit=500) == "y" * 500
    assert len(error_detail(body({"detail": [1] * 400}), limit=20)) == 20


# -- secrets -------------------------------------------------------------------------


def test_secret_hides_itself() -> None:
    secret = Secret("sk-very-secret")
    assert secret.get() == "sk-very-secret"
    assert "sk-very-secret" not in repr(secret)
    assert "sk-very-secret" not in str(secret)
    assert "sk-very-secret" not in repr({"key": secret})


def test_redactor_replaces_secrets() -> None:
    redact = Redactor(["tok-123", None, ""])
    redact.add("acc-9")
    redact.add(None)
    assert redact("a tok-123 b acc-9 c tok-123") == "a *** b *** c ***"
    assert redact("nothing to hide") == "nothing to hide"


def test_redactor_replaces_the_longest_secret_first() -> None:
    redact = Redactor(["abc", "abcdef"])
    assert redact("key abcdef") == "key ***"


def test_secret_header_names() -> None:
    for name in ("Authorization", "X-Api-Key", "api-key", "X-Auth-Token", "Cookie", "x-secret"):
        assert SECRET_HEADER.search(name), name
    for name in ("Accept", "User-Agent", "Content-Type", "OpenAI-Organization"):
        assert not SECRET_HEADER.search(name), name


def test_redactor_learns_secret_looking_headers() -> None:
    redact = Redactor(
        ["sk-main"],
        headers={"X-Api-Key": "hdr-secret-42", "X-Token": "short", "X-Org": "org-public-1"},
    )
    text = "sk-main hdr-secret-42 short org-public-1"
    # Short values are left alone: replacing them everywhere would garble the message.
    assert redact(text) == "*** *** short org-public-1"
    redact.add_headers({"Password": "hunter22"})
    assert redact("pw hunter22") == "pw ***"


def test_redactor_masks_headers_for_logs() -> None:
    redact = Redactor(["tok-123", "acc-9"])
    headers = redact.headers(
        {
            "Authorization": "Bearer acc-9",
            "cookie": "a=1; b=tok-123",
            "x-api-key": "unknown-value",
            "x-other": "tok-123",
            "Accept": "text/event-stream",
        }
    )
    assert headers == {
        "Authorization": "Bearer ***",
        "cookie": "a=***; b=***",
        "x-api-key": "***",
        "x-other": "***",
        "Accept": "text/event-stream",
    }


# -- reading error bodies ------------------------------------------------------------


async def test_read_error_body_reads_every_piece_up_to_the_limit() -> None:
    message = "This model's maximum context length is 128000 tokens. " * 3
    error = Behaviour.http_error(400, message)
    async with FakeOpenAIServer() as server, aiohttp.ClientSession() as session:
        server.script(*[dataclasses.replace(error, write_size=20, chunk_delay=0.02)] * 2)
        url = server.base_url + "/chat/completions"
        async with session.post(url, json={}) as response:
            whole = await read_error_body(response)
        async with session.post(url, json={}) as response:
            head = await read_error_body(response, limit=50)
    assert json.loads(whole)["error"]["message"] == message
    assert head == whole[:50]


# -- URLs: see tests/core/test_redact_url.py -----------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.example/v1", "https://api.example/v1"),
        ("http://bob:hunter2@h:8080/v1", "http://bob:********@h:8080/v1"),
        ("https://TOKEN@h/v1", "https://********@h/v1"),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# -- endpoints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "joined"),
    [
        ("https://api.example/v1", "https://api.example/v1/chat/completions"),
        ("https://api.example/v1/", "https://api.example/v1/chat/completions"),
        (
            "https://x.openai.azure.com/openai/deployments/d?api-version=2024-06-01",
            "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-06-01",
        ),
        ("http://h:8080/v1/?a=b%20c&k=%2F", "http://h:8080/v1/chat/completions?a=b%20c&k=%2F"),
        ("http://h/v1#frag", "http://h/v1/chat/completions"),
    ],
)
def test_join_url_keeps_the_query(base: str, joined: str) -> None:
    assert join_url(base, "/chat/completions") == joined


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.example.com/v1/chat/completions", "api.example.com/v1/chat/completions"),
        ("https://bob:PW@h.example:8443/v1/?api-key=K", "h.example:8443/v1"),
        ("http://127.0.0.1:80/x", "127.0.0.1/x"),
        ("http://[::1]:9000/v1", "[::1]:9000/v1"),
        ("not a url", "the server"),
        ("", "the server"),
    ],
)
def test_endpoint_is_host_and_path_only(url: str, shown: str) -> None:
    assert endpoint(url) == shown
