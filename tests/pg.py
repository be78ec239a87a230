"""A throwaway PostgreSQL cluster for the test run.

Register the fixtures by importing ALL the names in ``FIXTURES`` into a conftest.py
(``db_url`` and ``store_url`` look the others up by name), as tests/migrations does.
One cluster serves the whole run even when several conftests register the fixtures
(a process-wide, reference-counted cluster): initdb + start take ~2 s.

- ``postgres_url`` (session): ``postgresql+asyncpg://postgres@127.0.0.1:PORT/parley_test``
- ``fresh_postgres_url`` (function): a new, empty database (~0.3 s)
- ``migrated_postgresql_url`` (function): the session database at head, truncated (~20 ms)
- ``db_url`` / ``store_url``: parametrized over a SQLite file and PostgreSQL: an empty
  database (for migration tests) / a database at head with empty tables

Without PostgreSQL installed the fixtures skip (``bash .ci/postgres.sh`` installs it);
with ``PARLEY_REQUIRE_POSTGRES=1`` (CI) they fail instead.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest
from sqlalchemy import NullPool, text

from core.store.engine import make_engine
from migrations import runner

FIXTURES = (
    "db_url",
    "fresh_postgres_url",
    "migrated_postgresql_url",
    "migrated_sqlite_url",
    "postgres_cluster",
    "postgres_url",
    "store_url",
)
INSTALL_HINT = "PostgreSQL tests need its server binaries: run `sudo bash .ci/postgres.sh`"
TEST_DATABASE = "parley_test"


def find_pg_bin() -> Path | None:
    """The folder holding initdb/pg_ctl, or None when PostgreSQL is not installed."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    which = shutil.which("initdb")
    if which:
        candidates.append(which)
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return Path(candidate).parent
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """initdb + pg_ctl in a temp folder, as user postgres when running as root."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="parley-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            shutil.chown(self.root, user="postgres", group="postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self._as_user, str(self.bin_dir / tool), *args]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{tool} failed ({result.returncode}): {result.stderr.strip()}\n{log}"
            )

    def start(self) -> None:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")
        self.create_database(TEST_DATABASE)

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data: ``fast`` ends every session (their
        transactions roll back), as an operator's ``pg_ctl stop`` or a restart does."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def start_server(self) -> None:
        """Start a stopped server again, on the same port with the same data."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "start")

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart``: every open connection is cut, the data stays."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", mode, "-w", "restart")

    def stop(self) -> None:
        """Stop the server (if running) and delete the cluster."""
        with contextlib.suppress(RuntimeError):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name)
        return name

    def url(self, database: str = TEST_DATABASE) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"


_cluster: PostgresCluster | None = None
_users = 0
_names = itertools.count(1)
_migrated_url: str | None = None
# Children first is not needed with CASCADE, but it documents the dependency order.
TABLES = ("inbox", "message_links", "scope_heads", "messages", "conversations")


def require_postgres() -> NoReturn:
    """Without PostgreSQL's binaries: fail under PARLEY_REQUIRE_POSTGRES=1, else skip."""
    if os.environ.get("PARLEY_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PARLEY_REQUIRE_POSTGRES=1 but initdb is missing. {INSTALL_HINT}")
    pytest.skip(INSTALL_HINT)


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    global _cluster, _users
    bin_dir = find_pg_bin()
    if bin_dir is None:
        require_postgres()
    if _cluster is None:
        cluster = PostgresCluster(bin_dir)
        try:
            cluster.start()
        except Exception:
            cluster.stop()
            raise
        _cluster = cluster
    _users += 1
    try:
        yield _cluster
    finally:
        _users -= 1
        if _users == 0:
            _cluster.stop()
            _cluster = None


@pytest.fixture(scope="session")
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    return postgres_cluster.url()


@pytest.fixture
async def fresh_postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A new, empty database (~0.3 s: PostgreSQL copies a template)."""
    name = f"parley_test_{next(_names)}"
    conn = await asyncpg.connect(
        host="127.0.0.1", port=postgres_cluster.port, user="postgres", database="postgres"
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return postgres_cluster.url(name)


@pytest.fixture
async def migrated_postgresql_url(postgres_url: str) -> str:
    """The session's database at head, its tables emptied before each test (~20 ms)."""
    global _migrated_url
    if _migrated_url != postgres_url:
        await runner.upgrade(postgres_url)
        _migrated_url = postgres_url
    engine = make_engine(postgres_url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {', '.join(TABLES)} CASCADE"))
    finally:
        await engine.dispose()
    return postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file under tmp_path, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path)
    url: str = request.getfixturevalue("fresh_postgres_url")
    return url


@pytest.fixture
async def migrated_sqlite_url(tmp_path: Path) -> str:
    url = sqlite_url(tmp_path)
    await runner.upgrade(url)
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str:
    """A database at head with empty tables: a new SQLite file, or the session's
    PostgreSQL database truncated."""
    url: str = request.getfixturevalue(f"migrated_{request.param}_url")
    return url


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'parley.db'}"
