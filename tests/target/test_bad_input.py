"""Bad input: each request below gets a clear 4xx JSON error with an `error` code, no traceback,
and leaves the ledger (reconciliation's conservation numbers), the wallet, the faults and the fix
mode exactly as they were."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import bolt11
import pytest
from bolt11.models.tags import Tag, TagChar, Tags
from target_harness import Api, Wallet, fast_config, in_process, run

from target.common.limits import MAX_AMOUNT_MSAT

FUNDS_MSAT = 1_000_000
STRANGER_KEY = hashlib.sha256(b"a payee this network does not know").hexdigest()
UNKNOWN_WALLET = "0" * 32


def foreign_invoice(
    currency: str = "bcrt",
    amount_msat: int | None = 10_000,
    *,
    created_s: int | None = None,
    expiry_s: int = 3600,
) -> str:
    """A correctly signed BOLT11 invoice made with the bolt11 package, not by the target."""
    tags = Tags(
        [
            Tag(TagChar.payment_hash, hashlib.sha256(b"preimage").hexdigest()),
            Tag(TagChar.payment_secret, "22" * 32),
            Tag(TagChar.description, "made outside the target"),
            Tag(TagChar.expire_time, expiry_s),
        ]
    )
    raw = bolt11.Bolt11(
        currency=currency,
        date=int(time.time()) if created_s is None else created_s,
        amount_msat=bolt11.MilliSatoshi(amount_msat) if amount_msat else None,
        tags=tags,
    )
    return bolt11.encode(raw, STRANGER_KEY)


@dataclass
class Ctx:
    api: Api
    wallet: Wallet
    invoice: str  # a good invoice of the network, for the wallet's amount range
    big_invoice: str  # a good invoice over the wallet's balance


@dataclass(frozen=True)
class Req:
    method: str
    path: str
    body: Any = None  # bytes: sent as is; else JSON; a callable: built from the context
    headers: dict[str, str] | None = None
    as_wallet: bool = True  # send the wallet's own X-Api-Key
    admin: bool = False


def good_request(ctx: Ctx) -> dict[str, str]:
    """A payout body that would pay if everything else about the request were right."""
    return {"payment_request": ctx.invoice}


def create_wallet(body: Any) -> Req:
    return Req("POST", "/api/wallets", body, as_wallet=False)


def pay(body: Any, **kwargs: Any) -> Req:
    return Req("POST", "/api/wallets/{wallet}/payouts", body, **kwargs)


def pay_request(payment_request: Any) -> Req:
    return pay({"payment_request": payment_request})


def node_invoice(body: Any) -> Req:
    return Req("POST", "/node/invoices", body, as_wallet=False)


def faults(body: Any) -> Req:
    return Req("PUT", "/admin/faults", body, as_wallet=False, admin=True)


def fix(body: Any) -> Req:
    return Req("PUT", "/admin/fix", body, as_wallet=False, admin=True)


OVERSIZED = b'{"payment_request": "' + b"x" * 20_000 + b'"}'
INT_5000_DIGITS = b'{"balance_msat": ' + b"9" * 5000 + b"}"

CASES: list[tuple[str, Req, int, str]] = [
    # ---- creating a wallet -------------------------------------------------------------------
    ("wallet-malformed-json", create_wallet(b'{"balance_msat": '), 400, "malformed_json"),
    ("wallet-empty-body", create_wallet(b""), 400, "malformed_json"),
    ("wallet-not-utf8", create_wallet(b"\xff\xfe{}"), 400, "malformed_json"),
    ("wallet-json-array", create_wallet([1000]), 400, "malformed_json"),
    ("wallet-json-string", create_wallet("1000"), 400, "malformed_json"),
    ("wallet-missing-amount", create_wallet({}), 400, "missing_field"),
    ("wallet-zero", create_wallet({"balance_msat": 0}), 400, "invalid_amount"),
    ("wallet-negative", create_wallet({"balance_msat": -1000}), 400, "invalid_amount"),
    ("wallet-float", create_wallet({"balance_msat": 1000.5}), 400, "invalid_amount"),
    ("wallet-integral-float", create_wallet({"balance_msat": 1000.0}), 400, "invalid_amount"),
    ("wallet-bool", create_wallet({"balance_msat": True}), 400, "invalid_amount"),
    ("wallet-string", create_wallet({"balance_msat": "1000"}), 400, "invalid_amount"),
    ("wallet-null", create_wallet({"balance_msat": None}), 400, "invalid_amount"),
    ("wallet-nan", create_wallet(b'{"balance_msat": NaN}'), 400, "invalid_amount"),
    ("wallet-infinity", create_wallet(b'{"balance_msat": Infinity}'), 400, "invalid_amount"),
    ("wallet-huge", create_wallet({"balance_msat": 10**30}), 400, "invalid_amount"),
    (
        "wallet-over-21m-btc",
        create_wallet({"balance_msat": MAX_AMOUNT_MSAT + 1}),
        400,
        "invalid_amount",
    ),
    ("wallet-5000-digits", create_wallet(INT_5000_DIGITS), 400, "malformed_json"),
    ("wallet-oversized-body", create_wallet(OVERSIZED), 413, "body_too_large"),
    # ---- paying: the body and the invoice -------------------------------------------------------
    ("pay-malformed-json", pay(b'{"payment_request": "lnbcrt'), 400, "malformed_json"),
    ("pay-empty-body", pay(b""), 400, "malformed_json"),
    ("pay-json-array", pay(["lnbcrt1"]), 400, "malformed_json"),
    ("pay-missing-request", pay({}), 400, "missing_field"),
    ("pay-request-int", pay_request(12345), 400, "invalid_field"),
    ("pay-request-null", pay_request(None), 400, "invalid_field"),
    ("pay-request-list", pay_request(["lnbcrt1"]), 400, "invalid_field"),
    ("pay-request-empty", pay_request(""), 400, "invalid_field"),
    ("pay-request-too-long", pay_request("lnbcrt1" + "q" * 3000), 400, "invalid_field"),
    ("pay-oversized-body", pay(OVERSIZED), 413, "body_too_large"),
    ("pay-not-an-invoice", pay_request("hello world"), 400, "malformed_invoice"),
    ("pay-bech32-garbage", pay_request("lnbcrt1qqqqqqqqqqqqqqqqqq"), 400, "malformed_invoice"),
    (
        "pay-bad-checksum",
        pay(lambda c: {"payment_request": c.invoice[:-1] + ("q" if c.invoice[-1] != "q" else "p")}),
        400,
        "malformed_invoice",
    ),
    (
        "pay-truncated",
        pay(lambda c: {"payment_request": c.invoice[:-20]}),
        400,
        "malformed_invoice",
    ),
    ("pay-mainnet-lnbc", pay_request(foreign_invoice("bc")), 400, "foreign_invoice"),
    ("pay-testnet-lntb", pay_request(foreign_invoice("tb")), 400, "foreign_invoice"),
    ("pay-no-amount", pay_request(foreign_invoice(amount_msat=None)), 400, "amountless_invoice"),
    (
        "pay-amount-over-21m-btc",
        pay_request(foreign_invoice(amount_msat=MAX_AMOUNT_MSAT + 100_000_000_000)),
        400,
        "invalid_amount",
    ),
    (
        "pay-amount-over-int64",
        pay_request(foreign_invoice(amount_msat=2**63 + 1000)),
        400,
        "invalid_amount",
    ),
    (
        "pay-expired",
        pay_request(foreign_invoice(created_s=int(time.time()) - 7200, expiry_s=3600)),
        400,
        "expired_invoice",
    ),
    (
        "pay-over-balance",
        pay(lambda c: {"payment_request": c.big_invoice}),
        409,
        "insufficient_funds",
    ),
    (
        "pay-idempotency-key-too-long",
        pay(good_request, headers={"Idempotency-Key": "k" * 256}),
        400,
        "invalid_idempotency_key",
    ),
    # ---- paying: whose wallet -------------------------------------------------------------------
    (
        "pay-unknown-wallet",
        Req(
            "POST",
            f"/api/wallets/{UNKNOWN_WALLET}/payouts",
            good_request,
        ),
        401,
        "unauthorized",
    ),
    (
        "pay-malformed-wallet-id",
        Req("POST", "/api/wallets/..%2Fadmin/payouts", good_request),
        401,
        "unauthorized",
    ),
    (
        "pay-wrong-key",
        pay(
            good_request,
            headers={"X-Api-Key": "wrong"},
            as_wallet=False,
        ),
        401,
        "unauthorized",
    ),
    (
        "pay-no-key",
        pay(good_request, as_wallet=False),
        401,
        "unauthorized",
    ),
    ("get-unknown-wallet", Req("GET", f"/api/wallets/{UNKNOWN_WALLET}"), 401, "unauthorized"),
    ("get-unknown-payout", Req("GET", f"/api/payouts/{UNKNOWN_WALLET}"), 404, "not_found"),
    ("get-malformed-payout-id", Req("GET", "/api/payouts/not-an-id"), 404, "not_found"),
    # ---- the network --------------------------------------------------------------------------
    ("invoice-zero", node_invoice({"amount_msat": 0}), 400, "invalid_amount"),
    ("invoice-string", node_invoice({"amount_msat": "1000"}), 400, "invalid_amount"),
    ("invoice-float", node_invoice({"amount_msat": 10.5}), 400, "invalid_amount"),
    ("invoice-missing", node_invoice({}), 400, "missing_field"),
    ("invoice-malformed-json", node_invoice(b"{"), 400, "malformed_json"),
    (
        "node-payment-bad-hash",
        Req("GET", "/node/payments/xyz", as_wallet=False),
        400,
        "invalid_payment_hash",
    ),
    # ---- admin ----------------------------------------------------------------------------------
    ("faults-rate-above-1", faults({"timeout_rate": 2}), 400, "invalid_fault"),
    ("faults-rate-negative", faults({"failure_rate": -0.1}), 400, "invalid_fault"),
    ("faults-rate-string", faults({"timeout_rate": "0.5"}), 400, "invalid_fault"),
    ("faults-rate-bool", faults({"timeout_rate": True}), 400, "invalid_fault"),
    ("faults-rate-nan", faults(b'{"timeout_rate": NaN}'), 400, "invalid_fault"),
    (
        "faults-rates-sum-over-1",
        faults({"timeout_rate": 0.6, "failure_rate": 0.6}),
        400,
        "invalid_fault",
    ),
    ("faults-fee-float", faults({"fee_base_msat": 1.5}), 400, "invalid_fault"),
    ("faults-hold-too-long", faults({"inflight_hold_ms": 10**9}), 400, "invalid_fault"),
    ("faults-unknown-key", faults({"timeout_rate": 0.1, "nope": 1}), 400, "unknown_fault"),
    ("faults-malformed-json", faults(b"{"), 400, "malformed_json"),
    ("faults-json-array", faults([0.5]), 400, "malformed_json"),
    ("faults-oversized-body", faults(OVERSIZED), 413, "body_too_large"),
    ("fix-unknown-mode", fix({"mode": "maybe"}), 400, "invalid_mode"),
    ("fix-mode-int", fix({"mode": 1}), 400, "invalid_mode"),
    ("fix-missing-mode", fix({}), 400, "invalid_mode"),
    ("fix-malformed-json", fix(b"mode=on"), 400, "malformed_json"),
    # ---- routing --------------------------------------------------------------------------------
    ("unknown-route", Req("GET", "/api/nothing-here", as_wallet=False), 404, "not_found"),
    ("wrong-method", Req("DELETE", "/api/wallets", as_wallet=False), 405, "method_not_allowed"),
]


async def snapshot(api: Api, wallet: Wallet) -> dict[str, Any]:
    return {
        "conservation": await api.conservation(),
        "wallet": await api.wallet(wallet),
        "faults": (await api.admin("GET", "/admin/faults")).body,
        "fix": (await api.admin("GET", "/admin/fix")).body,
    }


def table() -> list[Any]:
    """Every case under fix on; the payout cases under fix off too (the flow that charges first)."""
    params = []
    for name, req, status, error in CASES:
        modes = ["off", "on"] if name.startswith("pay-") else ["on"]
        params += [pytest.param(m, req, status, error, id=f"{m}-{name}") for m in modes]
    return params


@pytest.mark.parametrize(("mode", "req", "status", "error"), table())
def test_bad_input_is_a_clear_4xx_and_moves_nothing(tmp_path, mode, req, status, error):
    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix=mode)) as api:
            wallet = await api.new_wallet(FUNDS_MSAT)
            ctx = Ctx(
                api,
                wallet,
                (await api.invoice(10_000))["payment_request"],
                (await api.invoice(FUNDS_MSAT))["payment_request"],
            )
            before = await snapshot(api, wallet)

            headers = dict(req.headers or {})
            if req.as_wallet:
                headers.setdefault("X-Api-Key", wallet.api_key)
            if req.admin:
                headers["X-Admin-Token"] = api.admin_token
            body = req.body(ctx) if callable(req.body) else req.body
            path = req.path.replace("{wallet}", wallet.wallet_id)
            if isinstance(body, bytes):
                reply = await api.call(req.method, path, data=body, headers=headers)
            else:
                reply = await api.call(req.method, path, json_body=body, headers=headers)

            assert reply.status == status, reply
            assert reply.content_type == "application/json", reply
            assert isinstance(reply.body, dict) and reply.error == error, reply
            assert isinstance(reply.body.get("message"), str) and reply.body["message"]
            for leak in ("Traceback", 'File "', "target/", ".py"):
                assert leak not in reply.text, reply
            assert await snapshot(api, wallet) == before

            # Still serving: a good payout right after works and costs amount + fee.
            good = await api.pay(wallet, ctx.invoice)
            assert good.status == 200, good

    run(scenario())


def test_the_deposit_total_is_bounded_so_the_ledger_never_overflows(tmp_path):
    """Five wallets of 21M BTC each used to overflow SQLite's integer and stop the journal for
    good (every later write failed, /health said failed). Now the fifth is refused up front."""

    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            quarter = MAX_AMOUNT_MSAT // 4
            wallets = [await api.new_wallet(quarter) for _ in range(4)]
            before = await api.conservation()
            for balance_msat in (MAX_AMOUNT_MSAT, quarter, MAX_AMOUNT_MSAT - 4 * quarter + 1):
                reply = await api.call(
                    "POST", "/api/wallets", json_body={"balance_msat": balance_msat}
                )
                assert reply.status == 409 and reply.error == "deposit_limit", reply
            assert await api.conservation() == before
            health = await api.call("GET", "/health")
            assert health.status == 200 and health.body["status"] == "ok", health
            invoice = await api.invoice(quarter // 2)
            paid = await api.pay(wallets[0], invoice["payment_request"])
            assert paid.status == 200, paid
            rec = await api.settled_reconciliation()
            assert rec["conserved"] is True
            assert rec["conservation"]["deposits_msat"] == 4 * quarter

    run(scenario())


def echoed(reply: Any) -> str | None:
    """The request id an answer carries (header names are case-insensitive)."""
    return {k.lower(): v for k, v in reply.headers.items()}.get("x-request-id")


def test_every_answer_carries_its_requests_id(tmp_path):
    """X-Request-Id is echoed on every answer, a refusal and an unrouted path included, so a
    client tells its answer from one that reached the wrong request on a reused connection (the
    retry rounds' judge relies on it); an id too long or not printable ASCII is not echoed."""

    async def scenario() -> None:
        async with in_process(fast_config(tmp_path / "w.sqlite", fix="on")) as api:
            wallet = await api.new_wallet(10_000_000)
            invoice = await api.invoice(10_000)
            path = f"/api/wallets/{wallet.wallet_id}/payouts"
            paid = await api.call(
                "POST", path, json_body={"payment_request": invoice["payment_request"]},
                headers={"X-Api-Key": wallet.api_key, "X-Request-Id": "req-1"},
            )  # fmt: skip
            assert paid.status == 200 and echoed(paid) == "req-1", paid
            refused = await api.call(
                "POST", path, json_body={"payment_request": "lnbc1nonsense"},
                headers={"X-Api-Key": wallet.api_key, "X-Request-Id": "req-2"},
            )  # fmt: skip
            assert refused.status == 400 and echoed(refused) == "req-2"
            unauthorized = await api.call(
                "POST", path, json_body={}, headers={"X-Request-Id": "req-3"}
            )
            assert unauthorized.status == 401
            assert echoed(unauthorized) == "req-3"
            unrouted = await api.call("GET", "/nowhere", headers={"X-Request-Id": "req-4"})
            assert unrouted.status == 404 and echoed(unrouted) == "req-4"
            for bad in ("x" * 129, "caf\u00e9"):
                answer = await api.call("GET", "/health", headers={"X-Request-Id": bad})
                assert answer.status == 200 and echoed(answer) is None

    run(scenario())
