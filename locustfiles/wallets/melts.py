"""Proofs (accounting "proofs"): a Cashu mint's melts judged by the node's truth.

A melt pays a Lightning invoice in exchange for ecash proofs. Every melt the payers sent is kept
in `MELTS` (this process: a node-judged run is one process): its quote, the invoice's hash, the
amount and fee reserve, the proofs given (by their Y, NUT-07) and the change handed back. A melt
is judged from the node's truth of its hash, the proofs' state at the mint (UNSPENT, PENDING,
SPENT) and the quote's state (UNPAID, PENDING, PAID):
- the node paid: the proofs must be spent and the quote PAID; else `paid_not_charged` (proofs
  left spendable) or `charged_not_paid` (the quote tells the wallet it did not pay). What the mint
  kept (inputs - change) must be the amount + the node's fee rounded up to a sat: more is
  `charged_not_paid` (change withheld), less than the amount `paid_not_charged` (judged of a melt
  answered PAID: the change of any other answer waits at the mint for NUT-09's restore);
- the node did not pay (failed, or never got it): the proofs must be spendable again and the
  quote not PAID; else `charged_not_paid` (proofs burned for nothing, or a quote PAID that was
  not: Nutshell #614);
- PENDING at the mint or in flight at the node at the end: `unresolved`.
The witness names the quote, the hash, the proofs' Ys and states, and what the node says.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.pool

from locustfiles import checker
from locustfiles.admin_client import REQUEST_TIMEOUT_S, TargetAdmin, TargetError

MELTS_MAX = 20_000
JUDGE_CONCURRENCY = 16
FINAL = ("succeeded", "failed", "unknown")


@dataclass
class MeltRecord:
    quote_id: str
    payment_hash: str
    amount_sat: int
    fee_reserve_sat: int
    inputs_sat: int
    ys: list[str]
    sent_ms: int
    answer: str = ""  # the mint's answer: succeeded / failed / pending / error
    change_sat: int = 0  # the change the answer handed back
    extra: dict[str, Any] = field(default_factory=dict)


class MeltLedger:
    """Every melt sent, bounded; thread- and greenlet-safe."""

    def __init__(self) -> None:
        self.melts: dict[str, MeltRecord] = {}
        self.overflow = 0
        self._lock = threading.Lock()

    def melting(self, record: MeltRecord) -> None:
        """Before the melt is sent: a melt whose answer never comes is judged too."""
        with self._lock:
            if len(self.melts) >= MELTS_MAX:
                self.overflow += 1
                return
            self.melts[record.quote_id] = record

    def answered(self, quote_id: str, outcome: str, change_sat: int) -> None:
        with self._lock:
            record = self.melts.get(quote_id)
            if record is not None:
                record.answer, record.change_sat = outcome, change_sat

    def get(self, quote_id: str) -> MeltRecord | None:
        with self._lock:
            return self.melts.get(quote_id)

    def since(self, since_ms: int | None) -> list[MeltRecord]:
        with self._lock:
            return [m for m in self.melts.values() if since_ms is None or m.sent_ms >= since_ms]


MELTS = MeltLedger()


def judge_melt(
    record: MeltRecord,
    proof_states: list[str] | None,
    quote_state: str | None,
    truth: dict[str, Any],
) -> dict[str, Any] | None:
    """One melt's finding (its `kind` and witness), None when it kept the rule; pure."""
    node_status = str(truth.get("status") or "not read")
    fee_msat = int(truth.get("fee_msat") or 0)
    kept_sat = record.inputs_sat - record.change_sat
    witness = {
        "quote_id": record.quote_id,
        "wallet_id": record.quote_id,  # the verdict's tables name a wallet
        "payout_id": record.quote_id,
        "payment_hash": record.payment_hash,
        "amount_sat": record.amount_sat,
        "fee_reserve_sat": record.fee_reserve_sat,
        "inputs_sat": record.inputs_sat,
        "change_sat": record.change_sat,
        "answer": record.answer,
        "quote_state": quote_state,
        "proofs": dict(zip(record.ys, proof_states or [], strict=False)),
        "node_status": node_status,
        "node_fee_msat": fee_msat,
    }

    def finding(kind: str, diff_msat: int, why: str) -> dict[str, Any]:
        return {**witness, "kind": kind, "diff_msat": diff_msat, "why": why}

    states = set(proof_states or [])
    if (
        node_status not in FINAL
        or proof_states is None
        or quote_state in (None, "PENDING")
        or "PENDING" in states
    ):
        return finding(checker.UNRESOLVED, 0, "not final at the mint or the node")
    if node_status == "succeeded":
        if states != {"SPENT"}:
            return finding(checker.PAID_NOT_CHARGED, record.inputs_sat * 1000, "proofs spendable")
        if quote_state != "PAID":
            return finding(checker.CHARGED_NOT_PAID, -kept_sat * 1000, "quote says not paid")
        if record.answer != "succeeded":
            # the change came with no answer the payer read (a failed or pending answer, or
            # none): the mint keeps it for NUT-09's restore, which this payer does not ask
            return None
        cost_sat = record.amount_sat + -(-fee_msat // 1000)  # the node's fee, up to a sat
        if kept_sat > cost_sat:
            return finding(checker.CHARGED_NOT_PAID, (cost_sat - kept_sat) * 1000, "change kept")
        if kept_sat < record.amount_sat:
            return finding(checker.PAID_NOT_CHARGED, (cost_sat - kept_sat) * 1000, "overpaid")
        return None
    if states != {"UNSPENT"}:
        return finding(checker.CHARGED_NOT_PAID, -record.inputs_sat * 1000, "proofs burned")
    if quote_state == "PAID":
        return finding(checker.CHARGED_NOT_PAID, -record.inputs_sat * 1000, "quote says paid")
    return None


def describe(found: dict[str, Any]) -> str:
    return (
        f"{found['kind']}: melt quote {found['quote_id']} ({found['why']}): hash "
        f"{found['payment_hash'][:12]}.. node {found['node_status']}, "
        f"quote {found['quote_state']}, "
        f"proofs {sorted(set(found['proofs'].values()))}, inputs {found['inputs_sat']} sat, "
        f"change {found['change_sat']} sat"
    )


class MintReader:
    """The judge's own reads of a mint (urllib, never the payers' adapter): proofs' states
    (NUT-07) and a melt quote's state (NUT-05)."""

    def __init__(self, mint_url: str) -> None:
        self.mint = TargetAdmin(mint_url, None)

    def proof_states(self, ys: list[str]) -> list[str]:
        body = self.mint._call("POST", "/v1/checkstate", {"Ys": ys})
        states = body.get("states") if isinstance(body, dict) else None
        if not isinstance(states, list) or len(states) != len(ys):
            raise TargetError(f"/v1/checkstate: not one state per Y: {body!r}"[:300])
        by_y = {s.get("Y"): str(s.get("state")) for s in states if isinstance(s, dict)}
        return [by_y.get(y, "not read") for y in ys]

    def quote_state(self, quote_id: str) -> str:
        body = self.mint._call("GET", f"/v1/melt/quote/bolt11/{quote_id}")
        if not isinstance(body, dict) or not isinstance(body.get("state"), str):
            raise TargetError(f"melt quote {quote_id}: no state")
        return str(body["state"])


class MeltJudge(TargetAdmin):
    """The master's calls for a run against a Cashu mint, in TargetAdmin's shape: the node's
    health, faults and truth at `node_url`; `reconciliation` judges every melt in MELTS."""

    def __init__(self, node_url: str, node_admin_token: str, mint_url: str) -> None:
        super().__init__(node_url, node_admin_token)
        self.reader = MintReader(mint_url)

    def get_fix(self) -> str:
        return "n/a"

    def set_fix(self, mode: str) -> str:
        return "n/a"  # the mint has its own melt flow

    def clock_ms(self) -> int:
        return int(time.time() * 1000)

    def reconciliation(
        self, *, since_ms: int | None = None, stuck_after_s: float | None = None
    ) -> dict[str, Any]:
        """Every melt of this run, judged: the mint's states first, then the node (a state the
        mint took from the node is never newer than the truth read after it)."""
        records = MELTS.since(since_ms)
        reads: dict[str, tuple[list[str] | None, str | None]] = {}
        truths: dict[str, dict[str, Any]] = {}

        def read_mint(record: MeltRecord) -> None:
            try:
                reads[record.quote_id] = (
                    self.reader.proof_states(record.ys),
                    self.reader.quote_state(record.quote_id),
                )
            except TargetError:
                reads[record.quote_id] = (None, None)

        def read_node(record: MeltRecord) -> None:
            try:
                truths[record.quote_id] = self.node_payment(record.payment_hash)
            except TargetError:
                truths[record.quote_id] = {}

        bound_s = REQUEST_TIMEOUT_S * (2 + len(records) // JUDGE_CONCURRENCY)
        for step in (read_mint, read_node):
            pool = gevent.pool.Pool(JUDGE_CONCURRENCY)
            for record in records:
                pool.spawn(step, record)
            pool.join(timeout=bound_s)
        kinds: dict[str, dict[str, Any]] = {
            kind: {"count": 0, "amount_msat": 0, "examples": []}
            for kind in checker.RECONCILED_KINDS
        }
        pending = 0
        for record in records:
            states, quote_state = reads.get(record.quote_id, (None, None))
            found = judge_melt(record, states, quote_state, truths.get(record.quote_id, {}))
            if found is None:
                continue
            pending += found["kind"] == checker.UNRESOLVED
            entry = kinds[found["kind"]]
            entry["count"] += 1
            entry["amount_msat"] += abs(int(found["diff_msat"]))
            if len(entry["examples"]) < checker.MAX_EXAMPLES * 10:
                entry["examples"].append(found)
        if MELTS.overflow:
            kinds[checker.UNRESOLVED]["count"] += MELTS.overflow
        return {
            "now_ms": self.clock_ms(),
            "wallet_api": "proofs",
            "melts": len(records),
            "payments": len(records),
            **kinds,
            "pending": pending,
            "node": {"in_flight": pending},
            "timeouts": {"resolved": 0},
            "conserved": None,
        }
