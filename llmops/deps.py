"""Lazy imports of optional heavy libraries, with an error that names the pip extra."""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

from llmops.errors import MissingDependency


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise MissingDependency telling which extra installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        if exc.name and exc.name.split(".")[0] != top:
            raise
        raise MissingDependency(module, extra) from exc


def available(module: str) -> bool:
    """True if ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAGAS_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "1",
    # a served model is loaded from the registry: no progress bar in the server's log
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def offline_environment() -> None:
    """Never reach for a model hub or send telemetry unless the user set these themselves."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
