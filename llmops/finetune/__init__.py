"""Fine-tuning jobs: LoRA adapters (QLoRA on CUDA) and distillation on transformers' Trainer,
datasets with answer-only loss, checkpoints every N steps and exact resume after preemption.
Heavy libraries (torch, transformers, peft) are imported when a job runs, not here."""
