"""The final audit: the payouts no payer could judge are judged from the node's truth, never by
the wallet's own reconciliation (issue 9: the judge never leans on what it judges).

The pure judgement and the merge are tested directly; one pair of real runs (a control and a
mutant, at the same time) attaches the suite to a target whose reconciliation is blinded
(blind_target.py, a patch in the test only), with the users' bound so small that every
timed-out payout is abandoned to the audit.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from lnchaos.checker import tally as tally_module
from locustfiles import checker, counters
from locustfiles import controller as controller_module
from locustfiles.admin_client import TargetError
from locustfiles.checker import Audit, Tally, audit_entry, audit_kind, merge_tallies
from locustfiles.controller import Controller
from target.common.child import ChildServer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LAUNCHER = HERE / "blind_target.py"
TOKEN = "audit-test-token"
RUN_TIMEOUT_S = 60.0

AMOUNT_MSAT = 100_000
FEE_MSAT = 1_500
BEFORE_MSAT = 1_000_000
PAID_MSAT = BEFORE_MSAT - AMOUNT_MSAT - FEE_MSAT
COST = AMOUNT_MSAT + FEE_MSAT


def entry(retried: bool = False, payout_id: str | None = "p1") -> dict:
    made = audit_entry(
        wallet_id="w1",
        api_key="secret-key",
        expected_msat=BEFORE_MSAT,
        payment_hash="ab" * 32,
        amount_msat=AMOUNT_MSAT,
        phase="normal",
    )
    made.update(payout_id=payout_id, retried=retried, outcome="pending", reason="not_final")
    return made


def node(status: str) -> dict:
    fee_msat = FEE_MSAT if status == "succeeded" else 0
    return {"status": status, "amount_msat": AMOUNT_MSAT, "fee_msat": fee_msat}


def wallet(balance_msat: int, reserved_msat: int = 0) -> dict:
    return {"wallet_id": "w1", "balance_msat": balance_msat, "reserved_msat": reserved_msat}


@pytest.mark.parametrize(
    ("node_status", "balance_msat", "reserved_msat", "retried", "expected"),
    [
        # the node paid: amount + the node's fee, no more, no less
        ("succeeded", PAID_MSAT, 0, False, None),
        ("succeeded", BEFORE_MSAT, 0, False, checker.PAID_NOT_CHARGED),
        ("succeeded", PAID_MSAT - 1, 0, False, checker.CHARGED_NOT_PAID),
        # failed, or never sent (unknown): unchanged
        ("failed", BEFORE_MSAT, 0, False, None),
        ("failed", BEFORE_MSAT - AMOUNT_MSAT, 0, False, checker.CHARGED_NOT_PAID),
        ("failed", BEFORE_MSAT + 1, 0, False, checker.BALANCE_MISMATCH),
        ("unknown", BEFORE_MSAT, 0, False, None),
        ("unknown", BEFORE_MSAT - AMOUNT_MSAT - FEE_MSAT, 0, False, checker.CHARGED_NOT_PAID),
        # not final: in flight at the node, or money still reserved, whatever the balance
        ("in_flight", BEFORE_MSAT, 0, False, checker.UNRESOLVED),
        ("in_flight", PAID_MSAT, 0, False, checker.UNRESOLVED),
        ("failed", BEFORE_MSAT - 200_000, 200_000, False, checker.UNRESOLVED),
        ("succeeded", PAID_MSAT, 1, False, checker.UNRESOLVED),
        # a retry with the same key charged again: a double charge, as the checks name it
        ("succeeded", PAID_MSAT - AMOUNT_MSAT - FEE_MSAT, 0, True, checker.DOUBLE_CHARGE),
        ("succeeded", PAID_MSAT - AMOUNT_MSAT - FEE_MSAT, 0, False, checker.CHARGED_NOT_PAID),
    ],
)
def test_audit_kind(node_status, balance_msat, reserved_msat, retried, expected):
    got = audit_kind(entry(retried), node(node_status), wallet(balance_msat, reserved_msat))
    assert got == expected


def test_a_traffic_rounds_wallet_is_audited_from_every_invoice_it_sent():
    """Rule 4 of issue 25: a traffic round of unknown outcome leaves its wallet to the audit,
    with the other invoices the round sent (`also`): their cost by the node's truth comes off
    first, each at most once; one still in flight, or not read, leaves it unresolved."""
    other_hash, other_msat = "cd" * 32, 50_000
    made = audit_entry(
        wallet_id="w1", api_key="k", expected_msat=BEFORE_MSAT, payment_hash="ab" * 32,
        amount_msat=AMOUNT_MSAT, phase="spike", also=[(other_hash, other_msat)],
    )  # fmt: skip
    assert made["also"] == [{"payment_hash": other_hash, "amount_msat": other_msat}]
    other_paid = {"status": "succeeded", "amount_msat": other_msat, "fee_msat": 7}
    both_msat = PAID_MSAT - other_msat - 7
    assert (
        audit_kind(made, node("succeeded"), wallet(both_msat), None, {other_hash: other_paid})
        is None
    )
    # the other invoice paid by the node but never charged: found, in the dark
    got = audit_kind(made, node("succeeded"), wallet(PAID_MSAT), None, {other_hash: other_paid})
    assert got == checker.PAID_NOT_CHARGED
    # the other failed at the node: only the first's cost
    failed = {"status": "failed", "amount_msat": other_msat, "fee_msat": 0}
    assert (
        audit_kind(made, node("succeeded"), wallet(PAID_MSAT), None, {other_hash: failed}) is None
    )
    got = audit_kind(
        made, node("failed"), wallet(BEFORE_MSAT - other_msat), None, {other_hash: failed}
    )
    assert got == checker.CHARGED_NOT_PAID
    # not final, or not read: unresolved, never a guess
    in_flight = {"status": "in_flight", "amount_msat": other_msat, "fee_msat": 0}
    for also in ({other_hash: in_flight}, {}, None):
        assert (
            audit_kind(made, node("failed"), wallet(BEFORE_MSAT), None, also) == checker.UNRESOLVED
        )
    example = checker.audit_example(
        made, node("succeeded"), wallet(PAID_MSAT), None, checker.PAID_NOT_CHARGED,
        also_nodes={other_hash: other_paid},
    )  # fmt: skip
    assert example["expected_msat"] == both_msat and example["diff_msat"] == other_msat + 7


def test_audit_kind_unseen_or_pending_payout_is_unresolved():
    assert audit_kind(entry(), None, wallet(BEFORE_MSAT)) == checker.UNRESOLVED
    assert audit_kind(entry(), node("failed"), None) == checker.UNRESOLVED
    pending = {"payout_id": "p1", "status": "pending"}
    assert audit_kind(entry(), node("failed"), wallet(BEFORE_MSAT), pending) == checker.UNRESOLVED
    failed = {"payout_id": "p1", "status": "failed"}
    assert audit_kind(entry(), node("failed"), wallet(BEFORE_MSAT), failed) is None


def test_audit_example_names_the_payout_and_never_the_key():
    found = entry()
    kind = audit_kind(found, node("failed"), wallet(BEFORE_MSAT - AMOUNT_MSAT))
    example = checker.audit_example(
        found, node("failed"), wallet(BEFORE_MSAT - AMOUNT_MSAT), {"status": "failed"}, kind
    )
    assert example["kind"] == checker.CHARGED_NOT_PAID and example["source"] == "audit"
    assert (example["wallet_id"], example["payout_id"]) == ("w1", "p1")
    assert (example["expected_msat"], example["actual_msat"]) == (BEFORE_MSAT, 900_000)
    assert example["diff_msat"] == -AMOUNT_MSAT
    assert (example["payout_status"], example["node_status"]) == ("failed", "failed")
    assert "secret-key" not in json.dumps(example)


def test_audit_entries_cross_from_two_workers_and_overflow_is_counted(monkeypatch):
    monkeypatch.setattr(tally_module, "AUDIT_MAX", 2)  # where Tally reads it
    a, b = Tally("r"), Tally("r")
    for n in range(3):  # one more than a process keeps
        a.record_audit({**entry(), "payout_id": f"a{n}"})
    b.record_audit({**entry(), "payout_id": "b0"})
    merged = merge_tallies(json.loads(json.dumps([a.to_dict(), b.to_dict()])))
    assert [e["payout_id"] for e in merged["audit"]] == ["a0", "a1", "b0"]
    assert merged["audit_overflow"] == 1
    # entries never audited (no audit ran, or over its bounds) fail the run: money not proven
    report = build(merged, reconciliation=None, audit=None)
    assert report["audit"]["overflow"] == 4 and report["audit"]["entries"] == 4
    assert report["exit_code"] == checker.EXIT_INCONSISTENT
    assert "4 payouts no payer could judge were left out of the final audit" in report["reason"]


def test_audit_findings_merge_with_checks_and_reconciliation():
    audit = Audit(entries=4)
    for payout_id, status, balance_msat in (
        ("a", "failed", BEFORE_MSAT - AMOUNT_MSAT),  # charged for a failed payment
        ("b", "succeeded", PAID_MSAT),  # fine
        ("s", "in_flight", BEFORE_MSAT),  # the reconciliation lists it too
        ("u", "in_flight", BEFORE_MSAT),  # only the audit sees it
    ):
        found = {**entry(payout_id=payout_id), "payment_hash": payout_id * 64}
        kind = audit_kind(found, node(status), wallet(balance_msat))
        audit.add(found, kind, checker.audit_example(found, node(status), None, None, kind))
    assert audit.summary() == {
        "entries": 4,
        "judged": 2,
        "unresolved": 2,
        "inconsistent": 1,
        "overflow": 0,
    }
    assert audit.resolved_timeouts == 2
    tally = Tally("r")
    tally.record_check(checker.BALANCE_AFTER_FAILURE, passed=False)
    tally.record_inconsistency(
        checker.CHARGED_NOT_PAID, -5, {"payout_id": "c", "diff_msat": -5, "t_unix": 1.0}
    )
    reconciliation = {
        # the whole promised shape (lnchaos/checker/answers.py): a part missing is a finding
        "now_ms": 1,
        "pending": 0,
        "conserved": True,
        "paid_not_charged": {"count": 0, "amount_msat": 0},
        "charged_not_paid": {"count": 1, "amount_msat": 5, "payout_ids": ["c"]},
        "unresolved": {
            "amount_msat": 0,
            "count": 2,
            "payout_ids": ["s", "t"],
            "examples": [
                {"payout_id": "s", "payment_hash": "s" * 64},
                {"payout_id": "t", "payment_hash": "t" * 64},
            ],
        },
    }
    combined = checker.combine_inconsistencies(tally.kinds, reconciliation, audit)
    charged = combined[checker.CHARGED_NOT_PAID]
    # the checks and the audit judge different payouts: 1 + 1, above the reconciliation's 1
    assert charged["count"] == 2
    assert charged["detected_by"] == {"checks": 1, "reconciliation": 1, "audit": 1}
    unresolved = combined[checker.UNRESOLVED]
    # s counts once: the union of {s, t} and {s, u}
    assert unresolved["count"] == 3
    assert unresolved["detected_by"] == {"checks": 0, "reconciliation": 2, "audit": 2}
    # a reconciliation that lists only some of its payouts: no overlap can be proven
    short = {"unresolved": {"count": 9, "payout_ids": ["s"]}}
    assert checker.combine_inconsistencies({}, short, audit)[checker.UNRESOLVED]["count"] == 9
    described = checker.describe_inconsistencies(combined)
    assert "charged_not_paid=2 (1 found by the final audit)" in described
    report = build(merge_tallies([tally.to_dict()]), reconciliation, audit)
    assert report["exit_code"] == checker.EXIT_INCONSISTENT
    assert report["inconsistencies_total"] == 5
    assert "found by the final audit" in report["reason"]
    assert report["audit"]["inconsistent"] == 1
    assert report["timeouts"]["resolved_by_audit"] == 2


def build(merged: dict, reconciliation: dict | None, audit: Audit | None) -> dict:
    return checker.build_report(
        run={"fix": "on", "shape": "steady", "seed": 1, "threshold": 0},
        merged=merged,
        reconciliation=reconciliation,
        phases=[],
        timeline=[],
        duration_s=1.0,
        configured_rate_by_phase={},
        locust_exit_code=0,
        target_error=None,
        audit=audit,
    )


# ---- the real runs ---------------------------------------------------------------------------


def start_blind_target(mode: str, workdir: Path) -> ChildServer:
    command = [
        sys.executable, str(LAUNCHER), mode, "--",
        "--port", "0", "--fix", "on", "--seed", "7", "--admin-token", TOKEN,
        "--db", str(workdir / "wallet.sqlite"), "--log-level", "WARNING",
    ]  # fmt: skip
    target = ChildServer(command, log_path=workdir / "target.log", cwd=REPO, name=mode)
    return target.start(health_path="/health")


def test_the_audit_catches_what_only_the_wallets_reconciliation_would_have_seen(
    locust_run, tmp_path
):
    """The reconciliation is blinded (says "ok" to everything) and every timed-out payout is
    abandoned by its payer (bound 0.2 s < the node's 1.5 s hold): the checks never see a
    timed-out payout, so only the final audit can judge them. Control: the blinded target
    without a bug passes, its timed-out payouts resolved by the audit. Mutant: the resolver
    keeps the charge of a late failure: exit 3, charged_not_paid found by the audit alone."""
    load = ["-t", "5s", "-u", "5", "-r", "5", "--fix", "on", "--timeout-rate", "0.3"]
    load += ["--late-settle-rate", "0.3", "--resolve-timeout-s", "0.2", "--retry-share", "0.2"]
    runs = {}
    targets = []
    try:
        for mode in ("blind", "blind-keeps-charge"):
            workdir = tmp_path / mode
            target = start_blind_target(mode, workdir)
            targets.append(target)
            args = ["--headless", "--only-summary", "--host", target.url, "--admin-token", TOKEN]
            runs[mode] = locust_run([*args, *load], name=mode)
        codes = {mode: run.finish(RUN_TIMEOUT_S) for mode, run in runs.items()}
        for target in targets:
            assert target.running(), target.log_tail()
    finally:
        for target in targets:
            target.stop()

    control, mutant = runs["blind"], runs["blind-keeps-charge"]
    report = control.report()
    assert codes["blind"] == checker.EXIT_PASS, (report["reason"], control.log_tail())
    audit = report["audit"]
    assert audit["entries"] > 0 and audit["judged"] == audit["entries"]
    assert audit["unresolved"] == audit["inconsistent"] == audit["overflow"] == 0
    assert report["timeouts"]["resolved_by_checks"] == 0  # all left to the audit
    assert report["timeouts"]["resolved_by_audit"] > 0
    assert report["checks"]["by_name"][checker.FINAL_AUDIT]["passed"] == audit["entries"]

    report = mutant.report()
    assert codes["blind-keeps-charge"] == checker.EXIT_INCONSISTENT, mutant.log_tail()
    assert report["reconciliation"]["charged_not_paid"]["count"] == 0  # blinded
    charged = report["inconsistencies"][checker.CHARGED_NOT_PAID]
    assert charged["count"] > 0
    assert charged["detected_by"] == {"checks": 0, "reconciliation": 0, "audit": charged["count"]}
    assert report["audit"]["inconsistent"] >= charged["count"]
    example = charged["examples"][0]
    assert example["source"] == "audit" and example["node_status"] == "failed"
    assert example["payout_status"] == "succeeded" and example["diff_msat"] < 0
    assert f"({charged['count']} found by the final audit)" in report["reason"]
    assert report["checks"]["by_name"][checker.FINAL_AUDIT]["failed"] >= charged["count"]


# ---- the master's audit, with a fake target ------------------------------------------------


class FakeTarget:
    """The three reads of the audit: payouts by hash that settle after some polls, or fail."""

    def __init__(self, settles_after: dict[str, int | None]) -> None:
        self.settles_after = settles_after  # hash -> polls in flight first (None: never final)
        self.polls: dict[str, int] = {}

    def node_payment(self, payment_hash: str) -> dict:
        if payment_hash == "broken":
            raise TargetError("GET /node/payments/broken: HTTP 500")
        n = self.polls[payment_hash] = self.polls.get(payment_hash, 0) + 1
        after = self.settles_after[payment_hash]
        return node("in_flight" if after is None or n <= after else "failed")

    def wallet(self, wallet_id: str, api_key: str) -> dict:
        assert api_key == "secret-key"
        return wallet(BEFORE_MSAT)

    def payout(self, payout_id: str, api_key: str) -> dict:
        return {"payout_id": payout_id, "status": "failed"}


def test_the_master_audits_polls_until_the_final_wait_is_over_and_stays_bounded(monkeypatch):
    monkeypatch.setattr(controller_module, "AUDIT_POLL_INTERVAL_S", 0.01)
    monkeypatch.setattr(checker, "AUDIT_MAX_TOTAL", 3)
    counters.start_run(f"audit-{time.monotonic_ns()}")
    environment = SimpleNamespace(
        parsed_options=SimpleNamespace(),
        runner=SimpleNamespace(),
        events=SimpleNamespace(request=SimpleNamespace(fire=None)),  # checks are not requests
    )
    controller = Controller(environment)
    controller.admin = FakeTarget({"late": 3, "never": None})
    entries = [{**entry(), "payment_hash": h} for h in ("late", "never", "broken", "over")]
    merged = {"audit": entries, "audit_overflow": 2}
    started = time.monotonic()
    audit = controller._audit(merged, settle_deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 5.0
    # late: final after 3 polls and consistent; never: still in flight at the end of the wait;
    # broken: not readable; over: past AUDIT_MAX_TOTAL; 2 not kept by the workers
    assert audit.summary() == {
        "entries": 6,
        "judged": 1,
        "unresolved": 2,
        "inconsistent": 0,
        "overflow": 3,
    }
    assert controller.admin.polls["late"] == 4
    assert 4 < controller.admin.polls["never"] <= controller_module.AUDIT_MAX_POLLS
    # each audited payout is a final_audit check in the suite's table
    row = {r["name"]: r for r in counters.table(environment)}[checker.FINAL_AUDIT]
    assert (row["count"], row["failures"]) == (3, 2)
    assert row["failures_by_kind"] == {checker.UNRESOLVED: 2}
    examples = audit.kinds[checker.UNRESOLVED]["examples"]
    assert any("not audited: GET /node/payments/broken" in e["node_status"] for e in examples)
    assert all("secret-key" not in str(e) for e in [*examples, row["last_failure"]])


# ---- rule 4: traffic rounds' entries, judged live and offline alike -----------------------------


class RoundsTarget:
    """The audit's reads of traffic rounds' entries: one invoice the node paid (a shared pair:
    w1 charged, w2 not; p1 and p2 both charged) and a bad-input round the node never saw."""

    NODES = {"paid": "succeeded", "unseen": "unknown", "other": "unknown"}
    BALANCES = {"w1": PAID_MSAT, "w2": BEFORE_MSAT, "p1": PAID_MSAT, "p2": PAID_MSAT}

    def node_payment(self, payment_hash: str) -> dict:
        return node(self.NODES[payment_hash])

    def wallet(self, wallet_id: str, api_key: str) -> dict:
        assert api_key == f"key-{wallet_id}", "each wallet read with its own key"
        return wallet(self.BALANCES.get(wallet_id, BEFORE_MSAT))

    def payout(self, payout_id: str, api_key: str) -> dict:
        raise AssertionError("a round's entry names no payout")


def test_a_recorded_group_audit_is_judged_offline_as_live(monkeypatch):
    """Issue 25, rule 4: a shared invoice's pair (one group entry) and an edge round (a
    bad-input entry) audited by the master, then judged again from the history's `audit`
    records alone, as `lnchaos check` does (the lines as written: no api key): the same kinds,
    counts and examples."""
    from lnchaos.checker import history, offline

    counters.start_run(f"audit-rounds-{time.monotonic_ns()}")
    environment = SimpleNamespace(
        parsed_options=SimpleNamespace(),
        runner=SimpleNamespace(),
        events=SimpleNamespace(request=SimpleNamespace(fire=None)),
    )
    controller = Controller(environment)
    controller.admin = RoundsTarget()
    notes: list[dict] = []
    monkeypatch.setattr(controller.collector, "note", notes.append)

    def pair(first: str, second: str) -> dict:
        made = checker.audit_group_entry(
            wallets=[(w, f"key-{w}", BEFORE_MSAT) for w in (first, second)],
            payment_hash="paid", amount_msat=AMOUNT_MSAT, phase="normal",
        )  # fmt: skip
        made["reason"] = checker.ABANDONED_ROUND
        return made

    edge = checker.audit_bad_input_entry(
        wallet_id="e1", api_key="key-e1", expected_msat=BEFORE_MSAT,
        invoices=[("unseen", AMOUNT_MSAT), ("other", 0)], phase="normal",
    )  # fmt: skip
    single = {**entry(payout_id=None), "wallet_id": "s1", "api_key": "key-s1"}
    single["payment_hash"] = "unseen"  # a single wallet's entry beside them, judged as before
    entries = [pair("w1", "w2"), pair("p1", "p2"), edge, single]
    live = controller._audit({"audit": entries}, settle_deadline=time.monotonic())
    assert live.summary() == {
        "entries": 4, "judged": 4, "unresolved": 0, "inconsistent": 1, "overflow": 0
    }  # fmt: skip
    assert set(live.kinds) == {checker.DOUBLE_CHARGE}  # p1 and p2 both charged for one payment
    example = live.kinds[checker.DOUBLE_CHARGE]["examples"][0]
    assert example["wallet_id"] == "p1+p2" and example["charged_msat"] == [COST, COST]

    audits = [r for r in notes if r["type"] == history.AUDIT]
    assert [sorted(r["wallet_views"]) for r in audits if "wallet_views" in r] == [
        ["w1", "w2"], ["p1", "p2"]
    ]  # fmt: skip
    assert audits[2]["also_nodes"] == {"other": node("unknown")}
    # the master's records are written as noted: no key of any wallet in them
    assert "key-" not in json.dumps(notes) and "secret-key" not in json.dumps(notes)
    master = [json.loads(json.dumps({"t": 1.0, **r})) for r in notes]
    again = offline._audit(master)
    assert again.summary() == live.summary()
    assert json.dumps(again.kinds, sort_keys=True) == json.dumps(live.kinds, sort_keys=True)
