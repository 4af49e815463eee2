"""``--target k8s``: a kustomize tree. ``base/`` holds every object at one replica;
``overlays/staging`` puts it in the staging namespace; ``overlays/production`` sets the
replicas and, for an app that may scale out, adds the HPA and the PodDisruptionBudget.

  kubectl apply -k overlays/staging
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmops.deploy import k8s, mesh, scale
from llmops.deploy.app import DeployedApp
from llmops.deploy.files import Files, to_yaml
from llmops.deploy.spec import DeploySpec
from llmops.errors import LLMOpsError

HEADER = "# Rendered by `llmops deploy render --target k8s`; edit the app config, not this.\n"


class ScaleOutRefused(LLMOpsError):
    """The config keeps state that several replicas cannot share."""


def workloads(deployed: DeployedApp, spec: DeploySpec) -> list[tuple[k8s.Workload, int]]:
    """The Deployments and their share of the traffic: the app alone (100), or with a mesh
    one per variant of its experiment."""
    if spec.mesh is None:
        return [(k8s.Workload(deployed), 100)]
    if deployed.rag is None:
        raise ValueError(
            f"--mesh {spec.mesh} splits a RAG app's experiment variants; a model app splits "
            "traffic among its registered versions itself (routing:): render without --mesh"
        )
    experiment = deployed.rag.experiment
    if experiment is None:
        raise ValueError(
            f"--mesh {spec.mesh} splits traffic among the variants of the app's `experiment:` "
            "section, and this app has none"
        )
    split = mesh.shares(experiment)
    return [(k8s.Workload(mesh.variant_app(deployed, v), v), split[v]) for v in split]


def check_scale_out(split: list[tuple[k8s.Workload, int]], spec: DeploySpec) -> bool:
    """Whether more than one pod serves (then every workload's config must allow it)."""
    pods = spec.most * len(split)
    if pods == 1:
        return False
    for work, _ in split:
        found = scale.problems(work.deployed.app, scale.Scope.CLUSTER)
        if found:
            raise ScaleOutRefused(scale.refusal(work.name, pods, scale.Scope.CLUSTER, found))
    return True


def render(deployed: DeployedApp, spec: DeploySpec, root: Path, out: Path) -> Files:
    split = workloads(deployed, spec)
    scaled = check_scale_out(split, spec)
    base: dict[str, list[k8s.Manifest]] = {
        "app.yaml": [
            o for w, _ in split for o in (k8s.config_map(w), k8s.deployment(w, spec, scaled))
        ],
        "service.yaml": [k8s.service(deployed)],
        "storage.yaml": [k8s.data_claim(deployed, scaled)],
        "monitoring.yaml": [k8s.service_monitor(deployed)]
        + ([k8s.dashboard_map(deployed)] if deployed.rag else []),
    }
    if scaled and deployed.ingests:
        base["ingest-job.yaml"] = [k8s.ingest_job(split[0][0], spec)]
    if spec.mesh is not None:
        base["mesh.yaml"] = mesh.MESHES[spec.mesh].objects(deployed, split, spec)
    files = {f"base/{name}": to_yaml(*docs, header=HEADER) for name, docs in base.items()}
    files["base/kustomization.yaml"] = _kustomization({"resources": sorted(base)})
    files.update(_overlays(deployed, [w for w, _ in split], spec, scaled))
    return files


def _overlays(app: DeployedApp, works: list[k8s.Workload], spec: DeploySpec, scaled: bool) -> Files:
    production: dict[str, list[k8s.Manifest]] = {}
    if spec.most > 1:
        production["hpa.yaml"] = [k8s.autoscaler(w, spec) for w in works]
    if scaled:
        production["pdb.yaml"] = [k8s.disruption_budget(w) for w in works]
    files = {
        f"overlays/production/{name}": to_yaml(*docs, header=HEADER)
        for name, docs in production.items()
    }
    files["overlays/production/kustomization.yaml"] = _kustomization(
        {
            "namespace": f"{app.name}-production",
            "resources": ["../../base", *sorted(production)],
            "replicas": [{"name": w.name, "count": spec.replicas} for w in works],
        }
    )
    files["overlays/staging/kustomization.yaml"] = _kustomization(
        {"namespace": f"{app.name}-staging", "resources": ["../../base"]}
    )
    return files


def _kustomization(fields: dict[str, Any]) -> str:
    doc = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **fields}
    return to_yaml(doc, header=HEADER)
