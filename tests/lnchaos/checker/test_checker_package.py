"""lnchaos/checker/ alone: no load tool in it, and its fold, bound, verdict and witnesses on small
recorded histories (no Locust started)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lnchaos.checker import CHARGED_NOT_PAID, DOUBLE_CHARGE, EXIT_INCONSISTENT, EXIT_PASS, history
from lnchaos.checker.offline import HistoryError, judge, judge_dir, witness

FORBIDDEN = ("locust", "gevent", "aiohttp", "requests", "urllib3")


def test_importing_the_checker_pulls_in_no_load_tool_nor_http_library():
    code = (
        "import sys, lnchaos.checker, lnchaos.checker.offline, lnchaos.checker.export\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(repr(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def balance_check(actual_msat: int, *, node_status: str, retried: bool = False) -> dict:
    """A payer's balance check of a 1,000,000 msat payout from a 10,000,000 msat wallet."""
    return {
        "type": history.CHECK,
        "t": 2.0,
        "name": "balance_after_failure",
        "wallet": "w1",
        "hash": "h1",
        "payout_id": "p1",
        "phase": "normal",
        "in": {
            "before_msat": 10_000_000,
            "amount_msat": 1_000_000,
            "node": {"status": node_status, "fee_msat": 0},
            "actual_msat": actual_msat,
            "retried": retried,
        },
        "payout_status": "failed",
    }


def test_a_balance_check_is_judged_from_its_inputs_not_its_recorded_kind():
    tally = history.Tally("r")
    # charged for a payment the node says failed: the incident, whatever kind was written
    record = {**balance_check(9_000_000, node_status="failed"), "kind": None}
    assert history.apply(tally, record) == CHARGED_NOT_PAID
    assert tally.kinds[CHARGED_NOT_PAID]["count"] == 1
    assert tally.kinds[CHARGED_NOT_PAID]["examples"][0]["diff_msat"] == -1_000_000
    assert tally.checks["balance_after_failure"] == [0, 1]
    retried = balance_check(8_000_000, node_status="succeeded", retried=True)
    assert history.apply(tally, retried) == DOUBLE_CHARGE
    assert history.apply(tally, balance_check(10_000_000, node_status="failed")) is None


def test_the_recorder_keeps_the_tally_it_folds_and_states_its_bound():
    tally = history.Tally("r")
    recorder = history.Recorder(tally, max_bytes=600)
    for _ in range(10):
        recorder.emit({"type": history.PAYOUT, "phase": "normal", "outcome": "succeeded"})
    lines = recorder.drain()
    assert json.loads(lines[0])["max_bytes"] == 600
    assert tally.payouts["normal"]["succeeded"] == 10  # counted even past the bound
    last = json.loads(lines[-1])
    assert last["type"] == history.TRUNCATED and last["dropped"] > 0
    assert sum(len(line) + 1 for line in lines[:-1]) <= 600


def test_a_history_line_never_carries_an_api_key():
    text = history.line({"type": history.AUDIT_ENTRY, "entry": {"api_key": "k", "wallet_id": "w"}})
    assert "api_key" not in text and '"wallet_id":"w"' in text


def write_history(folder: Path, users: list[dict], master: list[dict]) -> Path:
    folder.mkdir(parents=True)
    for name, process, records in (("users-local", "local", users), ("master", "master", master)):
        lines = [history.line(history.header(process, "r")), *map(history.line, records)]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def end_record(**changes) -> dict:
    record = {
        "type": history.END,
        "t": 9.0,
        "run": {"fix": "off", "shape": "steady", "profile": None, "seed": 1, "threshold": 0,
                "final_wait_s": 1.0},
        "phases": [{"name": "normal", "start_s": 0.0, "end_s": 5.0}],
        "duration_s": 5.0,
        "locust_exit_code": 0,
        "user_files": ["users-local.jsonl"],
        "workers": None,
    }  # fmt: skip
    record.update(changes)
    return record


def small_run(tmp_path: Path, actual_msat: int) -> Path:
    invoke = {"type": history.INVOKE, "t": 1.0, "op": "payout", "wallet": "w1", "hash": "h1"}
    complete = {**invoke, "type": history.COMPLETE, "result": "fail", "payout_id": "p1"}
    node = {"type": history.NODE_READ, "t": 1.5, "hash": "h1", "status": "failed"}
    read = {"type": history.WALLET_READ, "t": 1.8, "wallet": "w1", "balance_msat": actual_msat}
    other = {"type": history.NODE_READ, "t": 1.6, "hash": "h2", "status": "succeeded"}
    payout = {"type": history.PAYOUT, "t": 1.1, "phase": "normal", "outcome": "failed"}
    users = [
        invoke,
        payout,
        complete,
        other,
        node,
        read,
        balance_check(actual_msat, node_status="failed"),
    ]
    nothing = {"count": 0, "amount_msat": 0}
    answer = {"now_ms": 1, "pending": 0, "conserved": True, "charged_not_paid": nothing,
              "paid_not_charged": nothing, "unresolved": nothing}  # fmt: skip
    reconciliation = {"type": history.RECONCILIATION, "t": 8.0, "answer": answer}
    master = [reconciliation, {"type": history.AUDIT_CLOSE, "t": 8.5}, end_record()]
    return write_history(tmp_path / "history", users, master)


def test_a_recorded_run_is_judged_with_its_witness(tmp_path):
    report = judge_dir(small_run(tmp_path, actual_msat=9_000_000).parent)
    assert (report["verdict"], report["exit_code"]) == ("fail", EXIT_INCONSISTENT)
    entry = report["inconsistencies"][CHARGED_NOT_PAID]
    assert entry["count"] == 1
    types = [r["type"] for r in entry["examples"][0]["witness"]]
    # the payment's own records and its wallet's read, in order; not the other payment's
    assert types == ["invoke", "complete", "node_read", "wallet_read", "check"]


def test_a_recorded_run_with_a_right_balance_passes_and_is_deterministic(tmp_path):
    folder = small_run(tmp_path, actual_msat=10_000_000)
    first, second = judge_dir(folder), judge_dir(folder)
    assert (first["verdict"], first["exit_code"]) == ("pass", EXIT_PASS), first["reason"]
    assert json.dumps(first) == json.dumps(second)


def test_a_history_never_ended_or_truncated_is_refused(tmp_path):
    folder = small_run(tmp_path, actual_msat=10_000_000)
    files = history.read_dir(folder)
    with pytest.raises(HistoryError, match="end"):
        judge({**files, "master.jsonl": files["master.jsonl"][:-1]})
    truncated = [*files["users-local.jsonl"], {"type": history.TRUNCATED, "dropped": 3}]
    report = judge({**files, "users-local.jsonl": truncated})
    assert report["exit_code"] == 4 and "truncated" in report["reason"]
    (folder / "users-local.jsonl").write_text("not json\n")
    with pytest.raises(HistoryError, match="not JSON"):
        judge_dir(folder)


def test_a_round_finding_names_several_payouts_in_its_witness():
    records = [
        {"type": history.COMPLETE, "t": 1.0, "payout_id": "a", "wallet": "w", "key": "k1"},
        {"type": history.INVOKE, "t": 0.5, "wallet": "w", "key": "k1"},
        {"type": history.COMPLETE, "t": 1.1, "payout_id": "b", "wallet": "w"},
        {"type": history.COMPLETE, "t": 1.2, "payout_id": "c", "wallet": "x"},
    ]
    records.sort(key=lambda r: r["t"])
    found = witness({"payout_id": "a,b,None", "wallet_id": "w"}, records)
    assert [(r["type"], r.get("payout_id")) for r in found] == [
        ("invoke", None),
        ("complete", "a"),
        ("complete", "b"),
    ]


def test_the_final_audit_is_judged_again_from_its_recorded_reads(tmp_path):
    folder = small_run(tmp_path, actual_msat=10_000_000)
    entry = {"wallet_id": "w2", "expected_msat": 5_000_000, "payment_hash": "h9",
             "amount_msat": 1_000_000, "payout_id": "p9", "retried": False,
             "outcome": "timeout", "reason": "not_final_within_bound"}  # fmt: skip
    audit = {"type": history.AUDIT, "t": 8.2, "entry": entry, "node": {"status": "failed"},
             "wallet_view": {"balance_msat": 4_000_000, "reserved_msat": 0},
             "payout_view": {"status": "failed"}, "error": None}  # fmt: skip
    files = history.read_dir(folder)
    master = files["master.jsonl"]
    master[-2:-2] = [{"type": history.AUDIT_ENTRY, "t": 3.0, "entry": entry}, audit]
    report = judge({**files, "master.jsonl": master})
    found = report["inconsistencies"][CHARGED_NOT_PAID]
    assert (found["count"], found["detected_by"]["audit"]) == (1, 1)
    assert report["audit"]["inconsistent"] == 1  # charged for a payment the node failed
    witness_types = [r["type"] for r in found["examples"][0]["witness"]]
    assert witness_types == ["audit_entry", "audit"]  # a wallet view is no wallet id


def test_lines_not_delivered_go_first_in_line_again():
    recorder = history.Recorder(history.Tally("r"))
    recorder.note({"type": history.PHASE, "name": "normal"})
    sent = recorder.drain()
    recorder.note({"type": history.PHASE, "name": "spike"})
    recorder.restore(sent)  # the message carrying `sent` failed
    names = [json.loads(line).get("name") for line in recorder.drain()]
    assert names == [None, "normal", "spike"]  # the header, then both phases in order
