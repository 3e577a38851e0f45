"""Fail-stop, never ahead of the disk: a change the journal cannot queue is not applied; a failed
commit stops the target (exit 74) and nothing is answered from memory; reads show committed state
only; the resolver is bounded per pass and every node call has a timeout."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from target_harness import (
    Api,
    assert_clean,
    client,
    eventually,
    fast_config,
    in_process,
    run,
    target_args,
)

from target.common.journal import Journal, JournalFailed
from target.common.server import EXIT_JOURNAL_FAILED, FAIL_STOP
from target.ledger import reserved_account, wallet_account
from target.node.client import NodeClient, PaymentTruth
from target.node.invoices import Invoice

AMOUNT_MSAT = 40_000
FUNDS_MSAT = 2_000_000


class HeldJournal:
    """The journal's writer held before its next commit until `release` is set: what a slow
    disk looks like from the event loop. (Injected by the test; the product has no such hook.)"""

    def __init__(self, journal: Journal):
        self.journal = journal
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self._commit = journal._commit

    async def _held_commit(self, writes: list[Any]) -> None:
        self.held.set()
        await self.release.wait()
        await self._commit(writes)

    def __enter__(self) -> HeldJournal:
        self.journal._commit = self._held_commit  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.journal._commit = self._commit  # type: ignore[method-assign]


def db_row(db: Path, query: str, params: Sequence[Any] = ()) -> Any:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(query, params).fetchone()
    finally:
        conn.close()


def test_reads_show_committed_state_while_a_commit_is_held(tmp_path):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            assert api.state is not None
            ledger = api.state.ledger
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            with HeldJournal(ledger.journal) as hold:
                paying = asyncio.create_task(api.pay(wallet, invoice["payment_request"]))
                await asyncio.wait_for(hold.held.wait(), timeout=5)
                await eventually(lambda: asyncio.sleep(0, ledger.pending), what="a reservation")
                (payout_id,) = ledger.pending
                # Reserved in memory (the next payout is checked against it), not on disk yet.
                assert ledger.balance(reserved_account(wallet.wallet_id)) > 0
                assert await api.wallet(wallet) == {
                    "wallet_id": wallet.wallet_id,
                    "balance_msat": FUNDS_MSAT,
                    "reserved_msat": 0,
                }
                unseen = await api.call(
                    "GET", f"/api/payouts/{payout_id}", headers={"X-Api-Key": wallet.api_key}
                )
                assert unseen.status == 404, unseen
                assert not paying.done()
            paid = await asyncio.wait_for(paying, timeout=5)
            assert paid.status == 200, paid
            shown = await api.payout(payout_id, wallet)
            assert shown["status"] == "succeeded"
            view = await api.wallet(wallet)
            assert view["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - shown["fee_msat"]
            assert view["reserved_msat"] == 0

    run(scenario())


def test_a_full_journal_queue_refuses_the_payout_and_applies_nothing(tmp_path):
    async def scenario() -> None:
        config = fast_config(tmp_path / "w.sqlite", fix="on")
        config.journal_queue_max = 2
        async with in_process(config) as api:
            assert api.state is not None
            ledger = api.state.ledger
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            wallets_before = len(ledger.api_keys)
            with HeldJournal(ledger.journal) as hold:
                busy = [ledger.journal.write([])]  # the writer takes it and is held
                await asyncio.wait_for(hold.held.wait(), timeout=5)
                busy += [ledger.journal.write([]) for _ in range(2)]  # the queue is full
                refused = await api.pay(wallet, invoice["payment_request"])
                assert (refused.status, refused.error) == (503, "journal_busy"), refused
                assert ledger.balance(wallet_account(wallet.wallet_id)) == FUNDS_MSAT
                assert ledger.balance(reserved_account(wallet.wallet_id)) == 0
                assert not ledger.pending
                no_wallet = await api.call("POST", "/api/wallets", json_body={"balance_msat": 1})
                assert (no_wallet.status, no_wallet.error) == (503, "journal_busy"), no_wallet
                assert len(ledger.api_keys) == wallets_before
            await asyncio.wait_for(asyncio.gather(*busy), timeout=5)
            truth = await api.node_payment(invoice["payment_hash"])
            assert truth["status"] == "unknown", "a refused payout never reaches the node"
            # Nothing of the refused payout is left behind: not its money, not its claim.
            paid = await api.pay(wallet, invoice["payment_request"])
            assert paid.status == 200, paid
            rec = await api.settled_reconciliation()
            assert rec["payouts"] == {"succeeded": 1, "failed": 0, "pending": 0}, rec
            assert_clean(rec)

    run(scenario())


def test_a_failed_commit_stops_the_target_and_nothing_answers_from_memory(tmp_path):
    async def scenario() -> None:
        db = tmp_path / "w.sqlite"
        async with in_process(fast_config(db, fix="on"), check_conserved=False) as api:
            assert api.state is not None and api.app is not None
            journal = api.state.ledger.journal
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)

            async def failing_commit(writes: list[Any]) -> None:
                raise sqlite3.OperationalError("disk I/O error")

            journal._commit = failing_commit  # type: ignore[method-assign]
            reply = await api.pay(wallet, invoice["payment_request"])
            assert (reply.status, reply.error) == (503, "journal_failed"), reply
            fail_stop = api.app[FAIL_STOP]
            assert fail_stop.stopping and fail_stop.exit_code == EXIT_JOURNAL_FAILED
            for path in (f"/api/wallets/{wallet.wallet_id}", "/health", "/admin/reconciliation"):
                headers = {"X-Api-Key": wallet.api_key, "X-Admin-Token": api.admin_token}
                answer = await api.call("GET", path, headers=headers)
                assert (answer.status, answer.error) == (503, "journal_failed"), (path, answer)
            # The payout whose reservation failed is still pending in memory (ahead of the disk):
            # a resolver pass, run here rather than waited for, must not send it.
            assert await api.state.payouts.resolve_pending() == 0
            # and the send itself refuses, whoever asks for it (here the recovery of that payout)
            (pending,) = api.state.ledger.pending.values()
            with pytest.raises(JournalFailed, match="not sent"):
                await api.state.payouts._resolve_one(pending)
            truth = await api.state.node_client.lookup(invoice["payment_hash"])
            assert truth.status == "unknown", "nothing is sent after a failed reservation"
        balance = db_row(db, "SELECT balance_msat FROM accounts WHERE account_id = ?",
                         (wallet_account(wallet.wallet_id),))  # fmt: skip
        assert balance == (FUNDS_MSAT,)
        assert db_row(db, "SELECT COUNT(*) FROM payouts") == (0,)

    run(scenario())


def test_a_journal_failure_stops_the_target_process_with_exit_74(spawn, tmp_path):
    """A real process whose database another process keeps locked past the writer's busy
    timeout (5 s): the commit fails, the payout is not answered as made, the process exits 74,
    and the disk shows nothing of it."""
    db = tmp_path / "w.sqlite"
    process = spawn(target_args(db, fix="on", node_timeout_ms=100, latency_ms_median=1))
    url = process.wait_listening()

    async def scenario() -> tuple[Any, str]:
        async with client(url) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            lock = sqlite3.connect(db, isolation_level=None)
            try:
                lock.execute("BEGIN IMMEDIATE")  # holds every other writer off
                try:
                    reply = await api.pay(wallet, invoice["payment_request"])
                    outcome = (reply.status, reply.error)
                except Exception as err:  # the stopping server may drop the connection
                    outcome = ("dropped", type(err).__name__)
                loop = asyncio.get_running_loop()
                code = await loop.run_in_executor(None, process.wait, 15.0)
            finally:
                lock.rollback()
                lock.close()
            return (outcome, code), wallet.wallet_id

    (outcome, code), wallet_id = run(scenario(), timeout_s=40)
    assert code == EXIT_JOURNAL_FAILED, process.output()
    # Never a success: a clear 503, or no answer at all from a server that is stopping.
    assert outcome == (503, "journal_failed") or outcome[0] == "dropped", outcome
    assert "journal failed" in process.output(), process.output()
    balance = db_row(
        db, "SELECT balance_msat FROM accounts WHERE account_id = ?", (wallet_account(wallet_id),)
    )
    assert balance == (FUNDS_MSAT,)
    assert db_row(db, "SELECT COUNT(*) FROM payouts") == (0,)


class StubbornNode:
    """The real node, except that asking about the hashes in `hang` never returns."""

    def __init__(self, inner: NodeClient):
        self.inner = inner
        self.hang: set[str] = set()
        self.asked: list[str] = []

    async def decode(self, payment_request: str) -> Invoice:
        return await self.inner.decode(payment_request)

    async def send(self, invoice: Invoice, fee_limit_msat: int) -> int:
        return await self.inner.send(invoice, fee_limit_msat)

    async def _maybe_hang(self, payment_hash: str) -> None:
        self.asked.append(payment_hash)
        if payment_hash in self.hang:
            await asyncio.Event().wait()

    async def wait(
        self, payment_hash: str, timeout_s: float, attempt_id: int | None = None
    ) -> PaymentTruth:
        await self._maybe_hang(payment_hash)
        return await self.inner.wait(payment_hash, timeout_s, attempt_id=attempt_id)

    async def lookup(self, payment_hash: str, attempt_id: int | None = None) -> PaymentTruth:
        await self._maybe_hang(payment_hash)
        return await self.inner.lookup(payment_hash, attempt_id=attempt_id)

    async def close(self) -> None:
        await self.inner.close()


async def pending_payouts(api: Api, n: int, **faults: Any) -> tuple[Any, list[dict[str, Any]]]:
    wallet = await api.new_wallet(FUNDS_MSAT)
    invoices = []
    for _ in range(n):  # one after another: oldest first is their order
        invoice = await api.invoice(AMOUNT_MSAT)
        reply = await api.pay(wallet, invoice["payment_request"])
        assert reply.status == 202, reply
        invoices.append(invoice)
    return wallet, invoices


def slow_resolver_config(tmp_path: Path, **faults: Any) -> Any:
    config = fast_config(tmp_path / "w.sqlite", fix="on", timeout_rate=1.0, **faults)
    config.wallet.resolver_interval_ms = 600_000  # the test runs the passes itself
    return config


def test_a_hanging_node_costs_the_resolver_one_timeout_and_settles_nothing(tmp_path):
    async def scenario() -> None:
        config = slow_resolver_config(tmp_path, inflight_hold_ms=30_000)
        async with in_process(config) as api:
            assert api.state is not None
            service = api.state.payouts
            wallet, invoices = await pending_payouts(api, 6)
            stub = StubbornNode(service.node)
            stub.hang = {invoice["payment_hash"] for invoice in invoices}
            service.node = stub
            service.node_call_timeout_s = 0.2
            service.resolver_pass_max_s = 0.3
            service.resolver_concurrency = 1
            before = await api.wallet(wallet)
            started = time.monotonic()
            settled = await asyncio.wait_for(service.resolve_pending(), timeout=5)
            elapsed_s = time.monotonic() - started
            # One node call at a time, each given up after 0.2 s, none started past the 0.3 s
            # bound: two calls (one on a slow machine), oldest first, not all six (1.2 s).
            assert settled == 0
            hashes = [invoice["payment_hash"] for invoice in invoices]
            assert stub.asked in (hashes[:1], hashes[:2]), stub.asked
            assert 0.2 <= elapsed_s < 1.0, elapsed_s
            # A node that did not answer is an unknown outcome, never a failure.
            assert len(api.state.ledger.pending) == 6
            assert await api.wallet(wallet) == before

    run(scenario())


def test_a_slow_node_call_starves_no_other_payout_and_a_pass_is_bounded_in_count(tmp_path):
    async def scenario() -> None:
        config = slow_resolver_config(tmp_path, late_settle_rate=1.0, inflight_hold_ms=200)
        async with in_process(config) as api:
            assert api.state is not None
            service = api.state.payouts
            ledger = api.state.ledger
            wallet, invoices = await pending_payouts(api, 6)

            async def all_settled_at_node() -> bool:
                statuses = [(await api.node_payment(i["payment_hash"]))["status"] for i in invoices]
                return all(s == "succeeded" for s in statuses)

            await eventually(all_settled_at_node, what="the node to settle all six")
            stub = StubbornNode(service.node)
            stub.hang = {invoices[0]["payment_hash"]}  # the oldest one hangs
            service.node = stub
            service.node_call_timeout_s = 0.3
            service.resolver_pass_max_payouts = 4

            def pending_hashes() -> set[str]:
                return {p.payment_hash for p in ledger.pending.values()}

            hashes = [invoice["payment_hash"] for invoice in invoices]
            run_pass: Callable[[], Awaitable[int]] = service.resolve_pending
            assert await asyncio.wait_for(run_pass(), timeout=5) == 3  # 4 oldest, 1 hangs
            assert pending_hashes() == {hashes[0], hashes[4], hashes[5]}
            assert await asyncio.wait_for(run_pass(), timeout=5) == 2
            assert pending_hashes() == {hashes[0]}
            stub.hang.clear()
            assert await asyncio.wait_for(run_pass(), timeout=5) == 1
            assert not ledger.pending
            assert_clean(await api.settled_reconciliation())

    run(scenario())
