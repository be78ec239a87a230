"""Which database URLs parley can use, checked before anything connects.

Kept free of SQLAlchemy imports so ``parley config check`` can check a URL quickly;
``make_engine`` runs the same check, so the library path words problems the same way.
"""

from __future__ import annotations

import re

EXAMPLES = "sqlite+aiosqlite:///path/to/parley.db or postgresql+asyncpg://user:password@host/dbname"
POSTGRES_EXTRA = "pip install 'parley[postgres]'"

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.DOTALL)


class DatabaseURLError(ValueError):
    """A database URL parley cannot use; the message says what to write instead."""


def check_database_url(url: str) -> str:
    """``url`` with parley's async driver filled in (``sqlite://`` becomes
    ``sqlite+aiosqlite://``, ``postgres://`` and ``postgresql://`` become
    ``postgresql+asyncpg://``); DatabaseURLError if parley cannot use it."""
    match = _SCHEME.match(url.strip())
    if match is None:
        raise DatabaseURLError(f"not a database URL: use sqlite or postgresql, e.g. {EXAMPLES}")
    scheme, rest = match.group(1).lower(), match.group(2)
    dialect, _, driver = scheme.partition("+")
    if dialect in ("postgresql", "postgres"):
        if driver not in ("", "asyncpg"):
            raise DatabaseURLError(
                f"parley talks to PostgreSQL through asyncpg, not {driver}: "
                "write postgresql+asyncpg://user:password@host/dbname"
            )
        _require_asyncpg()
        return f"postgresql+asyncpg://{rest}"
    if dialect == "sqlite":
        if driver not in ("", "aiosqlite"):
            raise DatabaseURLError(
                f"parley talks to SQLite through aiosqlite, not {driver}: "
                "write sqlite+aiosqlite:///path/to/parley.db"
            )
        if rest and not rest.startswith("/"):
            raise DatabaseURLError(
                "a SQLite URL has three slashes before a relative path and four before an "
                "absolute one: sqlite+aiosqlite:///parley.db, sqlite+aiosqlite:////var/lib/parley.db"
            )
        return f"sqlite+aiosqlite://{rest}"
    raise DatabaseURLError(
        f"unsupported database {dialect!r}: parley works with sqlite or postgresql, e.g. {EXAMPLES}"
    )


def _require_asyncpg() -> None:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        raise DatabaseURLError(
            f"PostgreSQL needs the asyncpg driver, which is not installed: {POSTGRES_EXTRA}"
        ) from None
