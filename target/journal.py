"""Group commit over one aiosqlite connection.

aiosqlite pays a thread hop per statement, so a payout that wrote its rows one by one would be
bound by that hop, not by the work. Writers here queue full-row upserts and inserts; one writer
task commits everything queued in a single transaction with one `executemany` per statement, then
wakes every waiter. A write is acknowledged only once it is durable. Rows are written whole (no
partial UPDATEs), so statements of one batch may run grouped by SQL text without reordering harm.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
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
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in grouped.items():
                await self._db.executemany(sql, rows)
        except BaseException:
            await self._db.rollback()
            raise
        await self._db.commit()


async def open_db(path: str) -> aiosqlite.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves) with WAL for concurrent reads."""
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=NORMAL")
    await db.execute("PRAGMA busy_timeout=5000")
    return db
