"""Trainer callbacks: progress (loss, tokens/s, ETA) and the preemption stop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from llmops.finetune import distributed
from llmops.finetune.checkpoints import StopFlag


@dataclass(frozen=True)
class Progress:
    """One progress report: the step reached, the latest logged figures, speed and ETA."""

    step: int
    max_steps: int
    loss: float | None
    eval_loss: float | None
    tokens_per_s: float
    eta_s: float | None
    logs: dict[str, float]

    def line(self) -> str:
        parts = [f"step {self.step}/{self.max_steps}"]
        if self.loss is not None:
            parts.append(f"loss {self.loss:.4f}")
        if self.eval_loss is not None:
            parts.append(f"eval_loss {self.eval_loss:.4f}")
        parts.append(f"{self.tokens_per_s:.0f} tok/s")
        if self.eta_s is not None:
            parts.append(f"ETA {self.eta_s:.0f}s")
        return "  ".join(parts)


class ProgressCallback(TrainerCallback):
    """Calls ``report`` with a ``Progress`` at each log, in the main process only; speed counts
    this run's steps only, so a resumed job does not claim the earlier run's tokens (and the
    Trainer's token count sums all ranks, so it is the job's speed, not one rank's)."""

    def __init__(self, report: Callable[[Progress], None]) -> None:
        self.report = report
        self._start = time.perf_counter()
        self._start_step = 0
        self._start_tokens = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        self._start = time.perf_counter()
        self._start_step = state.global_step
        self._start_tokens = int(state.num_input_tokens_seen or 0)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kw: Any,
    ) -> None:
        if not state.is_world_process_zero:
            return
        logs = dict(logs or {})
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        steps = state.global_step - self._start_step
        tokens = int(state.num_input_tokens_seen or 0) - self._start_tokens
        eta = (state.max_steps - state.global_step) * elapsed / steps if steps > 0 else None
        self.report(
            Progress(
                step=state.global_step,
                max_steps=state.max_steps,
                loss=logs.get("loss"),
                eval_loss=logs.get("eval_loss"),
                tokens_per_s=tokens / elapsed,
                eta_s=eta,
                logs={k: float(v) for k, v in logs.items() if isinstance(v, int | float)},
            )
        )


class StopCallback(TrainerCallback):
    """When the flag is set (SIGTERM), save a checkpoint after the current optimizer step and
    stop: the time to exit is bounded by one step plus one checkpoint write.

    With several processes the ranks agree on it after every step (one tiny all-reduce): a
    signal that reached some ranks before their check and others after it would otherwise
    stop them at different steps, and the ones still training would wait forever."""

    def __init__(self, flag: StopFlag) -> None:
        self.flag = flag
        self.stopped_at: int | None = None

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        if distributed.any_rank(self.flag.is_set()):
            control.should_save = True
            control.should_training_stop = True
            control.should_evaluate = False
            self.stopped_at = state.global_step
