"""One way to open the database, shared by the store and the migrations.

SQLite (``sqlite+aiosqlite``) gets WAL mode, foreign keys, a busy timeout and real
transactions (pysqlite's legacy mode would run DDL and SELECTs outside them); the
parent folder of a database file is created if missing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from core.store.urls import DatabaseURLError, check_database_url

if TYPE_CHECKING:  # sqlalchemy.ext.asyncio pulls in the ORM: loaded on first engine
    from sqlalchemy.ext.asyncio import AsyncEngine

SQLITE_BUSY_TIMEOUT_MS = 5000


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None (not SQLite, in memory, URI form)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    if url.query.get("mode") == "memory":
        return None
    return Path(database).expanduser()


def make_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    """An AsyncEngine for ``url`` with parley's per-dialect connection settings.

    A string is checked first (``check_database_url``): DatabaseURLError says what to
    write instead of an unusable URL.
    """
    from sqlalchemy.ext.asyncio import create_async_engine

    parsed = parse_database_url(url)
    path = sqlite_file(parsed)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_async_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "sqlite":
        configure_sqlite(engine.sync_engine, wal=path is not None)
    return engine


def parse_database_url(url: str | URL) -> URL:
    """``url`` checked and parsed; DatabaseURLError for anything parley cannot use."""
    if isinstance(url, URL):
        return url
    checked = check_database_url(url)
    try:
        return make_url(checked)
    except (ArgumentError, ValueError) as exc:  # e.g. a port that is not a number
        raise DatabaseURLError(f"not a valid database URL ({exc})") from None


def configure_sqlite(engine: Engine, *, wal: bool) -> None:
    """Per-connection pragmas and explicit transactions for a (sync) SQLite engine."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin (see below).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if wal:
                _enable_wal(cursor)
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # execution_options(sqlite_begin="IMMEDIATE") takes the write lock up front, so
        # a writer that reads first cannot lose a lock upgrade to another writer
        # (SQLITE_BUSY, which busy_timeout does not retry): used for migrations.
        # sqlite_begin="NONE" runs a single read statement without a transaction.
        mode = connection.get_execution_options().get("sqlite_begin", "")
        if mode == "NONE":
            return
        if mode not in ("", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"sqlite_begin must be IMMEDIATE, EXCLUSIVE or NONE, not {mode!r}")
        # On the driver's cursor: through exec_driver_sql, SQLAlchemy's bookkeeping for
        # this one statement cost more than a turn's writes.
        statement = f"BEGIN {mode}".rstrip()
        dbapi = connection.dialect.loaded_dbapi
        cursor = connection.connection.dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        except dbapi.Error as exc:  # wrapped as through execute: callers catch these
            raise DBAPIError.instance(statement, None, exc, dbapi.Error) from exc
        finally:
            cursor.close()


def _enable_wal(cursor: Any) -> None:
    """Switch a database file to WAL (a setting stored in the file, so only once).

    The switch needs the file to itself and SQLite does not apply busy_timeout to it:
    when several processes open a new database at once, the losers retry briefly.
    """
    for attempt in range(50):
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() == "wal":
            return
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
        except Exception as exc:  # the driver's OperationalError: "database is locked"
            if "locked" not in str(exc) or attempt == 49:
                raise
            time.sleep(0.02)  # only ever on a brand-new file, at first connect
