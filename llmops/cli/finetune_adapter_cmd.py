"""llmops finetune render vllm · merge: registered adapters for servers other than hf_local."""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path

import typer

from llmops.cli.common import console, run
from llmops.cli.models_cmd import TrackingUriOption, _registry
from llmops.errors import RegistryError
from llmops.models import PRODUCTION
from llmops.models.adapter_export import merge_adapter, vllm_lora
from llmops.models.adapters import base_model_sha256, download_adapter

render_app = typer.Typer(help="Print how another server serves a registered adapter.")
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
    name, version_ref = _split(ref)
    registry = _registry(tracking_uri)
    version = run(lambda: registry.get(name, version_ref))
    dst = into / name / f"v{version.version}"
    folder, manifest, _ = run(lambda: download_adapter(registry, name, str(version.version), dst))
    lora = run(lambda: vllm_lora(name, version.version, folder, manifest))
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
