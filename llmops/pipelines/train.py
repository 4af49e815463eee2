"""Train a model app: data → validation → search (Optuna, resumable) → final fit → test
metrics and slices → gates → MLflow run and a registered version with alias ``candidate``.

Every step is one call into ``llmops.ml`` (data, checks, model, metrics) or the registry
(``llmops.models``); this module only orders them and keeps the MLflow run around them: the
training job is one run, each search trial a nested run under it.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from llmops import registry
from llmops.build import load_components
from llmops.config import LoadedModelApp, resolve_path
from llmops.config.model_app import ModelAppConfig
from llmops.deps import require
from llmops.errors import LLMOpsError
from llmops.evaluation.gates import Gate, GateResult, check, parse_gate
from llmops.evaluation.tracking import artifact_root, default_tracking_uri
from llmops.ml.data import Splits, data_sha256, load_splits
from llmops.ml.fairness import Gap, fairness_gaps
from llmops.ml.features import model_pipeline
from llmops.ml.footprint import latency_and_size, runtime_from_tags, runtime_tags
from llmops.ml.metrics import LOWER_IS_BETTER, positive_label, score, slice_scores
from llmops.ml.report import write_training_report
from llmops.ml.search import Labelled, SearchResult, run_search
from llmops.ml.validation import ValidationReport, validate
from llmops.models import prepare_store
from llmops.models.onnx_export import export_onnx, write_onnx
from llmops.models.provenance import model_app_provenance
from llmops.models.registry import ModelRegistry, ModelVersion

Step = Callable[[str], None]
"""Told what the job is doing now ("search: trial 12/30, best roc_auc 0.9271")."""


class DataInvalid(LLMOpsError):
    """The training data broke the schema's rules; ``report`` says which and where."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.to_text())


@dataclass
class TrainReport:
    model: str
    validation: ValidationReport
    params: dict[str, Any] = field(default_factory=dict)
    search: SearchResult | None = None
    metrics: dict[str, float] = field(default_factory=dict)  # on the test rows
    slices: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    fairness: dict[str, dict[str, Gap]] = field(default_factory=dict)  # column → measure → gap
    gates: list[GateResult] = field(default_factory=list)
    version: ModelVersion | None = None
    run_id: str | None = None
    seconds: float = 0.0
    runtime: dict[str, float] = field(default_factory=dict)  # latency and size: ml.footprint
    data_sha256: str = ""
    report_dir: Path | None = None  # report.md, report.html and the plots (ml.report)

    @property
    def passed(self) -> bool:
        return all(g.passed for g in self.gates)


class Training:
    """One training job of a model app."""

    def __init__(self, loaded: LoadedModelApp, step: Step | None = None) -> None:
        self.loaded = loaded
        self.app: ModelAppConfig = loaded.app
        self.data_dir = app_data_dir(loaded)
        self.step = step or (lambda _: None)
        load_components()
        self.estimator = registry.get("estimator", self.app.model.type)
        self.tracking_uri = app_tracking_uri(loaded)

    def make_model(self, params: Mapping[str, Any]) -> Any:
        """The untrained Pipeline (preparation + estimator) with these searched parameters."""
        settings = self.estimator.config.model_validate(self.app.model.params)
        estimator = self.estimator.factory(settings).make(self.app.task, params)
        return model_pipeline(self.app.features, estimator)

    def run(self, register: bool = True) -> TrainReport:
        started = time.perf_counter()
        app = self.app
        self.step("reading data")
        splits = load_splits(app.data, self.loaded.base_dir, app.target, app.task)
        report = TrainReport(app.model_name, self._validated(splits))
        mlflow = require("mlflow", "ml")
        prepare_store(self.tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_experiment(experiment_id=self._experiment(mlflow))
        with mlflow.start_run(run_name=f"train-{app.name}") as run:
            report.run_id = run.info.run_id
            self._fit_and_score(splits, report)
            report.runtime = self._measure(splits)
            report.data_sha256 = self.data_hash
            mlflow.log_params(report.params)
            mlflow.log_metrics(report.runtime)
            mlflow.log_metrics({f"test_{k}": v for k, v in report.metrics.items() if v == v})
            mlflow.log_metrics(
                {
                    f"fairness_{column}_{measure}": gap.value
                    for column, gaps in report.fairness.items()
                    for measure, gap in gaps.items()
                }
            )
            gates = [parse_gate(g) for g in app.gates]
            measured = {**report.metrics, **report.runtime}  # a gate reads what it names
            report.gates = check(gates, measured, self._baselines(gates))
            if register and report.passed:
                self._log_reference(splits, report.run_id)
                report.version = self._register(splits, report)
            report.seconds = time.perf_counter() - started
            report.report_dir = self._write_report(splits, report)
        report.seconds = time.perf_counter() - started
        return report

    def _validated(self, splits: Splits) -> ValidationReport:
        self.step("validating data")
        pandas = require("pandas", "ml")
        training = pandas.concat([splits.train, splits.valid])
        report = validate(training, self.app.schema_, self.app.target, self.app.task)
        if not report.ok:
            raise DataInvalid(report)
        return report

    def _fit_and_score(self, splits: Splits, report: TrainReport) -> None:
        app = self.app
        if app.search is not None:
            report.search = self._search(splits)
            report.params = report.search.best_params
        self.step("fitting the final model")
        pandas = require("pandas", "ml")
        rows = pandas.concat([splits.train, splits.valid])
        self.model = self.make_model(report.params)
        self.model.fit(rows.drop(columns=[app.target]), rows[app.target])
        self.step("scoring on the test rows")
        test = splits.test
        features, truth = test.drop(columns=[app.target]), test[app.target]
        report.metrics = score(self.model, features, truth, app.task, app.positive_class)
        report.slices = {
            column: slice_scores(self.model, test, app.target, app.task, app.positive_class, column)
            for column in app.slices
        }
        if app.fairness and app.task == "classification":
            predicted = self.model.predict(features)
            label = positive_label(self.model, app.positive_class)
            report.fairness = {
                column: fairness_gaps(predicted, truth, test[column], label)
                for column in app.fairness
            }

    def _measure(self, splits: Splits) -> dict[str, float]:
        self.step("measuring prediction latency and model size")
        return latency_and_size(self.model, splits.test.drop(columns=[self.app.target]))

    def _write_report(self, splits: Splits, report: TrainReport) -> Path:
        """report.md, report.html and the plots in data_dir/reports/<run id>, also logged to
        the run as its ``report/`` artifacts."""
        self.step("writing the report")
        folder = self.data_dir / "reports" / str(report.run_id)
        write_training_report(folder, report, self.model, splits.test, self.app)
        require("mlflow", "ml").log_artifacts(str(folder), "report")
        return folder

    def _search(self, splits: Splits) -> SearchResult:
        search = self.app.search
        assert search is not None
        mlflow = require("mlflow", "ml")

        scored: list[float] = []

        def trial_done(number: int, params: Mapping[str, Any], value: float) -> None:
            with mlflow.start_run(run_name=f"trial-{number}", nested=True):
                mlflow.log_params(dict(params))
                mlflow.log_metric(f"cv_{search.metric}", value)
            scored.append(value)
            best = max(scored) if search.metric not in LOWER_IS_BETTER else min(scored)
            self.step(
                f"search: trial {number} scored {search.metric} {value:.4f} "
                f"(best {best:.4f}; {len(scored)} scored by this run)"
            )

        self.step(f"search: {search.n_trials} trials, {search.cv_folds}-fold CV")
        return run_search(
            search,
            self.make_model,
            Labelled(splits.train, self.app.target, self.app.task, self.app.positive_class),
            self.data_dir / "studies.sqlite",
            self.study_name,
            trial_done,
        )

    @property
    def study_name(self) -> str:
        """The app, its data and what is searched: a rerun of the same job resumes its study;
        new data, another estimator or another search space starts a new one (a trial of a
        random forest must not inherit a boosting model's learning rate)."""
        search = self.app.search
        assert search is not None
        searched = {
            "model": self.app.model.model_dump(mode="json"),
            "search": search.model_dump(mode="json", exclude={"n_trials", "timeout_s"}),
            "features": self.app.features.model_dump(mode="json"),
        }
        digest = hashlib.sha256(json.dumps(searched, sort_keys=True).encode()).hexdigest()
        return f"{self.app.name}-{self.data_hash[:12]}-{digest[:8]}"

    @cached_property
    def registry(self) -> ModelRegistry:
        return app_registry(self.loaded)

    def _baselines(self, gates: list[Gate]) -> dict[str, dict[str, float]]:
        """The test metrics of the versions the gates compare with ('production', ...)."""
        wanted = {g.baseline for g in gates if g.baseline is not None}
        if not wanted or self.app.model_name not in self.registry.names():
            return {}
        known = {a for v in self.registry.versions(self.app.model_name) for a in v.aliases}
        found = {alias: self.registry.get(self.app.model_name, alias) for alias in wanted & known}
        return {alias: {**v.metrics, **runtime_from_tags(v.tags)} for alias, v in found.items()}

    def _register(self, splits: Splits, report: TrainReport) -> ModelVersion:
        self.step("registering")
        example = splits.test.drop(columns=[self.app.target]).head(5)
        return self.registry.log_and_register(
            self.app.model_name,
            self.model,
            input_example=example,
            metrics=report.metrics,
            params=report.params,
            tags={
                "data_sha256": self.data_hash,
                "config": self.loaded.file,
                **model_app_provenance(self.loaded),
                **runtime_tags(report.runtime),
                **self._onnx_tags(splits),
            },
            run_id=report.run_id,
        )

    def _onnx_tags(self, splits: Splits) -> dict[str, str]:
        """``registry.onnx``: the model exported to ONNX and checked on up to 1,000 test rows
        (a mismatch fails the job before registering), logged as onnx/model.onnx in the run."""
        if not self.app.registry.onnx:
            return {}
        self.step("exporting to ONNX")
        exported = export_onnx(self.model, splits.test.drop(columns=[self.app.target]).head(1000))
        with tempfile.TemporaryDirectory() as tmp:
            write_onnx(exported, Path(tmp))
            require("mlflow", "ml").log_artifacts(tmp, "onnx")
        return {"onnx.max_abs_diff": f"{exported.max_abs_diff:.3g}"}

    def _log_reference(self, splits: Splits, run_id: str) -> None:
        """A sample of the training rows, kept with the run: served versions check their
        traffic's drift against it."""
        pandas = require("pandas", "ml")
        rows = pandas.concat([splits.train, splits.valid]).drop(columns=[self.app.target])
        limit = self.app.monitoring.drift.reference_rows
        self.registry.log_reference(run_id, rows.sample(min(limit, len(rows)), random_state=0))

    def _experiment(self, mlflow: Any) -> str:
        """The MLflow experiment named after the app, its artifacts under data_dir."""
        found = mlflow.get_experiment_by_name(self.app.name)
        if found is not None:
            return str(found.experiment_id)
        location = artifact_root(self.tracking_uri, self.data_dir)
        return str(mlflow.create_experiment(self.app.name, artifact_location=location))

    @cached_property
    def data_hash(self) -> str:
        """SHA-256 of the data (files; with Feast, the entity table and the feature references):
        tags the version and names the study, so new data starts a new search."""
        return data_sha256(self.app.data, self.loaded.base_dir)


def app_data_dir(loaded: LoadedModelApp) -> Path:
    return resolve_path(loaded.base_dir, loaded.app.data_dir)


def app_tracking_uri(loaded: LoadedModelApp) -> str:
    """Where a model app's runs and versions live: ``registry.tracking_uri``, else MLflow on
    SQLite in its data_dir (with the artifacts beside the database)."""
    data_dir = app_data_dir(loaded)
    data_dir.mkdir(parents=True, exist_ok=True)
    return loaded.app.registry.tracking_uri or default_tracking_uri(data_dir)


def app_registry(loaded: LoadedModelApp) -> ModelRegistry:
    return ModelRegistry(app_tracking_uri(loaded), str(app_data_dir(loaded) / "mlartifacts"))
