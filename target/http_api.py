"""The wallet's thin HTTP handlers: parse, authorise, call the service, answer JSON. No money logic
here. (The node's routes, /node/* and /admin/faults, are its own: target/node/network_http.py.)"""

from __future__ import annotations

import hmac
import re

from aiohttp import web

from .common.errors import (
    ApiError,
    add_route,
    bad_request,
    guard_of,
    json_error,
    read_json_object,
    require_int,
    require_str,
)
from .common.journal import JournalFailed, JournalFull
from .common.json_body import json_response
from .common.server import FAIL_STOP
from .config import FixMode
from .ledger import LimitReached, now_ms
from .metrics import CONTENT_TYPE_LATEST
from .openapi import BALANCE_HEADER, OPENAPI_DOC
from .state import STATE, TargetState

HEX64 = re.compile(r"^[0-9a-f]{64}$")
ID_RE = re.compile(r"^[0-9a-f]{32}$")
IDEMPOTENCY_KEY_MAX = 255
PAYMENT_REQUEST_MAX = 2048


def state_of(request: web.Request) -> TargetState:
    return request.app[STATE]


def require_admin(request: web.Request) -> TargetState:
    state = state_of(request)
    given = request.headers.get("X-Admin-Token", "")
    if not given or not hmac.compare_digest(given.encode(), state.admin_token.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong X-Admin-Token")
    return state


def path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_RE.match(value):
        # Same answer as a wrong key: an id's existence is not revealed without its key.
        raise ApiError(401, "unauthorized", "unknown wallet or wrong X-Api-Key")
    return value


def fail_stop_gate(request: web.Request) -> web.StreamResponse | None:
    """Once the journal failed (the process is stopping) nothing is answered from memory."""
    fail_stop = request.app.get(FAIL_STOP)
    if fail_stop is not None and fail_stop.stopping:
        return json_error(503, "journal_failed", "the target is stopping: its journal failed")
    return None


def refusal_of(err: Exception) -> web.StreamResponse | None:
    """Fail-stop and back-pressure as clear 503s: a write the journal or a memory limit refused
    moved nothing."""
    if isinstance(err, JournalFailed):
        return json_error(503, "journal_failed", "the journal failed; the target is stopping")
    if isinstance(err, JournalFull):
        return json_error(503, "journal_busy", "too many writes wait for the disk; retry later")
    if isinstance(err, LimitReached):
        return json_error(503, err.code, err.message)
    return None


# What wraps each of the target's handlers: JSON errors, with the fail-stop and back-pressure
# refusals.
wallet_guard = guard_of(refusal_of, fail_stop_gate)


# ---- wallet API ----------------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    state = state_of(request)
    ok = state.ledger.journal.failed is None and state.node_ok()
    body = {"status": "ok" if ok else "failed", "fix": str(state.payouts.fix)}
    return web.json_response(body, status=200 if ok else 503)


async def create_wallet(request: web.Request) -> web.Response:
    state = state_of(request)
    body = await read_json_object(request)
    limit = state.wallet_settings.max_wallet_balance_msat
    balance_msat = require_int(body, "balance_msat", minimum=1, maximum=limit)
    wallet_id, api_key = await state.payouts.create_wallet(balance_msat)
    answer = {"wallet_id": wallet_id, "api_key": api_key, "balance_msat": balance_msat}
    return json_response(answer, status=201)


async def get_wallet(request: web.Request) -> web.Response:
    state = state_of(request)
    wallet_id = path_id(request, "wallet_id")
    await state.payouts.authorize(wallet_id, request.headers.get("X-Api-Key"))
    return json_response(state.payouts.wallet_view(wallet_id))


async def create_payout(request: web.Request) -> web.Response:
    state = state_of(request)
    wallet_id = path_id(request, "wallet_id")
    await state.payouts.authorize(wallet_id, request.headers.get("X-Api-Key"))
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX:
        raise bad_request("invalid_idempotency_key", "Idempotency-Key must be 1 to 255 characters")
    body = await read_json_object(request)
    payment_request = require_str(body, "payment_request", max_len=PAYMENT_REQUEST_MAX)
    answer = await state.payouts.pay(wallet_id, payment_request, idempotency_key)
    # The wallet's balance as committed now, beside the (stored, replayable) answer: a retry
    # with the same key gets the first answer back, and this header tells its client what the
    # retry itself did to the balance without another request.
    balance_msat = state.payouts.wallet_view(wallet_id)["balance_msat"]
    headers = {BALANCE_HEADER: str(balance_msat)}
    return json_response(answer.body, status=answer.status, headers=headers)


async def get_payout(request: web.Request) -> web.Response:
    state = state_of(request)
    api_key = request.headers.get("X-Api-Key")
    if not api_key:
        # No credentials at all: 401 before any lookup, the same for every id, so it reveals
        # nothing; a wrong key gets the 404 of a missing payout below.
        raise ApiError(401, "unauthorized", "missing X-Api-Key")
    payout_id = request.match_info["payout_id"]
    payout = await state.ledger.payout(payout_id) if ID_RE.match(payout_id) else None
    if payout is None or payout.committed is None:  # not yet durable: not yet there
        raise ApiError(404, "not_found", "no such payout for this X-Api-Key")
    try:
        await state.payouts.authorize(payout.wallet_id, api_key)
    except ApiError:
        # Another wallet's payout looks exactly like a missing one.
        raise ApiError(404, "not_found", "no such payout for this X-Api-Key") from None
    return json_response(payout.committed)  # as committed, never ahead of the disk


# ---- admin --------------------------------------------------------------------------------------


async def get_fix(request: web.Request) -> web.Response:
    state = require_admin(request)
    return web.json_response({"mode": str(state.payouts.fix)})


async def put_fix(request: web.Request) -> web.Response:
    state = require_admin(request)
    body = await read_json_object(request)
    mode = body.get("mode")
    if mode not in [m.value for m in FixMode]:
        raise bad_request("invalid_mode", "mode must be one of off, rollback, on", field="mode")
    state.payouts.fix = FixMode(str(mode))
    return web.json_response({"mode": str(state.payouts.fix)})


# Bounds of the reconciliation's query parameters: since_ms is a time in ms since the epoch.
SINCE_MS_MAX = 2**53
STUCK_AFTER_S_MAX = 365 * 24 * 3600.0


async def get_reconciliation(request: web.Request) -> web.Response:
    """The reconciliation. Query (both optional): `since_ms` scopes the kinds to the payment
    hashes of a run (the older ones go to `before_run`); `stuck_after_s` overrides the target's
    setting (0: every pending payout counts as stuck). The Prometheus gauges are set only by the
    unscoped, default answer, so a run's scoped view never overwrites them."""
    state = require_admin(request)
    since_ms = _query_number(request, "since_ms", int, 0, SINCE_MS_MAX)
    stuck_after_s = _query_number(request, "stuck_after_s", float, 0.0, STUCK_AFTER_S_MAX)
    default_view = since_ms is None and stuck_after_s is None
    if stuck_after_s is None:
        stuck_after_s = state.wallet_settings.stuck_after_s
    result = await state.reconciler.report(
        stuck_after_s=stuck_after_s,
        metrics=state.metrics if default_view else None,
        since_ms=since_ms,
    )
    result["node"] = await state.node_totals()
    return web.json_response(result)


def _query_number(
    request: web.Request, name: str, kind: type[int] | type[float], low: float, high: float
) -> int | float | None:
    text = request.query.get(name)
    if text is None:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise bad_request("invalid_query", f"{name} must be a number", field=name) from None
    if not low <= value <= high or value != value:  # value != value: NaN
        raise bad_request("invalid_query", f"{name} must be within [{low}, {high}]", field=name)
    return value


async def metrics(request: web.Request) -> web.Response:
    state = state_of(request)
    pending = state.ledger.pending.values()
    state.metrics.observe_pending((payout.created_ms for payout in pending), now_ms())
    body = state.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI_DOC])


def add_routes(app: web.Application) -> None:
    add_route(app, "GET", "/health", health)
    add_route(app, "POST", "/api/wallets", create_wallet)
    add_route(app, "GET", "/api/wallets/{wallet_id}", get_wallet)
    add_route(app, "POST", "/api/wallets/{wallet_id}/payouts", create_payout)
    add_route(app, "GET", "/api/payouts/{payout_id}", get_payout)
    add_route(app, "GET", "/admin/fix", get_fix)
    add_route(app, "PUT", "/admin/fix", put_fix)
    add_route(app, "GET", "/admin/reconciliation", get_reconciliation)
    add_route(app, "GET", "/metrics", metrics)
    add_route(app, "GET", "/openapi.json", openapi)
