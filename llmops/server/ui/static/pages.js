/* The console's pages: playground (ask, streamed answer, sources, feedback), requests (the
   request log with filters, one request in detail with its trace), experiments (variants,
   posteriors, canary, shadow, traffic and rewards over time). */
"use strict";

(() => {
  const { $, node, fmtTime, fmtNum } = Console;

  function showError(id, error) {
    $(id).textContent = error ? String(error.message || error) : "";
  }

  /* ---------------------------------------------------------------- playground */
  let lastRequestId = null;

  function citedText(text, onCite) {
    const out = document.createDocumentFragment();
    const parts = text.split(/(\[\d+\])/);
    for (const part of parts) {
      const m = /^\[(\d+)\]$/.exec(part);
      if (m) {
        out.append(node("button", { type: "button", class: "cite", "data-citation": m[1], onclick: () => onCite(m[1]) }, part));
      } else if (part) {
        out.append(document.createTextNode(part));
      }
    }
    return out;
  }

  function focusSource(n) {
    const item = $(`source-${n}`);
    if (!item) return;
    item.scrollIntoView({ block: "nearest" });
    item.classList.add("flash");
    setTimeout(() => item.classList.remove("flash"), 1200);
  }

  function renderSources(sources) {
    const list = $("sources");
    list.replaceChildren();
    for (const s of sources) {
      const where = [s.source, s.heading, s.page !== null && s.page !== undefined ? `page ${s.page}` : null].filter(Boolean).join(" · ");
      list.append(node("li", { id: `source-${s.citation}`, class: s.cited ? "source cited" : "source" },
        node("div", { class: "source-head" },
          node("span", { class: "badge" }, `[${s.citation}]`),
          node("span", { class: "where" }, where),
          s.cited ? node("span", { class: "badge cited-badge" }, "cited") : null,
          node("span", { class: "muted" }, `score ${fmtNum(s.score)}`)),
        node("blockquote", {}, s.snippet)));
    }
    if (!sources.length) list.append(node("li", { class: "muted" }, "no sources"));
  }

  function renderAnswer(answer) {
    lastRequestId = answer.request_id;
    const box = $("answer");
    box.replaceChildren(citedText(answer.answer, focusSource));
    box.classList.toggle("abstained", answer.abstained);
    $("answer-meta").replaceChildren(...[
      node("span", { class: "badge variant" }, `variant: ${answer.variant}`),
      node("span", {}, `generator ${answer.generator}`),
      node("span", {}, `${fmtNum(answer.latency_ms, 4)} ms`),
      answer.abstained ? node("span", { class: "badge warn" }, "abstained") : null,
      node("span", { class: "muted mono", id: "answer-request-id" }, answer.request_id),
    ].filter(Boolean));
    renderSources(answer.sources);
    $("feedback").hidden = false;
    $("feedback-status").textContent = "";
    for (const b of [$("thumbs-up"), $("thumbs-down")]) b.disabled = false;
  }

  async function ask(event) {
    event.preventDefault();
    showError("ask-error", null);
    const question = $("question").value.trim();
    if (!question) return;
    $("ask").disabled = true;
    $("answer-panel").hidden = false;
    $("feedback").hidden = true;
    $("answer").replaceChildren();
    $("answer").classList.add("streaming");
    $("answer-meta").replaceChildren(node("span", { class: "muted" }, "answering…"));
    $("sources").replaceChildren();
    const body = { question, stream: true };
    const user = $("user-id").value.trim();
    if (user) body.user = user;
    try {
      await Api.stream("/query", body, (kind, data) => {
        if (kind === "token") $("answer").append(document.createTextNode(data.text));
        else if (kind === "answer") renderAnswer(data);
        else if (kind === "error") showError("ask-error", data.detail);
      });
    } catch (error) {
      $("answer-panel").hidden = true;
      showError("ask-error", error);
    } finally {
      $("answer").classList.remove("streaming");
      $("ask").disabled = false;
    }
  }

  async function rate(thumbs) {
    const comment = $("comment").value.trim();
    const body = { request_id: lastRequestId, thumbs };
    if (comment) body.comment = comment;
    try {
      const reply = await Api.post("/feedback", body);
      $("feedback-status").textContent = reply.variant
        ? `Thanks: recorded (${thumbs}), credited to variant ${reply.variant}.`
        : `Thanks: recorded (${thumbs}).`;
      for (const b of [$("thumbs-up"), $("thumbs-down")]) b.disabled = true;
    } catch (error) {
      $("feedback-status").textContent = `Not recorded: ${error.message}`;
    }
  }

  Console.register("playground", {
    init() {
      $("ask-form").addEventListener("submit", ask);
      $("thumbs-up").addEventListener("click", () => rate("up"));
      $("thumbs-down").addEventListener("click", () => rate("down"));
    },
    show() { $("question").focus(); },
  });

  /* ---------------------------------------------------------------- requests */
  function filters() {
    const form = new FormData($("request-filters"));
    const params = {};
    for (const [k, v] of form.entries()) params[k] = String(v).trim();
    const window = params.window;
    delete params.window;
    if (window) params.since = (Date.now() / 1000 - Number(window)).toFixed(3);
    if (params.feedback === "any") delete params.feedback;
    return params;
  }

  function feedbackText(row) {
    if (row.feedback === null || row.feedback === undefined) return "";
    return `${row.feedback > 0.5 ? "up" : "down"} (${fmtNum(row.feedback)})`;
  }

  async function loadRequests(event) {
    if (event) event.preventDefault();
    showError("requests-error", null);
    let reply;
    try {
      reply = await Api.get("/requests", filters());
    } catch (error) {
      showError("requests-error", error);
      return;
    }
    const tbody = $("requests-table").querySelector("tbody");
    tbody.replaceChildren();
    for (const row of reply.requests) {
      const tr = node("tr", { class: "clickable", "data-request-id": row.request_id, onclick: () => showRequest(row) },
        node("td", {}, fmtTime(row.time)),
        node("td", {}, row.variant || ""),
        node("td", { class: "question" }, (row.question || `(${row.question_mode || "not kept"})`).slice(0, 120)),
        node("td", { class: "num" }, fmtNum(row.latency_ms, 4)),
        node("td", { class: "num" }, fmtNum(row.top_score)),
        node("td", {}, row.abstained ? "yes" : ""),
        node("td", {}, feedbackText(row)));
      tbody.append(tr);
    }
    $("requests-count").textContent = `${reply.count} request(s), newest first (at most ${reply.limit})`;
    const byVariant = new Map();
    for (const row of reply.requests) {
      const v = row.variant || "default";
      if (!byVariant.has(v)) byVariant.set(v, []);
      byVariant.get(v).push([row.time, row.latency_ms]);
    }
    const series = [...byVariant.entries()].map(([name, points]) => ({ name, points: points.reverse() }));
    $("latency-plot").replaceChildren(Charts.lines(series, { yLabel: "latency ms", points: true }));
  }

  function field(label, value) {
    return node("div", { class: "field" }, node("span", { class: "label" }, label), node("span", {}, value ?? "–"));
  }

  function showRequest(row) {
    const detail = $("request-detail");
    detail.hidden = false;
    const scores = (row.retrieved_ids || []).map((id, i) => ({ label: id, value: row.scores[i] ?? 0 }));
    detail.replaceChildren(
      node("h3", {}, `Request ${row.request_id}`),
      node("div", { class: "fields" },
        field("time", fmtTime(row.time)), field("variant", row.variant), field("backend", row.backend),
        field("latency ms", fmtNum(row.latency_ms, 4)), field("tokens in / out", `${row.prompt_tokens ?? "–"} / ${row.completion_tokens ?? "–"}`),
        field("abstained", row.abstained ? "yes" : "no"), field("feedback", feedbackText(row) || "none"),
        field("comment", row.feedback_comment), field("correlation id", row.correlation_id)),
      node("h4", {}, "Question"), node("p", { class: "pre" }, row.question ?? `(${row.question_mode || "not kept"})`),
      node("h4", {}, "Answer"), node("p", { class: "pre" }, row.answer ?? `(${row.answer_mode || "not kept"})`),
      node("h4", {}, "Retrieved passages and scores"),
      scores.length ? Charts.bars(scores, { label: "retrieval scores" }) : node("p", { class: "muted" }, "none"),
      node("div", { id: "trace" }));
    detail.scrollIntoView({ block: "nearest" });
    if (row.trace_id) loadTrace(row.trace_id);
    else $("trace").replaceChildren(node("p", { class: "muted" }, "No trace recorded for this request (tracing off, or not sampled)."));
  }

  /* a trace's spans as a flat list, whether the route sends a list or a tree */
  function flatSpans(trace) {
    const out = [];
    const walk = (s, parent) => {
      out.push(Object.assign({}, s, { parent_id: s.parent_id ?? s.parent_span_id ?? parent }));
      for (const child of s.children || []) walk(child, s.span_id);
    };
    for (const s of trace.spans || trace.roots || [trace]) walk(s, null);
    return out;
  }

  async function loadTrace(traceId) {
    const box = $("trace");
    box.replaceChildren(node("h4", {}, `Trace ${traceId}`));
    try {
      const trace = await Api.get(`/traces/${encodeURIComponent(traceId)}`);
      const spans = flatSpans(trace);
      box.append(Charts.waterfall(spans));
    } catch (error) {
      box.append(node("p", { class: "muted" }, `Trace not available: ${error.message}`));
    }
  }

  Console.register("requests", {
    init() { $("request-filters").addEventListener("submit", loadRequests); },
    show() { loadRequests(); },
  });

  /* ---------------------------------------------------------------- experiments */
  function variantTable(variants) {
    const rows = Object.entries(variants).map(([name, v]) => node("tr", { "data-variant": name },
      node("td", {}, name), node("td", { class: "num" }, v.requests), node("td", { class: "num" }, `${fmtNum(v.share * 100)} %`),
      node("td", { class: "num rewards" }, v.rewards), node("td", { class: "num" }, fmtNum(v.mean_reward)),
      node("td", { class: "num" }, v.posterior_interval ? `${fmtNum(v.posterior_interval[0])} – ${fmtNum(v.posterior_interval[1])}` : "–")));
    return node("table", { id: "variants-table" },
      node("thead", {}, node("tr", {}, ...["variant", "requests", "share", "rewards", "mean reward", "95 % interval"].map((h) => node("th", {}, h)))),
      node("tbody", {}, ...rows));
  }

  function canaryPanel(name, c) {
    const steps = node("div", { class: "stages" }, ...c.stages.map((share, i) =>
      node("span", { class: i + 1 < c.stage ? "stage done" : i + 1 === c.stage ? "stage now" : "stage" }, `${Math.round(share * 100)} %`)));
    return node("div", { class: "panel", id: "canary" },
      node("h3", {}, `Canary: ${name}`),
      steps,
      node("div", { class: "fields" },
        field("stage", `${c.stage} of ${c.stages.length}`), field("share now", `${fmtNum(c.share * 100)} %`),
        field("rolled back", c.rolled_back ? "yes" : "no"),
        field("window", `${c.window.requests} / ${c.window.size} requests, ${c.window.errors} errors`)),
      node("p", { class: c.rolled_back ? "error" : "" }, `Last move: ${c.reason}`),
      ...canaryHistory(c));
  }

  /* the ramp's moves (newest first) as the share over time and a table with the numbers
     that decided each one */
  function canaryHistory(c) {
    if (!c.history.length) return [node("p", { class: "muted", id: "canary-history" }, "No moves yet.")];
    const pct = (share) => `${fmtNum(share * 100)} %`;
    const points = [];
    for (const m of c.history.slice().reverse()) points.push([m.time, m.from_share * 100], [m.time, m.to_share * 100]);
    points.push([Date.now() / 1000, c.share * 100]);
    const rows = c.history.map((m) => node("tr", { class: m.move === "rolled_back" ? "alert" : "" },
      node("td", {}, fmtTime(m.time)), node("td", {}, m.move.replace("_", " ")),
      node("td", {}, `${m.from_stage} (${pct(m.from_share)}) → ${m.to_stage} (${pct(m.to_share)})`),
      node("td", { class: "num" }, m.requests), node("td", { class: "num" }, `${m.errors} (${pct(m.error_rate)})`),
      node("td", { class: "num" }, fmtNum(m.p95_ms, 4)), node("td", {}, m.reason)));
    return [
      node("h4", {}, "Canary share over time"),
      Charts.lines([{ name: "share", points }], { yLabel: "share %" }),
      node("h4", {}, "Moves, newest first"),
      node("table", { id: "canary-history" },
        node("thead", {}, node("tr", {}, ...["time", "move", "stage", "requests", "errors", "p95 ms", "reason"].map((h) => node("th", {}, h)))),
        node("tbody", {}, ...rows)),
    ];
  }

  async function shadowPanel(name, summary) {
    const panel = node("div", { class: "panel", id: "shadow" }, node("h3", {}, `Shadow: ${name}`),
      node("div", { class: "fields" },
        field("runs", summary.runs), field("errors", summary.errors), field("mean agreement", fmtNum(summary.mean_agreement)),
        field("source overlap", fmtNum(summary.mean_source_overlap)),
        field("serving p50 ms", fmtNum(summary.serving_p50_ms)), field("shadow p50 ms", fmtNum(summary.shadow_p50_ms))));
    try {
      const { runs } = await Api.get("/experiments/shadow", { limit: 200 });
      const points = runs.slice().reverse().map((r, i) => [i + 1, r.error ? null : r.agreement]);
      panel.append(node("h4", {}, "Agreement of the newest runs (oldest left)"),
        Charts.lines([{ name: "agreement", points }], { yLabel: "agreement", xFormat: (v) => `run ${Math.round(v)}` }));
    } catch (error) {
      panel.append(node("p", { class: "error" }, error.message));
    }
    return panel;
  }

  function overTime(timeline, colorOf) {
    const starts = timeline.starts, half = timeline.bucket_s / 2;
    const traffic = [], reward = [];
    for (const [name, buckets] of Object.entries(timeline.variants)) {
      const color = colorOf(name);
      traffic.push({ name, color, points: buckets.map((b, i) => [starts[i] + half, b.requests]) });
      let sum = 0, rated = 0;
      reward.push({ name, color, points: buckets.map((b, i) => {
        sum += b.reward_sum; rated += b.rated;
        return [starts[i] + half, rated ? sum / rated : null];
      }) });
    }
    return node("div", { class: "panel", id: "over-time" },
      node("h3", {}, "Traffic per variant (requests per bucket, last 24 hours)"), Charts.lines(traffic, { yLabel: "requests" }),
      node("h3", {}, "Mean reward so far per variant (from the request log's feedback)"), Charts.lines(reward, { yLabel: "mean reward" }));
  }

  async function loadExperiments() {
    showError("experiments-error", null);
    const box = $("experiment");
    let report;
    try {
      report = await Api.get("/experiments");
    } catch (error) {
      box.replaceChildren();
      showError("experiments-error", error);
      return;
    }
    const names = Object.keys(report.variants);
    const colorOf = (name) => Charts.color(names.includes(name) ? names.indexOf(name) : names.length);
    const intervals = Object.entries(report.variants).map(([name, v]) => ({
      name, color: colorOf(name), mean: v.posterior_mean, low: v.posterior_interval && v.posterior_interval[0], high: v.posterior_interval && v.posterior_interval[1],
    }));
    const parts = [
      node("div", { class: "panel" },
        node("h2", {}, `Experiment ${report.experiment}`), node("p", { class: "muted" }, `strategy: ${report.strategy}`),
        variantTable(report.variants),
        node("h3", {}, "Posterior of each variant's mean reward"), Charts.intervals(intervals)),
    ];
    for (const [name, v] of Object.entries(report.variants)) {
      if (v.canary) parts.push(canaryPanel(name, v.canary));
      if (v.shadow) parts.push(await shadowPanel(name, v.shadow));
    }
    try {
      parts.push(overTime(await Api.get("/requests/timeline", { buckets: 48 }), colorOf));
    } catch (error) {
      parts.push(node("p", { class: "error" }, `Over time: ${error.message}`));
    }
    box.replaceChildren(...parts);
  }

  Console.register("experiments", { show() { loadExperiments(); } });
})();
