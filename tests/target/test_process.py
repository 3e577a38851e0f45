"""The target as a real process (`python -m target ...`): the incident reproduced by hand from the
command line, a clean stop on SIGTERM/SIGINT, and recovery after a SIGKILL mid-payout."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import bolt11
import pytest
from target_harness import (
    Api,
    Reply,
    TargetProcess,
    Wallet,
    assert_clean,
    client,
    eventually,
    run,
    target_args,
)

from target.config import WalletSettings

N = 12
AMOUNT_MSAT = 40_000
FUNDS_MSAT = 5_000_000
FEE_RESERVE_MSAT = WalletSettings().fee_reserve_msat(AMOUNT_MSAT)
FAST = {
    "node_timeout_ms": 100,
    "resolver_interval_ms": 20,
    "latency_ms_median": 1,
    "failure_rate": 0.0,
    "reconcile_interval_s": 0.5,
}


async def node_quiet_reconciliation(api: Api, timeout_s: float = 10.0) -> dict[str, Any]:
    """Reconciliation once the node has nothing in flight and no payout is pending."""
    return await api.settled_reconciliation(timeout_s=timeout_s)


@pytest.mark.parametrize(
    ("fix", "late_settle_rate", "status", "mismatch"),
    [
        ("off", 0.0, 504, "charged_not_paid"),
        ("on", 0.0, 202, None),
        ("rollback", 1.0, 504, "paid_not_charged"),
    ],
)
def test_the_incident_by_hand(spawn, tmp_path, fix, late_settle_rate, status, mismatch):
    """Every payment times out (`--timeout-rate 1.0`): off keeps N charges the node failed,
    rollback refunds N payments the node later settled, on resolves all N and reports nothing."""
    args = target_args(
        tmp_path / "w.sqlite",
        fix=fix,
        timeout_rate=1.0,
        late_settle_rate=late_settle_rate,
        inflight_hold_ms=400,
        **FAST,
    )
    process = spawn(args)
    url = process.wait_listening()

    async def scenario() -> dict[str, Any]:
        async with client(url) as api:
            health = await api.call("GET", "/health")
            assert health.body == {"status": "ok", "fix": fix}
            faults = (await api.admin("GET", "/admin/faults")).body
            assert faults["timeout_rate"] == 1.0 and faults["late_settle_rate"] == late_settle_rate
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoices = [await api.invoice(AMOUNT_MSAT) for _ in range(N)]
            replies = await asyncio.gather(
                *(api.pay(wallet, inv["payment_request"]) for inv in invoices)
            )
            assert [r.status for r in replies] == [status] * N, replies

            rec = await node_quiet_reconciliation(api)
            truths = [await api.node_payment(inv["payment_hash"]) for inv in invoices]
            node_status = "succeeded" if late_settle_rate == 1.0 else "failed"
            assert [t["status"] for t in truths] == [node_status] * N
            payouts = [await api.payout(r.body["payout_id"], wallet) for r in replies]
            view = await api.wallet(wallet)
            assert view["reserved_msat"] == 0
            assert rec["conserved"] is True
            assert rec["stuck_pending"]["count"] == 0 and rec["pending"] == 0

            if fix == "off":
                # N debited payouts the node says failed.
                assert [p["status"] for p in payouts] == ["failed"] * N
                assert view["balance_msat"] == FUNDS_MSAT - N * (AMOUNT_MSAT + FEE_RESERVE_MSAT)
                assert rec["charged_not_paid"]["count"] == N
                assert rec["charged_not_paid"]["amount_msat"] == N * (
                    AMOUNT_MSAT + FEE_RESERVE_MSAT
                )
                assert rec["paid_not_charged"]["count"] == 0
            elif fix == "rollback":
                # N refunds of payments the node settled after all.
                assert [p["status"] for p in payouts] == ["failed"] * N
                assert view["balance_msat"] == FUNDS_MSAT
                assert rec["paid_not_charged"]["count"] == N
                paid = sum(AMOUNT_MSAT + t["fee_msat"] for t in truths)
                assert rec["paid_not_charged"]["amount_msat"] == paid
                assert rec["charged_not_paid"]["count"] == 0
            else:
                assert [p["status"] for p in payouts] == ["failed"] * N
                assert view["balance_msat"] == FUNDS_MSAT
                assert_clean(rec)
            assert rec["payouts"] == {"succeeded": 0, "failed": N, "pending": 0}
            assert rec["node"]["in_flight"] == 0 and rec["node"][node_status] == N
            assert mismatch is None or rec[mismatch]["count"] == N
            return rec

    run(scenario())
    assert "Traceback" not in process.output(), process.output()


async def pay_quietly(api: Api, wallet: Wallet, payment_request: str) -> Reply | None:
    """A payout whose connection may be cut by a crash: None when it got no answer."""
    try:
        return await api.pay(wallet, payment_request)
    except (TimeoutError, aiohttp.ClientError):
        return None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_stops_the_target_within_5s(spawn, tmp_path, sig):
    """Exit code 0 within 5 s, no process of the group left, even with a payout waiting on the
    node; the payout's money is not lost (after a restart it is still held, pending)."""
    db = tmp_path / "w.sqlite"
    args = target_args(
        db, fix="on", timeout_rate=1.0, inflight_hold_ms=20_000, node_timeout_ms=10_000
    )
    args.remove("--admin-token")
    args.remove(target_args(db, fix="on")[-1])  # the admin token's value: let it generate one
    process = spawn(args)
    url = process.wait_listening()
    token_lines = [
        line for line in process.log_text().splitlines() if line.startswith("admin token: ")
    ]
    assert len(token_lines) == 1, process.output()
    admin_token = token_lines[0].removeprefix("admin token: ").strip()

    async def scenario() -> float:
        async with client(url, admin_token) as api:
            assert (
                await api.call("GET", "/admin/fix", headers={"X-Admin-Token": "x"})
            ).status == 401
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            request = asyncio.create_task(pay_quietly(api, wallet, invoice["payment_request"]))

            async def in_flight() -> bool:
                return (await api.reconciliation())["node"]["in_flight"] == 1

            await eventually(in_flight, timeout_s=5.0, what="the payment to be in flight")
            assert not request.done(), "the payout request should still be waiting on the node"
            started = time.monotonic()
            process.signal(sig)
            loop = asyncio.get_running_loop()
            code = await loop.run_in_executor(None, process.wait, 6.0)
            stopped_s = time.monotonic() - started
            await asyncio.wait_for(request, timeout=5.0)
            assert code == 0, process.output()
            return stopped_s

    stopped_s = run(scenario())
    assert stopped_s < 5.0, f"stopped after {stopped_s:.1f}s"
    wait_s = 3.0
    deadline = time.monotonic() + wait_s
    while process.group_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not process.group_alive(), "a process of the target's group is still running"
    assert "Traceback" not in process.output(), process.output()

    restarted = spawn(target_args(db, fix="on", inflight_hold_ms=20_000))
    url = restarted.wait_listening()

    async def after_restart() -> None:
        async with client(url) as api:
            rec = await api.reconciliation()
            assert rec["conserved"] is True, rec
            assert rec["pending"] == 1 and rec["node"]["in_flight"] == 1, rec
            held = rec["conservation"]["reserved_msat"]
            assert held == AMOUNT_MSAT + FEE_RESERVE_MSAT, rec

    run(after_restart())


Plan = list[tuple[Wallet, dict[str, Any]]]


async def load_then_kill(
    process: TargetProcess, *, expected_status: int, wallets_n: int = 4, per_wallet: int = 15
) -> tuple[list[Wallet], Plan, dict[str, int]]:
    """A steady stream of payouts from a few wallets; SIGKILL the target once 10 have answered,
    with more still waiting. Returns the wallets, which wallet paid which invoice, and counts."""
    url = process.wait_listening()
    async with client(url) as api:
        wallets = [await api.new_wallet(FUNDS_MSAT) for _ in range(wallets_n)]
        plan = [
            (wallet, await api.invoice(AMOUNT_MSAT + 1000 * i))
            for i in range(per_wallet)
            for wallet in wallets
        ]
        answered: list[Reply] = []

        async def pay(index: int, wallet: Wallet, invoice: dict[str, Any]) -> None:
            await asyncio.sleep(index * 0.01)  # a steady stream, not one burst
            reply = await pay_quietly(api, wallet, invoice["payment_request"])
            if reply is not None:
                answered.append(reply)

        tasks = [
            asyncio.create_task(pay(i, wallet, invoice)) for i, (wallet, invoice) in enumerate(plan)
        ]

        async def enough_answered() -> bool:
            return len(answered) >= 10

        await eventually(enough_answered, timeout_s=10.0, what="10 answered payouts")
        process.signal(signal.SIGKILL)  # mid-stream
        killed_at = {"answered": len(answered), "waiting": sum(1 for t in tasks if not t.done())}
        await asyncio.get_running_loop().run_in_executor(None, process.wait, 5.0)
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=20.0)
    assert process.returncode == -signal.SIGKILL
    assert {r.status for r in answered} == {expected_status}, answered
    return wallets, plan, killed_at


def test_sigkill_mid_payout_then_restart_converges(spawn, tmp_path):
    """Under fix on, payouts reserved and in flight when the target is SIGKILLed: after a restart
    on the same --db everything resolves against the node's truth, nothing stays pending, every
    wallet is charged exactly what the node paid for it, and the money is conserved."""
    db = tmp_path / "w.sqlite"
    args = target_args(
        db,
        fix="on",
        seed=5,
        timeout_rate=1.0,
        late_settle_rate=0.5,
        inflight_hold_ms=1200,
        node_timeout_ms=150,
        resolver_interval_ms=20,
        latency_ms_median=1,
    )
    first = spawn(args)
    wallets, plan, killed_at = run(load_then_kill(first, expected_status=202))
    assert killed_at["answered"] >= 10 and killed_at["waiting"] > 0, killed_at

    second = spawn(args)
    url = second.wait_listening()

    async def converge() -> dict[str, Any]:
        async with client(url) as api:

            async def converged() -> dict[str, Any] | None:
                rec = await api.reconciliation()
                done = (
                    rec["pending"] == 0
                    and rec["awaiting_node"] == 0
                    and rec["node"]["in_flight"] == 0
                    and rec["stuck_pending"]["count"] == 0
                    and rec["charged_not_paid"]["count"] == 0
                    and rec["paid_not_charged"]["count"] == 0
                    and rec["conserved"] is True
                )
                return rec if done else None

            rec = await eventually(converged, timeout_s=15.0, what="convergence after SIGKILL")
            assert_clean(rec)
            # Each wallet, from the node's truth alone: charged amount + fee for what it paid.
            charged: dict[str, int] = {w.wallet_id: 0 for w in wallets}
            paid = 0
            for wallet, invoice in plan:
                truth = await api.node_payment(invoice["payment_hash"])
                assert truth["status"] in ("succeeded", "failed", "unknown"), truth
                if truth["status"] == "succeeded":
                    charged[wallet.wallet_id] += invoice_amount(invoice) + truth["fee_msat"]
                    paid += 1
            for wallet in wallets:
                view = await api.wallet(wallet)
                assert view["reserved_msat"] == 0, view
                assert view["balance_msat"] == FUNDS_MSAT - charged[wallet.wallet_id], view
            assert rec["payouts"]["succeeded"] == paid
            assert rec["payouts"]["pending"] == 0
            return rec

    rec = run(converge())
    assert rec["payouts"]["succeeded"] + rec["payouts"]["failed"] >= killed_at["answered"]
    for process in (first, second):
        assert "Traceback" not in process.output(), process.output()


def invoice_amount(invoice: dict[str, Any]) -> int:
    """The amount of an invoice from the plan (its payment request encodes it)."""
    return int(bolt11.decode(invoice["payment_request"]).amount_msat)


@pytest.mark.parametrize("fix", ["off", "rollback"])
def test_sigkill_under_the_charge_first_flows_closes_every_payout(spawn, tmp_path, fix):
    """After a SIGKILL the payouts that never answered are closed as their flow would have closed
    them (off keeps the charge, rollback gives it back): nothing pending, money conserved."""
    db = tmp_path / "w.sqlite"
    args = target_args(
        db, fix=fix, seed=9, timeout_rate=1.0, late_settle_rate=0.5, inflight_hold_ms=600,
        node_timeout_ms=150, resolver_interval_ms=20, latency_ms_median=1,
    )  # fmt: skip
    first = spawn(args)
    wallets, plan, killed_at = run(load_then_kill(first, expected_status=504))
    assert killed_at["waiting"] > 0, killed_at
    second = spawn(args)
    url = second.wait_listening()

    async def converge() -> None:
        async with client(url) as api:
            rec = await api.settled_reconciliation(timeout_s=15.0)
            assert rec["conserved"] is True and rec["stuck_pending"]["count"] == 0, rec
            payouts_n = rec["payouts"]["failed"]
            assert payouts_n >= killed_at["answered"] and rec["payouts"]["succeeded"] == 0
            node_paid = 0
            for _, invoice in plan:
                node_paid += (await api.node_payment(invoice["payment_hash"]))["status"] == (
                    "succeeded"
                )
            views = [await api.wallet(wallet) for wallet in wallets]
            assert all(view["reserved_msat"] == 0 for view in views), views
            if fix == "rollback":
                assert all(view["balance_msat"] == FUNDS_MSAT for view in views), views
                assert rec["paid_not_charged"]["count"] == node_paid
                assert rec["charged_not_paid"]["count"] == 0
            else:  # every payout keeps amount + fee reserve; the reserve is more than any fee
                assert rec["charged_not_paid"]["count"] == payouts_n
                spent = sum(FUNDS_MSAT - view["balance_msat"] for view in views)
                assert (
                    spent == rec["conservation"]["paid_out_msat"] + rec["conservation"]["fees_msat"]
                )
                assert rec["paid_not_charged"]["count"] == 0

    run(converge())
    for process in (first, second):
        assert "Traceback" not in process.output(), process.output()
