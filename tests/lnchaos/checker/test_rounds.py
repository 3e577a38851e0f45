"""The traffic classes' rounds judged from their recorded facts (lnchaos/checker/rounds.py): the
live run and `lnchaos check` call the same rule on the same facts, and a rule changed in the
checker re-judges a round recorded yesterday (issue 26)."""

from __future__ import annotations

import pytest
from test_checker_package import end_record, write_history

from lnchaos.checker import history, rounds
from lnchaos.checker.kinds import (
    ACCEPTED_BAD_INPUT,
    CHARGED_NOT_PAID,
    DOUBLE_CHARGE,
    DRAIN,
    EDGE_ROUND,
    EXIT_INCONSISTENT,
    EXIT_PASS,
    IDEMPOTENCY_MISMATCH,
    OVERDRAWN,
    REFUSED_BUT_SENT,
    RETRY_ROUND,
    SHARED_INVOICE,
)
from lnchaos.checker.offline import judge_dir

FUNDING_MSAT = 10_000_000
AMOUNT_MSAT = 100_000
FEE_MSAT = 1_500
COST_MSAT = AMOUNT_MSAT + FEE_MSAT
PAID = {"status": "succeeded", "fee_msat": FEE_MSAT, "attempts": 1}
FAILED = {"status": "failed", "fee_msat": 0, "attempts": 1}
UNSEEN = {"status": "unknown", "attempts": 0}
OK = {"http": 200, "status": "succeeded", "payout_id": "p1"}
ALREADY_PAID = {"http": 409, "error": "invoice_already_paid"}
IN_PROGRESS = {"http": 409, "error": "payment_in_progress"}


def round_record(name: str, facts: dict, kind: str | None = None, **ids) -> dict:
    """A traffic round's check record as recording.round_check writes it (kind: as recorded)."""
    record = {"type": history.CHECK, "t": 2.0, "name": name, "wallet": "w1", "phase": "normal"}
    return {**record, **ids, rounds.FACTS: facts, "kind": kind, "example": None}


# ---- shared -----------------------------------------------------------------------------------


def shared(balances_msat: list[int], node: dict = PAID, answers: list | None = None) -> dict:
    return {
        "amount_msat": AMOUNT_MSAT,
        "node": node,
        "before_msat": [FUNDING_MSAT, FUNDING_MSAT],
        "balances_msat": balances_msat,
        "answers": answers or [OK, IN_PROGRESS, ALREADY_PAID],
    }


def test_a_shared_invoice_paid_once_by_one_wallet_passes_and_both_charged_is_double():
    one = round_record(SHARED_INVOICE, shared([FUNDING_MSAT - COST_MSAT, FUNDING_MSAT]))
    assert rounds.judge(one) == (None, None)
    both = round_record(SHARED_INVOICE, shared([FUNDING_MSAT - COST_MSAT] * 2), hash="h1")
    kind, example = rounds.judge(both)
    assert kind == DOUBLE_CHARGE
    assert example is not None
    assert (example["wallet_id"], example["payment_hash"]) == ("w1", "h1")
    assert example["diff_msat"] == -COST_MSAT and example["fee_msat"] == FEE_MSAT
    assert example["payout_status"] == (
        "HTTP 200 succeeded,HTTP 409 payment_in_progress,HTTP 409 invoice_already_paid"
    )


def test_a_shared_refusal_that_reached_the_node_is_found_by_its_attempts():
    # the money is right, but the node had two attempts while the wallet took one payout
    facts = shared([FUNDING_MSAT - COST_MSAT, FUNDING_MSAT], node={**PAID, "attempts": 2})
    assert rounds.judge(round_record(SHARED_INVOICE, facts))[0] == REFUSED_BUT_SENT


# ---- drain ------------------------------------------------------------------------------------


def drain(balances_msat: list[int], second_answer: dict, second_node: dict) -> dict:
    """Two payouts of 1,000,000 msat from a 1,500,000 msat wallet: the first paid."""
    paid = {"amount_msat": 1_000_000, "node": PAID, "answer": OK}
    other = {"amount_msat": 1_000_000, "node": second_node, "answer": second_answer}
    return {
        "funding_msat": 1_500_000,
        "balances_msat": balances_msat,
        "reserved_msat": 0,
        "payouts": [paid, other],
    }


def test_a_drain_refused_past_its_balance_passes_and_a_read_below_zero_is_overdrawn():
    refused = {"http": 409, "error": "insufficient_funds"}
    left_msat = 1_500_000 - 1_000_000 - FEE_MSAT
    passed = drain([700_000, left_msat], refused, UNSEEN)
    assert rounds.judge(round_record(DRAIN, passed)) == (None, None)
    overdrawn = drain([-501_500, left_msat], refused, UNSEEN)
    kind, example = rounds.judge(round_record(DRAIN, overdrawn))
    assert kind == OVERDRAWN and example is not None
    assert "balances seen [-501500, 498500]" in example["detail"]
    assert example["node_status"] == "succeeded,unknown"


def test_a_drain_charged_for_a_payment_the_node_failed():
    failed = {"http": 502, "error": "payment_failed", "payout_id": "p2"}
    left_msat = 1_500_000 - 1_000_000 - FEE_MSAT  # the first payout's cost, the second's none
    kind, example = rounds.judge(round_record(DRAIN, drain([left_msat - 10], failed, FAILED)))
    assert kind == CHARGED_NOT_PAID and example is not None and example["diff_msat"] == -10


# ---- retry ------------------------------------------------------------------------------------


def retry(balance_msat: int, *, again: dict = ALREADY_PAID, other_node: dict = UNSEEN) -> dict:
    """A retry round whose key paid its invoice: the pair agreed, the reuse was refused."""
    return {
        "funding_msat": FUNDING_MSAT,
        "balance_msat": balance_msat,
        "reserved_msat": 0,
        "amount_msat": AMOUNT_MSAT,
        "node": PAID,
        "other_amount_msat": AMOUNT_MSAT,
        "other_node": other_node,
        "pair": [OK, OK],
        "first": OK,
        "reused": {"http": 422, "error": "idempotency_key_reused", "payout_id": "p1"},
        "paid_first": True,
        "again": again,
    }


def test_a_retry_round_charged_once_passes_twice_is_double_and_a_wrong_answer_is_found():
    once_msat = FUNDING_MSAT - COST_MSAT
    assert rounds.judge(round_record(RETRY_ROUND, retry(once_msat))) == (None, None)
    twice = rounds.judge(round_record(RETRY_ROUND, retry(once_msat - COST_MSAT)))[0]
    assert twice == DOUBLE_CHARGE
    # a new key after a success, paid again... by nothing (the node paid once): the wallet
    # answered 200 where it owed a refusal
    second = {"http": 200, "status": "succeeded", "payout_id": "p9"}
    kind, example = rounds.judge(round_record(RETRY_ROUND, retry(once_msat, again=second)))
    assert kind == IDEMPOTENCY_MISMATCH and example is not None
    assert example["detail"] == "a new key after a success: HTTP 200 succeeded, not refused"
    assert example["payout_id"] == "p1,p9"  # the payouts the round started


def test_a_retry_pair_that_differs_is_named_as_the_user_was_told():
    facts = {**retry(FUNDING_MSAT - COST_MSAT), "pair": [OK, {"http": 422, "error": "x"}]}
    facts["said"] = ["HTTP 200 succeeded (payout p1: this invoice)", "HTTP 422 x"]
    kind, example = rounds.judge(round_record(RETRY_ROUND, facts))
    assert kind == IDEMPOTENCY_MISMATCH and example is not None
    assert example["detail"].startswith("same key, two answers: HTTP 200 succeeded (payout p1")


# ---- edge -------------------------------------------------------------------------------------


def edge(answer: dict, node_status: str = "unknown", balance_msat: int = 5_000_000) -> dict:
    return {
        "funding_msat": 5_000_000,
        "balance_msat": balance_msat,
        "reserved_msat": None,  # not read (answer_shape's finding): none for the round
        "cases": [{"case": "expired", "answer": answer, "node_status": node_status}],
    }


def test_an_edge_case_refused_as_due_passes_and_anything_else_is_accepted_bad_input():
    due = {"http": 400, "error": "expired_invoice", "message": True}
    assert rounds.judge(round_record(EDGE_ROUND, edge(due))) == (None, None)
    silent = {**due, "message": False}  # a refusal must say why
    assert rounds.judge(round_record(EDGE_ROUND, edge(silent)))[0] == ACCEPTED_BAD_INPUT
    seen = rounds.judge(round_record(EDGE_ROUND, edge(due, node_status="failed")))
    assert seen[0] == ACCEPTED_BAD_INPUT and "the node saw 1" in seen[1]["detail"]
    charged = rounds.judge(round_record(EDGE_ROUND, edge(due, balance_msat=4_999_000)))[0]
    assert charged == CHARGED_NOT_PAID


def test_an_answer_keeps_only_what_the_rules_read():
    body = {"status": "succeeded", "payout_id": "p1", "api_key": "k", "fee_msat": 3, "x": "y" * 99}
    assert rounds.answer(200, body) == {"http": 200, "status": "succeeded", "payout_id": "p1"}
    assert rounds.answer(400, {"error": "e"}, message=True) == {
        "http": 400,
        "error": "e",
        "message": False,
    }
    truth = {"status": "succeeded", "fee_msat": 1, "attempts": 1, "created_ms": 5, "held_ms": 9}
    assert rounds.node(truth) == {"status": "succeeded", "fee_msat": 1, "attempts": 1}


# ---- the fold: live and offline alike, re-judged from the facts --------------------------------


def test_the_fold_judges_a_round_from_its_facts_not_its_recorded_kind():
    # recorded as passed, but its facts show both wallets charged: judged from the facts
    record = round_record(SHARED_INVOICE, shared([FUNDING_MSAT - COST_MSAT] * 2), kind=None)
    tally = history.Tally("r")
    assert history.apply(tally, record) == DOUBLE_CHARGE
    assert tally.checks[SHARED_INVOICE] == [0, 1]
    assert tally.kinds[DOUBLE_CHARGE]["count"] == 1
    found: list[dict] = []
    history.fold([record], "r", found)
    assert found == [
        {
            "check": SHARED_INVOICE,
            "wallet_id": "w1",
            "payment_hash": None,
            "recorded_kind": None,
            "kind": DOUBLE_CHARGE,
            "t_unix": 2.0,
        }
    ]


def test_a_round_recorded_without_facts_keeps_its_recorded_kind():
    example = {"check": DRAIN, "kind": OVERDRAWN, "wallet_id": "w1", "diff_msat": -5}
    old = {"type": history.CHECK, "t": 2.0, "name": DRAIN, "kind": OVERDRAWN, "example": example}
    found: list[dict] = []
    tally = history.fold([old], "r", found)
    assert tally.kinds[OVERDRAWN]["count"] == 1 and tally.checks[DRAIN] == [0, 1]
    assert found == []  # nothing to judge it again with: not re-judged


def test_the_live_record_and_its_offline_judgement_show_the_same_example():
    record = round_record(RETRY_ROUND, retry(FUNDING_MSAT - 2 * COST_MSAT), hash="h1")
    kind, example = rounds.judge(record)
    live = history.Recorder(history.Tally("r"))
    assert live.emit({**record, "kind": kind, "example": example}) == kind == DOUBLE_CHARGE
    assert live.tally.kinds[DOUBLE_CHARGE]["examples"] == [example]


def recorded_run(tmp_path, records: list[dict]):
    nothing = {"count": 0, "amount_msat": 0}
    answer = {"now_ms": 1, "pending": 0, "conserved": True, "charged_not_paid": nothing,
              "paid_not_charged": nothing, "unresolved": nothing}  # fmt: skip
    master = [
        {"type": history.RECONCILIATION, "t": 8.0, "answer": answer},
        {"type": history.AUDIT_CLOSE, "t": 8.5},
        end_record(),
    ]
    payouts = [
        {"type": history.PAYOUT, "t": 1.0, "phase": "normal", "outcome": "succeeded"},
        {"type": history.PAYOUT, "t": 1.1, "phase": "normal", "outcome": "rejected"},
    ]
    return write_history(tmp_path / "history", [*payouts, *records], master).parent


def passing_drain() -> dict:
    """A drain round that passed: one payout paid, one refused for want of funds."""
    refused = {"http": 409, "error": "insufficient_funds"}
    left_msat = 1_500_000 - 1_000_000 - FEE_MSAT
    return round_record(DRAIN, drain([700_000, left_msat], refused, UNSEEN), kind=None)


def test_lnchaos_check_rejudges_a_round_whose_recorded_kind_differs(tmp_path):
    # the run recorded this round as overdrawn (an older rule); its facts pass today's rule
    record = {**passing_drain(), "kind": OVERDRAWN, "example": {"diff_msat": -1}}
    report = judge_dir(recorded_run(tmp_path, [record]))
    assert report["checks"]["by_name"][DRAIN] == {"passed": 1, "failed": 0}
    assert OVERDRAWN not in report["inconsistencies"]
    assert report["rejudged"]["rounds"] == 1
    assert report["rejudged"]["by_check"] == {DRAIN: 1}
    assert report["rejudged"]["examples"][0]["recorded_kind"] == OVERDRAWN
    assert "1 traffic round(s) judged again" in report["reason"]


def test_a_rule_changed_in_the_checker_rejudges_yesterdays_round(tmp_path, monkeypatch):
    """The property of issue 26: a rule changed, yesterday's run judged again by it."""
    folder = recorded_run(tmp_path, [passing_drain()])
    before = judge_dir(folder)
    assert (before["exit_code"], before["rejudged"]["rounds"]) == (EXIT_PASS, 0), before["reason"]

    def stricter(facts: dict) -> tuple[str | None, dict]:
        """Tomorrow's rule: a drain may never be refused for want of funds."""
        kind, shown = rounds.judge_drain(facts)
        refused = any(rounds.refused(p["answer"]) for p in facts["payouts"])
        return (OVERDRAWN if refused else kind), shown

    monkeypatch.setitem(rounds.RULES, DRAIN, stricter)
    after = judge_dir(folder)
    assert after["exit_code"] == EXIT_INCONSISTENT
    assert after["inconsistencies"][OVERDRAWN]["count"] == 1
    assert after["checks"]["by_name"][DRAIN] == {"passed": 0, "failed": 1}
    assert after["rejudged"]["rounds"] == 1
    witness = after["inconsistencies"][OVERDRAWN]["examples"][0]["witness"]
    assert [r["type"] for r in witness] == ["check"]  # the round's own record shows it


@pytest.mark.parametrize("name", [SHARED_INVOICE, DRAIN, RETRY_ROUND, EDGE_ROUND])
def test_every_traffic_class_has_its_rule(name):
    assert rounds.judgeable({"name": name, rounds.FACTS: {}})
