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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection

if TYPE_CHECKING:
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

    async def read(self, unit: Unit[T], *, long: bool = False) -> T:
        """Run ``unit`` in a read-only transaction (nothing it writes is kept);
        ``long``: it may take milliseconds (a deep history walk)."""
        ...

    async def aclose(self) -> None: ...


class EngineUnits:
    """Units on an async engine (PostgreSQL, in-memory SQLite).

    ``write_lock`` serialises writes in this process (SQLite has one writer at a time;
    see SQLStore), or is a null context. With ``group``, the writes asked for in one
    pass of the event loop share a transaction (on PostgreSQL a commit is a round trip
    to the server; see the module docstring for what happens when one unit fails).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        write_lock: Callable[[], contextlib.AbstractAsyncContextManager[object]],
        *,
        group: bool = False,
    ) -> None:
        self._engine = engine
        self._reader = engine.execution_options(sqlite_begin="NONE")
        self._write_lock = write_lock
        self._group = group
        self._pending: list[_Job] = []
        self._flushing: set[asyncio.Task[None]] = set()

    @property
    def sync_engine(self) -> Engine:
        return self._engine.sync_engine

    async def write(self, unit: Unit[T]) -> T:
        if not self._group:
            return await self._alone(unit)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(_Job(unit, True, loop, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_soon)
        result: T = await future
        return result

    async def read(self, unit: Unit[T], *, long: bool = False) -> T:
        async with self._reader.connect() as conn:
            return await conn.run_sync(unit)

    async def aclose(self) -> None:
        # The engine is the store's to dispose; writes under way finish first.
        if self._pending:
            self._flush_soon()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)

    async def _alone(self, unit: Unit[T]) -> T:
        async with self._write_lock(), self._engine.begin() as conn:
            return await conn.run_sync(unit)

    def _flush_soon(self) -> None:
        batch, self._pending = self._pending, []
        # A task of its own: the callers' cancellations must not cut a commit short.
        task = asyncio.get_running_loop().create_task(self._flush(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _flush(self, batch: list[_Job]) -> None:
        batch = [job for job in batch if job.future is not None and not job.future.cancelled()]
        if not batch:
            return
        try:
            async with self._write_lock(), self._engine.begin() as conn:
                results = await conn.run_sync(lambda c: [job.unit(c) for job in batch])
        except BaseException as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for job in batch:  # each on its own, so only the failing one fails
                    try:
                        job.result = await self._alone(job.unit)
                    except BaseException as single:
                        job.error = single
        else:
            for job, result in zip(batch, results, strict=True):
                job.result = result
        _deliver(batch)


@dataclass(eq=False, slots=True)
class _Job:
    unit: Unit[Any]
    write: bool | None  # None: outside any transaction
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[Any] | None
    result: Any = None
    error: BaseException | None = None


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

    async def read(self, unit: Unit[T], *, long: bool = False) -> T:
        return await self._submit(unit, write=False)

    async def outside_transactions(self, unit: Unit[T]) -> T:
        """Run ``unit`` with no transaction open (a checkpoint cannot run in one)."""
        return await self._submit(unit, write=None)

    async def aclose(self) -> None:
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._jobs.put(_STOP)
            await asyncio.to_thread(thread.join)
            self._thread = None
        self._engine.dispose()

    # -- the loop's side -----------------------------------------------------------------

    async def _submit(self, unit: Unit[T], *, write: bool | None) -> T:
        if self._closed:
            raise RuntimeError("the store is closed")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._ensure_thread()
        self._jobs.put(_Job(unit, write, loop, future))
        result: T = await future
        return result

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._serve, name="parley-sqlite", daemon=True)
                thread.start()
                self._thread = thread

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
            self._run(list(batch))
            by_loop: dict[asyncio.AbstractEventLoop, list[_Job]] = {}
            for job in batch:
                if job.loop is not None:
                    by_loop.setdefault(job.loop, []).append(job)
            for loop, jobs in by_loop.items():
                with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                    loop.call_soon_threadsafe(_deliver, jobs)
            if stop:
                return

    def _run(self, batch: list[_Job]) -> None:
        for job in [job for job in batch if job.write is None]:
            batch.remove(job)
            try:
                job.result = job.unit(self._connection())
            except BaseException as exc:
                job.error = exc
        if batch:
            _run_batch(self._connection(), batch)

    def _connection(self) -> Connection:
        self._conn = _kept_open(self._engine, self._conn)
        return self._conn


def _deliver(jobs: list[_Job]) -> None:
    """Hand finished jobs' results to whoever awaits them (on the jobs' loop)."""
    for job in jobs:
        if job.future is None or job.future.cancelled():
            continue
        if job.error is not None:
            job.future.set_exception(job.error)
        else:
            job.future.set_result(job.result)


def _kept_open(engine: Engine, conn: Connection | None) -> Connection:
    """``conn``, or a new connection if it is gone. Kept open between batches: a
    checkout and its reset cost as much as a unit."""
    if conn is not None and not conn.closed and not conn.invalidated:
        return conn
    if conn is not None:
        with contextlib.suppress(Exception):
            conn.close()
    return engine.connect()


def _run_batch(conn: Connection, batch: list[_Job], *, busy_is_final: bool = True) -> None:
    """Run ``batch`` in one transaction; if a unit fails, each on its own, so that only
    it fails. Without ``busy_is_final``, a locked database raises ``_Busy`` for the
    whole batch instead (nothing was written)."""
    try:
        _in_one_transaction(conn, batch)
    except BaseException as exc:
        if not busy_is_final and isinstance(exc, sa_exc.OperationalError) and _is_busy(exc):
            raise _Busy from exc
        if len(batch) == 1:
            batch[0].error = exc
            return
        for job in batch:
            try:
                _in_one_transaction(conn, [job])
            except BaseException as single:
                job.error = single


def _in_one_transaction(conn: Connection, batch: list[_Job]) -> None:
    write = any(job.write for job in batch)
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


class SQLiteUnits:
    """Units on a SQLite file: run right on the event loop when that is quick, else
    on the file's ``SQLiteThread``.

    Why inline: a turn's writes take 20-100 us in SQLite (WAL, no fsync at commit),
    less than handing them to a thread and back; and a second thread that wants the
    GIL takes it whenever the loop's thread releases it for a moment (a socket send,
    the tokenizer, ``os.urandom``), which made those calls wait up to milliseconds.
    What could block the loop goes to the thread instead:

    - a database locked by another process: the inline connection does not wait
      (busy_timeout 0) and the unit is handed to the thread, which does;
    - checkpoints (copying the WAL back into the file, with an fsync): disabled inline,
      and run by the thread every ``CHECKPOINT_EVERY`` inline commits;
    - ``long`` reads (a history walk deep enough to take milliseconds).
    """

    CHECKPOINT_EVERY = 500  # inline write transactions between two checkpoints

    def __init__(self, url: URL, configure: Callable[[Engine], None]) -> None:
        self._thread = SQLiteThread(url, configure)
        self._engine = create_engine(url.set(drivername="sqlite+pysqlite"), pool_size=1)
        configure(self._engine)
        event.listen(self._engine, "connect", _no_waiting)  # after configure's pragmas
        self._conn: Connection | None = None
        self._pending: list[_Job] = []  # writes waiting for this pass's commit
        self._handing: set[asyncio.Task[None]] = set()  # writes sent to the thread
        self._commits = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def sync_engine(self) -> Engine:
        return self._engine

    async def write(self, unit: Unit[T]) -> T:
        if self._closed:
            return await self._thread.write(unit)
        # Writes asked for in one pass of the event loop commit together: a commit
        # (the WAL append) costs more than a turn's statements.
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append(_Job(unit, True, loop, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        result: T = await future
        return result

    async def read(self, unit: Unit[T], *, long: bool = False) -> T:
        if not long and not self._closed:
            job = _Job(unit, False, None, None)  # run now: nobody waits for it
            try:
                _run_batch(self._connection(), [job], busy_is_final=False)
            except _Busy:
                pass
            else:
                if job.error is not None:
                    raise job.error
                result: T = job.result
                return result
        return await self._thread.read(unit)

    async def aclose(self) -> None:
        self._closed = True
        if self._pending:
            self._flush()
        if self._checkpoint is not None:
            with contextlib.suppress(Exception):
                await self._checkpoint
        try:
            await self._thread.aclose()
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None
            self._engine.dispose()

    def _connection(self) -> Connection:
        self._conn = _kept_open(self._engine, self._conn)
        return self._conn

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        batch = [job for job in batch if job.future is not None and not job.future.cancelled()]
        if not batch:
            return
        try:
            _run_batch(self._connection(), batch, busy_is_final=False)
        except _Busy:
            for job in batch:  # another process writes: wait for it on the thread
                task = asyncio.get_running_loop().create_task(self._on_thread(job))
                self._handing.add(task)
                task.add_done_callback(self._handing.discard)
            return
        except BaseException as exc:  # no connection at all (file gone, disk error)
            for job in batch:
                job.error = exc
        _deliver(batch)
        self._committed()

    async def _on_thread(self, job: _Job) -> None:
        future = job.future
        assert future is not None
        try:
            result = await self._thread.write(job.unit)
        except BaseException as exc:
            if not future.cancelled():
                future.set_exception(exc)
        else:
            if not future.cancelled():
                future.set_result(result)

    def _committed(self) -> None:
        self._commits += 1
        if self._commits >= self.CHECKPOINT_EVERY and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._commits = 0
            self._checkpoint = asyncio.get_running_loop().create_task(self._checkpoint_now())

    async def _checkpoint_now(self) -> None:
        def checkpoint(conn: Connection) -> None:
            conn.connection.dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")  # type: ignore[union-attr]

        try:
            await self._thread.outside_transactions(checkpoint)
        except Exception as exc:  # the next one will try again; reads stay correct
            log.debug("WAL checkpoint failed (%s)", exc)


class _Busy(Exception):
    """Another connection holds the lock: run the unit where waiting is harmless."""


def _no_waiting(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=0")
        cursor.execute("PRAGMA wal_autocheckpoint=0")
    finally:
        cursor.close()


def _is_busy(exc: sa_exc.OperationalError) -> bool:
    text = str(exc.orig).lower()
    return "database is locked" in text or "database table is locked" in text
