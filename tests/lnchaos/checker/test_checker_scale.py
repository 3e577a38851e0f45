"""`lnchaos check` on a history of 100,000 payouts takes seconds (marker `history`)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from lnchaos.checker import CHARGED_NOT_PAID, EXIT_INCONSISTENT, history
from lnchaos.checker.offline import judge_dir

PAYOUTS = 100_000
WRONG_EVERY = 10_000  # one payout in so many is charged though the node failed it
CHECK_WITHIN_S = 60.0  # measured: about 10 s on this 2-core machine, shared


def payout_lines(n: int) -> list[str]:
    """The records a payer writes for one checked payout: invocation, counted, completion, the
    node's truth, the wallet's read and the balance check."""
    wallet, payment_hash, t = f"w{n}", f"{n:064x}", 1.0 + n / 1000
    failed = n % WRONG_EVERY == 0
    node = {"status": "failed" if failed else "succeeded", "fee_msat": 0 if failed else 1000}
    records = [
        {"type": history.INVOKE, "t": t, "op": "payout", "wallet": wallet, "hash": payment_hash,
         "amount_msat": 100_000, "key": f"k{n}", "phase": "normal"},
        {"type": history.PAYOUT, "t": t, "phase": "normal",
         "outcome": "failed" if failed else "succeeded", "latency_ms": 3.1, "payer": True},
        {"type": history.COMPLETE, "t": t, "op": "payout", "wallet": wallet, "hash": payment_hash,
         "result": "fail" if failed else "ok", "http": 502 if failed else 200,
         "payout_id": f"p{n}", "fee_msat": node["fee_msat"], "balance_msat": 899_000},
        {"type": history.NODE_READ, "t": t, "hash": payment_hash, **node},
        {"type": history.CHECK, "t": t, "name": "balance_after_success", "wallet": wallet,
         "hash": payment_hash, "payout_id": f"p{n}", "phase": "normal",
         "in": {"before_msat": 1_000_000, "amount_msat": 100_000, "node": node,
                "actual_msat": 899_000, "retried": False},
         "payout_status": "failed" if failed else "succeeded"},
    ]  # fmt: skip
    return [history.line(r) for r in records]


@pytest.mark.history
@pytest.mark.timeout(300)
def test_a_history_of_100_000_payouts_is_judged_in_seconds(tmp_path: Path):
    folder = tmp_path / "history"
    folder.mkdir()
    users = [history.line(history.header("local", "r"))]
    for n in range(PAYOUTS):
        users.extend(payout_lines(n))
    (folder / "users-local.jsonl").write_text("\n".join(users) + "\n")
    end = {"type": history.END, "t": 200.0, "duration_s": 100.0, "locust_exit_code": 0,
           "run": {"fix": "off", "shape": "steady", "profile": None, "seed": 1, "threshold": 0,
                   "final_wait_s": 1.0},
           "user_files": ["users-local.jsonl"], "workers": None}  # fmt: skip
    master = [history.header("master", "r"), {"type": history.AUDIT_CLOSE, "t": 199.0}, end]
    (folder / "master.jsonl").write_text("\n".join(map(history.line, master)) + "\n")
    started = time.perf_counter()
    report = judge_dir(tmp_path)
    took_s = time.perf_counter() - started
    assert sum(report["payouts_by_outcome"].values()) == PAYOUTS
    assert report["exit_code"] == EXIT_INCONSISTENT
    assert report["inconsistencies"][CHARGED_NOT_PAID]["count"] == PAYOUTS // WRONG_EVERY
    assert report["inconsistencies"][CHARGED_NOT_PAID]["examples"][0]["witness"]
    assert took_s < CHECK_WITHIN_S, f"{took_s:.1f} s"
    print(f"lnchaos check of {PAYOUTS} payouts: {took_s:.1f} s")
