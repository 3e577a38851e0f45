"""`lnchaos bench --verdict-payouts N`: what the end-of-run verdict costs the target after N
payouts (issue 24: at most the final wait + 5 s at a million).

A run's end asks the target's reconciliation a few times a second until two answers agree
(locustfiles/admin_client.py `wait_settled`), after a final wait. This measures those answers on
a target whose database already holds N finished payouts of earlier traffic, judged as a run's
background reconciler judges them while the run goes (its checkpoint says so), plus a last
stretch of real payouts made through the running target:
1. the database is written directly in the target's own schema (one wallet, N succeeded payouts
   with their transfers, the books balanced, the reconciler's checkpoint after them);
2. `python -m target` starts on it (its start time is measured too: a crash's restart pays it);
3. LAST_PAYOUTS payouts are made through its API;
4. GET /admin/reconciliation?since_ms=<the run's start>&stuck_after_s=0 is asked ASKS times:
   the seconds of each answer, and of two agreeing answers in a row, are printed and written to
   <report-dir>/bench-verdict.json.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from target.common.child import ChildServer
from target.ledger import INDEXES, SCHEMA
from target.reconcile import CHECKPOINT_SCHEMA

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "lnchaos-bench-verdict-token"
LAST_PAYOUTS = 300
ASKS = 10
ROWS_PER_COMMIT = 50_000
START_TIMEOUT_S = 600.0  # a start loads N payouts' Bloom filters
REQUEST_TIMEOUT_S = 60.0
AMOUNT_MSAT = 10_000
FEE_MSAT = 11
WALLET = "0" * 32


def write_history(db_path: Path, payouts: int) -> None:
    """N succeeded payouts of one wallet, balanced books, the reconciler's checkpoint after them
    (what a run's background reconciler leaves when it judged them all OK as they came)."""
    created_ms = int(time.time() * 1000) - 3_600_000
    db = sqlite3.connect(db_path)
    db.executescript(SCHEMA + INDEXES + CHECKPOINT_SCHEMA)
    funding_msat = payouts * (AMOUNT_MSAT + FEE_MSAT) + 10**9
    db.execute("INSERT INTO wallets VALUES (?, ?, ?)", (WALLET, "0" * 64, created_ms))
    transfer_id = 1
    for start in range(0, payouts, ROWS_PER_COMMIT):
        rows, transfers = [], []
        for i in range(start, min(start + ROWS_PER_COMMIT, payouts)):
            payout_id = f"{i:032x}"
            rows.append(
                (payout_id, WALLET, f"k{i}", "0" * 64, "lnbcrt", f"{i:064x}", AMOUNT_MSAT,
                 1000, FEE_MSAT, "succeeded", "on", 200, "{}", created_ms, created_ms,
                 i + 1, "done", i + 1)
            )  # fmt: skip
            for debit, credit, amount_msat in (
                (f"wallet:{WALLET}", "outbound", AMOUNT_MSAT),
                (f"wallet:{WALLET}", "fees", FEE_MSAT),
            ):
                transfers.append(
                    (transfer_id, debit, credit, amount_msat, payout_id, "confirm", created_ms)
                )
                transfer_id += 1
        db.executemany(f"INSERT INTO payouts VALUES ({','.join('?' * 18)})", rows)
        db.executemany("INSERT INTO transfers VALUES (?, ?, ?, ?, ?, ?, ?)", transfers)
        db.commit()
    db.execute("INSERT INTO transfers VALUES (?, 'deposits', ?, ?, NULL, 'deposit', ?)",
               (transfer_id, f"wallet:{WALLET}", funding_msat, created_ms))  # fmt: skip
    spent_msat = payouts * (AMOUNT_MSAT + FEE_MSAT)
    db.executemany(
        "INSERT INTO accounts VALUES (?, ?)",
        [("deposits", -funding_msat), (f"wallet:{WALLET}", funding_msat - spent_msat),
         ("outbound", payouts * AMOUNT_MSAT), ("fees", payouts * FEE_MSAT)],
    )  # fmt: skip
    sums = {"deposits": -funding_msat, "wallet:": funding_msat - spent_msat,
            "outbound": payouts * AMOUNT_MSAT, "fees": payouts * FEE_MSAT}  # fmt: skip
    db.execute(
        "INSERT INTO reconcile_checkpoint VALUES (1, ?, '[]', ?)",
        (payouts, json.dumps([transfer_id, sums])),
    )
    db.commit()
    db.close()


def call(url: str, method: str = "GET", body: Any = None, headers: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as answer:
        return json.loads(answer.read() or b"null")


def pay_last_stretch(url: str, count: int) -> None:
    wallet = call(f"{url}/api/wallets", "POST", {"balance_msat": 10**10})
    headers = {"X-Api-Key": wallet["api_key"]}
    for i in range(count):
        invoice = call(f"{url}/node/invoices", "POST", {"amount_msat": 20_000 + i})
        try:
            call(f"{url}/api/wallets/{wallet['wallet_id']}/payouts", "POST",
                 {"payment_request": invoice["payment_request"]}, headers)  # fmt: skip
        except urllib.error.HTTPError:  # a 202/504/502 answer of a faulted payment is fine
            continue


def measure(payouts: int, report_dir: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lnchaos-bench-verdict-") as tmp:
        db_path = Path(tmp) / "wallet.sqlite"
        started = time.monotonic()
        write_history(db_path, payouts)
        written_s = time.monotonic() - started
        command = [
            sys.executable, "-m", "target", "--port", "0", "--db", str(db_path),
            "--admin-token", ADMIN_TOKEN, "--fix", "on",
        ]  # fmt: skip
        server = ChildServer(command, log_path=Path(tmp) / "target.log", cwd=ROOT,
                             name="target (verdict bench)")  # fmt: skip
        started = time.monotonic()
        url = server.start(start_timeout_s=START_TIMEOUT_S).url
        try:
            start_s = time.monotonic() - started
            since_ms = int(time.time() * 1000)
            pay_last_stretch(url, LAST_PAYOUTS)
            admin = {"X-Admin-Token": ADMIN_TOKEN}
            query = f"{url}/admin/reconciliation?since_ms={since_ms}&stuck_after_s=0"
            answers_s, reports = [], []
            for _ in range(ASKS):
                asked = time.monotonic()
                reports.append(call(query, headers=admin))
                answers_s.append(time.monotonic() - asked)
        finally:
            server.stop()
    last = reports[-1]
    result = {
        "payouts_before": payouts,
        "payouts_in_run": LAST_PAYOUTS,
        "history_written_s": round(written_s, 1),
        "target_start_s": round(start_s, 2),
        "answer_s_median": round(statistics.median(answers_s), 3),
        "answer_s_max": round(max(answers_s), 3),
        "first_answer_s": round(answers_s[0], 3),
        "two_agreeing_answers_s": round(answers_s[0] + answers_s[1], 3),
        "run_payouts_counted": last.get("payouts"),
        "conserved": last.get("conserved"),
        "conservation": last.get("conservation"),
    }
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "bench-verdict.json").write_text(json.dumps(result, indent=1))
    return result


def describe(result: dict[str, Any]) -> str:
    return (
        f"verdict after {result['payouts_before']:,} payouts (+{result['payouts_in_run']} in the "
        f"run): target start {result['target_start_s']} s; reconciliation answer "
        f"{result['answer_s_median']} s median, {result['answer_s_max']} s max; two agreeing "
        f"answers {result['two_agreeing_answers_s']} s; conserved {result['conserved']}"
    )
