"""The suite's own table of checks and faults (locustfiles/counters.py), without a run."""

from __future__ import annotations

import csv
import time
from types import SimpleNamespace

import pytest
from locust.stats import RequestStats

from locustfiles import checker, counters


@pytest.fixture
def stats():
    """A fresh run bound to a fresh RequestStats (the module's state is per process)."""
    request_stats = RequestStats()
    counters.bind(
        SimpleNamespace(
            stats=request_stats, parsed_options=SimpleNamespace(csv_prefix=None), runner=None
        )
    )
    counters.start_run(f"run-{time.monotonic_ns()}")
    yield request_stats
    counters._stats = None


def fail(name: str, message: str, kind: str | None = None) -> None:
    checker.fire_check(None, name, checker.CheckFailed(message, kind), time.perf_counter())


def test_checks_and_faults_are_counted_apart_from_locust_totals(stats):
    for _ in range(3):
        checker.fire_check(None, checker.BALANCE_AFTER_SUCCESS, None, time.perf_counter())
    fail(checker.RESOLVED_VS_NODE_TRUTH, "charged_not_paid: wallet w1 payout p1 expected 5 msat")
    fail(checker.RESOLVED_VS_NODE_TRUTH, "charged_not_paid: wallet w2 payout p2 expected 7 msat")
    fail(checker.RESOLVED_WITHIN_BOUND, "wallet w3 payout p3: not final within 5 s")
    counters.record_fault("timeout [spike]", 512.0)
    rows = {(r["type"], r["name"]): r for r in counters.table(None)}
    assert rows[("CHECK", "balance_after_success")]["count"] == 3
    assert rows[("CHECK", "balance_after_success")]["failures"] == 0
    truth = rows[("CHECK", "resolved_vs_node_truth")]
    assert (truth["count"], truth["failures"]) == (2, 2)
    assert truth["failures_by_kind"] == {"charged_not_paid": 2}
    assert "w2" in truth["last_failure"]  # the words, with ids, stay in the suite's table
    assert rows[("CHECK", "resolved_within_bound")]["failures_by_kind"] == {"none": 1}
    assert rows[("FAULT", "timeout [spike]")]["count"] == 1
    assert rows[("FAULT", "timeout [spike]")]["max_ms"] == 512.0
    # Locust's totals: untouched (no request, no failure); its Failures: one entry per kind
    assert stats.total.num_requests == 0 and stats.total.num_failures == 0
    assert not stats.entries
    errors = sorted((e.name, e.error, e.occurrences) for e in stats.errors.values())
    assert errors == [
        ("resolved_vs_node_truth", counters.failure_text("charged_not_paid"), 2),
        ("resolved_within_bound", counters.NO_KIND_TEXT, 1),
    ]


def test_failure_texts_are_stable_and_name_the_kind():
    assert counters.failure_text("charged_not_paid").startswith("charged_not_paid: ")
    both = counters.failure_text("charged_not_paid,not_conserved")
    assert both.startswith("charged_not_paid: ") and "; not_conserved: " in both
    for kind in checker.KINDS:
        assert kind in counters.KIND_TEXT, kind
    # the kind comes from the exception, or from a message that starts with it
    assert checker.CheckFailed("paid_not_charged: wallet w payout p").kind == "paid_not_charged"
    assert checker.CheckFailed("retry answered HTTP 200", "idempotency_mismatch").kind == (
        "idempotency_mismatch"
    )
    assert checker.CheckFailed("shared: not final within 5 s").kind is None


def test_workers_counts_add_up_on_the_master_and_a_new_run_starts_from_zero(stats):
    run_id = counters.LOCAL.run_id
    worker = counters.Counters(run_id)
    worker.record("CHECK", "drain", failed=True, kind="overdrawn", response_time_ms=10.0)
    worker.record("CHECK", "drain", response_time_ms=30.0)
    other = counters.Counters(run_id)
    other.record("CHECK", "drain", failed=True, kind="overdrawn", response_time_ms=20.0)
    counters.on_worker("w1", worker.to_dict())
    counters.on_worker("w2", other.to_dict())
    counters.on_worker("w1", worker.to_dict())  # the latest of a worker, not added twice
    counters.on_worker("w3", counters.Counters("an earlier run").to_dict() | {"rows": [{}]})
    checker.fire_check(None, checker.RECONCILIATION, None, time.perf_counter())  # the master's
    rows = {(r["type"], r["name"]): r for r in counters.table(None)}
    drain = rows[("CHECK", "drain")]
    assert (drain["count"], drain["failures"], drain["failures_by_kind"]) == (
        3,
        2,
        {"overdrawn": 2},
    )
    assert (drain["avg_ms"], drain["max_ms"]) == (20.0, 30.0)
    assert rows[("CHECK", "reconciliation")]["count"] == 1
    counters.start_run(run_id)  # the same run again (a local runner hears it twice): kept
    assert len(counters.table(None)) == 2
    counters.start_run("the next run")
    assert counters.table(None) == []


def test_the_table_as_csv(stats, tmp_path):
    fail(checker.DRAIN, "overdrawn: wallet w", None)
    counters.record_fault("timeout [normal]", 500.0)
    path = counters.csv_path(str(tmp_path / "ci"))
    assert path.name == "ci_consistency_checks.csv"
    counters.write_csv(path, counters.table(None))
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == counters.CSV_COLUMNS
    assert [
        (r["Type"], r["Name"], r["Count"], r["Failures"], r["Failures by kind"]) for r in rows
    ] == [
        ("CHECK", "drain", "1", "1", "overdrawn=1"),
        ("FAULT", "timeout [normal]", "1", "0", ""),
    ]


def test_bounded_rows(stats):
    for i in range(counters.MAX_ROWS + 5):
        counters.record_fault(f"timeout [{i}]")
    assert len(counters.table(None)) == counters.MAX_ROWS
    assert counters.LOCAL.overflow == 5
