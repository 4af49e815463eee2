"""The eval-suite gate of a fine-tuning job (``registry.eval_suite``): the job's suite runs with
one more variant, ``adapter`` (an ``hf_local`` generator on the job's base model with the new
adapter as its default), beside ``baseline`` (the app as configured, i.e. the base model).
The suite's gates on that variant, and the job's ``eval_gates`` (which may compare with the
baseline: ``token_f1 >= baseline - 0.02``), decide whether the adapter is registered.

The variant is added by writing a copy of the suite with it beside the suite file (so every
relative path in the suite keeps its meaning); after the run that copy is moved into the
run's folder as ``suite.yaml``, the record of what was evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmops.build import AppSpec
from llmops.config import LoadedFinetune, resolve_path
from llmops.evaluation.gates import GateResult, check, parse_gate
from llmops.evaluation.suite import BASELINE, LoadedSuite
from llmops.pipelines.eval_run import load_checked_suite, run_suite

ADAPTER_VARIANT = "adapter"
# hf_local keys that name the served model and adapters: the job sets them
_REPLACED = ("type", "model", "adapters", "default_adapter", "registry_uri")


@dataclass(frozen=True)
class SuiteGate:
    """The adapter variant's gate results, the run's report and its MLflow run."""

    gates: list[GateResult]
    report: Path
    run_id: str | None


def check_suite(loaded: LoadedFinetune) -> tuple[LoadedSuite, AppSpec]:
    """The job's suite and its app, validated (ConfigError names the suite's file and line)."""
    suite_file = loaded.path(_suite_path(loaded))
    return load_checked_suite(suite_file)


def run_eval_gate(loaded: LoadedFinetune, adapter_dir: Path, tracking_uri: str) -> SuiteGate:
    """Run the job's suite with the adapter as a variant; gate the adapter variant."""
    suite, app_spec = check_suite(loaded)
    copy = _write_suite_copy(loaded, suite, app_spec, adapter_dir)
    try:
        run = run_suite(copy, tracking_uri=tracking_uri, track=loaded.job.registry.track)
    finally:
        kept = None
        if copy.is_file():
            kept = copy.read_text()
            copy.unlink()
    if kept is not None:
        (run.run_dir / "suite.yaml").write_text(kept)
    adapter = run.summaries[ADAPTER_VARIANT].values()
    baseline = run.summaries[BASELINE].values()
    extra = check(
        [parse_gate(g) for g in loaded.job.registry.eval_gates], adapter, {BASELINE: baseline}
    )
    gates = [*run.gates[ADAPTER_VARIANT], *extra]
    return SuiteGate(gates, run.run_dir / "report.html", run.mlflow_run_id)


def adapter_generator(
    loaded: LoadedFinetune, app_spec: AppSpec, adapter_dir: Path
) -> dict[str, Any]:
    """An hf_local section serving the adapter on the job's base model; sampling and loading
    settings come from the app's generator when that is hf_local too (so the adapter answers
    as the base model does)."""
    app_section = app_spec.loaded.data.get("generator")
    section: dict[str, Any] = {}
    if isinstance(app_section, dict) and app_section.get("type") == "hf_local":
        section = {k: v for k, v in app_section.items() if k not in _REPLACED}
        template = section.get("chat_template")
        if isinstance(template, str) and "{%" not in template and "\n" not in template:
            section["chat_template"] = str(resolve_path(app_spec.base_dir, template))
    name = loaded.job.name
    return {
        "type": "hf_local",
        "model": str(loaded.path(loaded.job.base_model)),
        **section,
        "adapters": {name: str(adapter_dir.resolve())},
        "default_adapter": name,
    }


def _suite_path(loaded: LoadedFinetune) -> str:
    path = loaded.job.registry.eval_suite
    if path is None:  # (callers check)
        raise ValueError("the job has no registry.eval_suite")
    return path


def _write_suite_copy(
    loaded: LoadedFinetune, suite: LoadedSuite, app_spec: AppSpec, adapter_dir: Path
) -> Path:
    """The suite with the variant ``adapter`` (kept from the suite when it names one: its
    prompt and retrieval stay, the generator is the job's), written beside the suite file."""
    data = suite.spec.model_dump(mode="json", exclude_unset=True)
    variants = [v for v in data.get("variants", []) if v.get("name") != ADAPTER_VARIANT]
    named = [v for v in data.get("variants", []) if v.get("name") == ADAPTER_VARIANT]
    variant = named[0] if named else {"name": ADAPTER_VARIANT}
    variant["generator"] = adapter_generator(loaded, app_spec, adapter_dir)
    data["variants"] = [*variants, variant]
    source = Path(suite.file).resolve()
    copy = source.with_name(f".{source.stem}.{loaded.job.name}.finetune.yaml")
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy
