"""Estimators by registry name (``model: {type: ...}``): each makes the scikit-learn (or
LightGBM) classifier or regressor for the task, from its fixed ``params`` and the searched
ones. scikit-learn is imported when a model is made, not when the registry is listed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from llmops.config.model_app import Task
from llmops.deps import require
from llmops.registry import register


class EstimatorParams(BaseModel):
    """The estimator's own constructor parameters, passed as they are (its documentation
    lists them); the search's parameters override these."""

    model_config = ConfigDict(extra="allow")


class _SklearnEstimator:
    """An estimator from ``module``: ``classes[task]`` with ``defaults`` under the config."""

    Config = EstimatorParams
    module = ""
    classes: ClassVar[Mapping[str, str]] = {}
    defaults: ClassVar[Mapping[str, Any]] = {}
    extra = "ml"

    def __init__(self, config: EstimatorParams) -> None:
        self.config = config

    def make(self, task: Task, params: Mapping[str, Any]) -> Any:
        cls = getattr(require(self.module, self.extra), self.classes[task])
        return cls(**{**self.defaults, **self.config.model_dump(), **params})


@register("estimator", "logistic_regression", summary="linear: logistic / ridge regression")
class LinearModel(_SklearnEstimator):
    module = "sklearn.linear_model"
    classes: ClassVar[Mapping[str, str]] = {
        "classification": "LogisticRegression",
        "regression": "Ridge",
    }
    defaults: ClassVar[Mapping[str, Any]] = {"max_iter": 1000}


@register("estimator", "random_forest", summary="random forest (scikit-learn)")
class RandomForest(_SklearnEstimator):
    module = "sklearn.ensemble"
    classes: ClassVar[Mapping[str, str]] = {
        "classification": "RandomForestClassifier",
        "regression": "RandomForestRegressor",
    }
    defaults: ClassVar[Mapping[str, Any]] = {"n_estimators": 200, "n_jobs": -1, "random_state": 0}


@register(
    "estimator",
    "hist_gradient_boosting",
    summary="gradient-boosted trees on binned features (scikit-learn)",
)
class HistGradientBoosting(_SklearnEstimator):
    module = "sklearn.ensemble"
    classes: ClassVar[Mapping[str, str]] = {
        "classification": "HistGradientBoostingClassifier",
        "regression": "HistGradientBoostingRegressor",
    }
    defaults: ClassVar[Mapping[str, Any]] = {"random_state": 0}


@register(
    "estimator", "lightgbm", summary="LightGBM gradient boosting", extra="boost",
    requires=("lightgbm",),
)  # fmt: skip
class LightGbm(_SklearnEstimator):
    module = "lightgbm"
    classes: ClassVar[Mapping[str, str]] = {
        "classification": "LGBMClassifier",
        "regression": "LGBMRegressor",
    }
    defaults: ClassVar[Mapping[str, Any]] = {"random_state": 0, "verbose": -1}
    extra = "boost"
