// The lnchaos Consistency tab (locustfiles/web_ui.py): the verdict so far, controls mid-run, the
// chart and the tables, drawn into Locust's own extended tab while it is open. Plain DOM, no
// framework: Locust's React app owns the page; this script only adds one panel under the tab's
// table and removes it when another tab is chosen. Every number comes from /lnchaos/state.
(function () {
  "use strict";
  var TAB = "lnchaos-consistency";
  var POLL_MS = 1000;
  var CHART_MS = 2000;
  var base = (document.currentScript && document.currentScript.src || "").replace(/\/lnchaos\/consistency\.js.*$/, "");
  var panel = null;
  var lastState = null;
  var lastChart = 0;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function tabOpen() {
    return new URLSearchParams(window.location.search).get("tab") === TAB;
  }

  function build() {
    panel = el("div", { id: "lnchaos-panel", style: "padding:12px 4px;font-family:sans-serif;font-size:14px" });
    panel.innerHTML =
      '<div id="lnchaos-verdict-box" style="margin:8px 0;padding:8px;border:1px solid #bbb;border-radius:4px">' +
      '<b>Verdict: </b><b id="lnchaos-verdict"></b><div id="lnchaos-reason" style="margin-top:4px"></div></div>' +
      '<form id="lnchaos-controls" style="margin:8px 0;display:flex;flex-wrap:wrap;gap:10px;align-items:center">' +
      '<b>Controls (now, held for the rest of the run):</b>' +
      '<label>fix <select name="lnchaos_fix" id="lnchaos-fix"><option>off</option><option>rollback</option><option>on</option></select></label>' +
      '<label>timeout_rate <input name="lnchaos_timeout_rate" id="lnchaos-timeout-rate" size="5"></label>' +
      '<label>late_settle_rate <input name="lnchaos_late_settle_rate" id="lnchaos-late-settle-rate" size="5"></label>' +
      '<label>failure_rate <input name="lnchaos_failure_rate" id="lnchaos-failure-rate" size="5"></label>' +
      '<button type="submit" id="lnchaos-apply">Apply now</button>' +
      '<span id="lnchaos-control-message"></span></form>' +
      '<div id="lnchaos-summary"></div>' +
      '<div id="lnchaos-chart" style="margin:8px 0"></div>' +
      '<div id="lnchaos-tables"></div>';
    var form = panel.querySelector("#lnchaos-controls");
    form.addEventListener("submit", submitControls);
    // what the user is typing is never overwritten by the values in force
    form.addEventListener("input", function () { form.dataset.dirty = "1"; });
    form.addEventListener("change", function () { form.dataset.dirty = "1"; });
  }

  function submitControls(event) {
    event.preventDefault();
    var form = event.target;
    var changes = {};
    ["fix", "timeout_rate", "late_settle_rate", "failure_rate"].forEach(function (name) {
      var value = form.elements["lnchaos_" + name].value.trim();
      var current = lastState && lastState.in_force ? lastState.in_force[name] : undefined;
      if (value !== "" && String(value) !== String(current)) changes[name] = value;
    });
    var message = panel.querySelector("#lnchaos-control-message");
    message.textContent = "applying...";
    message.style.color = "#555";
    fetch(base + "/lnchaos/control", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(changes)
    }).then(function (r) { return r.json().then(function (b) { return [r.ok, b]; }); })
      .then(function (answer) {
        var ok = answer[0], body = answer[1];
        if (ok) {
          message.textContent = body.changes.length
            ? "applied: " + body.changes.map(function (c) { return c.what + " " + c.from + " \u2192 " + c.to + " at " + c.t_s + " s"; }).join("; ")
            : "nothing changed";
          message.style.color = "#2e7d32";
          form.dataset.dirty = "";
        } else {
          message.textContent = body.message || "refused";
          message.style.color = "#c62828";
        }
        poll();
      }).catch(function (err) { message.textContent = String(err); message.style.color = "#c62828"; });
  }

  function table(id, title, header, rows) {
    var wrap = el("div", { style: "margin:10px 0" });
    wrap.appendChild(el("h4", { style: "margin:4px 0" }, title));
    if (!rows.length) { wrap.appendChild(el("div", { id: id, "data-empty": "1" }, "none")); return wrap; }
    var t = el("table", { id: id, style: "border-collapse:collapse" });
    var tr = el("tr");
    header.forEach(function (h) { tr.appendChild(el("th", { style: "border:1px solid #ccc;padding:2px 8px;text-align:left" }, h[1])); });
    t.appendChild(tr);
    rows.forEach(function (row) {
      var r = el("tr", row.name !== undefined ? { "data-name": row.name } : {});
      header.forEach(function (h) {
        r.appendChild(el("td", { style: "border:1px solid #ddd;padding:2px 8px", "data-key": h[0] }, row[h[0]] === null || row[h[0]] === undefined ? "" : row[h[0]]));
      });
      t.appendChild(r);
    });
    wrap.appendChild(t);
    return wrap;
  }

  function render(s) {
    lastState = s;
    var verdict = panel.querySelector("#lnchaos-verdict");
    verdict.textContent = s.headline;
    verdict.style.color = s.verdict === "pass" ? "#2e7d32" : (s.state === "no_run" ? "#555" : "#c62828");
    panel.querySelector("#lnchaos-verdict-box").dataset.state = s.state || "";
    panel.querySelector("#lnchaos-reason").textContent = s.reason || "";
    var form = panel.querySelector("#lnchaos-controls");
    if (s.in_force && !form.dataset.dirty && !form.contains(document.activeElement)) {
      form.elements.lnchaos_fix.value = s.in_force.fix || form.elements.lnchaos_fix.value;
      ["timeout_rate", "late_settle_rate", "failure_rate"].forEach(function (name) {
        var v = s.in_force[name];
        if (v !== undefined && v !== null) form.elements["lnchaos_" + name].value = v;
      });
    }
    var summary = panel.querySelector("#lnchaos-summary");
    summary.textContent = "";
    if (s.state !== "no_run") {
      var line = el("div");
      line.appendChild(document.createTextNode("run: fix " + s.fix + ", shape " + s.shape + ", seed " + s.seed + ", phase " + s.phase + ", " + s.payouts + " payouts, " + s.payouts_verified + " verified; inconsistencies "));
      line.appendChild(el("b", { id: "lnchaos-total" }, s.inconsistencies_total));
      line.appendChild(document.createTextNode("; drift "));
      line.appendChild(el("b", { id: "lnchaos-drift" }, s.drift));
      if (s.workers) line.appendChild(document.createTextNode("; workers " + s.workers + (s.workers_lost ? " (" + s.workers_lost + " lost)" : "")));
      summary.appendChild(line);
      summary.appendChild(el("div", { id: "lnchaos-pending" }, "pending and unresolved: " + s.pending));
      if (s.since_last_control) {
        summary.appendChild(el("div", { id: "lnchaos-since-control", "data-found": s.since_last_control.found },
          "since the last control (" + s.since_last_control.changes.join("; ") + " at " + s.since_last_control.t_s + " s): " +
          s.since_last_control.found + " inconsistencies found (payouts started before it may still be found for a few seconds; the exact figure after the verdict)"));
      }
    }
    var tables = panel.querySelector("#lnchaos-tables");
    tables.textContent = "";
    tables.appendChild(table("lnchaos-kinds", "Inconsistencies per kind", [["kind", "kind"], ["count", "count"], ["amount", "amount"], ["detected_by", "found by"], ["example", "latest example"]], s.kinds || []));
    tables.appendChild(table("lnchaos-checks", "Checks per invariant", [["name", "invariant"], ["passed", "passed"], ["failed", "failed"]], s.checks || []));
    tables.appendChild(table("lnchaos-coverage", "Coverage: the dangerous windows the run reached (a required one never reached: exit 4)", [["name", "window"], ["what", "what"], ["count", "count"], ["expected", "expected"], ["state", "state"], ["witness", "witness"]], s.coverage || []));
    tables.appendChild(table("lnchaos-timeouts", "Timeout rate per phase", [["name", "phase"], ["payouts", "payouts"], ["timeouts", "timeouts"], ["measured", "measured"], ["configured", "configured"]], s.timeouts || []));
    tables.appendChild(table("lnchaos-control-log", "Control changes", [["t_s", "t (s)"], ["phase", "phase"], ["what", "what"], ["from", "from"], ["to", "to"]],
      (s.controls || []).map(function (c) { return Object.assign({ name: c.what }, c); })));
    var after = (s.controls_after || []).map(function (a) {
      return { name: a.changes.join("; "), t_s: a.t_s, payouts: a.payouts, total: a.inconsistencies_total,
        kinds: Object.keys(a.inconsistencies).map(function (k) { return k + "=" + a.inconsistencies[k]; }).join(", "),
        resolved: (a.timeouts || {}).resolved };
    });
    tables.appendChild(table("lnchaos-after-control", "Payouts started after each control (the target's reconciliation at the verdict, by payment hash: a hash counts from its newest payout)", [["t_s", "from t (s)"], ["name", "changes"], ["payouts", "payouts"], ["total", "inconsistencies"], ["kinds", "by kind"], ["resolved", "timeouts resolved"]], after));
    if (s.arrivals && s.arrivals.length) {
      tables.appendChild(table("lnchaos-arrivals", "Open model: offered, achieved, dropped iterations per phase", [["name", "phase"], ["offered", "offered"], ["offered_per_s", "offered/s"], ["achieved_per_s", "achieved/s"], ["dropped_iterations", "dropped"]], s.arrivals));
    }
    if (s.counters) {
      tables.appendChild(table("lnchaos-counters", "Checks and faults (counts)", [["type", "type"], ["name", "name"], ["count", "count"], ["failures", "failures"]], s.counters));
    }
  }

  function chart() {
    fetch(base + "/lnchaos/chart.svg").then(function (r) { return r.text(); }).then(function (svg) {
      if (panel) panel.querySelector("#lnchaos-chart").innerHTML = svg;
    }).catch(function () {});
  }

  function place() {
    if (!tabOpen()) {
      if (panel && panel.parentElement) panel.parentElement.removeChild(panel);
      return false;
    }
    if (!panel) build();
    var tabs = document.querySelector(".MuiTabs-root");
    var host = tabs && tabs.parentElement && tabs.parentElement.parentElement;
    host = host || document.body;
    if (panel.parentElement !== host || host.lastElementChild !== panel) host.appendChild(panel);
    return true;
  }

  function poll() {
    if (!place()) return;
    fetch(base + "/lnchaos/state").then(function (r) { return r.json(); }).then(render).catch(function () {});
    var now = Date.now();
    if (now - lastChart >= CHART_MS) { lastChart = now; chart(); }
  }

  // Locust 2.47's UI polls /stats/requests only while it believes the run is spawning or
  // running, and that answer is memoized for 2 s: an answer computed in the few milliseconds of
  // the runner's "cleanup" (or a master's "stopping") stops its polling for good, so it never
  // shows the stopped run's New button (locust issues 2046, 2400). Watched here on every tab:
  // while Locust's UI shows Stop, the runner's own state is read; once the runner has been
  // stopped for longer than Locust's poll and memo could explain, the page is reloaded, which
  // renders Locust's UI from the runner's state (the open tab is in the URL and kept).
  var STUCK_MS = 8000;
  var stoppedSince = null;

  function showsStop() {
    var texts = Array.prototype.map.call(document.querySelectorAll("button"), function (b) {
      return b.textContent.trim();
    });
    return texts.indexOf("New") < 0 && (texts.indexOf("Stop") >= 0 || texts.indexOf("Loading") >= 0);
  }

  function watchStop() {
    if (!showsStop()) { stoppedSince = null; return; }
    fetch(base + "/lnchaos/runner").then(function (r) { return r.json(); }).then(function (runner) {
      if (runner.state !== "stopped") { stoppedSince = null; return; }
      var now = Date.now();
      if (stoppedSince === null) { stoppedSince = now; return; }
      if (now - stoppedSince >= STUCK_MS && showsStop()) {
        console.warn("lnchaos: Locust's UI missed the end of the run (runner stopped " +
          (now - stoppedSince) + " ms ago); reloading it");
        window.location.reload();
      }
    }).catch(function () {});
  }

  setInterval(watchStop, POLL_MS);
  setInterval(poll, POLL_MS);
  window.addEventListener("popstate", poll);
  document.addEventListener("click", function () { setTimeout(poll, 50); }, true);
  poll();
})();
