"""The master's final audit of the payouts no payer could judge: its findings by kind, its
unresolved payouts and its counts (`Audit`). How one payout is judged is lnchaos/checker/rules.py
(`audit_result`, `audit_example`); the audit's requests are the controller's (Locust's side).

## The final audit: the judge never leans on the wallet's own reconciliation
A payer that cannot judge a payout abandons its wallet: the payout was not final within the
users' bound (--resolve-timeout-s), the payout request failed (connection error: outcome
unknown), the wallet could not be read, or the run stopped the payer mid-payout. It records an
audit entry (Tally.record_audit: wallet, api key, the exact balance expected before the payout,
payout id, payment hash, the invoice's amount, phase, retried, first outcome, why), at most
AUDIT_MAX per process; past it the entry is counted as overflow. The entries cross to the master
in the tally. After the final wait the master audits each one (at most AUDIT_MAX_TOTAL, within a
time bound; controller.py) from the node's truth of its payment hash (GET /node/payments/{hash})
and the wallet's view (GET /api/wallets/{id}; GET /api/payouts/{id} when its id is known), by
`audit_kind`: the node paid -> expected - (amount + the node's fee); failed or never seen ->
unchanged; not final at the node, money still reserved or the payout pending -> `unresolved`; a
wrong balance is classified as the checks do (`classify_balance`). Each audited payout is a
`final_audit` check event; its findings count like the checks' (detected_by.audit), an
unresolved payout once with the reconciliation's (union by payout id or hash), and an entry
that could not be kept or audited (overflow) fails the run (exit 3).
"""

from __future__ import annotations

from typing import Any

from lnchaos.checker import coverage
from lnchaos.checker.kinds import REPORTED_STATUS, TIMEOUT_OUTCOMES, UNRESOLVED
from lnchaos.checker.tally import _add_to_kind, _empty_kind
from lnchaos.checker.word import status_kind

# an audit entry of a payout its payer judged already (payout_check.END_OF_USE): its wallet is
# what the audit reads again, its word was judged by the check
AUDITED_AGAIN = "wallet_end_of_use"


class Audit:
    """The master's final audit of the payouts the payers could not judge (see the docstring):
    the findings by kind (the Tally's shape), the unresolved payouts, the counts."""

    def __init__(self, entries: int = 0, overflow: int = 0) -> None:
        self.entries = entries
        self.overflow = overflow  # not kept by a process, or not audited within the bounds
        self.judged = 0
        self.unresolved = 0
        self.inconsistent = 0
        self.resolved_timeouts = 0
        self.node_timeouts = 0  # judged, answered while the node held it (rules.answered_in_flight)
        self.kinds: dict[str, dict[str, Any]] = {}
        # (payout_id, payment_hash) of each unresolved payout: merged with the reconciliation's
        self.unresolved_keys: list[tuple[str | None, str | None]] = []
        # the windows of the payouts only the audit judged (lnchaos/checker/coverage.py)
        self.coverage: dict[str, Any] = coverage.empty()

    def add(
        self,
        entry: dict[str, Any],
        kind: str | None,
        example: dict[str, Any],
        node: dict[str, Any] | None = None,
    ) -> None:
        coverage.observe_audit(self.coverage, entry, node)
        self._word(entry, example)
        if kind == UNRESOLVED:
            self.unresolved += 1
            self.unresolved_keys.append((entry.get("payout_id"), entry.get("payment_hash")))
        else:
            self.judged += 1
            if entry.get("outcome") in TIMEOUT_OUTCOMES:
                self.resolved_timeouts += 1
            self.node_timeouts += example.get("answered_in_flight") is True
        if kind is None:
            return
        if kind != UNRESOLVED:
            self.inconsistent += 1
        # an unresolved payout's money is not known yet: no amount, as in the reconciliation
        amount_msat = 0 if kind == UNRESOLVED else abs(int(example["diff_msat"]))
        _add_to_kind(self.kinds.setdefault(kind, _empty_kind()), amount_msat, example)

    def _word(self, entry: dict[str, Any], example: dict[str, Any]) -> None:
        """The status the wallet's payout read gave an audited payout, against the node's truth
        (lnchaos/checker/word.py), unless its payer's check judged it already (its wallet's end
        of use is what is audited then)."""
        if entry.get("reason") == AUDITED_AGAIN:
            return
        node = {"status": example.get("node_status")}
        kind = status_kind(status=example.get("payout_status"), node=node)
        if kind is not None:
            found = {**example, "check": REPORTED_STATUS, "kind": kind, "diff_msat": 0}
            _add_to_kind(self.kinds.setdefault(kind, _empty_kind()), 0, found)

    def not_audited(self, n: int = 1) -> None:
        self.overflow += n

    def summary(self) -> dict[str, int]:
        return {
            "entries": self.entries,
            "judged": self.judged,
            "unresolved": self.unresolved,
            "inconsistent": self.inconsistent,
            "overflow": self.overflow,
        }
