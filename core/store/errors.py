"""How a database failure reads to the operator: one line, whatever the layer.

The driver's message sits at the bottom of a chain (SQLAlchemy wraps sqlite3 or asyncpg,
alembic wraps SQLAlchemy); the operator needs the bottom's meaning, not the SQL
statement and the link to SQLAlchemy's docs. ``parley db`` and the app both start here,
so the same failure is worded the same way everywhere.
"""

from __future__ import annotations

import errno
import re
import socket

from sqlalchemy.exc import SQLAlchemyError

from core.http import url_secrets

# (substring of the driver's message, what it means), checked in order.
_KNOWN = (
    ("readonly database", "the database is read-only"),
    ("read-only file system", "the database is read-only"),
    (
        "unable to open database file",
        "the database file cannot be opened or created (does its folder exist, "
        "and may parley write there?)",
    ),
    ("database or disk is full", "the disk is full"),
    ("database is locked", "the database is locked by another program"),
    ("file is not a database", "the file is not a SQLite database"),
    ("disk i/o error", "a disk I/O error occurred"),
)
_ERRNO = {
    errno.EROFS: "the database is read-only",
    errno.ENOSPC: "the disk is full",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ECONNREFUSED: "the connection was refused (is the database server running there?)",
}
_REVISION = re.compile(r"Can't locate revision identified by '([^']+)'")
_DRIVER_PREFIX = re.compile(r"^\((?:[\w.]+)\)\s*")


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and everything under it: causes, contexts and a DBAPI error's ``orig``."""
    seen: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and node not in seen:
        seen.append(node)
        orig = getattr(node, "orig", None)
        node = orig if isinstance(orig, BaseException) else (node.__cause__ or node.__context__)
    return seen


_DATABASE_PACKAGES = frozenset({"sqlalchemy", "asyncpg", "aiosqlite", "sqlite3"})


def is_database_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from the database: SQLAlchemy's errors, the drivers' own,
    or an OSError raised inside them (asyncpg lets a refused connection through
    unwrapped; an OSError of a chat platform's HTTP client is not the database's)."""
    for error in _chain(exc):
        if isinstance(error, SQLAlchemyError) or _package(type(error).__module__):
            return True
        if isinstance(error, OSError) and _raised_in_database_code(error):
            return True
    return False


def _package(module: str) -> bool:
    return module.partition(".")[0] in _DATABASE_PACKAGES


def _raised_in_database_code(error: BaseException) -> bool:
    frame = error.__traceback__
    while frame is not None:
        if _package(str(frame.tb_frame.f_globals.get("__name__", ""))):
            return True
        frame = frame.tb_next
    return False


def describe_database_error(exc: BaseException, url: str = "") -> str:
    """What went wrong, in one line without secrets (``url``'s are masked)."""
    chain = _chain(exc)
    text = "\n".join(str(e) for e in chain).lower()
    for needle, meaning in _KNOWN:
        if needle in text:
            return meaning
    for error in chain:
        match = _REVISION.search(str(error))
        if match:
            return (
                f"the database is at schema revision {match.group(1)}, which this version of "
                "parley does not know (was it upgraded by a newer parley?)"
            )
        if isinstance(error, socket.gaierror):
            return "the database host name cannot be resolved"
        if isinstance(error, TimeoutError):
            return "connecting to the database timed out"
        if isinstance(error, OSError) and error.errno in _ERRNO:
            where = f": {error.filename}" if error.filename else ""
            return _ERRNO[error.errno] + where
    bottom = chain[-1]
    line = (str(bottom).strip().splitlines() or [""])[0]
    line = _DRIVER_PREFIX.sub("", line)[:200]
    for secret in sorted(url_secrets(url), key=len, reverse=True) if url else ():
        line = line.replace(secret, "********")
    return f"{type(bottom).__name__}: {line}" if line else type(bottom).__name__
