"""Controls mid-run and the consistency views, without a browser: a control is validated, set on
the target at once, recorded and held against the shape's phase changes; the chart, the HTML
block and the CSV say what the report says."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace
from typing import Any

import pytest

from locustfiles import consistency_view, edge_workload
from locustfiles import fault_control as fault_control_module
from locustfiles.admin_client import TargetError
from locustfiles.fault_control import ControlError, FaultControl, validate_controls
from locustfiles.options import settings_from
from locustfiles.shapes import Phase


class FakeAdmin:
    """The target's admin API as the fault control sees it: what was set, in order."""

    def __init__(self) -> None:
        self.fix = "off"
        self.faults: dict[str, Any] = {"timeout_rate": 0.0, "late_settle_rate": 0.5}
        self.calls: list[tuple[str, Any]] = []

    def set_fix(self, mode: str) -> str:
        self.calls.append(("fix", mode))
        self.fix = mode
        return mode

    def get_faults(self) -> dict[str, Any]:
        return dict(self.faults, failure_rate=0.0)

    def set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("faults", dict(changes)))
        self.faults.update(changes)
        return self.get_faults()

    def set_seed(self, seed: int) -> int:
        self.calls.append(("seed", seed))
        return seed

    def clock_ms(self) -> int:
        return 1_000


class FakeCollector:
    def __init__(self) -> None:
        self.phases: list[str] = []
        self.notes: list[dict[str, Any]] = []  # the history's records (docs/history.md)

    def note(self, record: dict[str, Any]) -> None:
        self.notes.append(record)

    def elapsed_s(self) -> float:
        return 4.2

    def enter_phase(self, name: str) -> None:
        self.phases.append(name)


def fault_control() -> tuple[FaultControl, FakeAdmin]:
    admin = FakeAdmin()
    settings = settings_from(
        SimpleNamespace(fix="off", timeout_rate=0.05, spike_timeout_rate=0.3, seed=9)
    )
    runner = SimpleNamespace(send_message=lambda *_args: None)
    environment = SimpleNamespace(runner=runner, shape_class=None, parsed_options=SimpleNamespace())
    control = FaultControl(admin, settings, environment, FakeCollector(), "run1")  # type: ignore[arg-type]
    return control, admin


SPIKE = Phase("spike", 10.0, 20.0, 40, 40.0, spike_faults=True)
NORMAL = Phase("normal", 0.0, 10.0, 10, 10.0, spike_faults=False)


def test_validate_controls_names_the_setting():
    assert validate_controls({"fix": "on", "timeout_rate": "0.25", "failure_rate": ""}) == {
        "fix": "on",
        "timeout_rate": 0.25,
    }
    for bad, name in (
        ({"fix": "maybe"}, "fix"),
        ({"timeout_rate": "2"}, "timeout_rate"),
        ({"late_settle_rate": "-0.1"}, "late_settle_rate"),
        ({"failure_rate": "lots"}, "failure_rate"),
        ({"seed": "3"}, "seed"),
    ):
        with pytest.raises(ControlError, match=f"^{name}: "):
            validate_controls(bad)


def test_start_settings_reach_the_target_then_a_control_holds_against_the_phases():
    control, admin = fault_control()
    control.apply_run_settings({"failure_rate": 0.0})
    assert admin.calls == [
        ("fix", "off"),
        # the run's settings, and the edge workload's part at the node (edge_workload.py)
        ("faults", {"failure_rate": 0.0, "timeout_rate": 0.05, "late_settle_rate": 0.5,
                    **edge_workload.node_faults(edge_workload.EdgeSettings())}),
        ("seed", 9),
    ]  # fmt: skip
    control._enter("normal", NORMAL)
    assert admin.faults["timeout_rate"] == 0.05
    admin.calls.clear()

    recorded = control.apply_control({"fix": "on", "timeout_rate": 0.2, "late_settle_rate": 0.5})
    # the unchanged late_settle_rate is not a change; both changes carry the target's clock
    assert [(c["what"], c["from"], c["to"]) for c in recorded] == [
        ("fix", "off", "on"),
        ("timeout_rate", 0.05, 0.2),
    ]
    assert all(c["target_ms"] == 1_000 and c["phase"] == "normal" for c in recorded)
    assert admin.calls == [("fix", "on"), ("faults", {"timeout_rate": 0.2})]
    assert control.controls == recorded
    # the history has the run's faults, the phase's rate and both changes, in that order
    notes = [(n["type"], n["what"]) for n in control.collector.notes]
    assert notes == [("fault", "run_settings"), ("fault", "phase"), ("control", "fix"),
                     ("control", "timeout_rate")]  # fmt: skip

    admin.calls.clear()
    control._enter("spike", SPIKE)  # the plan says 0.3 here, but the control holds 0.2
    assert admin.calls == [] and admin.faults["timeout_rate"] == 0.2
    assert control.configured_rate_by_phase()["spike"] == 0.2
    assert control.apply_control({"fix": "on"}) == []  # the same mode again: no change


class BusyAdmin(FakeAdmin):
    """A target that times out its first `refusals` fault changes (busy, or going down)."""

    def __init__(self, refusals: int) -> None:
        super().__init__()
        self.refusals = refusals

    def set_faults(self, changes: dict[str, Any]) -> dict[str, Any]:
        if self.refusals > 0:
            self.refusals -= 1
            self.calls.append(("timed out", dict(changes)))
            raise TargetError("PUT /admin/faults: timed out")
        return super().set_faults(changes)


def test_a_phase_rate_the_target_did_not_take_is_asked_again(monkeypatch):
    """The hour's soak failed on one phase change the busy target timed out: a phase's rate is
    asked again (bounded), and only a target that never takes it fails the fault control."""
    monkeypatch.setattr(fault_control_module, "PHASE_SET_RETRY_S", 0.0)
    control, _ = fault_control()
    control.admin = busy = BusyAdmin(refusals=fault_control_module.PHASE_SET_ATTEMPTS - 1)
    control._enter("spike", SPIKE)
    assert busy.faults["timeout_rate"] == 0.3 and control.errors == []
    assert [c[0] for c in busy.calls].count(
        "timed out"
    ) == fault_control_module.PHASE_SET_ATTEMPTS - 1

    control.admin = never = BusyAdmin(refusals=fault_control_module.PHASE_SET_ATTEMPTS)
    control._enter("normal", NORMAL)
    assert never.faults["timeout_rate"] == 0.0  # never taken
    assert control.errors == ["PUT /admin/faults: timed out"]
    assert len(never.calls) == fault_control_module.PHASE_SET_ATTEMPTS


def report() -> dict[str, Any]:
    return {
        "state": "judged",
        "fix": "off",
        "shape": "spike",
        "seed": 7,
        "verdict": "fail",
        "exit_code": 3,
        "reason": "2 inconsistencies > threshold 0: charged_not_paid=2",
        "duration_s": 20.0,
        "payouts_per_s": 10.0,
        "inconsistencies_total": 2,
        "drift_msat": -1_234_567,
        "payouts_verified": 150,
        "inconsistencies": {
            "charged_not_paid": {
                "count": 2,
                "amount_msat": 1_234_567,
                "examples": [],
                "last": {
                    "wallet_id": "w1",
                    "payout_id": "p1",
                    "expected_msat": 10,
                    "actual_msat": 5,
                },
                "worst": None,
                "detected_by": {"checks": 2, "reconciliation": 2, "audit": 0},
            }
        },
        "checks": {"by_name": {"balance_after_failure": {"passed": 5, "failed": 2}}},
        "timeout_rate_by_phase": {
            "normal": {"payouts": 100, "timeouts": 5, "rate": 0.05, "configured_rate": 0.05}
        },
        "phases": [
            {"name": "normal", "start_s": 0.0, "end_s": 10.0},
            {"name": "spike", "start_s": 10.0, "end_s": None},
        ],
        "timeline": [
            {"t_s": 1.0, "inconsistencies": 0, "drift_msat": 0},
            {
                "t_s": 5.0,
                "inconsistencies": 2,
                "drift_msat": -1_234_567,
                "controls": ["fix: off -> on"],
            },
        ],
        "controls": [{"t_s": 5.0, "phase": "normal", "what": "fix", "from": "off", "to": "on"}],
        "controls_after": [
            consistency_view.after_control(
                [{"t_s": 5.0, "target_ms": 9, "what": "fix", "from": "off", "to": "on"}],
                {
                    "charged_not_paid": {"count": 0},
                    "payouts": {"succeeded": 40},
                    "timeouts": {"resolved": 3},
                },
            )
        ],
    }


def test_the_views_say_what_the_report_says():
    svg = consistency_view.chart_svg(report())
    assert svg.startswith("<svg") and "fix: off \u2192 on" in svg and ">spike<" in svg
    page = consistency_view.inject_html("<html><body><div id=root></div></body></html>", report())
    assert page.index(consistency_view.SECTION_ID) < page.index("</body>")
    assert "fail (exit code 3)" in page and "1,234,567 msat" in page and "<svg" in page
    rows = list(csv.DictReader(io.StringIO(consistency_view.csv_text(report()))))
    by = {(r["record"], r["name"]): r for r in rows}
    assert by[("verdict", "fail")]["count"] == "3"
    assert by[("inconsistency", "charged_not_paid")]["amount_msat"] == "1234567"
    assert by[("total", "inconsistencies_total")]["count"] == "2"
    assert by[("drift", "drift_msat")]["amount_msat"] == "-1234567"
    assert by[("after_control", "fix: off -> on")]["count"] == "0"
    assert "payouts 100" in by[("timeout_rate", "normal")]["detail"]


class FakeController:
    """What web_ui.py asks of the controller: the live report, a control, the settings in force."""

    def __init__(self, going: bool) -> None:
        self.going = going
        self.admin = None
        self.fault_control = SimpleNamespace(in_force={"fix": "off"})
        self.received: list[dict[str, Any]] = []

    def live_report(self) -> dict[str, Any]:
        return {**report(), "state": "running" if self.going else "judged"}

    def control(self, changes: dict[str, Any]) -> list[dict[str, Any]]:
        valid = validate_controls(changes)
        if not self.going:
            raise ControlError("no run is going: set these in the start form")
        self.received.append(valid)
        return [{"what": k, "from": None, "to": v} for k, v in valid.items()]


def web_app(going: bool) -> tuple[Any, FakeController]:
    from flask import Flask, jsonify

    from locustfiles import web_ui

    app = Flask("lnchaos_test")
    app.add_url_rule("/", "index", lambda: "<html><body><div id=root></div></body></html>")
    app.add_url_rule("/stats/requests", "stats", lambda: jsonify(stats=[], state="running"))
    environment = SimpleNamespace(
        web_ui=SimpleNamespace(app=app, template_args={}, auth_required_if_enabled=lambda f: f),
        parsed_options=SimpleNamespace(web_base_path=None),
        runner=SimpleNamespace(state="running"),
    )
    controller = FakeController(going)
    web_ui.register(environment, controller)
    tabs = environment.web_ui.template_args["extended_tabs"]
    assert tabs == [{"title": "Consistency", "key": web_ui.TAB_KEY}]
    return app.test_client(), controller


def test_the_tab_routes_answer_and_refuse_clearly():
    client, controller = web_app(going=True)
    assert b'src="/lnchaos/consistency.js"' in client.get("/").data
    extended = client.get("/stats/requests").get_json()["extended_stats"]
    assert extended[0]["data"][0]["kind"] == "charged_not_paid"
    assert extended[0]["data"][0]["count"] == 2
    state = client.get("/lnchaos/state").get_json()
    assert state["headline"].startswith("so far: fail") and state["inconsistencies_total"] == 2
    assert state["since_last_control"]["found"] == 0
    assert client.get("/lnchaos/chart.svg").data.startswith(b"<svg")
    assert client.get("/lnchaos/consistency.csv").data.startswith(b"record,name,count")

    ok = client.post("/lnchaos/control", data={"fix": "on"})
    assert ok.status_code == 200 and ok.get_json()["changes"][0]["to"] == "on"
    for body, word in (({"fix": "maybe"}, "fix"), ({"timeout_rate": "2"}, "timeout_rate")):
        bad = client.post("/lnchaos/control", json=body)
        assert bad.status_code == 400 and bad.get_json()["message"].startswith(word), bad.data
    unknown = client.post("/lnchaos/control", json={"seed": 3})
    assert unknown.status_code == 400 and "seed: not a control" in unknown.get_json()["message"]
    assert (
        client.post("/lnchaos/control", data="[1]", content_type="application/json").status_code
        == 400
    )
    assert controller.received == [{"fix": "on"}]  # nothing refused reached the target

    idle, _ = web_app(going=False)
    refused = idle.post("/lnchaos/control", json={"fix": "on"})
    assert refused.status_code == 409 and refused.get_json()["error"] == "no_run"


def test_a_memoized_stats_answer_keeps_one_consistency_row_and_the_runner_state_is_fresh():
    """Locust memoizes /stats/requests (the same Response object for 2 s); the tab's rows
    replace those an earlier request added. /lnchaos/runner reads the runner's state now."""
    from flask import jsonify

    client, _ = web_app(going=True)
    app = client.application
    cached: list[Any] = []

    def memoized() -> Any:
        if not cached:
            cached.append(jsonify(stats=[], state="running", extended_stats=[{"key": "other"}]))
        return cached[0]

    app.view_functions["stats"] = memoized
    for _ in range(3):
        extended = client.get("/stats/requests").get_json()["extended_stats"]
    from locustfiles import web_ui

    assert [e["key"] for e in extended] == ["other", web_ui.TAB_KEY]
    assert client.get("/lnchaos/runner").get_json() == {"state": "running"}


def test_the_tab_shows_the_open_models_dropped_iterations_per_phase():
    open_model = {
        "arrivals": {
            "model": "open",
            "by_phase": {
                "normal": {"offered": 300, "dropped_iterations": 0, "offered_per_s": 30.0,
                           "achieved_per_s": 29.5},
                "spike": {"offered": 1200, "dropped_iterations": 37, "offered_per_s": 120.0,
                          "achieved_per_s": 96.3},
            },
        }
    }  # fmt: skip
    rows = {row["name"]: row for row in consistency_view.arrival_rows(open_model)}
    assert rows["spike"]["dropped_iterations"] == 37 and rows["spike"]["offered_per_s"] == "120.0"
    assert rows["normal"]["dropped_iterations"] == 0 and rows["normal"]["achieved_per_s"] == "29.5"
    # the closed model drops nothing: no table
    assert consistency_view.arrival_rows({"arrivals": {"model": "closed", "by_phase": {}}}) == []
    assert consistency_view.arrival_rows({}) == []
