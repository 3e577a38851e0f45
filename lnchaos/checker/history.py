"""The recorded history of a run: JSON Lines, one file per process (schema: docs/history.md).

A record is a JSON object with `type` and `t` (unix seconds). The records that count (a payout's
first answer, a check, a retry, a payout left to the audit, an audit entry) are folded into the
process's Tally by `apply`, and the live run's Tally *is* that fold: a process records through
`Recorder.emit`, which applies the record and keeps its line. `lnchaos check` folds the recorded
lines with the same `apply`, so the live tally and the offline one are the same function of the
same records. A balance check is judged again from its recorded inputs (`in`: the balance before,
the invoice's amount, the node's truth, the balance seen), not taken from its recorded kind; a
traffic round from its recorded `facts`, by its class's rule in rounds.py.

The history is bounded: MAX_BYTES_PER_PROCESS of lines per process. Past it the records still
count live, their lines are dropped, and one `truncated` record says how many: such a history
cannot be judged again (`lnchaos check` refuses it with exit code 4).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson  # the target's JSON already: several times faster than json on the users' path

from lnchaos.checker import answers, coverage, rounds
from lnchaos.checker.kinds import ANSWER_SHAPE, NODE_TIMEOUT_JUDGED, RESOLVED_WITHIN_BOUND
from lnchaos.checker.rules import (
    answered_in_flight,
    balance_kind,
    expected_balance_msat,
    payment_cost,
)
from lnchaos.checker.tally import Tally
from lnchaos.checker.word import (
    payout_word_kinds,
    view_example,
    view_record_kind,
    word_example,
    word_node,
)

SCHEMA = "lnchaos-history"
VERSION = 1
HISTORY_DIR = "history"
SUFFIX = ".jsonl"
# 256 MiB of lines per process: about 190,000 payouts at the 1.4 kB a checked payout wrote in
# `lnchaos bench` (which reports the bytes per payout it measures); a bound, not a plan.
MAX_BYTES_PER_PROCESS = 256 * 1024 * 1024
# lines a process keeps in memory before they go to the file (or to the master)
FLUSH_LINES = 5000

# the record types (docs/history.md)
HEADER = "header"
INVOKE = "invoke"
COMPLETE = "complete"
PAYOUT = "payout"
RETRY = "retry"
WALLET_READ = "wallet_read"
PAYOUT_READ = "payout_read"
NODE_READ = "node_read"
CHECK = "check"
LEFT_UNRESOLVED = "left_unresolved"
AUDIT_ENTRY = "audit_entry"
AUDIT = "audit"
AUDIT_CLOSE = "audit_close"
RECONCILIATION = "reconciliation"
PHASE = "phase"
CONTROL = "control"
FAULT = "fault"
CRASH = "crash"
TRUNCATED = "truncated"
END = "end"
SECRET_KEY = "api_key"  # never written: a history can be shared
_OPTIONS = orjson.OPT_NON_STR_KEYS  # the end record's maps may have non-str keys


def apply(tally: Tally, record: dict[str, Any]) -> str | None:
    """Fold one record into `tally`: the one place a record changes what a run counted.
    Returns a check's inconsistency kind (None: passed, or not a check)."""
    kind_of_record = record.get("type")
    if kind_of_record == PAYOUT:
        tally.record_payout(
            record["phase"],
            record["outcome"],
            float(record.get("latency_ms") or 0.0),
            payer=bool(record.get("payer")),
        )
    elif kind_of_record == CHECK:
        return _apply_check(tally, record)
    elif kind_of_record == RETRY:
        tally.retries += 1
    elif kind_of_record == LEFT_UNRESOLVED:
        tally.left_to_reconciliation += 1
        tally.record_check(RESOLVED_WITHIN_BOUND, passed=False)
    elif kind_of_record == AUDIT_ENTRY:
        tally.record_audit(record["entry"])
    return None


def _apply_check(tally: Tally, record: dict[str, Any]) -> str | None:
    """A check: a balance check is judged from its inputs (`in`), a traffic round from its
    facts, any other check's kind is the one it recorded. `counted: false`: a finding shown but
    counted under another check (the double charge a retry check names is counted once, by its
    balance check)."""
    if rounds.judgeable(record):
        return _apply_round(tally, record)
    if "view" in record:
        return _apply_view(tally, record)
    if record.get("name") == ANSWER_SHAPE:
        return _apply_answer_shape(tally, record)
    inputs = record.get("in")
    if "word" in record:
        _apply_word(tally, record)
        if inputs is None:
            return None  # a word recorded alone (a traffic class's payout): nothing else
    kind = balance_kind(**inputs) if inputs is not None else record.get("kind")
    # the windows this payout (or round) reached: from its recorded node truth, not its verdict
    if inputs is not None:
        coverage.observe_check(tally.coverage, record)
    elif "node_spans" in record:
        coverage.observe_round(tally.coverage, record)
    tally.record_check(record["name"], passed=kind is None and not record.get("failed"))
    _count_node_timeouts(tally, record)
    if kind is None or not record.get("counted", True):
        return kind
    example = check_example(record, kind) if inputs is not None else record.get("example")
    if example is not None:
        tally.record_inconsistency(kind, int(example.get("diff_msat") or 0), example)
    return kind


def _apply_round(tally: Tally, record: dict[str, Any]) -> str | None:
    """A traffic round judged from its facts by its class's rule (rounds.judge), never from the
    kind it recorded: a rule changed since re-judges it."""
    kind, example = rounds.judge(record)
    coverage.observe_round(tally.coverage, record)  # a drain's node spans (none: nothing)
    tally.record_check(record["name"], passed=kind is None)
    _count_node_timeouts(tally, record)
    if example is not None and record.get("counted", True):
        tally.record_inconsistency(str(kind), int(example["diff_msat"]), example)
    return kind


def _apply_word(tally: Tally, record: dict[str, Any]) -> None:
    """What the wallet told its user of a final payout (`word`: its status and fee, as its
    answer or its payout read said), judged against the node's truth in the same record (`in`'s,
    or its own `node`), by lnchaos/checker/word.py; counted under the word's own checks."""
    for check, kind in payout_word_kinds(record["word"], word_node(record)).items():
        tally.record_check(check, passed=kind is None)
        if kind is not None:
            tally.record_inconsistency(kind, 0, word_example(record, check, kind))


def _apply_view(tally: Tally, record: dict[str, Any]) -> str | None:
    """A wallet read while payouts of it were pending, judged from its inputs (`view`)."""
    kind = view_record_kind(record)
    tally.record_check(record["name"], passed=kind is None)
    if kind is not None:
        tally.record_inconsistency(kind, 0, view_example(record, kind))
    return kind


def _count_node_timeouts(tally: Tally, record: dict[str, Any]) -> None:
    """Payouts of a judged check that the wallet answered while the node still held their
    payment: a balance check's own (the node's `held_ms` against the wallet's `answered_ms`), a
    traffic round's count (`node_timeouts`). The timeouts the run reached, by the node's word
    and the suite's clock, whatever the wallet answered (the verdict's exit 4 counts these)."""
    node = (record.get("in") or {}).get("node") or {}
    reached = int(answered_in_flight(node, record.get("answered_ms")))
    reached += int(record.get("node_timeouts") or 0)
    if reached:
        tally.checks.setdefault(NODE_TIMEOUT_JUDGED, [0, 0])[0] += reached


def _apply_answer_shape(tally: Tally, record: dict[str, Any]) -> str | None:
    """An answer read against its promised shape: judged again from the answer it recorded
    (answers.judge_record), never from a kind it carries."""
    kind, example = answers.judge_record(record)
    tally.record_check(ANSWER_SHAPE, passed=kind is None)
    if kind is not None and example is not None:
        tally.record_inconsistency(kind, 0, example)
    return kind


def check_example(record: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """A balance check's example (consistency.json's shape) from its record: the one place it is
    assembled, live and offline."""
    inputs = record["in"]
    amount_msat = int(inputs["amount_msat"])
    node = inputs.get("node") or {}
    paid, cost_msat = payment_cost(node, amount_msat)
    expected_msat = expected_balance_msat(**inputs)
    actual_msat = int(inputs["actual_msat"])
    return {
        "check": record["name"],
        "kind": kind,
        "wallet_id": record.get("wallet"),
        "payout_id": record.get("payout_id"),
        "payment_hash": record.get("hash"),
        "phase": record.get("phase"),
        "amount_msat": amount_msat,
        "fee_msat": cost_msat - amount_msat if paid else 0,
        "expected_msat": expected_msat,
        "actual_msat": actual_msat,
        "diff_msat": actual_msat - expected_msat,
        "reserved_msat": record.get("reserved_msat"),
        "payout_status": record.get("payout_status"),
        "node_status": node.get("status"),
        "t_unix": record.get("t"),
    }


def line(record: dict[str, Any]) -> str:
    """A record as one JSON line, its secret left out (only the audit's records carry one: its
    entry's, or each wallet's of a group entry)."""
    entry = record.get("entry")
    if entry is not None and (SECRET_KEY in entry or entry.get("wallets")):
        record = {**record, "entry": without_secret(entry)}
    if SECRET_KEY in record:
        record = {k: v for k, v in record.items() if k != SECRET_KEY}
    return orjson.dumps(record, default=str, option=_OPTIONS).decode()


def without_secret(entry: dict[str, Any]) -> dict[str, Any]:
    """An audit entry as a history may carry it: no API key, its own nor a group member's."""
    kept = {k: v for k, v in entry.items() if k != SECRET_KEY}
    if isinstance(kept.get("wallets"), list):
        kept["wallets"] = [
            {k: v for k, v in member.items() if k != SECRET_KEY} for member in kept["wallets"]
        ]
    return kept


def header(process: str, run_id: str, max_bytes: int = MAX_BYTES_PER_PROCESS) -> dict[str, Any]:
    return {
        "type": HEADER,
        "t": round(time.time(), 3),
        "schema": SCHEMA,
        "version": VERSION,
        "process": process,
        "run_id": run_id,
        "max_bytes": max_bytes,
    }


class Recorder:
    """One process's history as it grows: each record folded into `tally` at once and kept as a
    line until `drain` hands the lines on (to the file, or to the master). Bounded in bytes."""

    def __init__(
        self, tally: Tally, process: str = "local", max_bytes: int = MAX_BYTES_PER_PROCESS
    ) -> None:
        self.tally = tally
        self.max_bytes = max_bytes
        self.bytes = 0
        self.records = 0
        self.dropped = 0
        self.lines: list[str] = []
        self._emit_line(line(header(process, tally.run_id, max_bytes)))

    def emit(self, record: dict[str, Any]) -> str | None:
        """Record one event: folded into the tally, kept as a line. A check's kind back."""
        if "t" not in record:
            record["t"] = round(time.time(), 3)
        kind = apply(self.tally, record)
        self._emit_line(line(record))
        return kind

    def note(self, record: dict[str, Any]) -> None:
        """Record an event that counts nothing (an operation, a read, a phase): the users' most
        frequent records, so the shortest path (they carry no secret: no `line`)."""
        if "t" not in record:
            record["t"] = round(time.time(), 3)
        self._emit_line(orjson.dumps(record, default=str, option=_OPTIONS).decode())

    def _emit_line(self, text: str) -> None:
        size = len(text) + 1
        if self.bytes + size > self.max_bytes:
            self.dropped += 1
            return
        self.bytes += size
        self.records += 1
        self.lines.append(text)

    def restore(self, lines: list[str]) -> None:
        """Lines drained but not delivered (a message that failed): first in line again."""
        self.lines[:0] = lines

    def drain(self) -> list[str]:
        """The lines since the last drain; the `truncated` record once the bound dropped some."""
        lines, self.lines = self.lines, []
        if self.dropped:
            lines.append(
                line({"type": TRUNCATED, "t": round(time.time(), 3), "dropped": self.dropped})
            )
            self.dropped = 0
        return lines


class HistoryFile:
    """A history file written in chunks (append), bounded like a Recorder's lines."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES_PER_PROCESS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.bytes = 0
        self.dropped = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def append(self, lines: Iterable[str]) -> None:
        kept: list[str] = []
        for text in lines:
            size = len(text) + 1
            if self.bytes + size > self.max_bytes and not text.startswith('{"type":"truncated"'):
                self.dropped += 1
                continue
            self.bytes += size
            kept.append(text)
        if self.dropped:
            kept.append(
                line({"type": TRUNCATED, "t": round(time.time(), 3), "dropped": self.dropped})
            )
            self.dropped = 0
        if kept:
            with self.path.open("a", encoding="utf-8") as f:
                f.write("\n".join(kept) + "\n")


def history_dir(report_dir: Path) -> Path:
    return Path(report_dir) / HISTORY_DIR


def read_file(path: Path) -> Iterator[dict[str, Any]]:
    """The records of one history file, in order; a line that is not a JSON object is an error
    (ValueError naming the file and line): a history is judged whole or not at all."""
    for number, raw in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        if not raw or raw.isspace():
            continue
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise ValueError(f"{path}:{number}: not JSON: {err}") from None
        if not isinstance(record, dict) or "type" not in record:
            raise ValueError(f"{path}:{number}: not a history record (no type)")
        yield record


def read_dir(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every history file of a folder, by file name (sorted), each checked for its header."""
    files = sorted(Path(directory).glob(f"*{SUFFIX}"))
    if not files:
        raise ValueError(f"no history in {directory} (no *{SUFFIX} file)")
    result: dict[str, list[dict[str, Any]]] = {}
    for path in files:
        records = list(read_file(path))
        first = records[0] if records else {}
        if first.get("type") != HEADER or first.get("schema") != SCHEMA:
            raise ValueError(f"{path}: no {SCHEMA} header on its first line")
        if int(first.get("version", 0)) > VERSION:
            raise ValueError(f"{path}: schema version {first.get('version')} > {VERSION}")
        result[path.name] = records
    return result


def fold(
    records: Iterable[dict[str, Any]],
    run_id: str = "",
    rejudged: list[dict[str, Any]] | None = None,
) -> Tally:
    """A tally from recorded records: the same `apply` as the live run. rejudged: when given,
    gets each traffic round whose kind by today's rules differs from the kind it recorded
    (rounds.rejudged)."""
    tally = Tally(run_id)
    for record in records:
        kind = apply(tally, record)
        if rejudged is not None and record.get("type") == CHECK:
            differs = rounds.rejudged(record, kind)
            if differs is not None:
                rejudged.append(differs)
    return tally
