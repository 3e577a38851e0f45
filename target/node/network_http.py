"""The node's own HTTP routes, one implementation for the target and `lnchaos node`: the network
(`/node/*`: an invoice from a payee in the simulated network, the truth about a payment) and its
fault settings (`/admin/faults`, behind the admin token)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from aiohttp import web

from ..common.errors import ApiError, bad_request, read_json_object, require_int
from ..common.limits import MAX_AMOUNT_MSAT
from .lnd_json import HEX64
from .network import LightningNode, PaymentStatus

NodeOf = Callable[[web.Request], LightningNode]
TokenOf = Callable[[web.Request], str]


def add_network_routes(app: web.Application, node_of: NodeOf) -> None:
    """POST /node/invoices and GET /node/payments/{payment_hash}, on the node `node_of` finds."""

    async def node_invoice(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        amount_msat = require_int(body, "amount_msat", minimum=1, maximum=MAX_AMOUNT_MSAT)
        invoice = node_of(request).create_merchant_invoice(amount_msat)
        answer = {"payment_request": invoice.payment_request, "payment_hash": invoice.payment_hash}
        return web.json_response(answer, status=201)

    async def node_payment(request: web.Request) -> web.Response:
        payment_hash = request.match_info["payment_hash"].lower()
        if not HEX64.match(payment_hash):
            raise bad_request("invalid_payment_hash", "payment_hash must be 64 hex characters")
        payment = await node_of(request).lookup(payment_hash)
        if payment is None:
            body = {"payment_hash": payment_hash, "status": str(PaymentStatus.UNKNOWN)}
            return web.json_response({**body, "amount_msat": 0, "fee_msat": 0})
        return web.json_response(payment.truth())

    app.router.add_post("/node/invoices", node_invoice)
    app.router.add_get("/node/payments/{payment_hash}", node_payment)


def add_fault_routes(app: web.Application, node_of: NodeOf, admin_token_of: TokenOf) -> None:
    """GET and PUT /admin/faults (X-Admin-Token): the node's fault settings, any subset on PUT."""

    def authorized(request: web.Request) -> LightningNode:
        expected = admin_token_of(request)
        given = request.headers.get("X-Admin-Token", "")
        if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong X-Admin-Token")
        return node_of(request)

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response(authorized(request).faults.as_dict())

    async def put_faults(request: web.Request) -> web.Response:
        node = authorized(request)
        node.set_faults(node.faults.updated(await read_json_object(request)))
        return web.json_response(node.faults.as_dict())

    app.router.add_get("/admin/faults", get_faults)
    app.router.add_put("/admin/faults", put_faults)
