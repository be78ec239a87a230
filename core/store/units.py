"""Store operations as units of work: one synchronous function of a SQLAlchemy
``Connection``, run in one transaction, handed to the database ONCE.

Why not plain async SQLAlchemy everywhere: on SQLite, aiosqlite moves every cursor
call, BEGIN and COMMIT to its thread and back, so one read cost five thread hand-offs
and a turn's commit fourteen; at 64 busy chats that waiting was most of a turn's time
(issue 10). Here a SQLite file gets one dedicated thread holding a plain pysqlite
connection: a unit is one hand-off, and the units that queue up while the thread is
busy run as one batch in one transaction (group commit), so concurrent turns share a
BEGIN and a COMMIT. A batch is all or nothing per unit: if any unit raises, the batch
is rolled back and its units run again one transaction each, so one unit's failure
never takes another's writes with it (units are pure functions of the database and
their captured parameters, so running one again is safe).

PostgreSQL (and in-memory SQLite, which only exists inside its own engine) keeps the
async engine: the same unit runs through ``AsyncConnection.run_sync``, one
transaction per unit, concurrent units on concurrent pooled connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

T = TypeVar("T")
Unit = Callable[[Connection], T]

# A batch larger than this commits and the rest waits for the next one: a commit's
# latency stays bounded under a flood, and one failing unit re-runs only so many.
MAX_BATCH = 64


class Units(Protocol):
    """Runs units of work against one database."""

    @property
    def sync_engine(self) -> Engine:
        """The engine whose connections run the units (for statement events in tests)."""
        ...

    async def write(self, unit: Unit[T]) -> T:
        """Run ``unit`` in a write transaction; committed when this returns."""
        ...

    async def read(self, unit: Unit[T]) -> T:
        """Run ``unit`` in a read-only transaction (nothing it writes is kept)."""
        ...

    async def aclose(self) -> None: ...


class EngineUnits:
    """Units on an async engine (PostgreSQL, in-memory SQLite).

    ``write_lock`` serialises writes in this process (SQLite has one writer at a time;
    see SQLStore), or is a null context.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        write_lock: Callable[[], contextlib.AbstractAsyncContextManager[object]],
    ) -> None:
        self._engine = engine
        self._reader = engine.execution_options(sqlite_begin="NONE")
        self._write_lock = write_lock

    @property
    def sync_engine(self) -> Engine:
        return self._engine.sync_engine

    async def write(self, unit: Unit[T]) -> T:
        async with self._write_lock(), self._engine.begin() as conn:
            return await conn.run_sync(unit)

    async def read(self, unit: Unit[T]) -> T:
        async with self._reader.connect() as conn:
            return await conn.run_sync(unit)

    async def aclose(self) -> None:
        pass  # the engine is the store's to dispose


@dataclass(eq=False, slots=True)
class _Job:
    unit: Unit[Any]
    write: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = None
    done: bool = field(default=False)


_STOP = object()


class SQLiteThread:
    """Units on a SQLite file, run by one dedicated thread (see the module docstring).

    ``configure`` sets a new engine's per-connection pragmas (core/store/engine.py).
    The thread starts at the first unit and stops at ``aclose``.
    """

    def __init__(self, url: URL, configure: Callable[[Engine], None]) -> None:
        # One connection, used only by the thread: pysqlite's same-thread check holds.
        self._engine = create_engine(url.set(drivername="sqlite+pysqlite"), pool_size=1)
        configure(self._engine)
        self._jobs: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False
        self._conn: Connection | None = None  # the thread's own

    @property
    def sync_engine(self) -> Engine:
        return self._engine

    async def write(self, unit: Unit[T]) -> T:
        return await self._submit(unit, write=True)

    async def read(self, unit: Unit[T]) -> T:
        return await self._submit(unit, write=False)

    async def aclose(self) -> None:
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(thread.join)
            self._thread = None
        self._engine.dispose()

    # -- the loop's side -----------------------------------------------------------------

    async def _submit(self, unit: Unit[T], *, write: bool) -> T:
        if self._closed:
            raise RuntimeError("the store is closed")
        loop = asyncio.get_running_loop()
        job = _Job(unit, write, loop, loop.create_future())
        self._ensure_thread()
        self._jobs.put(job)
        result: T = await job.future
        return result

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._serve, name="parley-sqlite", daemon=True)
                thread.start()
                self._thread = thread

    @staticmethod
    def _deliver(jobs: list[_Job]) -> None:
        for job in jobs:
            if job.future.cancelled():
                continue
            if job.error is not None:
                job.future.set_exception(job.error)
            else:
                job.future.set_result(job.result)

    # -- the thread's side ---------------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._serve_until_stopped()
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    def _serve_until_stopped(self) -> None:
        while True:
            first = self._jobs.get()
            if first is _STOP:
                return
            batch: list[_Job] = [first]  # type: ignore[list-item]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)  # type: ignore[arg-type]
            self._run(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
            for job in batch:
                by_loop.setdefault(job.loop, []).append(job)
            for loop, jobs in by_loop.items():
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                    loop.call_soon_threadsafe(self._deliver, jobs)
            if stop:
                return

    def _run(self, batch: list[_Job]) -> None:
        try:
            self._in_one_transaction(batch)
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
            for job in batch:  # one unit failed: each on its own, so only it fails
                try:
                    self._in_one_transaction([job])
                except BaseException as single:
                    job.error = single

    def _connection(self) -> Connection:
        # Kept open between batches: a checkout and its reset cost as much as a unit.
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            conn = self._conn = self._engine.connect()
        return conn

    def _in_one_transaction(self, batch: list[_Job]) -> None:
        write = any(job.write for job in batch)
        conn = self._connection()
        # IMMEDIATE takes the write lock up front: a writer that read first could
        # otherwise lose the lock upgrade to another process (SQLITE_BUSY at once).
        conn.execution_options(sqlite_begin="IMMEDIATE" if write else "")
        with conn.begin() as transaction:
            results = [job.unit(conn) for job in batch]
            if not write:
                transaction.rollback()
        for job, result in zip(batch, results, strict=True):
            job.result = result
            job.error = None
