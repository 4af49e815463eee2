/* The models page: each model's registered versions (metrics, aliases, the ones answering
   here marked), its headline metric across versions, and promote / roll back through the
   admin routes (the key typed in needs the admin scope; a refusal is shown in the page). */
"use strict";

(() => {
  const { $, node, fmtTime, fmtNum } = Console;
  const TARGETS = ["production", "candidate"];  // besides the serving alias and those held
  const MAX_METRIC_COLUMNS = 6;
  let lastMove = null;  // the newest promotion or rollback's reply, shown above the table

  function showError(error) {
    $("models-error").textContent = error ? String(error.message || error) : "";
  }

  function servedText(served) {
    const refs = Object.entries(served);
    return refs.length ? refs.map(([ref, version]) => `${ref} → v${version}`).join(", ") : "nothing";
  }

  /* the metric names to show as columns: the headline first, then the rest by name */
  function metricNames(model) {
    const names = [...new Set(model.versions.flatMap((v) => Object.keys(v.metrics)))].sort();
    const first = names.includes(model.headline) ? [model.headline] : [];
    return [...first, ...names.filter((n) => n !== model.headline)].slice(0, MAX_METRIC_COLUMNS);
  }

  function targets(model) {
    const held = model.versions.flatMap((v) => v.aliases).filter((a) => a !== "previous");
    return [...new Set([model.alias, ...TARGETS, ...held])];
  }

  async function move(path, body) {
    showError(null);
    try {
      lastMove = await Api.post(path, body);
    } catch (error) {
      lastMove = null;
      showError(error);
    }
    await load(true);
  }

  function versionRow(model, v, metrics, target) {
    const served = v.served_as.length > 0;
    const promote = () => move(`/models/${encodeURIComponent(model.name)}/promote`, { version: v.version, to: target.value });
    return node("tr", { "data-version": v.version, class: served ? "served" : "" },
      node("td", {}, `v${v.version}`),
      node("td", {}, fmtTime(v.created)),
      node("td", { class: "mono", title: v.run_id }, v.run_id.slice(0, 8)),
      node("td", { class: "aliases" }, ...v.aliases.map((a) => node("span", { class: "badge" }, a))),
      ...metrics.map((m) => node("td", { class: "num" }, fmtNum(v.metrics[m], 4))),
      node("td", { class: "served-as" }, ...v.served_as.map((ref) => node("span", { class: "badge variant" }, `serving ${ref}`))),
      node("td", {}, node("button", { type: "button", class: "promote", onclick: promote }, "Promote")));
  }

  function versionTable(model, metrics, target) {
    const heads = ["version", "registered", "run", "aliases", ...metrics, "served here", ""];
    return node("table", { class: "versions-table" },
      node("thead", {}, node("tr", {}, ...heads.map((h) => node("th", {}, h)))),
      node("tbody", {}, ...model.versions.map((v) => versionRow(model, v, metrics, target))));
  }

  /* the headline metric (else the first) by version, oldest left */
  function metricPlot(model, metrics) {
    const metric = metrics[0];
    const points = model.versions.slice().reverse().map((v) => [v.version, v.metrics[metric] ?? null]);
    const values = points.map((p) => p[1]).filter((y) => y !== null);
    if (!metric || !values.length) return null;
    const xFormat = (x) => (Number.isInteger(x) ? `v${x}` : "");
    // the axis starts a little below the lowest value (a tenth of it below when all are equal)
    const low = Math.min(...values), pad = (Math.max(...values) - low) / 10 || Math.abs(low) / 10 || 1;
    return node("div", { class: "models-plot" }, node("h3", {}, `${metric} by version`),
      Charts.lines([{ name: metric, points }], { yLabel: metric, xFormat, yFloor: low - pad }));
  }

  function modelPanel(model) {
    const target = node("select", { class: "promote-to" }, ...targets(model).map((a) => node("option", { value: a }, a)));
    const rollback = () => move(`/models/${encodeURIComponent(model.name)}/rollback`, {});
    const metrics = metricNames(model);
    const served = model.served[model.alias];
    return node("div", { class: "panel", "data-model": model.name },
      node("h2", {}, `Model ${model.name}`),
      node("p", { class: "muted served-summary" },
        `Answers follow the alias ${model.alias}: ${served ? `version ${served}` : "no version loaded"}. ` +
        `Answering here: ${servedText(model.served)}.`),
      node("div", { class: "row model-actions" },
        node("label", {}, "Promote to ", target),
        node("button", { type: "button", class: "rollback", onclick: rollback }, "Roll back production")),
      model.versions.length ? versionTable(model, metrics, target)
        : node("p", { class: "muted" }, `No version registered yet: llmops train registers one.`),
      metricPlot(model, metrics));
  }

  function moveText(m) {
    return `${m.model}: ${m.alias} v${m.before ?? "–"} → v${m.version}; answering here: ${servedText(m.served)}`;
  }

  async function load(keepError) {
    if (!keepError) {
      showError(null);
      lastMove = null;
    }
    let reply;
    try {
      reply = await Api.get("/models/registry");
    } catch (error) {
      $("models").replaceChildren();
      showError(error);
      return;
    }
    const result = lastMove ? node("p", { class: "panel move-result", id: "models-result" }, moveText(lastMove)) : null;
    $("models").replaceChildren(...[result, ...reply.models.map(modelPanel)].filter(Boolean));
  }

  Console.register("models", { show() { load(false); } });
})();
