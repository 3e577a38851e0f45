"""An lnchaos adapter written outside lnchaos: ACME Payouts' API (here: the embedded target's
wallet API, which ACME happens to share) in the terms of lnchaos' adapter contract, version 1.

It imports only the contract (locustfiles/wallets/base.py) and reports every request to Locust
through the user's own HTTP session (`user.client`), named `acme ...` in Locust's statistics.
"""

from __future__ import annotations

import time
from typing import Any

from locustfiles.wallets.base import Invoice, PayoutResult, Wallet

# answers the payer expects, as (kind, outcome): anything else is an "error" (a failed request)
OUTCOMES = {
    (200, "succeeded"): ("ok", "succeeded"),
    (502, "payment_failed"): ("fail", "failed"),
    (504, "payment_timeout"): ("info", "timeout"),
    (202, "pending"): ("info", "pending"),
}


class AcmeWalletApi:
    contract = 1  # the contract version this adapter was written for
    name = "acme"
    idempotent = True  # ACME honours Idempotency-Key
    judged_by = "target"  # an lnchaos target's reconciliation judges it (--admin-token)
    accounting = "balance"

    def __init__(self, session: Any) -> None:
        self.session = session
        self.chaos_connection_errors = False

    @classmethod
    def for_user(cls, user: Any) -> AcmeWalletApi:
        return cls(user.client)

    def _call(self, method: str, path: str, name: str, ok: int, **kw: Any) -> dict | None:
        with self.session.request(method, path, name=name, catch_response=True, **kw) as resp:
            body = _json(resp)
            if resp.status_code == ok and body:
                resp.success()
                return body
            resp.failure(f"HTTP {resp.status_code}")
            return None

    def create_wallet(self, balance_msat: int) -> Wallet | None:
        body = self._call(
            "POST", "/api/wallets", "acme open", 201, json={"balance_msat": balance_msat}
        )
        if body is None:
            return None
        return Wallet(body["wallet_id"], body["api_key"], int(body["balance_msat"]))

    def create_invoice(self, amount_msat: int) -> Invoice | None:
        body = self._call(
            "POST", "/node/invoices", "acme invoice", 201, json={"amount_msat": amount_msat}
        )
        if body is None:
            return None
        return Invoice(body["payment_request"], body["payment_hash"], amount_msat)

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
        started = time.perf_counter()
        with self.session.post(
            f"/api/wallets/{wallet.wallet_id}/payouts",
            name="acme pay (retry)" if retry else f"acme pay [{phase}]",
            json={"payment_request": invoice.payment_request},
            headers={"X-Api-Key": wallet.api_key, "Idempotency-Key": idempotency_key},
            catch_response=True,
        ) as resp:
            body = _json(resp)
            word = body.get("error") or body.get("status")
            kind, outcome = OUTCOMES.get((resp.status_code, word), ("error", "error"))
            if resp.status_code == 409 and word in refusals:
                kind, outcome = "refused", "rejected"
            if kind == "error":
                resp.failure(f"unexpected answer: HTTP {resp.status_code} {body}")
            else:
                resp.success()
        return PayoutResult(
            kind=kind,
            outcome=outcome,
            http_status=resp.status_code,
            latency_ms=(time.perf_counter() - started) * 1000,
            payout_id=body.get("payout_id"),
            payout_status=body.get("status"),
            amount_msat=int(body.get("amount_msat") or 0),
            fee_msat=int(body.get("fee_msat") or 0),
            payment_hash=body.get("payment_hash"),
            body=body,
        )

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        return self._call("GET", f"/node/payments/{payment_hash}", "acme node truth", 200)

    def get_payout(self, wallet: Wallet, payout_id: str) -> dict[str, Any] | None:
        headers = {"X-Api-Key": wallet.api_key}
        return self._call("GET", f"/api/payouts/{payout_id}", "acme payout", 200, headers=headers)

    def get_wallet(self, wallet: Wallet) -> dict[str, Any] | None:
        path = f"/api/wallets/{wallet.wallet_id}"
        return self._call("GET", path, "acme wallet", 200, headers={"X-Api-Key": wallet.api_key})

    def paid(self, wallet: Wallet) -> list[dict[str, Any]] | None:
        return None  # ACME lists no payouts; the target's reconciliation covers them


def _json(resp: Any) -> dict[str, Any]:
    try:
        body = resp.json()
    except Exception:  # not JSON: the caller reports the request
        return {}
    return body if isinstance(body, dict) else {}
