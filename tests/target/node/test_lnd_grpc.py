"""LND's gRPC face, driven as a real client drives LND: grpcio stubs generated from LND's own
protos, TLS with the written tls.cert, the admin macaroon in the `macaroon` metadata. Every
listed call, with and without faults; the truth equal to what the REST face and the node say."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from lnd_harness import Node, eventually, node_app, run

from target.node.lnd_dir import LndDir, prepare_lnd_dir
from target.node.lnd_grpc import RPCS
from target.node.lnrpc import invoices_pb2 as inv
from target.node.lnrpc import invoices_pb2_grpc as inv_grpc
from target.node.lnrpc import lightning_pb2 as ln
from target.node.lnrpc import lightning_pb2_grpc as ln_grpc
from target.node.lnrpc import router_pb2 as rt
from target.node.lnrpc import router_pb2_grpc as rt_grpc

CALL_TIMEOUT_S = 10.0
IDLE_STREAMS = {"SubscribeInvoices", "TrackPayments"}  # streams that wait for news
IDLE_S = 0.5
IN_FLIGHT, SUCCEEDED, FAILED = (
    ln.Payment.PaymentStatus.IN_FLIGHT,
    ln.Payment.PaymentStatus.SUCCEEDED,
    ln.Payment.PaymentStatus.FAILED,
)


@dataclass
class Grpc:
    node: Node
    lightning: ln_grpc.LightningStub
    router: rt_grpc.RouterStub
    invoices: inv_grpc.InvoicesStub
    metadata: list[tuple[str, str]]


@asynccontextmanager
async def grpc_node(
    tmp: Path, lnd_dir: LndDir | None = None, **options: Any
) -> AsyncIterator[Grpc]:
    """The node with both faces; a gRPC channel that trusts the written certificate only."""
    lnd_dir = lnd_dir or prepare_lnd_dir(tmp / "lnd", [])
    async with node_app(tmp=tmp, lnd_dir=lnd_dir, grpc=True, **options) as node:
        credentials = grpc.ssl_channel_credentials(lnd_dir.cert_path.read_bytes())
        target = f"127.0.0.1:{node.grpc_port}"
        async with grpc.aio.secure_channel(target, credentials) as channel:
            yield Grpc(
                node,
                ln_grpc.LightningStub(channel),
                rt_grpc.RouterStub(channel),
                inv_grpc.InvoicesStub(channel),
                [("macaroon", node.macaroon)],
            )


async def updates(call: Any, limit: int = 10) -> list[Any]:
    """A server stream's messages until it ends (bounded in count and by the call's deadline)."""
    out = []
    for _ in range(limit):
        message = await call.read()  # read(), not async for: a test may read() the first first
        if message is grpc.aio.EOF:
            return out
        out.append(message)
    call.cancel()
    return out


def test_every_listed_call_is_served() -> None:
    listed = {
        "lnrpc.Lightning": {
            "GetInfo", "WalletBalance", "ChannelBalance", "AddInvoice", "LookupInvoice",
            "ListInvoices", "SubscribeInvoices", "DecodePayReq", "SendPaymentSync",
            "ListPayments",
        },
        "routerrpc.Router": {"SendPaymentV2", "TrackPaymentV2", "TrackPayments", "SendToRouteV2"},
        "invoicesrpc.Invoices": {
            "AddHoldInvoice", "SettleInvoice", "CancelInvoice", "LookupInvoiceV2",
            "SubscribeSingleInvoice",
        },
    }  # fmt: skip
    served: dict[str, set[str]] = {}
    for rpc in RPCS:
        served.setdefault(rpc.service, set()).add(rpc.method)
    for service, methods in listed.items():
        assert methods <= served[service], methods - served[service]


def test_lightning_calls_and_truth_equal_to_rest(tmp_path: Path) -> None:
    async def scenario() -> None:
        # a payment takes about 50 ms: its in-flight update is seen before its end
        async with grpc_node(
            tmp_path, fee_base_msat=1000, fee_ppm=1000, latency_ms_median=50.0
        ) as g:
            md, t = g.metadata, CALL_TIMEOUT_S
            info = await g.lightning.GetInfo(ln.GetInfoRequest(), metadata=md, timeout=t)
            assert info.identity_pubkey == g.node.node.pubkey
            assert list(info.uris) == [f"{g.node.node.pubkey}@127.0.0.1:9735"]
            wallet = await g.lightning.WalletBalance(
                ln.WalletBalanceRequest(), metadata=md, timeout=t
            )
            assert wallet.total_balance == 0
            before = await g.lightning.ChannelBalance(
                ln.ChannelBalanceRequest(), metadata=md, timeout=t
            )
            # invoices: add, look up, subscribe, the network pays, list
            subscription = g.lightning.SubscribeInvoices(
                ln.InvoiceSubscription(), metadata=md, timeout=t
            )
            added = await g.lightning.AddInvoice(
                ln.Invoice(value_msat=70_000, memo="grpc"), metadata=md, timeout=t
            )
            looked = await g.lightning.LookupInvoice(
                ln.PaymentHash(r_hash=added.r_hash), metadata=md, timeout=t
            )
            assert looked.state == ln.Invoice.InvoiceState.OPEN and looked.memo == "grpc"
            status, _ = await g.node.admin(
                "POST", "/admin/network/pay", {"payment_request": added.payment_request}
            )
            assert status == 200
            seen = await updates(subscription, limit=2)
            assert [u.state for u in seen] == [
                ln.Invoice.InvoiceState.OPEN,
                ln.Invoice.InvoiceState.SETTLED,
            ]
            listed = await g.lightning.ListInvoices(
                ln.ListInvoiceRequest(num_max_invoices=10), metadata=md, timeout=t
            )
            assert [i.r_hash for i in listed.invoices] == [added.r_hash]
            after = await g.lightning.ChannelBalance(
                ln.ChannelBalanceRequest(), metadata=md, timeout=t
            )
            assert after.local_balance.msat == before.local_balance.msat + 70_000
            # a payment over gRPC: the same truth on the REST face and in the node
            merchant = await g.node.merchant_invoice(50_000)
            decoded = await g.lightning.DecodePayReq(
                ln.PayReqString(pay_req=merchant["payment_request"]), metadata=md, timeout=t
            )
            assert decoded.destination == g.node.node.merchants.pubkey
            assert decoded.num_msat == 50_000
            watcher = g.router.TrackPayments(
                rt.TrackPaymentsRequest(no_inflight_updates=True), metadata=md, timeout=t
            )
            sent = await updates(
                g.router.SendPaymentV2(
                    rt.SendPaymentRequest(
                        payment_request=merchant["payment_request"],
                        fee_limit_msat=5_000,
                        timeout_seconds=5,
                    ),
                    metadata=md,
                    timeout=t,
                )
            )
            assert [p.status for p in sent] == [IN_FLIGHT, SUCCEEDED]
            final = sent[-1]
            truth = await g.node.node.lookup(merchant["payment_hash"])
            assert truth is not None and truth.payment_index == final.payment_index
            assert truth.fee_msat == final.fee_msat and 1050 <= truth.fee_msat
            tracked = await updates(
                g.router.TrackPaymentV2(
                    rt.TrackPaymentRequest(payment_hash=bytes.fromhex(merchant["payment_hash"])),
                    metadata=md,
                    timeout=t,
                )
            )
            assert [p.status for p in tracked] == [SUCCEEDED]
            status, rest_lines, _ = await g.node.stream(
                "GET", f"/v2/router/track/{merchant['payment_hash']}"
            )
            rest_final = rest_lines[-1]["result"]
            assert rest_final["payment_index"] == str(final.payment_index)
            assert rest_final["fee_msat"] == str(final.fee_msat)
            assert rest_final["status"] == "SUCCEEDED"
            (watched,) = await updates(watcher, limit=1)
            assert watched.payment_hash == merchant["payment_hash"]
            assert watched.status == SUCCEEDED
            payments = await g.lightning.ListPayments(
                ln.ListPaymentsRequest(include_incomplete=True), metadata=md, timeout=t
            )
            assert [p.payment_index for p in payments.payments] == [final.payment_index]

    run(scenario())


def test_hold_invoices_and_multi_part_over_grpc(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with grpc_node(tmp_path) as g:
            md, t = g.metadata, CALL_TIMEOUT_S
            preimages = [os.urandom(32), os.urandom(32)]
            hashes = [hashlib.sha256(p).digest() for p in preimages]
            for payment_hash in hashes:
                held = await g.invoices.AddHoldInvoice(
                    inv.AddHoldInvoiceRequest(hash=payment_hash, value_msat=30_000),
                    metadata=md,
                    timeout=t,
                )
                status, paid = await g.node.admin(
                    "POST", "/admin/network/pay", {"payment_request": held.payment_request}
                )
                assert (status, paid["state"]) == (202, "ACCEPTED")
            single = g.invoices.SubscribeSingleInvoice(
                inv.SubscribeSingleInvoiceRequest(r_hash=hashes[0]), metadata=md, timeout=t
            )
            first = await single.read()  # the state now: the subscription is in place
            assert first.state == ln.Invoice.InvoiceState.ACCEPTED
            await g.invoices.SettleInvoice(
                inv.SettleInvoiceMsg(preimage=preimages[0]), metadata=md, timeout=t
            )
            await g.invoices.CancelInvoice(
                inv.CancelInvoiceMsg(payment_hash=hashes[1]), metadata=md, timeout=t
            )
            states = [u.state for u in await updates(single)]  # the rest; ends once final
            assert states == [ln.Invoice.InvoiceState.SETTLED]
            cancelled = await g.invoices.LookupInvoiceV2(
                inv.LookupInvoiceMsg(payment_hash=hashes[1]), metadata=md, timeout=t
            )
            assert cancelled.state == ln.Invoice.InvoiceState.CANCELED
            _, truth = await g.node.admin("GET", "/admin/network/truth")
            assert truth["received"] == {"settled": 1, "amount_msat": 30_000}
            # a multi-part payment: two parts over SendToRouteV2, each on a queried route
            merchant = await g.node.merchant_invoice(90_000)
            invoice = g.node.node.merchants.by_hash(merchant["payment_hash"])
            assert invoice is not None
            calls = []
            for amount_msat in (50_000, 40_000):
                routes = await g.lightning.QueryRoutes(
                    ln.QueryRoutesRequest(pub_key=invoice.payee, amt_msat=amount_msat),
                    metadata=md,
                    timeout=t,
                )
                route = routes.routes[0]
                route.hops[-1].mpp_record.payment_addr = bytes.fromhex(invoice.payment_addr)
                route.hops[-1].mpp_record.total_amt_msat = 90_000
                request = rt.SendToRouteRequest(
                    payment_hash=bytes.fromhex(invoice.payment_hash), route=route
                )
                calls.append(g.router.SendToRouteV2(request, metadata=md, timeout=t))
            attempts = await asyncio.gather(*calls)
            assert [a.status for a in attempts] == [ln.HTLCAttempt.HTLCStatus.SUCCEEDED] * 2
            assert {hashlib.sha256(a.preimage).hexdigest() for a in attempts} == {
                merchant["payment_hash"]
            }
            status, rest = await g.node.get(f"/node/payments/{merchant['payment_hash']}")
            assert status == 200 and rest["status"] == "succeeded", rest
            assert rest["amount_msat"] == 90_000

    run(scenario())


def test_send_payment_sync_over_grpc_by_version_and_macaroons_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        lnd_dir = prepare_lnd_dir(tmp_path / "lnd", [])
        for version in ("0.20", "0.21"):
            async with grpc_node(tmp_path / version, lnd_dir, lnd_version=version) as g:
                merchant = await g.node.merchant_invoice(20_000)
                request = ln.SendRequest(payment_request=merchant["payment_request"])
                call = g.lightning.SendPaymentSync(request, metadata=g.metadata, timeout=10)
                if version == "0.20":
                    answer = await call
                    assert answer.payment_error == ""
                    assert (
                        hashlib.sha256(answer.payment_preimage).hexdigest()
                        == (merchant["payment_hash"])
                    )
                else:
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await call
                    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
                    assert refused.value.details() == (
                        "unknown method SendPaymentSync for service lnrpc.Lightning"
                    )
                    assert await g.node.node.lookup(merchant["payment_hash"]) is None
        other = prepare_lnd_dir(tmp_path / "other", [])
        async with grpc_node(tmp_path / "auth", lnd_dir) as g:
            for metadata, message in (
                ([], "expected 1 macaroon, got 0"),
                (
                    [("macaroon", other.macaroons["admin"].hex())],
                    "verification failed: signature mismatch after caveat verification",
                ),
                ([("macaroon", lnd_dir.macaroons["readonly"].hex())], "permission denied"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await g.lightning.AddInvoice(
                        ln.Invoice(value_msat=1000), metadata=metadata, timeout=10
                    )
                assert (refused.value.code(), refused.value.details()) == (
                    grpc.StatusCode.UNKNOWN,
                    message,
                )
            assert g.node.node.receiver._next_add_index == 1  # nothing was added

    run(scenario())


def minimal_requests(g: Grpc, merchant: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """One valid request per listed call: (stub method, request)."""
    payment_hash = bytes.fromhex(merchant["payment_hash"])
    pay_req = merchant["payment_request"]
    some_hash = hashlib.sha256(b"x").digest()
    return {
        "GetInfo": (g.lightning.GetInfo, ln.GetInfoRequest()),
        "WalletBalance": (g.lightning.WalletBalance, ln.WalletBalanceRequest()),
        "ChannelBalance": (g.lightning.ChannelBalance, ln.ChannelBalanceRequest()),
        "AddInvoice": (g.lightning.AddInvoice, ln.Invoice(value_msat=1000)),
        "LookupInvoice": (g.lightning.LookupInvoice, ln.PaymentHash(r_hash=some_hash)),
        "ListInvoices": (g.lightning.ListInvoices, ln.ListInvoiceRequest()),
        "SubscribeInvoices": (g.lightning.SubscribeInvoices, ln.InvoiceSubscription()),
        "DecodePayReq": (g.lightning.DecodePayReq, ln.PayReqString(pay_req=pay_req)),
        "SendPaymentSync": (g.lightning.SendPaymentSync, ln.SendRequest(payment_request=pay_req)),
        "ListPayments": (g.lightning.ListPayments, ln.ListPaymentsRequest()),
        "SendPaymentV2": (
            g.router.SendPaymentV2,
            rt.SendPaymentRequest(payment_request=pay_req, fee_limit_msat=10_000),
        ),
        "TrackPaymentV2": (
            g.router.TrackPaymentV2,
            rt.TrackPaymentRequest(payment_hash=payment_hash),
        ),
        "TrackPayments": (g.router.TrackPayments, rt.TrackPaymentsRequest()),
        "SendToRouteV2": (
            g.router.SendToRouteV2,
            rt.SendToRouteRequest(payment_hash=payment_hash, route=ln.Route()),
        ),
        "AddHoldInvoice": (
            g.invoices.AddHoldInvoice,
            inv.AddHoldInvoiceRequest(hash=some_hash, value_msat=1000),
        ),
        "SettleInvoice": (g.invoices.SettleInvoice, inv.SettleInvoiceMsg(preimage=b"x" * 32)),
        "CancelInvoice": (g.invoices.CancelInvoice, inv.CancelInvoiceMsg(payment_hash=some_hash)),
        "LookupInvoiceV2": (
            g.invoices.LookupInvoiceV2,
            inv.LookupInvoiceMsg(payment_hash=some_hash),
        ),
        "SubscribeSingleInvoice": (
            g.invoices.SubscribeSingleInvoice,
            inv.SubscribeSingleInvoiceRequest(r_hash=some_hash),
        ),
    }


async def outcome(method: Any, request: Any, metadata: Any, timeout_s: float) -> Any:
    """The call's status code (OK once it answered, or once a stream gave its first update)."""
    try:
        call = method(request, metadata=metadata, timeout=timeout_s)
        if hasattr(call, "__aiter__"):
            async for _ in call:
                call.cancel()
                break
            else:
                return grpc.StatusCode.OK
            return grpc.StatusCode.OK
        await call
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as err:
        return err.code()


def test_every_call_under_an_injected_error_before_the_node_acts(tmp_path: Path) -> None:
    """Each listed call, faulted before the node acts: UNAVAILABLE, and nothing happened."""

    async def scenario() -> None:
        async with grpc_node(tmp_path, lnd_version="0.20") as g:
            merchant = await g.node.merchant_invoice(10_000)
            g.node.node.faults.http_error_rate = 1.0
            g.node.node.faults.http_fault_after_rate = 0.0
            codes = {
                name: await outcome(method, request, g.metadata, 5.0)
                for name, (method, request) in minimal_requests(g, merchant).items()
            }
            assert set(codes.values()) == {grpc.StatusCode.UNAVAILABLE}, codes
            assert await g.node.node.lookup(merchant["payment_hash"]) is None
            assert g.node.node.receiver._next_add_index == 1
            g.node.node.faults.http_error_rate = 0.0
            codes = {
                name: await outcome(
                    method, request, g.metadata, IDLE_S if name in IDLE_STREAMS else 5.0
                )
                for name, (method, request) in minimal_requests(g, merchant).items()
            }
            # unfaulted: each answers as LND would: the made-up hash is unknown until the hold
            # invoice of it is added (the calls run in the order listed), the empty route is
            # refused, and the hash SendPaymentSync paid is refused to SendPaymentV2 (one truth)
            code = grpc.StatusCode
            assert codes == {
                "GetInfo": code.OK,
                "WalletBalance": code.OK,
                "ChannelBalance": code.OK,
                "AddInvoice": code.OK,
                "LookupInvoice": code.NOT_FOUND,
                "ListInvoices": code.OK,
                "SubscribeInvoices": code.DEADLINE_EXCEEDED,  # open, nothing to tell yet
                "DecodePayReq": code.OK,
                "SendPaymentSync": code.OK,
                "ListPayments": code.OK,
                "SendPaymentV2": code.ALREADY_EXISTS,
                "TrackPaymentV2": code.OK,
                "TrackPayments": code.DEADLINE_EXCEEDED,  # open, nothing to tell yet
                "SendToRouteV2": code.INVALID_ARGUMENT,
                "AddHoldInvoice": code.OK,
                "SettleInvoice": code.NOT_FOUND,  # no invoice of that preimage's hash
                "CancelInvoice": code.OK,
                "LookupInvoiceV2": code.OK,
                "SubscribeSingleInvoice": code.OK,
            }

    run(scenario())


def test_faults_after_the_node_acted_hide_the_answer_not_the_payment(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with grpc_node(tmp_path) as g:
            faults = g.node.node.faults
            faults.http_fault_after_rate = 1.0
            for kind in ("error", "reset"):
                setattr(faults, f"http_{kind}_rate", 1.0)
                merchant = await g.node.merchant_invoice(10_000)
                request = rt.SendPaymentRequest(
                    payment_request=merchant["payment_request"], fee_limit_msat=10_000
                )
                code = await outcome(g.router.SendPaymentV2, request, g.metadata, 5.0)
                assert code == grpc.StatusCode.UNAVAILABLE, kind
                setattr(faults, f"http_{kind}_rate", 0.0)
                # the payment went out all the same: the truth, and TrackPaymentV2, say so
                truth = await eventually(
                    lambda h=merchant["payment_hash"]: _final(g, h), 5.0, "the payment's end"
                )
                assert truth.status.value == "succeeded"
            # a stall: the stream's first update, then nothing: a caller's deadline ends it
            faults.http_stall_rate, faults.http_stall_ms = 1.0, 3000.0
            faults.latency_ms_median = 300.0
            merchant = await g.node.merchant_invoice(10_000)
            call = g.router.SendPaymentV2(
                rt.SendPaymentRequest(
                    payment_request=merchant["payment_request"], fee_limit_msat=10_000
                ),
                metadata=g.metadata,
                timeout=1.0,
            )
            seen = []
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                async for update in call:
                    seen.append(update.status)
            assert seen == [IN_FLIGHT]
            assert cut.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            faults.http_stall_ms = 200.0  # a shorter stall than the deadline: the stream is cut
            merchant = await g.node.merchant_invoice(10_000)
            call = g.router.SendPaymentV2(
                rt.SendPaymentRequest(
                    payment_request=merchant["payment_request"], fee_limit_msat=10_000
                ),
                metadata=g.metadata,
                timeout=5.0,
            )
            with pytest.raises(grpc.aio.AioRpcError) as cut:
                async for update in call:
                    assert update.status == IN_FLIGHT
            assert cut.value.code() == grpc.StatusCode.UNAVAILABLE
            assert cut.value.details() == "Socket closed"

    run(scenario())


async def _final(g: Grpc, payment_hash: str) -> Any:
    payment = await g.node.node.lookup(payment_hash)
    return payment if payment is not None and payment.done.is_set() else None


def test_status_initiated_over_grpc(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with grpc_node(tmp_path, lnd_status_initiated=True, latency_ms_median=50.0) as g:
            merchant = await g.node.merchant_invoice(10_000)
            request = rt.SendPaymentRequest(
                payment_request=merchant["payment_request"], fee_limit_msat=9_000
            )
            sent = await updates(g.router.SendPaymentV2(request, metadata=g.metadata, timeout=10))
            initiated = ln.Payment.PaymentStatus.INITIATED
            assert [(p.status, len(p.htlcs)) for p in sent] == [
                (initiated, 0),
                (IN_FLIGHT, 1),
                (SUCCEEDED, 1),
            ]

    run(scenario())


def test_request_fields_known_to_the_node_are_lnds() -> None:
    """The REST face refuses unknown fields as protojson does; what it knows must be exactly
    the fields of LND's request messages, or a gRPC client setting a real field is refused."""
    from target.node import lnd_json

    for message, known in (
        (rt.SendPaymentRequest, lnd_json.SEND_FIELDS),
        (ln.Invoice, lnd_json.INVOICE_FIELDS),
        (ln.SendRequest, lnd_json.SEND_SYNC_FIELDS),
        (inv.AddHoldInvoiceRequest, lnd_json.HOLD_INVOICE_FIELDS),
        (rt.SendToRouteRequest, lnd_json.SEND_TO_ROUTE_FIELDS),
    ):
        assert {f.name for f in message.DESCRIPTOR.fields} == set(known), message
