"""The wallet's word and the books, judged again offline: `lnchaos check` on the history of each
word mutant's run gives the live run's exit code and counts per kind (the fold judges the
recorded `word`, `wallet_view` and the reconciliation's `books` from their inputs)."""

from __future__ import annotations

import pytest
from mutant_runs import RunResult

from lnchaos.checker.offline import judge_dir

WORD_MUTANTS = (
    "failure_answered_succeeded",
    "success_read_as_failed_after_pending",
    "fee_reported_as_fee_limit",
    "view_shows_reserved_as_spendable",
    "fee_booked_as_paid_out",
)
SUITE_TIMEOUT_S = 900


@pytest.mark.mutants
@pytest.mark.timeout(SUITE_TIMEOUT_S)
@pytest.mark.parametrize("name", WORD_MUTANTS)
def test_lnchaos_check_judges_the_word_as_the_live_run(
    name: str, runs: dict[str, RunResult]
) -> None:
    result = runs[name]
    assert result.broken is None and result.workdir is not None, result.broken
    offline = judge_dir(result.workdir / "report" / "history")
    live = result.report
    assert offline["exit_code"] == live["exit_code"] == 3
    counts = {kind: entry["count"] for kind, entry in offline["inconsistencies"].items()}
    assert counts == {kind: entry["count"] for kind, entry in live["inconsistencies"].items()}
