"""Which errors are the database's: the chat service tells the user "I can't reach my
database" for those, and "something went wrong" for the rest."""

from __future__ import annotations

import socket
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from core.store.engine import make_engine
from core.store.errors import is_database_error


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_a_refused_postgresql_connection_is_the_databases() -> None:
    engine = make_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/x")
    try:
        with pytest.raises(OSError) as raised:  # asyncpg lets it through unwrapped
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()
    assert is_database_error(raised.value)


async def test_a_failing_sqlite_statement_is_the_databases(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        with pytest.raises(Exception) as raised:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT * FROM no_such_table"))
    finally:
        await engine.dispose()
    assert is_database_error(raised.value)


async def test_a_chat_platforms_network_error_is_not() -> None:
    """aiohttp's connection errors are OSErrors too (discord.py raises them)."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as raised:
            await session.get(f"http://127.0.0.1:{closed_port()}/")
    assert isinstance(raised.value, OSError)
    assert not is_database_error(raised.value)
    assert not is_database_error(RuntimeError("a bug"))
