"""The model as one scikit-learn Pipeline: column preparation (impute, scale, one-hot or
ordinal encode, pass through) then the estimator. Saved and served as one artifact, so the
rows served are prepared exactly as the rows trained on."""

from __future__ import annotations

from typing import Any

from llmops.config.model_app import FeatureConfig
from llmops.deps import require


def preprocessor(features: FeatureConfig) -> Any:
    """The ColumnTransformer for ``features`` (columns not named are dropped)."""
    compose = require("sklearn.compose", "ml")
    impute = require("sklearn.impute", "ml")
    pipeline = require("sklearn.pipeline", "ml")
    prep = require("sklearn.preprocessing", "ml")
    parts = []
    if features.numeric:
        numeric = pipeline.make_pipeline(
            impute.SimpleImputer(strategy="median"), prep.StandardScaler()
        )
        parts.append(("numeric", numeric, features.numeric))
    if features.categorical:
        categorical = pipeline.make_pipeline(
            impute.SimpleImputer(strategy="most_frequent"),
            prep.OneHotEncoder(handle_unknown="ignore", min_frequency=5),
        )
        parts.append(("categorical", categorical, features.categorical))
    if features.ordinal:
        ordinal = pipeline.make_pipeline(
            impute.SimpleImputer(strategy="most_frequent"),
            prep.OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
        )
        parts.append(("ordinal", ordinal, features.ordinal))
    if features.passthrough:
        parts.append(("passthrough", "passthrough", features.passthrough))
    return compose.ColumnTransformer(parts, remainder="drop", sparse_threshold=0.0)


def model_pipeline(features: FeatureConfig, estimator: Any) -> Any:
    """Preparation and estimator in one Pipeline."""
    pipeline = require("sklearn.pipeline", "ml")
    return pipeline.Pipeline([("prepare", preprocessor(features)), ("model", estimator)])
