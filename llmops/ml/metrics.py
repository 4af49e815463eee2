"""How good a fitted model is: classification (accuracy, F1, ROC AUC, log loss, Brier) and
regression (RMSE, MAE, R²) metrics, overall and per slice (the groups of a column)."""

from __future__ import annotations

from typing import Any

from llmops.config.model_app import Task
from llmops.deps import require

LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})
CLASSIFICATION = ("accuracy", "f1", "roc_auc", "log_loss", "brier")
REGRESSION = ("rmse", "mae", "r2")
MIN_SLICE_ROWS = 30  # smaller groups are too noisy to report


def metric_names(task: Task) -> tuple[str, ...]:
    return CLASSIFICATION if task == "classification" else REGRESSION


def positive_label(model: Any, positive: str | None) -> Any:
    """The class whose probability is scored: the configured one, else the last class."""
    classes = list(model.classes_)
    if positive is None:
        return classes[-1]
    matches = [c for c in classes if str(c) == positive]
    if not matches:
        raise ValueError(f"positive_class '{positive}' is not a class: {classes}")
    return matches[0]


def score(
    model: Any, features: Any, truth: Any, task: Task, positive: str | None
) -> dict[str, float]:
    """Every metric of ``task`` for ``model`` on these rows."""
    if task == "regression":
        return _regression(truth, model.predict(features))
    return _classification(model, features, truth, positive)


def _classification(
    model: Any, features: Any, truth: Any, positive: str | None
) -> dict[str, float]:
    m = require("sklearn.metrics", "ml")
    np = require("numpy", "ml")
    probabilities = model.predict_proba(features)
    predicted = model.classes_[probabilities.argmax(axis=1)]
    classes = list(model.classes_)
    out = {"accuracy": float(m.accuracy_score(truth, predicted))}
    if len(classes) == 2:
        label = positive_label(model, positive)
        p = probabilities[:, classes.index(label)]
        hit = (np.asarray(truth) == label).astype(int)
        out["f1"] = float(m.f1_score(hit, (predicted == label).astype(int)))
        out["roc_auc"] = (
            float(m.roc_auc_score(hit, p)) if 0 < hit.sum() < len(hit) else float("nan")
        )
        out["brier"] = float(m.brier_score_loss(hit, p))
    else:
        out["f1"] = float(m.f1_score(truth, predicted, average="macro"))
        out["roc_auc"] = float(
            m.roc_auc_score(truth, probabilities, multi_class="ovr", labels=classes)
        )
        out["brier"] = float("nan")
    out["log_loss"] = float(m.log_loss(truth, probabilities, labels=classes))
    return out


def _regression(truth: Any, predicted: Any) -> dict[str, float]:
    m = require("sklearn.metrics", "ml")
    return {
        "rmse": float(m.root_mean_squared_error(truth, predicted)),
        "mae": float(m.mean_absolute_error(truth, predicted)),
        "r2": float(m.r2_score(truth, predicted)),
    }


def slice_scores(
    model: Any, frame: Any, target: str, task: Task, positive: str | None, column: str
) -> dict[str, dict[str, float]]:
    """The metrics of each group of ``column`` with at least MIN_SLICE_ROWS rows."""
    out = {}
    for group, rows in frame.groupby(column, dropna=False):
        if len(rows) >= MIN_SLICE_ROWS:
            features = rows.drop(columns=[target])
            out[str(group)] = score(model, features, rows[target], task, positive)
    return out


def live_scores(
    predicted: list[Any], truth: list[Any], scores: list[float | None], task: Task, positive: Any
) -> dict[str, float]:
    """Metrics of served predictions against the labels that came back for them: accuracy
    (and ROC AUC from the logged positive-class scores, when both classes are there), or RMSE
    and MAE. Labels are compared as text (JSON may turn 1 into "1")."""
    m = require("sklearn.metrics", "ml")
    if not truth:
        return {}
    if task == "regression":
        y, p = [float(t) for t in truth], [float(v) for v in predicted]
        return {
            "rmse": float(m.root_mean_squared_error(y, p)),
            "mae": float(m.mean_absolute_error(y, p)),
        }
    hits = [str(p) == str(t) for p, t in zip(predicted, truth, strict=True)]
    out = {"accuracy": sum(hits) / len(hits)}
    scored = [
        (str(t) == str(positive), s) for t, s in zip(truth, scores, strict=True) if s is not None
    ]
    if scored and 0 < sum(y for y, _ in scored) < len(scored):
        out["roc_auc"] = float(m.roc_auc_score([y for y, _ in scored], [s for _, s in scored]))
    return out
