"""Helpers for the target's acceptance tests: an in-process target, a real target process, and
one small HTTP client for both.

Every wait here has a deadline; a test that waits for something polls for it and fails with the
last value it saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import ClientSession, ClientTimeout, web
from aiohttp.test_utils import TestServer

from target.app import TargetConfig, create_app
from target.common.child import ChildServer
from target.config import FixMode, WalletSettings
from target.node.faults import FaultSettings
from target.state import STATE, TargetState

ADMIN_TOKEN = "test-admin-token"
REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 30.0) -> T:
    """Run one test scenario on a fresh event loop, bounded."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout=timeout_s)

    return asyncio.run(bounded())


def fast_faults(**changes: Any) -> FaultSettings:
    """Faults for fast, deterministic tests: nothing fails unless asked, latencies tiny."""
    values: dict[str, Any] = {
        "timeout_rate": 0.0,
        "failure_rate": 0.0,
        "late_settle_rate": 0.0,
        "latency_ms_median": 1.0,
        # a timed-out payment's hold, far past the wallet's 100 ms deadline (fast_config): a
        # busy machine's stall between the send and the wait must not let the hold end first
        # (with 300 ms, a loaded run once answered 502 where the test wanted 202 pending)
        "inflight_hold_ms": 1000.0,
    }
    values.update(changes)
    return FaultSettings(**values)


def fast_config(db_path: Path, *, fix: FixMode | str = FixMode.ON, **faults: Any) -> TargetConfig:
    return TargetConfig(
        fix=FixMode(fix),
        seed=7,
        admin_token=ADMIN_TOKEN,
        db_path=db_path,
        faults=fast_faults(**faults),
        wallet=WalletSettings(
            node_timeout_ms=100, resolver_interval_ms=20, reconcile_interval_s=60.0
        ),
    )


@dataclass
class Wallet:
    wallet_id: str
    api_key: str
    balance_msat: int


@dataclass
class Reply:
    status: int
    body: Any
    text: str
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        return self.body.get("error") if isinstance(self.body, dict) else None


@dataclass
class Api:
    """The target's HTTP API, as a client sees it."""

    session: ClientSession
    base_url: str
    admin_token: str = ADMIN_TOKEN
    state: TargetState | None = field(default=None, repr=False)  # in-process targets only
    app: web.Application | None = field(default=None, repr=False)  # in-process targets only

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        kwargs: dict[str, Any] = {"headers": headers or {}}
        if data is not None:
            kwargs["data"] = data
        elif json_body is not None:
            kwargs["json"] = json_body
        async with self.session.request(method, self.base_url + path, **kwargs) as resp:
            text = await resp.text()
            try:
                body = json.loads(text) if resp.content_type == "application/json" else text
            except ValueError:
                body = text
            return Reply(resp.status, body, text, resp.content_type, dict(resp.headers))

    # ---- wallet API --------------------------------------------------------------------------

    async def new_wallet(self, balance_msat: int) -> Wallet:
        reply = await self.call("POST", "/api/wallets", json_body={"balance_msat": balance_msat})
        assert reply.status == 201, reply
        return Wallet(reply.body["wallet_id"], reply.body["api_key"], balance_msat)

    async def wallet(self, wallet: Wallet, api_key: str | None = None) -> dict[str, Any]:
        reply = await self.call(
            "GET",
            f"/api/wallets/{wallet.wallet_id}",
            headers={"X-Api-Key": api_key or wallet.api_key},
        )
        assert reply.status == 200, reply
        return reply.body

    async def pay(
        self, wallet: Wallet, payment_request: str, idempotency_key: str | None = None
    ) -> Reply:
        headers = {"X-Api-Key": wallet.api_key}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return await self.call(
            "POST",
            f"/api/wallets/{wallet.wallet_id}/payouts",
            json_body={"payment_request": payment_request},
            headers=headers,
        )

    async def payout(self, payout_id: str, wallet: Wallet) -> dict[str, Any]:
        reply = await self.call(
            "GET", f"/api/payouts/{payout_id}", headers={"X-Api-Key": wallet.api_key}
        )
        assert reply.status == 200, reply
        return reply.body

    # ---- the network ---------------------------------------------------------------------------

    async def invoice(self, amount_msat: int) -> dict[str, Any]:
        reply = await self.call("POST", "/node/invoices", json_body={"amount_msat": amount_msat})
        assert reply.status == 201, reply
        return reply.body

    async def node_payment(self, payment_hash: str) -> dict[str, Any]:
        reply = await self.call("GET", f"/node/payments/{payment_hash}")
        assert reply.status == 200, reply
        return reply.body

    # ---- admin ---------------------------------------------------------------------------------

    async def admin(self, method: str, path: str, json_body: Any = None) -> Reply:
        return await self.call(
            method, path, json_body=json_body, headers={"X-Admin-Token": self.admin_token}
        )

    async def reconciliation(self) -> dict[str, Any]:
        reply = await self.admin("GET", "/admin/reconciliation")
        assert reply.status == 200, reply
        return reply.body

    async def settled_reconciliation(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """Reconciliation once nothing is pending and the node has nothing in flight."""

        async def probe() -> dict[str, Any] | None:
            rec = await self.reconciliation()
            quiet = rec["pending"] == 0 and rec["node"]["in_flight"] == 0
            return rec if quiet and rec["awaiting_node"] == 0 else None

        return await eventually(probe, timeout_s=timeout_s, what="a settled reconciliation")

    async def conservation(self) -> dict[str, Any]:
        """The conservation numbers (what a bad request must leave unchanged)."""
        rec = await self.reconciliation()
        return {**rec["conservation"], "payouts": rec["payouts"], "node": rec["node"]}


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.02,
    what: str = "a condition",
) -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"gave up after {timeout_s}s waiting for {what}; last: {value!r}")
        await asyncio.sleep(interval_s)


def assert_clean(rec: dict[str, Any]) -> None:
    """A reconciliation with no mismatch of any kind and the money conserved."""
    assert rec["conserved"] is True, rec
    for kind in ("charged_not_paid", "paid_not_charged", "stuck_pending"):
        assert rec[kind]["count"] == 0, (kind, rec)
    conservation = rec["conservation"]
    assert conservation["negative_accounts"] == 0, rec
    assert conservation["accounts_off_journal"] == 0, rec


@asynccontextmanager
async def in_process(config: TargetConfig, *, check_conserved: bool = True) -> AsyncIterator[Api]:
    """A target served by this process's loop on 127.0.0.1; conservation is checked at exit."""
    app: web.Application = create_app(config)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with ClientSession(timeout=ClientTimeout(total=15)) as session:
            api = Api(session, str(server.make_url("")).rstrip("/"), config.admin_token)
            api.state = app[STATE]
            api.app = app
            yield api
            if check_conserved:
                rec = await api.reconciliation()
                assert rec["conserved"] is True, rec
    finally:
        await server.close()


def late_settling_config(db_path: Path) -> TargetConfig:
    """Fix on, every payment times out and settles late (600 ms after its deadline)."""
    return fast_config(
        db_path, fix="on", timeout_rate=1.0, late_settle_rate=1.0, inflight_hold_ms=600.0
    )


async def leave_a_payout_pending(db_path: Path, amount_msat: int, funds_msat: int) -> Any:
    """A target on `db_path` (late_settling_config) that answers one payout 202 and stops with
    it pending: (wallet, invoice, the 202 reply), for a test of what the next start does."""
    async with in_process(late_settling_config(db_path)) as api:
        wallet = await api.new_wallet(funds_msat)
        invoice = await api.invoice(amount_msat)
        pending = await api.pay(wallet, invoice["payment_request"])
        assert pending.status == 202, pending
    return wallet, invoice, pending


@asynccontextmanager
async def client(base_url: str, admin_token: str = ADMIN_TOKEN) -> AsyncIterator[Api]:
    async with ClientSession(timeout=ClientTimeout(total=15)) as session:
        yield Api(session, base_url, admin_token)


# ---- a real target process -------------------------------------------------------------------


class TargetProcess(ChildServer):
    """`python -m target ARGS` as a child (target/common/child.py): own session, output in
    `log_path`, SIGTERMed if the test process dies."""

    def __init__(self, args: list[str], *, log_path: Path, cwd: Path = REPO) -> None:
        command = [sys.executable, "-m", "target", *args]
        super().__init__(command, log_path=log_path, cwd=cwd, die_with_parent=True)

    def output(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def target_args(
    db: Path,
    *,
    fix: str,
    seed: int = 11,
    admin_token: str = ADMIN_TOKEN,
    **options: Any,
) -> list[str]:
    """Command-line arguments for `python -m target`; `options` are `--name-with-dashes value`."""
    args = ["--port", "0", "--db", str(db), "--fix", fix, "--seed", str(seed)]
    args += ["--admin-token", admin_token]
    for name, value in options.items():
        args += ["--" + name.replace("_", "-"), str(value)]
    return args
