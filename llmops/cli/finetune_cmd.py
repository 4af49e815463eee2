"""llmops finetune: (Q)LoRA and distillation jobs from a `kind: finetune` YAML file."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from llmops.cli import finetune_dataset_cmd
from llmops.cli.common import ConfigArg, console, errors, live_terminal, progress_bars, run
from llmops.config import load_finetune_config
from llmops.errors import DatasetError

if TYPE_CHECKING:  # the training stack is imported when a job runs, not at CLI start
    from llmops.finetune.callbacks import Progress
    from llmops.pipelines.finetune import FinetuneResult

EXIT_DATA = 2

app = typer.Typer(
    help=(
        "Fine-tune a LoRA adapter (QLoRA on CUDA) from a `kind: finetune` job file: "
        "checkpoints, exact resume, manifest."
    ),
    no_args_is_help=True,
)
app.add_typer(finetune_dataset_cmd.app, name="dataset")  # `finetune dataset from-log`


@app.command("run")
def run_cmd(
    config: ConfigArg,
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Go on from the newest valid checkpoint (a half-written one is "
        "skipped): optimizer, scheduler, RNG and data position are restored.",
    ),
    max_steps: int | None = typer.Option(
        None,
        "--max-steps",
        min=1,
        help="Stop after this many optimizer steps (overrides training.max_steps and epochs).",
    ),
) -> None:
    """Train a LoRA adapter from a job file (`kind: finetune`): the base model from a local
    folder, answer-only loss, validation loss every N steps, checkpoints every N steps.

    SIGTERM (spot preemption) saves a checkpoint after the current step and exits 0; run again
    with --resume. On completion output_dir holds the adapter, tokenizer, a copy of the job
    file and manifest.json; params and per-step metrics go to MLflow. With registry.eval_suite
    the adapter then runs through that eval suite as the variant `adapter` beside the base
    model; its gates decide the registration (alias candidate).

    Several processes: `accelerate launch --multi_gpu --num_processes N -m llmops.cli.main
    finetune run JOB.yaml` (or torchrun; gloo on a CPU) trains with DDP; rank 0 alone logs,
    writes and registers.

    Exit codes: 0 done (or preempted with a checkpoint saved), 1 the job failed, 2 the config
    or the data is invalid (file:line named).

    Example: llmops finetune run configs/finetune-support.yaml --resume
    """
    from llmops.pipelines.finetune import run_job

    loaded = run(lambda: load_finetune_config(config))
    with _reporter() as report:
        result = run(
            lambda: _run(lambda: run_job(loaded, resume=resume, max_steps=max_steps, report=report))
        )
    _show(result)


def _run(job: Callable[[], FinetuneResult]) -> FinetuneResult:
    try:
        return job()
    except DatasetError as exc:
        errors.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_DATA) from None


@contextmanager
def _reporter() -> Iterator[Callable[[Progress], None]]:
    """A progress bar on a terminal, one plain line per logged step elsewhere; nothing in the
    other DDP ranks (the main one reports)."""
    from llmops.finetune.distributed import is_main

    if not is_main():
        yield lambda p: None
        return
    if not live_terminal():
        yield lambda p: errors.print(p.line(), markup=False, highlight=False)
        return
    with progress_bars() as bars:
        task = bars.add_task("finetune", total=None)

        def show(p: Progress) -> None:
            bars.update(task, completed=p.step, total=p.max_steps, description=p.line())

        yield show


def _show(result: FinetuneResult) -> None:
    if not result.main_process:  # another DDP rank: the main process reports for the job
        return
    for note in result.notes:
        errors.print(f"note: {note}", markup=False, highlight=False)
    if result.preempted:
        console.print(
            f"stopped at step {result.steps} by SIGTERM; checkpoint saved under "
            f"{result.checkpoint_dir}; run again with --resume",
            markup=False,
            highlight=False,
        )
        return
    wanted = ("eval_loss", "eval_perplexity")
    shown = ", ".join(f"{k} {result.metrics[k]:.4f}" for k in wanted if k in result.metrics)
    console.print(f"trained {result.steps} steps{f' ({shown})' if shown else ''}", highlight=False)
    if result.run_id:
        console.print(f"MLflow run {result.run_id}", highlight=False)
    console.print(f"adapter: {result.adapter_dir}", markup=False, highlight=False)
    for gate in result.gates:
        console.print(gate.describe(), markup=False, highlight=False)
    if result.eval_report is not None:
        console.print(f"eval suite report: {result.eval_report}", markup=False, highlight=False)
    if result.eval_run_id:
        console.print(f"eval suite MLflow run {result.eval_run_id}", highlight=False)
    for gate in result.eval_gates:
        console.print(f"adapter variant: {gate.describe()}", markup=False, highlight=False)
    if result.version is not None:
        console.print(
            f"registered {result.version.name} version {result.version.version} "
            f"(alias candidate); `llmops models promote {result.version.name}` to serve it",
            markup=False,
            highlight=False,
        )
    if not result.passed:
        failed = [g.describe() for g in (*result.gates, *result.eval_gates) if not g.passed]
        for line in failed:
            errors.print(line, markup=False, highlight=False)
        errors.print("the adapter failed its gates: not registered", markup=False)
        raise typer.Exit(1)


# registered adapters for other servers and jobs for a cluster: `finetune render vllm|k8s`,
# `finetune publish vllm`, `finetune merge`
from llmops.cli import finetune_adapter_cmd  # noqa: E402

app.add_typer(finetune_adapter_cmd.render_app, name="render")
app.add_typer(finetune_adapter_cmd.publish_app, name="publish")
app.command("merge")(finetune_adapter_cmd.merge)
