"""The shape of a fine-tuning job (``kind: finetune``): a LoRA adapter (QLoRA on CUDA) trained
on local data from a local base model. Same YAML system as the other configs: ``file:line:col``
errors, ``${ENV}`` interpolation, the JSON Schema, ``llmops validate``.

    kind: finetune
    name: support-lora
    base_model: models/tiny-llama          # a local folder, relative to this file
    datasets:
      train: [{path: data/support.jsonl, format: chat}]
      validation_ratio: 0.1
      max_seq_length: 512
    lora: {r: 16, alpha: 32, target_modules: all-linear}
    training: {learning_rate: 2.0e-4, max_steps: 200}
    checkpoints: {every_steps: 50, keep_last: 3}
    output_dir: runs/support-lora
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from llmops.config.component import AppName, Strict

DataFormat = Literal["instruction", "chat", "completion"]
# the gate language (llmops.evaluation.gates), its only baseline being the suite's `baseline`
_EVAL_GATE = re.compile(
    r"^\s*[A-Za-z_][\w@.]*\s*(>=|<=|==|>|<)\s*"
    r"(-?\d+(\.\d*)?(e-?\d+)?|baseline(\s*[+-]\s*\d+(\.\d*)?(e-?\d+)?)?)\s*$"
)


class DataFile(Strict):
    """One training file. ``instruction``: JSONL of {instruction, input?, output, context?};
    ``chat``: JSONL of {messages: [{role, content}], context?}; ``completion``: JSONL of {text}
    or {prompt, completion}, or a plain-text file whose blank-line-separated blocks are
    examples. ``context`` (a list of passages) is put into the prompt, RAG style."""

    path: str = Field(description="Relative to the config file.")
    format: DataFormat = "chat"


class DatasetsConfig(Strict):
    train: list[DataFile] = Field(min_length=1)
    validation: list[DataFile] = Field(
        default_factory=list,
        description="Validation files; without them validation_ratio of train is held out.",
    )
    validation_ratio: float = Field(0.1, ge=0, lt=1, description="0: no validation.")
    seed: int = Field(42, description="Seed of the shuffle before the split.")
    max_seq_length: int = Field(1024, ge=8, description="Longer examples are truncated.")
    packing: bool = Field(False, description="Concatenate examples into max_seq_length blocks.")
    system_prompt: str | None = Field(None, description="Prepended to instruction examples.")
    context_header: str = Field(
        "Answer from the numbered passages.",
        description="Put before an example's passages when it has a `context`.",
    )

    def formats(self) -> set[str]:
        return {f.format for f in (*self.train, *self.validation)}


class LoraConfig(Strict):
    r: int = Field(16, ge=1, le=1024)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names, or all-linear (every linear layer but the head)."
    )


class QuantizationConfig(Strict):
    """QLoRA: the base model loaded in 4 bits through bitsandbytes. Only with CUDA; on a
    CPU-only machine the job notes it and trains full-precision LoRA."""

    bits: Literal[4] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"


class TrainingConfig(Strict):
    optimizer: str = Field("adamw_torch", description="A transformers `optim` name.")
    learning_rate: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    lr_scheduler: str = Field("linear", description="linear, cosine, constant, ...")
    warmup_steps: float = Field(
        0, ge=0, description="Steps of linear warmup, or a fraction in [0, 1) of all steps."
    )
    batch_size: int = Field(4, ge=1, description="Per device.")
    gradient_accumulation_steps: int = Field(1, ge=1)
    gradient_checkpointing: bool = False
    max_grad_norm: float = Field(1.0, ge=0)
    max_steps: int | None = Field(None, ge=1, description="Overrides epochs when set.")
    epochs: float = Field(1.0, gt=0)
    seed: int = 42
    logging_steps: int = Field(10, ge=1)


class EvaluationConfig(Strict):
    every_steps: int | None = Field(
        None, ge=1, description="Validation loss and perplexity every N steps (default: at end)."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after N evaluations without improvement; keeps the best."
    )


class CheckpointConfig(Strict):
    every_steps: int = Field(100, ge=1)
    keep_last: int = Field(3, ge=1)


class SftObjective(Strict):
    type: Literal["sft"] = "sft"


class DistillObjective(Strict):
    """Loss = alpha · KL(teacher ‖ student) on temperature-softened logits · T² +
    (1 − alpha) · the hard-label loss. The teacher must share the student's tokenizer."""

    type: Literal["distill"]
    teacher: str = Field(description="The teacher model's folder, relative to the config.")
    alpha: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(2.0, gt=0)


class FinetuneRegistryConfig(Strict):
    track: bool = Field(True, description="Log params and per-step metrics to MLflow.")
    tracking_uri: str | None = Field(
        None, description="Default: sqlite under output_dir (mlflow.db)."
    )
    model_name: str | None = Field(None, description="Registered model name (default: name).")
    publish: bool = Field(
        True,
        description="Register the adapter as a new version (alias candidate) when the gates "
        "pass; needs track.",
    )
    gates: list[str] = Field(
        default_factory=list,
        description="Gates on the final validation metrics, e.g. 'eval_loss <= 2.5', "
        "'eval_perplexity <= 12' (the eval-suite language); a failed gate registers nothing.",
    )
    eval_suite: str | None = Field(
        None,
        description="An eval suite file (relative to this file) run after training, once "
        "`gates` pass, with the adapter added as the variant `adapter` (hf_local on base_model, "
        "the adapter as its default) beside the baseline (the base model as the suite's app "
        "serves it); the suite's gates on that variant and `eval_gates` decide the "
        "registration.",
    )
    eval_gates: list[str] = Field(
        default_factory=list,
        description="Gates on the adapter variant's eval-suite figures that may compare with "
        "the baseline variant, e.g. 'token_f1 >= baseline - 0.02', 'p95_latency_ms <= 2000'; "
        "need eval_suite.",
    )

    @model_validator(mode="after")
    def _eval_gates_need_a_suite(self) -> Self:
        if self.eval_gates and self.eval_suite is None:
            raise ValueError("eval_gates are checked on an eval suite's run: set eval_suite too")
        bad = [g for g in self.eval_gates if not _EVAL_GATE.match(g)]
        if bad:
            raise ValueError(
                f"cannot read the gate '{bad[0]}'; expected '<metric> <op> <number>' or "
                "'<metric> <op> baseline [+|- <number>]' (e.g. 'token_f1 >= baseline - 0.02')"
            )
        return self


class FinetuneConfig(Strict):
    """A LoRA fine-tuning job: base model, data, adapter shape, training, checkpoints."""

    kind: Literal["finetune"]
    name: AppName = Field(description="3-63 letters, digits, _ or -.")
    base_model: str = Field(description="A local model folder, relative to the config file.")
    tokenizer: str | None = Field(None, description="A tokenizer folder (default: base_model).")
    chat_template: str | None = Field(
        None,
        description="A Jinja chat template: a file (relative to the config) or the template "
        "itself; default: the tokenizer's. Needed by chat and instruction data.",
    )
    datasets: DatasetsConfig
    lora: LoraConfig = Field(default_factory=lambda: LoraConfig())
    quantization: QuantizationConfig | None = None
    training: TrainingConfig = Field(default_factory=lambda: TrainingConfig())
    evaluation: EvaluationConfig = Field(default_factory=lambda: EvaluationConfig())
    checkpoints: CheckpointConfig = Field(default_factory=lambda: CheckpointConfig())
    objective: SftObjective | DistillObjective = Field(
        default_factory=lambda: SftObjective(), discriminator="type"
    )
    output_dir: str = Field(description="Adapter, manifest, checkpoints; relative to the file.")
    registry: FinetuneRegistryConfig = Field(default_factory=lambda: FinetuneRegistryConfig())

    @model_validator(mode="after")
    def _early_stopping_needs_evaluation(self) -> Self:
        every = self.evaluation.every_steps
        if self.evaluation.early_stopping_patience is not None:
            if every is None:
                raise ValueError("evaluation.early_stopping_patience needs evaluation.every_steps")
            if self.checkpoints.every_steps % every:
                raise ValueError(
                    "with early stopping, checkpoints.every_steps must be a multiple of "
                    "evaluation.every_steps (the best checkpoint is kept)"
                )
        return self

    def inline_chat_template(self) -> bool:
        """True when ``chat_template`` holds the template itself rather than a file name."""
        return self.chat_template is not None and (
            "{%" in self.chat_template or "\n" in self.chat_template
        )

    @property
    def model_name(self) -> str:
        return self.registry.model_name or self.name


def tokenizer_has_chat_template(folder: Path) -> bool:
    """True when the tokenizer saved in ``folder`` carries a chat template (read from its files,
    without importing transformers)."""
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return True
    config = folder / "tokenizer_config.json"
    try:
        return bool(json.loads(config.read_text()).get("chat_template"))
    except (OSError, ValueError, AttributeError):
        return False


Problem = tuple[tuple[str | int, ...], str, str]


def path_problems(data: dict[str, Any], base: Path) -> list[Problem]:
    """Missing folders and files the job names, and a missing chat template: (loc, message,
    hint) for each, so ``llmops validate`` reports them before any library is imported."""
    problems: list[Problem] = []
    hint = f"paths are relative to the config file's folder ({base})"

    def folder(loc: tuple[str | int, ...], value: Any, what: str) -> Path | None:
        if not isinstance(value, str):
            return None
        path = (base / os.path.expanduser(value)).resolve()
        if not (path / "config.json").is_file() and what != "tokenizer":
            problems.append(
                (loc, f"{what} folder does not exist or has no config.json: {path}", hint)
            )
            return None
        if what == "tokenizer" and not path.is_dir():
            problems.append((loc, f"tokenizer folder does not exist: {path}", hint))
            return None
        return path

    model = folder(("base_model",), data.get("base_model"), "base model")
    tokenizer = folder(("tokenizer",), data.get("tokenizer"), "tokenizer") or model
    objective = data.get("objective")
    if isinstance(objective, dict) and objective.get("type") == "distill":
        folder(("objective", "teacher"), objective.get("teacher"), "teacher model")
    datasets = data.get("datasets")
    needs_template: tuple[str | int, ...] | None = None
    for part in ("train", "validation"):
        files = datasets.get(part) if isinstance(datasets, dict) else None
        for i, item in enumerate(files if isinstance(files, list) else []):
            if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                continue
            if not (base / os.path.expanduser(item["path"])).resolve().is_file():
                where = (base / item["path"]).resolve()
                problems.append(
                    (("datasets", part, i, "path"), f"file does not exist: {where}", hint)
                )
            if item.get("format", "chat") in ("chat", "instruction") and needs_template is None:
                needs_template = ("datasets", part, i, "format")
    registry = data.get("registry")
    suite = registry.get("eval_suite") if isinstance(registry, dict) else None
    if isinstance(suite, str) and not (base / os.path.expanduser(suite)).resolve().is_file():
        where = (base / suite).resolve()
        problems.append(
            (("registry", "eval_suite"), f"eval suite file does not exist: {where}", hint)
        )
    template = data.get("chat_template")
    if isinstance(template, str) and "{%" not in template and "\n" not in template:
        if not (base / template).resolve().is_file():
            problems.append(
                (("chat_template",), f"chat template file does not exist: {template}", hint)
            )
    elif (
        template is None
        and needs_template
        and tokenizer
        and not tokenizer_has_chat_template(tokenizer)
    ):
        problems.append(
            (
                needs_template,
                f"chat and instruction data need a chat template, and the tokenizer in {tokenizer} "
                "has none",
                "set chat_template: to a template file (relative to the config) or inline Jinja, "
                "or use format: completion",
            )
        )
    return problems
