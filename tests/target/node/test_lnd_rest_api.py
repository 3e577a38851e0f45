"""Every LND REST endpoint of the node mock, driven with a plain HTTP client; field names and
encodings as in lnrpc/lightning.swagger.json and lnrpc/routerrpc/router.swagger.json."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from pathlib import Path

import aiohttp
import bolt11
from lnd_harness import MACAROON, Node, b64, eventually, node_app, run, unb64

SYNC_VERSION = "0.20"  # the newest LND with SendPaymentSync (removed in 0.21)
INT64 = re.compile(r"^-?[0-9]+$")


def is_i64(value: object) -> bool:
    return isinstance(value, str) and bool(INT64.match(value))


def urlsafe(payment_hash_hex: str) -> str:
    return base64.urlsafe_b64encode(bytes.fromhex(payment_hash_hex)).decode()


async def add_invoice(node: Node, **body: object) -> dict:
    status, answer = await node.post("/v1/invoices", {"value_msat": "250000", **body})
    assert status == 200, answer
    return answer


def test_getinfo_and_channel_balance(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            status, info = await node.get("/v1/getinfo")
            assert status == 200
            assert re.fullmatch(r"0[23][0-9a-f]{64}", info["identity_pubkey"])
            assert info["chains"] == [{"chain": "bitcoin", "network": "regtest"}]
            assert isinstance(info["block_height"], int) and is_i64(info["best_header_timestamp"])
            assert info["synced_to_chain"] is True and info["num_active_channels"] == 1
            status, balance = await node.get("/v1/balance/channels")
            assert status == 200
            for key in ("local_balance", "remote_balance", "unsettled_local_balance"):
                assert set(balance[key]) == {"sat", "msat"}
                assert is_i64(balance[key]["sat"]) and is_i64(balance[key]["msat"])
            assert is_i64(balance["balance"])
            local_before = int(balance["local_balance"]["msat"])
            invoice = await add_invoice(node, value_msat="70000")
            status, _ = await node.admin(
                "POST", "/admin/network/pay", {"payment_request": invoice["payment_request"]}
            )
            assert status == 200
            _, balance = await node.get("/v1/balance/channels")
            assert int(balance["local_balance"]["msat"]) == local_before + 70_000

    run(scenario())


def test_macaroon_header(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path, macaroon_hex="abcd") as node:
            for macaroon, expected in ((None, 401), ("zz", 401), ("abce", 401), ("ABCD", 200)):
                headers = {"Grpc-Metadata-macaroon": macaroon} if macaroon else {}
                async with node.http.get(node.url + "/v1/getinfo", headers=headers) as resp:
                    body = await resp.json()
                    assert resp.status == expected, (macaroon, body)
                    if expected == 401:
                        assert body["code"] == 16 and body["details"] == []
                        assert isinstance(body["message"], str)

    run(scenario())


def test_add_invoice_is_real_bolt11_with_that_hash(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            _, info = await node.get("/v1/getinfo")
            preimage = bytes(range(32))
            description_hash = hashlib.sha256(b"a long description").digest()
            answer = await add_invoice(
                node,
                r_preimage=b64(preimage),
                description_hash=b64(description_hash),
                expiry="600",
                private=True,
            )
            assert set(answer) >= {"r_hash", "payment_request", "add_index", "payment_addr"}
            r_hash = unb64(answer["r_hash"])
            assert r_hash == hashlib.sha256(preimage).digest()
            assert is_i64(answer["add_index"]) and len(unb64(answer["payment_addr"])) == 32
            decoded = bolt11.decode(answer["payment_request"])
            assert decoded.payment_hash == r_hash.hex()
            assert decoded.payee == info["identity_pubkey"]
            assert int(decoded.amount_msat) == 250_000
            assert decoded.description_hash == description_hash.hex()
            assert decoded.expiry == 600
            # value (sat) works too, and the next invoice gets the next add_index
            second = await add_invoice(node, value_msat=None, value="3", memo="m")
            assert int(second["add_index"]) == int(answer["add_index"]) + 1
            assert int(bolt11.decode(second["payment_request"]).amount_msat) == 3000
            # a hash that exists already is refused
            status, body = await node.post(
                "/v1/invoices", {"value_msat": "1000", "r_preimage": b64(preimage)}
            )
            assert status == 409 and body["code"] == 6

    run(scenario())


def test_invoice_paid_from_the_network_is_settled_on_subscribe_and_lookup(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            headers = node.headers()
            async with node.http.get(node.url + "/v1/invoices/subscribe", headers=headers) as sub:
                assert sub.status == 200
                invoice = await add_invoice(node, memo="fund the wallet")
                r_hash_hex = unb64(invoice["r_hash"]).hex()
                status, lookup = await node.get(f"/v1/invoice/{r_hash_hex}")
                assert status == 200 and lookup["state"] == "OPEN" and lookup["settled"] is False
                status, paid = await node.admin(
                    "POST", "/admin/network/pay", {"payment_request": invoice["payment_request"]}
                )
                assert status == 200 and paid["state"] == "SETTLED", paid
                updates = []
                while len(updates) < 2:
                    line = await asyncio.wait_for(sub.content.readline(), 5)
                    updates.append(json.loads(line)["result"])
            assert [u["state"] for u in updates] == ["OPEN", "SETTLED"]
            settled = updates[1]
            assert settled["r_hash"] == invoice["r_hash"] and settled["settled"] is True
            assert settled["amt_paid_msat"] == "250000" and settled["amt_paid_sat"] == "250"
            assert is_i64(settled["settle_index"]) and int(settled["settle_index"]) >= 1
            assert hashlib.sha256(unb64(settled["r_preimage"])).digest().hex() == r_hash_hex
            status, lookup = await node.get(f"/v1/invoice/{r_hash_hex}")
            assert lookup["state"] == "SETTLED" and lookup["value_msat"] == "250000"
            assert lookup["memo"] == "fund the wallet" and is_i64(lookup["settle_date"])
            # a second payment of the same invoice is refused; the truth counts one
            status, body = await node.admin(
                "POST", "/admin/network/pay", {"payment_request": invoice["payment_request"]}
            )
            assert status == 409, body
            _, truth = await node.admin("GET", "/admin/network/truth")
            assert truth["received"] == {"settled": 1, "amount_msat": 250_000}
            # a later subscriber asks for the backlog: adds after add_index, settles after
            # settle_index (0: none, as in LND)
            second = await add_invoice(node, value_msat="1000")
            await node.admin(
                "POST", "/admin/network/pay", {"payment_request": second["payment_request"]}
            )
            for query in ("settle_index=1", "add_index=1"):
                status, lines, _ = await node.stream(
                    "GET", f"/v1/invoices/subscribe?{query}", patience_s=0.2
                )
                assert status == 200
                assert [(x["result"]["r_hash"], x["result"]["state"]) for x in lines] == [
                    (second["r_hash"], "SETTLED")
                ], query
            status, lines, _ = await node.stream("GET", "/v1/invoices/subscribe", patience_s=0.1)
            assert status == 200 and lines == []
            status, missing = await node.get("/v1/invoice/" + "00" * 32)
            assert status == 404 and missing["code"] == 5

    run(scenario())


def test_hold_invoice_is_accepted_then_settled(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            preimage = b"\x07" * 32
            r_hash = hashlib.sha256(preimage).digest()
            invoice = await add_invoice(node, r_hash=b64(r_hash))
            assert unb64(invoice["r_hash"]) == r_hash
            status, paid = await node.admin(
                "POST", "/admin/network/pay", {"payment_request": invoice["payment_request"]}
            )
            assert status == 202 and paid["state"] == "ACCEPTED"
            _, lookup = await node.get(f"/v1/invoice/{r_hash.hex()}")
            assert lookup["state"] == "ACCEPTED" and lookup["r_preimage"] == ""
            status, _ = await node.post("/v2/invoices/settle", {"preimage": b64(preimage)})
            assert status == 200
            _, lookup = await node.get(f"/v1/invoice/{r_hash.hex()}")
            assert lookup["state"] == "SETTLED" and unb64(lookup["r_preimage"]) == preimage
            other = await add_invoice(node, value_msat="1000")
            status, _ = await node.post("/v2/invoices/cancel", {"payment_hash": other["r_hash"]})
            assert status == 200
            _, lookup = await node.get(f"/v1/invoice/{unb64(other['r_hash']).hex()}")
            assert lookup["state"] == "CANCELED"

    run(scenario())


def test_payreq_decodes_an_invoice(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            merchant = await node.merchant_invoice(123_000)
            status, req = await node.get(f"/v1/payreq/{merchant['payment_request']}")
            assert status == 200, req
            assert req["payment_hash"] == merchant["payment_hash"]
            assert req["num_msat"] == "123000" and req["num_satoshis"] == "123"
            assert re.fullmatch(r"0[23][0-9a-f]{64}", req["destination"])
            assert is_i64(req["timestamp"]) and is_i64(req["expiry"]) and is_i64(req["cltv_expiry"])
            assert len(unb64(req["payment_addr"])) == 32
            status, bad = await node.get("/v1/payreq/lnbcrt1notaninvoice")
            assert status == 400 and bad["code"] == 3 and bad["details"] == []

    run(scenario())


def test_send_streams_in_flight_then_succeeded_with_preimage_and_fee(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path, latency_ms_median=20.0) as node:
            merchant = await node.merchant_invoice(1_000_000)
            body = {
                "payment_request": merchant["payment_request"],
                "fee_limit_msat": "10000",
                "timeout_seconds": 60,
            }
            status, lines, ended = await node.stream("POST", "/v2/router/send", body)
            assert status == 200 and ended
            results = [line["result"] for line in lines]
            assert [r["status"] for r in results] == ["IN_FLIGHT", "SUCCEEDED"]
            final = results[-1]
            assert final["payment_hash"] == merchant["payment_hash"]
            preimage = bytes.fromhex(final["payment_preimage"])
            assert hashlib.sha256(preimage).hexdigest() == merchant["payment_hash"]
            assert results[0]["payment_preimage"] == "0" * 64
            fee_msat = int(final["fee_msat"])
            assert 0 < fee_msat <= 10_000 and final["fee_sat"] == str(fee_msat // 1000)
            assert final["value_msat"] == "1000000" and final["value_sat"] == "1000"
            assert final["failure_reason"] == "FAILURE_REASON_NONE"
            assert is_i64(final["payment_index"]) and is_i64(final["creation_time_ns"])
            assert final["htlcs"][0]["status"] == "SUCCEEDED"
            assert unb64(final["htlcs"][0]["preimage"]) == preimage
            truth = await node.node.lookup(merchant["payment_hash"])
            assert truth is not None and truth.fee_msat == fee_msat
            # no_inflight_updates: only the final update
            other = await node.merchant_invoice(5_000)
            body = {**body, "payment_request": other["payment_request"]}
            status, lines, _ = await node.stream(
                "POST", "/v2/router/send", {**body, "no_inflight_updates": True}
            )
            assert [line["result"]["status"] for line in lines] == ["SUCCEEDED"]

    run(scenario())


def test_timed_out_payment_stays_in_flight_then_final_on_track(tmp_path: Path) -> None:
    async def scenario() -> None:
        faults = {"timeout_rate": 1.0, "inflight_hold_ms": 600.0}
        for late_settle_rate, final_status, reason in (
            (1.0, "SUCCEEDED", "FAILURE_REASON_NONE"),
            (0.0, "FAILED", "FAILURE_REASON_TIMEOUT"),
        ):
            async with node_app(
                tmp=tmp_path / final_status, late_settle_rate=late_settle_rate, **faults
            ) as node:
                merchant = await node.merchant_invoice(40_000)
                body = {"payment_request": merchant["payment_request"], "fee_limit_msat": "5000"}
                # a caller with 0.2 s of patience sees only IN_FLIGHT
                status, lines, ended = await node.stream(
                    "POST", "/v2/router/send", body, patience_s=0.2
                )
                assert status == 200 and not ended
                assert [line["result"]["status"] for line in lines] == ["IN_FLIGHT"]
                path = f"/v2/router/track/{urlsafe(merchant['payment_hash'])}"
                status, lines, ended = await node.stream("GET", path, patience_s=5.0)
                assert status == 200 and ended
                statuses = [line["result"]["status"] for line in lines]
                assert statuses[-1] == final_status and set(statuses[:-1]) <= {"IN_FLIGHT"}
                assert lines[-1]["result"]["failure_reason"] == reason
                # once final, track answers the final state alone (hex path accepted too)
                status, lines, ended = await node.stream(
                    "GET", f"/v2/router/track/{merchant['payment_hash']}"
                )
                assert [line["result"]["status"] for line in lines] == [final_status]

    run(scenario())


def test_duplicate_send_is_refused_as_lnd_refuses_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path, timeout_rate=1.0, late_settle_rate=1.0) as node:
            merchant = await node.merchant_invoice(10_000)
            body = {"payment_request": merchant["payment_request"], "fee_limit_msat": "5000"}
            status, lines, _ = await node.stream("POST", "/v2/router/send", body, patience_s=0.1)
            assert status == 200 and lines[0]["result"]["status"] == "IN_FLIGHT"
            async with node.http.post(
                node.url + "/v2/router/send", json=body, headers=node.headers()
            ) as resp:
                refused = await resp.json()
                assert resp.status == 409
            assert refused == {
                "error": {"code": 6, "message": "payment is in transition", "details": []}
            }
            path = f"/v2/router/track/{urlsafe(merchant['payment_hash'])}"
            _, lines, _ = await node.stream("GET", path, patience_s=5.0)
            assert lines[-1]["result"]["status"] == "SUCCEEDED"
            async with node.http.post(
                node.url + "/v2/router/send", json=body, headers=node.headers()
            ) as resp:
                refused = await resp.json()
                assert resp.status == 409
            assert refused["error"]["code"] == 6
            assert refused["error"]["message"] == "invoice is already paid"
            _, listed = await node.get("/v1/payments", include_incomplete="true")
            assert [p["payment_hash"] for p in listed["payments"]] == [merchant["payment_hash"]]

    run(scenario())


def test_fee_limit_is_respected(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path, fee_base_msat=1000, fee_ppm=10_000) as node:
            for fee_limit in ("0", "1000", "1500", "2500", "3000", "6000"):
                merchant = await node.merchant_invoice(100_000)
                # nominal fee 2000 msat, up to half again with the route found
                body = {"payment_request": merchant["payment_request"], "fee_limit_msat": fee_limit}
                if fee_limit == "0":
                    body.pop("fee_limit_msat")  # LND's default: zero-fee routes only
                _, lines, _ = await node.stream("POST", "/v2/router/send", body)
                final = lines[-1]["result"]
                if final["status"] == "SUCCEEDED":
                    assert 2000 <= int(final["fee_msat"]) <= int(fee_limit)
                else:
                    assert final["failure_reason"] == "FAILURE_REASON_NO_ROUTE"
                    assert int(fee_limit) < 3000
            merchant = await node.merchant_invoice(100_000)
            body = {"payment_request": merchant["payment_request"], "fee_limit_sat": "6"}
            _, lines, _ = await node.stream("POST", "/v2/router/send", body)
            assert int(lines[-1]["result"]["fee_msat"]) <= 6000
            bad = {**body, "fee_limit_msat": "1000"}
            async with node.http.post(
                node.url + "/v2/router/send", json=bad, headers=node.headers()
            ) as resp:
                assert resp.status == 400 and (await resp.json())["error"]["code"] == 3

    run(scenario())


def test_track_unknown_payment_and_bad_hash(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            async with node.http.get(
                node.url + f"/v2/router/track/{urlsafe('ab' * 32)}", headers=node.headers()
            ) as resp:
                assert resp.status == 404
                body = await resp.json()
            assert body["error"]["code"] == 5 and body["error"]["message"]
            async with node.http.get(
                node.url + "/v2/router/track/not-a-hash", headers=node.headers()
            ) as resp:
                assert resp.status == 400 and (await resp.json())["error"]["code"] == 3

    run(scenario())


def test_list_payments_pages_like_lnd(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            hashes = []
            for amount in (1000, 2000, 3000, 4000):
                merchant = await node.merchant_invoice(amount)
                body = {"payment_request": merchant["payment_request"], "fee_limit_msat": "9000"}
                await node.stream("POST", "/v2/router/send", body)
                hashes.append(merchant["payment_hash"])
            foreign = await node.merchant_invoice(5000)
            # a payment that fails (fee limit 0): listed only with include_incomplete
            await node.stream(
                "POST", "/v2/router/send", {"payment_request": foreign["payment_request"]}
            )
            _, all_ok = await node.get("/v1/payments")
            assert [p["payment_hash"] for p in all_ok["payments"]] == hashes
            _, everything = await node.get("/v1/payments", include_incomplete="true")
            assert len(everything["payments"]) == 5
            assert everything["payments"][-1]["status"] == "FAILED"
            _, page = await node.get("/v1/payments", max_payments="2", index_offset="1")
            assert [p["payment_hash"] for p in page["payments"]] == hashes[1:3]
            assert page["first_index_offset"] == "2" and page["last_index_offset"] == "3"
            _, back = await node.get(
                "/v1/payments", max_payments="2", reversed="true", count_total_payments="true"
            )
            assert [p["payment_hash"] for p in back["payments"]] == hashes[2:4]
            assert back["total_num_payments"] == "4"

    run(scenario())


def test_bad_input_is_an_lnd_shaped_4xx(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            cases = [
                ("/v1/invoices", b"{not json"),
                ("/v1/invoices", b"[]"),
                ("/v1/invoices", json.dumps({"value_msat": "1000", "bogus": 1}).encode()),
                ("/v1/invoices", json.dumps({"value": "1", "value_msat": "1000"}).encode()),
                ("/v1/invoices", json.dumps({"value_msat": "abc"}).encode()),
                ("/v1/invoices", json.dumps({"value_msat": "1000", "r_hash": "!!"}).encode()),
                ("/v1/invoices", json.dumps({"value_msat": "0"}).encode()),
                ("/v2/router/send", json.dumps({"fee_limit_msat": "1"}).encode()),
                ("/v2/router/send", json.dumps({"payment_request": "lnbc1xyz"}).encode()),
            ]
            for path, raw in cases:
                async with node.http.post(
                    node.url + path, data=raw, headers=node.headers()
                ) as resp:
                    body = await resp.json()
                    assert 400 <= resp.status < 500, (path, raw, resp.status, body)
                    status = body.get("error", body)
                    assert status["code"] == 3 and status["details"] == [], body
            status, body = await node.get("/v1/invoice/xyz")
            assert status == 400 and body["code"] == 3
            status, body = await node.get("/v1/payments", max_payments="-1")
            assert status == 400 and body["code"] == 3
            status, body = await node.admin("POST", "/admin/network/pay", {"payment_request": 1})
            assert status == 400 and body["error"] == "invalid_field"
            merchant = await node.merchant_invoice(1000)
            status, body = await node.admin(
                "POST", "/admin/network/pay", {"payment_request": merchant["payment_request"]}
            )
            assert status == 404 and body["error"] == "not_our_invoice"
            async with node.http.post(node.url + "/admin/network/pay", json={}) as resp:
                assert resp.status == 401

    run(scenario())


def test_subscription_ends_when_the_node_stops(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path) as node:
            resp = await node.http.get(node.url + "/v1/invoices/subscribe", headers=node.headers())
            assert resp.status == 200

            async def subscribed() -> bool | None:
                return True if node.node.receiver._subscribers else None

            await eventually(subscribed, 5, "the subscription")
        # the node app is gone: the stream ended rather than hanging
        try:
            rest = await asyncio.wait_for(resp.content.read(), 5)
        except (aiohttp.ClientError, RuntimeError):
            rest = b""
        assert rest == b""
        resp.release()

    run(scenario())


__all__ = ["MACAROON"]


def test_a_restarted_node_never_reissues_a_payment_hash(tmp_path: Path) -> None:
    async def scenario() -> None:
        seen: set[str] = set()
        for _ in range(3):  # the same database, started three times
            async with node_app(tmp=tmp_path) as node:
                merchant = await node.merchant_invoice(1000)
                own = await add_invoice(node)
                for payment_hash in (merchant["payment_hash"], unb64(own["r_hash"]).hex()):
                    assert payment_hash not in seen
                    seen.add(payment_hash)

    run(scenario())


def test_send_payment_sync_answers_once_final_with_preimage_and_route(tmp_path: Path) -> None:
    """POST /v1/channels/transactions (SendPaymentSync, the legacy send older LNbits uses):
    one answer once the payment is final; success carries the preimage and the route with the
    node's fee, a failure or a refusal only `payment_error` and the hash, all with HTTP 200."""

    async def scenario() -> None:
        async with node_app(
            tmp=tmp_path, fee_base_msat=1000, fee_ppm=10_000, lnd_version=SYNC_VERSION
        ) as node:
            merchant = await node.merchant_invoice(100_000)  # nominal fee 2000 msat, up to 3000
            body = {"payment_request": merchant["payment_request"], "fee_limit": {"fixed": "3"}}
            status, paid = await node.post("/v1/channels/transactions", body)
            assert status == 200, paid
            assert paid["payment_error"] == ""
            assert unb64(paid["payment_hash"]).hex() == merchant["payment_hash"]
            preimage = unb64(paid["payment_preimage"])
            assert hashlib.sha256(preimage).hexdigest() == merchant["payment_hash"]
            truth = await node.node.lookup(merchant["payment_hash"])
            assert truth is not None and truth.status.value == "succeeded"
            route = paid["payment_route"]
            assert route["total_fees_msat"] == str(truth.fee_msat) and 2000 <= truth.fee_msat
            assert route["total_amt_msat"] == str(100_000 + truth.fee_msat)
            assert route["total_fees"] == str(truth.fee_msat // 1000)
            # the same hash again: refused as an answer, as LND answers it
            status, again = await node.post("/v1/channels/transactions", body)
            assert status == 200
            assert again["payment_error"] == "invoice is already paid"
            assert again["payment_route"] is None and again["payment_preimage"] == ""
            # a fee limit below every route: the payment fails, no_route, and nothing is paid
            other = await node.merchant_invoice(100_000)
            for fee_limit in ({"fixed_msat": "1000"}, {"percent": "1"}):
                body = {"payment_request": other["payment_request"], "fee_limit": fee_limit}
                status, failed = await node.post("/v1/channels/transactions", body)
                assert status == 200
                assert failed["payment_error"] == "no_route", failed
                assert unb64(failed["payment_hash"]).hex() == other["payment_hash"]
            truth = await node.node.lookup(other["payment_hash"])
            assert truth is not None and truth.status.value == "failed"

    run(scenario())


def test_send_payment_sync_waits_out_a_timed_out_payment(tmp_path: Path) -> None:
    async def scenario() -> None:
        faults = {"timeout_rate": 1.0, "inflight_hold_ms": 300.0}
        for late_settle_rate, error in ((1.0, ""), (0.0, "timeout")):
            async with node_app(
                tmp=tmp_path / str(late_settle_rate),
                late_settle_rate=late_settle_rate,
                lnd_version=SYNC_VERSION,
                **faults,
            ) as node:
                merchant = await node.merchant_invoice(40_000)
                body = {"payment_request": merchant["payment_request"]}  # limit: the amount
                status, answer = await node.post("/v1/channels/transactions", body)
                assert status == 200 and answer["payment_error"] == error, answer
                truth = await node.node.lookup(merchant["payment_hash"])
                assert truth is not None and truth.timed_out
                assert (answer["payment_route"] is not None) == (truth.status.value == "succeeded")

    run(scenario())


def test_send_payment_sync_refuses_what_lnd_would_not_take(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with node_app(tmp=tmp_path, lnd_version=SYNC_VERSION) as node:
            merchant = await node.merchant_invoice(10_000)
            pay_req = merchant["payment_request"]
            for body in (
                {},
                {"payment_request": "lnbcrt1garbage"},
                {"payment_request": pay_req, "fee_limit_msat": "5"},  # a SendPaymentV2 field
                {"payment_request": pay_req, "fee_limit": {"fixed": "1", "percent": "1"}},
                {"payment_request": pay_req, "fee_limit": {"fixed": "-1"}},
                {"payment_request": pay_req, "fee_limit": "1"},
                {"payment_request": pay_req, "amt": "11"},
            ):
                status, refused = await node.post("/v1/channels/transactions", body)
                assert status == 400, (body, refused)
                assert refused["code"] == 3 and isinstance(refused["message"], str), refused
            assert await node.node.lookup(merchant["payment_hash"]) is None

    run(scenario())
