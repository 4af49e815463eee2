"""The MLflow plumbing behind the registry: reaching the store, where artifacts go, logging a
run's data, saving a scikit-learn model, paging through searches, the git commit of a version."""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.deps import require
from llmops.errors import RegistryError

if TYPE_CHECKING:
    import pandas as pd

MLFLOW_EXTRA = "ml"  # the pip extra that installs mlflow and scikit-learn
REACH_TIMEOUT_S = 5.0
PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call


def prepare_store(tracking_uri: str) -> None:
    """Make a SQLite database with its tables (see ``_create_tables``); check that an
    http(s) tracking server answers at all, so a dead one fails in seconds instead of after
    MLflow's minutes of retries."""
    if tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        _create_tables(tracking_uri, database)
    elif tracking_uri.startswith(("http://", "https://")):
        _check_reachable(tracking_uri)


def _create_tables(tracking_uri: str, database: Path) -> None:
    """MLflow's tracking and registry stores create a new database's tables when they first
    open it, without a lock: two first opens at once both run the migrations and the others
    die (IntegrityError on ``alembic_version``, "table ... already exists"). Opening the
    tracking store here, under a lock file named after the database in the temp folder (as
    MLflow's own locked initialisations do), creates them once; every later open finds them."""
    file_utils = require("mlflow.utils.file_utils", MLFLOW_EXTRA)
    tracking_store = require("mlflow.store.tracking.sqlalchemy_store", MLFLOW_EXTRA)
    artifacts = (database.parent / "mlartifacts").resolve().as_uri()
    key = hashlib.sha256(str(database.resolve()).encode()).hexdigest()[:16]
    with file_utils.ExclusiveFileLock(f"{tempfile.gettempdir()}/llmops-mlflow-init-{key}.lock"):
        tracking_store.SqlAlchemyStore(tracking_uri, artifacts).engine.dispose()


def _check_reachable(url: str) -> None:
    try:
        urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=REACH_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return  # the server answered; MLflow reports what it says
    except urllib.error.URLError as exc:
        raise RegistryError(_unreachable(url, exc.reason)) from None
    except OSError as exc:  # a timeout while reading the answer
        raise RegistryError(_unreachable(url, exc)) from None


def _unreachable(url: str, reason: object) -> str:
    return (
        f"cannot reach the MLflow registry at {url}: {reason}; start it (`mlflow server`) or "
        "pass another --tracking-uri"
    )


def log_run_data(
    client: Any, run_id: str, metrics: Mapping[str, float], params: Mapping[str, Any]
) -> None:
    """Log ``metrics`` (step 0) and ``params`` (as strings) to the run."""
    entities = require("mlflow.entities", MLFLOW_EXTRA)
    now = int(time.time() * 1000)
    logged = [entities.Metric(key, float(value), now, 0) for key, value in metrics.items()]
    client.log_batch(run_id, metrics=logged)
    items = [entities.Param(key, str(value)) for key, value in params.items()]
    for start in range(0, len(items), PARAMS_PER_BATCH):
        client.log_batch(run_id, params=items[start : start + PARAMS_PER_BATCH])


def save_sklearn_model(model: Any, path: Path, example: pd.DataFrame) -> None:
    """Save a fitted scikit-learn model as an MLflow model with its signature and example."""
    sklearn_flavor = require("mlflow.sklearn", MLFLOW_EXTRA)
    models = require("mlflow.models", MLFLOW_EXTRA)
    sklearn_flavor.save_model(
        model,
        str(path),
        signature=models.infer_signature(example, model.predict(example)),
        input_example=example,
        # skops (MLflow's default) refuses numpy dtypes (a OneHotEncoder), HistGradientBoosting's
        # trees and LightGBM until each type is trusted by hand; the registry is a trusted store.
        serialization_format=sklearn_flavor.SERIALIZATION_FORMAT_CLOUDPICKLE,
        pip_requirements=requirements(model),
    )


def requirements(model: Any) -> list[str]:
    """What loading the model needs: the flavor's pins plus the final estimator's package when
    it is not scikit-learn (LightGBM). Inferring them instead takes seconds and records every
    module loaded in this process (torch+cpu, pytest), which no one can install."""
    sklearn_flavor = require("mlflow.sklearn", MLFLOW_EXTRA)
    pins: list[str] = sklearn_flavor.get_default_pip_requirements(include_cloudpickle=True)
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    package = type(estimator).__module__.split(".")[0]
    for distribution in importlib.metadata.packages_distributions().get(package, []):
        if distribution != "scikit-learn":
            pins.append(f"{distribution}=={importlib.metadata.version(distribution)}")
    return pins


def ensure_registered_model(client: Any, name: str) -> None:
    """Create the registered model ``name`` unless it exists."""
    exceptions = require("mlflow.exceptions", MLFLOW_EXTRA)
    try:
        client.create_registered_model(name)
    except exceptions.MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def git_tags(folder: Path | None = None) -> dict[str, str]:
    """``{"git.commit": <HEAD>}`` when ``folder`` (default: the current directory) is in a
    git checkout, else ``{}``."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            cwd=folder,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git.commit": head.stdout.strip()}


def all_pages(fetch: Callable[[str | None], Any]) -> list[Any]:
    """Every item of an MLflow search, following its page tokens."""
    items: list[Any] = []
    token = None
    while True:
        page = fetch(token)
        items += page
        token = page.token
        if not token:
            return items


def artifact_location(location: str | None, tracking_uri: str) -> str | None:
    """Where new experiments keep artifacts: as given (a folder or a URI), beside a SQLite
    database, or (for a tracking server) the server's own store."""
    if location is None and tracking_uri.startswith("sqlite:///"):
        database = Path(tracking_uri.removeprefix("sqlite:///"))
        location = str(database.parent / "mlartifacts")
    if location is None or "://" in location:
        return location
    return Path(location).resolve().as_uri()
