"""Checkpoints of a job: which one a resume starts from, and stopping cleanly on SIGTERM.

A checkpoint is valid when every file a resume reads is there and loads: trainer_state.json
(parsed), the optimizer and scheduler states, the RNG state and the adapter weights (opened).
A half-written one (the process was killed while saving) is set aside under a name the
Trainer's rotation ignores, and the resume starts from the newest valid one.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from llmops.errors import LLMOpsError


class FinetuneError(LLMOpsError):
    """A fine-tuning job cannot run as asked (leftover checkpoints, a mismatched teacher)."""


_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
REQUIRED = ("trainer_state.json", "optimizer.pt", "scheduler.pt", "adapter_config.json")
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint folder, oldest first."""
    found = []
    for path in folder.glob("checkpoint-*") if folder.is_dir() else []:
        match = _CHECKPOINT.fullmatch(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return sorted(found)


def problem(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from, or None when it can."""
    missing = [name for name in REQUIRED if not (checkpoint / name).is_file()]
    if not any((checkpoint / name).is_file() for name in WEIGHTS):
        missing.append(WEIGHTS[0])
    if not list(checkpoint.glob("rng_state*.pth")):
        missing.append("rng_state.pth")
    if missing:
        return f"missing {', '.join(missing)}"
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
        json.loads((checkpoint / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        return f"unreadable state: {exc}"
    return _weights_problem(checkpoint)


def _weights_problem(checkpoint: Path) -> str | None:
    weights = checkpoint / WEIGHTS[0]
    if not weights.is_file():
        return None  # the .bin form: torch.load at resume time reports damage
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as opened:
            for key in opened.keys():  # noqa: SIM118 (safe_open is not a Mapping)
                opened.get_tensor(key)
    except Exception as exc:  # safetensors raises its own and OS errors on truncation
        return f"adapter weights do not load: {exc}"
    for name in ("optimizer.pt", "scheduler.pt"):
        if (checkpoint / name).stat().st_size == 0:
            return f"{name} is empty"
    return None


def latest_valid(folder: Path, set_aside: bool = True) -> tuple[Path | None, list[str]]:
    """The newest resumable checkpoint under ``folder`` and a note for each newer one that was
    skipped (and, with ``set_aside``, renamed ``incomplete-checkpoint-N``)."""
    notes: list[str] = []
    for step, path in reversed(checkpoints(folder)):
        why = problem(path)
        if why is None:
            return path, notes
        notes.append(f"skipped checkpoint-{step}: {why}")
        if set_aside:
            target = path.with_name(f"incomplete-{path.name}")
            suffix = 1
            while target.exists():
                target = path.with_name(f"incomplete-{path.name}.{suffix}")
                suffix += 1
            path.rename(target)
    return None, notes


class StopFlag:
    """Set by SIGTERM (or by hand); the Trainer callback checks it after every step."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal: int | None = None

    def set(self, signum: int | None = None) -> None:
        self.signal = signum
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()


@contextmanager
def stop_on_sigterm(flag: StopFlag) -> Iterator[StopFlag]:
    """While inside, the first SIGTERM sets ``flag`` (a checkpoint is saved after the current
    step, then training stops); a second SIGTERM ends the process at once."""
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be set from the main thread
        return

    def handle(signum: int, frame: FrameType | None) -> None:
        flag.set(signum)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)
