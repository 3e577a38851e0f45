"""The node's truth is atomic per payment hash and kept per attempt: concurrent sends of one
invoice pay at most once (from memory, after a restart, after the hash left the cache, under
timeouts), every attempt keeps a record of its own, and each attempt's truth can be read by id.

A refused send records nothing: the attempts on disk are exactly the sends the node accepted."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from lnd_harness import fast_faults, run

from target.common.journal import Journal, JournalFailed, open_db
from target.node.client import LocalNodeClient, PaymentStatus
from target.node.invoices import Invoice
from target.node.network import FailureReason, LightningNode, Payment, SendRefused

N = 25
FEE_LIMIT_MSAT = 100_000
AMOUNT_MSAT = 50_000


@asynccontextmanager
async def standalone(
    db_path: Path, *, seed: int = 5, recent_max: int = 5_000, **faults: Any
) -> AsyncIterator[LightningNode]:
    """A node on `db_path` (the same path again: the node restarted)."""
    db = await open_db(str(db_path))
    journal = Journal(db, batch_max=64)
    node = LightningNode(
        fast_faults(**faults), seed=seed, journal=journal, recent_payments_max=recent_max
    )
    try:
        await node.load()
        journal.start()
        yield node
    finally:
        node.close()
        await journal.close()
        await db.close()


async def attempts_on_disk(node: LightningNode, payment_hash: str) -> list[tuple[int, str]]:
    await node.journal.flush()
    q = "SELECT payment_index, status FROM node_attempts WHERE payment_hash = ? ORDER BY 1"
    async with node.journal.db.execute(q, (payment_hash,)) as cur:
        return [(row[0], row[1]) async for row in cur]


async def send_all(
    node: LightningNode, invoice: Invoice, n: int, *, jitter_s: float, seed: int
) -> tuple[list[Payment], Counter[str]]:
    """`n` concurrent sends of one invoice, each after a random pause (so some meet the first
    attempt in flight, some after it settled): the accepted attempts and the refusal codes."""
    rng = random.Random(seed)

    async def one(pause_s: float) -> Payment | str:
        await asyncio.sleep(pause_s)
        try:
            return await node.send(invoice, FEE_LIMIT_MSAT)
        except SendRefused as refused:
            return refused.code

    results = await asyncio.gather(*(one(rng.random() * jitter_s) for _ in range(n)))
    accepted = [r for r in results if isinstance(r, Payment)]
    refused = Counter(r for r in results if isinstance(r, str))
    return accepted, refused


async def final(node: LightningNode, payment: Payment) -> Payment:
    done = await node.wait(payment, 5.0)
    assert done.status is not PaymentStatus.IN_FLIGHT, "not final within 5 s"
    return done


async def assert_paid_once(node: LightningNode, payment_hash: str, accepted: int) -> None:
    """One success on disk, one row per accepted send, totals that agree with the rows."""
    rows = await attempts_on_disk(node, payment_hash)
    assert len(rows) == accepted, rows
    assert [s for _, s in rows].count("succeeded") == 1, rows
    assert all(s == "failed" for _, s in rows[:-1]), "only the newest attempt may be alive"
    async with node.journal.db.execute(
        "SELECT COUNT(*), COALESCE(SUM(amount_msat), 0) FROM node_attempts"
        " WHERE status = 'succeeded'"
    ) as cur:
        row = await cur.fetchone()
    assert row is not None
    assert (node.counts["succeeded"], node.sent_msat) == (row[0], row[1])


def test_concurrent_sends_of_one_invoice_pay_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with standalone(tmp_path / "n.sqlite", latency_ms_median=5.0) as node:
            invoice = node.create_merchant_invoice(AMOUNT_MSAT)
            accepted, refused = await send_all(node, invoice, N, jitter_s=0.03, seed=1)
            assert len(accepted) == 1, (accepted, refused)
            assert set(refused) <= {"in_transition", "already_paid"}
            assert sum(refused.values()) == N - 1
            paid = await final(node, accepted[0])
            assert paid.status is PaymentStatus.SUCCEEDED
            await assert_paid_once(node, invoice.payment_hash, accepted=1)
            # And once it succeeded, every later send is refused as LND refuses it.
            again, refused = await send_all(node, invoice, N, jitter_s=0.0, seed=2)
            assert again == [] and refused == Counter({"already_paid": N})

    run(scenario())


def test_concurrent_sends_after_a_restart_pay_once(tmp_path: Path) -> None:
    """The new node has neither the invoice nor its payments in memory: every send reads the
    database, under the hash's lock."""

    async def scenario() -> None:
        db_path = tmp_path / "n.sqlite"
        async with standalone(db_path) as node:
            unpaid = node.create_merchant_invoice(AMOUNT_MSAT)
            paid = node.create_merchant_invoice(AMOUNT_MSAT + 1)
            assert (await final(node, await node.send(paid, FEE_LIMIT_MSAT))).status == "succeeded"
        async with standalone(db_path, latency_ms_median=5.0) as node:
            assert not node.remembers(unpaid.payment_hash)
            accepted, refused = await send_all(node, unpaid, N, jitter_s=0.03, seed=3)
            assert len(accepted) == 1, (accepted, refused)
            assert set(refused) <= {"in_transition", "already_paid"}
            await final(node, accepted[0])
            await assert_paid_once(node, unpaid.payment_hash, accepted=1)
            accepted, refused = await send_all(node, paid, N, jitter_s=0.0, seed=4)
            assert accepted == [] and refused == Counter({"already_paid": N})
            await assert_paid_once(node, paid.payment_hash, accepted=1)
            # Attempt ids go on increasing across the restart.
            rows = await attempts_on_disk(node, unpaid.payment_hash)
            assert rows[0][0] > (await attempts_on_disk(node, paid.payment_hash))[0][0]

    run(scenario())


def test_concurrent_sends_of_an_evicted_invoice_pay_once(tmp_path: Path) -> None:
    """A hash whose first attempt failed, then left the cache (and the invoice registry) as
    other payments came: a retry reads the database and still pays once."""

    async def scenario() -> None:
        async with standalone(tmp_path / "n.sqlite", recent_max=3, latency_ms_median=5.0) as node:
            invoice = node.create_merchant_invoice(AMOUNT_MSAT)
            first = await final(node, await node.send(invoice, 0))  # no route within limit 0
            assert first.status is PaymentStatus.FAILED
            for i in range(6):
                other = node.create_merchant_invoice(1_000 + i)
                await final(node, await node.send(other, FEE_LIMIT_MSAT))
            assert not node.remembers(invoice.payment_hash)
            assert node.merchants.by_hash(invoice.payment_hash) is None
            accepted, refused = await send_all(node, invoice, N, jitter_s=0.03, seed=5)
            assert len(accepted) == 1, (accepted, refused)
            assert accepted[0].payment_index > first.payment_index
            await final(node, accepted[0])
            await assert_paid_once(node, invoice.payment_hash, accepted=2)

    run(scenario())


def test_under_timeouts_and_late_settles_at_most_one_success_per_hash(tmp_path: Path) -> None:
    """Every attempt times out and half settle late: rounds of concurrent retries (a new attempt
    whenever the last one failed) never pay a hash twice, before or after a restart."""

    async def scenario() -> None:
        db_path = tmp_path / "n.sqlite"
        faults = {"timeout_rate": 1.0, "late_settle_rate": 0.5, "inflight_hold_ms": 40.0}
        sent: dict[str, int] = {}
        invoices: list[Invoice] = []
        for life in range(2):
            async with standalone(db_path, **faults) as node:
                if life == 0:
                    invoices = [node.create_merchant_invoice(AMOUNT_MSAT + i) for i in range(6)]
                for round_ in range(8):
                    seed = 100 * life + 10 * round_
                    batches = await asyncio.gather(
                        *(
                            send_all(node, inv, 20, jitter_s=0.06, seed=seed + i)
                            for i, inv in enumerate(invoices)
                        )
                    )
                    for inv, (accepted, refused) in zip(invoices, batches, strict=True):
                        sent[inv.payment_hash] = sent.get(inv.payment_hash, 0) + len(accepted)
                        assert set(refused) <= {"in_transition", "already_paid"}
                        for payment in accepted:
                            await final(node, payment)
                for inv in invoices:
                    rows = await attempts_on_disk(node, inv.payment_hash)
                    assert len(rows) == sent[inv.payment_hash]
                    assert [s for _, s in rows].count("succeeded") <= 1, rows
                    assert all(s == "failed" for _, s in rows[:-1]), rows
        assert any(n > 1 for n in sent.values()), "no hash was retried: the test proves nothing"

    run(scenario(), timeout_s=60)


def test_a_new_attempt_after_a_failure_and_each_attempts_own_truth(tmp_path: Path) -> None:
    async def scenario() -> None:
        db_path = tmp_path / "n.sqlite"
        async with standalone(db_path) as node:
            client = LocalNodeClient(node)
            invoice = node.create_merchant_invoice(AMOUNT_MSAT)
            failed_id = await client.send(invoice, 0)  # no route within limit 0
            first = await client.wait(invoice.payment_hash, 5.0, attempt_id=failed_id)
            assert (first.status, first.attempt_id) == (PaymentStatus.FAILED, failed_id)
            assert first.failure_reason == FailureReason.NO_ROUTE
            paid_id = await client.send(invoice, FEE_LIMIT_MSAT)
            assert paid_id > failed_id
            paid = await client.wait(invoice.payment_hash, 5.0, attempt_id=paid_id)
            assert (paid.status, paid.attempt_id) == (PaymentStatus.SUCCEEDED, paid_id)
            assert 0 < paid.fee_msat <= FEE_LIMIT_MSAT
            # The hash's truth is its success; each attempt keeps its own.
            assert await client.lookup(invoice.payment_hash) == paid
            assert await client.lookup(invoice.payment_hash, failed_id) == first
            assert (await client.lookup(invoice.payment_hash, paid_id + 50)).status == "unknown"
            other = node.create_merchant_invoice(AMOUNT_MSAT)
            assert (await client.lookup(other.payment_hash, failed_id)).status == "unknown"
            assert (await client.lookup(other.payment_hash)).attempt_id is None
            assert (await node.summary(invoice.payment_hash))[1] == 2
            with pytest.raises(SendRefused) as refused:
                await client.send(invoice, FEE_LIMIT_MSAT)
            assert refused.value.code == "already_paid"
        async with standalone(db_path) as node:  # the same, read back from disk
            client = LocalNodeClient(node)
            assert await client.lookup(invoice.payment_hash, failed_id) == first
            assert await client.lookup(invoice.payment_hash, paid_id) == paid
            assert await client.lookup(invoice.payment_hash) == paid
            assert (await node.summary(invoice.payment_hash))[1] == 2
            many = await client.lookup_many([invoice.payment_hash, "ab" * 32])
            assert many[invoice.payment_hash] == paid
            assert many["ab" * 32].status is PaymentStatus.UNKNOWN
            assert await node.count_attempts() == 2

    run(scenario())


def test_an_in_flight_attempt_survives_a_restart_and_blocks_new_ones(tmp_path: Path) -> None:
    async def scenario() -> None:
        db_path = tmp_path / "n.sqlite"
        faults = {"timeout_rate": 1.0, "late_settle_rate": 0.0, "inflight_hold_ms": 300.0}
        async with standalone(db_path, **faults) as node:
            invoice = node.create_merchant_invoice(AMOUNT_MSAT)
            held = await node.send(invoice, FEE_LIMIT_MSAT)
        async with standalone(db_path, **faults) as node:
            assert node.in_flight == 1
            _, refused = await send_all(node, invoice, N, jitter_s=0.0, seed=6)
            assert refused == Counter({"in_transition": N})
            still = await node.lookup(invoice.payment_hash, held.payment_index)
            assert still is not None
            assert (await final(node, still)).status is PaymentStatus.FAILED
            assert node.in_flight == 0 and node.counts["timed_out"] == 1
            retry = await node.send(invoice, FEE_LIMIT_MSAT)
            assert retry.payment_index > held.payment_index

    run(scenario())


def test_the_database_refuses_a_second_live_attempt_of_a_hash(tmp_path: Path) -> None:
    """The partial unique index: should the node ever try to record a second attempt of a hash
    that is not failed, the journal fails (fail-stop) instead of recording it."""

    async def scenario() -> None:
        async with standalone(tmp_path / "n.sqlite", latency_ms_median=5.0) as node:
            invoice = node.create_merchant_invoice(AMOUNT_MSAT)
            await node.send(invoice, FEE_LIMIT_MSAT)
            node._hashes.clear()  # a broken node: it forgot the attempt it just made
            node._cached = 0
            with pytest.raises(JournalFailed):
                await node.send(invoice, FEE_LIMIT_MSAT)
            assert node.journal.failed is not None

    run(scenario())


def test_a_database_of_one_row_per_hash_is_migrated(tmp_path: Path) -> None:
    async def scenario() -> None:
        db_path = tmp_path / "n.sqlite"
        async with aiosqlite.connect(db_path) as db:
            await db.execute(
                "CREATE TABLE node_payments (payment_hash TEXT PRIMARY KEY, payment_index INTEGER,"
                " payment_request TEXT, destination TEXT, amount_msat INTEGER,"
                " fee_limit_msat INTEGER, status TEXT, fee_msat INTEGER, failure_reason TEXT,"
                " preimage TEXT, outcome TEXT, outcome_fee_msat INTEGER, outcome_reason TEXT,"
                " timed_out INTEGER, created_ms INTEGER, resolve_at_ms INTEGER,"
                " resolved_ms INTEGER)"
            )
            await db.execute(
                "INSERT INTO node_payments VALUES ('aa', 7, 'lnbc', 'dest', 5000, 100,"
                " 'succeeded', 12, 'FAILURE_REASON_NONE', NULL, 'succeeded', 12,"
                " 'FAILURE_REASON_NONE', 0, 1, 2, 3)"
            )
            await db.commit()
        async with standalone(db_path) as node:
            found = await node.lookup("aa", 7)
            assert found is not None and found.status is PaymentStatus.SUCCEEDED
            assert (node.counts["succeeded"], node.sent_msat, node.fees_msat) == (1, 5000, 12)
            invoice = node.create_merchant_invoice(AMOUNT_MSAT)
            assert (await node.send(invoice, FEE_LIMIT_MSAT)).payment_index == 8

    run(scenario())
