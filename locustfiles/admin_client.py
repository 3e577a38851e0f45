"""The master's calls to the target outside the load: health, fix mode, faults, reconciliation,
and the final audit's reads (the node's truth of a payment, a wallet, a payout).

Plain `urllib` (cooperative under Locust's gevent monkey-patching), so these calls never show
up in the load statistics; only the verdict turns the reconciliation into a check event.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from lnchaos.checker import scope
from locustfiles.checker import RECONCILED_KINDS, UNRESOLVED

REQUEST_TIMEOUT_S = 5.0


def settled_digest(report: dict[str, Any]) -> tuple[Any, ...]:
    """What the verdict reads of a reconciliation: each kind's count and amount, what is still
    pending, the payouts or payments seen, conservation."""
    kinds = tuple(
        (kind, int(entry.get("count", 0)), int(entry.get("amount_msat", 0)))
        for kind in RECONCILED_KINDS
        for entry in [report.get(kind) or {}]
    )
    seen = json.dumps([report.get("payouts"), report.get("payments")], sort_keys=True)
    return kinds, report.get("pending"), seen, report.get("conserved")


class TargetError(Exception):
    """The target did not answer, or answered with an error."""


class TargetTimeout(TargetError):
    """The target took longer than REQUEST_TIMEOUT_S to answer: a moment of its load, or a read
    that waits for the node (LNbits' status of a payment in flight), not an answer."""


class TargetAdmin:
    def __init__(self, base_url: str, admin_token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.admin_token:
            request.add_header("X-Admin-Token", self.admin_token)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            detail = err.read()[:300].decode(errors="replace")
            raise TargetError(f"{method} {path}: HTTP {err.code} {detail}") from None
        except (OSError, ValueError) as err:
            # the answer timed out (TimeoutError), or the connect did (urllib wraps it)
            if isinstance(err, TimeoutError) or isinstance(
                getattr(err, "reason", None), TimeoutError
            ):
                raise TargetTimeout(f"{method} {path}: timed out") from None
            raise TargetError(f"{method} {path}: {err}") from None

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/health")

    def wait_healthy(self, timeout_s: float, poll_interval_s: float = 0.1) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.health()
            except TargetError:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(poll_interval_s)

    def get_fix(self) -> str:
        return str(self._call("GET", "/admin/fix")["mode"])

    def set_fix(self, mode: str) -> str:
        return str(self._call("PUT", "/admin/fix", {"mode": mode})["mode"])

    def get_faults(self) -> dict[str, Any]:
        return self._call("GET", "/admin/faults")

    def set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        return self._call("PUT", "/admin/faults", changes)

    def set_seed(self, seed: int) -> int:
        """The seed of the node's fault draws from now on (PUT /admin/seed): a run started from
        the web UI's form replays with its own seed on a target that is already running."""
        return int(self._call("PUT", "/admin/seed", {"seed": int(seed)})["seed"])

    def metrics_gauges(self, names: tuple[str, ...]) -> dict[str, float]:
        """Unlabelled gauges from GET /metrics (Prometheus text), by name; those absent are left
        out. The live view's "pending now" and "in flight now"."""
        request = urllib.request.Request(self.base_url + "/metrics", method="GET")
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:
                text = response.read(1_000_000).decode(errors="replace")
        except (OSError, ValueError) as err:
            raise TargetError(f"GET /metrics: {err}") from None
        found: dict[str, float] = {}
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name in names:
                try:
                    found[name] = float(value)
                except ValueError:
                    continue
        return found

    def reconciliation(
        self, *, since_ms: int | None = None, stuck_after_s: float | None = None
    ) -> dict[str, Any]:
        """GET /admin/reconciliation; since_ms: the run's view (docs/target-api.md)."""
        query = {}
        if since_ms is not None:
            query["since_ms"] = str(int(since_ms))
        if stuck_after_s is not None:
            query["stuck_after_s"] = repr(float(stuck_after_s))
        suffix = "?" + urllib.parse.urlencode(query) if query else ""
        return self._call("GET", "/admin/reconciliation" + suffix)

    def node_payment(self, payment_hash: str) -> dict[str, Any]:
        """The node's truth of a payment hash: the node's own route, never the wallet's API."""
        quoted = urllib.parse.quote(payment_hash, safe="")
        return self._json_object("GET", f"/node/payments/{quoted}")

    def wallet(self, wallet_id: str, api_key: str) -> dict[str, Any]:
        """The wallet's view (balance_msat, reserved_msat), with the wallet's own key."""
        quoted = urllib.parse.quote(wallet_id, safe="")
        return self._json_object("GET", f"/api/wallets/{quoted}", {"X-Api-Key": api_key})

    def payout(self, payout_id: str, api_key: str) -> dict[str, Any]:
        quoted = urllib.parse.quote(payout_id, safe="")
        return self._json_object("GET", f"/api/payouts/{quoted}", {"X-Api-Key": api_key})

    def _json_object(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        answer = self._call(method, path, headers=headers)
        if not isinstance(answer, dict):
            raise TargetError(f"{method} {path}: not a JSON object")
        return answer

    def clock_ms(self) -> int:
        """The target's clock (ms since the epoch): the marker a run is scoped by. Taken from the
        target, not from here, because its payouts carry its own time."""
        now_ms = self.reconciliation().get("now_ms")
        if not isinstance(now_ms, int):
            raise TargetError("the target's reconciliation has no now_ms (run scoping)")
        return now_ms

    def wait_settled(
        self,
        timeout_s: float,
        *,
        since_ms: int | None = None,
        poll_interval_s: float = 0.25,
        at_start: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """The run's reconciliation once none of its payouts is pending and nothing is in flight
        on the node, asked with stuck_after_s=0: whatever is not final counts as unresolved;
        and once two such answers in a row agree on what the verdict reads (settled_digest).

        The second answer is there for requests still running when the users stopped: a wallet
        may take a payment the judge has not seen yet (LNbits writes its row, then pays), and a
        read in the middle of one sees a balance its payment list does not explain, or a payment
        the node made after the wallet was read. Such a moment does not repeat itself.

        Bounded: after timeout_s the last answer is returned as it is (its `unresolved` then says
        what did not become final).

        A poll that timed out (TargetTimeout) is asked again until timeout_s: a moment of load
        is not the target's failure. Any other error, or a timeout at the end, is (TargetError).

        at_start: the judge's record of what the target held at the run's start (scope.py): a
        payout the target's clock put "before the run" that was not there then is the run's, and
        is waited for like the others.
        """
        deadline = time.monotonic() + timeout_s
        previous: tuple[Any, ...] | None = None
        while True:
            try:
                report = self.reconciliation(since_ms=since_ms, stuck_after_s=0.0)
            except TargetTimeout:
                if time.monotonic() >= deadline:
                    raise
                previous = None  # a settled answer counts only if the next one agrees
                time.sleep(poll_interval_s)
                continue
            # Settled by the very field the verdict counts: the target reads its rows, then asks
            # the node, then counts; a payout settled in between shows pending in `unresolved`
            # but not in `pending`, so `pending` alone could end the wait on a stale verdict.
            unresolved = int((report.get("unresolved") or {}).get("count", 0))
            in_flight = int((report.get("node") or {}).get("in_flight", 0))
            unresolved += _pushed_unsettled(report, at_start)
            digest = None
            if unresolved == 0 and int(report.get("pending", 0)) == 0 and in_flight == 0:
                digest = settled_digest(report)
                if digest == previous:
                    return report
            previous = digest
            if time.monotonic() >= deadline:
                return report
            time.sleep(poll_interval_s)


def _pushed_unsettled(report: dict[str, Any], at_start: dict[str, int] | None) -> int:
    """Payouts the target's clock put before the run that were not there at its start and are
    not final yet (scope.pushed_into_run): the run's, still to wait for."""
    pushed = scope.pushed_into_run(report, at_start).get(UNRESOLVED) or {}
    return int(pushed.get("count", 0))
