"""`llmops finetune render k8s`: a ConfigMap with the job file (paths moved under /workspace)
and a batch/v1 Job or a Kubeflow PyTorchJob. No cluster here: the Job, ConfigMap and pod
templates go through the `kubernetes` client's models (required fields checked, and a
round trip that would drop any misspelled key), and the PyTorchJob is checked against the
fields of Kubeflow training-operator's v1 API (PyTorchJobSpec, ReplicaSpec, RunPolicy).

The examples in deploy/ are this renderer's output for the sample job below; run with
LLMOPS_WRITE_DEPLOY=1 to rewrite them after changing the renderer."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmops.cli.main import app

kubernetes = pytest.importorskip("kubernetes")
DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SAMPLE = {
    "kind": "finetune",
    "name": "support-lora",
    "base_model": "models/qwen2.5-0.5b-instruct",
    "datasets": {"train": [{"path": "data/support.jsonl", "format": "chat"}]},
    "lora": {"r": 16, "alpha": 32, "target_modules": "all-linear"},
    "training": {"learning_rate": 2.0e-4, "max_steps": 500, "batch_size": 4},
    "checkpoints": {"every_steps": 50, "keep_last": 3},
    "output_dir": "runs/support-lora",
}
# Kubeflow training-operator v1 (kubeflow.org/v1 PyTorchJob): the fields a spec may hold
PYTORCHJOB_SPEC = {"runPolicy", "elasticPolicy", "pytorchReplicaSpecs", "nprocPerNode"}
REPLICA_SPEC = {"replicas", "template", "restartPolicy"}
RESTART_POLICIES = {"Always", "OnFailure", "Never", "ExitCode"}
RUN_POLICY = {"cleanPodPolicy", "ttlSecondsAfterFinished", "activeDeadlineSeconds",
              "backoffLimit", "schedulingPolicy", "suspend", "managedBy"}  # fmt: skip


@pytest.fixture
def job_file(tmp_path: Path) -> Path:
    model = tmp_path / "models" / "qwen2.5-0.5b-instruct"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{ x }}"}))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "support.jsonl").write_text("{}\n")
    path = tmp_path / "finetune-support.yaml"
    path.write_text(yaml.safe_dump(SAMPLE, sort_keys=False))
    return path


def render(job_file: Path, *options: str) -> tuple[str, list[dict[str, Any]]]:
    result = CliRunner().invoke(app, ["finetune", "render", "k8s", str(job_file), *options])
    assert result.exit_code == 0, result.output
    return result.stdout, list(yaml.safe_load_all(result.stdout))


def model(data: dict[str, Any], kind: str) -> Any:
    """``data`` as the kubernetes client's model ``kind``; the round trip must keep it all."""
    client = kubernetes.client.ApiClient()
    built = client.deserialize(json.dumps(data), kind, "application/json")
    assert client.sanitize_for_serialization(built) == data
    return built


def check_pod(template: dict[str, Any], gpus: int, container: str) -> Any:
    pod = model(template, "V1PodTemplateSpec")
    (main,) = pod.spec.containers
    assert main.name == container
    assert main.resources.requests == {"nvidia.com/gpu": str(gpus)} or gpus == 0
    assert main.resources.limits == main.resources.requests
    assert {e.name: e.value for e in main.env}["HF_HUB_OFFLINE"] == "1"
    assert pod.spec.termination_grace_period_seconds == 600
    assert pod.spec.restart_policy == "OnFailure"
    mounts = {m.mount_path: m.name for m in main.volume_mounts}
    assert mounts["/job"] == "job" and mounts["/workspace"] == "workspace"
    script = main.command[-1]
    assert "-m llmops.cli.main finetune run /job/job.yaml --resume" in script
    assert 'test -f "/workspace/runs/support-lora/manifest.json" || exit 75' in script
    return pod


def test_a_single_node_job_with_its_config_map(job_file: Path) -> None:
    text, (config_map, job) = render(job_file, "--gpus", "2", "--pvc", "ft-data")
    cm = model(config_map, "V1ConfigMap")
    pod_job = yaml.safe_load(cm.data["job.yaml"])
    assert pod_job["base_model"] == "/workspace/models/qwen2.5-0.5b-instruct"
    assert pod_job["datasets"]["train"][0]["path"] == "/workspace/data/support.jsonl"
    assert pod_job["output_dir"] == "/workspace/runs/support-lora"
    built = model(job, "V1Job")
    assert (built.api_version, built.kind, built.metadata.name) == (
        "batch/v1",
        "Job",
        "support-lora",
    )
    assert built.spec.backoff_limit == 10
    pod = check_pod(job["spec"]["template"], 2, "finetune")
    volumes = {v.name: v for v in pod.spec.volumes}
    assert volumes["workspace"].persistent_volume_claim.claim_name == "ft-data"
    assert volumes["job"].config_map.name == cm.metadata.name
    script = pod.spec.containers[0].command[-1]
    assert "accelerate launch --num_processes 2 --num_machines 1 --multi_gpu -m" in script
    _matches_deploy("finetune-job.yaml", text, "--gpus 2 --pvc ft-data")


def test_several_nodes_render_a_pytorchjob_with_master_and_workers(job_file: Path) -> None:
    text, (config_map, job) = render(job_file, "--gpus", "4", "--nodes", "3")
    model(config_map, "V1ConfigMap")
    assert (job["apiVersion"], job["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    model(job["metadata"], "V1ObjectMeta")
    spec = job["spec"]
    assert set(spec) <= PYTORCHJOB_SPEC and set(spec["runPolicy"]) <= RUN_POLICY
    assert spec["runPolicy"]["cleanPodPolicy"] in {"All", "Running", "None"}
    replicas = spec["pytorchReplicaSpecs"]
    assert set(replicas) == {"Master", "Worker"}
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    for replica in replicas.values():
        assert set(replica) <= REPLICA_SPEC and replica["restartPolicy"] in RESTART_POLICIES
        pod = check_pod(replica["template"], 4, "pytorch")  # the operator's container name
        script = pod.spec.containers[0].command[-1]
        assert "--num_processes 12 --num_machines 3 --multi_gpu" in script
        assert '--machine_rank "$RANK" --main_process_ip "$MASTER_ADDR"' in script
    _matches_deploy("finetune-pytorchjob.yaml", text, "--gpus 4 --nodes 3")


def test_kubeflow_on_one_node_has_only_a_master(job_file: Path) -> None:
    _, (_, job) = render(job_file, "--kubeflow", "--gpus", "1")
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    master = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    script = check_pod(master, 1, "pytorch").spec.containers[0].command[-1]
    assert "--multi_gpu" not in script and "--machine_rank" not in script


def test_an_invalid_job_is_reported_before_rendering(job_file: Path) -> None:
    (job_file.parent / "data" / "support.jsonl").unlink()
    result = CliRunner().invoke(app, ["finetune", "render", "k8s", str(job_file)])
    assert result.exit_code == 2
    assert "support.jsonl" in result.output and "apiVersion" not in result.stdout


def _matches_deploy(name: str, text: str, options: str) -> None:
    """deploy/NAME holds ``text`` under a line naming the sample job and the options."""
    text = f"# sample job: tests/finetune/test_render_k8s.py SAMPLE; options: {options}\n" + text
    target = DEPLOY / name
    if os.environ.get("LLMOPS_WRITE_DEPLOY"):
        target.write_text(text)
    assert target.read_text() == text, f"deploy/{name} is stale: rerun with LLMOPS_WRITE_DEPLOY=1"


FAKE_LAUNCHER = """#!{python}
import pathlib, signal, sys, time
out = pathlib.Path(sys.argv[0]).parent / "launcher.log"
def stop(signum, frame):
    time.sleep(0.3)  # a checkpoint being written
    out.write_text("stopped on SIGTERM")
    sys.exit(143)
signal.signal(signal.SIGTERM, stop)
out.write_text("started")
time.sleep(60)
"""


@pytest.mark.parametrize("finish", ["sigterm", "done", "not-done", "failed"])
def test_the_pod_script_forwards_sigterm_and_exits_as_the_job_needs(
    tmp_path: Path, finish: str
) -> None:
    """The rendered command, run by /bin/sh with a stand-in `accelerate` on PATH: SIGTERM to
    the shell reaches the launcher, the shell waits for it and exits with its status (the pod
    is retried); a launcher that ends 0 gives 0 with the manifest written, else 75; a failed
    one, its own status."""
    import signal
    import subprocess
    import sys
    import time

    from llmops.finetune.manifests import ClusterSpec, launch_command

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "accelerate"
    script = FAKE_LAUNCHER.format(python=sys.executable)
    if finish != "sigterm":
        script = script.replace("time.sleep(60)", f"sys.exit({3 if finish == 'failed' else 0})")
    launcher.write_text(script)
    launcher.chmod(0o755)
    output = tmp_path / "run"
    output.mkdir()
    if finish == "done":
        (output / "manifest.json").write_text("{}")
    spec = ClusterSpec(image="img", gpus=1)
    command = launch_command(spec, str(output))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    shell = subprocess.Popen(command, env=env)
    if finish == "sigterm":
        log = bin_dir / "launcher.log"
        deadline = time.monotonic() + 10
        while not (log.exists() and log.read_text() == "started"):
            assert time.monotonic() < deadline, "the launcher did not start"
            time.sleep(0.05)
        shell.send_signal(signal.SIGTERM)
    status = shell.wait(timeout=20)
    if finish == "sigterm":
        assert (bin_dir / "launcher.log").read_text() == "stopped on SIGTERM"
        assert status == 143
    else:
        assert status == {"done": 0, "not-done": 75, "failed": 3}[finish]
