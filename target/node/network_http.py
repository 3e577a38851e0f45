"""The network's own HTTP routes (`/node/*`), one implementation for the target and `lnchaos node`:
an invoice from a payee in the simulated network, and the truth about a payment."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ..config import MAX_AMOUNT_MSAT
from ..errors import bad_request, read_json_object, require_int
from .lnd_json import HEX64
from .network import LightningNode, PaymentStatus

NodeOf = Callable[[web.Request], LightningNode]


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
