"""Run migrations from code: no alembic.ini, the config is built here.

``await upgrade(url)`` is what ``parley db upgrade`` calls; the app calls
``await upgrade_store(store)``, which reuses the store's connections (an in-memory
SQLite database needs that). Alembic runs on one connection inside ``run_sync`` (so it works
from a running event loop), in one transaction.

Every process start upgrades to head, and almost always the schema is already there:
``is_current`` reads ``alembic_version`` with one plain SELECT and compares it with the
head revision read from the version files' text, so that case neither imports alembic
(~0.1 s) nor takes SQLite's write lock (which 20 processes starting at once would queue
on) nor PostgreSQL's advisory lock. Only when the versions differ does the locked
upgrade run, and alembic, reading the version again under the lock, makes it a no-op
for every process but the first.

Developers: ``python -m migrations.runner revision URL "message"`` autogenerates the
next version from the models, against a database upgraded to head.
"""

from __future__ import annotations

import functools
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from core.store.engine import make_engine

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.ext.asyncio import AsyncEngine

    from core.store.sql import SQLStore

MIGRATIONS_DIR = Path(__file__).resolve().parent
VERSIONS_DIR = MIGRATIONS_DIR / "versions"

# What every version file says, as alembic's template writes it (see 0001_initial.py).
_REVISION = re.compile(r"^revision(?:\s*:[^=]*)?\s*=\s*[\"']([^\"']+)[\"']\s*$", re.M)
_DOWN_REVISION = re.compile(
    r"^down_revision(?:\s*:[^=]*)?\s*=\s*(?:None|[\"']([^\"']+)[\"'])\s*$", re.M
)


@functools.cache
def head_revision() -> str | None:
    """The one head of the version files, read as text (no alembic import); None when
    they are not a simple chain this can read (a merge, an unusual file): callers then
    let alembic decide."""
    down_of: dict[str, str | None] = {}
    for path in sorted(VERSIONS_DIR.glob("*.py")):
        if path.name == "__init__.py":
            continue
        source = path.read_text(encoding="utf-8")
        revision = _REVISION.findall(source)
        down = _DOWN_REVISION.findall(source)
        if len(revision) != 1 or len(down) != 1:
            return None
        down_of[revision[0]] = down[0] or None
    heads = set(down_of) - {d for d in down_of.values() if d is not None}
    return heads.pop() if len(heads) == 1 else None


def make_config(url: str | None = None) -> Config:
    """An alembic Config pointing at this package, with ``sqlalchemy.url`` set."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    if url is not None:
        # ConfigParser interpolation: a literal % (URL-encoded password) must be %%.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


# Any fixed 64-bit number: the advisory lock that serialises migrations on PostgreSQL.
_MIGRATION_LOCK = 0x70617273_6C6579  # "parsley"


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Upgrade on a sync connection; call it as ``await conn.run_sync(upgrade_connection)``.

    The caller owns the transaction (``async with engine.begin() as conn``).
    """
    if connection.dialect.name == "postgresql":
        # Several workers starting at once would each try to create the tables; the
        # first migrates, the others wait here and then find the schema at head.
        # (SQLite needs nothing: its write lock already serialises the transactions.)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    from alembic import command

    config = make_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def downgrade_connection(connection: Connection, revision: str) -> None:
    from alembic import command

    config = make_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _version_rows(connection: Connection) -> list[str]:
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    return [row[0] for row in rows]


async def is_current(engine: AsyncEngine) -> bool:
    """Whether the database is at the head revision, by one read that takes no write
    lock (on SQLite not even a transaction) and waits for none in WAL mode. False when
    unsure: no version table yet, or versions this cannot read."""
    head = head_revision()
    if head is None:
        return False
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(sqlite_begin="NONE")
            versions = await conn.run_sync(_version_rows)
    except DBAPIError:  # no such table: a new database
        return False
    return versions == [head]


async def upgrade_store(store: SQLStore) -> None:
    """Upgrade the store's database to head. At head already (``is_current``'s one
    read), the read runs as one of the store's own read units, so on a SQLite file
    (where every store operation runs on a plain pysqlite connection) no async engine
    and no aiosqlite are loaded; otherwise ``upgrade_engine(store.engine)``."""
    head = head_revision()
    if head is not None:
        try:
            if await store.units.read(_version_rows) == [head]:
                return
        except DBAPIError:  # no such table: a new database
            pass
    await upgrade_engine(store.engine)


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade through an existing engine (e.g. ``SQLStore.engine``), in one transaction;
    at head already, only a read (``is_current``)."""
    if revision == "head" and await is_current(engine):
        return
    # Imported before the lock, not while every other starting process waits on it.
    import alembic.command
    import alembic.runtime.migration  # noqa: F401

    await _in_transaction(engine, upgrade_connection, revision, writes=True)


async def _in_transaction(engine: AsyncEngine, fn: Any, *args: Any, writes: bool) -> Any:
    async with engine.connect() as conn:
        if writes:  # see core/store/engine.py: concurrent SQLite migrators queue up
            conn = await conn.execution_options(sqlite_begin="IMMEDIATE")
        async with conn.begin():
            return await conn.run_sync(fn, *args)


async def _run(url: str, fn: Any, *args: Any, writes: bool = False) -> Any:
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        return await _in_transaction(engine, fn, *args, writes=writes)
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (a no-op when already there)."""
    engine = make_engine(url, poolclass=pool.NullPool)
    try:
        await upgrade_engine(engine, revision)
    finally:
        await engine.dispose()


async def downgrade(url: str, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"``: drop everything)."""
    await _run(url, downgrade_connection, revision, writes=True)


async def current(url: str) -> str | None:
    """The revision id the database is at, or None before any migration."""
    result: str | None = await _run(url, current_revision)
    return result


def revision(url: str, message: str) -> None:
    """Autogenerate the next numbered version (0002, ...) by comparing the database at
    ``url`` (upgrade it first) with core/store/models.py, then ruff-format it."""
    from alembic import command
    from alembic.script import ScriptDirectory

    config = make_config(url)
    for option, value in {
        "hooks": "ruff_fix, ruff_format",
        "ruff_fix.type": "module",
        "ruff_fix.module": "ruff",
        "ruff_fix.options": "check --fix REVISION_SCRIPT_FILENAME",
        "ruff_format.type": "module",
        "ruff_format.module": "ruff",
        "ruff_format.options": "format REVISION_SCRIPT_FILENAME",
    }.items():
        config.set_section_option("post_write_hooks", option, value)
    heads = ScriptDirectory.from_config(config).get_heads()
    rev_id = f"{int(heads[0]) + 1:04d}" if len(heads) == 1 and heads[0].isdigit() else None
    command.revision(config, message=message, autogenerate=True, rev_id=rev_id)


def main(argv: list[str] | None = None) -> int:
    import asyncio

    args = sys.argv[1:] if argv is None else argv
    usage = (
        "usage: python -m migrations.runner"
        " {upgrade URL [REV] | current URL | downgrade URL REV | revision URL MESSAGE}"
    )
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
        revision(url, rest[0])
    else:
        print(usage, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
