"""Registered models: the versions a training run logs to MLflow's model registry and the
aliases (candidate, production, previous) that promote and roll them back."""

from llmops.models._mlflow import prepare_store
from llmops.models.registry import (
    CANDIDATE,
    LATEST,
    PREVIOUS,
    PRODUCTION,
    ModelRegistry,
    ModelVersion,
    local_tracking_uri,
)

__all__ = [
    "CANDIDATE",
    "LATEST",
    "PREVIOUS",
    "PRODUCTION",
    "ModelRegistry",
    "ModelVersion",
    "local_tracking_uri",
    "prepare_store",
]
