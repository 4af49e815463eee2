"""The training report's plots as PNG images, drawn by scikit-learn's display helpers on
matplotlib figures rendered by Agg: ROC and calibration curves (binary classification), the
confusion matrix (classification), predicted-vs-true and residuals (regression), and
permutation importance of the input columns.

Figures are ``matplotlib.figure.Figure`` objects, never pyplot's global ones: nothing leaks
between reports, and a notebook's own backend and figures are left alone.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmops.deps import require

EXTRA = "eval"  # a pip extra that installs matplotlib
DPI = 100


@dataclass(frozen=True)
class Plot:
    title: str
    file: str  # e.g. "roc.png", written beside report.md
    png: bytes


def _figure(width: float = 5.5, height: float = 4.5, columns: int = 1) -> tuple[Any, Any]:
    matplotlib = require("matplotlib", EXTRA)
    if "matplotlib.pyplot" not in sys.modules:  # sklearn's displays import pyplot: no GUI
        matplotlib.use("Agg")
    figure = require("matplotlib.figure", EXTRA).Figure(figsize=(width, height))
    return figure, figure.subplots(1, columns)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def roc_curve(truth: Any, probability: Any, positive: Any, name: str) -> Plot:
    metrics = require("sklearn.metrics", "ml")
    figure, axes = _figure()
    metrics.RocCurveDisplay.from_predictions(
        truth, probability, pos_label=positive, name=name, ax=axes, plot_chance_level=True
    )
    axes.set_title(f"ROC curve (positive class: {positive})")
    return Plot("ROC curve", "roc.png", _png(figure))


def calibration_curve(truth: Any, probability: Any, positive: Any, name: str) -> Plot:
    calibration = require("sklearn.calibration", "ml")
    figure, axes = _figure()
    calibration.CalibrationDisplay.from_predictions(
        truth, probability, pos_label=positive, n_bins=10, strategy="quantile", name=name, ax=axes
    )
    axes.set_title(f"Calibration (10 quantile bins, positive class: {positive})")
    return Plot("Calibration curve", "calibration.png", _png(figure))


def confusion_matrix(truth: Any, predicted: Any, classes: list[Any]) -> Plot:
    metrics = require("sklearn.metrics", "ml")
    size = max(4.5, 0.6 * len(classes) + 2.5)
    figure, axes = _figure(size, size * 0.85)
    metrics.ConfusionMatrixDisplay.from_predictions(
        truth, predicted, labels=classes, ax=axes, colorbar=False
    )
    axes.set_title("Confusion matrix (rows: true, columns: predicted)")
    return Plot("Confusion matrix", "confusion_matrix.png", _png(figure))


def prediction_errors(truth: Any, predicted: Any) -> Plot:
    """Predicted against true values beside the residuals against the predictions."""
    metrics = require("sklearn.metrics", "ml")
    figure, (left, right) = _figure(11, 4.5, columns=2)
    for axes, kind in ((left, "actual_vs_predicted"), (right, "residual_vs_predicted")):
        metrics.PredictionErrorDisplay.from_predictions(
            truth, predicted, kind=kind, subsample=2000, random_state=0, ax=axes
        )
    left.set_title("Predicted vs true")
    right.set_title("Residuals")
    return Plot("Predicted vs true, residuals", "prediction_errors.png", _png(figure))


def importance(importances: Mapping[str, tuple[float, float]], score_name: str) -> Plot:
    """Horizontal bars: each column's mean drop in score when shuffled, ± its std."""
    ranked = sorted(importances.items(), key=lambda item: item[1][0])
    figure, axes = _figure(6.5, 0.35 * len(ranked) + 1.2)
    axes.barh(
        [name for name, _ in ranked],
        [mean for _, (mean, _) in ranked],
        xerr=[std for _, (_, std) in ranked],
        capsize=3,
        color="C0",
    )
    axes.axvline(0, color="grey", linewidth=0.8)
    axes.set_xlabel(f"drop in {score_name} when the column is shuffled")
    axes.set_title("Permutation importance (test rows)")
    return Plot("Permutation importance", "importance.png", _png(figure))
