"""A double-entry ledger of millisatoshis, with payouts (and each one's outbox state) beside it.

Accounts: `deposits` (the outside world; its balance is minus everything ever deposited),
`wallet:<id>` (spendable), `reserved:<id>` (held for payouts in flight), `outbound` (paid out over
Lightning) and `fees` (routing fees paid). Every transfer debits one account and credits another,
so conservation is one query: -deposits = wallets + reserved + outbound + fees.

The event loop is the serialiser: a `Tx` checks its moves against the in-memory balances, queues
its rows to the journal and applies them, with no await in between, so concurrent payouts can
never overdraw a wallet; the journal commits many transactions at once (group commit). A change
the journal cannot queue is not applied. Nothing is reported to a client or sent to the node
before its transaction is durable, and what clients read is the committed state (`committed`
balances and each payout's `committed` copy, both updated when its batch commits): the working
balances may be ahead of the disk by the queued writes, and if the disk fails the process stops
(fail-stop) rather than answer from them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .common.journal import Journal, Op
from .common.rows import Table

DEPOSITS = "deposits"
OUTBOUND = "outbound"
FEES = "fees"

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    balance_msat INTEGER NOT NULL,
    CHECK (balance_msat >= 0 OR account_id = 'deposits')
);
CREATE TABLE IF NOT EXISTS transfers (
    transfer_id INTEGER PRIMARY KEY,
    debit_account TEXT NOT NULL,
    credit_account TEXT NOT NULL,
    amount_msat INTEGER NOT NULL CHECK (amount_msat > 0),
    payout_id TEXT,
    kind TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS transfers_payout ON transfers(payout_id);
CREATE TABLE IF NOT EXISTS wallets (
    wallet_id TEXT PRIMARY KEY,
    api_key_sha256 TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS payouts (
    payout_id TEXT PRIMARY KEY,
    wallet_id TEXT NOT NULL,
    idempotency_key TEXT,
    request_sha256 TEXT NOT NULL,
    payment_request TEXT NOT NULL,
    payment_hash TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    fee_limit_msat INTEGER NOT NULL,
    fee_msat INTEGER NOT NULL,
    status TEXT NOT NULL,
    mode TEXT NOT NULL,
    response_status INTEGER,
    response_json TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    attempt_id INTEGER,
    outbox TEXT,
    changed_seq INTEGER NOT NULL DEFAULT 0,
    UNIQUE (wallet_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS payouts_hash ON payouts(payment_hash);
-- the reconciler's counts by status every pass: an index-only scan, not one of the whole rows
CREATE INDEX IF NOT EXISTS payouts_status ON payouts(status);
"""
# After the columns of an earlier version's database are added (Ledger.load).
INDEXES = "CREATE INDEX IF NOT EXISTS payouts_changed ON payouts(changed_seq);"

UPSERT_ACCOUNT = (
    "INSERT INTO accounts (account_id, balance_msat) VALUES (?, ?) "
    "ON CONFLICT(account_id) DO UPDATE SET balance_msat = excluded.balance_msat"
)
INSERT_TRANSFER = (
    "INSERT INTO transfers (transfer_id, debit_account, credit_account, amount_msat, payout_id,"
    " kind, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
INSERT_WALLET = "INSERT INTO wallets (wallet_id, api_key_sha256, created_ms) VALUES (?, ?, ?)"


# Limits of what the ledger holds in memory. Past a hard limit new work is refused (LimitReached,
# a 503 to the client), never grown into.
PENDING_PAYOUTS_MAX = 50_000  # pending payouts (all kept in memory until final)
RECENT_PAYOUTS_MAX = 5_000  # finished payouts cached (the database answers the rest)
# Wallets whose key and balances stay in memory, least recently used out first; the others are
# read back from the database when asked for (warm). A wallet in use (a payout running, money
# reserved, a change not yet durable) is never let go. Each costs about 1 KB: a long run opens
# a wallet every few payouts, and a target that kept them all grew by a hundred MB an hour.
HOT_WALLETS_MAX = 20_000
EVICT_SCAN_MAX = 64  # wallets looked at per eviction (busy ones are moved to the back)


def wallet_account(wallet_id: str) -> str:
    return f"wallet:{wallet_id}"


def reserved_account(wallet_id: str) -> str:
    return f"reserved:{wallet_id}"


WALLET_CLASSES = ("wallet:", "reserved:")


def account_class(account: str) -> str:
    """An account's class: `wallet:` or `reserved:` for a wallet's, else the account itself."""
    for prefix in WALLET_CLASSES:
        if account.startswith(prefix):
            return prefix
    return account


def wallet_of(account: str) -> str | None:
    """The wallet id of a wallet's account, None for the books' own."""
    prefix = account_class(account)
    return account[len(prefix) :] if prefix in WALLET_CLASSES else None


def now_ms() -> int:
    return int(time.time() * 1000)


class PayoutStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class OutboxState(StrEnum):
    QUEUED = "queued"  # reserved, not yet handed to the node
    SENT = "sent"  # handed to the node; its outcome is the node's to tell
    DONE = "done"  # confirmed or cancelled


class InsufficientFunds(Exception):
    pass


class LimitReached(Exception):
    """A hard limit of the ledger's memory is reached: the change is refused, nothing applied."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Payout:
    payout_id: str
    wallet_id: str
    idempotency_key: str | None
    request_sha256: str
    payment_request: str
    payment_hash: str
    amount_msat: int
    fee_limit_msat: int
    mode: str
    fee_msat: int = 0
    status: PayoutStatus = PayoutStatus.PENDING
    response_status: int | None = None
    response_json: str | None = None
    created_ms: int = field(default_factory=now_ms)
    updated_ms: int = field(default_factory=now_ms)
    attempt_id: int | None = None  # the node's id of this payout's own payment attempt
    outbox: OutboxState | None = None
    # the ledger's number of this payout's latest write: the reconciler finds the payouts
    # changed since its last pass by it (an index on it, appended to at each write)
    changed_seq: int = 0
    # What clients see: the payout as last committed (None until its first write is durable),
    # and its stored answer as last committed (what an idempotent retry replays).
    committed: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    committed_answer: tuple[int, str] | None = field(default=None, repr=False, compare=False)

    def snapshot(self) -> tuple[Any, ...]:
        """The fields a flow changes before writing them: restored if the write is refused."""
        return (
            self.status,
            self.fee_msat,
            self.response_status,
            self.response_json,
            self.outbox,
            self.updated_ms,
        )

    def restore(self, snapshot: tuple[Any, ...]) -> None:
        (
            self.status,
            self.fee_msat,
            self.response_status,
            self.response_json,
            self.outbox,
            self.updated_ms,
        ) = snapshot

    def copy_for_clients(self) -> tuple[dict[str, Any], tuple[int, str] | None]:
        answer = None
        if self.response_status is not None and self.response_json is not None:
            answer = (self.response_status, self.response_json)
        return self.public(), answer

    def public(self) -> dict[str, Any]:
        return {
            "payout_id": self.payout_id,
            "wallet_id": self.wallet_id,
            "status": str(self.status),
            "amount_msat": self.amount_msat,
            "fee_msat": self.fee_msat,
            "payment_hash": self.payment_hash,
        }


# One way to map rows to records (target/common/rows.py). A payout's row is inserted once and
# then updated in place, its changing columns only (an upsert): a rewrite of the whole row (as
# INSERT OR REPLACE did) deleted and re-inserted it in every index, at each of its writes, and
# the outbox had a table of its own, written beside it. (`lnchaos bench`: see the commit.)
PAYOUTS = Table(
    Payout,
    "payouts",
    key=("payout_id",),
    mutable=(
        "fee_msat",
        "status",
        "response_status",
        "response_json",
        "updated_ms",
        "attempt_id",
        "outbox",
        "changed_seq",
    ),
    exclude=("committed", "committed_answer"),
)
SELECT_PAYOUTS = "SELECT " + ", ".join(f"p.{name}" for name in PAYOUTS.names) + " FROM payouts p"


class BloomFilter:
    """A set that can only say "no" or "maybe", for a read that is nearly always a "no":
    - the payment hashes of succeeded payouts: "not in it" means no committed payout of the
      hash succeeded, and `hash_paid` needs no read (an indexed read of a file the journal
      rewrites all the time: 35-45 us of CPU, one per payout);
    - the (wallet, Idempotency-Key) pairs of payouts: "not in it" means the key is new, and
      `payout_by_key` needs no read (a flush of the journal and a read on aiosqlite's thread,
      one per payout with a key: every payout the suite sends).
    Every value committed (read at load) and every one queued since is in it. A false "maybe"
    only costs the read. Fixed memory, 2 MiB: two bits a value, so about 1 in 7000 new values
    is a false maybe after 100 000 added, 1 in 80 after a million. Bits from the process's own
    str hash (randomised per process), so nobody can choose values that collide."""

    BITS = 1 << 24

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS // 8)

    def add(self, value: str | tuple[str, str]) -> None:
        mixed = hash(value)
        for bit in (mixed & (self.BITS - 1), (mixed >> 24) & (self.BITS - 1)):
            self._bits[bit >> 3] |= 1 << (bit & 7)

    def maybe(self, value: str | tuple[str, str]) -> bool:
        mixed = hash(value)
        bits = self._bits
        first, second = mixed & (self.BITS - 1), (mixed >> 24) & (self.BITS - 1)
        return bool(bits[first >> 3] >> (first & 7) & bits[second >> 3] >> (second & 7) & 1)


class Tx:
    """One atomic change: moves between accounts plus the payout and outbox rows that go with
    them. `commit()` checks every balance, applies in memory and queues the rows; all or nothing."""

    def __init__(self, ledger: Ledger):
        self._ledger = ledger
        self._moves: list[tuple[str, str, int, str | None, str]] = []
        self._ops: list[Op] = []
        self._payouts: list[Payout] = []

    def move(
        self, debit: str, credit: str, amount_msat: int, payout_id: str | None, kind: str
    ) -> Tx:
        assert isinstance(amount_msat, int) and amount_msat >= 0, amount_msat
        if amount_msat > 0:
            self._moves.append((debit, credit, amount_msat, payout_id, kind))
        return self

    def save_payout(self, payout: Payout) -> Tx:
        """Write the payout as it is when the transaction commits (its row is built then)."""
        payout.updated_ms = now_ms()
        if payout.status is PayoutStatus.SUCCEEDED:
            self._ledger.paid_hashes.add(payout.payment_hash)  # before it can be committed
        if all(p is not payout for p in self._payouts):
            self._payouts.append(payout)
        return self

    def set_outbox(self, payout: Payout, state: OutboxState) -> Tx:
        """The payout's outbox state, a column of its row: written with it, in this transaction."""
        payout.outbox = state
        return self.save_payout(payout)

    def add_op(self, op: Op) -> Tx:
        self._ops.append(op)
        return self

    def commit(self) -> asyncio.Future[None]:
        return self._ledger._commit(self._moves, self._ops, self._payouts)


class Ledger:
    def __init__(
        self,
        journal: Journal,
        *,
        recent_payouts_max: int = RECENT_PAYOUTS_MAX,
        pending_payouts_max: int = PENDING_PAYOUTS_MAX,
        hot_wallets_max: int = HOT_WALLETS_MAX,
    ):
        self.journal = journal
        # Working balances: every queued change applied (what new changes are checked against).
        self.balances: dict[str, int] = {}
        # Committed balances: what the database holds (what clients read).
        self.committed: dict[str, int] = {}
        self.api_keys: dict[str, str] = {}  # wallet_id -> sha256 of its api key (hot wallets)
        self._hot: OrderedDict[str, None] = OrderedDict()  # hot wallets, least recent first
        self._pins: dict[str, int] = {}  # wallets a payout is using now: never let go
        self._pending_of: dict[str, int] = {}  # wallet_id -> its pending payouts (never let go)
        self.hot_wallets_max = hot_wallets_max
        self.paid_hashes = BloomFilter()  # hashes of succeeded payouts (hash_paid's fast "no")
        self.used_keys = BloomFilter()  # (wallet, Idempotency-Key) of payouts (payout_by_key's)
        # Pending payouts always stay in memory; finished ones in a bounded cache (the database
        # answers the rest), so memory stays flat over a long run.
        self.pending: dict[str, Payout] = {}
        self.pending_max = pending_payouts_max
        self._recent: OrderedDict[str, Payout] = OrderedDict()
        self._recent_max = recent_payouts_max
        # (wallet, key) -> payout_id of the pending and recent payouts (bounded by both limits).
        self.idempotency: dict[tuple[str, str], str] = {}
        self._next_transfer_id = 1
        self._next_changed_seq = 1
        # Per-class sums (account_class) of the durable transfers up to `_summed_through_id`
        # (conservation()): a handful of classes, not one entry per wallet ever opened.
        self._transfer_sums: dict[str, int] = {}
        self._summed_through_id = 0
        self._summing = asyncio.Lock()  # two concurrent calls must not add the same rows twice

    async def load(self) -> None:
        db = self.journal.db
        await db.executescript(SCHEMA)
        await self._upgrade()
        await db.executescript(INDEXES)
        # The books' own accounts; wallets are read when asked for (warm), those of pending
        # payouts below.
        query = (
            "SELECT account_id, balance_msat FROM accounts"
            " WHERE account_id NOT LIKE 'wallet:%' AND account_id NOT LIKE 'reserved:%'"
        )
        async with db.execute(query) as cur:
            async for account_id, balance in cur:
                self.balances[account_id] = balance
                self.committed[account_id] = balance
        async with db.execute("SELECT COALESCE(MAX(transfer_id), 0) FROM transfers") as cur:
            row = await cur.fetchone()
            self._next_transfer_id = (row[0] if row else 0) + 1
        async with db.execute("SELECT COALESCE(MAX(changed_seq), 0) FROM payouts") as cur:
            row = await cur.fetchone()
            self._next_changed_seq = (row[0] if row else 0) + 1
        # Every payout ever, once per start: in large chunks (aiosqlite's iteration hops to its
        # thread every 64 rows; a restart after a million payouts spent seconds on the hops).
        query = "SELECT payment_hash FROM payouts WHERE status = 'succeeded'"
        async for rows in chunks_of(db, query):
            for (payment_hash,) in rows:
                self.paid_hashes.add(payment_hash)
        query = "SELECT wallet_id, idempotency_key FROM payouts WHERE idempotency_key IS NOT NULL"
        async for rows in chunks_of(db, query):
            for wallet_id, idempotency_key in rows:
                self.used_keys.add((wallet_id, idempotency_key))
        async with db.execute(SELECT_PAYOUTS + " WHERE p.status = 'pending'") as cur:
            async for row in cur:
                self._remember(payout_from_row(row))
        for wallet_id in {payout.wallet_id for payout in self.pending.values()}:
            await self.warm(wallet_id)  # a pending payout's wallet is in use: kept hot

    async def _upgrade(self) -> None:
        """A database of an earlier version, brought to this one in one transaction: the
        payouts' attempt id, outbox state (it had a table of its own) and write number (the
        rowid of their last rewrite stood for it) become columns."""
        db = self.journal.db
        columns = {row[1] for row in await db.execute_fetchall("PRAGMA table_info(payouts)")}
        query = "SELECT name FROM sqlite_master WHERE type = 'table'"
        tables = {row[0] for row in await db.execute_fetchall(query)}
        if {"attempt_id", "outbox", "changed_seq"} <= columns and "outbox" not in tables:
            return
        await db.execute("BEGIN IMMEDIATE")
        try:
            if "attempt_id" not in columns:
                await db.execute("ALTER TABLE payouts ADD COLUMN attempt_id INTEGER")
            if "outbox" not in columns:
                await db.execute("ALTER TABLE payouts ADD COLUMN outbox TEXT")
            if "outbox" in tables:
                await db.execute(
                    "UPDATE payouts SET outbox ="
                    " (SELECT state FROM outbox o WHERE o.payout_id = payouts.payout_id)"
                )
                await db.execute("DROP TABLE outbox")
            if "changed_seq" not in columns:
                await db.execute(
                    "ALTER TABLE payouts ADD COLUMN changed_seq INTEGER NOT NULL DEFAULT 0"
                )
                await db.execute("UPDATE payouts SET changed_seq = rowid")
                # the reconciliation's checkpoint counts in the old numbers: judge anew
                await db.execute("DROP TABLE IF EXISTS reconcile_checkpoint")
        except BaseException:
            await db.rollback()
            raise
        await db.commit()

    # ---- reads -------------------------------------------------------------------------------

    def balance(self, account: str) -> int:
        """The working balance (queued changes included): for checking new changes only."""
        return self.balances.get(account, 0)

    def committed_balance(self, account: str) -> int:
        """The balance the database holds: what a client may be shown."""
        return self.committed.get(account, 0)

    # ---- hot wallets --------------------------------------------------------------------------

    async def warm(self, wallet_id: str) -> bool:
        """Make the wallet hot (its key and balances in memory, as committed); False if there
        is no such wallet. Every use of a wallet's key or balances starts here."""
        if wallet_id in self.api_keys:
            self._hot.move_to_end(wallet_id)
            return True
        accounts = (wallet_account(wallet_id), reserved_account(wallet_id))
        key_rows = await self._read(
            "SELECT api_key_sha256 FROM wallets WHERE wallet_id = ?", (wallet_id,)
        )
        if not key_rows:
            return False
        query = "SELECT account_id, balance_msat FROM accounts WHERE account_id IN (?, ?)"
        balances = dict(await self._read(query, accounts))
        if wallet_id in self.api_keys:  # made hot by another request meanwhile: it is newer
            return True
        # Only a wallet with nothing on its way to the disk was let go: the rows are current.
        self.api_keys[wallet_id] = key_rows[0][0]
        for account in accounts:
            self.balances[account] = self.committed[account] = balances.get(account, 0)
        self._hot[wallet_id] = None
        self._evict()
        return True

    def is_hot(self, wallet_id: str) -> bool:
        return wallet_id in self.api_keys

    def pin(self, wallet_id: str) -> None:
        """A payout uses this (hot) wallet until unpin: it stays hot."""
        assert wallet_id in self.api_keys, f"pinning a wallet that is not hot: {wallet_id}"
        self._pins[wallet_id] = self._pins.get(wallet_id, 0) + 1

    def unpin(self, wallet_id: str) -> None:
        left = self._pins[wallet_id] - 1
        if left:
            self._pins[wallet_id] = left
        else:
            del self._pins[wallet_id]

    def _busy(self, wallet_id: str) -> bool:
        """In use: pinned, a payout pending, money reserved, or a change not yet durable."""
        if wallet_id in self._pins or wallet_id in self._pending_of:
            return True
        for account in (wallet_account(wallet_id), reserved_account(wallet_id)):
            if self.balances.get(account, 0) != self.committed.get(account, 0):
                return True
        return self.balances.get(reserved_account(wallet_id), 0) != 0

    def _evict(self) -> None:
        """Let the least recently used idle wallets go, down to hot_wallets_max (looking at no
        more than EVICT_SCAN_MAX of them: busy ones go to the back)."""
        for _ in range(EVICT_SCAN_MAX):
            if len(self._hot) <= self.hot_wallets_max:
                return
            wallet_id = next(iter(self._hot))
            if self._busy(wallet_id):
                self._hot.move_to_end(wallet_id)
                continue
            del self._hot[wallet_id]
            del self.api_keys[wallet_id]
            for account in (wallet_account(wallet_id), reserved_account(wallet_id)):
                self.balances.pop(account, None)
                self.committed.pop(account, None)

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Committed rows of a point read: inline, or on the reading connection when busy."""
        try:
            return await self.journal.read_now(sql, params)
        except sqlite3.OperationalError:  # busy inline: ask on the reading connection instead
            return list(await self.journal.db.execute_fetchall(sql, params))

    async def payout(self, payout_id: str) -> Payout | None:
        found = self.pending.get(payout_id) or self._recent.get(payout_id)
        if found is not None:
            return found
        return await self._fetch_payout("p.payout_id = ?", (payout_id,))

    async def payout_by_key(self, wallet_id: str, idempotency_key: str) -> Payout | None:
        payout_id = self.idempotency.get((wallet_id, idempotency_key))
        if payout_id is not None:
            found = await self.payout(payout_id)
            if found is not None:
                return found
        if not self.used_keys.maybe((wallet_id, idempotency_key)):
            return None  # no payout with this key was ever queued, so none is stored
        return await self._fetch_payout(
            "p.wallet_id = ? AND p.idempotency_key = ?", (wallet_id, idempotency_key)
        )

    async def payouts_for_hash(self, payment_hash: str) -> list[Payout]:
        """Every payout of one payment hash (a rare path: recovering an unrecorded attempt)."""
        await self.journal.flush()
        query = f"{SELECT_PAYOUTS} WHERE p.payment_hash = ?"
        rows = await self.journal.db.execute_fetchall(query, (payment_hash,))  # one hop
        return [self.pending.get(row[0]) or payout_from_row(row) for row in rows]

    async def hash_paid(self, payment_hash: str) -> bool:
        """Whether a committed payout of this hash succeeded. Reads committed rows only: the
        caller holds the hash's claim, and a payout gives its claim up only once its end is
        committed, so no success can be on its way to the disk unseen."""
        if not self.paid_hashes.maybe(payment_hash):
            return False  # no succeeded payout of it was ever queued, so none is committed
        query = "SELECT 1 FROM payouts WHERE payment_hash = ? AND status = 'succeeded' LIMIT 1"
        try:
            return bool(await self.journal.read_now(query, (payment_hash,)))
        except sqlite3.OperationalError:  # busy inline: ask on the reading connection instead
            return bool(await self.journal.db.execute_fetchall(query, (payment_hash,)))

    async def _fetch_payout(self, where: str, params: tuple[Any, ...]) -> Payout | None:
        await self.journal.flush()
        async with self.journal.db.execute(f"{SELECT_PAYOUTS} WHERE {where}", params) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return payout_from_row(row)

    # ---- writes ------------------------------------------------------------------------------

    def tx(self) -> Tx:
        return Tx(self)

    def open_wallet(
        self, wallet_id: str, api_key_sha256: str, deposit_msat: int
    ) -> asyncio.Future[None]:
        assert wallet_id not in self.api_keys
        tx = self.tx().add_op((INSERT_WALLET, (wallet_id, api_key_sha256, now_ms())))
        tx.move(DEPOSITS, wallet_account(wallet_id), deposit_msat, None, "deposit")
        self.api_keys[wallet_id] = api_key_sha256  # queued: the wallet exists from now on
        try:
            fut = tx.commit()
        except BaseException:
            del self.api_keys[wallet_id]  # nothing was queued: no such wallet
            raise
        self._hot[wallet_id] = None
        self._evict()
        return fut

    def _commit(
        self,
        moves: list[tuple[str, str, int, str | None, str]],
        ops: list[Op],
        payouts: list[Payout],
    ) -> asyncio.Future[None]:
        delta: dict[str, int] = {}
        for debit, credit, amount_msat, _, _ in moves:
            delta[debit] = delta.get(debit, 0) - amount_msat
            delta[credit] = delta.get(credit, 0) + amount_msat
        for account, change in delta.items():
            # a wallet's balances are only known while it is hot (warm, pin): never a guess of 0
            assert self.is_hot(wallet_of(account) or "") or account_class(account) == account, (
                f"{account}: its wallet is not hot"
            )
            if account != DEPOSITS and self.balance(account) + change < 0:
                raise InsufficientFunds(account)
        new_pending = sum(
            1
            for p in payouts
            if p.status is PayoutStatus.PENDING and p.payout_id not in self.pending
        )
        if new_pending and len(self.pending) + new_pending > self.pending_max:
            raise LimitReached(
                "too_many_pending", f"{self.pending_max} payouts are pending; retry later"
            )
        self.journal.refuse_if_failed()
        # Checked. From here to the end there is no await, so no one sees half of it: build the
        # rows, queue them (JournalFull leaves everything as it was), then apply them.
        created_ms = now_ms()
        rows: list[Op] = []
        transfer_id = self._next_transfer_id
        for debit, credit, amount_msat, payout_id, kind in moves:
            row = (transfer_id, debit, credit, amount_msat, payout_id, kind, created_ms)
            rows.append((INSERT_TRANSFER, row))
            transfer_id += 1
        balances: dict[str, int] = {}
        for account, change in delta.items():
            balance = self.balance(account) + change
            assert balance >= 0 or account == DEPOSITS, (account, balance)
            balances[account] = balance
            rows.append((UPSERT_ACCOUNT, (account, balance)))
        changed_seq = self._next_changed_seq
        for payout in payouts:
            payout.changed_seq = changed_seq
            changed_seq += 1
            rows.append((PAYOUTS.upsert, PAYOUTS.row(payout)))
        copies = [(payout, payout.copy_for_clients()) for payout in payouts]

        def committed() -> None:  # the batch is durable: clients may see it now
            for account, change in delta.items():
                self.committed[account] = self.committed.get(account, 0) + change
            for payout, (public, answer) in copies:
                payout.committed = public
                payout.committed_answer = answer

        durable = self.journal.write(rows + ops, committed)
        self._next_transfer_id = transfer_id
        self._next_changed_seq = changed_seq
        self.balances.update(balances)
        for payout in payouts:
            self._remember(payout)
        return durable

    def _remember(self, payout: Payout) -> None:
        if payout.idempotency_key is not None:
            self.idempotency[(payout.wallet_id, payout.idempotency_key)] = payout.payout_id
            self.used_keys.add((payout.wallet_id, payout.idempotency_key))
        if payout.status is PayoutStatus.PENDING:
            if payout.payout_id not in self.pending:
                self._pending_of[payout.wallet_id] = self._pending_of.get(payout.wallet_id, 0) + 1
            self.pending[payout.payout_id] = payout
            return
        if self.pending.pop(payout.payout_id, None) is not None:
            left = self._pending_of[payout.wallet_id] - 1
            if left:
                self._pending_of[payout.wallet_id] = left
            else:
                del self._pending_of[payout.wallet_id]
        self._recent[payout.payout_id] = payout
        self._recent.move_to_end(payout.payout_id)
        while len(self._recent) > self._recent_max:
            old_id, old = self._recent.popitem(last=False)
            if old.idempotency_key is not None:
                self.idempotency.pop((old.wallet_id, old.idempotency_key), None)

    # ---- the conservation query ---------------------------------------------------------------

    def sums_checkpoint(self) -> tuple[int, dict[str, int]]:
        """(the last transfer summed, the sums per class): kept by the reconciler's checkpoint,
        so a restart sums only the transfers after it."""
        return self._summed_through_id, dict(self._transfer_sums)

    def restore_sums(self, through_id: int, sums: dict[str, int]) -> None:
        assert self._summed_through_id == 0 and not self._transfer_sums, "restored once, first"
        self._summed_through_id = int(through_id)
        self._transfer_sums = {str(k): int(v) for k, v in sums.items()}

    async def conservation(self) -> dict[str, Any]:
        """deposits = balances + reserved + paid out + fees, from the durable rows; and each
        class of accounts (the books' own, all wallets', all reservations') holding the sum of
        its transfers, with no account below zero.

        Transfers are append-only and committed in id order, so their sums per class are kept
        and only the transfers committed since the last call are read; the accounts are summed
        per class inside SQLite. Memory stays a handful of sums however many wallets a long run
        opens (the reconciler calls this every few seconds)."""
        await self.journal.flush()
        classes: dict[str, tuple[int, int]] = {}
        new_sums: dict[str, int] = {}
        async with self._summing:
            # read under the lock: a call that waited for another must not go back to the
            # mark it saw before (it would add the other's transfers a second time)
            through_id = self._summed_through_id
            # One statement, so one snapshot: the new transfers and the accounts they produced,
            # both summed per class inside SQLite (a restart's first call may have many).
            since = (self._summed_through_id,)
            async with self.journal.db.execute(CONSERVATION_QUERY, since) as cur:
                async for part, group, amount_msat, negative, last_id in cur:
                    if part == "accounts":
                        classes[group] = (int(amount_msat), int(negative))
                        continue
                    new_sums[group] = int(amount_msat)
                    through_id = max(through_id, int(last_id))
            # applied at once (no await): a checkpoint never sees sums and their id apart
            sums = self._transfer_sums
            for group, change in new_sums.items():
                sums[group] = sums.get(group, 0) + change
            self._summed_through_id = through_id
        return conservation_of(classes, sums)


def _class_sql(column: str) -> str:
    """account_class in SQL."""
    return (
        f"CASE WHEN {column} LIKE 'wallet:%' THEN 'wallet:'"
        f" WHEN {column} LIKE 'reserved:%' THEN 'reserved:' ELSE {column} END"
    )


# Per class: the net of the transfers since a given id (and the last id summed), then each class
# of accounts with its balance and how many of its accounts are below zero (the deposits account
# alone may be: deposits come from it).
CONSERVATION_QUERY = f"""
WITH new AS (SELECT transfer_id, debit_account, credit_account, amount_msat FROM transfers
             WHERE transfer_id > ?),
     moves AS (SELECT debit_account AS account, -amount_msat AS change FROM new
               UNION ALL SELECT credit_account, amount_msat FROM new)
SELECT 'transfers', {_class_sql("account")} AS class, SUM(change), NULL,
       (SELECT MAX(transfer_id) FROM new)
FROM moves GROUP BY class
UNION ALL
SELECT 'accounts', {_class_sql("account_id")} AS class, SUM(balance_msat),
       SUM(balance_msat < 0 AND account_id != '{DEPOSITS}'), NULL
FROM accounts GROUP BY class
"""


def conservation_of(classes: dict[str, tuple[int, int]], sums: dict[str, int]) -> dict[str, Any]:
    """The conservation document from each class's (balance, accounts below zero) and the sums
    of the transfers per class."""
    balance = {group: value for group, (value, _) in classes.items()}
    deposits = -balance.get(DEPOSITS, 0)
    wallets, reserved = balance.get("wallet:", 0), balance.get("reserved:", 0)
    outbound, fees = balance.get(OUTBOUND, 0), balance.get(FEES, 0)
    drifted = sum(value != sums.get(group, 0) for group, value in balance.items())
    negative = sum(count for _, count in classes.values())
    return {
        "deposits_msat": deposits,
        "balances_msat": wallets,
        "reserved_msat": reserved,
        "paid_out_msat": outbound,
        "fees_msat": fees,
        "accounts_off_journal": drifted,
        "negative_accounts": negative,
        "conserved": deposits == wallets + reserved + outbound + fees
        and drifted == 0
        and negative == 0,
    }


LOAD_CHUNK_ROWS = 20_000


async def chunks_of(db: Any, query: str) -> AsyncIterator[list[Any]]:
    """The rows of a large read, LOAD_CHUNK_ROWS at a time (one hop to the database's thread
    each)."""
    async with db.execute(query) as cur:
        while rows := await cur.fetchmany(LOAD_CHUNK_ROWS):
            yield rows


def payout_from_row(row: Any) -> Payout:
    """A payout read from the database (PAYOUTS.columns order): committed by definition."""
    payout = PAYOUTS.record(row)
    payout.committed, payout.committed_answer = payout.copy_for_clients()
    return payout
