"""DDP for real: the job under ``accelerate launch --multi_gpu --num_processes 2`` (the command
the Kubernetes renders run) on the CPU, where the process group is gloo. SIGTERM to one rank
mid-run: both ranks stop at the same step with a checkpoint, and ``--resume`` under DDP
finishes: one adapter, one manifest, one MLflow run, one registered version, and the
adapter loads in a fresh process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops.deps import OFFLINE_ENV
from llmops.evaluation.tracking import default_tracking_uri
from tests.finetune.jobs import tiny_model, write_job

pytestmark = pytest.mark.slow
STEPS = 24
EVERY = 2
ENV = {
    **os.environ,
    **OFFLINE_ENV,
    "CUDA_VISIBLE_DEVICES": "",  # two CPU ranks over gloo, even on a machine with a GPU
    "OMP_NUM_THREADS": "1",
}
OUTPUTS = """
import json, sys, torch
from peft import PeftModel
from transformers import AutoModelForCausalLM
base = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
with torch.no_grad():
    plain = base(input_ids=ids).logits
    tuned = PeftModel.from_pretrained(base, sys.argv[2]).eval()(input_ids=ids).logits
print(json.dumps([plain.flatten()[:64].tolist(), tuned.flatten()[:64].tolist()]))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(job: Path, *args: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    command += ["--num_processes", "2", "--num_machines", "1", "--main_process_port", str(_port())]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["-m", "llmops.cli.main", "finetune", "run", str(job), *args]
    return subprocess.Popen(
        command,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its ranks can be killed with it (``_finished``)
    )


def _finished(process: subprocess.Popen[str], timeout: float) -> str:
    """The launcher's output once it exits; past ``timeout`` it and its ranks are killed and
    the test fails with what they printed (a hung rank's last words, not a bare timeout)."""
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, _ = process.communicate()
        raise AssertionError(f"still running after {timeout:.0f} s:\n{out[-6000:]}") from None
    return out


def _stop_midway(job: Path, only_rank_one: bool = False) -> tuple[int, str]:
    """Start the job and SIGTERM the launcher (or only the rank-1 worker) once checkpoint-6
    exists."""
    process = _launch(job)
    folder = job.parent / "out" / "checkpoints" / "checkpoint-6"
    deadline = time.monotonic() + 120
    while not folder.is_dir() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if only_rank_one:
        os.kill(_rank_one(process.pid), signal.SIGTERM)
    else:
        process.send_signal(signal.SIGTERM)
    out = _finished(process, 60)  # the agent's grace is 30 s: a hung rank fails
    return process.returncode, out


def _rank_one(launcher: int) -> int:
    """The pid of the worker with RANK=1 among the launcher's children."""
    for pid in subprocess.run(
        ["pgrep", "-P", str(launcher)], capture_output=True, text=True
    ).stdout.split():
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        if b"RANK=1" in environ:
            return int(pid)
    raise AssertionError(f"no rank-1 worker under the launcher {launcher}")


def _outputs(model: Path, adapter: Path) -> list[list[float]]:
    found = subprocess.run(
        [sys.executable, "-c", OUTPUTS, str(model), str(adapter)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return list(json.loads(found.stdout.strip().splitlines()[-1]))


def test_two_ranks_stop_together_resume_and_register_one_adapter(tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "model")
    registry = {"track": True, "publish": True, "model_name": "tiny-ddp"}
    job = write_job(tmp_path, model, max_steps=STEPS, every=EVERY, registry=registry)
    out = tmp_path / "out"

    # SIGTERM to rank 1 alone: rank 0, never signalled, must stop at the same step (without
    # the ranks agreeing on the stop, rank 0 waits forever in its next all-reduce)
    code, log = _stop_midway(job, only_rank_one=True)
    assert code == 0, log  # both ranks stopped cleanly: exit 0, as one process does
    assert not (out / "manifest.json").exists(), log
    assert log.count("stopped at step") == 1, log  # rank 0 alone reports
    stopped = int(log.split("stopped at step ")[1].split()[0])
    assert 6 <= stopped < STEPS, log
    stop_checkpoint = out / "checkpoints" / f"checkpoint-{stopped}"
    assert {p.name for p in stop_checkpoint.glob("rng_state*.pth")} == {
        "rng_state_0.pth",
        "rng_state_1.pth",
    }  # the Trainer saved one RNG state per rank: there were two, at the same step

    resumed = _launch(job, "--resume")
    # 63 s for the whole test on a quiet 2-core machine; CI's loaded one needs more room
    log = _finished(resumed, 420)
    assert resumed.returncode == 0, log
    assert f"resuming from {stop_checkpoint}" in log, log
    assert log.count(f"trained {STEPS} steps") == 1, log
    assert log.count(f"step {STEPS}/{STEPS}  loss") == 1, log  # one progress reporter

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["steps"] == STEPS

    import mlflow

    client = mlflow.MlflowClient(default_tracking_uri(out))
    experiment = client.get_experiment_by_name("finetune-tiny-lora")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # the resumed attempt logged into the first one's run
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["finetune.world_size"] == "2"
    losses = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
    assert sorted(losses) == list(range(1, STEPS + 1))  # once per step: one logging rank
    versions = client.search_model_versions("name='tiny-ddp'")
    assert [str(v.version) for v in versions] == ["1"]
    assert versions[0].run_id == run.info.run_id

    plain, tuned = _outputs(model, out)
    again = _outputs(model, out)
    assert [plain, tuned] == again  # the same outputs in another fresh process
    assert max(abs(a - b) for a, b in zip(plain, tuned, strict=True)) > 1e-6  # it was trained
