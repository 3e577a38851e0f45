"""The Consistency tab of Locust's own web UI: the money, live, and controls mid-run.

Through Locust's extension points only (its `extend_web_ui` example): an extended tab and table
(`web_ui.template_args`: extended_tabs, extended_tables, extended_csv_files; its rows ride on
`/stats/requests` as `extended_stats`), and routes of our own on Locust's Flask app, behind its
--web-login when that is on. Locust's extended tabs draw tables only, so the rest of the tab (the
verdict so far, the controls, the chart, the other tables) is a small script of ours
(web_ui_static/consistency.js), linked into Locust's index page, that draws into the tab while it
is open. Nothing here judges: every number comes from the controller (controller.live_report:
the master's merged tallies, so several workers are one view) and the target.

Routes (relative to --web-base-path):
    GET  /lnchaos/state            the live view as JSON (state, verdict so far and why, rows)
    POST /lnchaos/control          {fix?, timeout_rate?, late_settle_rate?, failure_rate?} (JSON
                                   or a form): set now, held for the rest of the run; 400 with
                                   {"error", "message"} naming the setting, 409 when no run goes,
                                   502 when the target refused
    GET  /lnchaos/chart.svg        cumulative inconsistencies and drift, phases and controls
    GET  /lnchaos/consistency.csv  the consistency CSV of the run so far
    GET  /lnchaos/consistency.js   the tab's script
The other engineer's counters table (locustfiles/counters.py, `table(environment)`: rows of
type, name, count, failures), when that module exists, is shown on the tab too.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from locustfiles import consistency_view
from locustfiles.admin_client import TargetError
from locustfiles.fault_control import CONTROL_KEYS, ControlError

log = logging.getLogger(__name__)

TAB_KEY = "lnchaos-consistency"
TAB_TITLE = "Consistency"
STATIC_DIR = Path(__file__).with_name("web_ui_static")
SCRIPT = "consistency.js"
# the live view is built at most this often, however many browsers poll
CACHE_S = 0.5
# the target's gauges, read at most this often (GET /metrics)
METRICS_CACHE_S = 1.0
GAUGES = {"pending": "lnchaos_payouts_pending", "in_flight": "lnchaos_node_payments_in_flight"}
MAX_BODY_BYTES = 4096

TABLE_STRUCTURE = [
    {"key": "kind", "title": "Inconsistency"},
    {"key": "count", "title": "Count"},
    {"key": "amount", "title": "Amount"},
    {"key": "detected_by", "title": "Found by"},
    {"key": "example", "title": "Latest example"},
]


def register(environment: Any, controller: Any) -> None:
    """Add the tab and the routes to Locust's web UI (master or local runner; none headless)."""
    web_ui = getattr(environment, "web_ui", None)
    if web_ui is None:
        return
    base = (getattr(environment.parsed_options, "web_base_path", None) or "").rstrip("/")
    view = LiveView(environment, controller)
    _extend_template(web_ui.template_args, base)
    app = web_ui.app
    auth = web_ui.auth_required_if_enabled
    # registered in this order: the live view, the control, the files, then the pages' additions
    _add_view_routes(app, auth, base, environment, view)
    _add_control_route(app, auth, base, controller, view)
    _add_file_routes(app, auth, base, view)
    _add_page_extensions(app, base, view)


def _extend_template(args: dict[str, Any], base: str) -> None:
    """The tab, its table and its CSV download in Locust's page (web_ui.template_args)."""
    args["extended_tabs"] = [
        *args.get("extended_tabs", []),
        {"title": TAB_TITLE, "key": TAB_KEY},
    ]
    args["extended_tables"] = [
        *args.get("extended_tables", []),
        {"key": TAB_KEY, "structure": TABLE_STRUCTURE},
    ]
    args["extended_csv_files"] = [
        *args.get("extended_csv_files", []),
        {"href": f"{base}/lnchaos/consistency.csv", "title": "Download consistency CSV"},
    ]


def _add_view_routes(app: Any, auth: Any, base: str, environment: Any, view: LiveView) -> None:
    """GET /lnchaos/state (the live view) and /lnchaos/runner (the runner's state now)."""
    from flask import jsonify

    @app.route(f"{base}/lnchaos/state", endpoint="lnchaos_state")
    @auth
    def state() -> Any:
        return jsonify(view.state())

    @app.route(f"{base}/lnchaos/runner", endpoint="lnchaos_runner")
    @auth
    def runner_state() -> Any:
        # the runner's state now (Locust's /stats/requests answer is memoized for 2 s): what the
        # tab's script compares with the buttons Locust's UI shows (consistency.js, watchStop)
        return jsonify(state=str(getattr(environment.runner, "state", "")))


def _add_control_route(app: Any, auth: Any, base: str, controller: Any, view: LiveView) -> None:
    """POST /lnchaos/control: settings changed mid-run (see the docstring for its answers)."""
    from flask import jsonify, make_response, request

    @app.route(f"{base}/lnchaos/control", methods=["POST"], endpoint="lnchaos_control")
    @auth
    def control() -> Any:
        changes, error = _control_body(request)
        if error:
            return make_response(jsonify(error="invalid_control", message=error), 400)
        try:
            recorded = controller.control(changes)
        except ControlError as err:
            status = 409 if "no run is going" in str(err) else 400
            code = "no_run" if status == 409 else "invalid_control"
            return make_response(jsonify(error=code, message=str(err)), status)
        except TargetError as err:
            return make_response(jsonify(error="target_failed", message=str(err)), 502)
        view.invalidate()
        return jsonify(success=True, changes=recorded, in_force=view.in_force())


def _add_file_routes(app: Any, auth: Any, base: str, view: LiveView) -> None:
    """GET /lnchaos/chart.svg, /lnchaos/consistency.csv and the tab's script."""
    from flask import Response, make_response

    @app.route(f"{base}/lnchaos/chart.svg", endpoint="lnchaos_chart")
    @auth
    def chart() -> Any:
        return Response(consistency_view.chart_svg(view.report()), mimetype="image/svg+xml")

    @app.route(f"{base}/lnchaos/consistency.csv", endpoint="lnchaos_csv")
    @auth
    def consistency_csv() -> Any:
        response = make_response(consistency_view.csv_text(view.report()))
        response.headers["Content-Type"] = "text/csv"
        response.headers["Content-Disposition"] = (
            f"attachment;filename=consistency_{int(time.time())}.csv"
        )
        return response

    @app.route(f"{base}/lnchaos/{SCRIPT}", endpoint="lnchaos_script")
    def script() -> Any:
        text = (STATIC_DIR / SCRIPT).read_text(encoding="utf-8")
        return Response(text, mimetype="application/javascript")


def _add_page_extensions(app: Any, base: str, view: LiveView) -> None:
    """Locust's own answers extended: our rows in /stats/requests, our script in its index page,
    the consistency section in its HTML report."""
    from flask import request

    @app.after_request
    def extend(response: Any) -> Any:
        path = request.path
        if path == f"{base}/stats/requests" and response.is_json:
            _add_rows(response, view)
        elif path in (f"{base}/", base or "/") and response.mimetype == "text/html":
            _add_script_tag(response, f"{base}/lnchaos/{SCRIPT}")
        elif path == f"{base}/stats/report" and response.mimetype == "text/html":
            page = response.get_data(as_text=True)
            response.set_data(consistency_view.inject_html(page, view.report()))
        return response


def _add_rows(response: Any, view: LiveView) -> None:
    """The tab's table rows into Locust's /stats/requests answer (`extended_stats`)."""
    body = response.get_json()
    rows = consistency_view.kind_rows(view.report())
    # Locust memoizes this answer (the same Response object for 2 s): our row replaces
    # the one a previous request added instead of piling up beside it
    body["extended_stats"] = [
        *(e for e in body.get("extended_stats") or [] if e.get("key") != TAB_KEY),
        {"key": TAB_KEY, "data": rows},
    ]
    response.set_data(json.dumps(body))


def _add_script_tag(response: Any, src: str) -> None:
    """The tab's script linked into Locust's index page, once."""
    page = response.get_data(as_text=True)
    end = page.rfind("</body>")
    if end >= 0 and f'src="{src}"' not in page:
        tag = f'<script src="{src}" defer></script>'
        response.set_data(page[:end] + tag + page[end:])


def _control_body(request: Any) -> tuple[dict[str, Any], str | None]:
    """The changes of a control request (JSON object or form), or an error message."""
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return {}, f"body over {MAX_BODY_BYTES} bytes"
    if request.is_json:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return {}, "body must be a JSON object"
    else:
        body = request.form.to_dict()
    unknown = sorted(set(body) - set(CONTROL_KEYS))
    if unknown:
        return {}, f"{unknown[0]}: not a control (one of {', '.join(CONTROL_KEYS)})"
    return body, None


class LiveView:
    """The live view of the run, built from the controller at most every CACHE_S."""

    def __init__(self, environment: Any, controller: Any) -> None:
        self.environment = environment
        self.controller = controller
        self._report: dict[str, Any] | None = None
        self._built = 0.0
        self._gauges: dict[str, Any] | None = None
        self._gauges_read = 0.0

    def invalidate(self) -> None:
        self._report = None

    def report(self) -> dict[str, Any]:
        now = time.monotonic()
        if self._report is None or now - self._built > CACHE_S:
            self._report = self.controller.live_report()
            self._built = now
        return self._report

    def in_force(self) -> dict[str, Any]:
        fault_control = self.controller.fault_control
        return dict(fault_control.in_force) if fault_control is not None else {}

    def target_now(self) -> dict[str, Any] | None:
        admin = self.controller.admin
        now = time.monotonic()
        if admin is None:
            return None
        if self._gauges is None or now - self._gauges_read > METRICS_CACHE_S:
            self._gauges_read = now
            try:
                found = admin.metrics_gauges(tuple(GAUGES.values()))
                self._gauges = {key: int(found.get(name, 0)) for key, name in GAUGES.items()}
            except TargetError as err:
                log.debug("the target's gauges: %s", err)
                self._gauges = None
        return self._gauges

    def state(self) -> dict[str, Any]:
        report = self.report()
        headline, reason = consistency_view.verdict_line(report)
        state = {
            "state": report.get("state"),
            "locust_state": str(getattr(self.environment.runner, "state", "")),
            "headline": headline,
            "reason": reason,
            "verdict": report.get("verdict"),
            "exit_code": report.get("exit_code"),
            "fix": report.get("fix"),
            "shape": report.get("shape"),
            "seed": report.get("seed"),
            "duration_s": report.get("duration_s"),
            "payouts": sum((report.get("payouts_by_outcome") or {}).values()),
            "payouts_verified": report.get("payouts_verified"),
            "inconsistencies_total": report.get("inconsistencies_total"),
            "inconsistencies_before_run_total": report.get("inconsistencies_before_run_total"),
            "drift_msat": report.get("drift_msat"),
            "drift": consistency_view.msat(report.get("drift_msat") or 0),
            "kinds": consistency_view.kind_rows(report),
            "checks": consistency_view.check_rows(report),
            "timeouts": consistency_view.timeout_rows(report),
            "coverage": consistency_view.coverage_rows(report),
            "arrivals": consistency_view.arrival_rows(report),
            "pending": consistency_view.unresolved_summary(report, self.target_now()),
            "controls": report.get("controls") or [],
            "controls_after": report.get("controls_after") or [],
            "since_last_control": _since_last_control(report),
            "in_force": report.get("in_force") or self.in_force(),
            "phase": (report.get("phases") or [{}])[-1].get("name"),
            "workers": len(report.get("workers") or {}),
            "workers_lost": len(report.get("workers_lost") or []),
            "counters": counters_rows(self.environment),
        }
        return state


def _since_last_control(report: dict[str, Any]) -> dict[str, Any] | None:
    """Inconsistencies the checks found since the last control change (a live hint: payouts
    started before it may still be found for a few seconds; the exact figure per change comes
    from the target's reconciliation at the verdict, `controls_after`)."""
    marked = [p for p in report.get("timeline") or [] if p.get("controls")]
    if not marked:
        return None
    timeline = report.get("timeline") or []
    last = marked[-1]
    now = timeline[-1] if timeline else last
    return {
        "t_s": last.get("t_s"),
        "changes": last.get("controls"),
        "found": int(now.get("inconsistencies", 0)) - int(last.get("inconsistencies", 0)),
    }


def counters_rows(environment: Any) -> list[dict[str, Any]] | None:
    """The counters table (checks and faults as counts, locustfiles/counters.py) if that module
    is there; None otherwise. Hook for the work of issue 11 items 4 and 8."""
    try:
        from locustfiles import counters  # type: ignore[attr-defined]
    except ImportError:
        return None
    table = getattr(counters, "table", None)
    if table is None:
        return None
    try:
        return list(table(environment))
    except Exception as err:  # never let the view fail on another module's table
        log.warning("the counters table failed: %s", err)
        return None
