"""llmops models list · show · promote · rollback · export: the model registry (MLflow) from a
terminal."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from llmops.cli.common import console, errors, run
from llmops.cli.vllm_publish import (
    ApiKeyOption,
    DirOption,
    ServerDirOption,
    TimeoutOption,
    UnloadOlderOption,
    downloaded_lora,
    publish,
)
from llmops.errors import RegistryError
from llmops.models import (
    CANDIDATE,
    LATEST,
    PRODUCTION,
    ModelRegistry,
    ModelVersion,
    local_tracking_uri,
    onnx_export,
)
from llmops.models.adapters import KIND_TAG
from llmops.models.registry import holder

app = typer.Typer(
    help="Registered models and their aliases: `candidate` (newest version), `production` "
    "(serving) and `previous` (what `rollback` restores). The registry is MLflow's: "
    "--tracking-uri, else MLFLOW_TRACKING_URI, else .llmops/mlflow.db in this folder.",
    no_args_is_help=True,
)
TrackingUriOption = typer.Option(
    None,
    "--tracking-uri",
    envvar="MLFLOW_TRACKING_URI",
    help="MLflow tracking URI (sqlite:///path.db or http://host:5000). "
    "Default: sqlite:///.llmops/mlflow.db in the current folder.",
)
JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")
ConfigOption = typer.Option(
    None, "--config", "-c", help="A model app (kind: model): its registry (registry.tracking_uri "
    "or the MLflow database in its data_dir).",
)  # fmt: skip


def _registry(tracking_uri: str | None, config: Path | None = None) -> ModelRegistry:
    if config is not None and tracking_uri is None:
        from llmops.config import load_model_app_config
        from llmops.pipelines.train import app_registry

        return app_registry(run(lambda: load_model_app_config(config)))
    return ModelRegistry(tracking_uri or local_tracking_uri(Path.cwd()))


@app.command("list")
def list_models(
    name: str | None = typer.Argument(None, help="A model: list its versions."),
    tracking_uri: str | None = TrackingUriOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """The registered models, or one model's versions with aliases, created time and metrics.

    Example: `llmops models list` then `llmops models list adult --json`.
    """
    registry = _registry(tracking_uri, config)
    if name is not None:
        _print_versions(name, run(lambda: registry.versions(name)), as_json)
        return
    models = run(lambda: {n: registry.versions(n) for n in registry.names()})
    if as_json:
        summary = [_model_summary(n, versions) for n, versions in models.items()]
        console.print_json(json.dumps(summary))
        return
    table = Table(
        "model", "kind", "versions", "newest", "aliases", title=f"models in {registry.tracking_uri}"
    )
    for model, versions in models.items():
        aliases = _summary_aliases(versions)
        listed = ", ".join(f"{alias} {number}" for alias, number in aliases.items())
        newest = str(versions[0].version) if versions else "-"
        kind = _kind(versions[0]) if versions else "-"
        table.add_row(model, kind, str(len(versions)), newest, listed or "-")
    console.print(table)


@app.command()
def show(
    ref: str = typer.Argument(..., metavar="NAME[@REF]", help="adult, adult@production, adult@3."),
    tracking_uri: str | None = TrackingUriOption,
    config: Path | None = ConfigOption,
    as_json: bool = JsonOption,
) -> None:
    """One version's details: aliases, metrics, tags, run id and artifact URI. REF is a version
    number, an alias or `latest` (the default: the newest version).

    Example: `llmops models show adult@production`.
    """
    registry = _registry(tracking_uri, config)
    name, _, version_ref = ref.partition("@")
    version = run(lambda: registry.get(name, version_ref or LATEST))
    if as_json:
        console.print_json(json.dumps(_as_dict(version)))
        return
    console.print(f"[bold]{version.name}[/bold] version {version.version}", highlight=False)
    for label, value in (
        ("kind", _kind(version)),
        ("aliases", ", ".join(version.aliases) or "-"),
        ("created", _when(version.created)),
        ("run id", version.run_id),
        ("source", version.source),
    ):
        console.print(f"  {label}: {value}", markup=False, highlight=False)
    table = Table("tag", "value")
    for key, value in sorted(version.tags.items()):
        table.add_row(key, value)
    console.print(table)


@app.command()
def promote(
    name: str = typer.Argument(..., help="The registered model."),
    ref: str = typer.Option(CANDIDATE, "--from", help="Version number or alias to promote."),
    to: str = typer.Option(PRODUCTION, "--to", help="The alias to point at it."),
    vllm_urls: list[str] = typer.Option(
        [],
        "--vllm-url",
        help="An adapter: then load it into this running vLLM server under its versioned "
        "name (repeat for several servers).",
    ),
    api_key: str | None = ApiKeyOption,
    into: Path = DirOption,
    server_dir: str | None = ServerDirOption,
    unload_older: bool = UnloadOlderOption,
    timeout: float = TimeoutOption,
    tracking_uri: str | None = TrackingUriOption,
    config: Path | None = ConfigOption,
) -> None:
    """Point an alias (production) at a version (the candidate); the version that was in
    production keeps the alias `previous`. For an adapter, `--vllm-url` then loads the new
    version into running vLLM servers as `llmops finetune publish vllm` does (versioned name
    NAME-vN; `--unload-older` drops the others); hf_local servers follow the alias by
    themselves.

    Example: `llmops models promote adult` prints `adult: production 3 -> 4 (previous: 3)`.
    """
    registry = _registry(tracking_uri, config)
    if vllm_urls:  # before the alias moves: a tabular model or a broken adapter moves nothing
        chosen = run(lambda: registry.get(name, ref))
        if _kind(chosen) != "adapter":
            run(lambda: _not_an_adapter(name, chosen.version))
        _, lora = downloaded_lora(registry, name, chosen.version, into)
    before = run(lambda: holder(registry.versions(name), to))
    promoted = run(lambda: registry.promote(name, ref, to))
    line = f"{name}: {to} {before or '-'} -> {promoted.version}"
    if to == PRODUCTION and before not in (None, promoted.version):
        line += f" (previous: {before})"
    console.print(line, markup=False, highlight=False)
    for url in vllm_urls:
        publish(lora, url, api_key, server_dir, unload_older, timeout)


def _not_an_adapter(name: str, version: int) -> None:
    raise RegistryError(
        f"'{name}' version {version} is not a LoRA adapter: --vllm-url loads adapters only"
    )


@app.command()
def rollback(
    name: str = typer.Argument(..., help="The registered model."),
    tracking_uri: str | None = TrackingUriOption,
    config: Path | None = ConfigOption,
) -> None:
    """Put the `previous` version back in production.

    Example: `llmops models rollback adult` prints `adult: production 4 -> 3 (rolled back 4)`.
    """
    registry = _registry(tracking_uri, config)
    before = run(lambda: holder(registry.versions(name), PRODUCTION))
    restored = run(lambda: registry.rollback(name))
    line = f"{name}: {PRODUCTION} {before or '-'} -> {restored.version}"
    console.print(
        line + (f" (rolled back {before})" if before else ""), markup=False, highlight=False
    )


class ExportFormat(StrEnum):
    onnx = "onnx"
    triton = "triton"


@app.command()
def export(
    ref: str = typer.Argument(
        ..., metavar="NAME[@REF]", help="adult (production), adult@candidate, adult@3."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="The folder to write into."),
    fmt: ExportFormat = typer.Option(
        ExportFormat.onnx,
        "--format",
        "-f",
        help="onnx: DIR/model.onnx and DIR/model.json (inputs, outputs, parity). triton: a "
        "Triton model repository, DIR/NAME/config.pbtxt and DIR/NAME/1/model.onnx.",
    ),
    rows: Path | None = typer.Option(
        None,
        "--rows",
        help="A CSV (header of column names) of rows to check parity on. "
        "Default: the input example stored with the version.",
    ),
    tolerance: float = typer.Option(
        onnx_export.TOLERANCE,
        "--tolerance",
        min=0.0,
        help="Largest max abs diff of probabilities allowed (regressors: × the largest "
        "prediction's size when above 1).",
    ),
    max_batch_size: int = typer.Option(
        512, "--max-batch-size", min=1, help="triton: config.pbtxt's max_batch_size."
    ),
    tracking_uri: str | None = TrackingUriOption,
    config: Path | None = ConfigOption,
) -> None:
    """Export a registered version to ONNX (skl2onnx), checked against scikit-learn first:
    ONNX Runtime's probabilities on the parity rows must match the pipeline's within
    --tolerance, or nothing is written (exit 1). The graph has one input per raw column
    (strings for encoded columns, "" when missing; float32 for numbers) and answers label and
    probabilities (regressors: variable).

    Examples:

      llmops models export adult -o out/
        production -> out/model.onnx + out/model.json

      llmops models export adult@3 -f triton -o models/ -c configs/adult.yaml
        models/adult/config.pbtxt + models/adult/1/model.onnx, then
        tritonserver --model-repository models/

      llmops models export adult@candidate -o out/ --rows holdout.csv --tolerance 1e-5
    """
    registry = _registry(tracking_uri, config)
    name, _, version_ref = ref.partition("@")
    version_ref = version_ref or PRODUCTION
    model, example, version = run(lambda: onnx_export.load_registered(registry, name, version_ref))
    checked = run(lambda: onnx_export.read_rows(rows)) if rows is not None else example
    if checked is None:
        errors.print(
            f"error: {name} version {version.version} has no stored input example to check "
            "parity on; pass --rows file.csv",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1)
    exported = run(lambda: onnx_export.export_onnx(model, checked, tolerance))
    if fmt is ExportFormat.triton:
        source = f"{name} version {version.version}"
        written = onnx_export.write_triton(exported, output, name, max_batch_size, source)
    else:
        written = onnx_export.write_onnx(exported, output)
    console.print(
        f"{name}@{version_ref} (version {version.version}, {exported.estimator}) -> {written}; "
        f"parity: max abs diff {exported.max_abs_diff:.3g} on {exported.rows} rows "
        f"(tolerance {exported.tolerance:g})",
        markup=False,
        highlight=False,
    )


def _print_versions(name: str, versions: list[ModelVersion], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps([_as_dict(v) for v in versions]))
        return
    table = Table("version", "aliases", "created", "run id", "metrics", title=name)
    for v in versions:
        metrics = ", ".join(f"{key} {value:.4g}" for key, value in sorted(v.metrics.items()))
        aliases = ", ".join(v.aliases) or "-"
        table.add_row(str(v.version), aliases, _when(v.created), v.run_id[:8], metrics or "-")
    console.print(table)


def _kind(version: ModelVersion) -> str:
    """``adapter`` for a LoRA adapter (tag llmops.kind), else ``model``."""
    return version.tags.get(KIND_TAG, "model")


def _summary_aliases(versions: list[ModelVersion]) -> dict[str, int]:
    return {alias: v.version for v in versions for alias in sorted(v.aliases)}


def _model_summary(name: str, versions: list[ModelVersion]) -> dict[str, Any]:
    return {
        "name": name,
        "versions": len(versions),
        "newest": versions[0].version if versions else None,
        "aliases": _summary_aliases(versions),
    }


def _as_dict(version: ModelVersion) -> dict[str, Any]:
    return {**asdict(version), "metrics": version.metrics}


def _when(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds).strftime("%Y-%m-%d %H:%M:%S")
