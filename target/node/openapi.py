"""The OpenAPI description of the node's routes: the network (`/node/*`), its fault settings
(`/admin/faults`), LND's REST API and the network admin routes. `lnchaos node` serves it as its
`/openapi.json` (NODE_OPENAPI); the target's app factory (target/app.py) adds the same paths to
the wallet's (target/openapi.py), so one route has one description wherever it is served.

Every status a route answers is listed, with the body it carries: schemathesis checks each answer
against this (tests/fuzz)."""

from __future__ import annotations

import copy
import dataclasses

from ..common.openapi import (
    ADMIN,
    ADMIN_DENIED,
    BAD,
    ERROR,
    MACAROON,
    SECURITY_SCHEMES,
    TOO_LARGE,
    Schema,
    json_body,
    obj,
    op,
    path_param,
)
from .faults import FaultSettings
from .network_http import LOOKUP_MAX_HASHES


def fault_settings_schema() -> Schema:
    """The fault settings with the bounds FaultSettings.validate enforces (any subset on PUT;
    an unknown name is a 400)."""
    props: Schema = {}
    defaults = FaultSettings()
    for f in dataclasses.fields(FaultSettings):
        if f.name in FaultSettings._RATES or f.name == "load_coupling":
            props[f.name] = {"type": "number", "minimum": 0, "maximum": 1}
        elif f.name in FaultSettings._LIMITS_MS:
            props[f.name] = {"type": "number", "minimum": 0, "maximum": 60_000}
        elif f.name == "fee_base_msat":
            props[f.name] = {"type": "integer", "minimum": 0, "maximum": 10_000_000}
        elif f.name == "fee_ppm":
            props[f.name] = {"type": "integer", "minimum": 0, "maximum": 100_000}
        else:  # a new field: described by its default's type, unbounded here
            props[f.name] = {"type": "integer" if f.type == "int" else "number"}
        props[f.name]["default"] = getattr(defaults, f.name)
    return {"type": "object", "properties": props, "additionalProperties": False}


FAULTS = fault_settings_schema()

TRUTH = obj(
    {
        "payment_hash": "string",
        "status": "string",
        "amount_msat": "integer",
        "fee_msat": "integer",
        "failure_reason": "string",
        "attempts": "integer",
        "timed_out": "boolean",
    }
)
TRUTH["properties"]["status"]["enum"] = ["in_flight", "succeeded", "failed", "unknown"]
TRUTH["properties"]["attempt_id"] = {"type": "integer", "nullable": True}
# the attempt's own facts (absent for a hash never sent): the suite's coverage reads them
TRUTH["properties"]["fee_limit_msat"] = {"type": "integer"}
TRUTH["properties"]["timed_out"] = {"type": "boolean"}
TRUTH["properties"]["created_ms"] = {"type": "integer"}
TRUTH["properties"]["resolved_ms"] = {"type": "integer", "nullable": True}
TRUTH["properties"]["held_ms"] = {"type": "integer", "nullable": True}  # null while in flight

# the seed of the fault draws (network_http.put_seed: a whole number within [0, 2**63 - 1])
SEED: Schema = {
    "type": "object",
    "properties": {"seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}},
    "required": ["seed"],
}

NETWORK_PATHS: Schema = {
    "/node/invoices": {
        "post": op(
            "An invoice from a payee in the simulated network",
            {
                "201": json_body(
                    obj({"payment_request": "string", "payment_hash": "string"}), "created"
                ),
                **BAD,
                **TOO_LARGE,
            },
            body=obj({"amount_msat": "integer"}, ["amount_msat"]),
        )
    },
    "/node/payments/{payment_hash}": {
        "get": op(
            "The node's truth about a payment",
            {"200": json_body(TRUTH, "in_flight, succeeded, failed or unknown"), **BAD},
            params=[path_param("payment_hash")],
        )
    },
    "/node/payments/lookup": {
        "post": op(
            "The node's truth about many payments (1 to 128 hashes; the records of "
            "GET /node/payments/{payment_hash}, in the order asked)",
            {
                "200": json_body(
                    {
                        "type": "object",
                        "properties": {"payments": {"type": "array", "items": TRUTH}},
                        "required": ["payments"],
                    },
                    "one record per hash asked",
                ),
                **BAD,
                **TOO_LARGE,
            },
            body={
                "type": "object",
                "properties": {
                    "payment_hashes": {
                        "type": "array",
                        "items": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
                        "minItems": 1,
                        "maxItems": LOOKUP_MAX_HASHES,
                    }
                },
                "required": ["payment_hashes"],
            },
        )
    },
    "/admin/faults": {
        "get": op(
            "Fault settings",
            {"200": json_body(FAULTS, "settings"), **ADMIN_DENIED},
            security=ADMIN,
        ),
        "put": op(
            "Change fault settings (any subset)",
            {"200": json_body(FAULTS, "new settings"), **BAD, **ADMIN_DENIED, **TOO_LARGE},
            body=FAULTS,
            security=ADMIN,
        ),
    },
    "/admin/seed": {
        "put": op(
            "Seed the node's fault draws from now on (each run of the suite judged alone)",
            {
                "200": json_body(SEED, "seed"),
                **BAD,
                **ADMIN_DENIED,
                **TOO_LARGE,
            },
            body=SEED,
            security=ADMIN,
        ),
    },
}

# ---- LND's REST API (target/node/lnd_rest.py; LND's own JSON shapes) ---------------------------

# grpc-gateway's error body, and the HTTP statuses its codes map to (lnd_json.HTTP_STATUS).
LND_STATUS = {
    "type": "object",
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "details": {"type": "array"},
    },
    "required": ["code", "message"],
}
LND_ERRORS = {
    "400": json_body(LND_STATUS, "INVALID_ARGUMENT or FAILED_PRECONDITION"),
    "401": json_body(LND_STATUS, "UNAUTHENTICATED: no macaroon, or not the one configured"),
    "404": json_body(LND_STATUS, "NOT_FOUND"),
    "409": json_body(LND_STATUS, "ALREADY_EXISTS (a payment already made or in flight)"),
    "500": json_body(
        LND_STATUS, "UNKNOWN (code 2): a macaroon refused as LND refuses it (--lnd-dir)"
    ),
    "429": json_body(LND_STATUS, "RESOURCE_EXHAUSTED (too many subscribers)"),
    "503": json_body(LND_STATUS, "UNAVAILABLE: an injected HTTP fault (http_error_rate)"),
}
LND_OK = {"200": json_body({"type": "object"}, "as LND answers"), **LND_ERRORS}
# A refusal before the first update of a stream is `{"error": <status>}` (grpc-gateway).
LND_STREAM_ERROR = {"type": "object", "properties": {"error": LND_STATUS}, "required": ["error"]}
LND_STREAM = {
    "200": {
        "description": 'newline-delimited JSON, one {"result": ...} per update',
        "content": {"application/json": {"schema": {}}},
    },
    **{
        status: json_body(LND_STREAM_ERROR, response["description"])
        for status, response in LND_ERRORS.items()
    },
}
HEX_BODY = {"type": "object", "additionalProperties": True}
LND_ROUTES: dict[str, tuple[str, str, Schema, list[str], Schema | None]] = {
    # path: (method, summary, responses, path parameters, body)
    "/v1/getinfo": ("get", "GetInfo", LND_OK, [], None),
    "/v1/balance/channels": ("get", "ChannelBalance", LND_OK, [], None),
    "/v1/balance/blockchain": ("get", "WalletBalance", LND_OK, [], None),
    "/v1/invoices": ("post", "AddInvoice", LND_OK, [], HEX_BODY),
    "/v1/invoice/{r_hash_str}": ("get", "LookupInvoice", LND_OK, ["r_hash_str"], None),
    "/v1/invoices/subscribe": ("get", "SubscribeInvoices", LND_STREAM, [], None),
    "/v1/payreq/{pay_req}": ("get", "DecodePayReq", LND_OK, ["pay_req"], None),
    "/v1/payments": ("get", "ListPayments", LND_OK, [], None),
    "/v1/channels/transactions": (
        "post",
        "SendPaymentSync (answers once final; --lnd-version 0.21: 404, removed)",
        LND_OK,
        [],
        HEX_BODY,
    ),
    "/v2/router/send": ("post", "SendPaymentV2", LND_STREAM, [], HEX_BODY),
    "/v2/router/track/{payment_hash}": (
        "get",
        "TrackPaymentV2",
        LND_STREAM,
        ["payment_hash"],
        None,
    ),  # fmt: skip
    "/v1/graph/routes/{pub_key}/{amt}": ("get", "QueryRoutes", LND_OK, ["pub_key", "amt"], None),
    "/v2/router/route/send": ("post", "SendToRouteV2 (one part)", LND_OK, [], HEX_BODY),
    "/v2/invoices/hodl": ("post", "AddHoldInvoice", LND_OK, [], HEX_BODY),
    "/v2/invoices/lookup": ("get", "LookupInvoiceV2", LND_OK, [], None),
    "/v2/invoices/settle": ("post", "SettleInvoice (hold invoices)", LND_OK, [], HEX_BODY),
    "/v2/invoices/cancel": ("post", "CancelInvoice (hold invoices)", LND_OK, [], HEX_BODY),
}
# The streaming routes: their answers do not end on their own (subscribe) or end when a payment
# does; tests/fuzz fuzzes them apart, with a bounded read.
STREAM_PATHS = frozenset(p for p, route in LND_ROUTES.items() if route[2] is LND_STREAM)

LND_PATHS: Schema = {
    route: {method: op(summary, responses, security=MACAROON, body=body,
                       params=[path_param(name) for name in params])}
    for route, (method, summary, responses, params, body) in LND_ROUTES.items()
}  # fmt: skip
LND_PATHS["/v1/graph/routes/{pub_key}/{amt}"]["post"] = op(
    "QueryRoutes (a QueryRoutesRequest body)",
    LND_OK,
    security=MACAROON,
    body=HEX_BODY,
    params=[path_param("pub_key"), path_param("amt")],
)
LND_PATHS["/v1/invoices"]["get"] = op(
    "ListInvoices", LND_OK, security=MACAROON, body=None, params=[]
)  # the same path as AddInvoice (POST)
LND_PATHS["/admin/network/pay"] = {
    "post": op(
        "The network pays one of the node's own invoices",
        {
            "200": json_body({"type": "object"}, "settled"),
            "202": json_body({"type": "object"}, "accepted (a hold invoice)"),
            **BAD,
            **ADMIN_DENIED,
            "404": json_body(ERROR, "not_our_invoice, invoice_not_found"),
            "409": json_body(ERROR, "invoice_not_open: settled, canceled or already accepted"),
            **TOO_LARGE,
        },
        body=obj({"payment_request": "string", "amount_msat": "integer"}, ["payment_request"]),
        security=ADMIN,
    )
}
LND_PATHS["/admin/network/truth"] = {
    "get": op(
        "What the node really sent and received",
        {"200": json_body({"type": "object"}, "the truth"), **ADMIN_DENIED},
        security=ADMIN,
    )
}


def node_openapi() -> Schema:
    """The description `lnchaos node` serves: every route of the node alone."""
    paths: Schema = {
        "/health": {
            "get": op(
                "Liveness",
                {
                    "200": json_body(obj({"status": "string"}), "ok"),
                    "503": json_body(obj({"status": "string"}), "failed: the journal failed"),
                },
            )
        },
        **copy.deepcopy(NETWORK_PATHS),
        **copy.deepcopy(LND_PATHS),
        "/openapi.json": {"get": op("This document", {"200": {"description": "OpenAPI 3"}})},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "lnchaos node", "version": "0.1.0"},
        "servers": [{"url": "http://127.0.0.1"}],
        "components": {"securitySchemes": copy.deepcopy(SECURITY_SCHEMES)},
        "paths": paths,
    }


NODE_OPENAPI: Schema = node_openapi()
