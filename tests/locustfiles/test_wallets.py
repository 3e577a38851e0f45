"""The wallet adapters' pure parts: LNbits' answers in the suite's terms, the end-of-run
judgement of one LNbits wallet from the node's truth, and --wallet-api's settings."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lnchaos.checker import answers
from locustfiles import checker
from locustfiles.admin_client import TargetError
from locustfiles.options import settings_from, wallet_api_note, wallet_api_problem
from locustfiles.wallet_client import Invoice
from locustfiles.wallets.lnbits import (
    WalletRecord,
    _charged_msat,
    _classify,
    answer_view,
    booked_status,
    judge_wallet,
    outgoing,
    payout_view,
    wallet_view,
)

H1, H2, H3 = "a" * 64, "b" * 64, "c" * 64
FUNDING_MSAT = 1_000_000


def _record(payments: dict[str, tuple[int, str]]) -> WalletRecord:
    return WalletRecord("w1", "key", FUNDING_MSAT, 0, dict(payments))


def _paid(fee_msat: int) -> dict[str, object]:
    return {"status": "succeeded", "fee_msat": fee_msat}


def _believed(h: str, status: str, amount_msat: int, fee_msat: int) -> dict[str, object]:
    return {"payment_hash": h, "status": status, "amount_msat": amount_msat, "fee_msat": fee_msat}


def test_a_wallet_that_matches_the_node_has_no_finding_but_its_resolved_timeouts() -> None:
    record = _record({H1: (1000, "succeeded"), H2: (2000, "failed"), H3: (500, "pending")})
    truths = {H1: _paid(7), H2: {"status": "failed"}, H3: _paid(3)}
    believed = {
        H1: _believed(H1, "succeeded", 1000, 7),
        H2: _believed(H2, "failed", 2000, 0),
        H3: _believed(H3, "succeeded", 500, 3),
    }
    balance_msat = FUNDING_MSAT - 1007 - 503
    findings = judge_wallet(record, balance_msat, believed, truths)
    assert [f["kind"] for f in findings] == ["timeout_resolved"]


def test_a_refund_of_a_payment_the_node_made_is_paid_not_charged_and_named() -> None:
    record = _record({H1: (1000, "failed")})
    findings = judge_wallet(
        record, FUNDING_MSAT, {H1: _believed(H1, "failed", 1000, 0)}, {H1: _paid(7)}
    )
    assert [(f["kind"], f["payout_id"], f["diff_msat"]) for f in findings] == [
        (checker.PAID_NOT_CHARGED, H1, 1007)
    ]


def test_a_charge_for_a_payment_the_node_failed_is_charged_not_paid() -> None:
    record = _record({H1: (1000, "succeeded")})
    believed = {H1: _believed(H1, "succeeded", 1000, 10)}
    findings = judge_wallet(record, FUNDING_MSAT - 1010, believed, {H1: {"status": "failed"}})
    assert [(f["kind"], f["diff_msat"]) for f in findings] == [(checker.CHARGED_NOT_PAID, -1010)]


def test_a_balance_off_by_one_msat_behind_a_right_list_is_found() -> None:
    record = _record({H1: (1000, "succeeded")})
    believed = {H1: _believed(H1, "succeeded", 1000, 7)}
    findings = judge_wallet(record, FUNDING_MSAT - 1007 - 1, believed, {H1: _paid(7)})
    assert [(f["kind"], f["payout_id"], f["diff_msat"]) for f in findings] == [
        (checker.CHARGED_NOT_PAID, None, -1)
    ]


def test_pending_at_the_wallet_or_in_flight_at_the_node_is_not_final() -> None:
    record = _record({H1: (1000, "pending"), H2: (1000, "succeeded")})
    believed = {H1: _believed(H1, "pending", 1000, 0), H2: _believed(H2, "succeeded", 1000, 7)}
    truths = {H1: _paid(7), H2: {"status": "in_flight"}}
    findings = judge_wallet(record, 0, believed, truths)  # the balance is not judged yet
    assert sorted(f["kind"] for f in findings) == ["in_flight", "pending"]


def test_a_payment_the_wallet_forgot_but_the_node_made_is_paid_not_charged() -> None:
    record = _record({H1: (1000, "error")})
    findings = judge_wallet(record, FUNDING_MSAT, {}, {H1: _paid(7)})
    assert [f["kind"] for f in findings] == [checker.PAID_NOT_CHARGED]


INVOICE = Invoice("lnbcrt1...", H1, 1000)


@pytest.mark.parametrize(
    ("status", "body", "retry", "kind", "outcome"),
    [
        (201, {"status": "success", "amount": -1000, "fee": -7}, False, "ok", "succeeded"),
        (201, {"status": "pending", "amount": -1000}, False, "info", "pending"),
        (520, {"detail": "Payment failed: NO_ROUTE", "status": "failed"}, False, "fail", "failed"),
        (520, {"detail": "Unable to connect", "status": "pending"}, False, "info", "pending"),
        (
            520,
            {"detail": "Payment already paid.", "status": "success"},
            True,
            "refused",
            "rejected",
        ),
        (500, {}, False, "error", "error"),
        (520, {"detail": "?", "status": "success"}, False, "error", "error"),
    ],
)
def test_lnbits_answers_to_a_payment(
    status: int, body: dict[str, object], retry: bool, kind: str, outcome: str
) -> None:
    result = _classify(status, body, INVOICE, retry=retry)
    assert (result.kind, result.outcome) == (kind, outcome)
    assert result.payout_id == H1


def test_lnbits_payment_status_as_a_payout() -> None:
    assert payout_view(H1, {"paid": True, "preimage": "00"})["status"] == "succeeded"
    assert payout_view(H1, {"paid": False, "status": "failed"})["status"] == "failed"
    assert payout_view(H1, {"paid": False, "status": "pending"})["status"] == "pending"
    assert payout_view(H1, {"paid": False})["status"] == "pending"  # LNbits could not ask


def test_lnbits_fields_it_promises_are_read_strictly_never_as_zero() -> None:
    """Issue 25's strict reading for LNbits: a succeeded payment's row without its `fee`, or
    with one that is no whole number, and a wallet whose `balance` is not one, are
    `malformed_answer` by the reading rules (answers.py), never a fee or balance of 0."""
    row = {"status": "success", "amount": -1000, "fee": -20}
    good = payout_view(H1, {"paid": True, "details": row})
    assert (good["amount_msat"], good["fee_msat"]) == (1000, 20)
    assert answers.problems(answers.payout_view_shape(good), good) == []
    for fee in (None, "-20", -20.0, True):
        details = {**row, "fee": fee} if fee is not None else {"status": "success", "amount": -1000}
        view = payout_view(H1, {"paid": True, "details": details})
        assert answers.problems(answers.payout_view_shape(view), view), (fee, view)
    # a failed row's `fee` is its kept reserve, not a fee charged: read as none (not a finding)
    failed = payout_view(H1, {"paid": False, "status": "failed", "details": {"status": "failed"}})
    assert failed["fee_msat"] == 0
    assert answers.problems(answers.payout_view_shape(failed), failed) == []
    assert answers.problems("wallet_view", wallet_view({"id": "w", "balance": 5_000})) == []
    for balance in (None, "5000", 5000.0):
        view = wallet_view({"id": "w", "balance": balance} if balance is not None else {"id": "w"})
        assert answers.problems("wallet_view", view), balance


def test_lnbits_answer_to_a_payment_is_read_strictly_never_as_zero() -> None:
    """The 201 answer of LNbits 1.x (its Payment) is read as its row is: a succeeded one without
    a whole-msat `fee` is malformed_answer; classifying it never raises on a malformed number."""
    paid = {"payment_hash": H1, "status": "success", "amount": -1000, "fee": -7}
    view = answer_view(H1, paid)
    assert view is not None and (view["amount_msat"], view["fee_msat"]) == (1000, 7)
    assert answers.problems(answers.payout_view_shape(view), view) == []
    for fee in (None, "-7", -7.5, False):
        body = {**paid, "fee": fee} if fee is not None else {**paid, "fee": None}
        if fee is None:
            del body["fee"]
        view = answer_view(H1, body)
        assert view is not None
        assert answers.problems(answers.payout_view_shape(view), view), (fee, view)
        result = _classify(201, body, INVOICE, retry=False)
        assert (result.kind, result.fee_msat) == ("ok", 0)  # a placeholder; the finding is above
    assert answer_view(H1, {"payment_hash": H1, "checking_id": "x"}) is None  # before 1.0
    failed = answer_view(H1, {"payment_hash": H1, "status": "failed", "fee": -20})
    assert failed is not None and failed["fee_msat"] == 0  # its kept reserve, no fee charged


def test_lnbits_judge_refuses_a_payment_row_without_whole_msat() -> None:
    """What LNbits lists as paid: a row whose amount or fee is not whole msat is kept as it came
    (never read as 0), and the judge refuses to take a charge from it."""
    rows = [
        {"payment_hash": H1, "status": "success", "amount": -1000, "fee": -7},
        {"payment_hash": "in", "status": "success", "amount": 5000, "fee": 0},
        {"payment_hash": "nofee", "status": "success", "amount": -1000},
        {"payment_hash": "text", "status": "success", "amount": "-1000", "fee": -7},
    ]
    listed = {p["payment_hash"]: p for p in outgoing(rows)}
    assert set(listed) == {H1, "nofee", "text"}  # the incoming one is not a payout
    assert (listed[H1]["amount_msat"], listed[H1]["fee_msat"]) == (1000, 7)
    assert listed["nofee"]["fee_msat"] is None and listed["text"]["amount_msat"] == "-1000"
    assert _charged_msat(listed[H1]) == 1007
    for name in ("nofee", "text"):
        with pytest.raises(TargetError, match="malformed_answer"):
            _charged_msat(listed[name])


def test_lnbits_before_1_0_booked_status_is_its_row_not_its_nodes_view() -> None:
    # LNbits 0.12 answers a payment with its hash only; the row says how it was booked, while
    # the answer's own `status` is what its node says now (the row may still hold the money)
    row = {"status": "pending", "amount": -1000, "fee": -20}
    assert booked_status({"paid": False, "status": "success", "details": row}) == "pending"
    assert booked_status({"paid": True, "details": {**row, "status": "success"}}) == "success"
    assert booked_status({"paid": False, "details": {**row, "status": "failed"}}) == "failed"
    assert booked_status({"paid": True, "preimage": "00"}) == "success"  # without the key
    assert booked_status({"paid": False}) == ""  # nothing known: the final audit judges it
    assert booked_status({"paid": False, "details": {**row, "status": "odd"}}) == ""


def _options(**values: object) -> SimpleNamespace:
    return SimpleNamespace(**values)


def test_wallet_api_lnbits_needs_host_node_url_and_token() -> None:
    settings = settings_from(_options(wallet_api="lnbits"))
    problem = wallet_api_problem(settings)
    assert problem is not None
    assert "--host" in problem and "--node-url" in problem and "--node-admin-token" in problem
    settings = settings_from(
        _options(
            wallet_api="lnbits",
            host="http://127.0.0.1:5000",
            node_url="http://127.0.0.1:8081/",
            node_admin_token="T",
        )
    )
    assert wallet_api_problem(settings) is None
    assert settings.node_url == "http://127.0.0.1:8081"
    assert wallet_api_note(settings)["left_out"]
    assert wallet_api_problem(settings_from(_options())) is None  # lnchaos: as before
