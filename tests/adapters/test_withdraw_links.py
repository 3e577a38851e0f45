"""Single-use authorisations: withdraw links (LUD-03) judged by the node's truth.

The model's judgement of one link (links.judge_link), and runs of the suite against the
reference service (withdraw_service.py) through `--wallet-api lnurlw`, with HTTP errors on the
node's LND routes answered after the node acted: the correct service passes; the one that takes
such an error for a failed payment re-opens the link, the payer presents a new invoice, and the
run fails with `double_payout`, the link and both paid invoices named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from adapters_harness import node_and_withdraw_service, run_locust

from locustfiles import checker
from locustfiles.wallets.base import Link
from locustfiles.wallets.links import LinkRecord, judge_link

# the whole module under the marker: its runs install a package and start nodes and
# services, and in the default run they left the distributed runs after them unable to connect
pytestmark = pytest.mark.adapters

H1, H2 = "a" * 64, "b" * 64
AMOUNT_MSAT = 50_000
TOKEN = "links-test-token"
RUN = ["--headless", "-t", "15s", "-u", "4", "-r", "4", "--seed", "7", "--only-summary"]
RUN_TIMEOUT_S = 120.0
# errors on the node's LND routes, all after the node acted: the payment went out, the service
# saw a 5xx (a share high enough that a run's few dozen sends meet it)
NODE_FAULTS = ["--http-error-rate", "0.2", "--http-fault-after-rate", "1.0"]


def _record(invoices: dict[str, tuple[int, str]]) -> LinkRecord:
    return LinkRecord(Link("L1", "http://127.0.0.1:1/lnurlw/L1", AMOUNT_MSAT), 0, dict(invoices))


def _truth(status: str) -> dict[str, Any]:
    return {"status": status, "fee_msat": 3}


def test_a_link_paid_once_and_used_keeps_the_rule() -> None:
    record = _record({H1: (AMOUNT_MSAT, "failed"), H2: (AMOUNT_MSAT, "succeeded")})
    truths = {H1: _truth("failed"), H2: _truth("succeeded")}
    assert judge_link(record, "used", truths) is None
    failed_once = _record({H1: (AMOUNT_MSAT, "failed")})
    assert judge_link(failed_once, "open", {H1: _truth("failed")}) is None


def test_two_paid_invoices_of_one_link_are_a_double_payout_naming_both() -> None:
    record = _record({H1: (AMOUNT_MSAT, "failed"), H2: (AMOUNT_MSAT, "succeeded")})
    finding = judge_link(record, "used", {H1: _truth("succeeded"), H2: _truth("succeeded")})
    assert finding is not None and finding["kind"] == checker.DOUBLE_PAYOUT
    assert finding["diff_msat"] == AMOUNT_MSAT and finding["link_id"] == "L1"
    assert [i["payment_hash"] for i in finding["invoices"]] == [H1, H2]
    assert [i["answer"] for i in finding["invoices"]] == ["failed", "succeeded"]


def test_more_than_the_link_is_worth_is_a_double_payout() -> None:
    record = _record({H1: (AMOUNT_MSAT + 1, "succeeded")})
    finding = judge_link(record, "used", {H1: _truth("succeeded")})
    assert finding is not None and finding["kind"] == checker.DOUBLE_PAYOUT
    assert finding["diff_msat"] == 1


def test_a_paid_link_left_open_and_a_used_link_never_paid_are_named() -> None:
    answered_failed = _record({H1: (AMOUNT_MSAT, "failed")})
    paid_open = judge_link(answered_failed, "open", {H1: _truth("succeeded")})
    assert paid_open is not None and paid_open["kind"] == checker.PAID_NOT_CHARGED
    burned = judge_link(_record({H1: (AMOUNT_MSAT, "failed")}), "used", {H1: _truth("failed")})
    assert burned is not None and burned["kind"] == checker.CHARGED_NOT_PAID
    assert burned["diff_msat"] == -AMOUNT_MSAT


def test_a_payment_in_flight_or_a_state_not_read_is_unresolved() -> None:
    record = _record({H1: (AMOUNT_MSAT, "timeout")})
    in_flight = judge_link(record, "used", {H1: _truth("in_flight")})
    assert in_flight is not None and in_flight["kind"] == checker.UNRESOLVED
    not_read = judge_link(record, None, {H1: _truth("succeeded")})
    assert not_read is not None and not_read["kind"] == checker.UNRESOLVED


def _run_against_service(tmp_path: Path, *, reopen_on_error: bool) -> tuple[int, dict, str, str]:
    with node_and_withdraw_service(
        tmp_path, TOKEN, NODE_FAULTS, reopen_on_error=reopen_on_error
    ) as (node_url, service_url, service_log):
        args = [*RUN, "--wallet-api", "lnurlw", "--host", service_url, "--node-url", node_url]
        args += ["--node-admin-token", TOKEN, "--final-wait-s", "10"]
        code, report, log = run_locust(args, tmp_path / "report", RUN_TIMEOUT_S)
        return code, report, log, service_log.read_text()


@pytest.mark.adapters
@pytest.mark.timeout(300)
def test_a_correct_withdraw_service_passes_errors_after_the_node_paid(tmp_path: Path) -> None:
    code, report, log, service_log = _run_against_service(tmp_path, reopen_on_error=False)
    assert code == 0, log
    assert report["verdict"] == "pass"
    assert report["payouts_verified"] > 0
    assert report["wallet_api"]["accounting"] == "authorisations"
    assert "ambiguous send" in service_log, "no send met an error after the node acted"


@pytest.mark.adapters
@pytest.mark.timeout(300)
def test_a_link_an_error_reopens_after_the_node_paid_is_a_double_payout(tmp_path: Path) -> None:
    code, report, log, service_log = _run_against_service(tmp_path, reopen_on_error=True)
    assert code == 3, log
    assert "re-opened" in service_log
    found = report["inconsistencies"]["double_payout"]
    assert found["count"] > 0
    example = found["examples"][0]
    paid = [i for i in example["invoices"] if i["node_status"] == "succeeded"]
    assert example["link_id"] and len(paid) >= 2, example
