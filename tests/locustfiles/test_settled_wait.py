"""The final wait's end: the run's reconciliation once nothing is pending or in flight, and once
two such answers in a row agree on what the verdict reads; and an LNbits wallet read whose
payment list is read again after its balance. Both are there for requests still running when
the users stopped: a read in the middle of one is a moment, not the run's end state."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from locustfiles import admin_client
from locustfiles.admin_client import TargetAdmin, TargetError, TargetTimeout, settled_digest
from locustfiles.wallets.lnbits import WALLET_READS_MAX, LNbitsJudge, WalletRecord

CLEAN: dict[str, Any] = {
    "charged_not_paid": {"count": 0, "amount_msat": 0},
    "paid_not_charged": {"count": 0, "amount_msat": 0},
    "unresolved": {"count": 0},
    "pending": 0,
    "node": {"in_flight": 0},
    "payments": 48,
}
# A read in the middle of a request: a payment row written, the list read before it.
TORN: dict[str, Any] = {**CLEAN, "charged_not_paid": {"count": 1, "amount_msat": 325_080}}
PENDING: dict[str, Any] = {**CLEAN, "pending": 1, "unresolved": {"count": 1}}


class Scripted(TargetAdmin):
    """A target whose reconciliations are given in advance (the last one repeats); an exception
    among them is raised in its turn."""

    def __init__(self, answers: list[dict[str, Any] | Exception]) -> None:
        super().__init__("http://127.0.0.1:9", None)
        self.answers = answers
        self.asked = 0

    def reconciliation(
        self, *, since_ms: int | None = None, stuck_after_s: float | None = None
    ) -> dict[str, Any]:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_two_settled_answers_that_agree_end_the_wait() -> None:
    admin = Scripted([CLEAN, CLEAN])
    assert admin.wait_settled(5.0, poll_interval_s=0.0) is CLEAN
    assert admin.asked == 2


def test_a_settled_answer_that_the_next_one_contradicts_is_not_the_verdict() -> None:
    admin = Scripted([TORN, CLEAN, CLEAN])
    assert admin.wait_settled(5.0, poll_interval_s=0.0) is CLEAN
    assert admin.asked == 3


def test_pending_in_between_starts_the_count_again() -> None:
    admin = Scripted([CLEAN, PENDING, CLEAN, CLEAN])
    assert admin.wait_settled(5.0, poll_interval_s=0.0) is CLEAN
    assert admin.asked == 4


def test_a_finding_that_stays_is_the_verdict() -> None:
    admin = Scripted([TORN, TORN])
    assert admin.wait_settled(5.0, poll_interval_s=0.0) is TORN
    assert admin.asked == 2


def test_the_wait_is_bounded_when_answers_never_agree() -> None:
    flapping = [TORN if i % 2 else CLEAN for i in range(10_000)]
    admin = Scripted(flapping)
    answer = admin.wait_settled(0.05, poll_interval_s=0.001)
    assert answer in (TORN, CLEAN)
    assert 2 <= admin.asked < 10_000


def test_a_poll_that_timed_out_is_asked_again_and_never_counts_as_settled() -> None:
    # a settled answer, a timeout, then two that agree: the one before the timeout is no pair
    admin = Scripted([CLEAN, TargetTimeout("GET /admin/reconciliation: timed out"), CLEAN, CLEAN])
    assert admin.wait_settled(5.0, poll_interval_s=0.0) is CLEAN
    assert admin.asked == 4


def test_a_target_that_keeps_timing_out_fails_at_the_end_of_the_wait() -> None:
    admin = Scripted([TargetTimeout("GET /admin/reconciliation: timed out")])
    with pytest.raises(TargetTimeout):
        admin.wait_settled(0.05, poll_interval_s=0.001)
    assert 2 <= admin.asked < 1_000


def test_an_error_that_is_not_a_timeout_fails_the_wait_at_once() -> None:
    admin = Scripted([TargetError("GET /admin/reconciliation: HTTP 500"), CLEAN, CLEAN])
    with pytest.raises(TargetError) as caught:
        admin.wait_settled(5.0, poll_interval_s=0.0)
    assert not isinstance(caught.value, TargetTimeout)
    assert admin.asked == 1


def test_a_target_that_never_answers_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_client, "REQUEST_TIMEOUT_S", 0.2)
    with socket.socket() as listener:  # the kernel accepts the connection; nobody answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        admin = TargetAdmin(f"http://127.0.0.1:{listener.getsockname()[1]}", None)
        with pytest.raises(TargetTimeout, match="GET /health: timed out"):
            admin.health()


def test_the_digest_sees_amounts_pending_and_what_was_counted() -> None:
    assert settled_digest(CLEAN) == settled_digest(dict(CLEAN))
    assert settled_digest(CLEAN) != settled_digest(TORN)
    assert settled_digest(CLEAN) != settled_digest({**CLEAN, "payments": 49})
    assert settled_digest(CLEAN) != settled_digest({**CLEAN, "conserved": False})
    moved = {**TORN, "charged_not_paid": {"count": 1, "amount_msat": 1}}
    assert settled_digest(TORN) != settled_digest(moved)


class ScriptedLNbits(LNbitsJudge):
    """An LNbits whose payment list and balance are given in advance per read."""

    def __init__(
        self,
        lists: list[list[dict[str, Any]]],
        balances: list[int],
        follow: Exception | None = None,
    ) -> None:
        self.lists, self.balances, self.follow = lists, balances, follow
        self.list_reads = self.balance_reads = self.follows = 0

    def payout(self, payout_id: str, api_key: str) -> dict[str, Any]:
        """LNbits' status of one payment: it asks its node (scripted: `follow` raised)."""
        self.follows += 1
        if self.follow is not None:
            raise self.follow
        return {"payout_id": payout_id, "status": "pending"}

    def paid(self, api_key: str) -> list[dict[str, Any]]:
        found = self.lists[min(self.list_reads, len(self.lists) - 1)]
        self.list_reads += 1
        return found

    def wallet(self, wallet_id: str, api_key: str) -> dict[str, Any]:
        balance = self.balances[min(self.balance_reads, len(self.balances) - 1)]
        self.balance_reads += 1
        return {"wallet_id": wallet_id, "balance_msat": balance, "reserved_msat": 0}


PAID = {"payment_hash": "a" * 64, "status": "succeeded", "amount_msat": 1000, "fee_msat": 7}
TAKEN = {"payment_hash": "b" * 64, "status": "failed", "amount_msat": 500, "fee_msat": 0}


HELD = {"payment_hash": "c" * 64, "status": "pending", "amount_msat": 2000, "fee_msat": 0}


def _read_or_errors(
    judge: ScriptedLNbits,
) -> tuple[tuple[int, dict[str, dict[str, Any]]] | None, list[TargetError]]:
    views: dict[str, tuple[int, dict[str, dict[str, Any]]]] = {}
    errors: list[TargetError] = []
    judge._read_wallet(WalletRecord("w1", "key", 1_000_000, 0, {}), views, errors)
    return views.get("w1"), errors


def _read(judge: ScriptedLNbits) -> tuple[int, dict[str, dict[str, Any]]]:
    view, errors = _read_or_errors(judge)
    assert not errors and view is not None
    return view


def test_a_wallet_read_in_the_middle_of_a_payment_is_read_again() -> None:
    # the list without the new payment, the balance with it (pending then), the list with it
    judge = ScriptedLNbits([[PAID], [PAID, TAKEN], [PAID, TAKEN]], [998_493, 998_993, 998_993])
    balance_msat, believed = _read(judge)
    assert (balance_msat, set(believed)) == (998_993, {PAID["payment_hash"], TAKEN["payment_hash"]})
    assert judge.balance_reads == 2


def test_a_quiet_wallet_is_read_once() -> None:
    judge = ScriptedLNbits([[PAID]], [998_993])
    assert _read(judge) == (998_993, {PAID["payment_hash"]: PAID})
    assert (judge.list_reads, judge.balance_reads) == (2, 1)


def test_the_wallet_reads_are_bounded() -> None:
    lists = [[PAID]] + [[PAID, {**TAKEN, "amount_msat": i}] for i in range(100)]
    judge = ScriptedLNbits(lists, [998_993])
    _read(judge)
    assert judge.balance_reads == WALLET_READS_MAX


def test_a_payment_lnbits_is_still_following_at_its_node_stays_pending() -> None:
    # CI at 7df9e55: LNbits' status of a payment the node held 10 s waited past the judge's 5 s
    # timeout, and that one read failed the run (exit 5) though nothing was wrong with the money
    timed_out = TargetTimeout(f"GET /api/v1/payments/{HELD['payment_hash']}: timed out")
    judge = ScriptedLNbits([[PAID, HELD]], [996_993], follow=timed_out)
    balance_msat, believed = _read(judge)
    assert balance_msat == 996_993
    assert believed[HELD["payment_hash"]]["status"] == "pending"  # the final wait asks again
    assert judge.follows >= 1


def test_a_follow_that_fails_otherwise_is_the_judges_failure_to_read() -> None:
    refused = TargetError(f"GET /api/v1/payments/{HELD['payment_hash']}: HTTP 500 boom")
    judge = ScriptedLNbits([[PAID, HELD]], [996_993], follow=refused)
    view, errors = _read_or_errors(judge)
    assert view is None
    assert [str(e) for e in errors] == [f"wallet w1: {refused}"]
    assert not isinstance(errors[0], TargetTimeout)  # the final wait does not ask again


class SlowBalance(ScriptedLNbits):
    def wallet(self, wallet_id: str, api_key: str) -> dict[str, Any]:
        raise TargetTimeout("GET /api/v1/wallet: timed out")


def test_a_wallet_read_that_timed_out_stays_a_timeout_for_the_final_wait() -> None:
    # the final wait asks a timed-out reconciliation again (above): LNbits' must stay one
    view, errors = _read_or_errors(SlowBalance([[PAID]], [998_993]))
    assert view is None
    assert [str(e) for e in errors] == ["wallet w1: GET /api/v1/wallet: timed out"]
    assert isinstance(errors[0], TargetTimeout)
