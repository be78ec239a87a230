"""Shared test setup. Fixtures for one area live in that area's conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# The database fixtures (SQLite file and a throwaway PostgreSQL cluster), for every test.
from tests.pg import (  # noqa: F401
    db_url,
    fresh_postgres_url,
    migrated_postgresql_url,
    migrated_sqlite_url,
    postgres_cluster,
    postgres_url,
    store_url,
)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No test reads the developer's config or writes into their data folder."""
    home = tmp_path / "parley-home"
    monkeypatch.setenv("PARLEY_HOME", str(home))
    monkeypatch.delenv("PARLEY_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    yield home
    assert "PARLEY_HOME" in os.environ
