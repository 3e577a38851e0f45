"""Group commit: reads on an aiosqlite connection, writes batched on a connection of their own.

aiosqlite pays a thread hop per statement, so a payout that wrote its rows one by one would be
bound by that hop, not by the work. Writers here queue full-row upserts and inserts; one writer
task commits everything queued in a single transaction with one `executemany` per statement, then
wakes every waiter. A write is acknowledged only once it is durable. Rows are written whole (no
partial UPDATEs), so statements of one batch may run grouped by SQL text without reordering harm.

The whole transaction runs inline, on the event loop, on a second connection to the same file
that only the journal writes with. In WAL mode with synchronous=NORMAL a commit does not fsync, so
a batch costs a few hundred microseconds of CPU; handing it to a thread cost more than that (the
server has one core: the hop is two context switches and a GIL handover, and under load each hop
also waits a turn of the busy loop). The WAL's checkpoint, which does fsync, is taken off the
writer (`wal_autocheckpoint=0`) and run PASSIVE in a thread, on a connection of its own, every
`checkpoint_every` batches, so it never blocks the loop. A connection of its own also keeps the
writes away from the reads on `db`: a SELECT stepping through rows while a write on the same
connection replaced them could read half-deleted rows; across two connections WAL gives each read
statement its own snapshot. (A database without a file, `:memory:`, is written on `db` itself.)
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import aiosqlite

log = logging.getLogger("lnchaos.journal")

Op = tuple[str, Sequence[Any]]
Queued = tuple[list[Op], "asyncio.Future[None]", Callable[[], None] | None]


class JournalFailed(RuntimeError):
    """The database refused a commit: in-memory state is ahead of disk, so the process must stop."""


class JournalFull(RuntimeError):
    """The queue of writes waiting for a commit is full: the write was not queued (back-pressure;
    the caller refuses its request and applies nothing)."""


# Writes waiting for the writer task; past this a write is refused (JournalFull), not queued.
JOURNAL_QUEUE_MAX = 100_000


class Journal:
    def __init__(
        self,
        db: aiosqlite.Connection,
        *,
        batch_max: int,
        queue_max: int = JOURNAL_QUEUE_MAX,
        checkpoint_every: int = 100,
        on_failed: Callable[[BaseException], None] | None = None,
    ):
        assert batch_max >= 1 and checkpoint_every >= 1
        self._db = db
        self._batch_max = batch_max
        self._queue: asyncio.Queue[Queued] = asyncio.Queue(maxsize=queue_max)
        self._task: asyncio.Task[None] | None = None
        self._writer: sqlite3.Connection | None = None  # opened by the writer task
        self._reader: sqlite3.Connection | None = None  # for read_now, opened with the writer
        self._writer_opened = False
        self._path = ""
        self._checkpoint_every = checkpoint_every
        self._checkpoint: asyncio.Task[None] | None = None
        self.failed: BaseException | None = None
        # Called once when a commit fails: the owner stops the process (fail-stop), since every
        # later answer would come from a memory that is ahead of the disk.
        self.on_failed = on_failed
        self.batches_committed = 0
        self.writes_committed = 0

    @property
    def db(self) -> aiosqlite.Connection:
        return self._db

    @property
    def queued(self) -> int:
        """Writes waiting for the disk now (bounded by queue_max)."""
        return self._queue.qsize()

    def start(self) -> None:
        assert self._task is None
        self._task = asyncio.get_running_loop().create_task(self._run(), name="journal-writer")

    def refuse_if_failed(self, doing: str = "") -> None:
        """Raise JournalFailed once a commit failed: memory is then ahead of the disk and the
        process is stopping, so nothing may be applied or acted on (`doing` says what was not)."""
        if self.failed is not None:
            raise JournalFailed(f"{doing}{': ' if doing else ''}{self.failed}")

    def write(
        self, ops: list[Op], on_durable: Callable[[], None] | None = None
    ) -> asyncio.Future[None]:
        """Queue `ops` to be committed together; the future resolves once they are durable, and
        `on_durable` is called then, before any waiter wakes (even if the future's waiter was
        cancelled). Raises JournalFull, before queuing anything, when the queue is full."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failed is not None:
            fut.set_exception(JournalFailed(str(self.failed)))
            return fut
        # A full queue is back-pressure refused loudly rather than blocked on in a handler.
        if self._queue.full():
            raise JournalFull(f"{self._queue.maxsize} writes already wait for the disk")
        self._queue.put_nowait((ops, fut, on_durable))
        return fut

    async def flush(self) -> None:
        """Wait until everything queued before this call is durable."""
        await self.write([])

    async def read_now(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Committed rows of a small, indexed query. Inline on the event loop once the writer
        is open (a point read costs microseconds, the thread hop of `db` far more); until then,
        or for a database without a file, on `db`."""
        if self._reader is not None:
            return self._reader.execute(sql, params).fetchall()
        return list(await self._db.execute_fetchall(sql, params))

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
            # One turn of the loop first: the callbacks already due queue their writes too, so
            # batches grow and commits (each rewrites its dirty pages to the WAL) get fewer.
            await asyncio.sleep(0)
            while len(batch) < self._batch_max and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit([ops for ops, _, _ in batch])
            except Exception as err:  # the disk said no: fail every waiter and stop accepting
                self.failed = err
                log.critical("journal commit failed, refusing further writes: %s", err)
                for _, fut, _ in batch:
                    if not fut.done():
                        fut.set_exception(JournalFailed(str(err)))
                while not self._queue.empty():
                    _, fut, _ = self._queue.get_nowait()
                    if not fut.done():  # (a waiter cancelled meanwhile)
                        fut.set_exception(JournalFailed(str(err)))
                if self.on_failed is not None:
                    self.on_failed(err)
                return
            self.batches_committed += 1
            self.writes_committed += len(batch)
            for _, _, on_durable in batch:
                if on_durable is not None:
                    on_durable()
            for _, fut, _ in batch:
                if not fut.done():
                    fut.set_result(None)

    async def _commit(self, writes: list[list[Op]]) -> None:
        grouped: dict[str, list[Sequence[Any]]] = {}
        for ops in writes:
            for sql, params in ops:
                grouped.setdefault(sql, []).append(params)
        if not grouped:
            return
        if not self._writer_opened:
            await self._open_writer()
        if self._writer is not None:
            _commit_all(self._writer, grouped)
            if (self.batches_committed + 1) % self._checkpoint_every == 0:
                self._start_checkpoint()
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
        self._path = files.get("main") or ""
        if self._path:
            self._writer = _connect_writer(self._path)
            self._reader = sqlite3.connect(self._path, isolation_level=None)
            self._reader.execute("PRAGMA query_only=1")
        self._writer_opened = True

    def _start_checkpoint(self) -> None:
        """A PASSIVE checkpoint in a thread; one at a time."""
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())

    async def _run_checkpoint(self) -> None:
        try:
            await asyncio.to_thread(_checkpoint, self._path)
        except Exception as err:  # the next one will try again; the WAL only grows meanwhile
            log.warning("journal: checkpoint failed: %s", err)

    async def _close_writer(self) -> None:
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
            self._checkpoint = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._writer_opened = False


WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
WAL_RESTART_BYTES = 32 * 1024 * 1024  # above this the checkpoint restarts the WAL
# Short: a RESTART waits for readers while holding writers (the event loop) off; rather give up
# and let the next checkpoint try again.
CHECKPOINT_BUSY_TIMEOUT_MS = 50


def _connect_writer(path: str) -> sqlite3.Connection:
    """The writer's connection. Its checkpoints are left to `_run_checkpoint` (they fsync)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")  # journal_mode=WAL is a property of the file
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    # Once a checkpoint has restarted the WAL, the next commit truncates the file to this size.
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
    return conn


def _checkpoint(path: str) -> None:
    """A checkpoint on a short-lived connection of its own (run in a thread): on the
    reading connection it failed whenever a read statement was open ("table is locked").

    Not only PASSIVE: under steady writes a passive checkpoint never catches up with the end of
    the WAL, so the WAL is never reset and grows without bound (1.4 GB in 50 s of load, and its
    index mapped into memory). A RESTART holds new writers off until it is done, then the next
    commit starts the WAL from its beginning."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={CHECKPOINT_BUSY_TIMEOUT_MS}")
        # PASSIVE first: it copies nearly everything without holding writers off. RESTART only
        # once the WAL is large, so the pause it costs writers (the event loop) is short and rare.
        _, wal_frames, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        if wal_frames * page_size > WAL_RESTART_BYTES:
            conn.execute("PRAGMA wal_checkpoint(RESTART)")
    finally:
        conn.close()


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
