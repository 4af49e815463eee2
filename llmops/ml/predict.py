"""Predicting with a fitted model app: rows checked against the app's schema (the rules the
training data followed, row by row), then the model's labels and class probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmops.config.model_app import ModelAppConfig
from llmops.deps import require
from llmops.errors import InvalidRows, RowProblem
from llmops.ml.validation import validate

MAX_PROBLEMS = 20


@dataclass(frozen=True)
class Prediction:
    """One row's answer: the label (or value) and, for classifiers, each class's probability."""

    label: Any
    probabilities: Mapping[str, float] | None = None


def model_columns(model: Any, app: ModelAppConfig) -> list[str]:
    """The columns a fitted model takes: those of the table it was trained on (the target
    aside), which ``fit`` records; the feature columns when it did not."""
    return [str(c) for c in getattr(model, "feature_names_in_", app.features.columns())]


def rows_frame(
    rows: Sequence[Mapping[str, Any]], app: ModelAppConfig, columns: Sequence[str]
) -> Any:
    """The rows as a DataFrame of the model's ``columns``; rows that lack a feature column,
    carry a column the model was not trained with or break the schema raise InvalidRows
    naming row and column. Columns the model takes but does not use may be left out."""
    if not rows:
        raise InvalidRows([RowProblem(None, None, "no rows: send at least one")])
    features = app.features.columns()
    known = set(columns)
    problems = [
        RowProblem(i, column, message)
        for i, row in enumerate(rows)
        for column, message in _shape_problems(row, features, known)
    ]
    if problems:
        raise InvalidRows(problems[:MAX_PROBLEMS])
    frame = features_frame(rows, columns)
    report = validate(frame, app.schema_, app.target, app.task, training=False)
    if not report.ok:
        raise InvalidRows(
            [
                RowProblem(sample.get("index"), v.column, f"fails {v.rule}")
                for v in report.violations
                for sample in v.samples
            ][:MAX_PROBLEMS]
        )
    return frame


def features_frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Any:
    """``rows`` as a DataFrame of ``columns`` (rows already checked; absent ones missing)."""
    pandas = require("pandas", "ml")
    return pandas.DataFrame.from_records(list(rows), columns=list(columns))


def _shape_problems(row: Any, features: list[str], known: set[str]) -> list[tuple[str | None, str]]:
    if not isinstance(row, Mapping):
        return [(None, "a row is an object of column: value")]
    missing = [(c, "missing") for c in features if c not in row]
    unknown = [(str(c), "unknown column") for c in row if c not in known]
    return [*missing, *unknown]


def predict_rows(model: Any, frame: Any) -> list[Prediction]:
    """Labels (and probabilities, when the model has them) for every row of ``frame``."""
    if not hasattr(model, "predict_proba"):
        return [Prediction(_plain(v)) for v in model.predict(frame)]
    probabilities = model.predict_proba(frame)
    classes = [str(c) for c in model.classes_]
    labels = model.classes_[probabilities.argmax(axis=1)]
    return [
        Prediction(_plain(label), dict(zip(classes, map(float, row), strict=True)))
        for label, row in zip(labels, probabilities, strict=True)
    ]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
