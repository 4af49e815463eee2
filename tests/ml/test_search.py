"""The Optuna search: seeded, cross-validated, and resumable from its SQLite study."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from llmops.build import load_components
from llmops.config.model_app import FeatureConfig, SearchConfig
from llmops.ml.features import model_pipeline
from llmops.ml.search import Labelled, run_search
from llmops.registry import get
from tests.ml.adult_like import adult_like

FEATURES = FeatureConfig(numeric=["age", "education-num", "hours-per-week"], categorical=["sex"])
SEARCH = SearchConfig.model_validate(
    {
        "n_trials": 6,
        "cv_folds": 2,
        "metric": "roc_auc",
        "space": {"C": {"low": 0.01, "high": 10.0, "log": True}},
    }
)


def make_model(params: Mapping[str, Any]) -> Any:
    load_components()
    entry = get("estimator", "logistic_regression")
    return model_pipeline(FEATURES, entry.factory(entry.config()).make("classification", params))


def test_the_search_scores_trials_by_cross_validation(tmp_path: Path) -> None:
    seen: list[float] = []
    rows = Labelled(adult_like(300), "Y", "classification", ">50K")
    result = run_search(
        SEARCH, make_model, rows, tmp_path / "studies.sqlite", "study",
        lambda n, p, v: seen.append(v),
    )  # fmt: skip
    assert result.trials_run == result.trials_total == 6 and len(seen) == 6
    assert 0.7 < result.best_score <= 1.0 and result.best_score == max(seen)
    assert 0.01 <= result.best_params["C"] <= 10.0


class Killed(Exception):
    pass


def test_an_interrupted_search_resumes_from_its_finished_trials(tmp_path: Path) -> None:
    storage, rows = tmp_path / "studies.sqlite", Labelled(adult_like(300), "Y", "classification")
    finished: list[int] = []

    def dies_after_three(number: int, params: Mapping[str, Any], value: float) -> None:
        if len(finished) == 3:
            raise Killed
        finished.append(number)

    with pytest.raises(Killed):
        run_search(SEARCH, make_model, rows, storage, "s", dies_after_three)
    resumed = run_search(SEARCH, make_model, rows, storage, "s")
    assert resumed.trials_total == 6 and resumed.trials_run == 3
