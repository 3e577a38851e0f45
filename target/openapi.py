"""The OpenAPI description of the wallet's routes; the node's are described beside it
(target/node/openapi.py), and the app factory serves both as one document."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .common.openapi import ADMIN, ADMIN_DENIED, BAD, ERROR, SECURITY_SCHEMES
from .common.openapi import json_body as _json
from .common.openapi import obj as _obj
from .common.openapi import op as _op
from .common.openapi import path_param as _path

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
# On every payout answer: the wallet's balance as committed when the answer was given (an
# idempotent replay's body is the first answer's, this header is now's)
BALANCE_HEADER = "X-Wallet-Balance-Msat"


def _payout_answer(description: str) -> dict[str, Any]:
    answer = _json(PAYOUT, description)
    answer["headers"] = {
        BALANCE_HEADER: {
            "description": "the wallet's committed balance when this answer was given",
            "schema": {"type": "integer", "minimum": 0},
        }
    }
    return answer


AUTH = {"401": _json(ERROR, "unknown wallet or wrong key")}
UNAVAILABLE = {
    "503": _json(
        ERROR,
        "refused, nothing moved: journal_busy (writes wait for the disk), a memory limit"
        " (too_many_payouts, too_many_pending, wallet_limit), node_unavailable; or"
        " journal_failed: the target is stopping (exit 74)",
    )
}

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "lnchaos target", "version": "0.1.0"},
    "servers": [{"url": "http://127.0.0.1"}],
    "components": {
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-Api-Key"},
            **SECURITY_SCHEMES,
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
                    "200": _payout_answer("succeeded"),
                    "202": _payout_answer("pending: the outcome is not known yet (fix on)"),
                    **BAD,
                    **AUTH,
                    "409": _json(
                        ERROR,
                        "nothing moved: insufficient_funds; request_in_progress (the same key"
                        " still running); payment_in_progress (another payout is paying this"
                        " invoice); invoice_already_paid (a payout paid it)",
                    ),
                    "422": _json(ERROR, "Idempotency-Key reused with another request"),
                    "502": _payout_answer("the payment failed"),
                    "504": _payout_answer("the payment timed out (fix off and rollback)"),
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
                    "401": _json(ERROR, "unauthorized: no X-Api-Key"),
                    "404": _json(
                        ERROR, "not found, not yet committed, or another wallet's (a wrong key)"
                    ),
                },
                security=API_KEY,
                params=[_path("payout_id")],
            )
        },
        "/admin/fix": {
            "get": _op(
                "Fix mode",
                {"200": _json(_obj({"mode": "string"}), "mode"), **ADMIN_DENIED},
                security=ADMIN,
            ),
            "put": _op(
                "Switch the fix mode at run time",
                {"200": _json(_obj({"mode": "string"}), "mode"), **BAD, **ADMIN_DENIED},
                body=_obj({"mode": "string"}, ["mode"]),
                security=ADMIN,
            ),
        },
        "/admin/reconciliation": {
            "get": _op(
                "Ledger against the node's truth, and conservation",
                {"200": _json({"type": "object"}, "the reconciliation"), **BAD, **ADMIN_DENIED},
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

# The whole description the target serves (GET /openapi.json): these wallet routes and its
# embedded node's, put together by the app factory (app.py), the one module that knows both.
OPENAPI_DOC: web.AppKey[dict[str, Any]] = web.AppKey("lnchaos_openapi", dict)
