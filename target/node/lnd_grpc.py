"""LND's gRPC face of the node (`--grpc-port`, with `--lnd-dir`): lnrpc.Lightning,
routerrpc.Router and invoicesrpc.Invoices over TLS with the directory's certificate, the macaroon
hex in the `macaroon` metadata, messages from LND's own protos (target/node/lnrpc).

Each call is the REST face's call: the request message becomes the JSON grpc-gateway would have
handed LND (protojson: proto field names, int64 as strings, bytes as base64), `LndService` does
the work, and its JSON answer is parsed back into LND's response message. One payment, whichever
face it came through: the same checks, the same node, faults and truth.

Faults (the same seeded draw as the REST face's, before or after the node acts): an error is
UNAVAILABLE `connection error: desc = "transport is closing"`; a reset UNAVAILABLE `Connection
reset by peer`; a stall holds the call `http_stall_ms` (a stream: after its first update), then
ends it UNAVAILABLE `Socket closed`: a caller whose deadline is shorter sees DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from grpc import aio

from .http_faults import INJECTED, FaultKind, HttpFault, acting, hide_after
from .lnd_auth import Permission
from .lnd_dir import LndDir
from .lnd_json import (
    Code,
    LndError,
    add_invoice_response,
    decode_bytes,
    hash_from_path,
    invoice_json,
    payreq_json,
)
from .lnd_service import (
    READ_INFO,
    READ_INVOICES,
    READ_OFFCHAIN,
    READ_ONCHAIN,
    WRITE_INVOICES,
    WRITE_OFFCHAIN,
    LndService,
    has_send_payment_sync,
    payment_updates,
)
from .lnd_versions import LndVersion
from .lnrpc import invoices_pb2 as inv
from .lnrpc import lightning_pb2 as ln
from .lnrpc import router_pb2 as router

log = logging.getLogger("lnchaos.lnd_grpc")

MESSAGE_MAX_BYTES = 4 * 1024 * 1024  # grpc's default receive limit, stated
STOP_GRACE_S = 1.0
Messages = AsyncIterator[dict[str, Any]]
Act = Callable[[LndService, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Rpc:
    service: str  # "lnrpc.Lightning"
    method: str
    request: type[Message]
    response: type[Message]
    permission: Permission
    act: Act  # unary: the answer's JSON; streaming: its updates (Messages)
    streams: bool = False
    present: Callable[[LndVersion], bool] = lambda version: True


# ---- what each call does (the JSON in, the JSON out, as the REST face) ------------------------


async def _getinfo(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return s.getinfo()


async def _wallet_balance(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return s.wallet_balance()


async def _channel_balance(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return s.channel_balance()


async def _add_invoice(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return add_invoice_response(await s.add_invoice(d))


async def _lookup_invoice(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    r_hash_hex = d.get("r_hash_str") or decode_bytes(d.get("r_hash", ""), "r_hash").hex()
    return invoice_json(await s.lookup_invoice(r_hash_hex))


async def _list_invoices(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return await s.list_invoices(d)


async def _subscribe_invoices(s: LndService, d: dict[str, Any]) -> Messages:
    add_index = int(d.get("add_index", 0))
    settle_index = int(d.get("settle_index", 0))
    return await s.subscribe_invoices(add_index, settle_index, lambda: True)


async def _decode_payreq(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return payreq_json(s.decode_payreq(d.get("pay_req", ""), amountless_ok=True))


async def _send_payment_sync(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return await s.send_sync(d)


async def _list_payments(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return await s.list_payments(d)


async def _send_payment_v2(s: LndService, d: dict[str, Any]) -> Messages:
    payment, no_inflight = await s.send(d)
    return s.send_updates(payment, no_inflight)


async def _track_payment_v2(s: LndService, d: dict[str, Any]) -> Messages:
    payment = await s.track(hash_from_path(d.get("payment_hash", "")))
    return payment_updates(payment, bool(d.get("no_inflight_updates", False)))


async def _track_payments(s: LndService, d: dict[str, Any]) -> Messages:
    return s.track_payments(bool(d.get("no_inflight_updates", False)))


async def _query_routes(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return s.query_routes(d)


async def _send_to_route_v2(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return await s.send_to_route(d)


async def _add_hold_invoice(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    answer = add_invoice_response(await s.add_hold_invoice(d))
    return {k: answer[k] for k in ("payment_request", "add_index", "payment_addr")}


async def _settle_invoice(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    await s.settle_invoice(d)
    return {}


async def _cancel_invoice(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    await s.cancel_invoice(d)
    return {}


async def _lookup_invoice_v2(s: LndService, d: dict[str, Any]) -> dict[str, Any]:
    return invoice_json(await s.lookup_invoice(hash_from_path(d.get("payment_hash", ""))))


async def _subscribe_single_invoice(s: LndService, d: dict[str, Any]) -> Messages:
    r_hash = decode_bytes(d.get("r_hash", ""), "r_hash")
    if len(r_hash) != 32:
        raise LndError(Code.INVALID_ARGUMENT, "r_hash: must be 32 bytes")
    return await s.subscribe_single_invoice(r_hash.hex(), lambda: True)


LIGHTNING, ROUTER, INVOICES = "lnrpc.Lightning", "routerrpc.Router", "invoicesrpc.Invoices"
RPCS = (
    Rpc(LIGHTNING, "GetInfo", ln.GetInfoRequest, ln.GetInfoResponse, READ_INFO, _getinfo),
    Rpc(
        LIGHTNING,
        "WalletBalance",
        ln.WalletBalanceRequest,
        ln.WalletBalanceResponse,
        READ_ONCHAIN,
        _wallet_balance,
    ),
    Rpc(
        LIGHTNING,
        "ChannelBalance",
        ln.ChannelBalanceRequest,
        ln.ChannelBalanceResponse,
        READ_OFFCHAIN,
        _channel_balance,
    ),
    Rpc(LIGHTNING, "AddInvoice", ln.Invoice, ln.AddInvoiceResponse, WRITE_INVOICES, _add_invoice),
    Rpc(LIGHTNING, "LookupInvoice", ln.PaymentHash, ln.Invoice, READ_INVOICES, _lookup_invoice),
    Rpc(
        LIGHTNING,
        "ListInvoices",
        ln.ListInvoiceRequest,
        ln.ListInvoiceResponse,
        READ_INVOICES,
        _list_invoices,
    ),
    Rpc(
        LIGHTNING,
        "SubscribeInvoices",
        ln.InvoiceSubscription,
        ln.Invoice,
        READ_INVOICES,
        _subscribe_invoices,
        streams=True,
    ),
    Rpc(LIGHTNING, "DecodePayReq", ln.PayReqString, ln.PayReq, READ_OFFCHAIN, _decode_payreq),
    Rpc(
        LIGHTNING,
        "SendPaymentSync",
        ln.SendRequest,
        ln.SendResponse,
        WRITE_OFFCHAIN,
        _send_payment_sync,
        present=has_send_payment_sync,
    ),
    Rpc(
        LIGHTNING,
        "ListPayments",
        ln.ListPaymentsRequest,
        ln.ListPaymentsResponse,
        READ_OFFCHAIN,
        _list_payments,
    ),
    Rpc(
        LIGHTNING,
        "QueryRoutes",
        ln.QueryRoutesRequest,
        ln.QueryRoutesResponse,
        READ_OFFCHAIN,
        _query_routes,
    ),
    Rpc(
        ROUTER,
        "SendPaymentV2",
        router.SendPaymentRequest,
        ln.Payment,
        WRITE_OFFCHAIN,
        _send_payment_v2,
        streams=True,
    ),
    Rpc(
        ROUTER,
        "TrackPaymentV2",
        router.TrackPaymentRequest,
        ln.Payment,
        READ_OFFCHAIN,
        _track_payment_v2,
        streams=True,
    ),
    Rpc(
        ROUTER,
        "TrackPayments",
        router.TrackPaymentsRequest,
        ln.Payment,
        READ_OFFCHAIN,
        _track_payments,
        streams=True,
    ),
    Rpc(
        ROUTER,
        "SendToRouteV2",
        router.SendToRouteRequest,
        ln.HTLCAttempt,
        WRITE_OFFCHAIN,
        _send_to_route_v2,
    ),
    Rpc(
        INVOICES,
        "AddHoldInvoice",
        inv.AddHoldInvoiceRequest,
        inv.AddHoldInvoiceResp,
        WRITE_INVOICES,
        _add_hold_invoice,
    ),
    Rpc(
        INVOICES,
        "SettleInvoice",
        inv.SettleInvoiceMsg,
        inv.SettleInvoiceResp,
        WRITE_INVOICES,
        _settle_invoice,
    ),
    Rpc(
        INVOICES,
        "CancelInvoice",
        inv.CancelInvoiceMsg,
        inv.CancelInvoiceResp,
        WRITE_INVOICES,
        _cancel_invoice,
    ),
    Rpc(
        INVOICES,
        "LookupInvoiceV2",
        inv.LookupInvoiceMsg,
        ln.Invoice,
        READ_INVOICES,
        _lookup_invoice_v2,
    ),
    Rpc(
        INVOICES,
        "SubscribeSingleInvoice",
        inv.SubscribeSingleInvoiceRequest,
        ln.Invoice,
        READ_INVOICES,
        _subscribe_single_invoice,
        streams=True,
    ),
)


# ---- serving -------------------------------------------------------------------------------------


def _status(code: Code) -> grpc.StatusCode:
    return grpc.StatusCode[code.name]


def _to_json(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


async def _to_message(answer: dict[str, Any], rpc: Rpc, context: aio.ServicerContext) -> Message:
    """The JSON answer as LND's message; a mismatch is the node's bug (logged, never shown)."""
    try:
        return json_format.ParseDict(answer, rpc.response(), ignore_unknown_fields=True)
    except json_format.ParseError:
        log.exception("gRPC %s.%s: answer does not fit its message", rpc.service, rpc.method)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the node's log")
        raise  # abort raised already


async def _act(lnd: LndService, rpc: Rpc, request: Message, context: aio.ServicerContext) -> Any:
    """Check the version, the macaroon and do the call; its LndError as LND's status."""
    if not rpc.present(lnd.version):
        # grpc-go's answer to a method its server does not register
        message = f"unknown method {rpc.method} for service {rpc.service}"
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)
    metadata = dict(context.invocation_metadata() or ())
    try:
        lnd.authenticate(metadata.get("macaroon"), rpc.permission)
        return await rpc.act(lnd, _to_json(request))
    except LndError as err:
        await context.abort(_status(err.code), err.message)
    except Exception:
        log.exception("gRPC %s.%s", rpc.service, rpc.method)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error; see the node's log")


async def _strike(fault: HttpFault, context: aio.ServicerContext) -> None:
    """End the call as the drawn fault says (nothing when none was drawn)."""
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault.kind is FaultKind.ERROR:
        await context.abort(_status(INJECTED.code), INJECTED.message)
    if fault.kind is FaultKind.RESET:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "Connection reset by peer")
    if fault.kind is FaultKind.STALL:
        await asyncio.sleep(fault.stall_ms / 1000)
        await context.abort(grpc.StatusCode.UNAVAILABLE, "Socket closed")


def _unary(lnd: LndService, rpc: Rpc) -> Callable[..., Awaitable[Message]]:
    async def handle(request: Message, context: aio.ServicerContext) -> Message:
        fault = lnd.http_faults.draw(lnd.node.faults)
        if not fault.after:
            await _strike(fault, context)
        acting()
        answer = await _act(lnd, rpc, request, context)
        hide_after(lnd.node, fault)
        if fault.after:
            await _strike(fault, context)
        return await _to_message(answer, rpc, context)

    return handle


def _stream(lnd: LndService, rpc: Rpc) -> Callable[..., AsyncIterator[Message]]:
    async def handle(request: Message, context: aio.ServicerContext) -> AsyncIterator[Message]:
        fault = lnd.http_faults.draw(lnd.node.faults)
        if not fault.after:
            await _strike(fault, context)
        acting()
        updates: Messages = await _act(lnd, rpc, request, context)
        hide_after(lnd.node, fault)
        try:
            if fault.after and fault.kind is FaultKind.STALL:
                first = await anext(updates, None)  # the node acted: its first update goes out
                if first is not None:
                    yield await _to_message(first, rpc, context)
            if fault.after:
                await _strike(fault, context)
            async for update in updates:
                yield await _to_message(update, rpc, context)
        except LndError as err:
            await context.abort(_status(err.code), err.message)
        finally:
            await updates.aclose()  # type: ignore[attr-defined]

    return handle


def generic_handlers(lnd: LndService) -> list[grpc.GenericRpcHandler]:
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {}
    for rpc in RPCS:
        codec = {
            "request_deserializer": rpc.request.FromString,
            "response_serializer": rpc.response.SerializeToString,
        }
        if rpc.streams:
            handler = grpc.unary_stream_rpc_method_handler(_stream(lnd, rpc), **codec)
        else:
            handler = grpc.unary_unary_rpc_method_handler(_unary(lnd, rpc), **codec)
        by_service.setdefault(rpc.service, {})[rpc.method] = handler
    return [grpc.method_handlers_generic_handler(s, h) for s, h in by_service.items()]


async def start_grpc(lnd: LndService, lnd_dir: LndDir, host: str, port: int) -> tuple[Any, int]:
    """LND's gRPC on host:port over TLS with the directory's certificate; (server, bound port)."""
    server = aio.server(
        options=[
            ("grpc.max_receive_message_length", MESSAGE_MAX_BYTES),
            ("grpc.so_reuseport", 0),  # a port in use is an error, not a second listener
        ]
    )
    server.add_generic_rpc_handlers(generic_handlers(lnd))
    credentials = grpc.ssl_server_credentials(
        [(lnd_dir.key_path.read_bytes(), lnd_dir.cert_path.read_bytes())]
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound_port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc's "Failed to bind": a port in use, or an address not ours
        raise SystemExit(f"lnchaos node: cannot listen for gRPC on {address}") from None
    await server.start()
    return server, bound_port


async def stop_grpc(server: Any) -> None:
    await server.stop(STOP_GRACE_S)


__all__ = ["RPCS", "Rpc", "generic_handlers", "start_grpc", "stop_grpc"]
