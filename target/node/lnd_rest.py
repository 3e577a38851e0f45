"""LND's REST API on the node mock, so wallet software written for LND can be chaos-tested.

The routes (docs/lnd-rest.md) answer as LND's grpc-gateway does (see lnd_json), authenticate
with the `Grpc-Metadata-macaroon` header, and are the only routes the HTTP faults (http_faults)
apply to. Outgoing payments go through the same LightningNode as the target's own payouts: the
same simulated network, payment faults and ground truth. The network admin routes
(`/admin/network/*`, `X-Admin-Token`) let a test pay the node's own invoices from the network and
read what the node really sent and received.

Logic sits in `LndService` (lnd_service.py, shared with the gRPC face); handlers parse, call it
and encode.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web

from ..common.errors import (
    ApiError,
    add_route,
    read_json_object,
    require_int,
    require_str,
)
from ..common.limits import MAX_AMOUNT_MSAT
from .http_faults import (
    FaultKind,
    HttpFault,
    acting,
    close_connection,
    error_response,
    hide_after,
    strike_unary,
)
from .lnd_auth import Permission
from .lnd_json import (
    Code,
    LndError,
    add_invoice_response,
    decode_bool,
    decode_int,
    hash_from_path,
    invalid,
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
    Messages,
    has_send_payment_sync,
    payment_updates,
)
from .lnd_versions import LndVersion
from .receiving import InvoiceState

log = logging.getLogger("lnchaos.lnd_rest")

MACAROON_HEADER = "Grpc-Metadata-macaroon"
LND: web.AppKey[LndService] = web.AppKey("lnchaos_lnd", LndService)


# ---- the application glue ---------------------------------------------------------------------


def lnd_ctx(build: Callable[[web.Application], LndService]):  # noqa: ANN201 - cleanup ctx
    """A cleanup context that builds the service once the node exists (append it after the
    context that makes the node)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        app[LND] = build(app)
        yield
        await _end_streams(app)

    return ctx


async def _end_streams(app: web.Application) -> None:
    service = app.get(LND)
    if service is None:
        return
    service.node.receiver.close()
    service.multipart.close()
    tasks = [t for t in service.streams if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2.0)


def add_lnd_routes(app: web.Application) -> None:
    """LND's REST routes and the network admin routes. Needs `lnd_ctx` in the cleanup contexts."""
    app.on_shutdown.append(_end_streams)
    for method, path, handler in lnd_routes():
        add_route(app, method, path, handler)
    add_route(app, "POST", "/admin/network/pay", network_pay)
    add_route(app, "GET", "/admin/network/truth", network_truth)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def lnd_routes() -> list[tuple[str, str, Handler]]:
    """(method, path, handler) of each LND REST route, with the permission LND's rpcserver asks
    of the call's macaroon."""
    return [
        ("GET", "/v1/getinfo", unary(getinfo, READ_INFO)),
        ("GET", "/v1/balance/channels", unary(channel_balance, READ_OFFCHAIN)),
        ("GET", "/v1/balance/blockchain", unary(wallet_balance, READ_ONCHAIN)),
        ("GET", "/v1/invoices", unary(list_invoices, READ_INVOICES)),
        ("POST", "/v1/invoices", unary(add_invoice, WRITE_INVOICES)),
        ("GET", "/v1/invoice/{r_hash_str}", unary(lookup_invoice, READ_INVOICES)),
        ("GET", "/v1/invoices/subscribe", stream(subscribe_invoices, READ_INVOICES)),
        ("GET", "/v1/payreq/{pay_req}", unary(decode_payreq, READ_OFFCHAIN)),
        ("GET", "/v1/payments", unary(list_payments, READ_OFFCHAIN)),
        (
            "POST",
            "/v1/channels/transactions",
            only_while(has_send_payment_sync, unary(send_payment_sync, WRITE_OFFCHAIN)),
        ),
        ("GET", "/v1/graph/routes/{pub_key}/{amt}", unary(query_routes, READ_OFFCHAIN)),
        ("POST", "/v1/graph/routes/{pub_key}/{amt}", unary(query_routes, READ_OFFCHAIN)),
        ("POST", "/v2/router/route/send", unary(send_to_route, WRITE_OFFCHAIN)),
        ("POST", "/v2/invoices/hodl", unary(add_hold_invoice, WRITE_INVOICES)),
        ("GET", "/v2/invoices/lookup", unary(lookup_invoice_v2, READ_INVOICES)),
        ("POST", "/v2/router/send", stream(send_payment, WRITE_OFFCHAIN)),
        ("GET", "/v2/router/track/{payment_hash}", stream(track_payment, READ_OFFCHAIN)),
        ("POST", "/v2/invoices/settle", unary(settle_invoice, WRITE_INVOICES)),
        ("POST", "/v2/invoices/cancel", unary(cancel_invoice, WRITE_INVOICES)),
    ]


def only_while(present: Callable[[LndVersion], bool], handler: Handler) -> Handler:
    """A route the emulated LND release may lack: then grpc-gateway's answer to a path it does
    not know (HTTP 404, code 5 "Not Found"), before any macaroon check or fault."""

    async def gated(request: web.Request) -> web.StreamResponse:
        if not present(request.app[LND].version):
            return error_response(LndError(Code.NOT_FOUND, "Not Found"))
        return await handler(request)

    return gated


Unary = Callable[[LndService, web.Request], Awaitable[dict[str, Any]]]
Stream = Callable[[LndService, web.Request], Awaitable[Messages]]


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise invalid("request body too large") from None
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise invalid(f"unexpected JSON: {err}") from None
    if not isinstance(value, dict):
        raise invalid("body must be a JSON object")
    return value


async def _act_unary(
    service: LndService, request: web.Request, fn: Unary, permission: Permission
) -> web.Response:
    try:
        service.authenticate(request.headers.get(MACAROON_HEADER), permission)
        return web.json_response(await fn(service, request))
    except LndError as err:
        return error_response(err)
    except Exception:
        log.exception("LND route %s %s", request.method, request.path)
        return error_response(LndError(Code.INTERNAL, "internal error; see the node's log"))


def unary(fn: Unary, permission: Permission) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        service = request.app[LND]
        fault = service.http_faults.draw(service.node.faults)
        if not fault.after:
            await _delay(fault)
            if fault.kind is not FaultKind.NONE:
                return await strike_unary(request, fault)
        acting()
        response = await _act_unary(service, request, fn, permission)
        hide_after(service.node, fault)
        if fault.after:
            await _delay(fault)
            if fault.kind is not FaultKind.NONE:
                return await strike_unary(request, fault)
        return response

    return handler


async def _delay(fault: HttpFault) -> None:
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)


def stream(fn: Stream, permission: Permission) -> Handler:
    """A server-streaming RPC: `fn` acts and returns the updates; each is sent as one line
    `{"result": ...}`. A refusal before the first update is the error status with
    `{"error": <Status>}`, as grpc-gateway does."""

    async def handler(request: web.Request) -> web.StreamResponse:
        service = request.app[LND]
        task = asyncio.current_task()
        assert task is not None
        service.streams.add(task)
        try:
            return await _serve_stream(service, request, fn, permission)
        finally:
            service.streams.discard(task)

    return handler


async def _serve_stream(
    service: LndService, request: web.Request, fn: Stream, permission: Permission
) -> web.StreamResponse:
    fault = service.http_faults.draw(service.node.faults)
    if not fault.after:
        await _delay(fault)
        if fault.kind is FaultKind.STALL:
            return await _stall(request, fault, None)
        if fault.kind is not FaultKind.NONE:
            return await strike_unary(request, fault)
    acting()
    try:
        service.authenticate(request.headers.get(MACAROON_HEADER), permission)
        messages = await fn(service, request)
    except LndError as err:
        return web.json_response({"error": err.status()}, status=err.http_status)
    except Exception:
        log.exception("LND stream %s %s", request.method, request.path)
        err = LndError(Code.INTERNAL, "internal error; see the node's log")
        return web.json_response({"error": err.status()}, status=err.http_status)
    hide_after(service.node, fault)
    try:
        if fault.after:
            await _delay(fault)
            if fault.kind is FaultKind.STALL:
                return await _stall(request, fault, messages)
            if fault.kind is not FaultKind.NONE:
                return await strike_unary(request, fault)
        response = _stream_response()
        await response.prepare(request)
        try:
            async for message in messages:
                await response.write(_line({"result": message}))
            await response.write_eof()
        except LndError as err:
            with contextlib.suppress(ConnectionError):
                await response.write(_line({"error": err.status()}))
                await response.write_eof()
        except ConnectionError:
            pass  # the caller went away
        return response
    finally:
        await messages.aclose()  # type: ignore[attr-defined]


async def _stall(request: web.Request, fault: HttpFault, messages: Messages | None) -> web.Response:
    """Send the 200 header (and, after the node acted, its first update), then nothing for
    `stall_ms`, then close the connection without ending the stream."""
    response = _stream_response()
    try:
        await response.prepare(request)
        if messages is not None:
            first = await anext(messages, None)
            if first is not None:
                await response.write(_line({"result": first}))
        await asyncio.sleep(fault.stall_ms / 1000)
    except (ConnectionResetError, ConnectionError):
        pass
    close_connection(request)
    return response  # type: ignore[return-value]


def _stream_response() -> web.StreamResponse:
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    return response


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _alive(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


# ---- handlers ------------------------------------------------------------------------------------


async def getinfo(service: LndService, request: web.Request) -> dict[str, Any]:
    return service.getinfo()


async def channel_balance(service: LndService, request: web.Request) -> dict[str, Any]:
    return service.channel_balance()


async def add_invoice(service: LndService, request: web.Request) -> dict[str, Any]:
    return add_invoice_response(await service.add_invoice(await _body(request)))


async def lookup_invoice(service: LndService, request: web.Request) -> dict[str, Any]:
    return invoice_json(await service.lookup_invoice(request.match_info["r_hash_str"]))


async def decode_payreq(service: LndService, request: web.Request) -> dict[str, Any]:
    return payreq_json(service.decode_payreq(request.match_info["pay_req"], amountless_ok=True))


async def list_payments(service: LndService, request: web.Request) -> dict[str, Any]:
    return await service.list_payments(dict(request.query))


async def settle_invoice(service: LndService, request: web.Request) -> dict[str, Any]:
    await service.settle_invoice(await _body(request))
    return {}


async def cancel_invoice(service: LndService, request: web.Request) -> dict[str, Any]:
    await service.cancel_invoice(await _body(request))
    return {}


async def add_hold_invoice(service: LndService, request: web.Request) -> dict[str, Any]:
    invoice = await service.add_hold_invoice(await _body(request))
    answer = add_invoice_response(invoice)
    return {k: answer[k] for k in ("payment_request", "add_index", "payment_addr")}


async def lookup_invoice_v2(service: LndService, request: web.Request) -> dict[str, Any]:
    """invoicesrpc.Invoices.LookupInvoiceV2 `?payment_hash=` (base64 bytes; hex accepted)."""
    payment_hash = hash_from_path(request.query.get("payment_hash", ""))
    return invoice_json(await service.lookup_invoice(payment_hash))


async def query_routes(service: LndService, request: web.Request) -> dict[str, Any]:
    """GET /v1/graph/routes/{pub_key}/{amt} (`?amt_msat=`), and POST with a QueryRoutesRequest
    body (Cashu's Nutshell posts `fee_limit` so); the path's fields win, as grpc-gateway's."""
    fields: dict[str, Any] = {}
    if request.method == "POST":
        fields.update(await _body(request))
    elif "amt_msat" in request.query:
        fields["amt_msat"] = request.query["amt_msat"]
    fields.update(pub_key=request.match_info["pub_key"], amt=request.match_info["amt"])
    return service.query_routes(fields)


async def send_to_route(service: LndService, request: web.Request) -> dict[str, Any]:
    return await service.send_to_route(await _body(request))


async def send_payment(service: LndService, request: web.Request) -> Messages:
    payment, no_inflight = await service.send(await _body(request))
    return service.send_updates(payment, no_inflight)


async def send_payment_sync(service: LndService, request: web.Request) -> dict[str, Any]:
    return await service.send_sync(await _body(request))


async def track_payment(service: LndService, request: web.Request) -> Messages:
    payment_hash = hash_from_path(request.match_info["payment_hash"])
    no_inflight = decode_bool(
        request.query.get("no_inflight_updates", "false"), "no_inflight_updates"
    )
    payment = await service.track(payment_hash)
    return payment_updates(payment, no_inflight)


async def subscribe_invoices(service: LndService, request: web.Request) -> Messages:
    add_index = decode_int(request.query.get("add_index", "0"), "add_index")
    settle_index = decode_int(request.query.get("settle_index", "0"), "settle_index")
    return await service.subscribe_invoices(add_index, settle_index, lambda: _alive(request))


async def wallet_balance(service: LndService, request: web.Request) -> dict[str, Any]:
    return service.wallet_balance()


async def list_invoices(service: LndService, request: web.Request) -> dict[str, Any]:
    return await service.list_invoices(dict(request.query))


# ---- network admin (project error shape, X-Admin-Token) -----------------------------------------


def _require_admin(request: web.Request) -> LndService:
    service = request.app[LND]
    given = request.headers.get("X-Admin-Token", "")
    expected = service.admin_token
    if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong X-Admin-Token")
    return service


async def network_pay(request: web.Request) -> web.Response:
    """`POST /admin/network/pay {"payment_request", "amount_msat"?}`: the network pays one of
    the node's own invoices (SETTLED; ACCEPTED for a hold invoice)."""
    service = _require_admin(request)
    body = await read_json_object(request)
    payment_request = require_str(body, "payment_request", max_len=4096)
    amount_msat = None
    if "amount_msat" in body:
        amount_msat = require_int(body, "amount_msat", minimum=1, maximum=MAX_AMOUNT_MSAT)
    invoice = await service.network_pay(payment_request, amount_msat)
    answer = {
        "payment_hash": invoice.payment_hash,
        "state": str(invoice.state),
        "amount_msat": invoice.amt_paid_msat,
        "settle_index": invoice.settle_index,
    }
    return web.json_response(answer, status=200 if invoice.state is InvoiceState.SETTLED else 202)


async def network_truth(request: web.Request) -> web.Response:
    """`GET /admin/network/truth`: what the node really sent and received, ever."""
    service = _require_admin(request)
    return web.json_response(await service.truth())


__all__ = [
    "LND",
    "LndService",
    "add_lnd_routes",
    "lnd_ctx",
]
