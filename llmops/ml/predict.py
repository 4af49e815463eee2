"""Predicting with a fitted model app: rows checked against the app's schema (the rules the
training data followed, row by row), then the model's labels and class probabilities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llmops.config.model_app import ModelAppConfig
from llmops.deps import require
from llmops.errors import InvalidRows, RowProblem
from llmops.ml.validation import build_schema, row_failures

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


class RowChecker:
    """The app's per-row rules (its ``schema:`` section), built once, for rows to predict."""

    def __init__(self, app: ModelAppConfig) -> None:
        self.app = app
        self.schema = build_schema(app.schema_, app.target, app.task, training=False)

    def check_shape(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
        """InvalidRows naming row and column for rows that are not objects, lack a feature
        column or carry one the model was not trained with."""
        if not rows:
            raise InvalidRows([RowProblem(None, None, "no rows: send at least one")])
        features = self.app.features.columns()
        known = set(columns)
        problems = [
            RowProblem(i, column, message)
            for i, row in enumerate(rows)
            for column, message in _shape_problems(row, features, known)
        ]
        if problems:
            raise InvalidRows(problems[:MAX_PROBLEMS])

    def problems(self, frame: Any) -> dict[int, list[tuple[str | None, str]]]:
        """Position in ``frame`` → (column, rule) for each row breaking a rule."""
        found = row_failures(self.schema, frame)
        if None in found:  # not tied to a row: judge the rows one by one
            found = {
                i: failures
                for i in range(len(frame))
                for failures in [row_failures(self.schema, frame.iloc[[i]]).get(frame.index[i])]
                if failures
            }
        return {frame.index.get_loc(index): failures for index, failures in found.items()}

    def frame(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Any:
        """The rows as a DataFrame of the model's ``columns``; any row that breaks a rule
        raises InvalidRows naming row and column. Columns the model takes but does not use
        may be left out."""
        self.check_shape(rows, columns)
        frame = features_frame(rows, columns)
        problems = self.problems(frame)
        if problems:
            raise InvalidRows(row_problems(problems))
        return frame


def row_problems(problems: Mapping[int, list[tuple[str | None, str]]]) -> list[RowProblem]:
    return [
        RowProblem(row, column, f"fails {rule}")
        for row, failures in sorted(problems.items())
        for column, rule in failures
    ][:MAX_PROBLEMS]


def rows_frame(
    rows: Sequence[Mapping[str, Any]], app: ModelAppConfig, columns: Sequence[str]
) -> Any:
    """``RowChecker(app).frame(rows, columns)``, for a one-off check."""
    return RowChecker(app).frame(rows, columns)


def features_frame(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Any:
    """``rows`` as a DataFrame of ``columns`` (rows already checked; absent ones missing).

    A JSON ``null`` in a text column becomes NaN, as a missing value read from a file is:
    scikit-learn's imputers take NaN as missing but None as a category of its own, so a None
    would skip the imputation the training rows had (training/serving skew)."""
    pandas = require("pandas", "ml")
    frame = pandas.DataFrame.from_records(list(rows), columns=list(columns))
    for column in frame.select_dtypes(include="object").columns:
        values = frame[column]
        if values.isna().any():
            frame[column] = values.where(values.notna(), float("nan"))
    return frame


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


def one_openmp_thread() -> Any:
    """Limit OpenMP to one thread on the calling thread (returned: the limiter, whose
    ``restore_original_limits()`` undoes it; usable as a context manager).

    Serving calls models from worker threads. libgomp keeps its thread pool for the first
    thread that used OpenMP only; on any other thread each parallel region starts its team
    afresh, and a hist gradient boosting predicts with one region per tree: one row took 26 ms
    instead of 4.8 on a 2-core VM. One thread starts no team, and the micro-batches of a server
    are small enough not to need more."""
    threadpoolctl = require("threadpoolctl", "ml")
    return threadpoolctl.threadpool_limits(limits=1, user_api="openmp")
