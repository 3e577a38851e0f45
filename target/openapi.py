"""The OpenAPI description of every route of the target."""

from __future__ import annotations

from typing import Any


def _obj(props: dict[str, str], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {k: {"type": v} for k, v in props.items()},
    }
    if required:
        schema["required"] = required
    return schema


ERROR = _obj({"error": "string", "message": "string"}, ["error", "message"])
PAYOUT = _obj(
    {
        "payout_id": "string",
        "wallet_id": "string",
        "status": "string",
        "amount_msat": "integer",
        "fee_msat": "integer",
        "payment_hash": "string",
    },
    ["payout_id", "status"],
)
API_KEY = [{"apiKey": []}]
ADMIN = [{"adminToken": []}]


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    summary: str,
    responses: dict[str, dict[str, Any]],
    *,
    body: dict[str, Any] | None = None,
    security: list[dict[str, list[str]]] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if security is not None:
        op["security"] = security
    if params:
        op["parameters"] = params
    return op


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


BAD = {"400": _json(ERROR, "bad input; nothing moved")}
AUTH = {"401": _json(ERROR, "unknown wallet or wrong key")}
UNAVAILABLE = {
    "503": _json(
        ERROR,
        "refused, nothing moved: journal_busy (writes wait for the disk), a memory limit"
        " (too_many_payouts, too_many_pending, wallet_limit), node_unavailable; or"
        " journal_failed: the target is stopping (exit 74)",
    )
}
FAULTS = {"type": "object", "additionalProperties": {"type": "number"}}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "lnchaos target", "version": "0.1.0"},
    "servers": [{"url": "http://127.0.0.1"}],
    "components": {
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            "adminToken": {"type": "apiKey", "in": "header", "name": "X-Admin-Token"},
        }
    },
    "paths": {
        "/health": {"get": _op("Liveness", {"200": _json(_obj({"status": "string"}), "ok")})},
        "/api/wallets": {
            "post": _op(
                "Create and fund a wallet",
                {
                    "201": _json(
                        _obj(
                            {"wallet_id": "string", "api_key": "string", "balance_msat": "integer"}
                        ),
                        "created",
                    ),
                    **BAD,
                    "409": _json(ERROR, "deposit_limit: all deposits would exceed 21M BTC"),
                    **UNAVAILABLE,
                },
                body=_obj({"balance_msat": "integer"}, ["balance_msat"]),
            )
        },
        "/api/wallets/{wallet_id}": {
            "get": _op(
                "A wallet's balances",
                {
                    "200": _json(
                        _obj(
                            {
                                "wallet_id": "string",
                                "balance_msat": "integer",
                                "reserved_msat": "integer",
                            }  # fmt: skip
                        ),
                        "the wallet as committed to disk",
                    ),
                    **AUTH,
                },
                security=API_KEY,
                params=[_path("wallet_id")],
            )
        },
        "/api/wallets/{wallet_id}/payouts": {
            "post": _op(
                "Pay a BOLT11 invoice from the wallet (Idempotency-Key header optional)",
                {
                    "200": _json(PAYOUT, "succeeded"),
                    "202": _json(PAYOUT, "pending: the outcome is not known yet (fix on)"),
                    **BAD,
                    **AUTH,
                    "409": _json(
                        ERROR,
                        "nothing moved: insufficient_funds; request_in_progress (the same key"
                        " still running); payment_in_progress (another payout is paying this"
                        " invoice); invoice_already_paid (a payout paid it)",
                    ),
                    "422": _json(ERROR, "Idempotency-Key reused with another request"),
                    "502": _json(PAYOUT, "the payment failed"),
                    "504": _json(PAYOUT, "the payment timed out (fix off and rollback)"),
                    **UNAVAILABLE,
                },
                body=_obj({"payment_request": "string"}, ["payment_request"]),
                security=API_KEY,
                params=[
                    _path("wallet_id"),
                    {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}},
                ],
            )
        },
        "/api/payouts/{payout_id}": {
            "get": _op(
                "A payout's state",
                {
                    "200": _json(PAYOUT, "the payout as committed to disk"),
                    "404": _json(ERROR, "not found (or not yet committed)"),
                },
                security=API_KEY,
                params=[_path("payout_id")],
            )
        },
        "/node/invoices": {
            "post": _op(
                "An invoice from a payee in the simulated network",
                {
                    "201": _json(
                        _obj({"payment_request": "string", "payment_hash": "string"}), "created"
                    ),
                    **BAD,
                },
                body=_obj({"amount_msat": "integer"}, ["amount_msat"]),
            )
        },
        "/node/payments/{payment_hash}": {
            "get": _op(
                "The node's truth about a payment",
                {
                    "200": _json(
                        _obj(
                            {
                                "payment_hash": "string",
                                "status": "string",
                                "amount_msat": "integer",
                                "fee_msat": "integer",
                                "failure_reason": "string",
                                "attempt_id": "integer",
                                "attempts": "integer",
                            }  # fmt: skip
                        ),
                        "in_flight, succeeded, failed or unknown",
                    ),
                    **BAD,
                },
                params=[_path("payment_hash")],
            )
        },
        "/admin/faults": {
            "get": _op("Fault settings", {"200": _json(FAULTS, "settings")}, security=ADMIN),
            "put": _op(
                "Change fault settings (any subset)",
                {"200": _json(FAULTS, "new settings"), **BAD},
                body=FAULTS,
                security=ADMIN,
            ),
        },
        "/admin/seed": {
            "put": _op(
                "Seed the node's fault draws from now on",
                {"200": _json(_obj({"seed": "integer"}), "seed"), **BAD},
                body=_obj({"seed": "integer"}, ["seed"]),
                security=ADMIN,
            ),
        },
        "/admin/fix": {
            "get": _op(
                "Fix mode", {"200": _json(_obj({"mode": "string"}), "mode")}, security=ADMIN
            ),
            "put": _op(
                "Switch the fix mode at run time",
                {"200": _json(_obj({"mode": "string"}), "mode"), **BAD},
                body=_obj({"mode": "string"}, ["mode"]),
                security=ADMIN,
            ),
        },
        "/admin/reconciliation": {
            "get": _op(
                "Ledger against the node's truth, and conservation",
                {"200": _json({"type": "object"}, "the reconciliation"), **BAD},
                security=ADMIN,
                params=[
                    {
                        "name": "since_ms",
                        "in": "query",
                        "description": "scope the kinds to payment hashes whose newest payout "
                        "was created at or after this time (ms, the target's clock: now_ms); "
                        "older ones are reported in before_run",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                    {
                        "name": "stuck_after_s",
                        "in": "query",
                        "description": "override the target's stuck_after_s (0: every pending "
                        "payout is stuck)",
                        "schema": {"type": "number", "minimum": 0},
                    },
                ],
            )
        },
        "/metrics": {"get": _op("Prometheus metrics", {"200": {"description": "text format"}})},
        "/openapi.json": {"get": _op("This document", {"200": {"description": "OpenAPI 3"}})},
    },
}


# ---- LND's REST API on the node mock (target/node/lnd_rest.py; LND's own JSON shapes) ----------

MACAROON = [{"macaroon": []}]
OPENAPI["components"]["securitySchemes"]["macaroon"] = {
    "type": "apiKey",
    "in": "header",
    "name": "Grpc-Metadata-macaroon",
}
LND_OK = {"200": _json({"type": "object"}, "as LND answers"), "401": _json({}, "no macaroon")}
LND_STREAM = {
    "200": {"description": 'newline-delimited JSON, one {"result": ...} per update'},
    "401": _json({}, "no macaroon"),
}
LND_ROUTES: dict[str, tuple[str, str, dict[str, Any], list[str]]] = {
    # path: (method, summary, responses, path parameters)
    "/v1/getinfo": ("get", "GetInfo", LND_OK, []),
    "/v1/balance/channels": ("get", "ChannelBalance", LND_OK, []),
    "/v1/invoices": ("post", "AddInvoice", LND_OK, []),
    "/v1/invoice/{r_hash_str}": ("get", "LookupInvoice", LND_OK, ["r_hash_str"]),
    "/v1/invoices/subscribe": ("get", "SubscribeInvoices", LND_STREAM, []),
    "/v1/payreq/{pay_req}": ("get", "DecodePayReq", LND_OK, ["pay_req"]),
    "/v1/payments": ("get", "ListPayments", LND_OK, []),
    "/v2/router/send": ("post", "SendPaymentV2", LND_STREAM, []),
    "/v2/router/track/{payment_hash}": ("get", "TrackPaymentV2", LND_STREAM, ["payment_hash"]),
    "/v2/invoices/settle": ("post", "SettleInvoice (hold invoices)", LND_OK, []),
    "/v2/invoices/cancel": ("post", "CancelInvoice (hold invoices)", LND_OK, []),
}
for _route, (_method, _summary, _responses, _params) in LND_ROUTES.items():
    OPENAPI["paths"][_route] = {
        _method: _op(
            _summary,
            _responses,
            security=MACAROON,
            params=[_path(name) for name in _params],
        )
    }
OPENAPI["paths"]["/admin/network/pay"] = {
    "post": _op(
        "The network pays one of the node's own invoices",
        {
            "200": _json({"type": "object"}, "settled"),
            "202": _json({"type": "object"}, "accepted (a hold invoice)"),
            **BAD,
        },
        body=_obj({"payment_request": "string", "amount_msat": "integer"}, ["payment_request"]),
        security=ADMIN,
    )
}
OPENAPI["paths"]["/admin/network/truth"] = {
    "get": _op(
        "What the node really sent and received",
        {"200": _json({"type": "object"}, "the truth")},
        security=ADMIN,
    )
}
