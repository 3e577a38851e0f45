"""What the Locust side records in the run's history (lnchaos/checker/history.py, schema in
docs/history.md): one short function per event, each a record handed to this process's
Recorder (telemetry.LOCAL.history). A record that counts (a payout, a retry, a check) is folded
into the process's tally by the recorder: the live checks and `lnchaos check` count through the
same fold. Each function costs one dict and one json.dumps; the file is written off the users'
path (telemetry: the master's collector, once a second).
"""

from __future__ import annotations

import time
from typing import Any

from lnchaos.checker import history, rounds
from locustfiles.telemetry import LOCAL

# The operations and reads are the checks' evidence: with --checks off (the bench's unchecked
# side) only what counts is recorded, so the bench's cost of the checks includes the history's.
DETAIL = {"on": True}


def configure(checks_on: bool) -> None:
    DETAIL["on"] = checks_on


def payout(phase: str, outcome: str, latency_ms: float, *, payer: bool = False) -> None:
    """A payout of the run, counted by its first answer (Tally.record_payout)."""
    LOCAL.history.emit(
        {
            "type": history.PAYOUT,
            "phase": phase,
            "outcome": outcome,
            "latency_ms": round(latency_ms, 1),
            "payer": payer,
        }
    )


def retry() -> None:
    LOCAL.history.emit({"type": history.RETRY})


def left_unresolved(**fields: Any) -> None:
    """A payout (or a traffic round) not final within the users' bound: left to the audit."""
    LOCAL.history.emit({"type": history.LEFT_UNRESOLVED, **fields})


def round_check(
    name: str, facts: dict[str, Any], node_timeouts: int = 0, **ids: Any
) -> tuple[str | None, dict[str, Any] | None]:
    """A traffic round, judged by its class's rule (lnchaos/checker/rounds.py) from `facts`,
    what it records: `lnchaos check` judges the same facts again with the same rule. Its kind
    and example back (example None: passed), and recorded too, for readers that judge by the
    recorded kind. ids: wallet, hash, phase, and what the judge's coverage reads of the round (a
    drain's `node_spans`); node_timeouts: of the round's payments, those the node says it timed
    out (the node's word: what "nothing proven about timeouts" counts)."""
    record: dict[str, Any] = {
        "type": history.CHECK,
        "t": round(time.time(), 3),  # before judging: the example's t_unix is the record's
        "name": name,
        **ids,
        rounds.FACTS: facts,
    }
    kind, example = rounds.judge(record)
    record.update(kind=kind, example=example)
    if node_timeouts:
        record["node_timeouts"] = node_timeouts
    LOCAL.history.emit(record)
    return kind, example


def invoke(op: str, **fields: Any) -> None:
    """An operation sent (Jepsen's invocation): what, for which wallet and payment."""
    if not DETAIL["on"]:
        return
    LOCAL.history.note({"type": history.INVOKE, "op": op, **fields})


def complete(op: str, result: str, **fields: Any) -> None:
    """An operation's answer (Jepsen's completion): ok, fail, info, refused or error, with what
    the wallet claimed (HTTP status, status, fee, balance)."""
    if not DETAIL["on"]:
        return
    LOCAL.history.note({"type": history.COMPLETE, "op": op, "result": result, **fields})


def read(kind_of_read: str, **fields: Any) -> None:
    """A read: of a wallet (its balance and reserve), of a payout, of the node's truth."""
    if not DETAIL["on"]:
        return
    LOCAL.history.note({"type": kind_of_read, **fields})


# ---- a wallet API's operations and reads, whatever the adapter (one shape for each) -------------


def payout_sent(
    wallet_id: str, payment_hash: str, amount_msat: int, key: str, phase: str
) -> dict[str, Any]:
    """A payout request's invocation; returns the fields its completion repeats."""
    fields = {"wallet": wallet_id, "hash": payment_hash, "phase": phase}
    invoke("payout", amount_msat=amount_msat, key=key, **fields)
    return fields


def payout_answered(result: Any, fields: dict[str, Any]) -> None:
    """A payout's completion: what the wallet claimed of it (a PayoutResult), with the balance
    its answer or a header said, when it said one."""
    complete(
        "payout",
        result.kind,
        http=result.http_status,
        status=result.payout_status,
        payout_id=result.payout_id,
        fee_msat=result.fee_msat,
        balance_msat=(result.body or {}).get("balance_msat"),
        balance_now_msat=result.balance_now_msat,
        latency_ms=round(result.latency_ms, 1),
        **fields,
    )


def wallet_read(wallet_id: str, view: dict[str, Any]) -> None:
    read(
        history.WALLET_READ,
        wallet=wallet_id,
        balance_msat=view.get("balance_msat"),
        reserved_msat=view.get("reserved_msat"),
    )


def payout_read(wallet_id: str, payout_id: str, payout: dict[str, Any]) -> None:
    read(
        history.PAYOUT_READ,
        wallet=wallet_id,
        payout_id=payout_id,
        status=payout.get("status"),
        fee_msat=payout.get("fee_msat"),
    )


def node_read(payment_hash: str, node: dict[str, Any]) -> None:
    """A read of the node's truth of one payment: its status and the fee it charged."""
    read(
        history.NODE_READ,
        hash=payment_hash,
        status=node.get("status"),
        fee_msat=node.get("fee_msat"),
    )
