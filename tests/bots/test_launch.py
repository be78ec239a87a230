"""The ``parley`` console script (bots/launch.py, ``bots.cli.entry``): an ask's start-up
runs without the cyclic garbage collector, which is back on for the answer and for
every other command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.openai_server import FakeOpenAIServer

REPO = Path(__file__).resolve().parents[2]

# Runs the console script's entry in a fresh process, then reports the collector.
SCRIPT = """
import gc, json, sys
sys.argv = ["parley", *sys.argv[1:]]
from bots.launch import entry
code = entry()
report = {
    "code": code,
    "enabled": gc.isenabled(),
    "frozen": gc.get_freeze_count(),
    "collections": sum(s["collections"] for s in gc.get_stats()),
}
print(json.dumps(report), file=sys.stderr)
"""


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def config(tmp_path: Path, server: FakeOpenAIServer) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"""
database: {{url: "sqlite+aiosqlite:///{tmp_path / "launch.db"}"}}
default_backend: fake
backends:
  fake: {{type: chat_completions, base_url: {server.base_url}, model: m, max_retries: 0}}
"""
    )
    return path


async def _launch(*args: str, home: Path) -> tuple[str, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SCRIPT,
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "PARLEY_HOME": str(home)},
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()
    report: dict[str, Any] = json.loads(err.decode().strip().splitlines()[-1])
    return out.decode(), report


async def test_an_ask_starts_without_collections_and_answers_with_the_collector_on(
    config: Path, tmp_path: Path
) -> None:
    out, report = await _launch("ask", "--config", str(config), "hi", home=tmp_path)
    assert out == "Echo: hi\n"
    assert report["code"] == 0
    assert report["enabled"] and report["frozen"] > 10_000  # start-up's objects
    # With the collector on, the imports alone trigger well over a hundred.
    assert report["collections"] < 50


async def test_other_commands_run_with_the_collector_on(config: Path, tmp_path: Path) -> None:
    out, report = await _launch("config", "check", "--config", str(config), home=tmp_path)
    assert out.startswith("# config OK")
    assert report["code"] == 0 and report["enabled"]
    assert report["collections"] > 0  # it ran during the command, not only at exit
