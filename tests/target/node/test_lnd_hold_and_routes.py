"""LND REST routes clients of hold invoices and of multi-part payments use: AddHoldInvoice,
SettleInvoice, CancelInvoice, LookupInvoiceV2 (invoicesrpc); QueryRoutes and SendToRouteV2 with
MPP records (what a Cashu mint's multi-path melt sends); `uris` in getinfo."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path
from typing import Any

from lnd_harness import Node, b64, eventually, node_app, run, unb64


def urlsafe(payment_hash_hex: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(payment_hash_hex)).decode()


async def hold_invoice(node: Node, amount_msat: int) -> tuple[bytes, dict[str, Any]]:
    preimage = os.urandom(32)
    payment_hash = hashlib.sha256(preimage).digest()
    body = {"hash": b64(payment_hash), "value_msat": str(amount_msat), "memo": "hold"}
    status, added = await node.post("/v2/invoices/hodl", body)
    assert status == 200, added
    assert set(added) == {"payment_request", "add_index", "payment_addr"}
    return preimage, added


async def lookup_v2(node: Node, payment_hash: bytes) -> dict[str, Any]:
    query = {"payment_hash": base64.urlsafe_b64encode(payment_hash).decode()}
    status, invoice = await node.get("/v2/invoices/lookup", **query)
    assert status == 200, invoice
    return invoice


def test_hold_invoices_one_settled_one_cancelled_over_rest(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            kept, settled_one = await hold_invoice(node, 30_000)
            _, cancelled_one = await hold_invoice(node, 20_000)
            kept_hash = hashlib.sha256(kept).digest()
            for added in (settled_one, cancelled_one):
                pay = {"payment_request": added["payment_request"]}
                status, paid = await node.admin("POST", "/admin/network/pay", pay)
                assert (status, paid["state"]) == (202, "ACCEPTED"), paid
            assert (await lookup_v2(node, kept_hash))["state"] == "ACCEPTED"
            _, truth = await node.admin("GET", "/admin/network/truth")
            assert truth["received"] == {"settled": 0, "amount_msat": 0}  # held, not received
            status, _ = await node.post("/v2/invoices/settle", {"preimage": b64(kept)})
            assert status == 200
            settled = await lookup_v2(node, kept_hash)
            assert settled["state"] == "SETTLED" and settled["amt_paid_msat"] == "30000"
            status, refused = await node.post("/v2/invoices/hodl", {"value_msat": "1000"})
            assert (status, refused["code"]) == (400, 3)  # a hold invoice needs its hash
            decoded = node.node.decode(cancelled_one["payment_request"])
            cancelled_hash = bytes.fromhex(decoded.payment_hash)
            status, _ = await node.post(
                "/v2/invoices/cancel", {"payment_hash": b64(cancelled_hash)}
            )
            assert status == 200
            assert (await lookup_v2(node, cancelled_hash))["state"] == "CANCELED"
            # settling the cancelled one, or cancelling the settled one, is refused
            status, refused = await node.post(
                "/v2/invoices/cancel", {"payment_hash": b64(kept_hash)}
            )
            assert status == 400 and refused["code"] == 9, refused
            _, truth = await node.admin("GET", "/admin/network/truth")
            assert truth["received"] == {"settled": 1, "amount_msat": 30_000}

    run(scenario())


def test_getinfo_has_uris_and_the_version(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path, lnd_version="0.19") as node:
            _, info = await node.get("/v1/getinfo")
            assert info["uris"] == [f"{node.node.pubkey}@127.0.0.1:9735"]
            assert info["version"].startswith("0.19.")

    run(scenario())


async def query_route(node: Node, pub_key: str, amount_msat: int) -> dict[str, Any]:
    status, routes = await node.get(f"/v1/graph/routes/{pub_key}/0", amt_msat=str(amount_msat))
    assert status == 200, routes
    (route,) = routes["routes"]
    return route


def with_mpp(route: dict[str, Any], payment_addr: bytes, total_msat: int) -> dict[str, Any]:
    """What a Cashu mint does to a queried route before sending one part over it."""
    route["hops"][-1]["mpp_record"] = {
        "payment_addr": b64(payment_addr),
        "total_amt_msat": str(total_msat),
    }
    return route


async def send_parts(
    node: Node, merchant: dict[str, Any], amounts_msat: list[int]
) -> list[dict[str, Any]]:
    payee = node.node.merchants.pubkey
    invoice = node.node.merchants.by_hash(merchant["payment_hash"])
    assert invoice is not None
    total = sum(amounts_msat)
    parts = []
    for amount in amounts_msat:
        route = await query_route(node, payee, amount)
        body = {
            "payment_hash": b64(bytes.fromhex(merchant["payment_hash"])),
            "route": with_mpp(route, bytes.fromhex(invoice.payment_addr), total),
        }
        parts.append(node.post("/v2/router/route/send", body))
    answers = await asyncio.gather(*parts)
    assert all(status == 200 for status, _ in answers), answers
    return [attempt for _, attempt in answers]


def test_multi_part_payment_over_send_to_route_settles_as_a_whole(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path, fee_base_msat=1000, fee_ppm=1000) as node:
            payee = node.node.merchants.pubkey
            route = await query_route(node, payee, 60_000)
            assert [h["pub_key"] for h in route["hops"]][-1] == payee
            assert route["total_fees_msat"] == str(1000 + 60)  # the nominal fee
            assert route["total_amt_msat"] == str(60_000 + 1060)
            merchant = await node.merchant_invoice(100_000)
            attempts = await send_parts(node, merchant, [60_000, 40_000])
            assert [a["status"] for a in attempts] == ["SUCCEEDED", "SUCCEEDED"]
            preimages = {unb64(a["preimage"]) for a in attempts}
            assert len(preimages) == 1
            assert hashlib.sha256(preimages.pop()).hexdigest() == merchant["payment_hash"]
            assert len({a["attempt_id"] for a in attempts}) == 2
            # the truth: one payment of the whole amount, its fee the parts' route fees
            truth = await node.node.lookup(merchant["payment_hash"])
            assert truth is not None and truth.status.value == "succeeded"
            assert truth.amount_msat == 100_000 and truth.fee_msat == (1000 + 60) + (1000 + 40)
            track = f"/v2/router/track/{urlsafe(merchant['payment_hash'])}"
            status, tracked, ended = await node.stream("GET", track)
            assert status == 200 and ended and tracked[-1]["result"]["status"] == "SUCCEEDED"
            # the same hash again: refused before any part goes out (LND: code 2, docs/lnd.md)
            status, refused = await node.post(
                "/v2/router/route/send",
                {
                    "payment_hash": b64(bytes.fromhex(merchant["payment_hash"])),
                    "route": await query_route(node, payee, 100_000),
                },
            )
            assert (status, refused["code"], refused["message"]) == (
                409,
                6,
                "invoice is already paid",
            )

    run(scenario())


def test_query_routes_posted_with_a_fee_limit_as_cashu_mints_do(tmp_path: Path) -> None:
    """Nutshell's multi-path melt: POST /v1/graph/routes/{pub_key}/{amt_sat} with
    `{"fee_limit": {"fixed_msat"}, "use_mission_control": true}` (LND's additional binding)."""

    async def scenario() -> None:
        async with node_app(tmp=tmp_path, fee_base_msat=1000, fee_ppm=1000) as node:
            payee = node.node.merchants.pubkey
            path = f"/v1/graph/routes/{payee}/50"  # 50 sat: the nominal fee is 1050 msat
            for fixed_msat, found in (("1050", True), ("1049", False)):
                body = {"fee_limit": {"fixed_msat": fixed_msat}, "use_mission_control": True}
                status, answer = await node.post(path, body)
                if found:
                    assert status == 200, answer
                    (route,) = answer["routes"]
                    assert route["total_fees_msat"] == "1050"
                    assert route["hops"][-1]["amt_to_forward_msat"] == "50000"
                else:
                    assert (status, answer["message"]) == (
                        404,
                        "unable to find a path to destination",
                    )
            status, refused = await node.post(path, {"no_such_field": 1})
            assert (status, refused["code"]) == (400, 3)

    run(scenario())


def test_multi_part_parts_fail_as_a_whole_and_incomplete_sets_time_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path / "fail", failure_rate=1.0) as node:
            merchant = await node.merchant_invoice(50_000)
            attempts = await send_parts(node, merchant, [20_000, 30_000])
            assert [a["status"] for a in attempts] == ["FAILED", "FAILED"]
            assert {a["failure"]["code"] for a in attempts} == {"TEMPORARY_CHANNEL_FAILURE"}
            truth = await node.node.lookup(merchant["payment_hash"])
            assert truth is not None and truth.status.value == "failed"
            assert node.node.sent_msat == 0
        async with node_app(tmp=tmp_path / "timeout") as node:
            node.service.multipart.timeout_s = 0.3
            merchant = await node.merchant_invoice(50_000)
            invoice = node.node.merchants.by_hash(merchant["payment_hash"])
            assert invoice is not None
            route = await query_route(node, node.node.merchants.pubkey, 20_000)
            body = {
                "payment_hash": b64(bytes.fromhex(merchant["payment_hash"])),
                "route": with_mpp(route, bytes.fromhex(invoice.payment_addr), 50_000),
            }
            part = asyncio.ensure_future(node.post("/v2/router/route/send", body))  # 20k of 50k
            # while the payee holds the part, the payment is in flight, as LND shows it
            await eventually(lambda: node.node.lookup(merchant["payment_hash"]), 2.0, "a part")
            track = f"/v2/router/track/{urlsafe(merchant['payment_hash'])}"
            status, lines, _ = await node.stream("GET", track, patience_s=0.1)
            assert status == 200 and lines[0]["result"]["status"] == "IN_FLIGHT", lines
            status, attempt = await part
            assert status == 200 and attempt["status"] == "FAILED"
            assert attempt["failure"]["code"] == "MPP_TIMEOUT"
            truth = await node.node.lookup(merchant["payment_hash"])
            assert truth is not None and truth.status.value == "failed"  # nothing paid
            assert truth.failure_reason.value == "FAILURE_REASON_TIMEOUT"
            assert node.node.sent_msat == 0
            # a part with the wrong payment secret is failed by the payee, nothing sent
            body["route"]["hops"][-1]["mpp_record"]["payment_addr"] = b64(bytes(32))
            status, attempt = await node.post("/v2/router/route/send", body)
            assert attempt["failure"]["code"] == "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
            # a part whose total is not the invoice's is failed and leaves no set behind
            body["route"]["hops"][-1]["mpp_record"] = {
                "payment_addr": b64(bytes.fromhex(invoice.payment_addr)),
                "total_amt_msat": "40000",
            }
            status, attempt = await node.post("/v2/router/route/send", body)
            assert attempt["failure"]["code"] == "INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS"
            assert node.service.multipart._sets == {}
            status, refused = await node.get(f"/v1/graph/routes/{'02' + '11' * 32}/10")
            assert (status, refused["message"]) == (404, "unable to find a path to destination")

    run(scenario())


def test_a_single_invoice_stream_sends_the_settle_that_came_as_its_state_went_out(
    tmp_path: Path,
) -> None:
    """SubscribeSingleInvoice sends the invoice's state now, then each change until final. An
    invoice settled while its first message was going out (the stream paused at that message)
    must still send SETTLED: the stream once looked at the live invoice after the pause, saw it
    final and ended, and its subscriber never learnt of the settle (1 run in 20 over gRPC)."""

    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            preimage, added = await hold_invoice(node, 30_000)
            pay = {"payment_request": added["payment_request"]}
            status, paid = await node.admin("POST", "/admin/network/pay", pay)
            assert (status, paid["state"]) == (202, "ACCEPTED"), paid
            payment_hash = hashlib.sha256(preimage).hexdigest()
            stream = await node.service.subscribe_single_invoice(payment_hash, lambda: True)
            try:
                first = await asyncio.wait_for(anext(stream), 5)
                assert first["state"] == "ACCEPTED"
                await node.node.receiver.settle(preimage)  # while the stream is paused
                second = await asyncio.wait_for(anext(stream), 5)
                assert second["state"] == "SETTLED"
                assert await asyncio.wait_for(anext(stream, None), 5) is None  # final: it ends
            finally:
                await stream.aclose()

    run(scenario())
