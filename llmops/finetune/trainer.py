"""One fine-tuning job on transformers' ``Trainer``: tokenizer and template, examples, the base
model (4-bit through bitsandbytes on CUDA), the LoRA adapter through peft, checkpoints every N
steps keeping K, and resume from the newest valid checkpoint.

Resume is exact because the Trainer restores the adapter, optimizer, scheduler and RNG states
and skips the batches already seen, and the data order depends only on the seed (no
dataloader workers, no length grouping)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    EarlyStoppingCallback,
    PreTrainedTokenizerBase,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from llmops.config import LoadedFinetune
from llmops.config.finetune import DistillObjective, FinetuneConfig
from llmops.finetune import datasets as ds
from llmops.finetune import distributed
from llmops.finetune.callbacks import Progress, ProgressCallback, StopCallback
from llmops.finetune.checkpoints import FinetuneError, StopFlag, latest_valid, stop_on_sigterm
from llmops.finetune.distill import DistillTrainer

CHECKPOINTS = "checkpoints"
CPU_QLORA_NOTE = (
    "quantization is set but CUDA is not available: training full-precision (float32) LoRA "
    "on the CPU instead of 4-bit QLoRA"
)


@dataclass
class TrainOutcome:
    """What a job left behind: the trained (or, when preempted, partly trained) model."""

    model: Any
    tokenizer: PreTrainedTokenizerBase
    steps: int
    preempted: bool
    checkpoint_dir: Path
    resumed_from: Path | None
    log_history: list[dict[str, Any]]
    eval_metrics: dict[str, float]
    dtype: str
    quantized: bool
    notes: list[str] = field(default_factory=list)
    world_size: int = 1  # training processes (DDP ranks) of this run


def load_tokenizer(loaded: LoadedFinetune) -> PreTrainedTokenizerBase:
    """The job's tokenizer with its chat template (the config's wins) and a padding token."""
    job = loaded.job
    tokenizer = AutoTokenizer.from_pretrained(loaded.path(job.tokenizer or job.base_model))
    if job.chat_template is not None:
        inline = job.inline_chat_template()
        template = job.chat_template if inline else loaded.path(job.chat_template).read_text()
        tokenizer.chat_template = template
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_examples(
    loaded: LoadedFinetune, tokenizer: PreTrainedTokenizerBase
) -> tuple[list[dict[str, list[int]]], list[dict[str, list[int]]]]:
    """(train, validation) examples, tokenized with answer-only labels (and packed if set)."""
    spec = loaded.job.datasets

    def read(files: Sequence[Any]) -> list[ds.Record]:
        found: list[ds.Record] = []
        for item in files:
            found += ds.read_records(
                loaded.path(item.path),
                item.format,
                system_prompt=spec.system_prompt,
                context_header=spec.context_header,
            )
        return found

    train, valid = read(spec.train), read(spec.validation)
    if not spec.validation:
        train, valid = ds.split(train, spec.validation_ratio, spec.seed)
    encoded = [_encode(records, tokenizer, spec.max_seq_length) for records in (train, valid)]
    if spec.packing:
        encoded = [ds.pack(examples, spec.max_seq_length) for examples in encoded]
    if not encoded[0]:
        raise ds.DatasetError("no training example with answer tokens left after truncation")
    return [e.as_dict() for e in encoded[0]], [e.as_dict() for e in encoded[1]]


def _encode(
    records: Sequence[ds.Record], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> list[ds.Encoded]:
    def render(messages: ds.Messages, generation_prompt: bool) -> str:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=generation_prompt
        )
        return str(text)

    def tokenize(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    out = []
    for record in records:
        if record.messages is not None:
            segments = ds.chat_segments(record.messages, render, record.where)
            example = ds.encode(segments, tokenize, max_length, None)
        else:
            example = ds.encode(record.segments, tokenize, max_length, tokenizer.eos_token_id)
        if ds.has_answer(example):
            out.append(example)
    return out


def collate(pad_id: int) -> Callable[[list[dict[str, list[int]]]], dict[str, torch.Tensor]]:
    """Right-pads a batch: input ids with ``pad_id``, labels with -100, attention mask 0."""

    def batch(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = [r["input_ids"] + [pad_id] * (width - len(r["input_ids"])) for r in rows]
        labels = [r["labels"] + [ds.IGNORE_INDEX] * (width - len(r["labels"])) for r in rows]
        mask = [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
        return {
            "input_ids": torch.tensor(ids),
            "labels": torch.tensor(labels),
            "attention_mask": torch.tensor(mask),
        }

    return batch


def load_model(loaded: LoadedFinetune, notes: list[str]) -> tuple[Any, str, bool]:
    """(the base model with a fresh LoRA adapter, its dtype, whether it is 4-bit)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    job = loaded.job
    quant = job.quantization if torch.cuda.is_available() else None
    if job.quantization is not None and quant is None:
        notes.append(CPU_QLORA_NOTE)
    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if quant is not None:
        from transformers import BitsAndBytesConfig

        compute = getattr(torch, quant.compute_dtype)
        kwargs = {
            "dtype": compute,
            "device_map": {"": torch.cuda.current_device()},
            "quantization_config": BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type=quant.quant_type,
                bnb_4bit_use_double_quant=quant.double_quant,
                bnb_4bit_compute_dtype=compute,
            ),
        }
    model = AutoModelForCausalLM.from_pretrained(loaded.path(job.base_model), **kwargs)
    checkpointing = job.training.gradient_checkpointing
    if quant is not None:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=checkpointing)
    elif checkpointing:
        model.enable_input_require_grads()  # frozen embeddings: checkpointed blocks need grads
    lora = LoraConfig(
        r=job.lora.r,
        lora_alpha=job.lora.alpha,
        lora_dropout=job.lora.dropout,
        target_modules=job.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    dtype = quant.compute_dtype if quant is not None else "float32"
    return get_peft_model(model, lora), dtype, quant is not None


def training_arguments(
    job: FinetuneConfig, output: Path, has_validation: bool, max_steps: int | None, bf16: bool
) -> TrainingArguments:
    t, every_eval = job.training, job.evaluation.every_steps
    evaluating = has_validation and every_eval is not None
    early = evaluating and job.evaluation.early_stopping_patience is not None
    return TrainingArguments(
        output_dir=str(output),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        activation_checkpointing=t.gradient_checkpointing,  # transformers 5 name
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_steps,
        optim=t.optimizer,
        max_grad_norm=t.max_grad_norm,
        max_steps=max_steps or t.max_steps or -1,
        num_train_epochs=t.epochs,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        save_strategy="steps",
        save_steps=job.checkpoints.every_steps,
        save_total_limit=job.checkpoints.keep_last,
        eval_strategy="steps" if evaluating else "no",
        eval_steps=every_eval if evaluating else None,
        load_best_model_at_end=early,
        metric_for_best_model="eval_loss" if early else None,
        greater_is_better=False if early else None,
        bf16=bf16,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,  # the data order is the seed's alone (and the rank's)
        remove_unused_columns=False,
        include_num_input_tokens_seen="non_padding",
        use_cpu=not torch.cuda.is_available(),
        # DDP: every LoRA weight is in the forward, so no search for unused ones (the peft
        # wrapper would otherwise get it on, an extra graph walk per step, and it breaks
        # with gradient checkpointing)
        ddp_find_unused_parameters=False,
    )


def train(
    loaded: LoadedFinetune,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    report: Callable[[Progress], None] | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    stop: StopFlag | None = None,
) -> TrainOutcome:
    """Run the job to its last step, or until SIGTERM (then a checkpoint is saved and the
    outcome says ``preempted``). ``resume`` starts from the newest valid checkpoint."""
    job, notes = loaded.job, list[str]()
    output = loaded.path(job.output_dir) / CHECKPOINTS
    set_seed(job.training.seed)  # the LoRA initialisation, before the Trainer's own seeding
    tokenizer = load_tokenizer(loaded)
    train_rows, valid_rows = build_examples(loaded, tokenizer)
    model, dtype, quantized = load_model(loaded, notes)
    args = training_arguments(job, output, bool(valid_rows), max_steps, dtype == "bfloat16")
    start = _agreed_resume_point(output, resume, notes)  # args started the process group
    flag = stop or StopFlag()
    stopper = StopCallback(flag)
    extra: list[TrainerCallback] = [stopper, *callbacks]
    if report is not None:
        extra.append(ProgressCallback(report))
    patience = job.evaluation.early_stopping_patience
    if args.load_best_model_at_end and patience is not None:
        extra.append(EarlyStoppingCallback(patience))
    trainer = _trainer(loaded, model, args, tokenizer, train_rows, valid_rows, extra)
    trainer.remove_callback(PrinterCallback)  # progress is reported through ``report``
    with stop_on_sigterm(flag):
        trainer.train(resume_from_checkpoint=str(start) if start else None)
    preempted = stopper.stopped_at is not None
    metrics = {} if preempted or not valid_rows else _evaluate(trainer)
    world = args.world_size
    distributed.close()  # the last collective is behind: no rank waits on another at exit
    return TrainOutcome(
        model=trainer.model,
        tokenizer=tokenizer,
        steps=trainer.state.global_step,
        preempted=preempted,
        checkpoint_dir=output,
        resumed_from=start,
        log_history=list(trainer.state.log_history),
        eval_metrics=metrics,
        dtype=dtype,
        quantized=quantized,
        notes=notes,
        world_size=world,
    )


def _agreed_resume_point(output: Path, resume: bool, notes: list[str]) -> Path | None:
    """The resume point, chosen by rank 0 alone (it sets half-written checkpoints aside, which
    two ranks must not both do) and handed to the others; every rank raises the same error."""
    found: tuple[str | None, list[str], str | None] = (None, [], None)
    if distributed.is_main():
        try:
            start = _resume_point(output, resume, notes)
            found = (str(start) if start else None, notes, None)
        except FinetuneError as exc:
            found = (None, notes, str(exc))
    start_text, agreed, error = distributed.from_main(found)
    if error is not None:
        raise FinetuneError(error)
    notes[:] = agreed
    return Path(start_text) if start_text else None


def _resume_point(output: Path, resume: bool, notes: list[str]) -> Path | None:
    if not resume:
        if any(output.glob("checkpoint-*")):
            raise FinetuneError(
                f"{output} already holds checkpoints of an earlier run: pass --resume to go on "
                "from the newest valid one, or remove the folder to start over"
            )
        return None
    start, skipped = latest_valid(output)
    notes += skipped
    notes.append(f"resuming from {start}" if start else "no valid checkpoint: starting fresh")
    return start


def _trainer(
    loaded: LoadedFinetune,
    model: Any,
    args: TrainingArguments,
    tokenizer: PreTrainedTokenizerBase,
    train_rows: list[dict[str, list[int]]],
    valid_rows: list[dict[str, list[int]]],
    callbacks: list[TrainerCallback],
) -> Trainer:
    common: dict[str, Any] = {
        "model": model,
        "args": args,
        "data_collator": collate(int(tokenizer.pad_token_id)),
        "train_dataset": train_rows,
        "eval_dataset": valid_rows or None,
        "processing_class": tokenizer,
        "callbacks": callbacks,
    }
    objective = loaded.job.objective
    if not isinstance(objective, DistillObjective):
        return Trainer(**common)
    teacher_dir = loaded.path(objective.teacher)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32)
    if teacher.config.vocab_size != model.config.vocab_size:
        raise FinetuneError(
            f"teacher {teacher_dir} has a vocabulary of {teacher.config.vocab_size} tokens, the "
            f"student {model.config.vocab_size}: distillation needs the same tokenizer"
        )
    return DistillTrainer(
        **common, teacher=teacher, alpha=objective.alpha, temperature=objective.temperature
    )


def _evaluate(trainer: Trainer) -> dict[str, float]:
    metrics = {k: float(v) for k, v in trainer.evaluate().items() if isinstance(v, int | float)}
    if "eval_loss" in metrics:
        metrics["eval_perplexity"] = math.exp(min(metrics["eval_loss"], 50.0))
    return metrics
