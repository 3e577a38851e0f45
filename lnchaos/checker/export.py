"""A production system's records as a history: LND's ListPayments JSON (the node's truth) and a
CSV of the service's payouts (what it charged), so `lnchaos check` reconciles them with the same
rules as the chaos runs: the seed's continuous reconciliation.

The payouts CSV has a header row with at least these columns (more are ignored):
    payment_hash   hex, the invoice's hash (what LND lists the payment under)
    amount_msat    the invoice's amount
    fee_msat       the fee the service says it paid
    status         the service's status: succeeded | failed | pending (or in_flight)
    charged_msat   what the service took from the customer's balance for this payout, in total
and optionally payout_id, wallet_id (the customer's account) and created_unix.

Each payout becomes its operation (invoke, complete: what the service claimed), the node's
read of its hash, the payout counted, and the balance check `rules.balance_kind` judges: the
customer was charged `charged_msat`; the node's truth says the payment cost amount + its fee
when it paid and nothing when it did not. The check is written as a wallet that held exactly
what was charged: before = charged_msat, after = 0, so expected after = charged - cost and any
difference is the charge's error (charged_not_paid below zero, paid_not_charged above).
A payout not final at the service or at the node is `left_unresolved` (normal in production:
reported, not a finding). A payment LND made that no payout row names is judged as a payout
charged nothing (the service paid from its own funds: paid_not_charged).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from lnchaos.checker import history
from lnchaos.checker.kinds import (
    BALANCE_AFTER_FAILURE,
    BALANCE_AFTER_SUCCESS,
    RESOLVED_VS_NODE_TRUTH,
    RESULT_OF_OUTCOME,
)

USERS_FILE = "users-export" + history.SUFFIX
MASTER_FILE = "master" + history.SUFFIX
PHASE = "production"
REQUIRED_COLUMNS = ("payment_hash", "amount_msat", "fee_msat", "status", "charged_msat")
# LND's Payment.status names, as the node's truth says them (history's node_read)
LND_STATUS = {"SUCCEEDED": "succeeded", "FAILED": "failed", "IN_FLIGHT": "in_flight"}
SERVICE_STATUS = {"succeeded": "succeeded", "failed": "failed", "pending": "pending"}
SERVICE_STATUS["in_flight"] = "pending"
MAX_ROWS = 10_000_000  # a bound on what one export may hold


class ExportError(ValueError):
    """An export that cannot be read: its file, row and what is wrong."""


def read_lnd_payments(path: Path) -> dict[str, dict[str, Any]]:
    """LND's ListPayments answer ({"payments": [...]}, int64 as strings): by payment hash, the
    node's truth {status, fee_msat, amount_msat, t}."""
    try:
        body = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ExportError(f"{path}: not LND's ListPayments JSON: {err}") from None
    payments = body.get("payments") if isinstance(body, dict) else None
    if not isinstance(payments, list):
        raise ExportError(f"{path}: no `payments` list (lncli listpayments --include_incomplete)")
    truth: dict[str, dict[str, Any]] = {}
    for number, payment in enumerate(payments[:MAX_ROWS], 1):
        try:
            payment_hash = str(payment["payment_hash"])
            status = LND_STATUS.get(str(payment.get("status")), "in_flight")
            truth[payment_hash] = {
                "status": status,
                "fee_msat": int(payment.get("fee_msat") or 0) if status == "succeeded" else 0,
                "amount_msat": int(payment.get("value_msat") or 0),
                "t": int(payment.get("creation_time_ns") or 0) / 1e9,
            }
        except (KeyError, TypeError, ValueError) as err:
            raise ExportError(f"{path}: payment {number}: {err!r}") from None
    return truth


def read_payouts(path: Path) -> list[dict[str, Any]]:
    """The service's payouts CSV (REQUIRED_COLUMNS), each row checked."""
    rows: list[dict[str, Any]] = []
    try:
        with Path(path).open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise ExportError(f"{path}: missing columns {', '.join(missing)}")
            for number, row in enumerate(reader, 2):
                if len(rows) >= MAX_ROWS:
                    raise ExportError(f"{path}: more than {MAX_ROWS} payouts")
                rows.append(_payout_row(path, number, row))
    except OSError as err:
        raise ExportError(f"{path}: {err}") from None
    return rows


def _payout_row(path: Path, number: int, row: dict[str, str]) -> dict[str, Any]:
    try:
        status = SERVICE_STATUS[row["status"].strip().lower()]
        return {
            "payment_hash": row["payment_hash"].strip(),
            "amount_msat": int(row["amount_msat"]),
            "fee_msat": int(row["fee_msat"] or 0),
            "status": status,
            "charged_msat": int(row["charged_msat"]),
            "payout_id": (row.get("payout_id") or "").strip() or f"row-{number}",
            "wallet_id": (row.get("wallet_id") or "").strip() or None,
            "t": float(row.get("created_unix") or 0.0),
        }
    except (KeyError, ValueError) as err:
        raise ExportError(f"{path}: line {number}: {err!r}") from None


def payout_records(payout: dict[str, Any], node: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One payout's records, in order: invoke, complete, the node's read, counted, judged."""
    t = payout["t"]
    ids = {"wallet": payout["wallet_id"], "hash": payout["payment_hash"], "phase": PHASE}
    status = outcome = payout["status"]
    records: list[dict[str, Any]] = [
        {"type": history.INVOKE, "t": t, "op": "payout", "amount_msat": payout["amount_msat"],
         "payout_id": payout["payout_id"], **ids},
        {"type": history.COMPLETE, "t": t, "op": "payout", "result": RESULT_OF_OUTCOME[outcome],
         "status": status, "payout_id": payout["payout_id"], "fee_msat": payout["fee_msat"],
         "charged_msat": payout["charged_msat"], **ids},
    ]  # fmt: skip
    node_status = (node or {}).get("status", "unknown")  # never seen by the node: not paid
    records.append(
        {"type": history.NODE_READ, "t": t, "hash": payout["payment_hash"],
         "status": node_status, "fee_msat": (node or {}).get("fee_msat", 0)}
    )  # fmt: skip
    records.append({"type": history.PAYOUT, "t": t, "phase": PHASE, "outcome": outcome})
    if status == "pending" or node_status == "in_flight":
        records.append({"type": history.LEFT_UNRESOLVED, "t": t, "payout_id": payout["payout_id"],
                        **ids})  # fmt: skip
        return records
    name = {"succeeded": BALANCE_AFTER_SUCCESS, "failed": BALANCE_AFTER_FAILURE}[status]
    records.append(
        {"type": history.CHECK, "t": t, "name": name, "payout_id": payout["payout_id"], **ids,
         "payout_status": status,
         "in": {"before_msat": payout["charged_msat"], "amount_msat": payout["amount_msat"],
                "node": {"status": node_status, "fee_msat": (node or {}).get("fee_msat", 0)},
                "actual_msat": 0}}
    )  # fmt: skip
    return records


def unrecorded_payment(payment_hash: str, node: dict[str, Any]) -> list[dict[str, Any]]:
    """A payment LND made that no payout names: judged as a payout charged nothing."""
    payout = {
        "payment_hash": payment_hash,
        "amount_msat": node["amount_msat"],
        "fee_msat": 0,
        "status": "succeeded",
        "charged_msat": 0,
        "payout_id": None,
        "wallet_id": None,
        "t": node["t"],
    }
    records = payout_records(payout, node)
    for record in records:
        if record["type"] == history.CHECK:
            record["name"] = RESOLVED_VS_NODE_TRUTH
            record["payout_status"] = "no payout recorded"
    return records


def convert(lnd_payments: Path, payouts_csv: Path, out_dir: Path) -> Path:
    """Write the history of the export into OUT_DIR/history/; that folder back."""
    truth = read_lnd_payments(lnd_payments)
    payouts = read_payouts(payouts_csv)
    named = {p["payment_hash"] for p in payouts}
    records: list[dict[str, Any]] = []
    for payout in payouts:
        records.extend(payout_records(payout, truth.get(payout["payment_hash"])))
    for payment_hash, node in truth.items():
        if payment_hash not in named and node["status"] == "succeeded":
            records.extend(unrecorded_payment(payment_hash, node))
    folder = history.history_dir(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / USERS_FILE, "export", records)
    _write(folder / MASTER_FILE, "master", [_end(lnd_payments, payouts_csv, records)])
    return folder


def _end(lnd_payments: Path, payouts_csv: Path, records: list[dict[str, Any]]) -> dict[str, Any]:
    times = [float(r["t"]) for r in records if r.get("t")]
    return {
        "type": history.END,
        "t": max(times, default=0.0),
        "run": {"fix": "production", "shape": "export", "profile": None, "seed": 0,
                "threshold": 0, "final_wait_s": 0.0},
        "phases": [],
        "timeline": [],
        "duration_s": round(max(times, default=0.0) - min(times, default=0.0), 3),
        "configured_rate_by_phase": {},
        "locust_exit_code": 0,
        "target_error": None,
        "since_ms": None,
        "workers": None,
        "user_files": [USERS_FILE],
        "extra": {"source": {"lnd_payments": str(lnd_payments), "payouts": str(payouts_csv)}},
    }  # fmt: skip


def _write(path: Path, process: str, records: list[dict[str, Any]]) -> None:
    file = history.HistoryFile(path)
    header = history.header(process, "export")
    header["t"] = records[0]["t"] if records else 0.0  # deterministic: the export's own time
    file.append([history.line(header), *(history.line(r) for r in records)])
