"""Kubernetes manifests for a fine-tuning job (not the adapter's manifest.json: that is
``manifest.py``): a ConfigMap holding the job file, and a ``batch/v1`` Job for one node or a
Kubeflow ``kubeflow.org/v1`` PyTorchJob (Master + Workers) for several, each running
``accelerate launch ... finetune run /job/job.yaml --resume`` so a rescheduled pod goes on from
its newest checkpoint on the PVC.

The job's paths are relative to its file; the pod reads the file from the ConfigMap, so every
relative path is rewritten to ``/workspace/<the same path>``: copy the job's folder (base model,
data) onto the PVC and output_dir lands there too. Pure functions: dicts in, dicts out.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WORKSPACE = "/workspace"
JOB_FILE = "/job/job.yaml"
EXIT_NOT_DONE = 75  # SIGTERM saved a checkpoint but the adapter is not written: retry the pod
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "ANONYMIZED_TELEMETRY": "False",
    "PYTHONUNBUFFERED": "1",
}


@dataclass(frozen=True)
class ClusterSpec:
    """Where and how the job runs on the cluster."""

    image: str = "llmops:latest"
    gpus: int = 1  # per node (pod)
    nodes: int = 1
    kubeflow: bool = False
    pvc: str | None = None  # default: <job name>-workspace
    namespace: str | None = None
    grace_seconds: int = 600  # one optimizer step plus one checkpoint write, with margin
    backoff_limit: int = 10  # preemptions count as failures of a Job: allow several

    @property
    def uses_pytorchjob(self) -> bool:
        return self.kubeflow or self.nodes > 1


def pod_path(value: str) -> str:
    """Where a path of the job file (relative to it) is inside the pod."""
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return expanded
    return str(Path(WORKSPACE) / os.path.normpath(expanded))


def job_file_for_pod(raw: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The job file as the pod reads it (relative paths under /workspace) and notes on paths
    that are absolute here and must exist at the same place in the image or on the PVC."""
    job = copy.deepcopy(raw)
    notes: list[str] = []

    def move(holder: dict[str, Any], key: str) -> None:
        value = holder.get(key)
        if not isinstance(value, str):
            return
        if os.path.isabs(os.path.expanduser(value)):
            notes.append(f"{key} is an absolute path ({value}): it must exist in the pod")
        holder[key] = pod_path(value)

    for key in ("base_model", "tokenizer", "output_dir"):
        move(job, key)
    template = job.get("chat_template")
    if isinstance(template, str) and "{%" not in template and "\n" not in template:
        move(job, "chat_template")
    if isinstance(job.get("objective"), dict):
        move(job["objective"], "teacher")
    datasets = job.get("datasets")
    for part in ("train", "validation"):
        for item in (datasets.get(part) if isinstance(datasets, dict) else None) or []:
            if isinstance(item, dict):
                move(item, "path")
    return job, notes


def launch_command(spec: ClusterSpec, output_dir: str) -> list[str]:
    """The container command: accelerate (one process per GPU, DDP across nodes through the
    PyTorchJob's MASTER_ADDR / MASTER_PORT / RANK), then exit 75 when training stopped on
    SIGTERM before the adapter was written, so the Job or PyTorchJob retries the pod."""
    processes = spec.gpus * spec.nodes
    launch = ["accelerate", "launch", "--num_processes", str(processes)]
    launch += ["--num_machines", str(spec.nodes)]
    if processes > 1:
        launch.append("--multi_gpu")
    if spec.nodes > 1:
        launch += ["--machine_rank", '"$RANK"', "--main_process_ip", '"$MASTER_ADDR"']
        launch += ["--main_process_port", '"$MASTER_PORT"']
    launch += ["-m", "llmops.cli.main", "finetune", "run", JOB_FILE, "--resume"]
    done = f"{output_dir}/manifest.json"
    # the shell is the container's PID 1, which neither dies of nor passes on SIGTERM by
    # itself: the trap forwards it to the launcher (which forwards it to the ranks), and the
    # loop waits until the launcher has exited, checkpoint written
    script = "; ".join(
        [
            """trap 'kill -TERM "$pid" 2>/dev/null' TERM""",
            f"{' '.join(launch)} & pid=$!",
            'wait "$pid"; status=$?',  # a trapped SIGTERM ends this wait early: wait again
            'while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done',
            'if [ "$status" -ne 0 ]; then exit "$status"; fi',
            f'test -f "{done}" || exit {EXIT_NOT_DONE}',
        ]
    )
    return ["/bin/sh", "-c", script]


def config_map(name: str, job_yaml: str, spec: ClusterSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(f"{name}-job", name, spec),
        "data": {"job.yaml": job_yaml},
    }


def pod_spec(name: str, spec: ClusterSpec, output_dir: str, container: str) -> dict[str, Any]:
    """The pod template's spec: one container with the GPUs, the job file, the workspace PVC
    and a RAM-backed /dev/shm (NCCL and dataloaders need more than the default 64 MiB)."""
    gpus = {"nvidia.com/gpu": str(spec.gpus)} if spec.gpus else {}  # a quantity string
    env = [{"name": k, "value": v} for k, v in OFFLINE_ENV.items()]
    # how long the launcher lets the ranks finish their checkpoint after a SIGTERM before it
    # kills them (torch's default, 30 s, is shorter than the grace period)
    drain = str(max(30, spec.grace_seconds - 30))
    env.append({"name": "TORCH_ELASTIC_SHUTDOWN_TIMEOUT", "value": drain})
    return {
        "restartPolicy": "OnFailure",
        "terminationGracePeriodSeconds": spec.grace_seconds,
        "containers": [
            {
                "name": container,
                "image": spec.image,
                "command": launch_command(spec, output_dir),
                "workingDir": WORKSPACE,
                "env": env,
                "resources": {"requests": dict(gpus), "limits": dict(gpus)},
                "volumeMounts": [
                    {"name": "job", "mountPath": str(Path(JOB_FILE).parent), "readOnly": True},
                    {"name": "workspace", "mountPath": WORKSPACE},
                    {"name": "dshm", "mountPath": "/dev/shm"},
                ],
            }
        ],
        "volumes": [
            {"name": "job", "configMap": {"name": f"{name}-job"}},
            {
                "name": "workspace",
                "persistentVolumeClaim": {"claimName": spec.pvc or f"{name}-workspace"},
            },
            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
        ],
    }


def batch_job(name: str, spec: ClusterSpec, output_dir: str) -> dict[str, Any]:
    """A ``batch/v1`` Job: one pod with ``spec.gpus`` GPUs, retried up to backoff_limit times."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(name, name, spec),
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "template": {
                "metadata": {"labels": _labels(name)},
                "spec": pod_spec(name, spec, output_dir, "finetune"),
            },
        },
    }


def pytorch_job(name: str, spec: ClusterSpec, output_dir: str) -> dict[str, Any]:
    """A Kubeflow training-operator ``PyTorchJob``: a Master and nodes − 1 Workers, each with
    ``spec.gpus`` GPUs; the operator wants the container named ``pytorch`` and sets
    MASTER_ADDR, MASTER_PORT, WORLD_SIZE and RANK in every pod."""

    def replica(count: int) -> dict[str, Any]:
        template = {
            "metadata": {"labels": _labels(name)},
            "spec": pod_spec(name, spec, output_dir, "pytorch"),
        }
        return {"replicas": count, "restartPolicy": "OnFailure", "template": template}

    replicas = {"Master": replica(1)}
    if spec.nodes > 1:
        replicas["Worker"] = replica(spec.nodes - 1)
    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": _metadata(name, name, spec),
        "spec": {
            "runPolicy": {"backoffLimit": spec.backoff_limit, "cleanPodPolicy": "None"},
            "pytorchReplicaSpecs": replicas,
        },
    }


def render(raw: dict[str, Any], spec: ClusterSpec) -> tuple[list[dict[str, Any]], list[str]]:
    """The ConfigMap and the Job (or PyTorchJob) for the job file ``raw`` (as read from YAML,
    already validated), and notes for the reader."""
    import yaml  # pyyaml is a core dependency; imported here to keep the module light

    if spec.gpus < 0 or spec.nodes < 1:
        raise ValueError("gpus must be >= 0 and nodes >= 1")
    name = str(raw["name"]).lower().replace("_", "-").strip("-")  # a DNS-1123 name
    job, notes = job_file_for_pod(raw)
    output_dir = str(job["output_dir"])
    text = yaml.safe_dump(job, sort_keys=False, allow_unicode=True)
    workload = pytorch_job if spec.uses_pytorchjob else batch_job
    return [config_map(name, text, spec), workload(name, spec, output_dir)], notes


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "llmops-finetune", "llmops.dev/job": name}


def _metadata(name: str, job: str, spec: ClusterSpec) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": _labels(job)}
    if spec.namespace:
        metadata["namespace"] = spec.namespace
    return metadata
