"""Tokens/s of `llmops finetune run` against a plain peft + transformers script with the same
model, data and settings, in one run (goal: overhead ≤ 5 %).

    python bench/finetune.py [--steps 200] [--rounds 3] [--hidden 384]

Both train LoRA (r 8, all linear layers) on a random Llama-style model built here from a
config (never downloaded) on the same 256 chat examples, batch 4, sequences up to 128 tokens,
float32 on the CPU, no checkpoints or evaluation inside the timed steps. Speed is non-padding
input tokens over the training loop's wall time (model loading and tokenization excluded) in
both, measured by the same kind of TrainerCallback. Rounds alternate the two; medians are
reported.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from common import ROOT, emit, machine, median

sys.path.insert(0, str(ROOT))

BATCH, SEQ, RANK = 4, 128, 8


def write_data(folder: Path, count: int = 256) -> Path:
    rows = []
    for i in range(count):
        words = " ".join(f"w{(i * 7 + j) % 97}" for j in range(20 + i % 30))
        rows.append(
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": f"Question {i}: {words}?"},
                        {"role": "assistant", "content": f"Answer {i}: {words[::-1]}."},
                    ]
                }
            )
        )
    path = folder / "train.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def llmops_run(folder: Path, model: Path, data: Path, steps: int) -> float:
    from llmops.config import load_finetune_config
    from llmops.pipelines.finetune import run_job

    job = {
        "kind": "finetune",
        "name": "bench-lora",
        "base_model": str(model),
        "datasets": {
            "train": [{"path": str(data), "format": "chat"}],
            "validation_ratio": 0.05,
            "seed": 1,
            "max_seq_length": SEQ,
        },
        "lora": {"r": RANK, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
        "training": {"batch_size": BATCH, "max_steps": steps, "seed": 1, "logging_steps": 1,
                     "learning_rate": 1e-4},
        "checkpoints": {"every_steps": 100_000, "keep_last": 1},
        "output_dir": str(folder / "out"),
        "registry": {"track": False, "publish": False},
    }  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    speeds: list[float] = []
    run_job(load_finetune_config(path), report=lambda p: speeds.append(p.tokens_per_s))
    return speeds[-1]


def plain_run(folder: Path, model_dir: Path, data: Path, steps: int) -> float:
    """What a team writes first: tokenize, LoRA with peft, transformers' Trainer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    examples = []
    for row in rows:
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])[:SEQ]
        examples.append({"input_ids": ids, "labels": ids})

    def collate(batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        pad = tokenizer.pad_token_id
        ids = [b["input_ids"] + [pad] * (width - len(b["input_ids"])) for b in batch]
        labels = [b["labels"] + [-100] * (width - len(b["labels"])) for b in batch]
        mask = [[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                "attention_mask": torch.tensor(mask)}  # fmt: skip

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    lora = LoraConfig(r=RANK, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")  # fmt: skip
    model = get_peft_model(model, lora)
    timing: dict[str, float] = {}

    class Speed(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timing["start"] = time.perf_counter()

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            timing["tokens"] = float(state.num_input_tokens_seen)
            timing["seconds"] = time.perf_counter() - timing["start"]

    args = TrainingArguments(
        output_dir=str(folder / "plain"), per_device_train_batch_size=BATCH, max_steps=steps,
        learning_rate=1e-4, seed=1, logging_steps=1, save_strategy="no", report_to="none",
        disable_tqdm=True, dataloader_num_workers=0, remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding", use_cpu=True,
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=examples, data_collator=collate,
            callbacks=[Speed()]).train()  # fmt: skip
    return timing["tokens"] / timing["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=384)
    args = parser.parse_args()
    from tests.tiny_models import build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "model", hidden_size=args.hidden)
        data = write_data(root)
        runs: dict[str, list[float]] = {"llmops": [], "plain": []}
        for i in range(args.rounds):
            runs["plain"].append(plain_run(root / f"p{i}", model, data, args.steps))
            runs["llmops"].append(llmops_run(root / f"l{i}", model, data, args.steps))
    llmops_speed, plain_speed = median(runs["llmops"]), median(runs["plain"])
    emit(
        {
            "machine": machine(),
            "settings": {
                "steps": args.steps,
                "batch": BATCH,
                "max_seq": SEQ,
                "rank": RANK,
                "hidden": args.hidden,
            },
            "tokens_per_s": {"llmops": round(llmops_speed, 1), "plain": round(plain_speed, 1)},
            "rounds": runs,
            "overhead_pct": round(100 * (plain_speed - llmops_speed) / plain_speed, 2),
        }
    )


if __name__ == "__main__":
    main()
