"""The suite's own table: checks and faults counted apart from Locust's request statistics.

Locust adds every request event to its Aggregated row, so a check or an injected fault fired as
a request event would make the total's count, RPS and percentiles describe something else than
HTTP traffic. So checks (type CHECK, one name per invariant: lnchaos/checker/kinds.py) and
faults (type FAULT, `timeout [phase]`, `payment_failed [phase]`: wallet_client.py) are counted
here instead, per (type, name), and any later count of the suite's own (dropped iterations,
...) can join them.

- Each process counts into `LOCAL` (one `Counters` per run; a new run id starts a fresh one:
  `start_run`). A worker's counts ride to the master inside its tally (telemetry.py: the same
  message, key `counters`), so no second path crosses processes; the master keeps the latest
  counts of each worker of the run (`on_worker`) and adds its own (the reconciliation and the
  final audit are checked on the master).
- A failed check also shows in Locust's Failures tab and failures CSV, with one stable text per
  kind and invariant (`failure_text`: no ids, no amounts, so a run with 93 failures shows one row
  per kind with its count). It is entered directly into `environment.stats.errors`, not through
  `RequestStats.log_error`: that would also add a failure to the Aggregated row and create a
  request row with failures but no requests. Locust ships a worker's `stats.errors` to the
  master with its own stats reports and merges them there, so the Failures tab is whole in a
  distributed run too. The ids and amounts of each finding go to consistency.json's examples.
- `table(environment)`: the rows for the web UI (documented there); with `--csv PREFIX` the same
  rows are written to `PREFIX_consistency_checks.csv` once a second while the run goes and at the
  end (`CSV_COLUMNS`), and consistency.json carries them as `counters`.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import gevent
from locust.runners import WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC, StatsError

from lnchaos.checker.kinds import CHECK, FAULT, KIND_TEXT
from lnchaos.checker.kinds import NO_RECONCILIATION as NO_RECONCILIATION

log = logging.getLogger(__name__)

CSV_SUFFIX = "_consistency_checks.csv"
CSV_COLUMNS = (
    "Type",
    "Name",
    "Count",
    "Failures",
    "Failures by kind",
    "Average (ms)",
    "Max (ms)",
)
MAX_ROWS = 1000  # (type, name) pairs one process keeps: a bound, not a plan
MAX_KINDS = 32  # kinds per row
MAX_MESSAGE_CHARS = 500
MAX_WORKERS = 10_000

# A failed check of no kind (KIND_TEXT, lnchaos/checker/kinds.py, has one text per kind).
NO_KIND_TEXT = "not judged: not final within the users' bound, left to the final audit"


def _new_row(type_: str, name: str) -> dict[str, Any]:
    return {
        "type": type_,
        "name": name,
        "count": 0,
        "failures": 0,
        "failures_by_kind": {},
        "total_ms": 0.0,
        "max_ms": 0.0,
        "last_failure": None,
    }


class Counters:
    """One process's counts of one run: per (type, name) count, failures (by kind), time."""

    def __init__(self, run_id: str = "") -> None:
        self.run_id = run_id
        self.rows: dict[tuple[str, str], dict[str, Any]] = {}
        self.overflow = 0  # events of a (type, name) past MAX_ROWS: counted, not kept

    def record(
        self,
        type_: str,
        name: str,
        *,
        failed: bool = False,
        kind: str | None = None,
        response_time_ms: float = 0.0,
        message: str | None = None,
    ) -> None:
        """One event of (type_, name); a failed one counts under its kind (None: no kind)."""
        row = self.rows.get((type_, name))
        if row is None:
            if len(self.rows) >= MAX_ROWS:
                self.overflow += 1
                return
            row = self.rows[(type_, name)] = _new_row(type_, name)
        row["count"] += 1
        row["total_ms"] += max(0.0, float(response_time_ms))
        row["max_ms"] = max(row["max_ms"], float(response_time_ms))
        if failed:
            row["failures"] += 1
            label = kind or "none"
            by_kind = row["failures_by_kind"]
            if label in by_kind or len(by_kind) < MAX_KINDS:
                by_kind[label] = by_kind.get(label, 0) + 1
            if message:
                row["last_failure"] = message[:MAX_MESSAGE_CHARS]

    def to_dict(self) -> dict[str, Any]:
        """What crosses to the master (inside the tally): plain JSON."""
        return {
            "run_id": self.run_id,
            "rows": [
                {**row, "failures_by_kind": dict(row["failures_by_kind"])}
                for row in self.rows.values()
            ],
            "overflow": self.overflow,
        }


LOCAL = Counters()
_workers: dict[str, dict[str, Any]] = {}  # master: the latest counts of each worker, this run
_stats: Any = None  # the bound environment's RequestStats (bind): where failures are listed


def bind(environment: Any) -> None:
    """At init, in every process: failed checks are listed in this environment's Failures; on
    the master (or a local runner) with --csv, the table is written beside Locust's CSV."""
    global _stats
    _stats = environment.stats
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if prefix and not isinstance(environment.runner, WorkerRunner):
        gevent.spawn(_csv_writer, environment)


def start_run(run_id: str) -> None:
    """A new run (its id) starts from zero; the same id again changes nothing (a local runner
    hears of its run twice: from the collector and from its own phase message)."""
    global LOCAL
    if run_id != LOCAL.run_id:
        LOCAL = Counters(run_id)
        _workers.clear()


def on_worker(node_id: str, data: dict[str, Any] | None) -> None:
    """Master: a worker's latest counts (its tally's `counters`); another run's are ignored."""
    if not data or data.get("run_id") != LOCAL.run_id:
        return
    if node_id in _workers or len(_workers) < MAX_WORKERS:
        _workers[node_id] = data


def record_check(
    name: str,
    *,
    failed: bool,
    kind: str | None = None,
    response_time_ms: float = 0.0,
    message: str | None = None,
) -> None:
    """One check (checker.fire_check): counted here; a failure also listed in Locust's
    Failures with its stable text (never its ids: `message` stays in this table's last_failure)."""
    LOCAL.record(
        CHECK,
        name,
        failed=failed,
        kind=kind,
        response_time_ms=response_time_ms,
        message=message,
    )
    if failed and _stats is not None:
        text = failure_text(kind)
        key = StatsError.create_key(CHECK, name, text)
        entry = _stats.errors.get(key)
        if entry is None:
            entry = _stats.errors[key] = StatsError(CHECK, name, text)
        entry.occurred()


def record(type_: str, name: str, *, failed: bool = False, response_time_ms: float = 0.0) -> None:
    """Any other count of the suite's own (e.g. type "DROPPED" for dropped iterations): a row
    of this table, never a Locust request."""
    LOCAL.record(type_, name, failed=failed, response_time_ms=response_time_ms)


def record_fault(name: str, response_time_ms: float = 0.0) -> None:
    """One injected fault seen by a user (`timeout [spike]`): the chaos, never a failure."""
    LOCAL.record(FAULT, name, response_time_ms=response_time_ms)


def failure_text(kind: str | None) -> str:
    """The stable text of a failed check of `kind` (the same for every payout and amount)."""
    if kind is None:
        return NO_KIND_TEXT
    kinds = [k.strip() for k in kind.split(",") if k.strip()]
    return "; ".join(f"{k}: {KIND_TEXT.get(k, 'inconsistent')}" for k in kinds)


def merge(snapshots: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sum of Counters.to_dict() snapshots: the table's rows (see `table`)."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for snap in snapshots:
        for row in snap.get("rows") or []:
            key = (str(row["type"]), str(row["name"]))
            target = merged.get(key)
            if target is None:
                target = merged[key] = _new_row(*key)
            target["count"] += int(row.get("count", 0))
            target["failures"] += int(row.get("failures", 0))
            for kind, n in (row.get("failures_by_kind") or {}).items():
                target["failures_by_kind"][kind] = target["failures_by_kind"].get(kind, 0) + n
            target["total_ms"] += float(row.get("total_ms", 0.0))
            target["max_ms"] = max(target["max_ms"], float(row.get("max_ms", 0.0)))
            if row.get("last_failure"):
                target["last_failure"] = row["last_failure"]
    rows = []
    for key in sorted(merged):
        row = merged.pop(key)
        total_ms = row.pop("total_ms")
        row["avg_ms"] = round(total_ms / row["count"], 1) if row["count"] else 0.0
        row["max_ms"] = round(row["max_ms"], 1)
        rows.append(row)
    return rows


def table(environment: Any) -> list[dict[str, Any]]:
    """The suite's table of the current (or last) run, for the web UI and the reports.

    One row per (type, name), sorted by type then name, each a dict:
        type: "CHECK" | "FAULT"        (later counts of the suite's own may add types)
        name: str                      CHECK: the invariant (lnchaos/checker/kinds.py:
                                       balance_after_success, resolved_vs_node_truth,
                                       final_audit, reconciliation, ...);
                                       FAULT: `timeout [phase]` or `payment_failed [phase]`
        count: int                     checks made / faults seen
        failures: int                  failed checks (a fault never fails)
        failures_by_kind: {kind: int}  failed checks per inconsistency kind (checker kinds;
                                       "none": not judged, e.g. resolved_within_bound)
        avg_ms, max_ms: float          how long the check took (a fault: the payout's latency)
        last_failure: str | None       the latest failure in words, with its ids
    On the master (or a local runner): every worker's latest counts plus the master's own; on a
    worker: its own. `environment` is the Locust environment the suite was bound to at init.
    """
    del environment  # one suite per process: the counts are this process's (bind)
    return merge([LOCAL.to_dict(), *_workers.values()])


def csv_path(prefix: str) -> Path:
    return Path(f"{prefix}{CSV_SUFFIX}")


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """The table as CSV (CSV_COLUMNS), atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for row in rows:
            by_kind = ";".join(f"{k}={n}" for k, n in sorted(row["failures_by_kind"].items()))
            writer.writerow(
                [
                    row["type"],
                    row["name"],
                    row["count"],
                    row["failures"],
                    by_kind,
                    row["avg_ms"],
                    row["max_ms"],
                ]
            )
    tmp.replace(path)


def write_csv_now(environment: Any) -> Path | None:
    """Write the table beside Locust's CSV when --csv was given; its path, or None."""
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix:
        return None
    path = csv_path(prefix)
    try:
        write_csv(path, table(environment))
    except OSError as err:
        log.warning("could not write %s: %s", path, err)
        return None
    return path


def _csv_writer(environment: Any) -> None:
    """Master greenlet: the table once per Locust CSV interval, as Locust writes its own."""
    while True:
        gevent.sleep(CSV_STATS_INTERVAL_SEC)
        write_csv_now(environment)
