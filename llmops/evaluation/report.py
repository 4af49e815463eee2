"""Reports of an evaluation run: ``report.md`` (tables) and ``report.html`` (the same tables
plus plots as inline SVG, so the page is one self-contained file).

Sections: gates, metrics per variant (mean and 95% CI), run figures (latency, tokens, cost),
each variant against the baseline (difference, CI, p-value), and the worst samples.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from llmops.evaluation import plots
from llmops.evaluation.results import EvalRun
from llmops.evaluation.scoring import SampleResult
from llmops.evaluation.stats import Comparison
from llmops.evaluation.suite import BASELINE
from llmops.tables import STYLE, Table, html_table, markdown_table

WORST = 5


def write_reports(run: EvalRun, folder: Path) -> tuple[Path, Path]:
    md, page = folder / "report.md", folder / "report.html"
    md.write_text(markdown(run), encoding="utf-8")
    page.write_text(html_page(run), encoding="utf-8")
    return md, page


def _tables(run: EvalRun) -> list[tuple[str, Table]]:
    tables = [("Gates", gate_table(run)), ("Metrics (mean [95% CI])", metric_table(run))]
    tables.append(("Run", run_table(run)))
    for name, comparisons in run.comparisons.items():
        tables.append((f"{name} vs {BASELINE}", comparison_table(comparisons)))
    tables.append(("Worst samples", worst_table(run)))
    return tables


def gate_table(run: EvalRun) -> Table:
    rows = [
        [
            variant,
            str(r.gate),
            "—" if r.value is None else f"{r.value:.4g}",
            "pass" if r.passed else "FAIL",
        ]
        for variant, results in run.gates.items()
        for r in results
    ]
    return ["variant", "gate", "value", "result"], rows


def metric_table(run: EvalRun) -> Table:
    variants = list(run.summaries)
    rows = []
    for metric in [*run.metric_names, "latency_ms"]:
        cells = []
        for variant in variants:
            s = run.summaries[variant].metrics.get(metric)
            cells.append("—" if s is None else f"{s.mean:.3f} [{s.low:.3f}, {s.high:.3f}]")
        n = max(
            (
                run.summaries[v].metrics[metric].n
                for v in variants
                if metric in run.summaries[v].metrics
            ),
            default=0,
        )
        rows.append([metric, *cells, str(n)])
    return ["metric", *variants, "n"], rows


def run_table(run: EvalRun) -> Table:
    keys = [
        "samples",
        "error_rate",
        "p50_latency_ms",
        "p95_latency_ms",
        "total_tokens",
        "total_cost_usd",
    ]
    variants = list(run.summaries)
    rows = [
        [
            key,
            *[
                f"{run.summaries[v].run[key]:.4g}" if key in run.summaries[v].run else "—"
                for v in variants
            ],
        ]
        for key in keys
    ]
    return ["figure", *variants], rows


def comparison_table(comparisons: dict[str, Comparison]) -> Table:
    rows = [
        [
            m,
            f"{c.mean_a:.3f}",
            f"{c.mean_b:.3f}",
            f"{c.diff:+.3f}",
            f"[{c.low:+.3f}, {c.high:+.3f}]",
            c.p_text,
            "yes" if c.significant else "no",
            str(c.n),
        ]
        for m, c in comparisons.items()
    ]
    return ["metric", BASELINE, "variant", "diff", "95% CI", "p", "significant", "n"], rows


def worst(samples: Sequence[SampleResult], metric: str, count: int = WORST) -> list[SampleResult]:
    scored = [s for s in samples if s.scores.get(metric) is not None]
    return sorted(scored, key=lambda s: (s.scores[metric] or 0.0, s.id))[:count]


def _focus_metric(run: EvalRun) -> str | None:
    """The metric worst samples are ranked by: the first answer metric, else the first."""
    names = run.metric_names
    answer = [m for m in names if "@" not in m and m != "abstention_accuracy"]
    chosen = answer or names
    return chosen[0] if chosen else None


def worst_table(run: EvalRun) -> Table:
    metric = _focus_metric(run)
    if metric is None:
        return ["id", "score", "question", "answer", "retrieved"], []
    rows = [
        [
            s.id,
            f"{s.scores[metric] or 0:.3f}",
            _short(s.question),
            _short(s.answer),
            ", ".join(s.retrieved_ids[:4]),
        ]
        for s in worst(run.samples[BASELINE], metric)
    ]
    return ["id", metric, "question", "answer", "retrieved"], rows


def _short(text: str, limit: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def markdown(run: EvalRun) -> str:
    spec = run.suite.spec
    status = "PASSED" if run.passed else "FAILED"
    parts = [
        f"# Eval run: {spec.name} — {status}",
        f"App `{spec.app}`, dataset `{spec.dataset.path}`, run folder `{run.run_dir}`."
        + (f" MLflow run `{run.mlflow_run_id}`." if run.mlflow_run_id else ""),
    ]
    for title, table in _tables(run):
        parts += [f"## {title}", markdown_table(table) if table[1] else "(none)"]
    return "\n\n".join(parts) + "\n"


def _figures(run: EvalRun) -> list[tuple[str, str]]:
    metrics = [m for m in run.metric_names if not m.endswith("_ms")]
    summaries = {v: s.metrics for v, s in run.summaries.items()}
    figures = [("Metrics with 95% CIs", plots.metrics_with_ci(summaries, metrics))]
    values = {
        m: [v for s in run.samples[BASELINE] if (v := s.scores.get(m)) is not None] for m in metrics
    }
    if any(values.values()):
        figures.append(("Score distributions (baseline)", plots.distributions(values)))
    for name, comparisons in run.comparisons.items():
        shown = {m: c for m, c in comparisons.items() if m in metrics}
        if shown:
            figures.append((f"{name} vs {BASELINE}", plots.comparison(shown, name)))
    return figures


def html_page(run: EvalRun) -> str:
    spec = run.suite.spec
    status = "PASSED" if run.passed else "FAILED"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(spec.name)} "
        f"eval</title><style>{STYLE}</style></head><body>",
        f"<h1>Eval run: {html.escape(spec.name)} — <span class='{status}'>{status}</span></h1>",
        f"<p>App <code>{html.escape(spec.app)}</code>, dataset "
        f"<code>{html.escape(spec.dataset.path)}</code>.</p>",
    ]
    tables = _tables(run)
    for title, table in tables[:2]:
        parts += [f"<h2>{html.escape(title)}</h2>", html_table(table)]
    for title, svg in _figures(run) if run.metric_names else []:
        parts.append(f"<figure><figcaption><b>{html.escape(title)}</b></figcaption>{svg}</figure>")
    for title, table in tables[2:]:
        parts += [f"<h2>{html.escape(title)}</h2>", html_table(table)]
    parts.append("</body></html>")
    return "\n".join(parts)
