"""Several training processes (DDP under ``accelerate launch`` or ``torchrun``): which one is
the main process, and the few decisions every rank must share.

One process (no launcher) is the world of size 1: every helper here is then a no-op that
returns its input, so single-process behaviour does not depend on torch.distributed.

The rank is read from the launcher's environment (``RANK``, ``WORLD_SIZE``), so it is known
before the process group exists; the collectives need the group, which the Trainer's
``TrainingArguments`` starts (gloo on CPU, NCCL on CUDA)."""

from __future__ import annotations

import os
from typing import TypeVar

T = TypeVar("T")


def world_size() -> int:
    """How many training processes the launcher started (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True in the one process that logs, writes the adapter and registers it (rank 0)."""
    return rank() == 0


def _group() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def any_rank(value: bool) -> bool:
    """True on every rank when ``value`` is True on at least one: a decision (stop after this
    step) that all ranks must take together, or the others wait forever in the next
    all-reduce."""
    if not _group():
        return value
    import torch
    import torch.distributed as dist

    on_gpu = dist.get_backend() == "nccl"  # NCCL reduces CUDA tensors only, gloo CPU ones
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else None
    flag = torch.tensor([1 if value else 0], dtype=torch.int64, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every rank (what the others passed is ignored)."""
    if not _group():
        return value
    import torch.distributed as dist

    box: list[object] = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def close() -> None:
    """End the process group after the last collective, so no rank exits (or waits) with it
    still open."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if dist.get_world_size() > 1:
            dist.barrier()  # no rank tears the group down while another still uses it
        dist.destroy_process_group()
