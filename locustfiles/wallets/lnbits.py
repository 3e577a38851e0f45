"""The LNbits adapter: LNbits' wallet API (tested with LNbits 1.6.2; releases from 0.12 on are
driven too), funded from and judged by a `lnchaos node` that LNbits uses as its LND REST funding
source.

Per payer (`create_wallet`): `POST /api/v1/account` opens an account with one wallet (its admin
key pays, reads and makes invoices); `POST /api/v1/payments {"out": false}` makes an invoice of
the funding; the node's network pays it (`POST <node>/admin/network/pay`, the node's admin
token); the payer waits, bounded, until LNbits credits it (asking LNbits about the invoice too,
so a credit its invoice stream missed is still found).

Paying (`pay`): `POST /api/v1/payments {"out": true, "bolt11"}`. 201 with the payment's
`status` success / pending / failed; 520 `{"detail", "status"}` for a payment LNbits refused or
saw fail. Releases before 1.0 answer a payment they took with `{"payment_hash"}` only (201), and
name a new invoice `payment_request`, not `bolt11`: the payment's status is then read from
LNbits' own row (`GET /api/v1/payments/{hash}`, its `details`). LNbits has no Idempotency-Key:
a retry resends the same invoice, and LNbits refuses it
(520 "Payment already paid." / "Payment is still pending." / ...): a refusal, checked only for
"never charged twice" (idempotent = False).

A payout's id is its payment hash (LNbits' checking id): `GET /api/v1/payments/{hash}` reads it
(and makes LNbits ask its node about a pending one). `GET /api/v1/wallet` gives the balance in
msat; LNbits counts a pending payment's amount + fee reserve against it, so it has no separate
reserved amount. `GET /api/v1/payments` lists what the wallet believes it paid.

Every wallet this process opened, its funding and every payment hash it was asked to pay are
kept in `LEDGER`, for the end-of-run judgement (`LNbitsJudge`): per wallet, balance = funding -
sum(amount + the node's fee) over the hashes the node really paid; a payment pending at LNbits or
in flight at the node is unresolved. The ledger lives in the process of the users, so
`--wallet-api lnbits` runs in one process (no --master / --processes).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.pool
from locust.contrib.fasthttp import FastHttpSession

from lnchaos.checker import answers
from locustfiles import checker, counters, strict_reading
from locustfiles.admin_client import REQUEST_TIMEOUT_S, TargetAdmin, TargetError, TargetTimeout
from locustfiles.wallet_client import _json_or_empty
from locustfiles.wallets.base import CONTRACT_VERSION, Invoice, PayoutResult, Wallet

LOG = logging.getLogger(__name__)

# Funding: the network pays the wallet's invoice at once; LNbits credits it from its invoice
# stream (or when asked about the invoice). Bounded in time and polls.
# LNbits credits incoming payments one at a time (about a second each on a busy machine), so
# many payers starting at once wait their turn: polled gently, so as not to add to its load.
FUNDING_WAIT_S = 60.0
FUNDING_POLL_S = 0.5
FUNDING_MAX_POLLS = int(FUNDING_WAIT_S / FUNDING_POLL_S)
FUNDING_ASK_EVERY = 6  # every 6th poll (3 s) asks LNbits about the invoice itself
FUNDING_INVOICE_TRIES = 5
# The ledger's bounds (one process): past them a payment is not recorded and the run fails.
LEDGER_WALLETS_MAX = 20_000
LEDGER_HASHES_MAX = 200_000
# The end-of-run judgement: concurrent reads, pages of a wallet's payment list.
WALLET_READS_MAX = 3  # consistent reads of one wallet: list, balance, list again
JUDGE_CONCURRENCY = 16
PAYMENTS_PAGE = 500
PAYMENTS_PAGES_MAX = 200

LNBITS_STATUS = {"success": "succeeded", "failed": "failed", "pending": "pending"}
_warned_no_invoice = threading.Event()


# ---- the ledger: what the suite asked of each wallet ---------------------------------------------


@dataclass
class WalletRecord:
    wallet_id: str
    api_key: str
    funding_msat: int
    opened_ms: int
    # payment hash -> (amount_msat, the wallet's first answer: succeeded / failed / pending / ...)
    payments: dict[str, tuple[int, str]] = field(default_factory=dict)


class Ledger:
    """Every wallet opened and every hash it was asked to pay, bounded; thread- and greenlet-safe
    (no await/yield between check and update)."""

    def __init__(self) -> None:
        self.wallets: dict[str, WalletRecord] = {}
        self.hashes = 0
        self.overflow = 0
        self._lock = threading.Lock()

    def open(self, wallet: Wallet, funding_msat: int) -> None:
        with self._lock:
            if len(self.wallets) >= LEDGER_WALLETS_MAX:
                self.overflow += 1
                return
            now_ms = int(time.time() * 1000)
            self.wallets[wallet.wallet_id] = WalletRecord(
                wallet.wallet_id, wallet.api_key, funding_msat, now_ms
            )

    def paying(self, wallet_id: str, payment_hash: str, amount_msat: int) -> None:
        with self._lock:
            record = self.wallets.get(wallet_id)
            if record is None or self.hashes >= LEDGER_HASHES_MAX:
                self.overflow += 1
                return
            if payment_hash not in record.payments:
                record.payments[payment_hash] = (amount_msat, "")
                self.hashes += 1

    def answered(self, wallet_id: str, payment_hash: str, outcome: str) -> None:
        with self._lock:
            record = self.wallets.get(wallet_id)
            if record is not None and payment_hash in record.payments:
                amount_msat, first = record.payments[payment_hash]
                if not first:
                    record.payments[payment_hash] = (amount_msat, outcome)

    def since(self, since_ms: int | None) -> list[WalletRecord]:
        with self._lock:
            return [w for w in self.wallets.values() if since_ms is None or w.opened_ms >= since_ms]


LEDGER = Ledger()


# ---- the adapter ---------------------------------------------------------------------------------


# LNbits' fee reserve settings at their defaults (the test harness starts it with these)
RESERVE_FEE_MIN_MSAT = 2000
RESERVE_FEE_PERCENT = 1.0


class LNbitsWalletApi:
    contract = CONTRACT_VERSION
    name = "lnbits"
    # LNbits refuses invoices over 10M sats by default ("Invoice amount ... is too high"):
    # the edge workload's largest payouts and the wallets' funding stay within it
    amount_max_msat = 10_000_000 * 1000
    idempotent = False
    judged_by = "node"
    accounting = "balance"
    chaos_connection_errors = False

    @staticmethod
    def fee_reserve_msat(amount_msat: int) -> int:
        """LNbits' own rule (lnbits/settings.py FeeSettings.fee_reserve, its defaults:
        LNBITS_RESERVE_FEE_MIN 2000 msat, LNBITS_RESERVE_FEE_PERCENT 1.0): what a pending
        payment holds for its fee, and the fee limit it gives its node."""
        return max(RESERVE_FEE_MIN_MSAT, int(amount_msat * RESERVE_FEE_PERCENT / 100.0))

    @staticmethod
    def judge(node_url: str, node_admin_token: str, host: str) -> LNbitsJudge:
        """The end-of-run judge: every wallet in LEDGER from the node's truth."""
        return LNbitsJudge(node_url, node_admin_token, host)

    def __init__(
        self,
        session: FastHttpSession,
        node: FastHttpSession,
        node_admin_token: str,
        request_event: Any,
    ) -> None:
        self.session = session  # LNbits (Locust's host)
        self.node = node  # the lnchaos node: invoices, funding, truth
        self.node_admin_token = node_admin_token
        self.request_event = request_event

    @classmethod
    def for_user(cls, user: Any) -> LNbitsWalletApi:
        options = user.environment.parsed_options
        node_url = str(getattr(options, "node_url", "") or "").rstrip("/")
        token = str(getattr(options, "node_admin_token", "") or "")
        if not node_url or not token:
            raise ValueError("--wallet-api lnbits needs --node-url and --node-admin-token")
        node = FastHttpSession(
            base_url=node_url,
            request_event=user.environment.events.request,
            user=user,
            network_timeout=user.network_timeout,
            connection_timeout=user.connection_timeout,
        )
        return cls(user.client, node, token, user.environment.events.request)

    # --- funding ---
    def create_wallet(self, balance_msat: int) -> Wallet | None:
        body = _call(
            self.session,
            "POST",
            "/api/v1/account",
            "POST /api/v1/account",
            (200, 201),
            json={"name": "lnchaos payer"},
        )
        if body is None or not body.get("id") or not body.get("adminkey"):
            return None
        wallet = Wallet(str(body["id"]), str(body["adminkey"]), 0)
        amount_sat = math.ceil(balance_msat / 1000)
        made = self._funding_invoice(wallet, amount_sat)
        if made is None:
            return None
        invoice, bolt11 = made
        paid = _call(
            self.node,
            "POST",
            "/admin/network/pay",
            "POST /admin/network/pay (funding)",
            (200,),
            json={"payment_request": bolt11},
            headers={"X-Admin-Token": self.node_admin_token},
        )
        if paid is None:
            return None
        funding_msat = amount_sat * 1000
        credited = self._credited(wallet, str(invoice.get("payment_hash")), funding_msat)
        if credited is None:
            return None
        LEDGER.open(wallet, funding_msat)
        return Wallet(wallet.wallet_id, wallet.api_key, credited)

    def _funding_invoice(
        self, wallet: Wallet, amount_sat: int
    ) -> tuple[dict[str, Any], str] | None:
        """LNbits's invoice for the wallet's funding and its bolt11 (None: none was made)."""
        headers = {"X-Api-Key": wallet.api_key}
        invoice = None
        for _ in range(FUNDING_INVOICE_TRIES):
            # under HTTP faults LNbits may not get its invoice from the node (520): try again
            invoice = _call(
                self.session,
                "POST",
                "/api/v1/payments",
                "POST /api/v1/payments (funding invoice)",
                (201,),
                json={"out": False, "amount": amount_sat, "memo": "lnchaos funding"},
                headers=headers,
                expected=(520,),
            )
            if invoice is not None:
                break
        # 1.x names the invoice `bolt11`; releases before 1.0 `payment_request`
        bolt11 = (invoice.get("bolt11") or invoice.get("payment_request")) if invoice else None
        if not bolt11:
            # a failed row of the suite's own table (every time) and one log line (the first)
            counters.record("FUNDING", "invoice made", failed=True, response_time_ms=0.0)
            if not _warned_no_invoice.is_set():
                _warned_no_invoice.set()
                LOG.warning("LNbits gave no funding invoice (its answer: %s)", invoice)
            return None
        return invoice, bolt11

    def _credited(self, wallet: Wallet, payment_hash: str, funding_msat: int) -> int | None:
        """The balance once LNbits credited the funding the node paid; None (and a failed row
        and a log line) when it never did within the bound."""
        started = time.perf_counter()
        credited = self._wait_credited(wallet, payment_hash, funding_msat)
        if credited is None:
            # the node paid, LNbits never credited it: a failure of the wallet, and visible
            # a failed row of the suite's own table (Locust's totals stay HTTP only) and a log
            counters.record(
                "FUNDING",
                "credited within bound",
                failed=True,
                response_time_ms=(time.perf_counter() - started) * 1000,
            )
            LOG.warning(
                "wallet %s: funding of %d msat paid by the node but not credited within %g s",
                wallet.wallet_id,
                funding_msat,
                FUNDING_WAIT_S,
            )
        return credited

    def _wait_credited(self, wallet: Wallet, payment_hash: str, funding_msat: int) -> int | None:
        """The balance once LNbits credited the funding (None: not within FUNDING_WAIT_S)."""
        deadline = time.monotonic() + FUNDING_WAIT_S
        for polls in range(FUNDING_MAX_POLLS):
            if polls % FUNDING_ASK_EVERY == FUNDING_ASK_EVERY - 1:
                # LNbits checks a pending invoice with its node when asked about it
                self._read_payment(wallet, payment_hash, "GET /api/v1/payments/{hash} (funding)")
            view = self.get_wallet(wallet, name="GET /api/v1/wallet (funding)")
            if view is not None and view["balance_msat"] >= funding_msat:
                return int(view["balance_msat"])
            if time.monotonic() >= deadline:
                break
            gevent.sleep(FUNDING_POLL_S)
        return None

    # --- the node ---
    def create_invoice(self, amount_msat: int) -> Invoice | None:
        body = _call(
            self.node,
            "POST",
            "/node/invoices",
            "POST /node/invoices",
            (201,),
            json={"amount_msat": amount_msat},
        )
        if body is None:
            return None
        return Invoice(str(body["payment_request"]), str(body["payment_hash"]), amount_msat)

    def get_node_payment(self, payment_hash: str) -> dict[str, Any] | None:
        quoted = urllib.parse.quote(payment_hash, safe="")
        return _call(
            self.node, "GET", f"/node/payments/{quoted}", "GET /node/payments/{hash} (poll)", (200,)
        )

    # --- the wallet ---
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
        """LNbits has no Idempotency-Key (the key is not sent): a retry resends the invoice."""
        tag = f" ({label})" if label else ""
        name = "POST /api/v1/payments (retry)" if retry else f"POST /api/v1/payments{tag} [{phase}]"
        if not retry:
            LEDGER.paying(wallet.wallet_id, invoice.payment_hash, invoice.amount_msat)
        started = time.perf_counter()
        with self.session.post(
            "/api/v1/payments",
            name=name,
            json={"out": True, "bolt11": invoice.payment_request},
            headers={"X-Api-Key": wallet.api_key},
            catch_response=True,
        ) as response:
            latency_ms = (time.perf_counter() - started) * 1000
            status = response.status_code
            body = _json_or_empty(response)
            # LNbits before 1.0 answers a payment it took with its hash only (201, success or
            # pending alike): how it booked the payment is read once, from its own row, below
            booked_later = status == 201 and "payment_hash" in body and "status" not in body
            result = _classify(status, body, invoice, retry=retry)
            if result.kind == "error" and not booked_later:
                response.failure(f"unexpected answer to a payment: HTTP {status} {body or ''}")
            else:
                response.success()
        view = answer_view(invoice.payment_hash, body) if status == 201 else None
        if view is not None:
            request = "POST /api/v1/payments"
            ids = {"wallet": wallet.wallet_id, "payout_id": invoice.payment_hash, "http": status}
            strict_reading.read(answers.payout_view_shape(view), view, request, **ids)
        if booked_later:
            row = self._read_payment(
                wallet, invoice.payment_hash, "GET /api/v1/payments/{hash} (booked)"
            )
            result = _classify(
                status, {**body, "status": booked_status(row or {})}, invoice, retry=retry
            )
        result.latency_ms = latency_ms
        if not retry:
            LEDGER.answered(wallet.wallet_id, invoice.payment_hash, result.outcome)
            if result.outcome in ("pending", "failed"):
                fault = "timeout" if result.kind == "info" else "payment_failed"
                counters.record_fault(f"{fault} [{phase}]", latency_ms)
        return result

    def _read_payment(self, wallet: Wallet, payment_hash: str, name: str) -> dict[str, Any] | None:
        """`GET /api/v1/payments/{hash}` with the wallet's key (LNbits asks its node about a
        pending payment when answering)."""
        quoted = urllib.parse.quote(payment_hash, safe="")
        return _call(
            self.session,
            "GET",
            f"/api/v1/payments/{quoted}",
            name,
            (200,),
            headers={"X-Api-Key": wallet.api_key},
        )

    def get_wallet(self, wallet: Wallet, name: str = "GET /api/v1/wallet") -> dict[str, Any] | None:
        body = _call(
            self.session,
            "GET",
            "/api/v1/wallet",
            name,
            (200,),
            headers={"X-Api-Key": wallet.api_key},
        )
        if body is None:
            return None
        view = wallet_view(body)
        ids = {"wallet": wallet.wallet_id}
        return (
            view if strict_reading.read("wallet_view", view, "GET /api/v1/wallet", **ids) else None
        )

    def get_payout(self, wallet: Wallet, payout_id: str) -> dict[str, Any] | None:
        body = self._read_payment(wallet, payout_id, "GET /api/v1/payments/{hash} (poll)")
        if body is None:
            return None
        view = payout_view(payout_id, body)
        shape = answers.payout_view_shape(view)
        ids = {"wallet": wallet.wallet_id, "payout_id": payout_id}
        request = "GET /api/v1/payments/{hash}"
        return view if strict_reading.read(shape, view, request, **ids) else None

    def paid(self, wallet: Wallet) -> list[dict[str, Any]] | None:
        body = _call_list(
            self.session,
            f"/api/v1/payments?limit={PAYMENTS_PAGE}",
            "GET /api/v1/payments",
            {"X-Api-Key": wallet.api_key},
        )
        return None if body is None else outgoing(body)


def _classify(status: int, body: dict[str, Any], invoice: Invoice, *, retry: bool) -> PayoutResult:
    """One answer to `POST /api/v1/payments {"out": true}`, in the suite's terms."""
    wallet_status = str(body.get("status") or "")
    result = PayoutResult(
        kind="error",
        outcome="error",
        http_status=status,
        latency_ms=0.0,
        payout_id=invoice.payment_hash,
        payout_status=LNBITS_STATUS.get(wallet_status),
        # whole msat, or 0 as a placeholder: pay() reads the answer strictly (answer_view), so a
        # missing or malformed one is malformed_answer, never a fee of 0
        amount_msat=_msat_or_zero(body.get("amount")),
        fee_msat=_msat_or_zero(body.get("fee")),
        payment_hash=invoice.payment_hash,
        body={k: v for k, v in body.items() if k in ("status", "detail", "checking_id")},
    )
    if status == 201 and wallet_status == "success":
        result.kind, result.outcome = "ok", "succeeded"
    elif status == 201 and wallet_status == "pending":
        result.kind, result.outcome = "info", "pending"
    elif status == 201 and wallet_status == "failed":
        result.kind, result.outcome = "fail", "failed"
    elif status == 520 and retry:
        # the same invoice again: LNbits refuses it (already paid, still pending, failed)
        result.kind, result.outcome = "refused", "rejected"
        result.payout_status = None
    elif status == 520 and wallet_status == "failed":
        result.kind, result.outcome = "fail", "failed"
        result.payout_status = "failed"
    elif status == 520 and wallet_status == "pending":
        result.kind, result.outcome = "info", "pending"
        result.payout_status = "pending"
    if result.payout_status == "failed":
        result.fee_msat = 0  # a failed row keeps its fee reserve as `fee`: see payout_view
    return result


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _msat_or_zero(value: Any) -> int:
    found = promised_msat(value)
    return found if _is_whole(found) else 0


def answer_view(payment_hash: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """LNbits' answer to a payment it took (201 with its Payment: 1.x) as a payout, read against
    the payout shapes as its own row is (payout_view): a succeeded one must say its fee. None for
    an answer that is no Payment (before 1.0: its hash only; a 520's error)."""
    status = LNBITS_STATUS.get(str(body.get("status") or ""))
    if status is None or "payment_hash" not in body:
        return None
    return _as_payout(payment_hash, status, body)


def booked_status(body: dict[str, Any]) -> str:
    """How LNbits booked a payment, from `GET /api/v1/payments/{hash}` with the wallet's key: its
    row (`details`), not what LNbits' node says now (the answer's own `status`), since the row is
    what the balance holds. "" when the answer has no row."""
    details = body.get("details")
    if isinstance(details, dict) and str(details.get("status") or "") in LNBITS_STATUS:
        return str(details["status"])
    return "success" if body.get("paid") is True else ""


def promised_msat(value: Any) -> Any:
    """A msat field LNbits promises, as the suite reads it: a whole number's size (LNbits signs
    outgoing amounts and fees), anything else (absent: None, a string, a float) left as it came,
    so the reading rules (lnchaos/checker/answers.py) find it `malformed_answer`, never 0."""
    return abs(value) if _is_whole(value) else value


def wallet_view(body: dict[str, Any]) -> dict[str, Any]:
    """LNbits' `GET /api/v1/wallet` as the suite's wallet view. LNbits holds a pending payment's
    amount + fee reserve inside the balance, so nothing is reserved apart. A balance that is no
    whole number stays as it came: the wallet view's shape finds it."""
    balance = body.get("balance")
    return {"wallet_id": body.get("id"), "balance_msat": balance, "reserved_msat": 0}


def payout_view(payment_hash: str, body: dict[str, Any]) -> dict[str, Any]:
    """LNbits' `GET /api/v1/payments/{hash}` as a payout: status pending / succeeded / failed."""
    if body.get("paid") is True:
        status = "succeeded"
    else:
        status = LNBITS_STATUS.get(str(body.get("status") or "pending"), "pending")
    details = body.get("details") if isinstance(body.get("details"), dict) else {}
    return _as_payout(payment_hash, status, details)


def _as_payout(payment_hash: str, status: str, row: dict[str, Any]) -> dict[str, Any]:
    """A payment of LNbits (its row, or its Payment in an answer) as a payout in `status`."""
    # LNbits marks a failed payment failed and leaves its row's `fee` at the fee reserve it
    # held (lnbits/core/services/payments.py: only `status` is updated); a failed row is out
    # of the balance, so that number is no fee charged: the word check reads it as none
    fee_msat = 0 if status == "failed" else promised_msat(row.get("fee"))
    return {
        "payout_id": payment_hash,
        "payment_hash": payment_hash,
        "status": status,
        "amount_msat": promised_msat(row.get("amount")),
        "fee_msat": fee_msat,
    }


def outgoing(payments: list[Any]) -> list[dict[str, Any]]:
    """What the wallet believes it paid, from its payment list (outgoing payments only)."""
    result = []
    for payment in payments:
        if not isinstance(payment, dict):
            continue
        amount = payment.get("amount")
        if _is_whole(amount) and amount >= 0:
            continue  # incoming (LNbits signs outgoing amounts below zero)
        # an amount or fee not as promised stays as it came: the judge refuses to read it
        # (_charged_msat), never takes it for 0
        result.append(
            {
                "payment_hash": payment.get("payment_hash"),
                "status": LNBITS_STATUS.get(str(payment.get("status")), "pending"),
                "amount_msat": promised_msat(amount),
                "fee_msat": promised_msat(payment.get("fee")),
            }
        )
    return result


def _call(
    session: FastHttpSession,
    method: str,
    path: str,
    name: str,
    ok_statuses: tuple[int, ...],
    expected: tuple[int, ...] = (),
    **kwargs: Any,
) -> dict[str, Any] | None:
    """The JSON object of an ok answer, else None; an `expected` status (the faults' doing,
    which the caller handles) is a successful request that returns None."""
    with session.request(method, path, name=name, catch_response=True, **kwargs) as resp:
        body = _json_or_empty(resp)
        if resp.status_code in ok_statuses and body:
            resp.success()
            return body
        if resp.status_code in expected:
            resp.success()
            return None
        resp.failure(f"HTTP {resp.status_code} {body or (resp.text or '')[:200]}")
        return None


def _call_list(
    session: FastHttpSession, path: str, name: str, headers: dict[str, str]
) -> list[Any] | None:
    with session.request("GET", path, name=name, headers=headers, catch_response=True) as resp:
        try:
            body = json.loads(resp.text or "null")
        except ValueError:
            body = None
        if resp.status_code == 200 and isinstance(body, list):
            resp.success()
            return body
        resp.failure(f"HTTP {resp.status_code} {(resp.text or '')[:200]}")
        return None


# ---- the end-of-run judgement --------------------------------------------------------------------


class LNbitsJudge(TargetAdmin):
    """The master's calls for a run against LNbits, in TargetAdmin's shape (controller.py): the
    node's health, faults and truth at `node_url` (admin token), the wallets' balances and
    payments at LNbits; `reconciliation` is the end-of-run judgement of every wallet in LEDGER
    from the node's truth. LNbits has no fix mode (set_fix does nothing)."""

    def __init__(self, node_url: str, node_admin_token: str, lnbits_url: str) -> None:
        super().__init__(node_url, node_admin_token)
        self.lnbits = TargetAdmin(lnbits_url, None)
        self._final_truth: dict[str, dict[str, Any]] = {}

    def wait_healthy(self, timeout_s: float, poll_interval_s: float = 0.1) -> dict[str, Any]:
        node = super().wait_healthy(timeout_s, poll_interval_s)
        self.lnbits_call("GET", "/api/v1/health")  # LNbits answers, or TargetError
        return node

    def get_fix(self) -> str:
        return "n/a"

    def set_fix(self, mode: str) -> str:
        return "n/a"  # LNbits has one payout flow: its own

    def clock_ms(self) -> int:
        return int(time.time() * 1000)  # the ledger's wallets carry this process's clock

    def lnbits_call(self, method: str, path: str, api_key: str | None = None) -> Any:
        return self.lnbits._call(method, path, headers={"X-Api-Key": api_key} if api_key else None)

    # --- the final audit's reads ---
    def wallet(self, wallet_id: str, api_key: str) -> dict[str, Any]:
        body = self.lnbits_call("GET", "/api/v1/wallet", api_key)
        if not isinstance(body, dict):
            raise TargetError("GET /api/v1/wallet: not a JSON object")
        return wallet_view(body)  # a balance not as promised: the audit's malformed_answer

    def payout(self, payout_id: str, api_key: str) -> dict[str, Any]:
        quoted = urllib.parse.quote(payout_id, safe="")
        body = self.lnbits_call("GET", f"/api/v1/payments/{quoted}", api_key)
        if not isinstance(body, dict):
            raise TargetError("GET /api/v1/payments/{hash}: not a JSON object")
        return payout_view(payout_id, body)

    def paid(self, api_key: str) -> list[dict[str, Any]]:
        """What the wallet believes it paid (every page of its payment list, bounded)."""
        found: list[dict[str, Any]] = []
        for page in range(PAYMENTS_PAGES_MAX):
            query = f"limit={PAYMENTS_PAGE}&offset={page * PAYMENTS_PAGE}"
            body = self.lnbits_call("GET", f"/api/v1/payments?{query}", api_key)
            if not isinstance(body, list):
                raise TargetError("GET /api/v1/payments: not a list")
            found.extend(outgoing(body))
            if len(body) < PAYMENTS_PAGE:
                return found
        raise TargetError("GET /api/v1/payments: more pages than the judge reads")

    # --- the judgement ---
    def reconciliation(
        self, *, since_ms: int | None = None, stuck_after_s: float | None = None
    ) -> dict[str, Any]:
        """Every wallet opened in this run, judged from the node's truth (the target's
        reconciliation's shape, so the verdict reads it as it reads the target's)."""
        records = LEDGER.since(since_ms)
        # the wallets first, then the node: a payment the wallet believes final was final at the
        # node before (the wallet learns it from the node), so the truth read after is never older
        views: dict[str, tuple[int, dict[str, dict[str, Any]]]] = {}
        errors: list[TargetError] = []
        pool = gevent.pool.Pool(JUDGE_CONCURRENCY)
        for record in records:
            pool.spawn(self._read_wallet, record, views, errors)
        pool.join()
        if errors:
            raise errors[0]  # its class kept: a timeout is asked again by the final wait
        truths = self._truths([h for r in records for h in r.payments])
        kinds: dict[str, dict[str, Any]] = {
            kind: {"count": 0, "amount_msat": 0, "examples": []}
            for kind in checker.RECONCILED_KINDS
        }
        totals = {"pending": 0, "in_flight": 0, "timeouts_resolved": 0}
        for record in records:
            balance_msat, believed = views[record.wallet_id]
            for judgement in judge_wallet(record, balance_msat, believed, truths):
                _count(judgement, kinds, totals)
        if LEDGER.overflow:
            unresolved = kinds[checker.UNRESOLVED]
            unresolved["count"] += LEDGER.overflow
            unresolved["examples"].append({"detail": f"{LEDGER.overflow} payments not recorded"})
        return {
            "now_ms": self.clock_ms(),
            "wallet_api": "lnbits",
            "wallets": len(records),
            "payments": sum(len(r.payments) for r in records),
            **kinds,
            "pending": totals["pending"],
            "node": {"in_flight": totals["in_flight"]},
            "timeouts": {"resolved": totals["timeouts_resolved"]},
            "conserved": None,  # LNbits' books are not the suite's to read
        }

    def _truths(self, hashes: list[str]) -> dict[str, dict[str, Any]]:
        """The node's truth of each hash; a final one is kept (the run is over: nothing sends
        again), so the final wait's polls ask only for those still in flight."""
        wanted = set(hashes)
        truths = {h: t for h, t in self._final_truth.items() if h in wanted}
        errors: list[TargetError] = []

        def one(payment_hash: str) -> None:
            try:
                truth = self.node_payment(payment_hash)
            except TargetError as err:
                errors.append(err)
                return
            truths[payment_hash] = truth
            if truth.get("status") in checker.FINAL_NODE and truth.get("status") != "unknown":
                self._final_truth[payment_hash] = truth

        pool = gevent.pool.Pool(JUDGE_CONCURRENCY)
        for payment_hash in hashes:
            if payment_hash not in truths:
                pool.spawn(one, payment_hash)
        pool.join(timeout=REQUEST_TIMEOUT_S * (1 + len(hashes) // JUDGE_CONCURRENCY))
        if errors:
            raise type(errors[0])(f"the node's truth: {errors[0]}")
        return truths

    def _read_wallet(
        self,
        record: WalletRecord,
        views: dict[str, tuple[int, dict[str, dict[str, Any]]]],
        errors: list[TargetError],
    ) -> None:
        """A wallet's balance and what it believes it paid, its pending payments followed once
        (LNbits asks its node about a payment when asked about it, as a payer would).

        The list is read again after the balance: a payment LNbits took in between (a request
        still running when the users stopped) would leave a balance the first list does not
        explain. The reads are repeated until both lists agree (WALLET_READS_MAX times at most;
        the final wait's second reconciliation then judges what is still moving)."""
        try:
            believed = self._believed(record)
            for _ in range(WALLET_READS_MAX):
                pending = [h for h, p in believed.items() if p["status"] == "pending"]
                for payment_hash in pending:
                    self._follow(payment_hash, record.api_key)
                if pending:
                    believed = self._believed(record)
                balance_msat = self.wallet(record.wallet_id, record.api_key)["balance_msat"]
                if not isinstance(balance_msat, int) or isinstance(balance_msat, bool):
                    raise TargetError(f"GET /api/v1/wallet: balance {balance_msat!r} not msat")
                again = self._believed(record)
                if again == believed:
                    break
                believed = again
        except TargetError as err:
            errors.append(type(err)(f"wallet {record.wallet_id}: {err}"))
            return
        views[record.wallet_id] = (balance_msat, believed)

    def _follow(self, payment_hash: str, api_key: str) -> None:
        """Ask LNbits about a payment it shows pending, so it asks its node and books the end.

        For a payment still in flight at the node, LNbits' answer waits for the node's final
        status (LndRestWallet follows TrackPaymentV2 for up to 30 s), longer than the judge's
        request timeout when the node holds it (the edge workload's long holds: 10 s). Such a
        read timing out says nothing about the money: the payment stays pending in the list read
        next, and the final wait asks again. Any other error is the judge's failure to read."""
        try:
            self.payout(payment_hash, api_key)
        except TargetTimeout:
            LOG.info("LNbits still following payment %s at its node", payment_hash)

    def _believed(self, record: WalletRecord) -> dict[str, dict[str, Any]]:
        return {p["payment_hash"]: p for p in self.paid(record.api_key)}


def _count(
    judgement: dict[str, Any], kinds: dict[str, dict[str, Any]], totals: dict[str, int]
) -> None:
    kind = judgement.pop("kind")
    if kind == "pending":
        totals["pending"] += 1
        kind = checker.UNRESOLVED
    elif kind == "in_flight":
        totals["in_flight"] += 1
        kind = checker.UNRESOLVED
    elif kind == "timeout_resolved":
        totals["timeouts_resolved"] += 1
        return
    entry = kinds[kind]
    entry["count"] += 1
    entry["amount_msat"] += abs(int(judgement.get("diff_msat") or 0))
    if len(entry["examples"]) < checker.MAX_EXAMPLES * 10:
        entry["examples"].append(judgement)


def judge_wallet(
    record: WalletRecord,
    balance_msat: int,
    believed: dict[str, dict[str, Any]],
    truths: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """One wallet's judgement, pure: a list of findings, each with a `kind`: charged_not_paid,
    paid_not_charged, pending (at LNbits), in_flight (at the node), or timeout_resolved (a
    payment first answered pending or timed out, now final and consistent).

    The wallet's balance must be funding - sum(amount + the node's fee) over the hashes the
    node paid. Each hash is also judged alone: what LNbits charged for it (amount + its fee when
    it believes success; nothing when failed or unknown to it) against what the node paid. A
    balance off by more than its hashes explain is one more finding of the wallet itself."""
    findings: list[dict[str, Any]] = []
    node_cost_msat = 0
    explained_msat = 0
    for payment_hash, (amount_msat, first) in record.payments.items():
        truth = truths.get(payment_hash) or {}
        cost_msat = checker.node_cost_msat(truth, amount_msat)
        node_cost_msat += cost_msat
        mine = believed.get(payment_hash)
        finding = _judge_payment(record, payment_hash, amount_msat, first, truth, mine, cost_msat)
        if finding is not None:
            # only a charge off by something carries a diff: what the hashes explain
            explained_msat += finding.get("diff_msat", 0)
            findings.append(finding)
    if any(f["kind"] in ("pending", "in_flight") for f in findings):
        return findings  # not final: the balance is judged once it is
    expected_msat = record.funding_msat - node_cost_msat
    rest_msat = balance_msat - expected_msat - explained_msat
    if rest_msat:
        findings.append(
            {
                "kind": checker.PAID_NOT_CHARGED if rest_msat > 0 else checker.CHARGED_NOT_PAID,
                "wallet_id": record.wallet_id,
                "payout_id": None,
                "detail": "balance off by more than its payments explain",
                "expected_msat": expected_msat,
                "actual_msat": balance_msat,
                "diff_msat": rest_msat,
            }
        )
    return findings


def _charged_msat(mine: dict[str, Any]) -> int:
    """What LNbits says it charged for a payment it believes succeeded: its amount + fee, each a
    whole msat; one that is not is no charge the judge may assume (TargetError: the run's
    reconciliation failed, and says which payment's row)."""
    parts = (mine.get("amount_msat"), mine.get("fee_msat"))
    if not all(_is_whole(v) for v in parts):
        raise TargetError(
            f"GET /api/v1/payments: payment {mine.get('payment_hash')}: amount and fee "
            f"{parts!r} not whole msat (malformed_answer)"
        )
    return int(parts[0]) + int(parts[1])  # type: ignore[arg-type]


def _judge_payment(
    record: WalletRecord,
    payment_hash: str,
    amount_msat: int,
    first: str,
    truth: dict[str, Any],
    mine: dict[str, Any] | None,
    cost_msat: int,
) -> dict[str, Any] | None:
    """One hash of the wallet: what LNbits charged for it (`mine`: what it believes) against
    what the node paid (`cost_msat`); None when they agree and there is nothing to note."""
    node_status = str(truth.get("status") or "not read")
    wallet_status = mine["status"] if mine else "none"
    example = {
        "wallet_id": record.wallet_id,
        "payout_id": payment_hash,
        "payment_hash": payment_hash,
        "payout_status": wallet_status,
        "node_status": node_status,
        "first_outcome": first,
        "amount_msat": amount_msat,
    }
    if wallet_status == "pending":
        return {**example, "kind": "pending"}
    if node_status not in checker.FINAL_NODE:
        return {**example, "kind": "in_flight"}
    charged_msat = 0
    if mine is not None and wallet_status == "succeeded":
        charged_msat = _charged_msat(mine)
    diff_msat = cost_msat - charged_msat  # as a balance: actual - expected; > 0: not charged
    if diff_msat:
        kind = checker.PAID_NOT_CHARGED if diff_msat > 0 else checker.CHARGED_NOT_PAID
        return {
            **example,
            "kind": kind,
            "fee_msat": int(truth.get("fee_msat") or 0),
            "charged_msat": charged_msat,
            "diff_msat": diff_msat,
        }
    if first in ("pending", "timeout"):
        return {**example, "kind": "timeout_resolved"}
    return None
