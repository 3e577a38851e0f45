"""The money, shown: one rendering of a run's consistency report (checker.build_report's document)
for the web UI's Consistency tab (locustfiles/web_ui.py), Locust's --html report and the
consistency CSV beside Locust's --csv files. No HTTP and no Locust here; tests call it directly.

- `chart_svg`: cumulative inconsistencies and balance drift (msat) over the run, phases shaded
  (the spike darker), each control change a dashed line with what changed;
- `html_section` / `inject_html`: the verdict and why, inconsistencies per kind (count, msat,
  who found them, the latest example), checks per invariant, timeout rate per phase (configured
  against measured), pending and unresolved payouts, the controls and the payouts after them,
  and the chart, as a self-contained block put before Locust's report's `</body>`;
- `csv_rows` / `write_csv`: PREFIX_consistency.csv (record, name, count, amount_msat, detail): the
  verdict, each kind, the total, drift, the timeout rate per phase, the controls. (The checks and
  faults as counted events are PREFIX_consistency_checks.csv, written by locustfiles/counters.py.)
"""

from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lnchaos.checker.kinds import RECONCILED_KINDS

CSV_COLUMNS = ("record", "name", "count", "amount_msat", "detail")
EXAMPLE_MAX_CHARS = 240
CHART_WIDTH = 760
CHART_HEIGHT = 240
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 96, 28, 34
SECTION_ID = "lnchaos-consistency"
# Colours: inconsistencies red, drift blue, the spike shaded orange, controls purple.
RED, BLUE, SPIKE, PHASE, CONTROL = "#c62828", "#1565c0", "#ffe0b2", "#f1f1f1", "#6a1b9a"


def msat(value: Any) -> str:
    """An msat amount with thousands separators (and the sat beside it when it is large)."""
    if value is None:
        return ""
    number = int(value)
    text = f"{number:,} msat"
    if abs(number) >= 100_000:
        text += f" ({number / 1000:,.0f} sat)"
    return text


def after_control(changes: list[dict[str, Any]], reconciliation: dict[str, Any]) -> dict[str, Any]:
    """The payouts started after a control change, as the target's reconciliation judged them
    (GET /admin/reconciliation?since_ms=<the change's marker>): each under the mode it started
    with. The reconciliation groups by payment hash, and a hash counts from its newest payout: a
    hash paid before the change and again after it (the `shared` traffic class pays one invoice
    twice) carries its earlier payout's damage into this window."""
    kinds = {
        kind: int((reconciliation.get(kind) or {}).get("count", 0)) for kind in RECONCILED_KINDS
    }
    payouts = reconciliation.get("payouts") or {}
    examples = []
    for kind in kinds:
        found = reconciliation.get(kind) or {}
        listed = found.get("examples") or [{"payout_id": i} for i in found.get("payout_ids") or []]
        examples += [{"kind": kind, **example} for example in listed[:3]]
    return {
        "t_s": changes[0].get("t_s"),
        "target_ms": changes[0].get("target_ms"),
        "changes": [f"{c['what']}: {c['from']} -> {c['to']}" for c in changes],
        "payouts": sum(int(v) for v in payouts.values()) if isinstance(payouts, dict) else 0,
        "timeouts": dict(reconciliation.get("timeouts") or {}),
        "inconsistencies": kinds,
        "inconsistencies_total": sum(kinds.values()),
        "examples": examples,
    }


# ---- the chart ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scale:
    """The chart's axes: time to x, a count to y (left axis), a drift to y (right axis)."""

    end_s: float
    top_count: int
    low_drift: int
    high_drift: int
    w: float = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    h: float = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def x(self, t_s: float) -> float:
        return MARGIN_LEFT + self.w * min(max(t_s, 0.0), self.end_s) / self.end_s

    def y_count(self, n: float) -> float:
        return MARGIN_TOP + self.h - self.h * n / self.top_count

    def y_drift(self, v: float) -> float:
        span = self.high_drift - self.low_drift
        return MARGIN_TOP + self.h - self.h * (v - self.low_drift) / span


def chart_svg(report: dict[str, Any]) -> str:
    """An inline SVG of the timeline: no script, no external file (it goes into reports)."""
    timeline = report.get("timeline") or []
    controls = report.get("controls") or []
    end_s = max(
        [float(report.get("duration_s") or 0.0), 1.0]
        + [float(p.get("t_s") or 0.0) for p in timeline]
        + [float(c.get("t_s") or 0.0) for c in controls]
    )
    incons = [int(p.get("inconsistencies") or 0) for p in timeline]
    drift = [int(p.get("drift_msat") or 0) for p in timeline]
    low_drift, high_drift = min([*drift, 0]), max([*drift, 0])
    if low_drift == high_drift:
        high_drift = low_drift + 1000
    scale = _Scale(end_s, max([*incons, 1]), low_drift, high_drift)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" '
        f'viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" font-family="sans-serif" font-size="11" '
        'role="img" aria-label="cumulative inconsistencies and drift over time">',
        f'<rect x="0" y="0" width="{CHART_WIDTH}" height="{CHART_HEIGHT}" fill="#ffffff"/>',
        *_phase_parts(scale, report.get("phases") or []),
        *_axes_parts(scale),
        *_line_parts(scale, timeline, incons, drift),
        *_control_parts(scale, controls),
        f'<text x="{MARGIN_LEFT + scale.w / 2:.1f}" y="{CHART_HEIGHT - 4}" text-anchor="middle" '
        f'fill="#555">time since the start of the run; dashed: control changes; '
        f"shaded: phases (spike orange)</text>",
        "</svg>",
    ]
    return "".join(parts)


def _phase_parts(scale: _Scale, phases: list[dict[str, Any]]) -> list[str]:
    """Each phase shaded (the spike orange) and named."""
    x, h = scale.x, scale.h
    parts = []
    for phase in phases:
        start = float(phase.get("start_s") or 0.0)
        stop = phase.get("end_s")
        stop_s = float(stop) if stop is not None else scale.end_s
        fill = SPIKE if phase.get("name") == "spike" else PHASE
        parts.append(
            f'<rect x="{x(start):.1f}" y="{MARGIN_TOP}" width="{max(x(stop_s) - x(start), 0):.1f}" '
            f'height="{h}" fill="{fill}" stroke="#ffffff"/>'
            f'<text x="{x(start) + 3:.1f}" y="{MARGIN_TOP + h - 4}" fill="#777">'
            f"{_e(phase.get('name'))}</text>"
        )
    return parts


def _axes_parts(scale: _Scale) -> list[str]:
    """The three axes, their ticks (whole inconsistencies only) and their titles."""
    w, h = scale.w, scale.h
    parts = [
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + h}" x2="{MARGIN_LEFT + w}" '
        f'y2="{MARGIN_TOP + h}" stroke="#333"/>'
        f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT}" y2="{MARGIN_TOP + h}" '
        f'stroke="{RED}"/>'
        f'<line x1="{MARGIN_LEFT + w}" y1="{MARGIN_TOP}" x2="{MARGIN_LEFT + w}" '
        f'y2="{MARGIN_TOP + h}" stroke="{BLUE}"/>'
    ]
    for fraction in (0.0, 0.5, 1.0):
        count = round(scale.top_count * fraction)
        value = scale.low_drift + (scale.high_drift - scale.low_drift) * fraction
        if fraction in (0.0, 1.0) or 0 < count < scale.top_count:
            parts.append(
                f'<text x="{MARGIN_LEFT - 4}" y="{scale.y_count(count) + 4:.1f}" '
                f'text-anchor="end" fill="{RED}">{count:,}</text>'
            )
        parts.append(
            f'<text x="{MARGIN_LEFT + w + 4}" y="{scale.y_drift(value) + 4:.1f}" fill="{BLUE}">'
            f"{value:,.0f}</text>"
        )
        t_s = scale.end_s * fraction
        parts.append(
            f'<text x="{scale.x(t_s):.1f}" y="{MARGIN_TOP + h + 14}" text-anchor="middle">'
            f"{t_s:.0f} s</text>"
        )
    parts.append(
        f'<text x="{MARGIN_LEFT}" y="14" fill="{RED}">inconsistencies (cumulative)</text>'
        f'<text x="{MARGIN_LEFT + w}" y="14" text-anchor="end" fill="{BLUE}">drift (msat)</text>'
    )
    return parts


def _line_parts(
    scale: _Scale, timeline: list[dict[str, Any]], incons: list[int], drift: list[int]
) -> list[str]:
    """The cumulative inconsistencies (red) and drift (blue) over time."""
    if not timeline:
        return []
    times = [scale.x(float(p.get("t_s") or 0)) for p in timeline]
    points_count = " ".join(
        f"{t:.1f},{scale.y_count(n):.1f}" for t, n in zip(times, incons, strict=True)
    )
    points_drift = " ".join(
        f"{t:.1f},{scale.y_drift(v):.1f}" for t, v in zip(times, drift, strict=True)
    )
    return [
        f'<polyline points="{points_drift}" fill="none" stroke="{BLUE}" stroke-width="1.5"/>'
        f'<polyline points="{points_count}" fill="none" stroke="{RED}" stroke-width="2"/>'
    ]


def _control_parts(scale: _Scale, controls: list[dict[str, Any]]) -> list[str]:
    """Each control change of the run (web UI): a dashed line and what changed."""
    parts = []
    for index, change in enumerate(controls):
        cx = scale.x(float(change.get("t_s") or 0.0))
        label = f"{change.get('what')}: {change.get('from')} \u2192 {change.get('to')}"
        parts.append(
            f'<line x1="{cx:.1f}" y1="{MARGIN_TOP}" x2="{cx:.1f}" y2="{MARGIN_TOP + scale.h}" '
            f'stroke="{CONTROL}" stroke-dasharray="4 3" stroke-width="1.5"/>'
            f'<text x="{cx + 3:.1f}" y="{MARGIN_TOP + 12 + 12 * (index % 4)}" '
            f'fill="{CONTROL}">{_e(label)}</text>'
        )
    return parts


# ---- the tables, as rows --------------------------------------------------------------------


def verdict_line(report: dict[str, Any]) -> tuple[str, str]:
    """(headline, reason): the verdict, or the verdict so far while the run goes."""
    state = report.get("state")
    if state == "no_run":
        return "no run yet", "start a run: the verdict so far shows here while it goes"
    verdict = f"{report.get('verdict')} (exit code {report.get('exit_code')})"
    if state == "running":
        return f"so far: {verdict}", str(report.get("reason"))
    if state == "judging":
        return f"judging (final wait, audit, reconciliation); so far: {verdict}", str(
            report.get("reason")
        )
    return verdict, str(report.get("reason"))


def kind_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per inconsistency kind: count, msat, who found them and the latest example."""
    rows = []
    for kind, entry in sorted(
        (report.get("inconsistencies") or {}).items(), key=lambda item: -item[1]["count"]
    ):
        example = entry.get("last") or (entry.get("examples") or [None])[0]
        by = entry.get("detected_by") or {}
        rows.append(
            {
                "name": kind,
                "kind": kind,
                "count": int(entry.get("count", 0)),
                "amount_msat": int(entry.get("amount_msat", 0)),
                "amount": msat(entry.get("amount_msat", 0)),
                "detected_by": ", ".join(f"{k} {v}" for k, v in by.items() if v) or "checks",
                "example": describe_example(example),
            }
        )
    return rows


def describe_example(example: dict[str, Any] | None) -> str:
    if not example:
        return ""
    if not isinstance(example, dict):
        return str(example)
    parts = [
        f"wallet {example.get('wallet_id')}" if example.get("wallet_id") else "",
        f"payout {example.get('payout_id')}" if example.get("payout_id") else "",
    ]
    if example.get("expected_msat") is not None:
        parts.append(
            f"expected {msat(example.get('expected_msat'))}, "
            f"actual {msat(example.get('actual_msat'))}"
        )
    parts.append(
        f"payout {example.get('payout_status')}, node {example.get('node_status')}"
        if example.get("payout_status") or example.get("node_status")
        else ""
    )
    if example.get("phase"):
        parts.append(f"phase {example.get('phase')}")
    text = "; ".join(p for p in parts if p)
    # a table cell, not the record: consistency.json keeps every field of the example
    return text if len(text) <= EXAMPLE_MAX_CHARS else text[: EXAMPLE_MAX_CHARS - 1] + "\u2026"


def check_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    by_name = ((report.get("checks") or {}).get("by_name")) or {}
    return [
        {"name": name, "passed": int(v.get("passed", 0)), "failed": int(v.get("failed", 0))}
        for name, v in sorted(by_name.items())
    ]


def timeout_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for phase, entry in (report.get("timeout_rate_by_phase") or {}).items():
        configured = entry.get("configured_rate")
        rows.append(
            {
                "name": phase,
                "payouts": int(entry.get("payouts", 0)),
                "timeouts": int(entry.get("timeouts", 0)),
                "measured": f"{float(entry.get('rate') or 0.0):.3f}",
                "configured": f"{float(configured):.3f}" if configured is not None else "",
            }
        )
    return rows


def coverage_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The dangerous windows (consistency.json `coverage`, lnchaos/checker/coverage.py): each
    with whether the settings enable it, how often the run reached it, how often it should
    have, and its state (reached, NOT REACHED: exit 4, or short of expectations: not required)."""
    rows = []
    for window, entry in (report.get("coverage") or {}).items():
        count, expected = int(entry.get("count", 0)), entry.get("expected")
        if not entry.get("enabled"):
            state = "not enabled"
        elif count:
            state = "reached"
        else:
            state = "NOT REACHED" if entry.get("required") else "not reached (not required)"
        witness = entry.get("witness") or {}
        rows.append(
            {
                "name": window,
                "what": entry.get("what", ""),
                "count": count,
                "expected": "" if expected is None else f"{float(expected):.1f}",
                "state": state,
                "witness": witness.get("payout_id") or witness.get("wallet_id") or "",
            }
        )
    return rows


def arrival_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The open model per phase (consistency.json `arrivals`): offered against achieved
    payouts/s and the dropped iterations; none in the closed model (nothing is dropped there)."""
    arrivals = report.get("arrivals") or {}
    if arrivals.get("model") != "open":
        return []
    rows = []
    for phase, entry in (arrivals.get("by_phase") or {}).items():
        offered_per_s, achieved_per_s = entry.get("offered_per_s"), entry.get("achieved_per_s")
        rows.append(
            {
                "name": phase,
                "offered": int(entry.get("offered", 0)),
                "dropped_iterations": int(entry.get("dropped_iterations", 0)),
                "offered_per_s": f"{offered_per_s:.1f}" if offered_per_s is not None else "",
                "achieved_per_s": f"{achieved_per_s:.1f}" if achieved_per_s is not None else "",
            }
        )
    return rows


def unresolved_summary(report: dict[str, Any], target_now: dict[str, Any] | None) -> str:
    """Pending and unresolved payouts, in words: now at the target, and in the run's verdict."""
    parts = []
    if target_now:
        parts.append(
            f"now at the target: {int(target_now.get('pending', 0)):,} pending, "
            f"{int(target_now.get('in_flight', 0)):,} in flight at the node"
        )
    by_outcome = report.get("payouts_by_outcome") or {}
    timeouts = report.get("timeouts") or {}
    parts.append(
        f"payouts answered pending (202): {int(by_outcome.get('pending', 0)):,}; timed out "
        f"(504): {int(by_outcome.get('timeout', 0)):,}; left to the final audit: "
        f"{int(timeouts.get('left_to_reconciliation', 0)):,}"
    )
    unresolved = (report.get("inconsistencies") or {}).get("unresolved")
    parts.append(f"unresolved: {int(unresolved['count']) if unresolved else 0:,}")
    return "; ".join(parts)


# ---- HTML -----------------------------------------------------------------------------------


def html_section(report: dict[str, Any]) -> str:
    """The consistency block of Locust's HTML report (self-contained: inline style and SVG)."""
    blocks = [
        *_html_head(report),
        *_html_run_tables(report),
        f"<p>{_e(unresolved_summary(report, None))}</p>",
        *_html_control_tables(report),
        "</section>",
    ]
    return "\n".join(blocks)


def _html_head(report: dict[str, Any]) -> list[str]:
    """The block's opening: the verdict, its reason and the run in one line."""
    headline, reason = verdict_line(report)
    colour = "#2e7d32" if report.get("verdict") == "pass" else RED
    run = (
        f"fix {report.get('fix')}, shape {report.get('shape')}, seed {report.get('seed')}, "
        f"{report.get('duration_s')} s, {report.get('payouts_per_s')} payouts/s"
    )
    return [
        f'<section id="{SECTION_ID}" style="font-family:sans-serif;margin:24px;'
        'padding:16px;border:1px solid #ccc;background:#fff;color:#222">',
        "<h2>Consistency (lnchaos)</h2>",
        f'<p id="lnchaos-verdict" style="font-size:1.2em;color:{colour}"><b>verdict: '
        f"{_e(headline)}</b></p>",
        f'<p id="lnchaos-reason">{_e(reason)}</p>',
        f"<p>{_e(run)}; inconsistencies: <b>{int(report.get('inconsistencies_total', 0)):,}"
        f"</b>; drift: <b>{_e(msat(report.get('drift_msat', 0)))}</b>; payouts verified: "
        f"{int(report.get('payouts_verified', 0)):,}</p>",
    ]


def _html_run_tables(report: dict[str, Any]) -> list[str]:
    """The kinds, the chart, the windows covered, the checks and the timeout rates."""
    return [
        _table(
            "Inconsistencies per kind",
            ("kind", "count", "amount", "detected by", "latest example"),
            [
                (r["kind"], r["count"], r["amount"], r["detected_by"], r["example"])
                for r in kind_rows(report)
            ],
            "lnchaos-kinds",
        ),
        chart_svg(report),
        _table(
            "Coverage: the dangerous windows the run reached",
            ("window", "what", "count", "expected", "state", "witness"),
            [
                (r["name"], r["what"], r["count"], r["expected"], r["state"], r["witness"])
                for r in coverage_rows(report)
            ],
            "lnchaos-coverage",
        ),
        _table(
            "Checks per invariant",
            ("invariant", "passed", "failed"),
            [(r["name"], r["passed"], r["failed"]) for r in check_rows(report)],
            "lnchaos-checks",
        ),
        _table(
            "Timeout rate per phase",
            ("phase", "payouts", "timeouts", "measured", "configured"),
            [
                (r["name"], r["payouts"], r["timeouts"], r["measured"], r["configured"])
                for r in timeout_rows(report)
            ],
            "lnchaos-timeouts",
        ),
    ]


def _html_control_tables(report: dict[str, Any]) -> list[str]:
    """The controls changed mid-run, and the payouts started after each change."""
    return [
        _table(
            "Control changes",
            ("t (s)", "phase", "what", "from", "to"),
            [
                (c.get("t_s"), c.get("phase"), c.get("what"), c.get("from"), c.get("to"))
                for c in report.get("controls") or []
            ],
            "lnchaos-controls",
        ),
        _table(
            "Payouts started after each control change (the target's reconciliation, by payment "
            "hash: a hash counts from its newest payout)",
            ("from t (s)", "changes", "payouts", "inconsistencies", "timeouts resolved"),
            [
                (
                    a.get("t_s"),
                    "; ".join(a.get("changes") or []),
                    a.get("payouts"),
                    ", ".join(f"{k}={v}" for k, v in (a.get("inconsistencies") or {}).items()),
                    (a.get("timeouts") or {}).get("resolved"),
                )
                for a in report.get("controls_after") or []
            ],
            "lnchaos-controls-after",
        ),
    ]


def inject_html(page: str, report: dict[str, Any]) -> str:
    """Locust's report with the consistency block before its `</body>` (appended if none)."""
    section = html_section(report)
    index = page.rfind("</body>")
    if index < 0:
        return page + section
    return page[:index] + section + page[index:]


def _table(title: str, header: tuple[str, ...], rows: list[tuple[Any, ...]], table_id: str) -> str:
    if not rows:
        return f"<h3>{_e(title)}</h3><p>none</p>"
    cell = "border:1px solid #ddd;padding:3px 8px;text-align:left"
    head = "".join(f'<th style="{cell}">{_e(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="{cell}">{_e(_fmt(v))}</td>' for v in row) + "</tr>"
        for row in rows
    )
    return (
        f'<h3>{_e(title)}</h3><table id="{table_id}" style="border-collapse:collapse">'
        f"<tr>{head}</tr>{body}</table>"
    )


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


# ---- CSV ------------------------------------------------------------------------------------


def csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """PREFIX_consistency.csv's rows (CSV_COLUMNS): for CI, beside Locust's own CSV files."""
    kinds = kind_rows(report)
    before = int(report.get("inconsistencies_before_run_total", 0))
    return [
        _row("verdict", report.get("verdict"), report.get("exit_code"), "", report.get("reason")),
        *(
            _row("inconsistency", row["kind"], row["count"], row["amount_msat"],
                 f"detected by {row['detected_by']}; {row['example']}")
            for row in kinds
        ),
        _row("total", "inconsistencies_total", int(report.get("inconsistencies_total", 0)),
             sum(r["amount_msat"] for r in kinds), f"before this run (not counted): {before}"),
        _row("drift", "drift_msat", "", int(report.get("drift_msat", 0)),
             "sum over failed balance checks of actual - expected"),
        _row("payouts", "payouts_verified", int(report.get("payouts_verified", 0)), "",
             unresolved_summary(report, None)),
        *(
            _row("timeout_rate", row["name"], row["timeouts"], "",
                 f"payouts {row['payouts']}; measured {row['measured']}; "
                 f"configured {row['configured']}")
            for row in timeout_rows(report)
        ),
        *(
            _row("coverage", row["name"], row["count"], "",
                 f"{row['state']}; expected {row['expected'] or '-'}; {row['what']}; "
                 f"witness {row['witness'] or '-'}")
            for row in coverage_rows(report)
        ),
        *_control_rows(report),
    ]  # fmt: skip


def _control_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The controls of the run (web UI) and the payouts reconciled after each."""
    rows = [
        _row("control", change.get("what"), "", "",
             f"t {change.get('t_s')} s, phase {change.get('phase')}: "
             f"{change.get('from')} -> {change.get('to')}")
        for change in report.get("controls") or []
    ]  # fmt: skip
    for after in report.get("controls_after") or []:
        found = ", ".join(f"{k}={v}" for k, v in (after.get("inconsistencies") or {}).items())
        rows.append(
            _row("after_control", "; ".join(after.get("changes") or []),
                 after.get("inconsistencies_total"), "",
                 f"from t {after.get('t_s')} s: {after.get('payouts')} payouts, {found}")
        )  # fmt: skip
    return rows


def _row(record: str, name: Any, count: Any, amount_msat: Any, detail: Any) -> dict[str, Any]:
    return {
        "record": record,
        "name": name,
        "count": count,
        "amount_msat": amount_msat,
        "detail": detail,
    }


def csv_text(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return out.getvalue()


def write_csv(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(csv_text(report), encoding="utf-8")
    tmp.replace(path)
