"""Coverage (lnchaos/checker/coverage.py): the windows a run reached, counted from the node's
truth in the history's records; a window the settings require and the run never reached is exit
4 naming it, the money verdict first; a short run requires nothing it could not reach."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lnchaos.checker import coverage, history
from lnchaos.checker.audit import Audit
from lnchaos.checker.kinds import EXIT_INCONSISTENT, EXIT_NOTHING_VERIFIED, EXIT_PASS
from lnchaos.checker.offline import judge_dir
from lnchaos.checker.tally import Tally, merge_tallies

BEFORE_MSAT = 10_000_000_000
SETTINGS = {
    "edge_amount_share": 0.2,
    "edge_amount_max_msat": 10**12,
    "near_balance_share": 0.02,
    "fee_at_limit_rate": 0.05,
    "long_hold_rate": 0.2,
    "long_hold_ms": 10_000.0,
    "stuck_after_s": 5.0,
    "late_settle_rate": 0.5,
    "retry_share": 0.1,
    "drain_rounds_on": True,
    "crash_every_s": 0.0,
    "crashes": 0,
    "http_fault_rate": 0.0,
    "http_fault_after_rate": 0.5,
}


def check(
    n: int,
    *,
    amount_msat: int = 1_000_000,
    fee_msat: int = 2_000,
    fee_limit_msat: int = 12_000,
    status: str = "succeeded",
    timed_out: bool = False,
    span_ms: tuple[int, int] = (1_000, 1_010),
    before_msat: int = BEFORE_MSAT,
    **top: Any,
) -> dict[str, Any]:
    """A payer's balance check with the node's facts of its attempt, its balance right."""
    paid = status == "succeeded"
    node = {
        "status": status,
        "fee_msat": fee_msat if paid else 0,
        "fee_limit_msat": fee_limit_msat,
        "timed_out": timed_out,
        "created_ms": span_ms[0],
        "resolved_ms": span_ms[1],
    }
    cost_msat = amount_msat + fee_msat if paid else 0
    return {
        "type": history.CHECK,
        "t": 1.0 + n / 1000,
        "name": "resolved_vs_node_truth" if timed_out else "balance_after_success",
        "wallet": f"w{n}",
        "hash": f"h{n}",
        "payout_id": f"p{n}",
        "phase": "normal",
        "in": {
            "before_msat": before_msat,
            "amount_msat": amount_msat,
            "node": node,
            "actual_msat": before_msat - cost_msat,
            "retried": "retry_ms" in top,
        },
        **top,
    }


def windows_of(record: dict[str, Any]) -> set[str]:
    tally = Tally()
    history.apply(tally, record)
    return set(tally.coverage["windows"])


def test_each_window_is_counted_from_the_node_facts_of_the_record() -> None:
    assert windows_of(check(1)) == set()
    assert windows_of(check(1, timed_out=True)) == {coverage.LATE_SETTLE}
    assert windows_of(check(1, timed_out=True, status="failed")) == {coverage.LATE_FAIL}
    assert windows_of(check(1, fee_msat=12_000)) == {coverage.FEE_AT_LIMIT}
    # not paid: a fee limit is no fee at the limit
    assert windows_of(check(1, status="failed", fee_msat=12_000)) == set()
    assert windows_of(check(1, amount_msat=coverage.LARGE_PAYOUT_MSAT)) == {coverage.LARGE_PAYOUT}
    near = check(1, before_msat=1_000_000 + 12_000 + 11_999)
    assert windows_of(near) == {coverage.NEAR_BALANCE}
    assert windows_of(check(1, before_msat=1_000_000 + 12_000 + 12_000)) == set()
    in_flight = check(1, span_ms=(1_000, 3_000), retry_ms=2_000)
    assert windows_of(in_flight) == {coverage.RETRY_IN_FLIGHT}
    assert windows_of(check(1, span_ms=(1_000, 3_000), retry_ms=3_000)) == set()
    assert windows_of(check(1, after_crash=True)) == {coverage.ACROSS_CRASH}
    # a record without the node's facts (another node, an older history) reaches nothing
    bare = check(1, timed_out=True, fee_msat=12_000)
    bare["in"]["node"] = {"status": "succeeded", "fee_msat": 12_000}
    assert windows_of(bare) == set()


def test_a_hold_counts_past_the_stuck_threshold_by_whole_seconds() -> None:
    tally = Tally()
    for n, held_ms in enumerate((4_999, 5_000, 10_000)):
        history.apply(tally, check(n, span_ms=(0, held_ms)))
    section = coverage.summary(SETTINGS, tally.coverage, {"normal": 0.01})
    assert section[coverage.PAST_STUCK]["count"] == 2
    assert section[coverage.PAST_STUCK]["witness"]["span_ms"] == [0, 5_000]
    # a long hold that cannot clear the threshold's second is not a window of the run
    short = {**SETTINGS, "long_hold_ms": 5_500.0, "stuck_after_s": 5.2}
    assert not coverage.summary(short, tally.coverage, {"normal": 0.5})[coverage.PAST_STUCK][
        "enabled"
    ]


def test_two_payouts_of_a_wallet_at_once_are_overlapping_node_spans() -> None:
    tally = Tally()
    apart = {"type": history.CHECK, "name": "drain", "kind": None, "example": None}
    history.apply(tally, {**apart, "node_spans": [[0, 10], [10, 20]]})
    assert coverage.TWO_AT_ONCE not in tally.coverage["windows"]
    history.apply(tally, {**apart, "node_spans": [[0, 10], [5, 20], [30, 40]]})
    assert tally.coverage["windows"][coverage.TWO_AT_ONCE][0] == 1
    assert tally.coverage["rounds"] == 2


def test_coverage_crosses_from_the_workers_and_adds_up() -> None:
    first, second = Tally(), Tally()
    history.apply(first, check(1, timed_out=True))
    history.apply(second, check(2, timed_out=True))
    merged = merge_tallies([first.to_dict(), second.to_dict()])
    assert merged["coverage"]["windows"][coverage.LATE_SETTLE][0] == 2
    assert merged["coverage"]["judged"] == {"normal": 2}


# ---- the verdict: exit 4 naming the window, judged again offline -------------------------------


def run_history(tmp_path: Path, users: list[dict[str, Any]], settings: dict | None) -> Path:
    folder = tmp_path / "history"
    folder.mkdir()
    run = {"fix": "on", "shape": "steady", "profile": None, "seed": 1, "threshold": 0,
           "final_wait_s": 1.0, "coverage": settings}  # fmt: skip
    end = {"type": history.END, "t": 9.0, "run": run, "duration_s": 5.0, "locust_exit_code": 0,
           "phases": [{"name": "normal", "start_s": 0.0, "end_s": 5.0}],
           "configured_rate_by_phase": {"normal": 0.0},
           "user_files": ["users-local.jsonl"], "workers": None}  # fmt: skip
    # the reconciliation's whole promised shape (a partial one is itself a finding: answers.py)
    nothing = {"count": 0, "amount_msat": 0}
    answer = {
        "now_ms": 8_000,
        "charged_not_paid": nothing,
        "paid_not_charged": nothing,
        "unresolved": nothing,
        "pending": 0,
        "conserved": True,
    }
    reconciliation = {"type": history.RECONCILIATION, "t": 8.0, "answer": answer}
    master = [reconciliation, {"type": history.AUDIT_CLOSE, "t": 8.5}, end]
    for name, process, records in (("users-local", "local", users), ("master", "master", master)):
        lines = [history.line(history.header(process, "r")), *map(history.line, records)]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def only_fee_at_limit(fee_at_limit_rate: float) -> dict[str, Any]:
    """Settings that enable the fee window alone (no timeouts configured in the history)."""
    return {
        **SETTINGS,
        "edge_amount_share": 0.0,
        "near_balance_share": 0.0,
        "drain_rounds_on": False,
        "fee_at_limit_rate": fee_at_limit_rate,
    }


def test_a_required_window_never_reached_is_exit_4_naming_it(tmp_path: Path) -> None:
    # 400 paid payouts at 5 % at the limit: 20 expected, none reached (the wallet's fees never
    # met the limit): the run proves nothing about a fee at the limit
    users = [check(n) for n in range(400)]
    report = judge_dir(run_history(tmp_path, users, only_fee_at_limit(0.05)))
    assert report["exit_code"] == EXIT_NOTHING_VERIFIED, report["reason"]
    assert "fee_at_limit" in report["reason"]
    entry = report["coverage"][coverage.FEE_AT_LIMIT]
    assert (entry["enabled"], entry["required"], entry["count"]) == (True, True, 0)
    assert entry["expected"] == 20.0


def test_a_window_reached_once_passes(tmp_path: Path) -> None:
    users = [check(n, fee_msat=12_000 if n == 7 else 2_000) for n in range(400)]
    report = judge_dir(run_history(tmp_path, users, only_fee_at_limit(0.05)))
    assert report["exit_code"] == EXIT_PASS, report["reason"]
    assert report["coverage"][coverage.FEE_AT_LIMIT]["witness"]["payout_id"] == "p7"


def test_a_short_run_requires_no_window_it_could_not_reach(tmp_path: Path) -> None:
    # 100 paid payouts at 5 %: 5 expected, e**-5 of missing by chance: shown, not required
    report = judge_dir(run_history(tmp_path, [check(n) for n in range(100)], SETTINGS))
    assert report["exit_code"] == EXIT_PASS, report["reason"]
    assert not coverage.not_reached(report["coverage"])
    assert report["coverage"][coverage.FEE_AT_LIMIT]["required"] is False


def test_the_money_verdict_comes_first(tmp_path: Path) -> None:
    users = [check(n) for n in range(400)]
    users[3]["in"]["actual_msat"] -= 5_000  # charged more than the node paid
    report = judge_dir(run_history(tmp_path, users, only_fee_at_limit(0.05)))
    assert report["exit_code"] == EXIT_INCONSISTENT
    assert "fee_at_limit" in report["reason"]  # still named


def test_a_history_without_coverage_settings_requires_nothing(tmp_path: Path) -> None:
    report = judge_dir(run_history(tmp_path, [check(n) for n in range(400)], None))
    assert report["exit_code"] == EXIT_PASS, report["reason"]
    assert not any(entry["enabled"] for entry in report["coverage"].values())


def test_a_payout_only_the_audit_judged_counts_once() -> None:
    """A long hold often ends after the run stopped its resolver: the audit's read of the node
    counts it; the audit's read of a payout a check judged already does not count it again."""
    node = check(1, timed_out=True, span_ms=(0, 10_000))["in"]["node"]
    entry = {"wallet_id": "w1", "payment_hash": "h1", "payout_id": "p1", "phase": "spike",
             "expected_msat": BEFORE_MSAT, "amount_msat": 1_000_000,
             "reason": "run_stopped"}  # fmt: skip
    audit = Audit()
    audit.add(entry, None, {}, node=node)
    audit.add({**entry, "reason": coverage.JUDGED_ALREADY}, None, {}, node=node)
    assert audit.coverage["windows"][coverage.LATE_SETTLE][0] == 1
    assert audit.coverage["held_s"] == {"10": [1, audit.coverage["held_s"]["10"][1]]}


def test_merged_witness_is_the_same_whatever_the_order_of_the_processes():
    """The live master merges its workers' coverage in the order their tallies came;
    `lnchaos check` in the order of its files: both keep the earlier witness, so the two
    verdicts name the same payout (a two-worker run once differed on fee_at_limit's)."""
    one, other = coverage.empty(), coverage.empty()
    one["windows"][coverage.FEE_AT_LIMIT] = [2, {"payout_id": "p-late", "t_unix": 20.5}]
    other["windows"][coverage.FEE_AT_LIMIT] = [1, {"payout_id": "p-early", "t_unix": 10.0}]
    other["held_s"]["3"] = [1, {"payout_id": "p-held", "t_unix": 30.0}]
    merged = []
    for order in ((one, other), (other, one)):
        into = coverage.empty()
        for part in order:
            coverage.merge(into, part)
        merged.append(into)
    assert merged[0] == merged[1]
    assert merged[0]["windows"][coverage.FEE_AT_LIMIT] == [
        3,
        {"payout_id": "p-early", "t_unix": 10.0},
    ]
    assert merged[0]["held_s"]["3"][1]["payout_id"] == "p-held"
