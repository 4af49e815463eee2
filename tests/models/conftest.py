"""One MLflow registry shared by the model tests (a new SQLite registry spends seconds on its
schema), and tiny scikit-learn pipelines fitted on 50 random rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from llmops.models import ModelRegistry, ModelVersion

Register = Callable[..., ModelVersion]


def fit_model(seed: int = 0) -> tuple[Pipeline, pd.DataFrame]:
    """A fitted Pipeline (scaling, one-hot encoding, logistic regression) and its rows."""
    rng = np.random.default_rng(seed)
    rows = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 50),
            "hours": rng.normal(40, 5, 50),
            "job": rng.choice(["clerk", "nurse", "welder"], 50),
        }
    )
    target = (rows["age"] + rng.normal(0, 5, 50) > 40).astype(int)
    prepare = ColumnTransformer(
        [
            ("numeric", StandardScaler(), ["age", "hours"]),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), ["job"]),
        ]
    )
    model = Pipeline([("prepare", prepare), ("model", LogisticRegression())])
    return model.fit(rows, target), rows


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="session")
def registry(registry_dir: Path) -> ModelRegistry:
    uri = f"sqlite:///{registry_dir / 'mlflow.db'}"
    return ModelRegistry(uri, str(registry_dir / "artifacts"))


@pytest.fixture(scope="session")
def register(registry: ModelRegistry) -> Register:
    """Register a freshly fitted model as a new version of ``name``."""

    def register_version(name: str, seed: int = 0, **kwargs: Any) -> ModelVersion:
        model, rows = fit_model(seed)
        arguments: dict[str, Any] = {
            "metrics": {"roc_auc": 0.9},
            "params": {"C": 1.0},
            "tags": {"data_sha256": "ab12"},
        }
        arguments.update(kwargs)
        return registry.log_and_register(name, model, input_example=rows.head(3), **arguments)

    return register_version
