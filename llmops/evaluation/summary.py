"""From per-sample results to what a report shows: each metric's mean with its 95% CI,
run-level figures (latency percentiles, tokens, cost, errors), and paired comparisons."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmops.evaluation.scoring import SampleResult
from llmops.evaluation.stats import Comparison, Summary, paired, percentile, summarize
from llmops.evaluation.suite import OPERATIONAL


@dataclass(frozen=True)
class VariantSummary:
    name: str
    metrics: dict[str, Summary]  # per-sample metrics and operational figures
    run: dict[str, float]  # p50/p95 latency, tokens, cost, error rate, sample count

    def values(self) -> dict[str, float]:
        """Every figure a gate can name: the metric means and the run-level figures."""
        return {**{name: s.mean for name, s in self.metrics.items()}, **self.run}

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metrics": {k: v.as_dict() for k, v in self.metrics.items()},
            "run": self.run,
        }


def summarize_results(
    name: str,
    results: Sequence[SampleResult],
    metrics: Sequence[str],
    resamples: int = 2000,
    seed: int = 0,
) -> VariantSummary:
    summaries = {}
    for metric in (*metrics, *OPERATIONAL):
        values = [v for r in results if (v := r.value(metric)) is not None]
        if values:
            summaries[metric] = summarize(values, resamples, seed)
    return VariantSummary(name, summaries, _run_figures(results))


def _run_figures(results: Sequence[SampleResult]) -> dict[str, float]:
    ok = [r for r in results if r.error is None]
    latencies = [r.latency_ms for r in ok]
    figures = {
        "samples": float(len(results)),
        "error_rate": (len(results) - len(ok)) / len(results) if results else 0.0,
        "total_tokens": float(sum(r.prompt_tokens + r.completion_tokens for r in ok)),
    }
    if latencies:
        figures["p50_latency_ms"] = percentile(latencies, 50)
        figures["p95_latency_ms"] = percentile(latencies, 95)
    costs = [r.cost_usd for r in ok if r.cost_usd is not None]
    if costs:
        figures["total_cost_usd"] = float(sum(costs))
    return figures


def compare_results(
    a: Sequence[SampleResult],
    b: Sequence[SampleResult],
    metrics: Sequence[str],
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Comparison]:
    """B against A, metric by metric, on the samples (by id) where both have a value."""
    by_id = {r.id: r for r in b}
    comparisons = {}
    for metric in (*metrics, "latency_ms"):
        pairs = [
            (va, vb)
            for r in a
            if r.id in by_id
            and (va := r.value(metric)) is not None
            and (vb := by_id[r.id].value(metric)) is not None
        ]
        if pairs:
            xs, ys = zip(*pairs, strict=True)
            comparisons[metric] = paired(list(xs), list(ys), resamples, seed)
    return comparisons
