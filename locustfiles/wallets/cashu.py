"""The Cashu adapter (`--wallet-api cashu`): a Nutshell mint (or any mint speaking NUT-00..08)
at --host, paying through a `lnchaos node` that judges its melts (accounting "proofs",
locustfiles/wallets/melts.py).

- `mint_proofs(amount_sat)`: NUT-04: a mint quote, its invoice paid by the node's network
  (`POST <node>/admin/network/pay`, the node's admin token), the quote polled (bounded) until
  PAID, then blinded outputs signed and unblinded into proofs (cashu_crypto.py);
- `melt_quote(invoice)`, `melt(quote, proofs, phase)`: NUT-05, with blank outputs for the
  change of the fee reserve (NUT-08);
- `proof_states(ys)`, `get_melt_quote(quote_id)`: NUT-07 and the quote's state.
Invoices and the node's truth come from the node (--node-url), never from the mint.
"""

from __future__ import annotations

import math
import time
import urllib.parse
from typing import Any

import gevent
from locust.contrib.fasthttp import FastHttpSession

from locustfiles.wallet_client import _json_or_empty
from locustfiles.wallets.base import CONTRACT_VERSION, Invoice, PayoutResult
from locustfiles.wallets.cashu_crypto import Blinded, blind, split, unblind, y_of
from locustfiles.wallets.melts import MeltJudge

FUNDED_WAIT_S = 30.0
FUNDED_POLL_S = 0.25
FUNDED_MAX_POLLS = int(FUNDED_WAIT_S / FUNDED_POLL_S) + 1
MELT_STATE = {"PAID": ("ok", "succeeded"), "PENDING": ("info", "pending")}


class CashuMintApi:
    contract = CONTRACT_VERSION
    name = "cashu"
    idempotent = False
    judged_by = "node"
    accounting = "proofs"
    chaos_connection_errors = False
    judge = MeltJudge

    def __init__(self, session: FastHttpSession, node: FastHttpSession, token: str) -> None:
        self.session = session  # the mint (Locust's host)
        self.node = node
        self.node_admin_token = token
        self.keyset: tuple[str, dict[str, str]] | None = None  # (id, amount -> key)

    @classmethod
    def for_user(cls, user: Any) -> CashuMintApi:
        options = user.environment.parsed_options
        node_url = str(getattr(options, "node_url", "") or "").rstrip("/")
        token = str(getattr(options, "node_admin_token", "") or "")
        if not node_url or not token:
            raise ValueError("--wallet-api cashu needs --node-url and --node-admin-token")
        node = FastHttpSession(
            base_url=node_url,
            request_event=user.environment.events.request,
            user=user,
            network_timeout=user.network_timeout,
            connection_timeout=user.connection_timeout,
        )
        return cls(user.client, node, token)

    # --- the node ---
    def create_invoice(self, amount_msat: int) -> Invoice | None:
        amount = {"amount_msat": amount_msat}
        body = _call(self.node, "POST", "/node/invoices", "POST /node/invoices", json=amount)
        if not body:
            return None
        return Invoice(str(body["payment_request"]), str(body["payment_hash"]), amount_msat)

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        quoted = urllib.parse.quote(payment_hash, safe="")
        return _call(self.node, "GET", f"/node/payments/{quoted}", "GET /node/payments/{hash}")

    # --- minting: the payer's ecash ---
    def _keys(self) -> tuple[str, dict[str, str]] | None:
        if self.keyset is None:
            body = _call(self.session, "GET", "/v1/keys", "GET /v1/keys")
            sets = [k for k in (body or {}).get("keysets") or [] if k.get("unit") == "sat"]
            if not sets:
                return None
            self.keyset = (str(sets[0]["id"]), dict(sets[0]["keys"]))
        return self.keyset

    def mint_proofs(self, amount_sat: int) -> list[dict[str, Any]] | None:
        keys = self._keys()
        request = {"amount": amount_sat, "unit": "sat"}
        # under HTTP faults the mint may not get its invoice from the node (400): no funding
        path = "/v1/mint/quote/bolt11"
        quote = _call(self.session, "POST", path, "POST mint quote", expected=(400,), json=request)
        if keys is None or not quote or not quote.get("request"):
            return None
        paid = _call(
            self.node,
            "POST",
            "/admin/network/pay",
            "POST /admin/network/pay (funding)",
            json={"payment_request": quote["request"]},
            headers={"X-Admin-Token": self.node_admin_token},
        )
        if paid is None or not self._wait_paid(str(quote["quote"])):
            return None
        outputs = [blind(amount) for amount in split(amount_sat)]
        signed = _call(
            self.session,
            "POST",
            "/v1/mint/bolt11",
            "POST /v1/mint/bolt11",
            json={"quote": quote["quote"], "outputs": _outputs(keys[0], outputs)},
        )
        signatures = (signed or {}).get("signatures") or []
        if len(signatures) != len(outputs):
            return None
        return [
            {
                "amount": o.amount_sat,
                "id": keys[0],
                "secret": o.secret,
                "C": unblind(s["C_"], o.r, keys[1][str(o.amount_sat)]),
            }
            for o, s in zip(outputs, signatures, strict=True)
        ]

    def _wait_paid(self, quote_id: str) -> bool:
        deadline = time.monotonic() + FUNDED_WAIT_S
        for _ in range(FUNDED_MAX_POLLS):
            path = f"/v1/mint/quote/bolt11/{quote_id}"
            state = _call(self.session, "GET", path, "GET mint quote (funding)")
            if state and state.get("state") in ("PAID", "ISSUED"):
                return True
            if time.monotonic() >= deadline:
                return False
            gevent.sleep(FUNDED_POLL_S)
        return False

    # --- melting: the payout ---
    def melt_quote(self, invoice: Invoice) -> dict[str, Any] | None:
        request = {"request": invoice.payment_request, "unit": "sat"}
        body = _call(self.session, "POST", "/v1/melt/quote/bolt11", "POST melt quote", json=request)
        if not body or not body.get("quote") or not isinstance(body.get("fee_reserve"), int):
            return None
        return body

    def melt(
        self, quote: dict[str, Any], proofs: list[dict[str, Any]], phase: str
    ) -> tuple[PayoutResult, int]:
        """The melt and the change it handed back (sat); the change's proofs are not kept (a
        payer melts fresh proofs each time)."""
        keys = self._keys()
        assert keys is not None
        blanks = [
            blind(1) for _ in range(max(1, math.ceil(math.log2(max(quote["fee_reserve"], 1)))))
        ]
        body_json = {
            "quote": quote["quote"],
            "inputs": proofs,
            "outputs": _outputs(keys[0], blanks),
        }
        started = time.perf_counter()
        with self.session.post(
            "/v1/melt/bolt11",
            name=f"POST /v1/melt/bolt11 [{phase}]",
            json=body_json,
            catch_response=True,
        ) as resp:
            body = _json_or_empty(resp)
            state = str(body.get("state") or "")
            kind, outcome = MELT_STATE.get(state, ("error", "error"))
            if resp.status_code == 200 and state == "UNPAID":
                kind, outcome = "fail", "failed"
            elif resp.status_code == 400 and "detail" in body:
                kind, outcome = "fail", "failed"  # NUT-00 errors: {"detail", "code"}
            elif resp.status_code == 0:
                kind, outcome = "info", "timeout"
            if kind == "error":
                resp.failure(f"unexpected answer to a melt: HTTP {resp.status_code} {body}")
            else:
                resp.success()
        change_sat = sum(int(c.get("amount") or 0) for c in body.get("change") or [])
        result = PayoutResult(
            kind=kind,
            outcome=outcome,
            http_status=resp.status_code,
            latency_ms=(time.perf_counter() - started) * 1000,
            payout_id=str(quote["quote"]),
            payout_status=state or str(body.get("detail") or ""),
            payment_hash=None,
            body=body,
        )
        return result, change_sat

    def proof_states(self, ys: list[str]) -> list[str] | None:
        body = _call(self.session, "POST", "/v1/checkstate", "POST /v1/checkstate", json={"Ys": ys})
        states = (body or {}).get("states")
        if not isinstance(states, list) or len(states) != len(ys):
            return None
        by_y = {s.get("Y"): str(s.get("state")) for s in states if isinstance(s, dict)}
        return [by_y.get(y, "not read") for y in ys]

    def get_melt_quote(self, quote_id: str) -> str | None:
        path = f"/v1/melt/quote/bolt11/{urllib.parse.quote(quote_id, safe='')}"
        body = _call(self.session, "GET", path, "GET melt quote")
        return str(body["state"]) if body and isinstance(body.get("state"), str) else None


def ys_of(proofs: list[dict[str, Any]]) -> list[str]:
    return [y_of(str(p["secret"])) for p in proofs]


def _outputs(keyset_id: str, blinded: list[Blinded]) -> list[dict[str, Any]]:
    return [{"amount": b.amount_sat, "id": keyset_id, "B_": b.b_} for b in blinded]


def _call(
    session: FastHttpSession,
    method: str,
    path: str,
    name: str,
    expected: tuple[int, ...] = (),
    **kwargs: Any,
) -> dict[str, Any] | None:
    """The JSON object of an ok answer, else None; an `expected` status (the faults' doing) is
    a successful request that returns None."""
    with session.request(method, path, name=name, catch_response=True, **kwargs) as resp:
        body = _json_or_empty(resp)
        if resp.status_code in (200, 201) and body:
            resp.success()
            return body
        if resp.status_code in expected:
            resp.success()
            return None
        resp.failure(f"HTTP {resp.status_code} {body or (resp.text or '')[:200]}")
        return None
