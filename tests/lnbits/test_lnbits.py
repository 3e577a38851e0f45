"""The suite against a real LNbits (marker `lnbits`; `python -m pytest -q -m lnbits`).

LNbits runs with its LND REST funding source on a `lnchaos node`, which makes the invoices,
injects the faults and knows the truth. `locust --wallet-api lnbits` drives it: each payer opens
and funds its own LNbits wallet, pays, checks every balance against the node's truth, and the
verdict judges every wallet at the end.

- clean LNbits, over LND REST and over LND gRPC (LndWallet with the node's tls.cert and
  admin.macaroon), under payment faults (timeouts, failures, late settlements) and errors after
  the node acted (the payment went out, LNbits saw a 503 or UNAVAILABLE): it must pass, with
  payouts verified and timed-out (pending) payouts resolved;
- the same LNbits with one careless line (a patched copy of the installed package): an HTTP
  error from its node is taken as a failed payment. It must fail with paid_not_charged, the
  payouts named;
- LNbits 1.5.6 and 1.2.1, real releases with that bug in their own code (an ambiguous send
  booked as failed and refunded): each must fail the same way;
- LNbits 0.12.12, a release before 1.0 (another answer to a payment: its hash only): the suite
  drives it, and catches the fee reserve it keeps on a payment that was pending and then paid.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from harness import GrpcFunding, LNbits, fee_reserve_msat, free_port, install, patched_copy

from target.common.child import ChildProcess, ChildServer

pytestmark = [pytest.mark.lnbits, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
SUITE = REPO / "locustfiles" / "lnchaos_suite.py"
TOKEN = "lnbits-test-token"
RUN_S = 25
LOCUST_TIMEOUT_S = 150.0
# payment faults of every phase (the fault control sets the timeout rates per phase); rates
# high enough that a slow machine's hundred-odd payouts meet each fault (P(none) < 1 %)
NODE_FAULTS = ["--failure-rate", "0.1", "--inflight-hold-ms", "1500"]
# HTTP errors on LND's routes, all after the node acted: the payment went out, LNbits saw 503
HTTP_ERROR_RATE = "0.05"
HTTP_ERROR_RATE_CARELESS = "0.15"  # the careless LNbits must meet it on some payouts
# Releases with the bug the careless line puts in, in their own code: before 1.6.0 LNbits books a
# payment whose send got an HTTP error (no checking_id in the funding source's answer) as failed
# (lnbits/core/services/payments.py, "payment failed" when checking_id is None) and refunds it,
# though the node may have paid. 1.6.0 keeps such a payment pending ("None -> pending"). 1.2.1
# still pays with LND's legacy SendPaymentSync (POST /v1/channels/transactions), so its run also
# drives that route of the node end to end.
RELEASES_THAT_REFUND_AMBIGUOUS_SENDS = ("1.5.6", "1.2.1")
# Releases that pay with SendPaymentSync, which LND 0.21 (the node's default) no longer has: their
# node answers as LND 0.20 (--lnd-version), the newest release they can pay through.
PAY_WITH_SEND_PAYMENT_SYNC = ("1.2.1", "0.12.12")
LND_WITH_SEND_PAYMENT_SYNC = "0.20"
# A release before 1.0: it answers a payment with `{"payment_hash"}` only and names an invoice
# `payment_request`. When a pending payment turns out paid, `update_pending_payments`
# (core/services.py) sets its status to success and keeps the fee reserve as its fee.
RELEASE_BEFORE_1_0 = "0.12.12"
# the careless line: any HTTP error from the node is a failed payment
CARELESS = (
    "wallets/lndrest.py",
    "        ok=(\n"
    "            False if _is_pre_dispatch_payment_error(error_code, error_message) else None\n"
    "        ),\n",
    "        ok=False,\n",
)


def _run(
    venv: Path,
    tmp_path: Path,
    http_error_rate: str,
    *,
    pythonpath: Path | None = None,
    release: str | None = None,
    over_grpc: bool = False,
) -> dict[str, Any]:
    node_args = ["--http-error-rate", http_error_rate, "--http-fault-after-rate", "1.0"]
    if release in PAY_WITH_SEND_PAYMENT_SYNC:
        node_args += ["--lnd-version", LND_WITH_SEND_PAYMENT_SYNC]
    grpc = None
    locust_env: dict[str, str] = {}
    if over_grpc:
        # LND's directory and its gRPC face; REST (the suite's admin calls) is then TLS too
        lnd_dir = tmp_path / "lnd"
        grpc = GrpcFunding(
            free_port(),
            lnd_dir / "tls.cert",
            lnd_dir / "data" / "chain" / "bitcoin" / "regtest" / "admin.macaroon",
        )
        node_args += ["--lnd-dir", str(lnd_dir), "--grpc-port", str(grpc.port)]
        locust_env["SSL_CERT_FILE"] = str(grpc.cert_path)  # urllib trusts the node's cert
    node = ChildServer(
        [
            sys.executable,
            "-m",
            "lnchaos.cli",
            "node",
            "--port",
            "0",
            "--admin-token",
            TOKEN,
            "--seed",
            "7",
            *NODE_FAULTS,
            *node_args,
        ],
        log_path=tmp_path / "node.log",
        cwd=REPO,
        name="lnchaos node",
    )
    lnbits: LNbits | None = None
    locust: ChildProcess | None = None
    try:
        node.start(health_path=None if over_grpc else "/health")  # TLS: its URL printed
        lnbits = LNbits(venv, node.url, tmp_path, pythonpath=pythonpath, grpc=grpc).start()
        report_dir = tmp_path / "report"
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            str(SUITE),
            "--headless",
            "-t",
            f"{RUN_S}s",
            "-u",
            "8",
            "-r",
            "8",
            "--seed",
            "7",
            "--wallet-api",
            "lnbits",
            "--host",
            lnbits.url,
            "--node-url",
            node.url,
            "--node-admin-token",
            TOKEN,
            "--timeout-rate",
            "0.1",
            "--spike-timeout-rate",
            "0.2",
            "--late-settle-rate",
            "0.5",
            "--retry-share",
            "0.2",
            "--final-wait-s",
            "15",
            "--report-dir",
            str(report_dir),
        ]
        locust = ChildProcess(
            command, log_path=tmp_path / "locust.log", cwd=REPO, name="locust", env=locust_env
        )
        locust.start()
        code = locust.wait(LOCUST_TIMEOUT_S)
        assert code is not None, f"locust did not end:\n{locust.log_tail()}"
        report = json.loads((report_dir / "consistency.json").read_text())
        report["_exit_code"] = code
        report["_log"] = locust.log_tail()
        return report
    finally:
        for child in (locust, lnbits.child if lnbits else None, node):
            if child is not None:
                child.stop()
                left = [(p.pid, " ".join(p.cmdline()[:3])) for p in child.leftovers()]
                assert not left, f"{child.name} left processes behind: {left}"


@pytest.mark.parametrize("face", ["rest", "grpc"])
def test_clean_lnbits_passes_under_payment_and_http_faults(
    face: str, lnbits_venv: Path, tmp_path: Path
) -> None:
    """LNbits on the node's LND REST API (LndRestWallet), and on its gRPC face (LndWallet,
    configured with the node's tls.cert and admin.macaroon as for a real LND): the same payment
    faults, and errors after the node acted (REST: HTTP 503; gRPC: UNAVAILABLE)."""
    report = _run(lnbits_venv, tmp_path, HTTP_ERROR_RATE, over_grpc=face == "grpc")
    summary = json.dumps({k: report.get(k) for k in ("reason", "inconsistencies", "timeouts")})
    assert report["_exit_code"] == 0, f"{summary}\n{report['_log']}"
    assert report["verdict"] == "pass"
    assert report["payouts_verified"] > 0
    timeouts = report["timeouts"]
    assert timeouts["payouts"] > 0, summary  # LNbits answered pending: the faults reached it
    resolved = timeouts["resolved_by_checks"] + timeouts["resolved_by_reconciliation"]
    assert resolved + timeouts["resolved_by_audit"] > 0, summary
    assert report["payouts_by_outcome"]["failed"] > 0, summary  # failures reached it too
    assert report["wallet_api"]["name"] == "lnbits"
    assert report["wallet_api"]["left_out"], "the report names what LNbits could not be asked"
    print(f"\nLNbits clean ({face}): {report['payouts_per_s']} payouts/s, {summary}")


def test_lnbits_that_takes_an_http_error_for_a_failure_is_caught(
    lnbits_venv: Path, tmp_path: Path
) -> None:
    path, old, new = CARELESS
    copy = patched_copy(lnbits_venv, tmp_path / "careless", path, old, new)
    report = _run(lnbits_venv, tmp_path, HTTP_ERROR_RATE_CARELESS, pythonpath=copy)
    summary = json.dumps({k: report.get(k) for k in ("reason", "inconsistencies")})
    assert report["_exit_code"] == 3, f"{summary}\n{report['_log']}"
    found = report["inconsistencies"].get("paid_not_charged") or {}
    assert found.get("count", 0) > 0, summary
    named = [e.get("payout_id") for e in found["examples"] if e.get("payout_id")]
    assert named, f"the payouts are named: {summary}"
    print(f"\nLNbits careless: {summary}")


@pytest.mark.parametrize("version", RELEASES_THAT_REFUND_AMBIGUOUS_SENDS)
def test_a_release_that_refunds_ambiguous_sends_is_caught(version: str, tmp_path: Path) -> None:
    """Not a patch of ours: a real LNbits release with the bug. Judged against the node's truth
    under the same faults, it fails with paid_not_charged, each payout named: LNbits says
    failed (and refunded it), the node says succeeded."""
    venv = install(version)
    report = _run(venv, tmp_path, HTTP_ERROR_RATE_CARELESS, release=version)
    summary = json.dumps({k: report.get(k) for k in ("reason", "inconsistencies")})
    assert report["_exit_code"] == 3, f"{summary}\n{report['_log']}"
    found = report["inconsistencies"].get("paid_not_charged") or {}
    assert found.get("count", 0) > 0, summary
    examples = found["examples"]
    assert all(e.get("payout_id") for e in examples), f"the payouts are named: {summary}"
    assert any(
        (e.get("payout_status"), e.get("node_status")) == ("failed", "succeeded") for e in examples
    ), summary
    print(f"\nLNbits {version}: {summary}")


def test_a_release_before_1_0_is_driven_and_the_fee_reserve_it_keeps_is_caught(
    tmp_path: Path,
) -> None:
    """LNbits 0.12.12 speaks an older API (the adapter reads how it booked a payment from its
    row). Under the same faults it fails with charged_not_paid: payouts LNbits and the node both
    call succeeded, each charged its fee reserve instead of the node's fee."""
    venv = install(RELEASE_BEFORE_1_0)
    report = _run(venv, tmp_path, HTTP_ERROR_RATE, release=RELEASE_BEFORE_1_0)
    summary = json.dumps({k: report.get(k) for k in ("reason", "inconsistencies")})
    assert report["_exit_code"] == 3, f"{summary}\n{report['_log']}"
    assert report["payouts_verified"] > 0, summary  # driven: payments made and checked
    found = report["inconsistencies"].get("charged_not_paid") or {}
    assert found.get("count", 0) > 0, summary
    kept_reserve = [
        e
        for e in found["examples"]
        if (e.get("payout_status"), e.get("node_status")) == ("succeeded", "succeeded")
        and e["fee_msat"] - e["diff_msat"] == fee_reserve_msat(e["amount_msat"])
    ]
    assert kept_reserve, f"charged the reserve, not the node's fee: {summary}"
    print(f"\nLNbits {RELEASE_BEFORE_1_0}: {summary}")
