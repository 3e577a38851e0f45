"""The open model's numbers: arrivals offered, started and dropped per phase, and the delays.

Kept apart from the payouts' tally (checker.Tally) and shipped beside it (telemetry.py): a
dropped iteration is not a request and not a check, so Locust's own totals stay HTTP only.
Pure data, no Locust: the master merges the processes' tallies and summarises them for
consistency.json (`arrivals`, schema in `summary`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

ARRIVALS_KEY = "arrivals"
COUNTS = ("offered", "started", "dropped", "late")  # late: dropped as the scheduler was late


class ArrivalTally:
    """One process's arrivals of one run. Histograms in whole ms (Locust's rounding)."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.by_phase: dict[str, dict[str, int]] = {}
        self.start_delay_ms: dict[int, int] = {}
        self.latency_from_scheduled_ms: dict[int, int] = {}

    def count(self, phase: str, what: str, n: int = 1) -> None:
        assert what in COUNTS, what
        counts = self.by_phase.setdefault(phase, dict.fromkeys(COUNTS, 0))
        counts[what] += n

    def started(self, phase: str, start_delay_s: float) -> None:
        self.count(phase, "started")
        _add(self.start_delay_ms, start_delay_s * 1000)

    def answered(self, latency_from_scheduled_s: float) -> None:
        _add(self.latency_from_scheduled_ms, latency_from_scheduled_s * 1000)

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": dict(self.config),
            "by_phase": {phase: dict(counts) for phase, counts in self.by_phase.items()},
            "start_delay_ms": {str(k): v for k, v in self.start_delay_ms.items()},
            "latency_from_scheduled_ms": {
                str(k): v for k, v in self.latency_from_scheduled_ms.items()
            },
        }


def merge(snapshots: Iterable[dict[str, Any] | None]) -> dict[str, Any]:
    """The processes' ArrivalTally.to_dict() summed; the config of any process that has one."""
    merged: dict[str, Any] = {
        "config": {},
        "by_phase": {},
        "start_delay_ms": {},
        "latency_from_scheduled_ms": {},
    }
    for snap in snapshots:
        if not snap:
            continue
        merged["config"] = merged["config"] or dict(snap.get("config") or {})
        for phase, counts in (snap.get("by_phase") or {}).items():
            target = merged["by_phase"].setdefault(phase, dict.fromkeys(COUNTS, 0))
            for what in COUNTS:
                target[what] += int(counts.get(what, 0))
        for key in ("start_delay_ms", "latency_from_scheduled_ms"):
            for bucket, n in (snap.get(key) or {}).items():
                merged[key][str(bucket)] = merged[key].get(str(bucket), 0) + int(n)
    return merged


def percentiles(histogram: dict[str, int]) -> dict[str, float | None]:
    points = sorted((int(k), n) for k, n in histogram.items())
    total = sum(n for _, n in points)
    result: dict[str, float | None] = {}
    for label, q in (("p50", 0.50), ("p95", 0.95), ("p99", 0.99)):
        result[label] = None
        seen = 0
        for value, n in points:
            seen += n
            if total and seen >= q * total:
                result[label] = float(value)
                break
    return result


def summary(
    merged: dict[str, Any] | None,
    phases: list[dict[str, Any]],
    payouts_by_phase: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """consistency.json's `arrivals`:
    model: "open" | "closed"
    arrival_rate_per_s, spike_factor, max_payers, max_start_delay_ms, arrivals: the settings
                                (open only)
    by_phase: {phase: {duration_s, offered, started, dropped_iterations, offered_per_s,
                       achieved_per_s}}   achieved: payouts answered (both models); offered:
                                          arrivals scheduled (open; closed: = achieved)
    offered, started, dropped_iterations: int; dropped_share: float (of offered)
    start_delay_ms: {p50, p95, p99}        scheduled -> a payer took it (open only)
    latency_from_scheduled_ms: {p50, p95, p99}  scheduled -> the payout answered (open)
    """
    merged = merged or {}
    config = merged.get("config") or {}
    open_model = bool(config)
    counts_by_phase = merged.get("by_phase") or {}
    durations = _phase_durations(phases)
    names = list(dict.fromkeys([*durations, *counts_by_phase, *payouts_by_phase]))
    by_phase = {
        name: _phase_row(
            counts_by_phase.get(name) or dict.fromkeys(COUNTS, 0),
            sum((payouts_by_phase.get(name) or {}).values()),
            durations.get(name, 0.0),
            open_model,
        )
        for name in names
    }
    offered_total = sum(entry["offered"] for entry in by_phase.values())
    dropped_total = sum(entry["dropped_iterations"] for entry in by_phase.values())
    result: dict[str, Any] = {"model": "open" if open_model else "closed", **config}
    result.update(
        by_phase=by_phase,
        offered=offered_total,
        started=sum(entry["started"] for entry in by_phase.values()),
        dropped_iterations=dropped_total,
        dropped_driver_late=sum(entry["dropped_driver_late"] for entry in by_phase.values()),
        dropped_share=round(dropped_total / offered_total, 4) if offered_total else 0.0,
        start_delay_ms=percentiles(merged.get("start_delay_ms") or {}),
        latency_from_scheduled_ms=percentiles(merged.get("latency_from_scheduled_ms") or {}),
    )
    return result


def _phase_durations(phases: list[dict[str, Any]]) -> dict[str, float]:
    """Seconds per phase name, over all of its ended spans (a soak repeats its phases)."""
    durations: dict[str, float] = {}
    for phase in phases:
        end_s = phase.get("end_s")
        if end_s is None:
            continue
        durations[phase["name"]] = durations.get(phase["name"], 0.0) + max(
            0.0, float(end_s) - float(phase["start_s"])
        )
    return durations


def _phase_row(
    counts: dict[str, int], achieved: int, duration_s: float, open_model: bool
) -> dict[str, Any]:
    """One phase of `by_phase`: in the closed model, offered and started are the achieved."""
    offered = int(counts["offered"]) if open_model else achieved
    return {
        "duration_s": round(duration_s, 3),
        "offered": offered,
        "started": int(counts["started"]) if open_model else achieved,
        "dropped_iterations": int(counts["dropped"]),
        "dropped_driver_late": int(counts.get("late", 0)),
        "offered_per_s": _rate(offered, duration_s),
        "achieved_per_s": _rate(achieved, duration_s),
    }


def _rate(n: int, duration_s: float) -> float | None:
    return round(n / duration_s, 2) if duration_s > 0 else None


def _add(histogram: dict[int, int], value_ms: float) -> None:
    # exact below 100 ms, two significant digits above: a bounded number of buckets
    value = max(0, int(round(value_ms)))
    if value >= 100:
        digits = int(math.log10(value)) - 1
        value = int(round(value, -digits))
    histogram[value] = histogram.get(value, 0) + 1
