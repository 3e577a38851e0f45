"""The wallet client: one HTTP call per operation, its outcome as ok / fail / info (Jepsen's).

- ok: the payout succeeded (200);
- fail: it definitely did not happen (502 payment_failed);
- info: unknown for now: a Lightning timeout (504 under fix off/rollback, 202 pending under fix
  on). An info outcome is never guessed; the users resolve it against the node's truth.

With the crash fault on (`chaos_connection_errors`, locustfiles/crash.py) a request that got no
answer at all (a connection error: the target was killed) is the chaos, not a failure: it is
marked successful and recorded as a FAULT event `target down`; its outcome stays unknown.

Requests are named for Locust's statistics with the load phase, e.g. `POST /payouts [spike]`.
Injected faults are additionally counted in the suite's own table (counters.py, type FAULT,
`timeout [spike]`), never as Locust requests (Locust's totals stay HTTP only): they are what
the chaos run injects, not a defect of the wallet. Expected business answers
(502, 504, 202) are marked as successful requests; anything else is a failed request.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from locust.contrib.fasthttp import FastHttpSession

from lnchaos.checker import answers
from locustfiles import counters, recording, strict_reading
from locustfiles.wallets.base import Invoice, PayoutResult, Wallet  # the adapter contract's

# a wallet read that got no answer under the crash fault: asked again until the target is back
READ_AFTER_CRASH_POLL_S = 0.25
READ_AFTER_CRASH_MAX_S = 30.0
READ_AFTER_CRASH_POLLS_MAX = int(READ_AFTER_CRASH_MAX_S / READ_AFTER_CRASH_POLL_S)

FINAL_PAYOUT_STATUSES = ("succeeded", "failed")
# lnchaos's payout answers carry the wallet's balance as committed when the answer was given
# (target/openapi.py): a retry's body is the first answer replayed, this header is its own
BALANCE_HEADER = "X-Wallet-Balance-Msat"
FINAL_NODE_STATUSES = ("succeeded", "failed", "unknown")


class WalletClient:
    # its payouts and reads are recorded here, with what only its API says (a balance header);
    # an adapter without this is recorded by locustfiles/wallets/recorded.py
    records_history = True

    def __init__(self, session: FastHttpSession, request_event: Any) -> None:
        self.session = session
        self.request_event = request_event
        self.chaos_connection_errors = False  # the crash fault is on: no answer is its doing
        self._crashed_last = False  # the last call got no answer, the crash fault's doing

    def create_wallet(self, balance_msat: int) -> Wallet | None:
        body = self._json_call(
            "POST", "/api/wallets", "POST /api/wallets", (201,), json={"balance_msat": balance_msat}
        )
        if body is None:
            return None
        return Wallet(str(body["wallet_id"]), str(body["api_key"]), int(body["balance_msat"]))

    def create_invoice(self, amount_msat: int) -> Invoice | None:
        body = self._json_call(
            "POST",
            "/node/invoices",
            "POST /node/invoices",
            (201,),
            json={"amount_msat": amount_msat},
        )
        if body is None:
            return None
        return Invoice(str(body["payment_request"]), str(body["payment_hash"]), amount_msat)

    def pay(
        self,
        wallet: Wallet,
        invoice: Invoice,
        idempotency_key: str,
        phase: str,
        *,
        retry: bool = False,
        label: str = "",
        refusals: tuple[str, ...] = (),
    ) -> PayoutResult:
        """One payout request. `refusals`: 409 error codes this caller expects (the payout
        moved nothing): kind "refused", a successful request. `label` names the traffic class
        in Locust's statistics (`POST /payouts (shared) [spike]`)."""
        tag = f" ({label})" if label else ""
        name = "POST /payouts (retry)" if retry else f"POST /payouts{tag} [{phase}]"
        headers = {"X-Api-Key": wallet.api_key, "Idempotency-Key": idempotency_key}
        fields = recording.payout_sent(
            wallet.wallet_id, invoice.payment_hash, invoice.amount_msat, idempotency_key, phase
        )
        started = time.perf_counter()
        with self.session.post(
            f"/api/wallets/{wallet.wallet_id}/payouts",
            name=name,
            json={"payment_request": invoice.payment_request},
            headers=headers,
            catch_response=True,
        ) as response:
            latency_ms = (time.perf_counter() - started) * 1000
            body = _json_or_empty(response)
            result = _payout_result(response, body, latency_ms, refusals)
            if result.kind == "error" and not self.crashed(response, latency_ms):
                response.failure(
                    f"unexpected answer to a payout: HTTP {result.http_status} {body or ''}"
                )
            else:
                response.success()
        _record_payout_answer(wallet, result, body, fields)
        if not retry and result.outcome in ("timeout", "pending", "failed"):
            fault = "timeout" if result.kind == "info" else "payment_failed"
            self._fire_fault(f"{fault} [{phase}]", latency_ms)
        return result

    def get_wallet(self, wallet: Wallet) -> dict[str, Any] | None:
        """The wallet's view; under the crash fault a read that got no answer is asked again
        once the target is back (a read moves nothing), bounded: an hour-long soak left ~4000
        payouts to the final audit, past its bound, most of them read while the target was
        down."""
        view = self._get_wallet_once(wallet)
        deadline = time.monotonic() + READ_AFTER_CRASH_MAX_S
        for _ in range(READ_AFTER_CRASH_POLLS_MAX):
            if view is not None or not self._crashed_last or time.monotonic() >= deadline:
                break
            gevent.sleep(READ_AFTER_CRASH_POLL_S)
            view = self._get_wallet_once(wallet)
        return view

    def _get_wallet_once(self, wallet: Wallet) -> dict[str, Any] | None:
        view = self._json_call(
            "GET",
            f"/api/wallets/{wallet.wallet_id}",
            "GET /api/wallets/{id}",
            (200,),
            headers={"X-Api-Key": wallet.api_key},
        )
        if view is not None:
            strict_reading.read(
                "wallet_view", view, f"GET /api/wallets/{wallet.wallet_id}", wallet=wallet.wallet_id
            )
            recording.wallet_read(wallet.wallet_id, view)
        return view

    def get_payout(self, wallet: Wallet, payout_id: str) -> dict[str, Any] | None:
        payout = self._json_call(
            "GET",
            f"/api/payouts/{payout_id}",
            "GET /api/payouts/{id} (poll)",
            (200,),
            headers={"X-Api-Key": wallet.api_key},
        )
        if payout is not None:
            strict_reading.read(
                answers.payout_view_shape(payout),
                payout,
                f"GET /api/payouts/{payout_id}",
                wallet=wallet.wallet_id,
                payout_id=payout_id,
            )
            recording.payout_read(wallet.wallet_id, payout_id, payout)
        return payout

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        node = self._json_call(
            "GET", f"/node/payments/{payment_hash}", "GET /node/payments/{hash} (poll)", (200,)
        )
        if node is not None:
            recording.node_read(payment_hash, node)
        return node

    def lookup_node_payments(self, payment_hashes: list[str]) -> list[dict[str, Any]] | None:
        """The node's truth of many hashes in one request (POST /node/payments/lookup), one
        record per hash in the order asked; None when the node did not answer with them all."""
        body = self._json_call(
            "POST",
            "/node/payments/lookup",
            "POST /node/payments/lookup (checks)",
            (200,),
            json={"payment_hashes": payment_hashes},
        )
        records = (body or {}).get("payments")
        if not isinstance(records, list) or len(records) != len(payment_hashes):
            return None
        found = [r if isinstance(r, dict) else {} for r in records]
        for payment_hash, record in zip(payment_hashes, found, strict=True):
            recording.node_read(payment_hash, record)
        return found

    def _json_call(
        self,
        method: str,
        path: str,
        name: str,
        ok_statuses: tuple[int, ...],
        **kwargs: Any,
    ) -> dict[str, Any] | None:
        self._crashed_last = False
        with self.session.request(method, path, name=name, catch_response=True, **kwargs) as resp:
            body = _json_or_empty(resp)
            if resp.status_code in ok_statuses and body:
                resp.success()
                return body
            if self.crashed(resp, 0.0):
                self._crashed_last = True
                resp.success()
                return None
            resp.failure(f"HTTP {resp.status_code} {body or (resp.text or '')[:200]}")
            return None

    def crashed(self, response: Any, latency_ms: float) -> bool:
        """No answer while the crash fault is on: a FAULT event, not a failed request."""
        if not self.chaos_connection_errors or int(response.status_code or 0) != 0:
            return False
        self._fire_fault("target down", latency_ms)
        return True

    def _fire_fault(self, name: str, latency_ms: float) -> None:
        counters.record_fault(name, latency_ms)


def _payout_result(
    response: Any, body: dict[str, Any], latency_ms: float, refusals: tuple[str, ...]
) -> PayoutResult:
    """A payout's answer as ok / fail / info (see the docstring), "refused" for a 409 its caller
    expects, else "error"."""
    status = response.status_code
    error = body.get("error")
    result = PayoutResult(
        kind="error",
        outcome="error",
        http_status=status,
        latency_ms=latency_ms,
        payout_id=body.get("payout_id"),
        payout_status=body.get("status"),
        # the service's claims as whole msat; a missing or malformed one is recorded as
        # malformed_answer (_record_payout_answer; never read as 0: here 0 is a placeholder)
        amount_msat=answers.msat_or_none(body, "amount_msat") or 0,
        fee_msat=answers.msat_or_none(body, "fee_msat") or 0,
        payment_hash=body.get("payment_hash"),
        body=body,
        balance_now_msat=_int_header(response, BALANCE_HEADER),
    )
    if status == 200 and body.get("status") == "succeeded":
        result.kind, result.outcome = "ok", "succeeded"
    elif status == 502 and error == "payment_failed":
        result.kind, result.outcome = "fail", "failed"
    elif status == 504 and error == "payment_timeout":
        result.kind, result.outcome = "info", "timeout"
    elif status == 202 and body.get("status") == "pending":
        result.kind, result.outcome = "info", "pending"
    elif status == 409 and error in refusals:
        result.kind, result.outcome = "refused", "rejected"
    elif status == 409 and error == "insufficient_funds":
        result.outcome = "rejected"
    return result


def _record_payout_answer(
    wallet: Wallet, result: PayoutResult, body: dict[str, Any], fields: dict[str, Any]
) -> None:
    """A payout's answer read strictly (a judged one: its promised fields) and into the history."""
    if result.kind in ("ok", "fail", "info"):
        strict_reading.read(
            answers.payout_answer_shape(body),
            body,
            f"POST /api/wallets/{wallet.wallet_id}/payouts",
            http=result.http_status,
            payout_id=result.payout_id,
            **fields,
        )
    recording.payout_answered(result, fields)


def _json_or_empty(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except Exception:  # a body that is not JSON: the caller reports the request
        return {}
    return body if isinstance(body, dict) else {}


def _int_header(response: Any, name: str) -> int | None:
    """A header holding a whole number of msat, else None (absent or malformed: not a claim)."""
    headers = getattr(response, "headers", None)
    value = headers.get(name) if headers is not None else None
    if not isinstance(value, str) or not (value.isascii() and value.isdigit()) or len(value) > 20:
        return None
    return int(value)
