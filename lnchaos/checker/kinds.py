"""The judge's vocabulary, each name written once: check names, inconsistency kinds, outcomes,
exit codes, the bounds of the audit. See lnchaos/checker/__init__.py for what each means."""

from __future__ import annotations

CHECK = "CHECK"  # the suite's own table (locustfiles/counters.py): a check, never a request
FAULT = "FAULT"  # ... and an injected fault seen by a user

BALANCE_AFTER_SUCCESS = "balance_after_success"
BALANCE_AFTER_FAILURE = "balance_after_failure"
RESOLVED_VS_NODE_TRUTH = "resolved_vs_node_truth"
IDEMPOTENT_RETRY = "idempotent_retry"
SHARED_INVOICE = "shared_invoice"
DRAIN = "drain"
RETRY_ROUND = "retry"
EDGE_ROUND = "edge"
RESOLVED_WITHIN_BOUND = "resolved_within_bound"
RECONCILIATION = "reconciliation"
FINAL_AUDIT = "final_audit"
BALANCE_CHECKS = (BALANCE_AFTER_SUCCESS, BALANCE_AFTER_FAILURE, RESOLVED_VS_NODE_TRUTH)
# the traffic classes' checks (locustfiles/traffic.py): each judges a whole round (two payers of
# one invoice, a drain, a retry sequence, a bad input) from the node's truth and the balances
TRAFFIC_ROUND_CHECKS = (SHARED_INVOICE, DRAIN, RETRY_ROUND, EDGE_ROUND)

CHARGED_NOT_PAID = "charged_not_paid"
PAID_NOT_CHARGED = "paid_not_charged"
DOUBLE_CHARGE = "double_charge"
BALANCE_MISMATCH = "balance_mismatch"
OVERDRAWN = "overdrawn"
IDEMPOTENCY_MISMATCH = "idempotency_mismatch"
UNRESOLVED = "unresolved"
NOT_CONSERVED = "not_conserved"
# one single-use authorisation (a withdraw link) paid more than once (locustfiles/wallets/links.py)
DOUBLE_PAYOUT = "double_payout"
KINDS = (
    CHARGED_NOT_PAID,
    PAID_NOT_CHARGED,
    DOUBLE_CHARGE,
    BALANCE_MISMATCH,
    OVERDRAWN,
    IDEMPOTENCY_MISMATCH,
    UNRESOLVED,
    NOT_CONSERVED,
    DOUBLE_PAYOUT,
)
RECONCILED_KINDS = (CHARGED_NOT_PAID, PAID_NOT_CHARGED, UNRESOLVED, DOUBLE_PAYOUT)
BEFORE_RUN_KINDS = (CHARGED_NOT_PAID, PAID_NOT_CHARGED, UNRESOLVED)

OUTCOMES = ("succeeded", "failed", "timeout", "pending", "rejected", "error")
TIMEOUT_OUTCOMES = ("timeout", "pending")
# an operation's completion in the history, Jepsen's words: ok, fail, info (unknown), refused
# (moved nothing, as its caller expected), error
RESULT_OF_OUTCOME = {
    "succeeded": "ok",
    "failed": "fail",
    "timeout": "info",
    "pending": "info",
    "rejected": "refused",
    "error": "error",
}

EXIT_PASS = 0
EXIT_LOCUST_ERROR = 1
EXIT_LOCUST_GREENLET = 2
EXIT_INCONSISTENT = 3
EXIT_NOTHING_VERIFIED = 4
EXIT_TARGET_FAILED = 5

MAX_EXAMPLES = 3

# A run whose payers' payouts should have paid at least this many times (by the faults in force)
# and paid none proves nothing about successful payouts: a wallet that refuses or fails every
# payment moves no money wrongly, but its pass would vouch for a path it never took. At ten
# expected, a wallet that pays would have paid none with a chance of e**-10 (Poisson).
SUCCESSES_EXPECTED_MIN = 10.0

# The final audit (see the docstring): entries kept per process, and what the master audits.
AUDIT_MAX = 2000
AUDIT_MAX_TOTAL = 20_000
AUDIT = "audit"
# Why the payer could not judge a payout itself.
ABANDONED_NOT_FINAL = "not_final_within_bound"
ABANDONED_ERROR = "payout_error"
ABANDONED_NO_WALLET_VIEW = "no_wallet_view"
ABANDONED_STOPPED = "run_stopped"
ABANDONED_ROUND = "round_outcome_unknown"  # a traffic round's wallet (traffic.py)
FINAL_NODE = ("succeeded", "failed", "unknown")
FINAL_PAYOUT = ("succeeded", "failed")

# One stable text per kind: what Locust's Failures tab shows (locustfiles/counters.py).
KIND_TEXT = {
    "charged_not_paid": "the wallet was charged more than the node paid",
    "paid_not_charged": "the node paid more than the wallet was charged",
    "double_charge": "charged twice for one payment",
    "overdrawn": "a balance was seen below zero",
    "balance_mismatch": "a balance higher than it should be for a payment not made",
    "idempotency_mismatch": "a retry with the same Idempotency-Key got another answer",
    "unresolved": "a payout not final at the end of the run",
    "not_conserved": "deposits != balances + reserved + paid out + fees",
    "double_payout": "one single-use authorisation (a withdraw link) paid more than once",
    "no_reconciliation": "the target's reconciliation could not be read",
}
NO_RECONCILIATION = "no_reconciliation"

# The wallet's word against the node's truth (lnchaos/checker/word.py): what a wallet told its
# user, and its books, judged by what the node did.
REPORTED_STATUS = "reported_status"  # a final payout's status: succeeded exactly when paid
REPORTED_FEE = "reported_fee"  # a final payout's fee: the node's fee when paid, else 0
WALLET_VIEW = "wallet_view"  # balance and reserved read while a payout of the wallet is pending
BOOKS = "books"  # the ledger's paid out and fees for the run against the node's sent and fees
WORD_CHECKS = (REPORTED_STATUS, REPORTED_FEE, WALLET_VIEW)
STATUS_MISMATCH = "status_mismatch"
FEE_MISMATCH = "fee_mismatch"
VIEW_MISMATCH = "view_mismatch"
BOOKS_MISMATCH = "books_mismatch"
KINDS += (STATUS_MISMATCH, FEE_MISMATCH, VIEW_MISMATCH, BOOKS_MISMATCH)
KIND_TEXT.update(
    {
        STATUS_MISMATCH: "a payout reported succeeded the node did not pay, or failed it paid",
        FEE_MISMATCH: "a payout reported a fee other than the one the node charged",
        VIEW_MISMATCH: "money of a pending payout shown as spendable, or held past the reserve",
        BOOKS_MISMATCH: "the ledger's paid out or fees for the run differ from the node's",
    }
)
# Strict reading (lnchaos/checker/answers.py): a field an API promises, missing or malformed, is
# a finding, never a default; the check that reads answers against their promised shapes
MALFORMED_ANSWER = "malformed_answer"
ANSWER_SHAPE = "answer_shape"
KINDS = (*KINDS, MALFORMED_ANSWER)
KIND_TEXT[MALFORMED_ANSWER] = "an answer lacks a field its API promises, or has it malformed"

# A payout judged final that the wallet answered while the node still held its payment (the
# node's held_ms against the answer's latency: rules.answered_in_flight): "nothing proven about
# timeouts" (exit 4) is decided by these, never by the timeouts the wallet chose to answer
NODE_TIMEOUT_JUDGED = "node_timeout_judged"

# A payout the wallet refused (409) that still reached the node through that request
# (lnchaos/checker/refusals.py): a refusal must have moved nothing
REFUSED_BUT_SENT = "refused_but_sent"
KINDS = (*KINDS, REFUSED_BUT_SENT)
KIND_TEXT[REFUSED_BUT_SENT] = "a payout refused (409) still reached the node"

# A bad input (the edge class's: an expired, foreign or over-limit invoice) answered other than
# with its clear 4xx, or whose refusal moved money or reached the node (locustfiles/traffic.py;
# the final audit's judgement of an edge round of unknown outcome, rules.bad_input_audit_kind)
ACCEPTED_BAD_INPUT = "accepted_bad_input"
KINDS = (*KINDS, ACCEPTED_BAD_INPUT)
KIND_TEXT[ACCEPTED_BAD_INPUT] = "a bad input was not refused, or its refusal moved money"
