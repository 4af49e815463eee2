"""Distillation on transformers' Trainer: the student's hard-label loss plus KL divergence to a
teacher's temperature-softened distribution over the answer tokens."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer

from llmops.finetune.datasets import IGNORE_INDEX


def distill_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    hard_loss: torch.Tensor,
    alpha: float,
    temperature: float,
) -> torch.Tensor:
    """alpha · KL(teacher ‖ student) · T² + (1 − alpha) · hard loss, the KL averaged over the
    positions that predict an answer token (T² keeps gradient sizes comparable across T)."""
    mask = labels[:, 1:] != IGNORE_INDEX  # logits at t predict the label at t + 1
    if not bool(mask.any()):
        return hard_loss
    student = student_logits[:, :-1][mask].float() / temperature
    teacher = teacher_logits[:, :-1][mask].float() / temperature
    kl = F.kl_div(
        F.log_softmax(student, dim=-1),
        F.log_softmax(teacher, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return alpha * kl * temperature**2 + (1 - alpha) * hard_loss


class DistillTrainer(Trainer):
    """A Trainer whose loss mixes the hard labels with a frozen teacher's soft targets."""

    def __init__(
        self, *args: Any, teacher: torch.nn.Module, alpha: float, temperature: float, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self.teacher = teacher.to(self.args.device).eval()
        for parameter in self.teacher.parameters():
            parameter.requires_grad_(False)
        self.alpha, self.temperature = alpha, temperature
        # the loss below is a per-batch mean: let training_step divide by accumulation steps
        self.model_accepts_loss_kwargs = False

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        outputs = model(**inputs)
        with torch.no_grad():
            teacher = self.teacher(
                input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask")
            )
        loss = distill_loss(
            outputs.logits,
            teacher.logits,
            inputs["labels"],
            outputs.loss,
            self.alpha,
            self.temperature,
        )
        return (loss, outputs) if return_outputs else loss
