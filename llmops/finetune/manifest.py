"""What a finished job writes next to its adapter: the manifest (which base model, exactly,
and the adapter's shape) that serving checks before it loads the adapter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from llmops.config import LoadedFinetune
from llmops.model_files import base_model_sha256

MANIFEST = "manifest.json"
JOB_COPY = "job.yaml"


def manifest(
    loaded: LoadedFinetune,
    *,
    steps: int,
    dtype: str,
    quantized: bool,
    eval_loss: float | None,
    world_size: int = 1,
) -> dict[str, Any]:
    """``world_size``: the training processes (DDP ranks) of the run that finished."""
    job = loaded.job
    base = loaded.path(job.base_model)
    return {
        "name": job.name,
        "base_model": str(base),
        "base_model_sha256": base_model_sha256(base),
        "rank": job.lora.r,
        "alpha": job.lora.alpha,
        "target_modules": job.lora.target_modules,
        "dtype": dtype,
        "quantized_4bit": quantized,
        "objective": job.objective.type,
        "steps": steps,
        "final_eval_loss": eval_loss,
        "world_size": world_size,
    }


def write_output(
    loaded: LoadedFinetune, folder: Path, model: Any, tokenizer: Any, found: dict[str, Any]
) -> None:
    """The adapter (peft ``save_pretrained``), tokenizer, a copy of the job file and the
    manifest, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    shutil.copyfile(loaded.file, folder / JOB_COPY)
    (folder / MANIFEST).write_text(json.dumps(found, indent=2) + "\n")
