"""The ledger effect of each outcome under each fix mode.

Outcomes are forced with the node's faults (rates of 0 or 1 make them deterministic):
success, a definite failure, a timeout that fails late, and a timeout that settles late.

What each mode does with the wallet's money (amount A, routing fee F, fee reserve R >= F):

             success    failure    timeout (late fail)   late settlement
    off      -(A+F)     -(A+R)     -(A+R)  504           -(A+R)  504   (the incident)
    rollback -(A+F)       0          0     504             0     504   (paid, not charged)
    on       -(A+F)       0          0     202 -> cancel  -(A+F) 202 -> confirm
"""

from __future__ import annotations

from typing import Any

import pytest
from target_harness import Api, Wallet, assert_clean, eventually, fast_config, in_process, run

AMOUNT_MSAT = 50_000
FUNDS_MSAT = 1_000_000

OUTCOME_FAULTS: dict[str, dict[str, float]] = {
    "success": {},
    "failure": {"failure_rate": 1.0},
    "timeout": {"timeout_rate": 1.0, "late_settle_rate": 0.0},
    "late_settle": {"timeout_rate": 1.0, "late_settle_rate": 1.0},
}

# mode, outcome -> (HTTP status, what the wallet is charged in the end, reconciliation tally)
# Charges: "A+F" amount + the node's fee, "A+R" amount + the whole fee reserve, "0" nothing.
EXPECTED: dict[tuple[str, str], tuple[int, str, str | None]] = {
    ("off", "success"): (200, "A+F", None),
    ("off", "failure"): (502, "A+R", "charged_not_paid"),
    ("off", "timeout"): (504, "A+R", "charged_not_paid"),
    ("off", "late_settle"): (504, "A+R", "charged_not_paid"),  # the unused fee reserve
    ("rollback", "success"): (200, "A+F", None),
    ("rollback", "failure"): (502, "0", None),
    ("rollback", "timeout"): (504, "0", None),
    ("rollback", "late_settle"): (504, "0", "paid_not_charged"),
    ("on", "success"): (200, "A+F", None),
    ("on", "failure"): (502, "0", None),
    ("on", "timeout"): (202, "0", None),
    ("on", "late_settle"): (202, "A+F", None),
}


def fee_reserve_msat(api: Api, amount_msat: int) -> int:
    assert api.state is not None
    return api.state.wallet_settings.fee_reserve_msat(amount_msat)


async def node_final(api: Api, payment_hash: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        truth = await api.node_payment(payment_hash)
        return truth if truth["status"] in ("succeeded", "failed") else None

    return await eventually(probe, timeout_s=5.0, what=f"the node's final word on {payment_hash}")


async def payout_final(api: Api, payout_id: str, wallet: Wallet) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        payout = await api.payout(payout_id, wallet)
        return payout if payout["status"] != "pending" else None

    return await eventually(probe, timeout_s=5.0, what=f"payout {payout_id} to resolve")


@pytest.mark.parametrize("outcome", list(OUTCOME_FAULTS))
@pytest.mark.parametrize("mode", ["off", "rollback", "on"])
def test_ledger_effect_of_each_outcome(tmp_path, mode, outcome):
    status, charge, mismatch = EXPECTED[(mode, outcome)]

    async def scenario() -> None:
        config = fast_config(tmp_path / "w.sqlite", fix=mode, **OUTCOME_FAULTS[outcome])
        async with in_process(config) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            reserve_msat = fee_reserve_msat(api, AMOUNT_MSAT)

            reply = await api.pay(wallet, invoice["payment_request"])
            assert reply.status == status, reply
            body = reply.body
            assert body["amount_msat"] == AMOUNT_MSAT
            assert body["payment_hash"] == invoice["payment_hash"]
            assert "Traceback" not in reply.text

            if status == 202:
                # A timeout under the saga is not a failure: the money stays held.
                assert body["status"] == "pending"
                view = await api.wallet(wallet)
                truth = await api.node_payment(invoice["payment_hash"])
                if truth["status"] == "in_flight":  # read after the wallet: held at that time
                    assert view["reserved_msat"] == AMOUNT_MSAT + reserve_msat, view
                    assert view["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - reserve_msat
                final = await payout_final(api, body["payout_id"], wallet)
            else:
                assert body["status"] == ("succeeded" if status == 200 else "failed")
                if status != 200:
                    assert body["error"] == {502: "payment_failed", 504: "payment_timeout"}[status]
                final = await api.payout(body["payout_id"], wallet)

            truth = await node_final(api, invoice["payment_hash"])
            node_paid = truth["status"] == "succeeded"
            assert node_paid == (outcome in ("success", "late_settle"))
            fee_msat = truth["fee_msat"] if node_paid else 0
            assert 0 <= fee_msat <= reserve_msat

            expected_charge = {
                "A+F": AMOUNT_MSAT + fee_msat,
                "A+R": AMOUNT_MSAT + reserve_msat,
                "0": 0,
            }[charge]
            view = await api.wallet(wallet)
            assert view == {
                "wallet_id": wallet.wallet_id,
                "balance_msat": FUNDS_MSAT - expected_charge,
                "reserved_msat": 0,
            }
            if charge == "A+F":
                assert final["status"] == "succeeded" and final["fee_msat"] == fee_msat
            else:
                assert final["status"] == "failed" and final["fee_msat"] == 0

            rec = await api.settled_reconciliation()
            assert rec["conserved"] is True
            # What left the wallet is on the books as paid out + fees, to the msat.
            spent = rec["conservation"]["paid_out_msat"] + rec["conservation"]["fees_msat"]
            assert spent == expected_charge
            for kind in ("charged_not_paid", "paid_not_charged"):
                expected_count = 1 if kind == mismatch else 0
                assert rec[kind]["count"] == expected_count, (kind, rec)
            if mismatch == "charged_not_paid":
                assert rec[mismatch]["amount_msat"] == expected_charge - (
                    AMOUNT_MSAT + fee_msat if node_paid else 0
                )
                assert rec[mismatch]["payout_ids"] == [body["payout_id"]]
            if mismatch == "paid_not_charged":
                assert rec[mismatch]["amount_msat"] == AMOUNT_MSAT + truth["fee_msat"]
            if mismatch is None:
                assert_clean(rec)

    run(scenario())


@pytest.mark.parametrize("late_settles", [True, False], ids=["late_settle", "late_fail"])
def test_saga_holds_a_timed_out_payout_until_the_node_is_final(tmp_path, late_settles):
    """Under fix on a timeout answers 202 and holds amount + fee reserve in `reserved_msat` for
    as long as the node says in flight; the resolver then confirms or cancels it exactly once."""

    async def scenario() -> None:
        config = fast_config(
            tmp_path / "w.sqlite",
            fix="on",
            timeout_rate=1.0,
            late_settle_rate=1.0 if late_settles else 0.0,
            inflight_hold_ms=600.0,
        )
        async with in_process(config) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            invoice = await api.invoice(AMOUNT_MSAT)
            held_msat = AMOUNT_MSAT + fee_reserve_msat(api, AMOUNT_MSAT)

            reply = await api.pay(wallet, invoice["payment_request"])
            assert reply.status == 202, reply
            assert reply.body["status"] == "pending"
            payout_id = reply.body["payout_id"]

            # While the node says in flight, nothing is released: check it repeatedly. The node
            # is asked last, so when it still says in flight, it did during the other reads too.
            checks_in_flight = 0
            while True:
                view = await api.wallet(wallet)
                payout = await api.payout(payout_id, wallet)
                rec = await api.reconciliation()
                truth = await api.node_payment(invoice["payment_hash"])
                if truth["status"] != "in_flight":
                    break
                checks_in_flight += 1
                assert view["reserved_msat"] == held_msat, view
                assert view["balance_msat"] == FUNDS_MSAT - held_msat, view
                assert payout["status"] == "pending", payout
                assert rec["pending"] == 1 and rec["conserved"] is True, rec
                assert rec["conservation"]["reserved_msat"] == held_msat, rec
            assert checks_in_flight >= 3, "the payment should stay in flight for a while"

            final = await payout_final(api, payout_id, wallet)
            truth = await api.node_payment(invoice["payment_hash"])
            view = await api.wallet(wallet)
            assert view["reserved_msat"] == 0
            if late_settles:
                assert truth["status"] == "succeeded"
                assert final["status"] == "succeeded" and final["fee_msat"] == truth["fee_msat"]
                assert view["balance_msat"] == FUNDS_MSAT - AMOUNT_MSAT - truth["fee_msat"]
            else:
                assert truth["status"] == "failed"
                assert final["status"] == "failed" and final["fee_msat"] == 0
                assert view["balance_msat"] == FUNDS_MSAT
            rec = await api.settled_reconciliation()
            assert_clean(rec)
            expected_counts = {
                "succeeded": 1 if late_settles else 0,
                "failed": 0 if late_settles else 1,
                "pending": 0,
            }
            assert rec["payouts"] == expected_counts
            # The resolver settled it once: exactly one finished-payout count in the metrics.
            metrics = (await api.call("GET", "/metrics")).text
            outcome = "succeeded" if late_settles else "failed"
            assert f'lnchaos_payouts_total{{outcome="{outcome}"}} 1.0' in metrics

    run(scenario())


def test_success_costs_exactly_amount_plus_fee_in_every_mode(tmp_path):
    """Several successes in a row, mode switched between them: each costs amount + its fee."""

    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="off")) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            expected = FUNDS_MSAT
            for mode in ("off", "rollback", "on", "off"):
                reply = await api.admin("PUT", "/admin/fix", {"mode": mode})
                assert reply.status == 200 and reply.body == {"mode": mode}
                invoice = await api.invoice(AMOUNT_MSAT + 1000)
                paid = await api.pay(wallet, invoice["payment_request"])
                assert paid.status == 200, paid
                truth = await api.node_payment(invoice["payment_hash"])
                assert paid.body["fee_msat"] == truth["fee_msat"] > 0
                expected -= AMOUNT_MSAT + 1000 + truth["fee_msat"]
                view = await api.wallet(wallet)
                assert view["balance_msat"] == expected and view["reserved_msat"] == 0
            assert_clean(await api.settled_reconciliation())

    run(scenario())
