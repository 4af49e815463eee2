"""Loading a registered adapter version into running vLLM servers: what `llmops finetune
publish vllm` does, and what `llmops models promote --vllm-url` does after moving the alias."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from llmops.cli.common import console, errors, run
from llmops.models import ModelRegistry
from llmops.models.adapter_export import VllmLora, publish_to_vllm, vllm_lora
from llmops.models.adapters import AdapterManifest, download_adapter

ApiKeyOption = typer.Option(
    None, "--api-key", envvar="VLLM_API_KEY", help="vLLM's --api-key (env VLLM_API_KEY)."
)
DirOption = typer.Option(
    Path(".llmops/adapters"), "--dir", help="Download the adapter under DIR/NAME/vN."
)
ServerDirOption = typer.Option(
    None,
    "--server-dir",
    help="Where the server sees --dir (a shared volume mounted elsewhere): the path sent is "
    "SERVER_DIR/NAME/vN.",
)
UnloadOlderOption = typer.Option(
    False, "--unload-older", help="Unload the server's other versions of this adapter."
)
TimeoutOption = typer.Option(30.0, "--timeout", min=0.1, help="Seconds per request.")


def downloaded_lora(
    registry: ModelRegistry, name: str, version: int, into: Path
) -> tuple[AdapterManifest, VllmLora]:
    """Version ``version`` of adapter ``name`` downloaded under INTO/NAME/vN: its manifest,
    and the adapter as vLLM takes it (under the versioned name NAME-vN)."""
    dst = into / name / f"v{version}"
    folder, manifest, _ = run(lambda: download_adapter(registry, name, str(version), dst))
    return manifest, run(lambda: vllm_lora(name, version, folder, manifest))


def publish(
    lora: VllmLora,
    url: str,
    api_key: str | None,
    server_dir: str | None,
    unload_older: bool,
    timeout: float,
) -> None:
    """Load ``lora`` into the vLLM server at ``url`` and say what happened (exit 1 with the
    server's message when it refuses or is down)."""
    if server_dir is not None:
        name, version = lora.lora_name.rsplit("-v", 1)
        remote = f"{server_dir.rstrip('/')}/{name}/v{version}"
        lora = VllmLora(lora.lora_name, remote, lora.max_lora_rank)
    done = run(
        lambda: asyncio.run(
            publish_to_vllm(
                url, lora, api_key=api_key, unload_older=unload_older, timeout_s=timeout
            )
        )
    )
    state = "was already loaded" if done.already_loaded else "loaded"
    line = f"{done.lora_name} {state} on {url} (from {lora.lora_path})"
    console.print(line, markup=False, highlight=False, soft_wrap=True)
    for old in done.unloaded:
        errors.print(f"unloaded {old}", markup=False, highlight=False)
