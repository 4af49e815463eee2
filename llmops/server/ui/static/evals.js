/* The evaluations page: the app's eval runs (evaluation.runs_dir) with their gates, one run in
   full (metrics with 95 % intervals, each gate's threshold and verdict, its HTML report), and
   two runs compared sample by sample (head − base, its interval and p-value). */
"use strict";

(() => {
  const { $, node, fmtTime, fmtNum } = Console;
  const HEADLINE = 4;  // metrics of a run shown in the runs table

  function table(id, headings, rows) {
    return node("table", { id },
      node("thead", {}, node("tr", {}, ...headings.map((h) => node("th", {}, h)))),
      node("tbody", {}, ...rows));
  }

  function signed(v) { return `${v >= 0 ? "+" : ""}${fmtNum(v)}`; }
  function pText(p) { return p < 0.001 ? "<0.001" : fmtNum(p); }
  function interval(s) { return s ? `${fmtNum(s.mean)} [${fmtNum(s.low)}, ${fmtNum(s.high)}]` : "–"; }

  function verdict(passed) {
    return node("span", { class: passed ? "badge ok" : "badge warn" }, passed ? "passed" : "FAILED");
  }

  function gateTally(run) {
    if (!run.finished) return node("span", { class: "badge" }, "unfinished");
    const { passed, failed } = run.gates;
    if (!passed && !failed) return node("span", { class: "muted" }, "no gates");
    return failed ? node("span", { class: "badge warn" }, `${failed} of ${passed + failed} failed`)
      : node("span", { class: "badge ok" }, `all ${passed} passed`);
  }

  /* ------------------------------------------------------------------ the runs */
  function runsTable(runs) {
    const rows = runs.map((r) => node("tr", { class: "clickable", "data-run": r.run, onclick: () => openRun(r.run) },
      node("td", { class: "mono" }, r.run), node("td", {}, r.suite ?? ""), node("td", {}, fmtTime(r.started)),
      node("td", {}, r.variants.join(", ")), node("td", { class: "gates" }, gateTally(r)),
      node("td", {}, Object.entries(r.metrics).slice(0, HEADLINE).map(([m, v]) => `${m} ${fmtNum(v)}`).join(" · ")),
      node("td", { class: "num" }, fmtNum(r.p95_latency_ms, 4))));
    return table("evals-table", ["run", "suite", "started", "variants", "gates", "metrics (baseline)", "p95 ms"], rows);
  }

  function compareForm(finished) {
    const choose = (name, chosen) => {
      const select = node("select", { name }, ...finished.map((r) => node("option", { value: r.run }, r.run)));
      select.value = chosen;
      return select;
    };
    const form = node("form", { id: "compare-form", class: "compare-form" },
      node("label", {}, "Base (A) ", choose("base", finished[Math.min(1, finished.length - 1)].run)),
      node("label", {}, "Head (B) ", choose("head", finished[0].run)),
      node("label", {}, "Variant ", node("input", { name: "variant", value: "baseline", maxlength: "63", required: "" })),
      node("button", { type: "submit" }, "Compare"));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      const data = new FormData(form);
      compare(data.get("base"), data.get("head"), String(data.get("variant")).trim());
    });
    return form;
  }

  async function load() {
    $("evals-error").textContent = "";
    let listing;
    try {
      listing = await Api.get("/evals");
    } catch (error) {
      $("evals-error").textContent = error.message;
      return;
    }
    const head = node("div", { class: "panel" }, node("h2", {}, "Evaluations"));
    const box = $("evals");
    if (!listing.runs.length) {
      head.append(node("p", {}, listing.exists
        ? `No eval runs in ${listing.folder} yet: llmops eval run SUITE writes them there.`
        : `No runs folder at ${listing.folder} (evaluation.runs_dir, relative to the app's config): ` +
          "point it at your suites' results_dir, or run llmops eval run SUITE."));
      box.replaceChildren(head);
      return;
    }
    head.append(node("p", { class: "muted" }, `${listing.count} run(s) in ${listing.folder}, newest first; click one for its details.`),
      runsTable(listing.runs));
    const finished = listing.runs.filter((r) => r.finished);
    const comparing = node("div", { class: "panel" }, node("h3", {}, "Compare two runs"));
    if (finished.length) comparing.append(compareForm(finished));
    comparing.append(node("div", { id: "eval-compare" }));
    box.replaceChildren(head, comparing, node("article", { id: "eval-detail", class: "panel", hidden: "" }));
    if (finished.length >= 2) compare(finished[1].run, finished[0].run, "baseline");
    if (finished.length) openRun(finished[0].run);
  }

  /* ------------------------------------------------------------------ one run */
  function gatesTable(variants) {
    const rows = Object.entries(variants).flatMap(([variant, v]) => v.gates.map((g) =>
      node("tr", { class: g.passed ? "" : "alert", "data-gate": g.gate, "data-variant": variant },
        node("td", {}, variant), node("td", { class: "mono" }, g.gate),
        node("td", { class: "num" }, g.op === undefined ? "–" : `${g.op} ${g.baseline ? `${g.baseline} ${signed(g.threshold)}` : fmtNum(g.threshold, 4)}`),
        node("td", { class: "num" }, fmtNum(g.value, 4)), node("td", {}, verdict(g.passed)),
        node("td", { class: "muted" }, g.note || ""))));
    if (!rows.length) return node("p", { class: "muted", id: "eval-gates" }, "This suite has no gates.");
    return table("eval-gates", ["variant", "gate", "threshold", "value", "verdict", ""], rows);
  }

  function metricsTable(run) {
    const names = Object.keys(run.variants);
    const metrics = [...new Set(names.flatMap((v) => Object.keys(run.variants[v].metrics)))];
    const rows = metrics.map((m) => node("tr", { "data-metric": m }, node("td", {}, m),
      ...names.map((v) => node("td", { class: "num" }, interval(run.variants[v].metrics[m]))),
      node("td", { class: "num" }, Math.max(...names.map((v) => (run.variants[v].metrics[m] || { n: 0 }).n)))));
    return table("eval-metrics", ["metric", ...names, "n"], rows);
  }

  function metricIntervals(run) {
    const names = Object.keys(run.variants);
    const rows = run.scored.flatMap((m) => names.filter((v) => run.variants[v].metrics[m]).map((v) => {
      const s = run.variants[v].metrics[m];
      return { name: names.length > 1 ? `${m} · ${v}` : m, mean: s.mean, low: s.low, high: s.high, color: Charts.color(names.indexOf(v)) };
    }));
    return Charts.intervals(rows, { label: "mean and 95 % interval per metric" });
  }

  function deltaRows(scored, comparisons) {
    return scored.filter((m) => comparisons[m]).map((m) => Object.assign({ name: m }, comparisons[m]));
  }

  /* the report link: the browser opens it; with an API key it is fetched with the key and
     saved, since a link cannot send the Authorization header */
  async function saveReport(event, url, name) {
    if (!Api.key()) return;
    event.preventDefault();
    const response = await fetch(url, { headers: { Authorization: `Bearer ${Api.key()}` } });
    if (!response.ok) {
      $("evals-error").textContent = `The report could not be fetched: ${response.status} ${response.statusText}`;
      return;
    }
    const href = URL.createObjectURL(await response.blob());
    node("a", { href, download: `${name}-report.html` }).click();
    setTimeout(() => URL.revokeObjectURL(href), 10000);
  }

  function detail(run) {
    const parts = [
      node("h3", {}, `Run ${run.run} `, verdict(run.passed)),
      node("div", { class: "fields" },
        node("div", { class: "field" }, node("span", { class: "label" }, "suite"), run.suite ?? "–"),
        node("div", { class: "field" }, node("span", { class: "label" }, "started"), fmtTime(run.started)),
        node("div", { class: "field" }, node("span", { class: "label" }, "dataset"), run.params.dataset ?? "–"),
        node("div", { class: "field" }, node("span", { class: "label" }, "config hash"), run.params.config_hash ?? "–"),
        node("div", { class: "field" }, node("span", { class: "label" }, "report"), run.report_url
          ? node("a", { id: "eval-report", href: run.report_url, target: "_blank", rel: "noopener", onclick: (e) => saveReport(e, run.report_url, run.run) }, "HTML report")
          : "none")),
      node("h4", {}, "Gates"), gatesTable(run.variants),
      node("h4", {}, "Metrics (mean [95 % interval])"), metricsTable(run),
    ];
    if (run.scored.length) parts.push(metricIntervals(run));
    for (const [variant, comparisons] of Object.entries(run.comparisons)) {
      const rows = deltaRows(run.scored, comparisons);
      if (rows.length) parts.push(node("h4", {}, `${variant} − baseline`), Charts.deltas(rows));
    }
    return parts;
  }

  async function openRun(name) {
    const box = $("eval-detail");
    box.hidden = false;
    try {
      box.replaceChildren(...detail(await Api.get(`/evals/${encodeURIComponent(name)}`)));
    } catch (error) {
      box.replaceChildren(node("h3", {}, `Run ${name}`), node("p", { class: "error" }, error.message));
    }
  }

  /* ------------------------------------------------------------------ two runs */
  function compareTable(reply) {
    const rows = Object.entries(reply.metrics).map(([m, c]) => node("tr", { "data-metric": m, class: c.significant ? "significant" : "" },
      node("td", {}, m), node("td", { class: "num" }, fmtNum(c.mean_a)), node("td", { class: "num" }, fmtNum(c.mean_b)),
      node("td", { class: "num diff" }, signed(c.diff)), node("td", { class: "num" }, `[${signed(c.low)}, ${signed(c.high)}]`),
      node("td", { class: "num" }, pText(c.p_value)), node("td", {}, c.significant ? "yes" : "no"), node("td", { class: "num" }, c.n)));
    return table("eval-compare-table", ["metric", "base (A)", "head (B)", "B − A", "95 % interval", "p", "significant", "n"], rows);
  }

  async function compare(base, head, variant) {
    const box = $("eval-compare");
    let reply;
    try {
      reply = await Api.get("/evals/compare", { base, head, variant });
    } catch (error) {
      box.replaceChildren(node("p", { class: "error" }, error.message));
      return;
    }
    const rows = deltaRows(reply.scored, reply.metrics);
    box.replaceChildren(
      node("h4", {}, `${reply.head} (B) − ${reply.base} (A), variant ${reply.variant}`),
      node("p", { class: "muted" }, "On the samples both runs answered: the mean difference, its 95 % bootstrap interval " +
        "and a paired permutation p-value (significant: p < 0.05), as llmops eval compare prints them."),
      rows.length ? Charts.deltas(rows, { label: "head − base per metric" }) : node("p", { class: "muted" }, "No metric to compare: the runs share no scored sample."),
      compareTable(reply));
  }

  Console.register("evals", { show() { load(); } });
})();
