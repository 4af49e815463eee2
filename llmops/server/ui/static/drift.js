/* The drift page: each signal's evidence over the checks kept (across restarts; −log10 of its
   p-value, above the dashed line = drifted), the latest check and the alerts. */
"use strict";

(() => {
  const { $, node, fmtTime, fmtNum } = Console;

  function evidence(p) { return -Math.log10(Math.max(p, 1e-12)); }

  function latestTable(check) {
    const rows = Object.entries(check.signals).map(([name, s]) => node("tr", { class: s.detected ? "alert" : "", "data-signal": name },
      node("td", {}, name), node("td", { class: "num" }, fmtNum(s.statistic)), node("td", { class: "num" }, fmtNum(s.p_value)),
      node("td", { class: "num" }, fmtNum(s.level)), node("td", { class: "num" }, fmtNum(s.psi)), node("td", {}, s.detected ? "drifted" : "")));
    return node("table", { id: "drift-latest" },
      node("thead", {}, node("tr", {}, ...["signal", "statistic", "p-value", "level", "PSI", ""].map((h) => node("th", {}, h)))),
      node("tbody", {}, ...rows));
  }

  function signalCharts(history) {
    const names = [...new Set(history.flatMap((c) => Object.keys(c.signals)))];
    return names.map((name, i) => {
      const points = history.map((c) => [c.time, c.signals[name] ? evidence(c.signals[name].p_value) : null]);
      const levels = history.map((c) => c.signals[name] && c.signals[name].level).filter((v) => v);
      const rules = levels.length ? [{ y: evidence(levels[levels.length - 1]), label: "drift" }] : [];
      return node("div", { class: "signal-chart", "data-signal": name }, node("h4", {}, name),
        Charts.lines([{ name, points, color: Charts.color(i) }], { yLabel: "−log10 p", rules }));
    });
  }

  function alerts(history) {
    const raised = history.filter((c) => c.alert);
    if (!raised.length) return node("p", { class: "muted", id: "drift-alerts" }, "No alerts in the checks kept.");
    return node("table", { id: "drift-alerts" },
      node("thead", {}, node("tr", {}, node("th", {}, "time"), node("th", {}, "drifted signals"), node("th", {}, "window"))),
      node("tbody", {}, ...raised.slice().reverse().map((c) => node("tr", { class: "alert" },
        node("td", {}, fmtTime(c.time)), node("td", {}, c.drifted.join(", ")),
        node("td", {}, `${c.current_size} queries vs ${c.reference_size}`)))));
  }

  async function load() {
    $("drift-error").textContent = "";
    let report;
    try {
      report = await Api.get("/drift");
    } catch (error) {
      $("drift-error").textContent = error.message;
      return;
    }
    const box = $("drift");
    if (!report.enabled) {
      box.replaceChildren(node("div", { class: "panel" }, node("p", {},
        "Drift checks are off for this app: give monitoring.drift.reference in its config (see docs/monitoring.md).")));
      return;
    }
    const s = report.settings, history = report.history;
    const head = node("div", { class: "panel" }, node("h2", {}, "Drift"),
      node("p", { class: "muted", id: "drift-kept" }, `${report.kept} check(s) kept, ${report.checks} of them by this process ` +
        `(the newest ${history.length} shown); each compares the last ${s.window} queries with the reference, ` +
        `every ${s.every_requests ?? "–"} requests or ${s.every_minutes ?? "–"} minutes, false-alarm rate ${s.alpha}.`));
    if (!history.length) {
      head.append(node("p", {}, "No check yet: a check needs 20 queries in the current window."));
      box.replaceChildren(head);
      return;
    }
    const last = history[history.length - 1];
    head.append(node("h3", {}, `Latest check, ${fmtTime(last.time)}: ${last.detected ? "drift in " + last.drifted.join(", ") : "no drift"}`),
      latestTable(last));
    box.replaceChildren(head,
      node("div", { class: "panel" }, node("h3", {}, "Each signal over the checks (above the dashed line: drifted)"), ...signalCharts(history)),
      node("div", { class: "panel" }, node("h3", {}, "Alerts"), alerts(history)));
  }

  Console.register("drift", { show() { load(); } });
})();
