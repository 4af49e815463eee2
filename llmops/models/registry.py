"""The model registry: MLflow registered models, their versions, and the aliases that say which
version does what.

- ``candidate``: the newest registered version, waiting for promotion (set on registering).
- ``production``: the version that serves.
- ``previous``: the version that held ``production`` before the last promotion; ``rollback``
  puts it back.

Aliases are MLflow registered-model aliases (MLflow's stages are deprecated). A local registry
is SQLite with its artifacts beside the database (``<db folder>/mlartifacts``), never MLflow's
implicit ``./mlruns``; an ``http(s)://`` tracking server keeps its own artifact store.
"""

from __future__ import annotations

import difflib
import io
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.deps import require
from llmops.errors import RegistryError, UnknownVersion
from llmops.models import _mlflow
from llmops.models._mlflow import MLFLOW_EXTRA
from llmops.models.artifact_paths import check_download, check_source, check_upload, run_path

if TYPE_CHECKING:
    import pandas as pd

CANDIDATE, PRODUCTION, PREVIOUS = "candidate", "production", "previous"
LATEST = "latest"  # a reference, not an alias: MLflow reserves the name
METRIC_TAG = "metric."
MODEL_ARTIFACT = "model"
REFERENCE_ARTIFACT = "reference"
REFERENCE_FILE = "reference.parquet"


def local_tracking_uri(base_dir: Path) -> str:
    """A project folder's own registry: ``sqlite:///<base_dir>/.llmops/mlflow.db``, with the
    artifacts in ``.llmops/mlartifacts``."""
    return f"sqlite:///{(base_dir / '.llmops' / 'mlflow.db').resolve()}"


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model, as shown to users."""

    name: str
    version: int
    aliases: tuple[str, ...]  # ("candidate",), ("production",), ...
    run_id: str  # the MLflow run that logged it
    created: float  # epoch seconds
    tags: Mapping[str, str]  # data hash, git commit, metric.<name> = "0.93", ...
    source: str  # the model's artifact URI

    @property
    def metrics(self) -> dict[str, float]:
        """The ``metric.<name>`` tags as numbers."""
        found = {}
        for key, value in self.tags.items():
            if key.startswith(METRIC_TAG):
                try:
                    found[key.removeprefix(METRIC_TAG)] = float(value)
                except ValueError:  # a tag anyone can set by hand; not one of ours
                    continue
        return found


class ModelRegistry:
    """MLflow's model registry for llmops models: versions, the aliases candidate / production /
    previous, promote and rollback.

    Example: ``ModelRegistry(local_tracking_uri(Path.cwd())).promote("adult")`` points
    production at adult's candidate and previous at the version that was in production.
    """

    def __init__(self, tracking_uri: str, artifact_location: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_location = _mlflow.artifact_location(artifact_location, tracking_uri)
        self._mlflow_client: Any = None

    def log_and_register(
        self,
        name: str,
        model: Any,
        *,
        input_example: pd.DataFrame,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        run_id: str | None = None,
    ) -> ModelVersion:
        """Log a fitted scikit-learn model (mlflow.sklearn, with a signature inferred from
        ``input_example`` and its predictions, and the input example) in the given MLflow run
        (or a new run of an experiment named after the model), register it as a new version of
        ``name``, tag the version (``tags`` + ``metric.<name>`` for each metric + ``git.commit``
        when the cwd is a git checkout) and give it the alias ``candidate``.

        ``metrics`` and ``params`` are logged to the run when this call starts it (a caller's
        run holds its own). Pass a data file's hash in ``tags`` (e.g. ``data_sha256``) to keep
        it with the version."""
        return self._register(
            name,
            lambda client, run: self._log_model(client, run, model, input_example),
            metrics=metrics, params=params, tags=tags, run_id=run_id,
        )  # fmt: skip

    def register_folder(
        self,
        name: str,
        folder: Path,
        *,
        artifact: str = MODEL_ARTIFACT,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        run_id: str | None = None,
    ) -> ModelVersion:
        """Like ``log_and_register`` for a model that is a folder of files (a LoRA adapter):
        upload ``folder`` as the run's artifact ``artifact`` and register that as the version's
        source. A failed upload registers nothing (the run is marked FAILED); a folder with a
        link leading out of it is refused before anything is logged."""
        check_upload(Path(folder), f"registering {folder} as a version of '{name}'")

        def upload(client: Any, run: str) -> str:
            if client.list_artifacts(run, artifact):
                raise RegistryError(
                    f"run {run} already holds '{artifact}'; log each version in its own run"
                )
            client.log_artifacts(run, str(folder), artifact)
            return f"{client.get_run(run).info.artifact_uri}/{artifact}"

        return self._register(
            name, upload, metrics=metrics, params=params, tags=tags, run_id=run_id
        )

    def download(self, version: ModelVersion, dst: Path) -> Path:
        """Download ``version``'s model artifact (its source) into ``dst``; returns the local
        folder (or file). A source outside its run's artifacts (a local path elsewhere, a
        ``..`` step) or a download reaching out of ``dst`` is refused (RegistryError)."""
        artifacts = require("mlflow.artifacts", MLFLOW_EXTRA)
        dst.mkdir(parents=True, exist_ok=True)
        what = f"'{version.name}' version {version.version}"
        with self._errors(f"downloading {what}"):
            uri = self._checked_uri(version, what)
            local = artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
        return check_download(Path(local), dst, what)

    def _checked_uri(self, version: ModelVersion, what: str) -> str:
        """``version``'s download URI, once it is known to stay inside its run's artifacts."""
        client = self._client()
        uri = str(client.get_model_version_download_uri(version.name, str(version.version)))
        run_artifacts = client.get_run(version.run_id).info.artifact_uri if version.run_id else None
        check_source(uri, run_artifacts, what)
        return uri

    def _register(
        self,
        name: str,
        log: Callable[[Any, str], str],
        *,
        metrics: Mapping[str, float],
        params: Mapping[str, Any],
        tags: Mapping[str, str],
        run_id: str | None,
    ) -> ModelVersion:
        """Log a model with ``log(client, run_id) -> source URI`` in the run (or a new one),
        register the source as a version of ``name`` with its tags and alias ``candidate``."""
        with self._errors(f"registering a version of '{name}'"):
            client = self._client()
            new_run = run_id is None
            run_id = run_id or self._start_run(client, name)
            status = "FAILED"
            try:
                if new_run:  # a caller's own run holds its own metrics and params
                    _mlflow.log_run_data(client, run_id, metrics, params)
                source = log(client, run_id)
                status = "FINISHED"
            finally:
                if new_run:
                    client.set_terminated(run_id, status)
            _mlflow.ensure_registered_model(client, name)
            version_tags = {**_mlflow.git_tags(), **tags, **_metric_tags(metrics)}
            created = client.create_model_version(name, source, run_id=run_id, tags=version_tags)
            client.set_registered_model_alias(name, CANDIDATE, created.version)
        return self.get(name, str(created.version))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first."""
        with self._errors(f"listing the versions of '{name}'"):
            client = self._client()
            aliases = self._aliases(client, name)
            query = f"name = '{name}'"
            found = _mlflow.all_pages(
                lambda token: client.search_model_versions(query, page_token=token)
            )
        held: dict[int, list[str]] = {}
        for alias, number in sorted(aliases.items()):
            held.setdefault(number, []).append(alias)
        listed = [_model_version(v, held.get(int(v.version), [])) for v in found]
        return sorted(listed, key=lambda v: v.version, reverse=True)

    def get(self, name: str, ref: str) -> ModelVersion:
        """Version ``ref`` of ``name``: a number ("3"), an alias ("production", "candidate",
        "previous") or "latest" (the newest version, as in MLflow's ``models:/NAME/latest``);
        RegistryError, naming what exists, when there is none."""
        versions = self.versions(name)
        if ref == LATEST and versions:
            return versions[0]
        for version in versions:
            if ref == str(version.version) or ref in version.aliases:
                return version
        numbers = ", ".join(str(v.version) for v in versions) or "none"
        held = [(alias, v.version) for v in versions for alias in v.aliases]
        aliases = ", ".join(f"{alias} ({number})" for alias, number in held) or "none"
        raise UnknownVersion(
            f"model '{name}' has no version or alias '{ref}'; versions: {numbers}; "
            f"aliases: {aliases}{_did_you_mean(ref, [alias for alias, _ in held])}"
        )

    def promote(self, name: str, ref: str = CANDIDATE, to: str = PRODUCTION) -> ModelVersion:
        """Point ``to`` at version ``ref``; when ``to`` is production, the version that held
        production gets ``previous``. Returns the promoted version."""
        promoted = self.get(name, ref)
        with self._errors(f"promoting '{name}@{ref}' to {to}"):
            client = self._client()
            holder = self._aliases(client, name).get(to)
            if to == PRODUCTION and holder not in (None, promoted.version):
                client.set_registered_model_alias(name, PREVIOUS, str(holder))
            client.set_registered_model_alias(name, to, str(promoted.version))
        return self.get(name, str(promoted.version))

    def rollback(self, name: str) -> ModelVersion:
        """Production goes back to the ``previous`` version, which loses that alias (a second
        rollback needs another promotion first). Returns the version now in production."""
        with self._errors(f"rolling back '{name}'"):
            client = self._client()
            aliases = self._aliases(client, name)
            if PREVIOUS not in aliases:
                raise UnknownVersion(
                    f"model '{name}' has no previous version to roll back to (production: "
                    f"{aliases.get(PRODUCTION, 'none')}); `previous` is set when a promotion "
                    "replaces the production version"
                )
            client.set_registered_model_alias(name, PRODUCTION, str(aliases[PREVIOUS]))
            client.delete_registered_model_alias(name, PREVIOUS)
        return self.get(name, PRODUCTION)

    def load(self, name: str, ref: str) -> Any:
        """The fitted scikit-learn model of version ``ref`` of ``name``."""
        return self.load_version(self.get(name, ref))

    def load_version(self, version: ModelVersion) -> Any:
        """The fitted scikit-learn model of ``version`` (resolved once, e.g. on a driver
        whose workers must all load the same version)."""
        artifacts = require("mlflow.artifacts", MLFLOW_EXTRA)
        sklearn_flavor = require("mlflow.sklearn", MLFLOW_EXTRA)
        what = f"'{version.name}' version {version.version}"
        with self._errors(f"loading {what}"), tempfile.TemporaryDirectory() as tmp:
            local = artifacts.download_artifacts(
                artifact_uri=self._checked_uri(version, what),
                dst_path=tmp,
                tracking_uri=self.tracking_uri,
            )
            return sklearn_flavor.load_model(str(check_download(Path(local), Path(tmp), what)))

    def log_reference(self, run_id: str, rows: pd.DataFrame) -> None:
        """Keep ``rows`` (a sample of the training rows, features only) with the run: the
        reference that served versions from it compare their traffic with."""
        doing = f"storing the reference rows of run {run_id}"
        with self._errors(doing), tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / REFERENCE_FILE
            rows.to_parquet(path, index=False)
            self._client().log_artifact(run_id, str(path), REFERENCE_ARTIFACT)

    def reference(self, version: ModelVersion) -> pd.DataFrame | None:
        """The reference rows stored with ``version``'s run, or None (none stored)."""
        data = self.run_file(version, f"{REFERENCE_ARTIFACT}/{REFERENCE_FILE}")
        if data is None:
            return None
        pandas = require("pandas", MLFLOW_EXTRA)
        return pandas.read_parquet(io.BytesIO(data))

    def run_file(self, version: ModelVersion, path: str) -> bytes | None:
        """A file the run of ``version`` logged (``reference/reference.parquet``,
        ``onnx/model.onnx``), or None when it has none there."""
        artifacts = require("mlflow.artifacts", MLFLOW_EXTRA)
        doing = f"reading {path} of '{version.name}' {version.version}"
        path = run_path(path, doing)
        folder, _, _ = path.rpartition("/")
        with self._errors(doing), tempfile.TemporaryDirectory() as tmp:
            listed = self._client().list_artifacts(version.run_id, folder) if version.run_id else []
            if path not in {item.path for item in listed}:
                return None
            local = artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=path, dst_path=tmp,
                tracking_uri=self.tracking_uri,
            )  # fmt: skip
            return check_download(Path(local), Path(tmp), doing).read_bytes()

    def names(self) -> list[str]:
        """The registered model names, sorted."""
        with self._errors("listing the registered models"):
            client = self._client()
            found = _mlflow.all_pages(
                lambda token: client.search_registered_models(page_token=token)
            )
        return sorted(model.name for model in found)

    def _client(self) -> Any:
        """The MLflow client, made on first use after checking that a server answers."""
        if self._mlflow_client is None:
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            mlflow = require("mlflow", MLFLOW_EXTRA)
            _mlflow.prepare_store(self.tracking_uri)
            uri = self.tracking_uri
            self._mlflow_client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        return self._mlflow_client

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """MLflow's exceptions become a RegistryError naming the registry and the action."""
        exceptions = require("mlflow.exceptions", MLFLOW_EXTRA)
        try:
            yield
        except exceptions.MlflowException as exc:
            raise RegistryError(f"{doing} at {self.tracking_uri} failed: {exc.message}") from exc

    def _aliases(self, client: Any, name: str) -> dict[str, int]:
        """``{alias: version}`` of ``name``; RegistryError naming the registered models when
        there is no such model."""
        exceptions = require("mlflow.exceptions", MLFLOW_EXTRA)
        try:
            model = client.get_registered_model(name)
        except exceptions.MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            names = self.names()
            raise UnknownVersion(
                f"no model '{name}' in the registry at {self.tracking_uri}; registered: "
                f"{', '.join(names) or 'none'}{_did_you_mean(name, names)}"
            ) from None
        return {alias: int(number) for alias, number in model.aliases.items()}

    def _start_run(self, client: Any, name: str) -> str:
        """A new run in the experiment named after the model (made on first use)."""
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            experiment_id = client.create_experiment(name, artifact_location=self.artifact_location)
        else:
            experiment_id = experiment.experiment_id
        return str(client.create_run(experiment_id, tags={"llmops.model": name}).info.run_id)

    def _log_model(self, client: Any, run_id: str, model: Any, example: pd.DataFrame) -> str:
        """Save ``model`` with mlflow.sklearn, upload it into the run; returns its artifact URI."""
        if client.list_artifacts(run_id, MODEL_ARTIFACT):
            raise RegistryError(
                f"run {run_id} already holds a logged model; log each version in its own run"
            )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / MODEL_ARTIFACT
            _mlflow.save_sklearn_model(model, path, example)
            client.log_artifacts(run_id, str(path), MODEL_ARTIFACT)
        return f"{client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT}"


def holder(versions: list[ModelVersion], alias: str) -> int | None:
    """The number of the version among ``versions`` that holds ``alias``, if any."""
    return next((v.version for v in versions if alias in v.aliases), None)


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _metric_tags(metrics: Mapping[str, float]) -> dict[str, str]:
    return {f"{METRIC_TAG}{key}": str(float(value)) for key, value in metrics.items()}


def _model_version(found: Any, aliases: list[str]) -> ModelVersion:
    """An MLflow ModelVersion entity as ours."""
    return ModelVersion(
        name=found.name,
        version=int(found.version),
        aliases=tuple(aliases),
        run_id=found.run_id or "",
        created=found.creation_timestamp / 1000,
        tags=dict(found.tags),
        source=found.source,
    )
