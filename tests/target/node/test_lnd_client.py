"""The wallet's LND REST node client (`--node-url`): careful under HTTP faults, and a target using
it against a `lnchaos node` process pays and reconciles correctly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from lnd_harness import ADMIN_TOKEN, eventually, node_app, run, server_process

from target.node.client import SendRefused
from target.node.lnd_client import LndRestNodeClient
from target.node.network import PaymentStatus


def test_client_under_http_faults_never_loses_or_invents_a_payment(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(
            tmp=tmp_path,
            seed=99,
            timeout_rate=0.3,
            late_settle_rate=0.5,
            inflight_hold_ms=200.0,
            http_error_rate=0.15,
            http_reset_rate=0.1,
            http_stall_rate=0.1,
            http_stall_ms=80.0,
            http_fault_after_rate=0.5,
        ) as node:
            client = LndRestNodeClient(
                node.url, "00", request_timeout_s=2.0, first_update_timeout_s=0.3, attempts=6
            )
            try:
                hashes = []
                attempts: dict[str, int] = {}
                for i in range(30):
                    merchant = await node.merchant_invoice(10_000 + i)
                    invoice = await client.decode(merchant["payment_request"])
                    assert invoice.payment_hash == merchant["payment_hash"]
                    assert invoice.amount_msat == 10_000 + i
                    attempt_id = await client.send(invoice, 5000)
                    # careful: send returned, so the node has the payment, as that attempt
                    real = await node.node.lookup(invoice.payment_hash)
                    assert real is not None and real.payment_index == attempt_id
                    hashes.append(invoice.payment_hash)
                    attempts[invoice.payment_hash] = attempt_id
                for payment_hash in hashes:
                    truth = await client.wait(payment_hash, 5.0, attempt_id=attempts[payment_hash])
                    real = await node.node.lookup(payment_hash)
                    assert real is not None and truth.final, truth
                    assert (truth.status, truth.amount_msat, truth.fee_msat, truth.attempt_id) == (
                        real.status,
                        real.amount_msat,
                        real.fee_msat,
                        real.payment_index,
                    )
                    assert truth.fee_msat <= 5000
                assert await node.node.count_attempts() == len(hashes)  # one attempt per send
                many = await client.lookup_many([*hashes, "cd" * 32])
                assert many["cd" * 32].status is PaymentStatus.UNKNOWN
                for payment_hash in hashes:
                    assert many[payment_hash].status == (await client.lookup(payment_hash)).status
                succeeded = next(h for h in hashes if many[h].status is PaymentStatus.SUCCEEDED)
                again = await client.decode((await node.node.lookup(succeeded)).payment_request)
                with pytest.raises(SendRefused) as refused:
                    for _ in range(10):  # a fault may hide the refusal; the refusal is certain
                        await client.send(again, 5000)
                assert refused.value.code == "already_paid"
                faults = node.service.http_faults.counts
                assert sum(v for k, v in faults.items() if k.endswith("_after")) > 0
            finally:
                await client.close()

    run(scenario(), timeout_s=60)


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, **headers: str
) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def test_target_with_node_url_pays_and_reconciles(tmp_path: Path) -> None:
    node = server_process(
        "lnchaos.cli",
        [
            "node", "--port", "0", "--admin-token", ADMIN_TOKEN, "--seed", "4",
            "--db", str(tmp_path / "node.sqlite"), "--latency-ms-median", "1",
            "--timeout-rate", "0.3", "--late-settle-rate", "0.5", "--inflight-hold-ms", "300",
            "--http-error-rate", "0.1", "--http-reset-rate", "0.05",
        ],
        tmp_path / "node.log",
    )  # fmt: skip
    with node.start(start_timeout_s=30):
        target = server_process(
            "target",
            [
                "--port", "0", "--admin-token", "t", "--fix", "on", "--seed", "4",
                "--db", str(tmp_path / "wallet.sqlite"), "--node-url", node.url,
                "--macaroon", "abcdef", "--node-timeout-ms", "100",
                "--resolver-interval-ms", "20", "--reconcile-interval-s", "60",
            ],
            tmp_path / "target.log",
        )  # fmt: skip
        with target.start(start_timeout_s=30):
            run(_pay_and_reconcile(target.url, node.url), timeout_s=60)


async def _pay_and_reconcile(target_url: str, node_url: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        status, wallet = await call(
            http, "POST", target_url + "/api/wallets", {"balance_msat": 10**9}
        )
        assert status == 201
        key = {"X-Api-Key": wallet["api_key"]}
        payouts = []
        for i in range(12):
            # the target forwards /node/invoices to the node it pays through
            status, invoice = await call(
                http, "POST", target_url + "/node/invoices", {"amount_msat": 50_000 + i}
            )
            assert status == 201, invoice
            status, answer = await call(
                http,
                "POST",
                f"{target_url}/api/wallets/{wallet['wallet_id']}/payouts",
                {"payment_request": invoice["payment_request"]},
                **key,
            )
            assert status in (200, 202, 502), answer
            payouts.append(answer)
        admin = {"X-Admin-Token": "t"}

        async def settled() -> dict[str, Any] | None:
            _, rec = await call(http, "GET", target_url + "/admin/reconciliation", **admin)
            return rec if rec["pending"] == 0 and rec.get("awaiting_node", 0) == 0 else None

        rec = await eventually(settled, 20, "every payout to resolve")
        assert rec["charged_not_paid"]["count"] == 0 and rec["paid_not_charged"]["count"] == 0
        assert rec["conserved"], rec
        _, truth = await call(
            http, "GET", node_url + "/admin/network/truth", **{"X-Admin-Token": ADMIN_TOKEN}
        )
        spent_msat = 0
        for payout in payouts:
            status, final = await call(
                http, "GET", f"{target_url}/api/payouts/{payout['payout_id']}", **key
            )
            assert status == 200 and final["status"] in ("succeeded", "failed")
            _, real = await call(http, "GET", f"{node_url}/node/payments/{final['payment_hash']}")
            assert real["status"] == final["status"], (final, real)
            if final["status"] == "succeeded":
                assert final["fee_msat"] == real["fee_msat"]
                spent_msat += final["amount_msat"] + final["fee_msat"]
        assert truth["sent"]["amount_msat"] + truth["sent"]["fees_msat"] == spent_msat
        _, view = await call(http, "GET", f"{target_url}/api/wallets/{wallet['wallet_id']}", **key)
        assert view["balance_msat"] == 10**9 - spent_msat and view["reserved_msat"] == 0
        assert 0 < truth["sent"]["succeeded"] <= 12
        # every network route of the target is the node's own answer, passed on
        hashes = {"payment_hashes": [p["payment_hash"] for p in payouts if "payment_hash" in p]}
        assert hashes["payment_hashes"]
        lookups = [
            await call(http, "POST", base + "/node/payments/lookup", hashes)
            for base in (target_url, node_url)
        ]
        assert lookups[0] == lookups[1] and lookups[0][0] == 200, lookups
        one = hashes["payment_hashes"][0]
        gets = [
            await call(http, "GET", f"{base}/node/payments/{one}")
            for base in (target_url, node_url)
        ]
        assert gets[0] == gets[1] and gets[0][0] == 200, gets
        # what the node does not serve stays the target's own JSON 404
        status, body = await call(http, "GET", target_url + "/node/nothing-here")
        assert (status, body["error"]) == (404, "not_found")
