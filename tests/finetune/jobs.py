"""A tiny fine-tuning job on disk: a random 2-layer Llama, generated chat/instruction data and
a `kind: finetune` YAML file pointing at them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.tiny_models import build_tiny_model

TOPICS = ("backup", "pricing", "widgets", "citations", "restore", "seats", "colors", "servers")


def write_chat_data(path: Path, count: int = 48) -> Path:
    rows = []
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        row: dict[str, object] = {
            "messages": [
                {"role": "user", "content": f"Question {i} about {topic}?"},
                {"role": "assistant", "content": f"Answer {i}: the {topic} guide covers it."},
            ]
        }
        if i % 3 == 0:
            row["context"] = [f"The {topic} guide, part {i}.", "Stop the server first."]
        rows.append(json.dumps(row))
    path.write_text("\n".join(rows) + "\n")
    return path


def write_job(
    folder: Path,
    model: Path,
    *,
    max_steps: int = 20,
    every: int = 1,
    track: bool = False,
    **overrides: object,
) -> Path:
    """The job file in ``folder`` (data written beside it); ``overrides`` replace top-level
    sections."""
    data = write_chat_data(folder / "train.jsonl")
    job: dict[str, object] = {
        "kind": "finetune",
        "name": "tiny-lora",
        "base_model": str(model),
        "datasets": {
            "train": [{"path": data.name, "format": "chat"}],
            "validation_ratio": 0.1,
            "seed": 7,
            "max_seq_length": 64,
        },
        "lora": {"r": 4, "alpha": 8, "dropout": 0.1, "target_modules": "all-linear"},
        "training": {
            "learning_rate": 1e-3,
            "batch_size": 2,
            "max_steps": max_steps,
            "seed": 11,
            "logging_steps": 1,
            "warmup_steps": 2,
            "lr_scheduler": "cosine",
        },
        "checkpoints": {"every_steps": every, "keep_last": 50},
        "output_dir": "out",
        "registry": {"track": track},
        **overrides,
    }
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def tiny_model(folder: Path) -> Path:
    return build_tiny_model(folder, hidden_size=32)
