"""The must-show: a job killed (SIGKILL) or stopped (SIGTERM) around step 10 and resumed with
--resume has, at every step 11..20, the loss of an uninterrupted run (within 1e-5)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops.deps import OFFLINE_ENV
from llmops.finetune.checkpoints import latest_valid
from tests.finetune.jobs import tiny_model, write_job

pytestmark = pytest.mark.slow
STEPS = 20
TOLERANCE = 1e-5
ENV = {**os.environ, **OFFLINE_ENV}


def _start(job: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "llmops.cli.main", "finetune", "run", str(job), *args]
    return subprocess.Popen(
        command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(job: Path, *args: str) -> str:
    process = _start(job, *args)
    out, _ = process.communicate(timeout=240)
    assert process.returncode == 0, out
    return out


def _checkpoints(job: Path) -> Path:
    return job.parent / "out" / "checkpoints"


def _losses(job: Path) -> dict[int, float]:
    state = json.loads(
        (_checkpoints(job) / f"checkpoint-{STEPS}" / "trainer_state.json").read_text()
    )
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def _interrupt(job: Path, signum: int) -> subprocess.Popen[str]:
    """Start the job and send ``signum`` once checkpoint-10 exists."""
    process = _start(job)
    target = _checkpoints(job) / "checkpoint-10"
    deadline = time.monotonic() + 240
    while not target.exists():
        assert process.poll() is None, process.communicate()[0]
        assert time.monotonic() < deadline, "no checkpoint-10 in time"
        time.sleep(0.02)
    process.send_signal(signum)
    return process


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model(tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="module")
def reference(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    job = write_job(tmp_path_factory.mktemp("reference"), model)
    _finish(job)
    return job


def _max_difference(reference: Path, resumed: Path) -> float:
    want, got = _losses(reference), _losses(resumed)
    assert set(range(11, STEPS + 1)) <= set(want) and set(range(11, STEPS + 1)) <= set(got)
    worst = max(abs(want[step] - got[step]) for step in range(11, STEPS + 1))
    print(f"max |loss difference| over steps 11..{STEPS}: {worst:.3g}")
    return worst


def test_sigkill_then_resume_matches_an_uninterrupted_run(
    model: Path, reference: Path, tmp_path: Path
) -> None:
    job = write_job(tmp_path, model)
    process = _interrupt(job, signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (_checkpoints(job) / f"checkpoint-{STEPS}").exists(), "killed too late"
    out = _finish(job, "--resume")
    assert "resuming from" in out
    assert _max_difference(reference, job) <= TOLERANCE
    manifest = json.loads((job.parent / "out" / "manifest.json").read_text())
    assert manifest["steps"] == STEPS and manifest["rank"] == 4


def test_sigterm_saves_a_checkpoint_exits_0_and_resumes_exactly(
    model: Path, reference: Path, tmp_path: Path
) -> None:
    job = write_job(tmp_path, model)
    process = _interrupt(job, signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out
    assert "stopped at step" in out
    start, skipped = latest_valid(_checkpoints(job), set_aside=False)
    assert start is not None and skipped == []
    assert 10 <= int(start.name.split("-")[1]) < STEPS
    assert not (job.parent / "out" / "manifest.json").exists()  # no adapter from a stopped run
    _finish(job, "--resume")
    assert _max_difference(reference, job) <= TOLERANCE


def test_a_half_written_checkpoint_is_skipped(reference: Path, tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    shutil.copytree(_checkpoints(reference) / "checkpoint-19", folder / "checkpoint-19")
    broken = shutil.copytree(_checkpoints(reference) / "checkpoint-20", folder / "checkpoint-20")
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    start, skipped = latest_valid(folder)
    assert start == folder / "checkpoint-19"
    assert len(skipped) == 1 and "checkpoint-20" in skipped[0]
    assert (folder / "incomplete-checkpoint-20").is_dir()
    assert not (folder / "checkpoint-20").exists()


def test_without_resume_leftover_checkpoints_are_an_error(reference: Path) -> None:
    process = _start(reference)
    out, _ = process.communicate(timeout=240)
    assert process.returncode == 1
    assert "--resume" in out
