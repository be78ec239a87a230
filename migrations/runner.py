"""Run migrations from code: no alembic.ini, the config is built here.

``await upgrade(url)`` is what the app and ``parley db upgrade`` call. Each function
opens its own engine, runs alembic on one connection inside ``run_sync`` (so it works
from a running event loop) in one transaction, and disposes of the engine.

Developers: ``python -m migrations.runner revision URL "message"`` autogenerates a new
version against a database upgraded to head.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection

from core.store.engine import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent


def make_config(url: str | None = None) -> Config:
    """An alembic Config pointing at this package, with ``sqlalchemy.url`` set."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        # ConfigParser interpolation: a literal % (URL-encoded password) must be %%.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def _run(url: str, fn: Any, *args: Any) -> Any:
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn, *args)
    finally:
        await engine.dispose()


def _upgrade(connection: Connection, url: str, revision: str) -> None:
    config = make_config(url)
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _downgrade(connection: Connection, url: str, revision: str) -> None:
    config = make_config(url)
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (a no-op when already there)."""
    await _run(url, _upgrade, url, revision)


async def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"``: drop everything)."""
    await _run(url, _downgrade, url, revision)


async def current(url: str) -> str | None:
    """The revision id the database is at, or None before any migration."""
    result: str | None = await _run(url, _current)
    return result


def main(argv: list[str] | None = None) -> int:
    import asyncio

    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m migrations.runner {upgrade|current} URL | downgrade URL REV | revision URL MSG"
    if len(args) < 2:
        print(usage, file=sys.stderr)
        return 2
    action, url, *rest = args
    if action == "upgrade":
        asyncio.run(upgrade(url, *rest[:1]))
    elif action == "current":
        print(asyncio.run(current(url)))
    elif action == "downgrade" and rest:
        asyncio.run(downgrade(url, rest[0]))
    elif action == "revision" and rest:
        command.revision(make_config(url), message=rest[0], autogenerate=True)
    else:
        print(usage, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
