"""Registered adapters outside ``hf_local``: vLLM's LoRA flags and runtime-loading request for a
version, and a merged model folder for servers without LoRA support."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops.deps import require
from llmops.errors import RegistryError
from llmops.models.adapters import AdapterManifest

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM's --max-lora-rank accepts."""


@dataclass(frozen=True)
class VllmLora:
    """How a vLLM server serves one adapter version."""

    lora_name: str  # versioned: a reused name can serve a stale cached adapter (vllm#42125)
    lora_path: str
    max_lora_rank: int

    @property
    def flags(self) -> list[str]:
        """``vllm serve`` flags that load the adapter at start."""
        return [
            "--enable-lora",
            "--lora-modules",
            f"{self.lora_name}={self.lora_path}",
            "--max-lora-rank",
            str(self.max_lora_rank),
        ]

    @property
    def load_body(self) -> dict[str, str]:
        """The JSON body of ``POST /v1/load_lora_adapter`` (a server started with
        VLLM_ALLOW_RUNTIME_LORA_UPDATING=True loads the adapter without a restart)."""
        return {"lora_name": self.lora_name, "lora_path": self.lora_path}


def vllm_lora(name: str, version: int, folder: Path, manifest: AdapterManifest) -> VllmLora:
    """vLLM's view of adapter ``name`` version ``version`` downloaded in ``folder``."""
    fitting = [rank for rank in VLLM_LORA_RANKS if rank >= manifest.rank]
    if not fitting:
        raise RegistryError(
            f"adapter '{name}' version {version} has rank {manifest.rank}; vLLM serves ranks "
            f"up to {VLLM_LORA_RANKS[-1]}"
        )
    return VllmLora(f"{name}-v{version}", str(Path(folder).resolve()), fitting[0])


def merge_adapter(adapter_dir: Path, base_dir: Path, out: Path, dtype: str = "float32") -> Path:
    """Write ``base_dir``'s model with the adapter's weights merged in (peft
    ``merge_and_unload``) and the tokenizer (the adapter's own when it has one) into ``out``."""
    torch = require("torch", "local")
    transformers = require("transformers", "local")
    peft = require("peft", "local")
    if not (Path(base_dir) / "config.json").is_file():
        raise RegistryError(f"base model folder not found (no config.json): {base_dir}")
    base: Any = transformers.AutoModelForCausalLM.from_pretrained(
        base_dir, dtype=getattr(torch, dtype)
    )
    try:
        merged = peft.PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    except (ValueError, KeyError, RuntimeError) as exc:
        raise RegistryError(f"the adapter at {adapter_dir} does not fit {base_dir}: {exc}") from exc
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out)
    names = ("tokenizer.json", "tokenizer_config.json")
    has_tokenizer = any((Path(adapter_dir) / name).is_file() for name in names)
    tokenizer_dir = adapter_dir if has_tokenizer else base_dir
    transformers.AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    return out
