"""core.http.redact_url and url_secrets: what a URL shows in output and logs."""

from __future__ import annotations

import pytest

from core.http import URL_MASK, redact_url, url_secrets

M = URL_MASK


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.example/v1", "https://api.example/v1"),
        ("http://bob:hunter2@h:8080/v1", f"http://bob:{M}@h:8080/v1"),
        ("https://:tok@h/v1", f"https://:{M}@h/v1"),
        ("https://TOKEN@h/v1", f"https://{M}@h/v1"),
        (
            "postgresql+asyncpg://bot:pa55@db:5432/parley",
            f"postgresql+asyncpg://bot:{M}@db:5432/parley",
        ),
        ("https://h/v1?api-key=abc&api-version=2024", f"https://h/v1?api-key={M}&api-version=2024"),
        ("https://h/v1?API_KEY=abc", f"https://h/v1?API_KEY={M}"),
        ("https://h/v1?key=abc&model=m", f"https://h/v1?key={M}&model=m"),
        ("https://h/x?token=a&access_token=b", f"https://h/x?token={M}&access_token={M}"),
        ("https://blob/c?sv=2022&sig=s1gn%2Bed", f"https://blob/c?sv=2022&sig={M}"),
        ("https://h/x?X-Amz-Signature=abc", f"https://h/x?X-Amz-Signature={M}"),
        ("https://h/x?Secret=a&Password=b&auth=c", f"https://h/x?Secret={M}&Password={M}&auth={M}"),
        (
            "sqlite+aiosqlite:////var/lib/parley/parley.db",
            "sqlite+aiosqlite:////var/lib/parley/parley.db",
        ),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_an_unparsable_url_is_masked_whole() -> None:
    assert redact_url("http://[::1/v1?key=abc") == M


def test_url_secrets_are_what_redact_url_masks_as_written_and_decoded() -> None:
    url = "https://bob:p%40ss@h/v1?api-key=a%2Bb&api-version=2024&sig=zz"
    found = url_secrets(url)
    assert set(found) == {"p%40ss", "p@ss", "a%2Bb", "a+b", "zz"}
    shown = redact_url(url)
    assert not any(secret in shown for secret in found)
    assert "bob" in shown and "2024" in shown  # what is not secret stays readable


def test_url_secrets_of_plain_urls() -> None:
    assert url_secrets("https://api.example/v1") == []
    assert url_secrets("https://TOKEN123@h/") == ["TOKEN123"]
    assert url_secrets("") == []
