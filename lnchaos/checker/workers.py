"""The workers of a distributed run as consistency.json shows them: per worker, its state and
what its tally says, and the workers lost mid-run (their final tally never came)."""

from __future__ import annotations

from typing import Any

from lnchaos.checker.tally import (
    checks_summary,
    merge_tallies,
    payouts_by_outcome,
    payouts_verified,
)


def workers_section(workers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """consistency.json's `workers`: per worker, its state and what its tally says."""
    section: dict[str, dict[str, Any]] = {}
    for worker_id, worker in sorted(workers.items(), key=lambda item: str(item[0])):
        tally = merge_tallies([worker["tally"]] if worker.get("tally") else [])
        by_outcome = payouts_by_outcome(tally)
        checks = checks_summary(tally)
        section[str(worker_id)] = {
            "index": worker.get("index"),
            "state": worker.get("state"),
            "lost": bool(worker.get("lost")),
            "reports": int(worker.get("reports", 0)),
            "last_report_unix": worker.get("last_report_unix"),
            "last_report_s": worker.get("last_report_s"),
            "payouts": sum(by_outcome.values()),
            "payouts_by_outcome": by_outcome,
            "payouts_verified": payouts_verified(tally),
            "retries": tally["retries"],
            "checks": {"passed": checks["passed"], "failed": checks["failed"]},
            "inconsistencies": sum(entry["count"] for entry in tally["kinds"].values()),
            "audit_entries": len(tally["audit"]) + int(tally["audit_overflow"]),
        }
    return section


def workers_lost(section: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """consistency.json's `workers_lost`: the workers whose final tally never came."""
    return [
        {
            "worker": worker_id,
            "index": entry["index"],
            "state": entry["state"],
            "last_report_unix": entry["last_report_unix"],
            "last_report_s": entry["last_report_s"],
            "payouts_reported": entry["payouts"],
        }
        for worker_id, entry in section.items()
        if entry["lost"]
    ]


def describe_lost_worker(entry: dict[str, Any]) -> str:
    last = entry.get("last_report_s")
    since = f"its last report at {last:.1f} s" if last is not None else "no report at all"
    return (
        f"worker {entry['worker']} (index {entry.get('index')}, Locust state "
        f"{entry.get('state')}): {since}, {entry.get('payouts_reported', 0)} payouts reported"
    )
