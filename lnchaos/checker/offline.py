"""`lnchaos check`: a recorded run judged again, offline, from its history alone.

Each user process's file is folded into a tally with the live run's own fold (history.apply:
balance checks judged again from their inputs, traffic rounds from their facts); the master's
file gives the final audit's reads (each judged again with rules.audit_result), the target's
reconciliation and the `end` record (the run's settings and what the verdict took besides the
records). verdict.build_report then
decides exactly as the live run did: same verdict, exit code and counts per kind. No network, no
clock: the same history gives the same document, byte for byte. A rule changed since the run
judges its rounds anew: the document's `rejudged` counts the rounds whose kind differs from the
one the run recorded (0 on a run judged by the same rules), and its reason says so.

Each finding's example gets its witness: the records of its payment (by hash and payout id) and
the reads of its wallet, in the order they were recorded (`witness`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lnchaos.checker import history, rounds
from lnchaos.checker.kinds import EXIT_NOTHING_VERIFIED
from lnchaos.checker.rules import audit_example_of, audit_of
from lnchaos.checker.tally import merge_tallies
from lnchaos.checker.verdict import Audit, build_report, close_checks

MASTER_FILE = "master" + history.SUFFIX
WITNESS_MAX_RECORDS = 40  # per finding: a witness is the few records that show it
# The live verdict adds witnesses from a history up to this size (read at the verdict, about a
# second per 50 MB); past it `lnchaos check` adds them.
LIVE_WITNESS_MAX_BYTES = 64 * 1024 * 1024
WITNESS_TYPES = (
    history.INVOKE,
    history.COMPLETE,
    history.WALLET_READ,
    history.PAYOUT_READ,
    history.NODE_READ,
    history.CHECK,
    history.LEFT_UNRESOLVED,
    history.AUDIT_ENTRY,
    history.AUDIT,
)


class HistoryError(ValueError):
    """A history that cannot be judged (missing, malformed, truncated, never ended)."""


def judge_dir(directory: Path) -> dict[str, Any]:
    """consistency.json of the run recorded in `directory` (a report folder or its history/)."""
    directory = Path(directory)
    if (directory / history.HISTORY_DIR).is_dir():
        directory = directory / history.HISTORY_DIR
    try:
        files = history.read_dir(directory)
    except (OSError, ValueError) as err:
        raise HistoryError(str(err)) from None
    return judge(files)


def judge(files: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """consistency.json from history files by name (history.read_dir's answer)."""
    master = files.get(MASTER_FILE)
    if master is None:
        raise HistoryError(f"no {MASTER_FILE}: the run's own records are missing")
    end = _last(master, history.END)
    if end is None:
        raise HistoryError("no `end` record: the run was never judged (killed before its end?)")
    truncated = [name for name, records in files.items() if _last(records, history.TRUNCATED)]
    user_files = list(end.get("user_files") or [n for n in files if n != MASTER_FILE])
    rejudged: list[dict[str, Any]] = []
    tallies = {
        name: history.fold(files.get(name) or [], end.get("run_id", ""), rejudged)
        for name in user_files
    }
    merged = merge_tallies(t.to_dict() for t in tallies.values())
    audit = _audit(master)
    reconciliation = (_last(master, history.RECONCILIATION) or {}).get("answer")
    close_checks(merged, audit, reconciliation)
    workers = _workers(end, tallies)
    report = build_report(
        run=end["run"],
        merged=merged,
        reconciliation=reconciliation,
        phases=end.get("phases") or [],
        timeline=end.get("timeline") or [],
        duration_s=float(end.get("duration_s") or 0.0),
        configured_rate_by_phase=end.get("configured_rate_by_phase") or {},
        locust_exit_code=int(end.get("locust_exit_code") or 0),
        target_error=end.get("target_error"),
        since_ms=end.get("since_ms"),
        audit=audit,
        workers=workers,
        counter_rows=end.get("counter_rows"),
        success_share_by_phase=end.get("success_share_by_phase"),
        arrivals=end.get("arrivals"),
        scope_at_start=end.get("scope_at_start"),
    )
    report.update(end.get("extra") or {})
    report["written_unix"] = end.get("t")  # the run's, not this check's: deterministic
    report["judged_from"] = "history"
    _say_rejudged(report, rejudged)
    add_witnesses(report, files)
    if truncated:
        _refuse_truncated(report, truncated)
    return report


def _last(records: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    for record in reversed(records):
        if record.get("type") == type_:
            return record
    return None


def _audit(master: list[dict[str, Any]]) -> Audit:
    """The final audit again: each payout's recorded reads judged by the same rule."""
    close = _last(master, history.AUDIT_CLOSE) or {}
    audit = Audit(entries=int(close.get("entries", 0)), overflow=int(close.get("overflow", 0)))
    for record in master:
        if record.get("type") != history.AUDIT:
            continue
        entry = record["entry"]
        kind = audit_of(entry, record)  # the record holds the reads as the live audit's dict
        example = audit_example_of(entry, record, kind, record["t"])
        audit.add(entry, kind, example, node=record.get("node"))
    return audit


def _workers(end: dict[str, Any], tallies: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    workers = end.get("workers")
    if workers is None:
        return None
    result = {}
    for node_id, worker in workers.items():
        tally = tallies.get(worker.get("history_file"))
        result[node_id] = {**worker, "tally": tally.to_dict() if tally is not None else None}
    return result


def _say_rejudged(report: dict[str, Any], rejudged: list[dict[str, Any]]) -> None:
    """The rounds today's rules judged otherwise than the run did: counted, and named in the
    reason when there are any (the verdict above is already today's)."""
    report["rejudged"] = rounds.rejudged_section(rejudged)
    if rejudged:
        report["reason"] = (
            f"{report['reason']}; {len(rejudged)} traffic round(s) judged again from their "
            f"recorded facts differ from the kind the run recorded (rejudged)"
        )


def _refuse_truncated(report: dict[str, Any], truncated: list[str]) -> None:
    """A history past its bound lost records: it proves nothing offline (exit 4)."""
    reason = (
        f"the history was truncated at its bound in {', '.join(sorted(truncated))}: "
        f"records are missing, so it cannot be judged again"
    )
    report["verdict"] = "fail"
    report["exit_code"] = max(report["exit_code"], EXIT_NOTHING_VERIFIED)
    report["reason"] = f"{reason}; {report['reason']}"


def add_witnesses_live(report: dict[str, Any], directory: Path) -> None:
    """The live verdict's witnesses: the same as `lnchaos check`'s, from the history as written
    so far, when it is at most LIVE_WITNESS_MAX_BYTES (else `witnesses_left_to_check` says so)."""
    if not any(e.get("examples") for e in (report.get("inconsistencies") or {}).values()):
        return
    paths = list(Path(directory).glob(f"*{history.SUFFIX}"))
    size = sum(path.stat().st_size for path in paths)
    if not paths or size > LIVE_WITNESS_MAX_BYTES:
        report["witnesses_left_to_check"] = f"history of {size} bytes: lnchaos check adds them"
        return
    try:
        add_witnesses(report, history.read_dir(directory))
    except (OSError, ValueError) as err:
        report["witnesses_left_to_check"] = f"history not readable: {err}"


def add_witnesses(report: dict[str, Any], files: dict[str, list[dict[str, Any]]]) -> None:
    """Each example of each finding gets `witness`: the records of its payment and wallet."""
    examples = [
        example
        for entry in (report.get("inconsistencies") or {}).values()
        for example in entry.get("examples") or []
        if isinstance(example, dict)
    ]
    if not examples:
        return
    records = [r for name in sorted(files) for r in files[name] if r.get("type") in WITNESS_TYPES]
    records.sort(key=lambda r: float(r.get("t") or 0.0))  # stable: a file's order is kept
    index = _index(records, examples)
    for example in examples:
        example["witness"] = witness(example, records, index)


def _index(
    records: list[dict[str, Any]], examples: list[dict[str, Any]]
) -> dict[tuple[str, str], list[int]]:
    """Positions of the records that name what the examples name: ("id", a hash or payout id),
    ("wallet", a wallet id: any of its records), ("read", a wallet id: its reads), and ("key",
    an Idempotency-Key those records used). Two passes over the records, each a few lookups."""
    ids = {n for e in examples for n in _names(e.get("payment_hash")) | _names(e.get("payout_id"))}
    wallets = {e.get("wallet_id") for e in examples} - {None}
    index: dict[tuple[str, str], list[int]] = {}
    keys: set[str] = set()
    for position, record in enumerate(records):
        entry = record.get("entry") or {}
        for name in (record.get("hash"), record.get("payout_id"), entry.get("payment_hash"),
                     entry.get("payout_id")):  # fmt: skip
            if isinstance(name, str) and name in ids:
                index.setdefault(("id", name), []).append(position)
                if record.get("key"):
                    keys.add(record["key"])
        wallet_id = record.get("wallet") or entry.get("wallet_id")
        if isinstance(wallet_id, str) and wallet_id in wallets:
            index.setdefault(("wallet", wallet_id), []).append(position)
            if record.get("type") == history.WALLET_READ:
                index.setdefault(("read", wallet_id), []).append(position)
    if keys:
        for position, record in enumerate(records):
            if isinstance(record.get("key"), str) and record["key"] in keys:
                index.setdefault(("key", record["key"]), []).append(position)
    return index


def witness(
    example: dict[str, Any],
    records: list[dict[str, Any]],
    index: dict[tuple[str, str], list[int]] | None = None,
) -> list[dict[str, Any]]:
    """The records that show one finding, in order: every record of its payments (by hash or
    payout id; a traffic round's example names several, comma-separated; and the records of the
    Idempotency-Keys those used) and the reads of its wallet from the first of them on; a
    finding of a wallet alone (its read at the end of use), the wallet's reads, or else all its
    records. At most WITNESS_MAX_RECORDS."""
    index = index if index is not None else _index(records, [example])
    names = _names(example.get("payment_hash")) | _names(example.get("payout_id"))
    wallet_id = example.get("wallet_id")
    mine = {p for name in names for p in index.get(("id", name), [])}
    keys = {records[p].get("key") for p in mine} - {None}
    mine |= {p for key in keys for p in index.get(("key", key), [])}
    reads = index.get(("read", wallet_id), []) if wallet_id is not None else []
    if mine:
        first = min(mine)
        mine |= {p for p in reads if p >= first}
    elif not names:
        mine = set(reads)
    if not mine and wallet_id is not None:
        mine = set(index.get(("wallet", wallet_id), []))
    return [records[p] for p in sorted(mine)[:WITNESS_MAX_RECORDS]]


def _names(value: Any) -> set[str]:
    """The ids an example names: one, or several comma-separated (None and "None" left out)."""
    if not value:
        return set()
    return {part for part in str(value).split(",") if part and part != "None"}
