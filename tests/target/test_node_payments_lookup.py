"""POST /node/payments/lookup: the node's truth of many payment hashes in one request (the
suite's checks batch their node reads with it). It answers exactly the records
GET /node/payments/{hash} answers, in the order asked, is bounded, and refuses bad input with
a 4xx JSON error."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from target_harness import Api, fast_config, in_process, run

from target.node.network_http import LOOKUP_MAX_HASHES

FUNDS_MSAT = 1_000_000
PATH = "/node/payments/lookup"


def some_hash(i: int) -> str:
    return hashlib.sha256(f"never an invoice {i}".encode()).hexdigest()


async def lookup(api: Api, body: Any) -> Any:
    return await api.call("POST", PATH, json_body=body)


def test_lookup_answers_the_same_records_as_the_get(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite")) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            paid = []
            for amount_msat in (10_000, 20_000):
                invoice = await api.invoice(amount_msat)
                reply = await api.pay(wallet, invoice["payment_request"])
                assert reply.status == 200, reply
                paid.append(invoice["payment_hash"])
            unpaid = (await api.invoice(30_000))["payment_hash"]
            failing = await api.admin("PUT", "/admin/faults", {"failure_rate": 1.0})
            assert failing.status == 200, failing
            failed_invoice = await api.invoice(40_000)
            reply = await api.pay(wallet, failed_invoice["payment_request"])
            assert reply.status == 502, reply
            asked = [paid[0], unpaid, failed_invoice["payment_hash"], paid[1].upper(), paid[0]]
            reply = await lookup(api, {"payment_hashes": asked})
            assert reply.status == 200, reply
            records = reply.body["payments"]
            expected = [await api.node_payment(h.lower()) for h in asked]
            assert records == expected
            statuses = [r["status"] for r in records]
            assert statuses == ["succeeded", "unknown", "failed", "succeeded", "succeeded"]
            assert records[0]["fee_msat"] == expected[0]["fee_msat"]

    run(scenario())


def test_lookup_is_bounded_and_refuses_bad_input(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite")) as api:
            full = [some_hash(i) for i in range(LOOKUP_MAX_HASHES)]
            reply = await lookup(api, {"payment_hashes": full})
            assert reply.status == 200, reply
            assert [r["payment_hash"] for r in reply.body["payments"]] == full
            assert {r["status"] for r in reply.body["payments"]} == {"unknown"}
            bad: list[tuple[Any, str]] = [
                ({"payment_hashes": [*full, some_hash(-1)]}, "invalid_payment_hashes"),
                ({"payment_hashes": []}, "invalid_payment_hashes"),
                ({}, "invalid_payment_hashes"),
                ({"payment_hashes": some_hash(0)}, "invalid_payment_hashes"),
                ({"payment_hashes": {"a": some_hash(0)}}, "invalid_payment_hashes"),
                ({"payment_hashes": [some_hash(0), "xyz"]}, "invalid_payment_hash"),
                ({"payment_hashes": [some_hash(0)[:63]]}, "invalid_payment_hash"),
                ({"payment_hashes": [7]}, "invalid_payment_hash"),
                ({"payment_hashes": [None]}, "invalid_payment_hash"),
                ([some_hash(0)], None),
            ]
            for body, code in bad:
                reply = await lookup(api, body)
                assert reply.status == 400, (body, reply)
                assert reply.content_type == "application/json", reply
                assert code is None or reply.error == code, (body, reply)
                assert "Traceback" not in reply.text
            reply = await api.call("POST", PATH, data=b"{")
            assert reply.status == 400 and reply.error == "malformed_json", reply
            big = {"payment_hashes": ["a" * 64] * 1000}
            reply = await lookup(api, big)
            assert 400 <= reply.status < 500 and reply.content_type == "application/json"

    run(scenario())


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_lookup_is_post_only(tmp_path: Path, method: str) -> None:
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite")) as api:
            reply = await api.call(method, PATH)
            assert 400 <= reply.status < 500, reply
            assert reply.status != 200

    run(scenario())
