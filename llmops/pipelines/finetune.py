"""The fine-tuning flow: train (or resume) a job, write the adapter with its manifest, and log
params and per-step metrics to MLflow; then the gates: on the validation metrics, and (with
``registry.eval_suite``) on an eval-suite run with the adapter as the variant ``adapter`` beside
the base model; when they pass the adapter is registered with the alias ``candidate``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.config import LoadedFinetune
from llmops.deps import require
from llmops.evaluation.gates import GateResult, check, parse_gate
from llmops.evaluation.tracking import artifact_root, default_tracking_uri, metric_key
from llmops.models import prepare_store
from llmops.models.adapters import AdapterManifest, register_adapter
from llmops.models.registry import ModelRegistry, ModelVersion

if TYPE_CHECKING:
    from llmops.finetune.callbacks import Progress

RUN_ID_FILE = "mlflow_run_id"
MAX_PARAM = 500


@dataclass(frozen=True)
class FinetuneResult:
    """A job's outcome. ``preempted``: stopped by SIGTERM after saving a checkpoint (no
    adapter written; run again with resume). ``manifest`` is empty then."""

    adapter_dir: Path
    manifest: dict[str, Any]
    metrics: dict[str, float]
    checkpoint_dir: Path
    steps: int
    preempted: bool = False
    resumed_from: Path | None = None
    run_id: str | None = None
    notes: list[str] = field(default_factory=list)
    main_process: bool = True  # False in the other DDP ranks: they train, the main one reports
    gates: list[GateResult] = field(default_factory=list)
    version: ModelVersion | None = None  # the registered adapter version (alias candidate)
    eval_gates: list[GateResult] = field(default_factory=list)  # the suite's, on the adapter
    eval_report: Path | None = None  # the eval-suite run's report.html
    eval_run_id: str | None = None  # its MLflow run

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in (*self.gates, *self.eval_gates))


def run_job(
    loaded: LoadedFinetune,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    report: Callable[[Progress], None] | None = None,
) -> FinetuneResult:
    """Train ``loaded``'s job; on completion write adapter, tokenizer, job copy and manifest to
    its output_dir. Raises DatasetError (bad data line), FinetuneError, ConfigError.

    Under ``accelerate launch`` / ``torchrun`` every rank trains; only the main one (rank 0)
    tracks in MLflow, writes the adapter and manifest, runs the gates and registers. The
    others return a result with ``main_process`` False and no manifest."""
    require("peft", "local")
    from llmops.finetune import distributed
    from llmops.finetune.manifest import manifest, write_output
    from llmops.finetune.trainer import train

    output = loaded.path(loaded.job.output_dir)
    if loaded.job.registry.eval_suite is not None:  # a broken suite fails before training
        from llmops.pipelines.finetune_suite import check_suite

        check_suite(loaded)
    main = distributed.is_main()
    tracker = _tracker(loaded, output, resume) if main else None
    callbacks = [tracker] if tracker is not None else []
    outcome = train(loaded, resume=resume, max_steps=max_steps, report=report, callbacks=callbacks)
    metrics = {k: v for k, v in outcome.eval_metrics.items()}
    found: dict[str, Any] = {}
    if not outcome.preempted and main:
        found = manifest(
            loaded,
            steps=outcome.steps,
            dtype=outcome.dtype,
            quantized=outcome.quantized,
            eval_loss=metrics.get("eval_loss"),
            world_size=outcome.world_size,
        )
        write_output(loaded, output, outcome.model, outcome.tokenizer, found)
    run_id = tracker.finish(metrics, outcome) if tracker else None
    result = FinetuneResult(
        adapter_dir=output,
        manifest=found,
        metrics=metrics,
        checkpoint_dir=outcome.checkpoint_dir,
        steps=outcome.steps,
        preempted=outcome.preempted,
        resumed_from=outcome.resumed_from,
        run_id=run_id,
        notes=outcome.notes,
        main_process=main,
    )
    if outcome.preempted or not main:
        return result
    return _gate_and_register(loaded, result, output)


def _gate_and_register(
    loaded: LoadedFinetune, result: FinetuneResult, output: Path
) -> FinetuneResult:
    """The job's gates on its final validation metrics; when they pass (and the job registers),
    the adapter becomes a new version of the registered model with the alias candidate, in the
    job's MLflow run."""
    settings = loaded.job.registry
    gates = check([parse_gate(g) for g in settings.gates], result.metrics)
    result = replace(result, gates=gates)
    if result.passed and settings.eval_suite is not None:
        result = _eval_suite_gate(loaded, result, output)
    if not result.passed or not settings.publish or result.run_id is None:
        return result
    eval_tags = {"finetune.eval_run": result.eval_run_id} if result.eval_run_id else {}
    registry = ModelRegistry(settings.tracking_uri or default_tracking_uri(output))
    version = register_adapter(
        registry,
        loaded.job.model_name,
        output,
        AdapterManifest.from_dict(result.manifest, where=str(output / "manifest.json")),
        metrics=result.metrics,
        params={"steps": result.steps},
        tags={"finetune.job": loaded.job.name, **eval_tags},
        run_id=result.run_id,
        extra_files=[Path(loaded.file)],
    )
    return replace(result, version=version)


def _eval_suite_gate(
    loaded: LoadedFinetune, result: FinetuneResult, output: Path
) -> FinetuneResult:
    """The job's eval suite with the adapter as a variant beside the base model, logged to the
    job's tracking URI; its gates on the adapter join the result's."""
    from llmops.pipelines.finetune_suite import run_eval_gate

    uri = loaded.job.registry.tracking_uri or default_tracking_uri(output)
    outcome = run_eval_gate(loaded, output, uri)
    return replace(
        result, eval_gates=outcome.gates, eval_report=outcome.report, eval_run_id=outcome.run_id
    )


def _flat(value: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _flat(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield metric_key(prefix), str(value)[:MAX_PARAM]


def _tracker(loaded: LoadedFinetune, output: Path, resume: bool) -> Any:
    """An MLflow TrainerCallback, or None when the job turns tracking off. A resumed job goes
    on logging into the run its first attempt started."""
    if not loaded.job.registry.track:
        return None
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    mlflow = require("mlflow", "eval")
    from transformers import TrainerCallback

    uri = loaded.job.registry.tracking_uri or default_tracking_uri(output)
    output.mkdir(parents=True, exist_ok=True)
    prepare_store(uri)
    client = mlflow.MlflowClient(uri)
    id_file = output / RUN_ID_FILE
    run_id = id_file.read_text().strip() if resume and id_file.is_file() else None
    if run_id is None:
        run_id = _start_run(client, loaded, output, uri)
        id_file.write_text(run_id)

    class MlflowLogger(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
            for key, value in (logs or {}).items():
                if isinstance(value, int | float):
                    client.log_metric(run_id, metric_key(key), float(value), step=state.global_step)

        def finish(self, metrics: dict[str, float], outcome: Any) -> str:
            steps = outcome.steps
            for key, value in metrics.items():
                client.log_metric(run_id, metric_key("final", key), value, step=steps)
            # a tag, not a param: a resumed attempt may run on another number of processes
            client.set_tag(run_id, "finetune.world_size", str(outcome.world_size))
            if not outcome.preempted:
                client.log_artifact(run_id, loaded.file)
                client.set_terminated(run_id, "FINISHED")
            return str(run_id)

    return MlflowLogger()


def _start_run(client: Any, loaded: LoadedFinetune, output: Path, uri: str) -> str:
    name = f"finetune-{loaded.job.name}"
    found = client.get_experiment_by_name(name)
    if found is not None:
        experiment = str(found.experiment_id)
    else:
        location = artifact_root(uri, output)
        experiment = str(client.create_experiment(name, artifact_location=location))
    run = client.create_run(experiment, run_name=loaded.job.name)
    params = dict(_flat(loaded.job.model_dump(mode="json")))
    for key, value in params.items():
        client.log_param(run.info.run_id, key, value)
    return str(run.info.run_id)
