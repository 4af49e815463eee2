/* Small inline-SVG plots for the console: lines over time, points, intervals, differences
   with their intervals, bars and a trace waterfall. Each function returns an <svg> element;
   nothing is fetched. */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  // red is kept for failures (a failed span)
  const PALETTE = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#0891b2", "#64748b"];
  const W = 720, H = 220, PAD = { left: 52, right: 120, top: 26, bottom: 28 };

  function el(name, attrs, text) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(width, height, label) {
    return el("svg", { viewBox: `0 0 ${width} ${height}`, width: "100%", role: "img", "aria-label": label });
  }

  function color(i) { return PALETTE[i % PALETTE.length]; }

  function extent(values, floor) {
    let lo = Math.min(...values), hi = Math.max(...values);
    if (floor !== undefined) lo = Math.min(lo, floor);
    if (!isFinite(lo) || !isFinite(hi)) return [0, 1];
    if (hi === lo) hi = lo + 1;
    return [lo, hi];
  }

  function scale([d0, d1], [r0, r1]) {
    return (v) => r0 + ((v - d0) / (d1 - d0)) * (r1 - r0);
  }

  /* a time axis' labels: seconds for a short span, the day for a long one */
  function timeFormat(span) {
    const opts = span < 3600 ? { hour: "2-digit", minute: "2-digit", second: "2-digit" }
      : span < 43200 ? { hour: "2-digit", minute: "2-digit" }
        : { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
    return (seconds) => new Date(seconds * 1000).toLocaleString([], opts);
  }

  function axes(root, x, y, xDomain, yDomain, yLabel, xFormat) {
    const [x0, x1] = xDomain, [y0, y1] = yDomain;
    root.append(el("line", { x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom, class: "axis" }));
    root.append(el("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom, class: "axis" }));
    for (const v of [y0, (y0 + y1) / 2, y1]) {
      root.append(el("text", { x: PAD.left - 6, y: y(v) + 4, class: "tick", "text-anchor": "end" }, +v.toPrecision(3)));
    }
    for (const v of [x0, (x0 + x1) / 2, x1]) {
      root.append(el("text", { x: x(v), y: H - 8, class: "tick", "text-anchor": "middle" }, xFormat(v)));
    }
    root.append(el("text", { x: 4, y: 12, class: "tick" }, yLabel));
  }

  function legend(root, series) {
    series.forEach((s, i) => {
      const y = PAD.top + 14 + i * 16;
      root.append(el("rect", { x: W - PAD.right + 12, y: y - 9, width: 10, height: 10, fill: s.color ?? color(i) }));
      root.append(el("text", { x: W - PAD.right + 26, y, class: "tick" }, s.name));
    });
  }

  /* series: [{name, points: [[x, y], ...], color?}]; y may be null (a gap). Points without a
     neighbour on either side get a dot, so a lone value is seen. */
  function lines(series, { yLabel = "", xFormat = null, yFloor = 0, points = false, rules = [] } = {}) {
    const root = svg(W, H, yLabel);
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null));
    const xs = series.flatMap((s) => s.points.map((p) => p[0]));
    if (!all.length) {
      root.append(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "tick" }, "no data in this window"));
      return root;
    }
    const xd = extent(xs), yd = extent([...all.map((p) => p[1]), ...rules.map((r) => r.y)], yFloor);
    const x = scale(xd, [PAD.left, W - PAD.right]), y = scale(yd, [H - PAD.bottom, PAD.top]);
    axes(root, x, y, xd, yd, yLabel, xFormat || timeFormat(xd[1] - xd[0]));
    for (const rule of rules) {  // a threshold: a dashed line with its label
      root.append(el("line", { x1: PAD.left, y1: y(rule.y), x2: W - PAD.right, y2: y(rule.y), class: "rule" }));
      root.append(el("text", { x: W - PAD.right + 4, y: y(rule.y) + 4, class: "tick" }, rule.label));
    }
    series.forEach((s, i) => {
      const fill = s.color ?? color(i), pts = s.points;
      pts.forEach(([px, py], j) => {
        const lone = (j === 0 || pts[j - 1][1] === null) && (j === pts.length - 1 || pts[j + 1][1] === null);
        if (py !== null && (points || lone)) {
          root.append(el("circle", { cx: x(px), cy: y(py), r: 3, fill, class: "point" }));
        }
      });
      if (points) return;
      let d = "", pen = "M";
      for (const [px, py] of pts) {
        if (py === null) { pen = "M"; continue; }
        d += `${pen}${x(px).toFixed(1)},${y(py).toFixed(1)} `;
        pen = "L";
      }
      root.append(el("path", { d, fill: "none", stroke: fill, "stroke-width": 2, class: "series" }));
    });
    legend(root, series);
    return root;
  }

  /* rows: [{name, mean, low, high}] on a 0..1 axis (posterior intervals). */
  function intervals(rows, { label = "posterior mean reward, 95 % interval" } = {}) {
    const rowH = 28, height = PAD.top + rows.length * rowH + 30;
    const root = svg(W, height, label);
    const x = scale([0, 1], [140, W - 180]);
    const bottom = PAD.top + rows.length * rowH;
    root.append(el("line", { x1: x(0), y1: bottom, x2: x(1), y2: bottom, class: "axis" }));
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      root.append(el("text", { x: x(v), y: bottom + 16, class: "tick", "text-anchor": "middle" }, v));
    }
    rows.forEach((r, i) => {
      const cy = PAD.top + i * rowH + rowH / 2;
      root.append(el("text", { x: 8, y: cy + 4, class: "tick" }, r.name));
      if (r.mean === null || r.mean === undefined) {
        root.append(el("text", { x: x(0), y: cy + 4, class: "tick" }, "no rewards yet"));
        return;
      }
      const fill = r.color ?? color(i);
      root.append(el("line", { x1: x(r.low), y1: cy, x2: x(r.high), y2: cy, stroke: fill, "stroke-width": 3, class: "interval" }));
      root.append(el("circle", { cx: x(r.mean), cy, r: 5, fill }));
      root.append(el("text", { x: x(r.high) + 6, y: cy + 4, class: "tick" }, `${+r.mean.toPrecision(3)} [${+r.low.toPrecision(3)}, ${+r.high.toPrecision(3)}]`));
    });
    return root;
  }

  /* bars: [{label, value}] horizontal, value >= 0. */
  function bars(items, { label = "" } = {}) {
    const rowH = 20, height = items.length * rowH + 8;
    const root = svg(W, height, label);
    const max = Math.max(...items.map((b) => b.value), 1e-9);
    const x = scale([0, max], [260, W - 60]);
    items.forEach((b, i) => {
      const y = 4 + i * rowH;
      root.append(el("text", { x: 252, y: y + 13, class: "tick", "text-anchor": "end" }, b.label.slice(0, 40)));
      root.append(el("rect", { x: 260, y: y + 3, width: Math.max(1, x(b.value) - 260), height: rowH - 6, fill: color(0) }));
      root.append(el("text", { x: x(b.value) + 4, y: y + 13, class: "tick" }, +b.value.toPrecision(3)));
    });
    return root;
  }

  /* spans: [{name, span_id, parent_id, start_ns, end_ns, status}] as a waterfall, children
     under their parents, bars placed by start and end time. */
  function waterfall(spans) {
    const byParent = new Map();
    for (const s of spans) {
      const key = s.parent_id || "";
      if (!byParent.has(key)) byParent.set(key, []);
      byParent.get(key).push(s);
    }
    const ids = new Set(spans.map((s) => s.span_id));
    const roots = spans.filter((s) => !s.parent_id || !ids.has(s.parent_id));
    const ordered = [];
    const visit = (s, depth) => {
      ordered.push([s, depth]);
      const kids = (byParent.get(s.span_id) || []).sort((a, b) => a.start_ns - b.start_ns);
      for (const k of kids) visit(k, depth + 1);
    };
    roots.sort((a, b) => a.start_ns - b.start_ns).forEach((r) => visit(r, 0));
    const t0 = Math.min(...spans.map((s) => s.start_ns)), t1 = Math.max(...spans.map((s) => s.end_ns));
    const rowH = 22, height = ordered.length * rowH + 30;
    const root = svg(W, height, "trace waterfall");
    const x = scale([0, Math.max(t1 - t0, 1)], [240, W - 70]);
    ordered.forEach(([s, depth], i) => {
      const y = 4 + i * rowH, ms = (s.end_ns - s.start_ns) / 1e6;
      const failed = s.status && String(s.status.code || s.status).toUpperCase().includes("ERROR");
      root.append(el("text", { x: 6 + depth * 12, y: y + 14, class: "tick span-name" }, s.name));
      const x0 = x(s.start_ns - t0), x1 = x(s.end_ns - t0);
      const bar = el("rect", { x: x0, y: y + 4, width: Math.max(2, x1 - x0), height: rowH - 8, fill: failed ? "#dc2626" : color(depth), class: "span" });
      const attrs = Object.entries(s.attributes || {}).map(([k, v]) => `${k} = ${v}`).join("\n");
      bar.append(el("title", {}, `${s.name}: ${ms.toFixed(2)} ms${attrs ? "\n" + attrs : ""}`));
      root.append(bar);
      root.append(el("text", { x: Math.max(x1, x0 + 2) + 4, y: y + 14, class: "tick" }, `${ms.toFixed(1)} ms`));
    });
    const total = (t1 - t0) / 1e6;
    root.append(el("text", { x: 240, y: height - 6, class: "tick" }, `0 ms`));
    root.append(el("text", { x: W - 70, y: height - 6, class: "tick", "text-anchor": "end" }, `${total.toFixed(1)} ms`));
    return root;
  }

  /* rows: [{name, diff, low, high, significant}]: differences (B − A) with their 95 %
     intervals on an axis centred on 0; a significant gain green, a significant loss amber,
     the rest grey. */
  function deltas(rows, { label = "difference, 95 % interval" } = {}) {
    const rowH = 28, height = PAD.top + rows.length * rowH + 30;
    const root = svg(W, height, label);
    const reach = Math.max(1e-9, ...rows.flatMap((r) => [Math.abs(r.low), Math.abs(r.high)])) * 1.1;
    const x = scale([-reach, reach], [140, W - 200]);
    const bottom = PAD.top + rows.length * rowH;
    root.append(el("line", { x1: x(0), y1: PAD.top - 6, x2: x(0), y2: bottom, class: "zero" }));
    root.append(el("line", { x1: x(-reach), y1: bottom, x2: x(reach), y2: bottom, class: "axis" }));
    for (const v of [-reach, -reach / 2, 0, reach / 2, reach]) {
      root.append(el("text", { x: x(v), y: bottom + 16, class: "tick", "text-anchor": "middle" }, +v.toPrecision(2)));
    }
    const signed = (v) => `${v >= 0 ? "+" : ""}${+v.toPrecision(3)}`;
    rows.forEach((r, i) => {
      const cy = PAD.top + i * rowH + rowH / 2;
      const fill = !r.significant ? PALETTE[5] : r.diff > 0 ? PALETTE[2] : PALETTE[1];
      const row = el("g", { class: r.significant ? "delta significant" : "delta", "data-metric": r.name });
      row.append(el("text", { x: 8, y: cy + 4, class: "tick" }, r.name));
      row.append(el("line", { x1: x(r.low), y1: cy, x2: x(r.high), y2: cy, stroke: fill, "stroke-width": 3, class: "interval" }));
      row.append(el("circle", { cx: x(r.diff), cy, r: 5, fill }));
      row.append(el("text", { x: W - 190, y: cy + 4, class: "tick" }, `${signed(r.diff)} [${signed(r.low)}, ${signed(r.high)}]`));
      root.append(row);
    });
    return root;
  }

  return { lines, intervals, bars, waterfall, deltas, color };
})();
