"""The comparison report: each mode's consistency.json and Locust CSVs, side by side.

summary.json (machine), summary.md (a table to paste), report.html (one self-contained file: the
table and the charts as inline PNGs). matplotlib draws the charts: a plotting library people
already trust, rather than SVG by hand.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no screen, and no GUI toolkit pulled in
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from lnchaos.checker.kinds import (  # noqa: E402  (the judge's vocabulary)
    CHARGED_NOT_PAID,
    EXIT_INCONSISTENT,
    PAID_NOT_CHARGED,
)

MODE_COLOURS = {"off": "#c0392b", "rollback": "#e67e22", "on": "#27ae60"}

# What each mode is expected to do under timeouts: (verdict, exit code, the kind it must show).
EXPECTED: dict[str, tuple[str, int, str | None]] = {
    "off": ("fail", EXIT_INCONSISTENT, CHARGED_NOT_PAID),  # the incident
    "rollback": ("fail", EXIT_INCONSISTENT, PAID_NOT_CHARGED),  # a blind refund pays late settles
    "on": ("pass", 0, None),  # the saga: nothing lost while timeouts happen
}

# Why fix off's reconciliation can count more than the timeouts in the table (report and md).
RECONCILIATION_NOTE = (
    "Why fix off's reconciliation count can exceed its timed-out payouts: the table's timeouts "
    "are the answers the users received (504); the target's reconciliation counts every payout "
    "it made in the run, per payment hash, also those whose 504 came after the run had stopped "
    "the user waiting for it (see 'timed out at the target'). Under fix off every timed-out "
    "payout is charged_not_paid: one that fails late was charged and never paid, one that "
    "settles late was charged the whole fee reserve instead of the node's fee."
)


def msat(amount_msat: int | float) -> str:
    """`16,282,166 msat (16,282 sat)`: thousands separators, and sat beside from 1,000 msat."""
    value = int(amount_msat)
    text = f"{value:,} msat"
    if abs(value) >= 1000:
        text += f" ({value / 1000:,.0f} sat)"
    return text


def expected_text(mode: str) -> str:
    verdict, code, kind = EXPECTED.get(mode, ("?", -1, None))
    if kind:
        return f"{verdict} (exit {code}, {kind} > 0)"
    return f"{verdict} (exit {code}, no inconsistency, timeouts resolved)"


def as_expected(row: dict[str, Any]) -> bool:
    verdict, code, kind = EXPECTED.get(row["mode"], ("?", -1, None))
    if (row["verdict"], row["exit_code"]) != (verdict, code):
        return False
    if kind:
        return row[kind]["count"] > 0
    return row["inconsistencies_total"] == 0 and row["timeouts_resolved"] > 0


def mode_summary(mode: str, run_dir: Path, exit_code: int) -> dict[str, Any]:
    """One row of the comparison, from one run's consistency.json and Locust stats."""
    consistency = load_json(run_dir / "consistency.json")
    row: dict[str, Any] = {
        "mode": mode,
        "exit_code": exit_code,
        **_verdict_and_payouts(consistency),
        **_money_found(consistency),
        **_speed_and_coverage(consistency, run_dir),
    }
    row["expected"] = expected_text(mode)
    row["as_expected"] = as_expected(row)
    return row


def _verdict_and_payouts(consistency: dict[str, Any]) -> dict[str, Any]:
    """A row's verdict, settings, payouts by outcome, timeouts and checks."""
    outcomes = consistency.get("payouts_by_outcome", {})
    timeouts = consistency.get("timeouts") or {}
    return {
        "verdict": consistency.get("verdict", "missing"),
        "reason": consistency.get("reason", "no consistency.json"),
        "seed": consistency.get("seed"),
        "shape": consistency.get("shape"),
        "duration_s": consistency.get("duration_s", 0.0),
        "payouts_succeeded": int(outcomes.get("succeeded", 0)),
        "payouts_failed": int(outcomes.get("failed", 0)),
        "payouts_timed_out": int(outcomes.get("timeout", 0)) + int(outcomes.get("pending", 0)),
        "timeouts_resolved": timeouts_resolved(timeouts),
        "timeout_rate_by_phase": {
            phase: values.get("rate", 0.0)
            for phase, values in (consistency.get("timeout_rate_by_phase") or {}).items()
        },
        "checks_failed": int((consistency.get("checks") or {}).get("failed", 0)),
        "checks_passed": int((consistency.get("checks") or {}).get("passed", 0)),
    }


def _money_found(consistency: dict[str, Any]) -> dict[str, Any]:
    """A row's inconsistencies (the two the modes differ by, by count and amount), unresolved
    payouts and the target's reconciliation's word."""
    inconsistencies = consistency.get("inconsistencies", {})
    reconciliation = consistency.get("reconciliation") or {}

    def kind(name: str) -> dict[str, int]:
        found = inconsistencies.get(name) or {}
        return {
            "count": int(found.get("count", 0)),
            "amount_msat": int(found.get("amount_msat", 0)),
        }

    unresolved = inconsistencies.get("unresolved") or reconciliation.get("unresolved") or {}
    return {
        CHARGED_NOT_PAID: kind(CHARGED_NOT_PAID),
        PAID_NOT_CHARGED: kind(PAID_NOT_CHARGED),
        # every payout first answered 504/202 at the target in the run (its reconciliation)
        "target_timeouts": int((reconciliation.get("timeouts") or {}).get("payouts", 0)),
        "inconsistencies_total": int(consistency.get("inconsistencies_total", 0)),
        "unresolved": int(unresolved.get("count", 0)),
        "conserved": reconciliation.get("conserved"),
    }


def _speed_and_coverage(consistency: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A row's throughput, latency (Locust's CSV when consistency.json has none), timeline,
    phases and the dangerous windows reached."""
    latency = consistency.get("payout_latency_ms") or latency_from_csv(run_dir)
    return {
        "payouts_per_s": round(float(consistency.get("payouts_per_s", 0.0)), 2),
        "payout_latency_ms": {k: latency.get(k) for k in ("p50", "p95", "p99")},
        "timeline": consistency.get("timeline", []),
        "phases": consistency.get("phases", []),
        "run_dir": str(run_dir),
        # the dangerous windows (lnchaos/checker/coverage.py): count of each enabled one
        "coverage": {
            window: int(entry.get("count", 0))
            for window, entry in (consistency.get("coverage") or {}).items()
            if entry.get("enabled")
        },
    }


def load_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def latency_from_csv(run_dir: Path) -> dict[str, float | None]:
    """p50/p95/p99 of the payout request from Locust's stats CSV, when the JSON lacks them."""
    path = run_dir / "locust_stats.csv"
    try:
        rows = list(csv.DictReader(path.open()))
    except OSError:
        return {}
    for row in rows:
        if "payout" in row.get("Name", "") and row.get("Type") == "POST":
            return {
                "p50": _num(row.get("50%")),
                "p95": _num(row.get("95%")),
                "p99": _num(row.get("99%")),
            }
    return {}


def _num(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "", "N/A") else None
    except ValueError:
        return None


# ---- the table -------------------------------------------------------------------------------

COLUMNS: list[tuple[str, str]] = [
    ("expected", "verdict expected"),
    ("happened", "verdict happened"),
    ("payouts_succeeded", "payouts succeeded"),
    ("payouts_failed", "payouts failed"),
    ("payouts_timed_out", "payouts timed out (answered to users)"),
    ("target_timeouts", "timed out at the target"),
    ("timeout_rate_normal", "timeout rate (normal)"),
    ("timeout_rate_spike", "timeout rate (spike)"),
    ("checks_failed", "checks failed"),
    ("charged_not_paid", "charged_not_paid (count / amount)"),
    ("paid_not_charged", "paid_not_charged (count / amount)"),
    ("timeouts_resolved", "timed-out payouts resolved"),
    ("unresolved", "unresolved at the end"),
    ("coverage", "coverage: windows reached / enabled (not reached)"),
    ("payouts_per_s", "payouts per second"),
    ("latency", "payout latency p50 / p95 / p99 (ms)"),
]


def cell(row: dict[str, Any], key: str) -> str:
    if key in ("charged_not_paid", "paid_not_charged"):
        return f"{row[key]['count']:,} / {msat(row[key]['amount_msat'])}"
    if key == "happened":
        verdict = f"{row['verdict']} (exit {row['exit_code']})"
        return f"{verdict}: {'as expected' if row['as_expected'] else 'NOT as expected'}"
    if isinstance(row.get(key), int) and key != "exit_code":
        return f"{row[key]:,}"
    if key.startswith("timeout_rate_"):
        phase = key.removeprefix("timeout_rate_")
        rates = row["timeout_rate_by_phase"]
        if phase == "normal":  # every phase that is not the spike is normal traffic
            values = [v for p, v in rates.items() if p != "spike"]
            value = max(values) if values else None
        else:
            value = rates.get(phase)
        return "n/a" if value is None else f"{100 * value:.1f}%"
    if key == "coverage":
        counts = row.get("coverage") or {}
        missing = [window for window, n in counts.items() if not n]
        reached = f"{len(counts) - len(missing)} / {len(counts)}"
        return f"{reached} ({', '.join(missing)})" if missing else reached
    if key == "latency":
        lat = row["payout_latency_ms"]
        return " / ".join(
            "n/a" if lat.get(p) is None else f"{lat[p]:.0f}" for p in ("p50", "p95", "p99")
        )
    return str(row[key])


def table_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    return [[label] + [cell(row, key) for row in rows] for key, label in COLUMNS]


def markdown_table(rows: list[dict[str, Any]]) -> str:
    header = "| | " + " | ".join(f"fix {row['mode']}" for row in rows) + " |"
    rule = "|---|" + "---|" * len(rows)
    body = ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    return "\n".join([header, rule, *body])


def text_table(rows: list[dict[str, Any]]) -> str:
    cells = [["", *[f"fix {row['mode']}" for row in rows]], *table_rows(rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in cells
    )


# ---- the charts ------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _shade_spike(ax: Any, phases: list[dict[str, Any]]) -> None:
    for phase in phases:
        if phase.get("name") == "spike":
            ax.axvspan(phase["start_s"], phase["end_s"], color="#f1c40f", alpha=0.2, lw=0)


def _thousands(value: float, _position: int) -> str:
    return f"{value:,.0f}"


def chart_over_time(
    rows: list[dict[str, Any]], field: str, title: str, unit: str, scale: float = 1.0
) -> str:
    """`field` of each mode's timeline over time, divided by `scale` (1000: msat shown in sat)."""
    fig, ax = plt.subplots(figsize=(8, 3.2))
    shaded = False
    for row in rows:
        timeline = row["timeline"]
        if not shaded and row["phases"]:
            _shade_spike(ax, row["phases"])
            shaded = True
        xs = [point["t_s"] for point in timeline]
        ys = [point.get(field, 0) / scale for point in timeline]
        ax.step(
            xs, ys, where="post", label=f"fix {row['mode']}", color=MODE_COLOURS.get(row["mode"])
        )
    # whole numbers with thousands separators, no 1e7 offset
    ax.yaxis.set_major_formatter(FuncFormatter(_thousands))
    ax.set_title(title + ("  (spike shaded)" if shaded else ""))
    ax.set_xlabel("seconds since start")
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    return _png(fig)


def chart_timeout_rates(rows: list[dict[str, Any]]) -> str:
    phases: list[str] = []
    for row in rows:
        for phase in row["timeout_rate_by_phase"]:
            if phase not in phases:
                phases.append(phase)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / max(1, len(rows))
    for i, row in enumerate(rows):
        values = [100 * row["timeout_rate_by_phase"].get(p, 0.0) for p in phases]
        xs = [j + i * width for j in range(len(phases))]
        ax.bar(xs, values, width, label=f"fix {row['mode']}", color=MODE_COLOURS.get(row["mode"]))
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(phases))], phases)
    ax.set_ylabel("% of payouts timed out")
    ax.set_title("Timeout rate per phase")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    return _png(fig)


# ---- the files -------------------------------------------------------------------------------


def write_report(
    report_dir: Path, rows: list[dict[str, Any]], verdict: dict[str, Any], settings: dict[str, Any]
) -> Path:
    """summary.json, summary.md and report.html in `report_dir`; returns report.html's path."""
    summary = {
        "settings": settings,
        "verdict": verdict,
        "modes": {row["mode"]: {k: v for k, v in row.items() if k != "timeline"} for row in rows},
    }
    (report_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    table = markdown_table(rows)
    (report_dir / "summary.md").write_text(
        f"# {title(rows)}\n\n{settings_line(settings)}\n\n{table}\n\n"
        f"**{verdict['status']}**: {verdict['reason']}\n\n{RECONCILIATION_NOTE}\n"
    )
    charts = {
        "Cumulative inconsistencies": chart_over_time(
            rows, "inconsistencies", "Cumulative inconsistencies", "inconsistencies"
        ),
        "Balance drift": chart_over_time(
            rows,
            "drift_msat",
            "Balance drift (actual - expected)",
            "sat (1 sat = 1,000 msat)",
            scale=1000.0,
        ),
        "Timeout rate per phase": chart_timeout_rates(rows),
        **open_model_charts(rows),
    }
    path = report_dir / "report.html"
    path.write_text(render_html(rows, verdict, settings, charts))
    return path


def title(rows: list[dict[str, Any]]) -> str:
    """`lnchaos compare: fix off vs fix rollback vs fix on`: every mode compared."""
    return "lnchaos compare: " + " vs ".join(f"fix {row['mode']}" for row in rows)


def settings_line(settings: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in settings.items())


def render_html(
    rows: list[dict[str, Any]],
    verdict: dict[str, Any],
    settings: dict[str, Any],
    charts: dict[str, str],
) -> str:
    e = html.escape
    head = "".join(f"<th>fix {e(row['mode'])}</th>" for row in rows)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + "</tr>" for cells in table_rows(rows)
    )
    images = "".join(
        f'<figure><img alt="{e(title)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{e(title)}</figcaption></figure>"
        for title, data in charts.items()
    )
    colour = "#27ae60" if verdict["status"] == "pass" else "#c0392b"
    links = "".join(
        f'<li>fix {e(row["mode"])}: <a href="{e(row["mode"])}/locust.html">Locust report</a>, '
        f'<a href="{e(row["mode"])}/consistency.json">consistency.json</a></li>'
        for row in rows
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title(rows))}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}
td:first-child{{text-align:left}} .verdict{{color:{colour};font-weight:bold}}
figure{{margin:1.5em 0}} img{{max-width:100%}}
</style></head><body>
<h1>{e(title(rows))}</h1>
<p>{e(settings_line(settings))}</p>
<p class="verdict">{e(verdict["status"].upper())}: {e(verdict["reason"])}</p>
<table id="summary"><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>
<p>How to read it: <b>charged_not_paid</b> is money taken from users for payments that never
happened (the incident); <b>paid_not_charged</b> is money paid out without charging anyone (what
a blind rollback of timeouts does when a payment settles late). The fix must show zero of both
while timeouts are happening.</p>
<p>The charts over time show what the users' own checks found as they went; the table adds the
target's reconciliation at the end of each run. Amounts are in millisatoshis (msat; 1 sat =
1,000 msat), with sat beside them.</p>
<p>{e(RECONCILIATION_NOTE)}</p>
{images}
<ul>{links}</ul>
</body></html>
"""


# ---- the open model and time to detect (issue 14) ------------------------------------------


def time_to_detect_s(consistency: dict[str, Any]) -> float | None:
    """Seconds from the start of a run to its first inconsistency found while it ran: the first
    point of consistency.json's timeline (sampled about once a second, so this is an upper
    bound within a second) with an inconsistency; None when none was found during the run.
    `lnchaos compare` reports it for fix off; the bench may call it on any consistency.json."""
    for point in consistency.get("timeline") or []:
        if int(point.get("inconsistencies", 0)) > 0:
            return float(point["t_s"])
    return None


def open_model_row(run_dir: Path) -> dict[str, Any]:
    """The open model's numbers of one run (consistency.json `arrivals`) and its time to detect,
    to add to the run's row of the comparison."""
    consistency = load_json(run_dir / "consistency.json")
    arrivals = consistency.get("arrivals") or {}
    return {
        "time_to_detect_s": time_to_detect_s(consistency),
        "arrivals": {
            "model": arrivals.get("model", "closed"),
            "arrival_rate_per_s": arrivals.get("arrival_rate_per_s"),
            "dropped_iterations": int(arrivals.get("dropped_iterations", 0)),
            "dropped_share": arrivals.get("dropped_share", 0.0),
            "start_delay_ms": arrivals.get("start_delay_ms") or {},
            "latency_from_scheduled_ms": arrivals.get("latency_from_scheduled_ms") or {},
            "by_phase": arrivals.get("by_phase") or {},
        },
    }


def open_model_lines(rows: list[dict[str, Any]]) -> str:
    """What compare prints under its table: time to detect, and per mode offered / achieved /
    dropped."""
    lines = []
    for row in rows:
        detect = row.get("time_to_detect_s")
        if row["mode"] == "off":
            found = "none found while it ran" if detect is None else f"{detect:.0f} s"
            lines.append(f"time to detect (fix off, first inconsistency): {found}")
    for row in rows:
        arrivals = row.get("arrivals") or {}
        phases = arrivals.get("by_phase") or {}
        parts = [
            f"{name} {_rate_text(p.get('offered_per_s'))}/{_rate_text(p.get('achieved_per_s'))}"
            + (f" ({p['dropped_iterations']} dropped)" if p.get("dropped_iterations") else "")
            for name, p in phases.items()
        ]
        if not parts:
            continue
        delay = arrivals.get("start_delay_ms") or {}
        model = arrivals.get("model", "closed")
        text = f"fix {row['mode']} ({model}) payouts/s offered/achieved: " + ", ".join(parts)
        if model == "open":
            text += (
                f"; dropped {arrivals.get('dropped_iterations', 0)}"
                f" ({100 * float(arrivals.get('dropped_share') or 0):.1f}%),"
                f" start delay p99 {_rate_text(delay.get('p99'))} ms"
            )
        lines.append(text)
    return "\n".join(lines)


def _rate_text(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.0f}"


def chart_offered_vs_achieved(rows: list[dict[str, Any]]) -> str | None:
    """Per phase and mode: payouts/s offered (light) against achieved (solid), dropped
    iterations written over the bars. None when no run has per-phase numbers."""
    phases: list[str] = []
    for row in rows:
        for name in (row.get("arrivals") or {}).get("by_phase") or {}:
            if name not in phases:
                phases.append(name)
    if not phases:
        return None
    fig, ax = plt.subplots(figsize=(8, 3.4))
    width = 0.8 / max(1, len(rows))
    top = 0.0
    for i, row in enumerate(rows):
        by_phase = (row.get("arrivals") or {}).get("by_phase") or {}
        xs = [j + i * width for j in range(len(phases))]
        offered = [float(by_phase.get(p, {}).get("offered_per_s") or 0) for p in phases]
        achieved = [float(by_phase.get(p, {}).get("achieved_per_s") or 0) for p in phases]
        colour = MODE_COLOURS.get(row["mode"])
        ax.bar(xs, offered, width, color=colour, alpha=0.25, label=f"fix {row['mode']} offered")
        ax.bar(xs, achieved, width * 0.6, color=colour, label=f"fix {row['mode']} achieved")
        for x, p, height in zip(xs, phases, offered, strict=True):
            dropped = int(by_phase.get(p, {}).get("dropped_iterations") or 0)
            if dropped:
                ax.annotate(str(dropped), (x, height), ha="center", va="bottom", size=7)
        top = max([top, *offered, *achieved])
    ax.set_ylim(0, top * 1.2 + 1)
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(phases))], phases)
    ax.set_ylabel("payouts per second")
    ax.set_title("Payouts/s offered (light) and achieved per phase; over the bars: dropped")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7, ncol=max(1, len(rows)))
    return _png(fig)


def open_model_charts(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The offered/achieved chart, for a comparison of open-model runs (closed runs offer what
    they achieve: the table's payouts per second says it)."""
    if not any((row.get("arrivals") or {}).get("model") == "open" for row in rows):
        return {}
    chart = chart_offered_vs_achieved(rows)
    return {"Offered against achieved payouts/s": chart} if chart else {}


def timeouts_resolved(timeouts: dict[str, Any]) -> int:
    """The timed-out payouts a run resolved: by the node's record of its timeouts (what the
    verdict's exit 4 counts); a report written before the node said so, by the old count: a
    check or the final audit (different payouts), or the reconciliation (may see the same)."""
    if "resolved_by_node_truth" in timeouts:
        return int(timeouts["resolved_by_node_truth"])
    by_users = int(timeouts.get("resolved_by_checks", 0))
    by_users += int(timeouts.get("resolved_by_audit", 0))
    return max(by_users, int(timeouts.get("resolved_by_reconciliation", 0)))
