"""The final wait's end: the run's reconciliation once nothing is pending or in flight, and once
two such answers in a row agree on what the verdict reads; and an LNbits wallet read whose
payment list is read again after its balance. Both are there for requests still running when
the users stopped: a read in the middle of one is a moment, not the run's end state."""

from __future__ import annotations

from typing import Any

from locustfiles.admin_client import TargetAdmin, settled_digest
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
    """A target whose reconciliations are given in advance (the last one repeats)."""

    def __init__(self, answers: list[dict[str, Any]]) -> None:
        super().__init__("http://127.0.0.1:9", None)
        self.answers = answers
        self.asked = 0

    def reconciliation(
        self, *, since_ms: int | None = None, stuck_after_s: float | None = None
    ) -> dict[str, Any]:
        answer = self.answers[min(self.asked, len(self.answers) - 1)]
        self.asked += 1
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


def test_the_digest_sees_amounts_pending_and_what_was_counted() -> None:
    assert settled_digest(CLEAN) == settled_digest(dict(CLEAN))
    assert settled_digest(CLEAN) != settled_digest(TORN)
    assert settled_digest(CLEAN) != settled_digest({**CLEAN, "payments": 49})
    assert settled_digest(CLEAN) != settled_digest({**CLEAN, "conserved": False})
    moved = {**TORN, "charged_not_paid": {"count": 1, "amount_msat": 1}}
    assert settled_digest(TORN) != settled_digest(moved)


class ScriptedLNbits(LNbitsJudge):
    """An LNbits whose payment list and balance are given in advance per read."""

    def __init__(self, lists: list[list[dict[str, Any]]], balances: list[int]) -> None:
        self.lists, self.balances = lists, balances
        self.list_reads = self.balance_reads = 0

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


def _read(judge: ScriptedLNbits) -> tuple[int, dict[str, dict[str, Any]]]:
    views: dict[str, tuple[int, dict[str, dict[str, Any]]]] = {}
    errors: list[str] = []
    judge._read_wallet(WalletRecord("w1", "key", 1_000_000, 0, {}), views, errors)
    assert not errors
    return views["w1"]


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
