"""Attempts through the node's HTTP faces: LND REST (SendPaymentV2, TrackPaymentV2, ListPayments),
the REST node client's attempt ids, and `GET /node/payments/{hash}`."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from lnd_harness import Node, node_app, run

from target.node.lnd_client import SUPERSEDED, LndRestNodeClient
from target.node.network import PaymentStatus

N = 20


def urlsafe(payment_hash: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(payment_hash)).decode()


async def send_stream(node: Node, body: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """POST /v2/router/send and read its whole stream (each line parsed)."""
    async with node.http.post(node.url + "/v2/router/send", json=body, headers=node.headers()) as r:
        lines = []
        while raw := await asyncio.wait_for(r.content.readline(), 5.0):
            lines.append(json.loads(raw))
        return r.status, lines


def test_concurrent_router_sends_of_one_invoice_pay_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path, latency_ms_median=30.0) as node:
            merchant = await node.merchant_invoice(70_000)
            body = {"payment_request": merchant["payment_request"], "fee_limit_msat": "5000"}
            answers = await asyncio.gather(*(send_stream(node, body) for _ in range(N)))
            accepted = [lines for status, lines in answers if status == 200]
            refused = [lines for status, lines in answers if status != 200]
            assert len(accepted) == 1, answers
            assert all(status == 409 for status, _ in answers if status != 200)
            assert all(lines[0]["error"]["code"] == 6 for lines in refused)
            results = [line["result"] for line in accepted[0]]
            assert results[-1]["status"] == "SUCCEEDED"
            assert len({r["payment_index"] for r in results}) == 1  # one attempt, one index
            index = int(results[0]["payment_index"])
            real = await node.node.lookup(merchant["payment_hash"], index)
            assert real is not None and real.status is PaymentStatus.SUCCEEDED
            assert await node.node.count_attempts() == 1
            _, truth = await node.admin("GET", f"/node/payments/{merchant['payment_hash']}")
            assert (truth["attempt_id"], truth["attempts"], truth["status"]) == (
                index,
                1,
                "succeeded",
            )
            assert truth["fee_msat"] == int(results[-1]["fee_msat"])

    run(scenario())


def test_concurrent_router_sends_under_timeouts_never_pay_twice(tmp_path: Path) -> None:
    """Every attempt times out and half settle late; rounds of concurrent sends of a few
    invoices (a new attempt whenever the last failed): at most one success per hash."""

    async def scenario() -> None:
        faults = {"timeout_rate": 1.0, "late_settle_rate": 0.5, "inflight_hold_ms": 40.0}
        async with node_app(tmp=tmp_path, seed=23, **faults) as node:
            merchants = [await node.merchant_invoice(20_000 + i) for i in range(4)]
            accepted: dict[str, list[int]] = {m["payment_hash"]: [] for m in merchants}
            for _ in range(6):
                bodies = [
                    {"payment_request": m["payment_request"], "fee_limit_msat": "5000"}
                    for m in merchants
                    for _ in range(N // 4)
                ]
                answers = await asyncio.gather(*(send_stream(node, b) for b in bodies))
                for status, lines in answers:
                    if status == 200:
                        result = lines[-1]["result"]
                        assert result["status"] in ("SUCCEEDED", "FAILED"), lines
                        accepted[result["payment_hash"]].append(int(result["payment_index"]))
                    else:
                        assert (status, lines[0]["error"]["code"]) == (409, 6)
            for payment_hash, indexes in accepted.items():
                finals = [await node.node.lookup(payment_hash, i) for i in indexes]
                statuses = [p.status for p in finals if p is not None]
                assert len(statuses) == len(indexes) == len(set(indexes))
                assert statuses.count(PaymentStatus.SUCCEEDED) <= 1, statuses
                _, truth = await node.admin("GET", f"/node/payments/{payment_hash}")
                assert truth["attempts"] == len(indexes)
            assert any(len(i) > 1 for i in accepted.values()), "nothing retried: proves nothing"
            assert await node.node.count_attempts() == sum(len(i) for i in accepted.values())

    run(scenario())


def test_rest_client_attempt_ids_and_each_attempts_truth(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            client = LndRestNodeClient(node.url, "00", request_timeout_s=2.0)
            try:
                merchant = await node.merchant_invoice(30_000)
                payment_hash = merchant["payment_hash"]
                invoice = await client.decode(merchant["payment_request"])
                failed_id = await client.send(invoice, 0)  # no route within limit 0
                first = await client.wait(payment_hash, 5.0, attempt_id=failed_id)
                assert (first.status, first.attempt_id) == (PaymentStatus.FAILED, failed_id)
                assert first.failure_reason == "FAILURE_REASON_NO_ROUTE"
                # The hash's truth is its failed attempt; a new attempt is allowed.
                assert (await client.lookup(payment_hash)).attempt_id == failed_id
                paid_id = await client.send(invoice, 5000)
                assert paid_id > failed_id
                paid = await client.wait(payment_hash, 5.0, attempt_id=paid_id)
                assert (paid.status, paid.attempt_id) == (PaymentStatus.SUCCEEDED, paid_id)
                real = await node.node.lookup(payment_hash, paid_id)
                assert real is not None and paid.fee_msat == real.fee_msat > 0
                # Track shows the newest attempt only: the older one, superseded, failed.
                older = await client.lookup(payment_hash, failed_id)
                assert (older.status, older.attempt_id) == (PaymentStatus.FAILED, failed_id)
                assert older.failure_reason == SUPERSEDED
                assert await client.lookup(payment_hash, paid_id) == paid
                assert await client.lookup(payment_hash) == paid
                unknown = await client.lookup(payment_hash, paid_id + 10)
                assert unknown.status is PaymentStatus.UNKNOWN
                assert (await client.wait(payment_hash, 1.0)).attempt_id == paid_id
                many = await client.lookup_many([payment_hash])
                assert many[payment_hash].attempt_id == paid_id
                # A fresh client (no memory of earlier answers) reads the same from the node.
                fresh = LndRestNodeClient(node.url, "00", request_timeout_s=2.0)
                try:
                    assert await fresh.lookup(payment_hash, paid_id) == paid
                    old = await fresh.wait(payment_hash, 1.0, attempt_id=failed_id)
                    assert old.status is PaymentStatus.FAILED
                    many = await fresh.lookup_many([payment_hash])
                    assert many[payment_hash] == paid
                finally:
                    await fresh.close()
                # ListPayments lists the hash once, as its newest attempt (as LND does).
                _, listed = await node.get("/v1/payments", include_incomplete="true")
                rows = [p for p in listed["payments"] if p["payment_hash"] == payment_hash]
                assert [p["payment_index"] for p in rows] == [str(paid_id)]
                _, lines, _ = await node.stream("GET", f"/v2/router/track/{urlsafe(payment_hash)}")
                assert [line["result"]["payment_index"] for line in lines] == [str(paid_id)]
                _, truth = await node.admin("GET", f"/node/payments/{payment_hash}")
                assert (truth["attempt_id"], truth["attempts"]) == (paid_id, 2)
                assert await node.node.count_attempts() == 2
            finally:
                await client.close()

    run(scenario())


def test_node_payment_route_answers_unknown_with_no_attempts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            status, truth = await node.admin("GET", f"/node/payments/{'ef' * 32}")
            assert status == 200
            assert truth == {
                "payment_hash": "ef" * 32,
                "status": "unknown",
                "amount_msat": 0,
                "fee_msat": 0,
                "failure_reason": "FAILURE_REASON_NONE",
                "attempt_id": None,
                "attempts": 0,
                "timed_out": False,
                "held_ms": None,
                "answer_lost": False,
            }

    run(scenario())
