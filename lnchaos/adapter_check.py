"""`lnchaos adapter-check NAME`: the contract test an adapter author runs (docs/adapters.md).

It makes every call the payers and the checks make (locustfiles/wallets/base.py CALLS), once
each under the outcome it must read (a payment the node made, one it failed, one that timed out
and settled late, a retry), and judges each answer by the node's truth, read by the check itself
from the node, never through the adapter. Each call is reported `ok`, `missing` (the adapter
lacks it) or `misread` (its answer disagrees with the node, and how); exit 0 when all are ok.

Against the embedded target by default (started and stopped here); `--host URL --admin-token T`
for a running lnchaos target; `--host URL --node-url N --node-admin-token T` for a service that
pays through a `lnchaos node` (judged_by "node"). The node's faults are set for each step and
given back as they were at the end.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

EXIT_CODES = """exit codes:
  0   every call of the adapter read every outcome as the node's truth says
  1   a call is missing or misread (each named on its line)
  2   a usage error (an unknown option, a value of the wrong type)
  5   the adapter does not load, or the service or the node is not usable"""

FUNDING_MSAT = 5_000_000
AMOUNT_MSAT = 21_000
SETTLE_TIMEOUT_S = 30.0
POLL_S = 0.25
HEALTH_TIMEOUT_S = 20.0
NETWORK_TIMEOUT_S = 15.0
# the node's faults per step: nothing goes wrong, everything fails, everything times out and
# settles late (after a short hold, so the check is quick)
CLEAN = {"timeout_rate": 0.0, "failure_rate": 0.0, "http_error_rate": 0.0}
CLEAN_HTTP = {"http_reset_rate": 0.0, "http_stall_rate": 0.0, "http_latency_rate": 0.0}
FAILING = {"failure_rate": 1.0, "timeout_rate": 0.0}
TIMING_OUT = {"timeout_rate": 1.0, "failure_rate": 0.0, "late_settle_rate": 1.0}
HASH = re.compile(r"^[0-9a-f]{64}$")
CHECKED = ("balance", "authorisations")  # the accounting models adapter-check runs
CALL_WIDTH = 28  # the report's column of calls: the longest, "withdraw (error after paid)"


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("adapter", help="a --wallet-api name or package.module:Class")
    parser.add_argument("--host", default=None, help="the service (default: the embedded target)")
    parser.add_argument("--admin-token", default=None, help="--host's admin token (a target)")
    parser.add_argument("--node-url", default=None, help="the node a judged_by=node service uses")
    parser.add_argument("--node-admin-token", default=None, help="the node's admin token")
    parser.add_argument(
        "--settle-timeout-s",
        type=float,
        default=SETTLE_TIMEOUT_S,
        help="how long a timed-out payment may take to become final at the service and node",
    )


@dataclass
class Step:
    call: str
    verdict: str  # ok | missing | misread | skipped
    detail: str

    def line(self) -> str:
        return f"{self.verdict:<8} {self.call:<{CALL_WIDTH}} {self.detail}"


class Misread(Exception):
    """An answer that disagrees with the node's truth (the message says how)."""


def main(args: argparse.Namespace) -> int:
    # the adapters speak through Locust's sessions; this process is not a Locust run, so
    # gevent's monkey patching (which Locust does at import) stays off: the sessions use
    # gevent's own sockets, the judge's reads urllib
    os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")
    from locustfiles.admin_client import TargetError
    from locustfiles.wallets import registry

    try:
        adapter_class = registry.find(args.adapter)
    except registry.AdapterError as err:
        print(f"adapter-check: {err}")
        return 5
    print(f"adapter-check: {registry.spec_of(args.adapter)}")
    accounting = getattr(adapter_class, "accounting", "balance")
    if accounting not in CHECKED:
        print(f"adapter-check: the {accounting} model is judged by suite runs, not checked here")
        return 5
    started = None
    try:
        service, node, started = _service_and_node(args, adapter_class)
        steps = checker_for(adapter_class)(adapter_class, service, node, args).run()
    except TargetError as err:
        print(f"adapter-check: the service or node is not usable: {err}")
        return 5
    finally:
        if started is not None:
            started.stop()
    for step in steps:
        print(step.line())
    bad = [s for s in steps if s.verdict in ("missing", "misread")]
    verdicts = [s.verdict for s in steps]
    summary = ", ".join(f"{verdicts.count(v)} {v}" for v in ("ok", "missing", "misread", "skipped"))
    print(f"adapter-check: {summary}")
    return 1 if bad else 0


def _service_and_node(args: argparse.Namespace, adapter_class: type) -> tuple[str, Any, Any]:
    """(the service's URL, the node's admin client, the embedded target started here or None)."""
    from locustfiles.admin_client import TargetAdmin, TargetError

    if getattr(adapter_class, "judged_by", "target") == "node":
        if not (args.host and args.node_url and args.node_admin_token):
            raise TargetError(
                "a judged_by=node adapter needs --host, --node-url and --node-admin-token"
            )
        node = TargetAdmin(args.node_url, args.node_admin_token)
        node.wait_healthy(HEALTH_TIMEOUT_S)
        return args.host.rstrip("/"), node, None
    if args.host:
        if not args.admin_token:
            raise TargetError("--host of a target needs --admin-token (the check sets faults)")
        node = TargetAdmin(args.host, args.admin_token)
        node.wait_healthy(HEALTH_TIMEOUT_S)
        return args.host.rstrip("/"), node, None
    from locustfiles.embedded_target import EmbeddedTarget
    from locustfiles.options import settings_from

    report_dir = Path(tempfile.mkdtemp(prefix="lnchaos-adapter-check-"))
    target = EmbeddedTarget(settings_from(SimpleNamespace(fix="on", report_dir=str(report_dir))))
    url = target.start()
    return url, TargetAdmin(url, target.admin_token), target


def fake_user(adapter_name: str, service_url: str, args: argparse.Namespace) -> Any:
    """What `for_user` reads of a Locust user: a session to the service, the options, the
    request event (its failures are the check's to report), the timeouts."""
    from locust.contrib.fasthttp import FastHttpSession
    from locust.event import EventHook

    failures: list[str] = []
    request_event = EventHook()

    def on_request(name: str, exception: Any = None, **_kw: Any) -> None:
        if exception is not None:
            failures.append(f"{name}: {exception}")

    request_event.add_listener(on_request)
    options = SimpleNamespace(
        wallet_api=adapter_name,
        host=service_url,
        node_url=args.node_url,
        node_admin_token=args.node_admin_token,
    )
    environment = SimpleNamespace(
        parsed_options=options, events=SimpleNamespace(request=request_event), host=service_url
    )
    user = SimpleNamespace(
        environment=environment,
        network_timeout=NETWORK_TIMEOUT_S,
        connection_timeout=NETWORK_TIMEOUT_S,
        context=dict,
        failures=failures,
    )
    user.client = FastHttpSession(
        service_url,
        request_event,
        user,
        network_timeout=NETWORK_TIMEOUT_S,
        connection_timeout=NETWORK_TIMEOUT_S,
    )
    return user


class AdapterCheck:
    """The steps in the order a payer makes the calls; each judged by the node's truth."""

    def __init__(self, adapter_class: type, service_url: str, node: Any, args: Any) -> None:
        self.adapter_class = adapter_class
        self.service_url = service_url
        self.node = node  # TargetAdmin of the node (its truth, its faults)
        self.args = args
        self.steps: list[Step] = []
        self.api: Any = None
        self.wallet: Any = None
        self.balance_msat = 0  # what the wallet must hold, by the node's truth
        self.paid_hashes: dict[str, str] = {}  # payment hash -> node status

    def run(self) -> list[Step]:
        from locustfiles.wallets import registry

        problem = registry.contract_problem(self.adapter_class)
        missing = registry.missing_calls(self.adapter_class)
        if problem and not missing:
            self.steps.append(Step("contract", "misread", problem))
        for call in missing:
            self.steps.append(Step(call, "missing", "the contract's call is not there"))
        if "for_user" in missing:
            return self.steps
        baseline = self.node.get_faults()
        try:
            self._steps()
        finally:
            restore = {k: baseline[k] for k in (*CLEAN, *CLEAN_HTTP, *TIMING_OUT) if k in baseline}
            self.node.set_faults(restore)
        return self.steps

    # the calls that need no wallet (or link) of an earlier call
    NEEDS_NOTHING = ("for_user", "create_wallet", "create_invoice")

    def sequence(self) -> list[tuple[str, Callable[[], str], dict[str, float] | None]]:
        """(call, step, the node's faults for it): the payers' calls of a balance model."""
        clean = {**CLEAN, **CLEAN_HTTP}
        return [
            ("for_user", self._for_user, clean),
            ("create_wallet", self._create_wallet, None),
            ("get_wallet", self._get_wallet_funded, None),
            ("create_invoice", self._create_invoice, None),
            ("pay", self._pay_succeeds, None),
            ("get_node_payment", self._node_payment, None),
            ("get_payout", self._get_payout, None),
            ("get_wallet", self._get_wallet_after, None),
            ("pay (retry)", self._pay_again, None),
            ("pay (failed)", self._pay_fails, FAILING),
            ("pay (timeout)", self._pay_times_out, TIMING_OUT),
            ("paid", self._paid, clean),
        ]

    def _ready(self, call: str) -> bool:
        """An earlier call gave what this one needs."""
        if call == "for_user":
            return True
        return self.api is not None and (self.wallet is not None or call in self.NEEDS_NOTHING)

    def _steps(self) -> None:
        for call, step, faults in self.sequence():
            if any(s.call == call.split(" ")[0] and s.verdict == "missing" for s in self.steps):
                continue
            if not self._ready(call):
                self.steps.append(Step(call, "skipped", "an earlier call gave nothing to go on"))
                continue
            if faults:
                self.node.set_faults(dict(faults))
            self.steps.append(self._judge(call, step))

    def _judge(self, call: str, step: Callable[[], str]) -> Step:
        failures = self.user.failures if self.api is not None else []
        before = len(failures)
        try:
            detail = step()
        except (AttributeError, NotImplementedError) as err:
            return Step(call, "missing", f"{type(err).__name__}: {err}")
        except Misread as err:
            detail = str(err) + _requests_failed(failures[before:])
            through_balance = call != "get_wallet" and str(err).startswith("balance")
            if through_balance and self._misread("get_wallet"):
                detail += " (read through get_wallet, misread above)"
            return Step(call, "misread", detail)
        except Exception as err:  # an adapter's bug is the adapter's finding, not a crash
            return Step(call, "misread", f"raised {type(err).__name__}: {err}")
        return Step(call, "ok", detail)

    def _misread(self, call: str) -> bool:
        return any(s.call == call and s.verdict == "misread" for s in self.steps)

    # --- the steps ----------------------------------------------------------------------------
    def _for_user(self) -> str:
        self.user = fake_user(self.args.adapter, self.service_url, self.args)
        self.api = self.adapter_class.for_user(self.user)
        self.api.chaos_connection_errors = False
        return (
            f"idempotent={self.adapter_class.idempotent} judged_by={self.adapter_class.judged_by}"
        )

    def _create_wallet(self) -> str:
        wallet = self.api.create_wallet(FUNDING_MSAT)
        if wallet is None or not isinstance(getattr(wallet, "balance_msat", None), int):
            raise Misread(f"no wallet for {FUNDING_MSAT} msat: {wallet!r}")
        if wallet.balance_msat < FUNDING_MSAT:
            raise Misread(f"funded {wallet.balance_msat} msat, asked {FUNDING_MSAT}")
        self.wallet, self.balance_msat = wallet, wallet.balance_msat
        return f"funded {wallet.balance_msat} msat"

    def _balance(self) -> int:
        view = self.api.get_wallet(self.wallet)
        if not isinstance(view, dict) or not isinstance(view.get("balance_msat"), int):
            raise Misread(f"no balance_msat (an int) in {view!r}")
        return int(view["balance_msat"])

    def _get_wallet_funded(self) -> str:
        actual = self._balance()
        if actual != self.balance_msat:
            raise Misread(f"balance {actual} msat, the wallet was funded {self.balance_msat}")
        return f"balance {actual} msat"

    def _create_invoice(self) -> str:
        invoice = self._invoice()
        return f"{invoice.amount_msat} msat, hash {invoice.payment_hash[:12]}..."

    def _invoice(self) -> Any:
        invoice = self.api.create_invoice(AMOUNT_MSAT)
        if invoice is None:
            raise Misread("no invoice")
        if invoice.amount_msat != AMOUNT_MSAT or not HASH.match(str(invoice.payment_hash)):
            raise Misread(f"{invoice!r}: asked {AMOUNT_MSAT} msat, a 64-hex payment hash")
        return invoice

    def _truth(self, payment_hash: str, final: bool = True) -> dict[str, Any]:
        """The node's truth, read by the check (bounded wait for a final one)."""
        deadline = time.monotonic() + self.args.settle_timeout_s
        for _ in range(int(self.args.settle_timeout_s / POLL_S) + 1):
            truth = self.node.node_payment(payment_hash)
            if not final or truth.get("status") in ("succeeded", "failed", "unknown"):
                return truth
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        raise Misread(f"the node has {payment_hash[:12]}... still in flight after the bound")

    def _pay(self, invoice: Any, **kw: Any) -> Any:
        key = uuid.uuid4().hex
        self.last_key = key
        return self.api.pay(self.wallet, invoice, key, "check", **kw)

    def _pay_succeeds(self) -> str:
        self.invoice = self._invoice()
        result = self._pay(self.invoice)
        truth = self._truth(self.invoice.payment_hash)
        if truth.get("status") != "succeeded":
            raise Misread(f"the node did not pay with no fault on: {truth}")
        self._charge(self.invoice.payment_hash, truth)
        self.result = result
        if result.kind != "ok":
            raise Misread(f"the node paid; read as kind {result.kind!r} ({result.describe()})")
        return f"ok, the node paid (fee {truth.get('fee_msat')} msat)"

    def _charge(self, payment_hash: str, truth: dict[str, Any]) -> None:
        """What the wallet must hold now, by the node's truth of one payment."""
        if truth.get("status") == "succeeded":
            self.balance_msat -= AMOUNT_MSAT + int(truth.get("fee_msat") or 0)
        self.paid_hashes[payment_hash] = str(truth.get("status"))

    def _node_payment(self) -> str:
        mine = self.node.node_payment(self.invoice.payment_hash)
        theirs = self.api.get_node_payment(self.invoice.payment_hash)
        keys = ("status", "fee_msat")
        if not isinstance(theirs, dict) or any(theirs.get(k) != mine.get(k) for k in keys):
            raise Misread(f"{theirs!r}; the node says {[(k, mine.get(k)) for k in keys]}")
        return f"{mine.get('status')}, as the node says"

    def _get_payout(self) -> str:
        payout_id = self.result.payout_id or self.invoice.payment_hash
        payout = self.api.get_payout(self.wallet, payout_id)
        if not isinstance(payout, dict) or payout.get("status") != "succeeded":
            raise Misread(f"{payout!r} for a payout the node paid (status succeeded)")
        return f"{payout_id[:12]}... succeeded"

    def _get_wallet_after(self) -> str:
        actual = self._balance()
        if actual != self.balance_msat:
            raise Misread(f"balance {actual} msat; by the node's truth {self.balance_msat}")
        return f"balance {actual} msat = funding - amount - the node's fee"

    def _pay_again(self) -> str:
        key = self.last_key
        result = self.api.pay(
            self.wallet, self.invoice, key, "check", retry=True, refusals=("request_in_progress",)
        )
        if self.adapter_class.idempotent and result.kind != "ok":
            raise Misread(f"same key, same payout: read as {result.kind!r} ({result.describe()})")
        actual = self._balance()
        if actual != self.balance_msat:
            raise Misread(f"balance {actual} msat after the retry; {self.balance_msat} expected")
        return f"{result.kind}, charged once"

    def _pay_fails(self) -> str:
        invoice = self._invoice()
        result = self._pay(invoice)
        truth = self._truth(invoice.payment_hash)
        self._charge(invoice.payment_hash, truth)
        if truth.get("status") != "failed":
            raise Misread(f"the node was set to fail every payment: {truth}")
        if result.kind not in ("fail", "info"):
            raise Misread(f"the node failed it; read as {result.kind!r} ({result.describe()})")
        self._settle(result, invoice, truth)
        return f"{result.kind}, nothing charged"

    def _pay_times_out(self) -> str:
        invoice = self._invoice()
        result = self._pay(invoice)
        if result.kind not in ("info", "ok"):
            raise Misread(f"a payment in flight read as {result.kind!r} ({result.describe()})")
        self.node.set_faults(dict(CLEAN))  # the next payments are the check's own again
        truth = self._truth(invoice.payment_hash)
        self._charge(invoice.payment_hash, truth)
        self._settle(result, invoice, truth)
        return f"{result.kind}, then {truth.get('status')} at the node and the service"

    def _settle(self, result: Any, invoice: Any, truth: dict[str, Any]) -> None:
        """The service's payout and the wallet's balance become what the node's truth says
        (bounded)."""
        if callable(getattr(self.api, "get_payout", None)):  # a missing one is reported apart
            self._settled_payout(result, invoice, truth)
        actual = self._balance()
        if actual != self.balance_msat:
            raise Misread(f"balance {actual} msat; by the node's truth {self.balance_msat}")

    def _settled_payout(self, result: Any, invoice: Any, truth: dict[str, Any]) -> None:
        """The service's payout becomes final as the node's truth says (bounded)."""
        wanted = "succeeded" if truth.get("status") == "succeeded" else "failed"
        payout_id = result.payout_id or invoice.payment_hash
        deadline = time.monotonic() + self.args.settle_timeout_s
        payout: Any = None
        for _ in range(int(self.args.settle_timeout_s / POLL_S) + 1):
            payout = self.api.get_payout(self.wallet, payout_id)
            if isinstance(payout, dict) and payout.get("status") in ("succeeded", "failed"):
                break
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_S)
        status = payout.get("status") if isinstance(payout, dict) else None
        if status != wanted:
            raise Misread(f"the payout reads {status!r}; the node says {truth.get('status')}")

    def _paid(self) -> str:
        paid = self.api.paid(self.wallet)
        if paid is None:
            return "the API has no list (the reconciliation covers it)"
        if not isinstance(paid, list):
            raise Misread(f"not a list: {paid!r}")
        listed = {p.get("payment_hash"): p for p in paid if isinstance(p, dict)}
        for payment_hash, status in self.paid_hashes.items():
            entry = listed.get(payment_hash)
            if status == "succeeded" and (entry is None or entry.get("status") != "succeeded"):
                raise Misread(f"{payment_hash[:12]}... paid by the node; listed as {entry!r}")
            if status == "failed" and entry is not None and entry.get("status") == "succeeded":
                raise Misread(f"{payment_hash[:12]}... failed at the node; listed {entry!r}")
        return f"{len(paid)} payments, each as the node says"


def _requests_failed(failures: list[str]) -> str:
    return f" (failed requests: {'; '.join(failures[:3])})" if failures else ""


def checker_for(adapter_class: type) -> type[AdapterCheck]:
    """The check of the adapter's accounting model (CHECKED)."""
    from lnchaos.adapter_check_links import LinkCheck

    return (
        LinkCheck
        if getattr(adapter_class, "accounting", "balance") == "authorisations"
        else (AdapterCheck)
    )
