"""The databases a curve runs on: a SQLite file, and PostgreSQL when there is one (a
throwaway cluster from tests/pg.py, or the server at ``--postgres-url``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.pg import INSTALL_HINT, PostgresCluster, find_pg_bin


@dataclass(frozen=True)
class Database:
    name: str  # for the tables: "SQLite", "PostgreSQL"
    url: str


@contextlib.contextmanager
def databases(
    folder: Path, *, postgres: bool, postgres_url: str | None
) -> Iterator[list[Database]]:
    """SQLite in ``folder``, then PostgreSQL: ``postgres_url`` (an empty database: its
    rows are left behind) or a throwaway cluster, stopped on exit; without PostgreSQL's
    server binaries, a line saying it was skipped and why."""
    found = [Database("SQLite", f"sqlite+aiosqlite:///{folder / 'curves.db'}")]
    if not postgres:
        yield found
        return
    if postgres_url is not None:
        yield [*found, Database("PostgreSQL", postgres_url)]
        return
    bin_dir = find_pg_bin()
    if bin_dir is None:
        print(f"PostgreSQL skipped: initdb was not found. {INSTALL_HINT}, or pass --postgres-url.")
        yield found
        return
    cluster = PostgresCluster(bin_dir)
    try:
        cluster.start()
        yield [*found, Database("PostgreSQL", cluster.url())]
    finally:
        cluster.stop()
