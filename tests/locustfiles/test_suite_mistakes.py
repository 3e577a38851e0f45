"""A mistaken option gets a clear answer naming it, never a different run (issue 11, item 7):
on the command line exit 2 as argparse's own, in the web UI a refused start."""

from __future__ import annotations

import json
import signal
from types import SimpleNamespace

import pytest
from test_suite_web_ui import entries, http, poll

from locustfiles.options import form_problems, settings_from, value_problem

START_FORM = {"user_count": "2", "spawn_rate": "2", "fix": "on", "shape": "steady"}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["--timeout-rate", "2"],
            "argument --timeout-rate: must be a share within [0, 1], not '2'",
        ),
        (
            ["--max-inconsistencies", "-1"],
            "argument --max-inconsistencies: must be a whole number within [0, ",
        ),
    ],
)
def test_command_line_mistake_exits_2_naming_the_option(locust_run, args, says):
    run = locust_run(["--headless", "-t", "5s", *args])
    assert run.finish(30.0) == 2, run.log_tail()
    log = run.log_tail()
    assert says in log and "Traceback" not in log, log
    assert not (run.report_dir / "consistency.json").exists()  # no run, no target
    assert not (run.report_dir / "target.log").exists()


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("fix", "maybe", "--fix: 'maybe' is not one of off, rollback, on"),
        ("shape", "burst", "--shape: 'burst' is not one of steady, spike"),
        ("timeout_rate", "2", "--timeout-rate: must be a share within [0, 1], not '2'"),
        ("max_inconsistencies", "-1", "--max-inconsistencies: must be a whole number"),
    ],
)
def test_form_mistake_is_named(field, value, says):
    problems = form_problems({**START_FORM, field: value})
    assert len(problems) == 1 and problems[0].startswith(says), problems
    with pytest.raises(ValueError, match=says.split(":")[0]):
        settings_from(SimpleNamespace(**{field: value}))


def test_every_suite_option_is_checked_in_one_place():
    for dest, bad in (
        ("late_settle_rate", "-0.1"),
        ("spike_timeout_rate", "nan"),
        ("retry_share", "x"),
        ("spike_factor", "0"),
        ("final_wait_s", "601"),
        ("seed", "1.5"),
        ("checks", "maybe"),
        ("traffic_mix", "shared=x"),
        ("arrival_rate", "-1"),
        ("arrival_rate", "inf"),
        ("max_payers", "0"),
        ("max_start_delay_ms", "soon"),
        ("arrivals", "bursty"),
    ):
        problem = value_problem(dest, bad)
        assert problem and problem.startswith("--" + dest.replace("_", "-") + ": "), (dest, problem)
    assert form_problems(START_FORM) == []
    # Locust's --profile is a free run label: any text is a label, never a shape
    assert form_problems({**START_FORM, "profile": "burst"}) == []
    assert settings_from(SimpleNamespace(profile="burst")).shape == "steady"


def test_web_ui_refuses_a_start_with_a_mistake_and_starts_no_run(locust_run, free_port):
    base = f"http://127.0.0.1:{free_port}"
    run = locust_run(["--web-host", "127.0.0.1", "--web-port", str(free_port)])
    poll(lambda: http("GET", f"{base}/"), 30.0, "the web UI")
    for field, value, option in (
        ("fix", "maybe", "--fix"),
        ("shape", "burst", "--shape"),
        ("timeout_rate", "2", "--timeout-rate"),
        ("max_inconsistencies", "-1", "--max-inconsistencies"),
        ("arrival_rate", "fast", "--arrival-rate"),
        ("max_payers", "0", "--max-payers"),
        ("host", "", "host"),
        ("host", "http://127.0.0.1:9", "host"),
    ):
        answer = json.loads(http("POST", f"{base}/swarm", {**START_FORM, field: value}))
        assert answer["success"] is False, (field, answer)
        assert answer["message"].startswith(f"not started: {option}: "), answer
        assert "Traceback" not in answer["message"]
        by_name, state = entries(base)
        assert state == "ready", (field, state)
        assert by_name[("", "Aggregated")]["num_requests"] == 0, (field, by_name)
    run.signal(signal.SIGTERM)
    run.finish(30.0)
    assert "web UI start refused: not started: --fix: 'maybe'" in run.log_tail(100_000)
