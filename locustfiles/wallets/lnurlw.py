"""The LNURL-withdraw adapter (`--wallet-api lnurlw`): single-use links, LUD-03, paying through a
`lnchaos node` that judges them (accounting "authorisations", locustfiles/wallets/links.py).

- `open_link`: `POST /links {"amount_msat"}` at --host answers `{"link_id", "lnurl"}` (the
  reference service's own way, tests/adapters/withdraw_service.py; LUD-03 leaves how links are
  handed out to the service: for another service, subclass and override `open_link`);
- `withdraw`: LUD-03 as a wallet speaks it: `GET <lnurl>` answers the withdrawRequest
  (`callback`, `k1`, `maxWithdrawable`), then `GET <callback>?k1=...&pr=<invoice>` answers
  `{"status": "OK"}` or `{"status": "ERROR", "reason"}`;
- `get_link`: `GET <lnurl>` again: a withdrawRequest while the link may pay (open), an ERROR once
  it may not (used).
Invoices and the node's truth come from the node (--node-url), never from the service.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

from locust.contrib.fasthttp import FastHttpSession

from locustfiles.wallet_client import _json_or_empty
from locustfiles.wallets.base import CONTRACT_VERSION, Invoice, Link, PayoutResult
from locustfiles.wallets.links import LinkJudge


class LnurlWithdrawApi:
    contract = CONTRACT_VERSION
    name = "lnurlw"
    idempotent = False
    judged_by = "node"
    accounting = "authorisations"
    chaos_connection_errors = False
    judge = LinkJudge

    def __init__(self, session: FastHttpSession, node: FastHttpSession) -> None:
        self.session = session  # the service (Locust's host); absolute URLs too (lnurl, callback)
        self.node = node

    @classmethod
    def for_user(cls, user: Any) -> LnurlWithdrawApi:
        node_url = str(getattr(user.environment.parsed_options, "node_url", "") or "")
        if not node_url:
            raise ValueError("--wallet-api lnurlw needs --node-url")
        node = FastHttpSession(
            base_url=node_url.rstrip("/"),
            request_event=user.environment.events.request,
            user=user,
            network_timeout=user.network_timeout,
            connection_timeout=user.connection_timeout,
        )
        return cls(user.client, node)

    def open_link(self, amount_msat: int) -> Link | None:
        body = _get_json(
            self.session, "POST", "/links", "POST /links", json={"amount_msat": amount_msat}
        )
        if not body or not body.get("link_id") or not body.get("lnurl"):
            return None
        return Link(str(body["link_id"]), str(body["lnurl"]), amount_msat)

    def create_invoice(self, amount_msat: int) -> Invoice | None:
        body = _get_json(
            self.node,
            "POST",
            "/node/invoices",
            "POST /node/invoices",
            json={"amount_msat": amount_msat},
        )
        if not body:
            return None
        return Invoice(str(body["payment_request"]), str(body["payment_hash"]), amount_msat)

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        quoted = urllib.parse.quote(payment_hash, safe="")
        return _get_json(self.node, "GET", f"/node/payments/{quoted}", "GET /node/payments/{hash}")

    def get_link(self, link: Link) -> str | None:
        body = _get_json(self.session, "GET", link.url, "GET lnurlw (state)", ok=(200, 400, 404))
        if body is None:
            return None
        if body.get("tag") == "withdrawRequest":
            return "open"
        return "used" if str(body.get("status", "")).upper() == "ERROR" else None

    def withdraw(self, link: Link, invoice: Invoice, phase: str) -> PayoutResult:
        started = time.perf_counter()
        request = _get_json(
            self.session, "GET", link.url, f"GET lnurlw [{phase}]", ok=(200, 400, 404)
        )
        if request is None or request.get("tag") != "withdrawRequest":
            used = request is not None and str(request.get("status", "")).upper() == "ERROR"
            kind, outcome = ("refused", "rejected") if used else ("error", "error")
            return _result(kind, outcome, 200 if used else 0, started, request or {}, invoice)
        if int(request.get("maxWithdrawable") or 0) < invoice.amount_msat:
            return _result("error", "error", 200, started, request, invoice)
        callback = str(request.get("callback") or "")
        query = urllib.parse.urlencode({"k1": request.get("k1", ""), "pr": invoice.payment_request})
        url = callback + ("&" if "?" in callback else "?") + query
        with self.session.request(
            "GET", url, name=f"GET lnurlw callback [{phase}]", catch_response=True
        ) as resp:
            body = _json_or_empty(resp)
            status = str(body.get("status", "")).upper()
            if resp.status_code == 200 and status == "OK":
                kind, outcome = "ok", "succeeded"
            elif status == "ERROR":
                kind, outcome = "fail", "failed"  # LUD-03's error: status ERROR, any HTTP code
            elif resp.status_code == 0:
                kind, outcome = "info", "timeout"  # no answer: the payment's fate is unknown
            else:
                kind, outcome = "error", "error"
            if kind == "error":
                resp.failure(f"unexpected answer to a withdrawal: HTTP {resp.status_code} {body}")
            else:
                resp.success()
            return _result(kind, outcome, resp.status_code, started, body, invoice)


def _result(
    kind: str,
    outcome: str,
    http_status: int,
    started: float,
    body: dict[str, Any],
    invoice: Invoice,
) -> PayoutResult:
    return PayoutResult(
        kind=kind,
        outcome=outcome,
        http_status=http_status,
        latency_ms=(time.perf_counter() - started) * 1000,
        payout_id=invoice.payment_hash,
        payout_status=str(body.get("status") or body.get("tag") or ""),
        amount_msat=invoice.amount_msat,
        payment_hash=invoice.payment_hash,
        body=body,
    )


def _get_json(
    session: FastHttpSession,
    method: str,
    path: str,
    name: str,
    ok: tuple[int, ...] = (200, 201),
    **kwargs: Any,
) -> dict[str, Any] | None:
    """The JSON object of an answer with an `ok` status, else None (a failed request)."""
    with session.request(method, path, name=name, catch_response=True, **kwargs) as resp:
        body = _json_or_empty(resp)
        if resp.status_code in ok and body:
            resp.success()
            return body
        resp.failure(f"HTTP {resp.status_code} {body or (resp.text or '')[:200]}")
        return None
