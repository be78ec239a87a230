"""What importing the core costs every process: no HTTP client, markdown or tokenizer
until something uses them (issue 10: `parley ask` spent ~0.35 s on such imports); no
SQLAlchemy ORM (the schema is Core tables), no asyncio extension until an async engine
is built, no prometheus_client until metrics are on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import core

REPO = Path(__file__).resolve().parents[2]
HEAVY = (
    "aiohttp",
    "markdown_it",
    "core.backends.chatgpt_web",
    "tiktoken",
    "alembic",
    "sqlalchemy.orm",
    "sqlalchemy.ext.asyncio",
    "aiosqlite",
    "prometheus_client",
)


def _imported_after(statement: str) -> list[str]:
    script = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize(
    "module",
    ["core", "core.store", "core.store.sql", "core.chat_service", "core.tokens", "bots.app"],
)
def test_importing_the_core_pulls_in_nothing_heavy(module: str) -> None:
    assert _imported_after(f"import {module}") == []


def test_the_public_names_still_import() -> None:
    from core import ChatGPTAPI, ChatGPTError, ChatResponse, ModerationResult
    from core.backends.chatgpt_web import client
    from core.errors import ChatGPTError as Defined
    from core.types import ChatResponse as DefinedResponse

    assert ChatGPTAPI is client.ChatGPTAPI and ModerationResult is client.ModerationResult
    assert ChatGPTError is Defined and ChatResponse is DefinedResponse
    for name in core.__all__:
        assert getattr(core, name) is not None
    assert set(core.__all__) <= set(dir(core))
    with pytest.raises(AttributeError):
        core.NoSuchName  # noqa: B018


def test_what_is_deferred_loads_when_used() -> None:
    assert _imported_after("from core.metrics import Metrics; Metrics()") == ["prometheus_client"]
    assert _imported_after(
        "from core.store.engine import make_engine; make_engine('sqlite+aiosqlite://')"
    ) == ["sqlalchemy.orm", "sqlalchemy.ext.asyncio", "aiosqlite"]


def test_the_web_client_loads_when_asked_for() -> None:
    assert _imported_after("from core import ChatGPTAPI") == [
        "aiohttp",
        "markdown_it",
        "core.backends.chatgpt_web",
    ]
