"""Group commit: reads on an aiosqlite connection, writes batched on a connection of their own.

aiosqlite pays a thread hop per statement, so a payout that wrote its rows one by one would be
bound by that hop, not by the work. Writers here queue full-row upserts and inserts; one writer
task commits everything queued in a single transaction with one `executemany` per statement, then
wakes every waiter. A write is acknowledged only once it is durable. Rows are written whole (no
partial UPDATEs), so statements of one batch may run grouped by SQL text without reordering harm.

The whole transaction runs in one hop to a writer thread that owns a second connection to the
same file: under load every hop waits a turn of a busy event loop, so a batch of ten hops made
every payout wait ten turns per commit. A connection of its own also keeps the writes away from
the reads on `db`: a SELECT stepping through rows while a write on the same connection replaced
them could read half-deleted rows; across two connections WAL gives each read statement its own
snapshot. (A database without a file, `:memory:`, is written on `db` itself.)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiosqlite

log = logging.getLogger("lnchaos.journal")

Op = tuple[str, Sequence[Any]]


class JournalFailed(RuntimeError):
    """The database refused a commit: in-memory state is ahead of disk, so the process must stop."""


class Journal:
    def __init__(self, db: aiosqlite.Connection, *, batch_max: int, queue_max: int = 100_000):
        assert batch_max >= 1
        self._db = db
        self._batch_max = batch_max
        self._queue: asyncio.Queue[tuple[list[Op], asyncio.Future[None]]] = asyncio.Queue(
            maxsize=queue_max
        )
        self._task: asyncio.Task[None] | None = None
        self._writer: sqlite3.Connection | None = None  # opened by the writer task
        self._writer_thread: ThreadPoolExecutor | None = None
        self.failed: BaseException | None = None
        self.batches_committed = 0
        self.writes_committed = 0

    @property
    def db(self) -> aiosqlite.Connection:
        return self._db

    def start(self) -> None:
        assert self._task is None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="journal-writer")

    def write(self, ops: list[Op]) -> asyncio.Future[None]:
        """Queue `ops` to be committed together; the future resolves once they are durable."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failed is not None:
            fut.set_exception(JournalFailed(str(self.failed)))
            return fut
        # put_nowait: a full queue is back-pressure we refuse loudly rather than block in a handler.
        self._queue.put_nowait((ops, fut))
        return fut

    async def flush(self) -> None:
        """Wait until everything queued before this call is durable."""
        await self.write([])

    async def close(self) -> None:
        if self._task is None:
            return
        if self.failed is None:
            try:
                await asyncio.wait_for(self.flush(), timeout=3.0)
            except (TimeoutError, JournalFailed):
                log.error("journal: could not flush on close")
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
        await self._close_writer()

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit([ops for ops, _ in batch])
            except Exception as err:  # the disk said no: fail every waiter and stop accepting
                self.failed = err
                log.critical("journal commit failed, refusing further writes: %s", err)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(JournalFailed(str(err)))
                while not self._queue.empty():
                    _, fut = self._queue.get_nowait()
                    fut.set_exception(JournalFailed(str(err)))
                return
            self.batches_committed += 1
            self.writes_committed += len(batch)
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def _commit(self, writes: list[list[Op]]) -> None:
        grouped: dict[str, list[Sequence[Any]]] = {}
        for ops in writes:
            for sql, params in ops:
                grouped.setdefault(sql, []).append(params)
        if not grouped:
            return
        if self._writer_thread is None:
            await self._open_writer()
        if self._writer is not None:
            assert self._writer_thread is not None
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._writer_thread, _commit_all, self._writer, grouped)
            return
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in grouped.items():
                await self._db.executemany(sql, rows)
        except BaseException:
            await self._db.rollback()
            raise
        await self._db.commit()

    async def _open_writer(self) -> None:
        async with self._db.execute("PRAGMA database_list") as cur:
            files = {name: file for _, name, file in await cur.fetchall()}
        self._writer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        path = files.get("main") or ""
        if path:
            loop = asyncio.get_running_loop()
            self._writer = await loop.run_in_executor(self._writer_thread, _connect_writer, path)

    async def _close_writer(self) -> None:
        if self._writer_thread is None:
            return
        if self._writer is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._writer_thread, self._writer.close)
            self._writer = None
        self._writer_thread.shutdown(wait=True)
        self._writer_thread = None


def _connect_writer(path: str) -> sqlite3.Connection:
    """The writer's connection, opened on (and used only by) the writer thread."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")  # journal_mode=WAL is a property of the file
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _commit_all(conn: sqlite3.Connection, grouped: dict[str, list[Sequence[Any]]]) -> None:
    """One transaction: every statement of the batch, then COMMIT; all or nothing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in grouped.items():
            conn.executemany(sql, rows)
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


async def open_db(path: str) -> aiosqlite.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves) with WAL for concurrent reads."""
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute("PRAGMA busy_timeout=5000")
    return db
