"""Schemathesis fuzzes the target from its own description (GET /openapi.json): no 5xx, every
answer as described, and no money moved by a rejected request; at the end the books reconcile
with the node's truth and are conserved.

Most cases carry real credentials (the admin token, the fuzzing wallet's key, any hex macaroon)
and some a real wallet id, payout id or a payable invoice, so they get past authentication and
reach the money; every fifth case keeps what was generated, so the refusals are fuzzed too.
The streams and the fault settings are fuzzed apart (test_fuzz_streams_and_faults.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fuzz_harness import ServerThread, Tally, negative_at, run_operations
from schemathesis.checks import ignored_auth

from target.app import NODE, TargetConfig, create_app, target_openapi
from target.config import FixMode, WalletSettings
from target.node.faults import FaultSettings
from target.node.openapi import STREAM_PATHS
from target.state import STATE

ADMIN_TOKEN = "fuzz-admin-token"
MACAROON = "0201036c6e64"
FUNDING_MSAT = 10**12
INVOICES = 40
# Cases per operation and generation mode: the README's command sends at least 1,000 cases in
# all (test_enough_cases); `pytest -m fuzz` sends many more.
EXAMPLES = 20
EXAMPLES_LONG = 100


# A payout asked for with another wallet's key (or an unknown one) answers 404, exactly as a
# missing payout: by design, a payout's existence is not revealed without its key (no key at
# all is a 401). schemathesis' ignored_auth wants 401 for invalid credentials, so it is not
# applied to this route; every other check is.
SKIP_CHECKS = {"GET /api/payouts/{payout_id}": {ignored_auth}}


def fuzzed_here(path: str, method: str) -> bool:
    return path not in STREAM_PATHS and path != "/admin/faults"


class TargetFuzz:
    """The target under fuzzing, its fuzzing wallet, a pool of payable invoices and a payout."""

    def __init__(self, server: ServerThread):
        self.server = server
        self.session = requests.Session()
        url = server.url
        wallet = self.session.post(
            f"{url}/api/wallets", json={"balance_msat": FUNDING_MSAT}, timeout=10
        ).json()
        self.wallet_id, self.api_key = wallet["wallet_id"], wallet["api_key"]
        self.invoices = [
            self.session.post(
                f"{url}/node/invoices", json={"amount_msat": 1000 + i}, timeout=10
            ).json()["payment_request"]
            for i in range(INVOICES)
        ]
        payout = self.session.post(
            f"{url}/api/wallets/{self.wallet_id}/payouts",
            json={"payment_request": self.invoices[0]},
            headers={"X-Api-Key": self.api_key},
            timeout=10,
        )
        assert payout.status_code == 200, payout.text
        self.payout_id = payout.json()["payout_id"]
        self.tally = Tally()

    def prepare(self, case: Any, number: int) -> dict[str, str]:
        """Credentials for four cases in five; a real wallet, payout or invoice for some. What
        a negative case broke on purpose (its headers, path or body) is left as it is."""
        if number % 5 == 0 or negative_at(case, "header"):
            return {}
        headers = {
            "X-Admin-Token": ADMIN_TOKEN,
            "X-Api-Key": self.api_key,
            "Grpc-Metadata-macaroon": MACAROON,
        }
        params = case.path_parameters or {}
        if not negative_at(case, "path"):
            if "wallet_id" in params and number % 3:
                params["wallet_id"] = self.wallet_id
            if "payout_id" in params and number % 3:
                params["payout_id"] = self.payout_id
        body = case.body
        if isinstance(body, dict) and "payment_request" in body and number % 3 == 1:
            if not negative_at(case, "body"):
                body["payment_request"] = self.invoices[number % INVOICES]
        return headers

    def fingerprint(self) -> Any:
        async def money(app: Any) -> Any:
            ledger, node = app[STATE].ledger, app[NODE]
            return (
                sorted(ledger.balances.items()),  # with every queued change
                node.sent_msat,
                node.fees_msat,
                node.receiver.received_msat,
                sorted(node.counts.items()),
            )

        return self.server.on_app(money)

    def reconciliation(self) -> dict[str, Any]:
        answer = self.session.get(
            f"{self.server.url}/admin/reconciliation",
            headers={"X-Admin-Token": ADMIN_TOKEN},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def target(tmp_path: Path) -> Iterator[TargetFuzz]:
    config = TargetConfig(
        fix=FixMode.ON,
        seed=11,
        admin_token=ADMIN_TOKEN,
        db_path=tmp_path / "wallet.sqlite",
        # No timeouts or failures: every payout is final when answered, so a rejected case's
        # fingerprint can only move by its own doing.
        faults=FaultSettings(timeout_rate=0.0, failure_rate=0.0, latency_ms_median=0.5),
        wallet=WalletSettings(reconcile_interval_s=3600.0),
    )
    with ServerThread(lambda: create_app(config)) as server:
        yield TargetFuzz(server)


def run_fuzz(target: TargetFuzz, examples: int) -> Tally:
    run_operations(
        target_openapi(),
        only=fuzzed_here,
        base_url=target.server.url,
        tally=target.tally,
        max_examples=examples,
        prepare=target.prepare,
        fingerprint=target.fingerprint,
        session=target.session,
        skip_checks=SKIP_CHECKS,
    )
    result = target.reconciliation()
    assert result["conserved"], result["conservation"]
    for kind in ("charged_not_paid", "paid_not_charged", "stuck_pending"):
        assert result[kind]["count"] == 0, (kind, result[kind])
    assert result["unresolved"]["count"] == 0, result["unresolved"]
    assert result["payouts"]["succeeded"] >= 1, result["payouts"]  # the fuzzing reached money
    return target.tally


def test_fuzz_target(target: TargetFuzz) -> None:
    tally = run_fuzz(target, EXAMPLES)
    print(f"target fuzz: {tally.cases} cases, statuses {sorted(tally.by_status.items())}")
    assert tally.cases >= 600, tally
    assert not [s for s in tally.by_status if s >= 500], tally.by_status


@pytest.mark.fuzz
@pytest.mark.timeout(900)
def test_fuzz_target_long(target: TargetFuzz) -> None:
    tally = run_fuzz(target, EXAMPLES_LONG)
    print(f"target fuzz (long): {tally.cases} cases, statuses {sorted(tally.by_status.items())}")
    assert tally.cases >= 4000, tally
