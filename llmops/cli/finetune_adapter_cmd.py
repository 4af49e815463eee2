"""llmops finetune render vllm · render k8s · publish vllm · merge: registered adapters for
servers other than hf_local, and a job's manifests for a Kubernetes or Kubeflow cluster."""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path
from typing import Any

import typer

from llmops.cli.common import ConfigArg, console, run
from llmops.cli.models_cmd import TrackingUriOption, _registry
from llmops.cli.vllm_publish import (
    ApiKeyOption,
    DirOption,
    ServerDirOption,
    TimeoutOption,
    UnloadOlderOption,
    downloaded_lora,
    publish,
)
from llmops.config import load_finetune_config, read_yaml
from llmops.config.yaml_source import dump_yaml
from llmops.errors import RegistryError
from llmops.finetune.manifests import ClusterSpec, render
from llmops.models import PRODUCTION
from llmops.models.adapter_export import VllmLora, merge_adapter
from llmops.models.adapters import base_model_sha256, download_adapter

render_app = typer.Typer(
    help="Print how another server serves a registered adapter, or a job's cluster manifests."
)
publish_app = typer.Typer(help="Load a registered adapter into a running server.")
RefArgument = typer.Argument(
    ..., metavar="NAME[@REF]", help="support-lora (production), support-lora@candidate, @3."
)


def _split(ref: str) -> tuple[str, str]:
    name, _, version_ref = ref.partition("@")
    return name, version_ref or PRODUCTION


@render_app.command("vllm")
def render_vllm(
    ref: str = RefArgument,
    into: Path = typer.Option(
        Path(".llmops/adapters"), "--dir", help="Download the adapter under DIR/NAME/vN."
    ),
    tracking_uri: str | None = TrackingUriOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """The `vllm serve` flags for a registered adapter, under a versioned name (NAME-vN: vLLM
    caches adapters by name, so a reused name can serve the old weights), and the body of
    vLLM's runtime `POST /v1/load_lora_adapter` for a running server.

    Example: `llmops finetune render vllm support-lora@production`.
    """
    _, _, manifest, lora = _vllm_lora(ref, into, tracking_uri)
    if as_json:
        rendered = {
            "lora_name": lora.lora_name,
            "lora_path": lora.lora_path,
            "flags": lora.flags,
            "load_lora_adapter": lora.load_body,
        }
        console.print_json(json.dumps(rendered))
        return
    body = json.dumps(lora.load_body)
    console.print(
        f"# vllm serve {manifest.base_model} \\\n#   {shlex.join(lora.flags)}\n"
        f"{shlex.join(lora.flags)}\n"
        "# a running server (VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) loads it without a restart:\n"
        f"# curl -X POST http://localhost:8000/v1/load_lora_adapter "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}\n{body}",
        markup=False,
        highlight=False,
    )


@render_app.command("k8s")
def render_k8s(
    config: ConfigArg,
    image: str = typer.Option("llmops:latest", "--image", help="An image with llmops[local]."),
    gpus: int = typer.Option(1, "--gpus", min=0, help="GPUs per node (one process each)."),
    nodes: int = typer.Option(1, "--nodes", min=1, help="Nodes; >1 renders a PyTorchJob."),
    kubeflow: bool = typer.Option(
        False, "--kubeflow", help="A Kubeflow PyTorchJob even on one node."
    ),
    pvc: str | None = typer.Option(
        None, "--pvc", help="The PVC holding the job's folder (default: NAME-workspace)."
    ),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
    grace: int = typer.Option(
        600, "--grace", min=30, help="terminationGracePeriodSeconds: one step + a checkpoint."
    ),
) -> None:
    """Print a ConfigMap with the job file and a `batch/v1` Job (a Kubeflow PyTorchJob with
    Master and Worker replicas with --kubeflow or --nodes > 1) that runs `accelerate launch
    ... finetune run /job/job.yaml --resume`: a rescheduled pod goes on from its newest
    checkpoint. The job's relative paths become /workspace/... on the PVC: copy the job's
    folder (base model, data) there; output_dir and its checkpoints land there too.

    Example: llmops finetune render k8s configs/finetune-support.yaml --gpus 4 | kubectl apply -f -
    """
    run(lambda: load_finetune_config(config))  # every problem, located, before rendering
    raw, _ = read_yaml(Path(config))  # the guarded reader: size, depth and alias limits
    spec = ClusterSpec(image, gpus, nodes, kubeflow, pvc, namespace, grace)
    documents, notes = render(raw, spec)
    header = [f"# rendered by `llmops finetune render k8s {Path(config).name}`"]
    header += [f"# note: {note}" for note in notes]
    body = dump_yaml(documents, explicit_start=True)
    typer.echo("\n".join(header) + "\n" + body, nl=False)


@publish_app.command("vllm")
def publish_vllm(
    ref: str = RefArgument,
    url: str = typer.Option(..., "--url", help="The vLLM server, e.g. http://vllm:8000."),
    api_key: str | None = ApiKeyOption,
    into: Path = DirOption,
    server_dir: str | None = ServerDirOption,
    unload_older: bool = UnloadOlderOption,
    timeout: float = TimeoutOption,
    tracking_uri: str | None = TrackingUriOption,
) -> None:
    """Load a registered adapter into a running vLLM server (`POST /v1/load_lora_adapter`;
    the server needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) under a versioned name, NAME-vN:
    vLLM caches adapters by name, so reusing a name can serve the old weights. Requests then
    ask for model NAME-vN. Exit 1 with the server's message when it refuses or is down.
    `llmops models promote NAME --vllm-url URL` does the same right after a promotion.

    Example: llmops finetune publish vllm support-lora@production --url http://vllm:8000
    """
    _, _, _, lora = _vllm_lora(ref, into, tracking_uri)
    publish(lora, url, api_key, server_dir, unload_older, timeout)


def merge(
    ref: str = RefArgument,
    base: Path = typer.Option(..., "--base", help="The base model folder the adapter is for."),
    output: Path = typer.Option(..., "--output", "-o", help="The merged model folder to write."),
    dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16 or float16."),
    force: bool = typer.Option(
        False, "--force", help="Merge even when the manifest names another base model."
    ),
    tracking_uri: str | None = TrackingUriOption,
) -> None:
    """Merge a registered adapter into its base model (peft merge_and_unload) and write a model
    folder with the tokenizer, for servers without LoRA support. The base folder must be the
    one the adapter was trained on (its sha256 is checked against the manifest).

    Example: `llmops finetune merge support-lora@production --base models/qwen -o merged/`.
    """
    name, version_ref = _split(ref)
    registry = _registry(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        folder, manifest, version = run(
            lambda: download_adapter(registry, name, version_ref, Path(tmp))
        )
        found = run(lambda: base_model_sha256(base))
        if found != manifest.base_model_sha256 and not force:
            run(lambda: _mismatch(name, version.version, manifest.base_model, base))
        written = run(lambda: merge_adapter(folder, base, output, dtype))
    console.print(
        f"{name} version {version.version} merged into {base} -> {written}",
        markup=False,
        highlight=False,
    )


def _mismatch(name: str, version: int, trained_on: str, base: Path) -> None:
    raise RegistryError(
        f"adapter '{name}' version {version} was trained on base model '{trained_on}', whose "
        f"sha256 differs from {base}; pass the base folder it was trained on (or --force)"
    )


def _vllm_lora(ref: str, into: Path, tracking_uri: str | None) -> tuple[str, Any, Any, VllmLora]:
    """The registered adapter NAME@REF downloaded under INTO/NAME/vN: its name, version,
    manifest, and the adapter as vLLM takes it."""
    name, version_ref = _split(ref)
    registry = _registry(tracking_uri)
    version = run(lambda: registry.get(name, version_ref))
    manifest, lora = downloaded_lora(registry, name, version.version, into)
    return name, version, manifest, lora
