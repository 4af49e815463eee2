"""Plots for the HTML report, rendered by matplotlib (Agg backend) as inline SVG text."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from llmops.deps import require
from llmops.evaluation.stats import Comparison, Summary


def _pyplot() -> Any:
    matplotlib = require("matplotlib", "eval")
    matplotlib.use("Agg")
    return require("matplotlib.pyplot", "eval")


def _svg(figure: Any) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    _pyplot().close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog: the SVG sits inside HTML


def metrics_with_ci(summaries: Mapping[str, Mapping[str, Summary]], metrics: Sequence[str]) -> str:
    """Grouped horizontal bars: each metric's mean per variant, with its 95% CI as error bar."""
    plt = _pyplot()
    names = list(summaries)
    height = 0.8 / max(len(names), 1)
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(metrics) * max(len(names), 1) + 1))
    for i, variant in enumerate(names):
        rows = [
            (j, summaries[variant][m]) for j, m in enumerate(metrics) if m in summaries[variant]
        ]
        ys = [j + i * height for j, _ in rows]
        means = [s.mean for _, s in rows]
        errors = [[s.mean - s.low for _, s in rows], [s.high - s.mean for _, s in rows]]
        axes.barh(ys, means, height=height, xerr=errors, capsize=3, label=variant)
    axes.set_yticks([j + height * (len(names) - 1) / 2 for j in range(len(metrics))])
    axes.set_yticklabels(metrics)
    axes.invert_yaxis()
    axes.set_xlabel("mean with 95% bootstrap CI")
    axes.legend(loc="lower right", fontsize="small")
    return _svg(figure)


def distributions(values: Mapping[str, Sequence[float]]) -> str:
    """One box per metric: how the per-sample scores spread."""
    plt = _pyplot()
    names = [n for n, v in values.items() if v]
    figure, axes = plt.subplots(figsize=(7, 0.4 * len(names) + 1))
    axes.boxplot([list(values[n]) for n in names], vert=False, tick_labels=names)
    axes.invert_yaxis()
    axes.set_xlabel("per-sample score")
    return _svg(figure)


def comparison(comparisons: Mapping[str, Comparison], title: str) -> str:
    """Each metric's difference against the baseline with its 95% CI; significant ones
    (p < 0.05) drawn solid, the rest hollow."""
    plt = _pyplot()
    names = list(comparisons)
    figure, axes = plt.subplots(figsize=(7, 0.4 * len(names) + 1))
    for y, name in enumerate(names):
        c = comparisons[name]
        axes.errorbar(
            [c.diff],
            [y],
            xerr=[[c.diff - c.low], [c.high - c.diff]],
            fmt="o",
            capsize=3,
            mfc=None if c.significant else "white",
            color="C0",
        )
    axes.axvline(0, color="grey", linewidth=0.8)
    axes.set_yticks(range(len(names)))
    axes.set_yticklabels(names)
    axes.invert_yaxis()
    axes.set_xlabel("difference vs baseline (95% CI); solid = p < 0.05")
    axes.set_title(title)
    return _svg(figure)
