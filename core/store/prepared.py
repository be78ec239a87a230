"""The turn's hot statements, run straight on the sqlite3 connection.

Why: through SQLAlchemy, one execute costs 15-30 us of Python (execution context,
events, result set-up) around 2-5 us of SQLite, and a turn runs about eight of them on
the database thread while the event loop waits for the GIL. A ``Prepared`` statement
is still written once, in SQLAlchemy (so SQLite and PostgreSQL run the same query):
on SQLite it is compiled once to SQL text, with SQLAlchemy's own bind and result
processors for its column types (JSON, UTC timestamps), and executed on the DBAPI
connection inside the unit's transaction; on any other database it is a plain
``Connection.execute``. Driver errors come back wrapped as SQLAlchemy's, as they
would through ``execute``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.selectable import Select

Params = Mapping[str, Any]
_Processor = Callable[[Any], Any] | None


class Rows:
    """What a statement returned: the rows as tuples, and how many rows it changed."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[tuple[Any, ...]]:
        return self._rows

    def first(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    defaults: dict[str, Any]  # values of literal binds, e.g. ``literal(1)``
    processed: tuple[tuple[int, Callable[[Any], Any]], ...]  # (parameter, bind processor)
    results: tuple[tuple[int, Callable[[Any], Any]], ...]  # (column, processor)


class Prepared:
    """A statement, compiled once per SQLite dialect (see the module docstring)."""

    def __init__(self, statement: ClauseElement, *, column_keys: Sequence[str] = ()) -> None:
        self.statement = statement
        self._column_keys = list(column_keys) or None
        self._compiled: dict[int, _Compiled] = {}

    def execute(self, conn: Connection, params: Params | Sequence[Params]) -> Rows:
        """Run with ``params`` (a list of them: executemany)."""
        raw = conn.connection.dbapi_connection
        if not isinstance(raw, sqlite3.Connection):  # PostgreSQL, or aiosqlite's adapter
            result = conn.execute(self.statement, params)  # type: ignore[call-overload]
            rows = list(result.all()) if result.returns_rows else []
            return Rows(rows, result.rowcount)
        compiled = self._compiled.get(id(conn.dialect))
        if compiled is None:
            compiled = self._compiled[id(conn.dialect)] = self._compile(conn.dialect)
        try:
            if isinstance(params, Mapping):
                cursor = raw.execute(compiled.sql, _positional(compiled, params))
            else:
                cursor = raw.executemany(compiled.sql, [_positional(compiled, p) for p in params])
            rows = cursor.fetchall()
        except sqlite3.Error as error:
            raise sa_exc.DBAPIError.instance(compiled.sql, params, error, sqlite3.Error) from error
        if compiled.results:
            rows = [_processed(row, compiled.results) for row in rows]
        return Rows(rows, cursor.rowcount)

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self.statement.compile(dialect=dialect, column_keys=self._column_keys)
        assert isinstance(compiled, SQLCompiler) and compiled.positiontup is not None
        names = tuple(compiled.positiontup)
        binds = tuple(compiled.binds[name].type._cached_bind_processor(dialect) for name in names)
        results: list[tuple[int, Callable[[Any], Any]]] = []
        if isinstance(self.statement, Select):
            for index, column in enumerate(self.statement.selected_columns):
                processor = column.type._cached_result_processor(dialect, None)
                if processor is not None:
                    results.append((index, processor))
        defaults = {
            name: bind.value for name, bind in compiled.binds.items() if bind.value is not None
        }
        processed = tuple((i, p) for i, p in enumerate(binds) if p is not None)
        return _Compiled(compiled.string, names, defaults, processed, tuple(results))


def _positional(compiled: _Compiled, params: Params) -> list[Any]:
    if compiled.defaults:
        params = {**compiled.defaults, **params}
    values = [params.get(name) for name in compiled.names]
    for index, process in compiled.processed:
        values[index] = process(values[index])
    return values


def _processed(
    row: tuple[Any, ...], processors: Sequence[tuple[int, Callable[[Any], Any]]]
) -> tuple[Any, ...]:
    values = list(row)
    for index, process in processors:
        if values[index] is not None:  # NULL stays None (SQLAlchemy's processors agree)
            values[index] = process(values[index])
    return tuple(values)
