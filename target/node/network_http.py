"""The node's own HTTP routes, one implementation for the target and `lnchaos node`: the network
(`/node/*`: an invoice from a payee in the simulated network, the truth about a payment) and its
fault settings (`/admin/faults`, behind the admin token)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..common.errors import ApiError, add_route, bad_request, read_json_object, require_int
from ..common.json_body import json_response
from ..common.limits import MAX_AMOUNT_MSAT
from .lnd_json import HEX64
from .network import LightningNode, Payment, PaymentStatus

# hashes one POST /node/payments/lookup may ask about: bounds the request's work (each hash not
# in the node's memory is one read), its answer (about 250 bytes a hash) and its body (128 hashes
# are about 9 KB, within the target's 16 KB body limit)
LOOKUP_MAX_HASHES = 128

NodeOf = Callable[[web.Request], LightningNode]
TokenOf = Callable[[web.Request], str]


def truth_json(
    payment_hash: str, payment: Payment | None, attempts: int, answer_lost: bool = False
) -> dict[str, Any]:
    """The node's truth about a payment hash: its newest attempt (`attempt_id`: the one that
    succeeded, else the one in flight, else the last that failed) and how many it had;
    answer_lost: an HTTP fault hid the answer to a send of it after the node acted."""
    if payment is None:
        return {
            "payment_hash": payment_hash,
            "status": str(PaymentStatus.UNKNOWN),
            "amount_msat": 0,
            "fee_msat": 0,
            "failure_reason": "FAILURE_REASON_NONE",
            "attempt_id": None,
            "attempts": 0,
            "timed_out": False,
            "held_ms": None,
            "answer_lost": answer_lost,
        }
    return {
        "payment_hash": payment_hash,
        "status": str(payment.status),
        "amount_msat": payment.amount_msat,
        "fee_msat": payment.fee_msat,
        "failure_reason": str(payment.failure_reason),
        "attempt_id": payment.payment_index,
        "attempts": attempts,
        # the attempt's own facts, for the suite's coverage (lnchaos/checker/coverage.py): the
        # fee limit the wallet passed, whether the network held it past the deadline (the node's
        # own fault record: the judge counts the run's timeouts from it, never from the wallet's
        # answers), its span
        "fee_limit_msat": payment.fee_limit_msat,
        "timed_out": bool(payment.timed_out),
        "created_ms": payment.created_ms,
        "resolved_ms": payment.resolved_ms,
        # how long the node held the attempt before its outcome (None while in flight): a caller
        # that answered sooner gave up on a payment still in flight, whatever it answered
        "held_ms": (
            payment.resolved_ms - payment.created_ms if payment.resolved_ms is not None else None
        ),
        # the node acted, and a fault after it hid the answer (its own record, http_faults.py)
        "answer_lost": answer_lost,
    }


# The network's routes: served by the local node (`add_network_routes`) or, with the target's
# --node-url, passed on to that node (`lnd_client.add_remote_network_routes`).
INVOICES_ROUTE = ("POST", "/node/invoices")
LOOKUP_ROUTE = ("POST", "/node/payments/lookup")
PAYMENT_ROUTE = ("GET", "/node/payments/{payment_hash}")
NETWORK_ROUTES = (INVOICES_ROUTE, LOOKUP_ROUTE, PAYMENT_ROUTE)
FAULT_ROUTES = (("GET", "/admin/faults"), ("PUT", "/admin/faults"))
ADMIN_HEADER = "X-Admin-Token"


def add_network_routes(app: web.Application, node_of: NodeOf) -> None:
    """POST /node/invoices, GET /node/payments/{payment_hash} and POST /node/payments/lookup
    (the truth of many hashes in one request: the suite's checks batch their node reads), on
    the node `node_of` finds."""

    async def node_invoice(request: web.Request) -> web.Response:
        body = await read_json_object(request)
        amount_msat = require_int(body, "amount_msat", minimum=1, maximum=MAX_AMOUNT_MSAT)
        invoice = node_of(request).create_merchant_invoice(amount_msat)
        answer = {"payment_request": invoice.payment_request, "payment_hash": invoice.payment_hash}
        return json_response(answer, status=201)

    async def node_payment(request: web.Request) -> web.Response:
        payment_hash = request.match_info["payment_hash"].lower()
        if not HEX64.match(payment_hash):
            raise bad_request("invalid_payment_hash", "payment_hash must be 64 hex characters")
        node = node_of(request)
        payment, attempts = await node.summary(payment_hash)
        lost = node.answer_lost(payment_hash)
        return json_response(truth_json(payment_hash, payment, attempts, lost))

    async def node_payments_lookup(request: web.Request) -> web.Response:
        # {"payment_hashes": [...]} -> {"payments": [...]}: the records GET /node/payments/{hash}
        # answers, in the order asked (a hash asked twice is answered twice)
        body = await read_json_object(request)
        hashes = body.get("payment_hashes")
        if not isinstance(hashes, list):
            raise bad_request(
                "invalid_payment_hashes", "'payment_hashes' must be a list", field="payment_hashes"
            )
        if not 1 <= len(hashes) <= LOOKUP_MAX_HASHES:
            raise bad_request(
                "invalid_payment_hashes",
                f"'payment_hashes' must hold 1 to {LOOKUP_MAX_HASHES} hashes",
                field="payment_hashes",
                max_hashes=LOOKUP_MAX_HASHES,
            )
        wanted: list[str] = []
        for value in hashes:
            if not isinstance(value, str) or not HEX64.match(value.lower()):
                raise bad_request(
                    "invalid_payment_hash", "each payment hash must be 64 hex characters"
                )
            wanted.append(value.lower())
        node = node_of(request)
        answers = []
        for payment_hash in wanted:
            payment, attempts = await node.summary(payment_hash)
            lost = node.answer_lost(payment_hash)
            answers.append(truth_json(payment_hash, payment, attempts, lost))
        return json_response({"payments": answers})

    add_route(app, *INVOICES_ROUTE, node_invoice)
    add_route(app, *LOOKUP_ROUTE, node_payments_lookup)
    add_route(app, *PAYMENT_ROUTE, node_payment)


def add_fault_routes(app: web.Application, node_of: NodeOf, admin_token_of: TokenOf) -> None:
    """GET and PUT /admin/faults (X-Admin-Token): the node's fault settings, any subset on PUT;
    PUT /admin/seed: the seed of its fault draws."""

    def authorized(request: web.Request) -> LightningNode:
        expected = admin_token_of(request)
        given = request.headers.get(ADMIN_HEADER, "")
        if not given or not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise ApiError(401, "unauthorized", "missing or wrong X-Admin-Token")
        return node_of(request)

    async def get_faults(request: web.Request) -> web.Response:
        return web.json_response(authorized(request).faults.as_dict())

    async def put_faults(request: web.Request) -> web.Response:
        node = authorized(request)
        node.set_faults(node.faults.updated(await read_json_object(request)))
        return web.json_response(node.faults.as_dict())

    async def put_seed(request: web.Request) -> web.Response:
        # the seed of the fault draws from now on: a run started anew on a running target
        # (the web UI's start form) replays with its own seed
        node = authorized(request)
        seed = require_int(await read_json_object(request), "seed", minimum=0, maximum=2**63 - 1)
        node.reseed(seed)
        return web.json_response({"seed": seed})

    for (method, path), handler in zip(FAULT_ROUTES, (get_faults, put_faults), strict=True):
        add_route(app, method, path, handler)
    add_route(app, "PUT", "/admin/seed", put_seed)
