"""`llmops deploy render`: compose and kustomize trees for the example configs. No cluster and
no container runtime here: Kubernetes objects go through the `kubernetes` client's models (a
round trip that would drop a misspelled key), the ServiceMonitor, Istio and Gateway API objects
are checked against their documented fields, and `kubectl kustomize` builds the overlays when
kubectl is installed.

The examples in deploy/compose and deploy/k8s are this renderer's output; run with
LLMOPS_WRITE_DEPLOY=1 to rewrite them after changing the renderer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmops.cli.main import app
from tests.deploy.conftest import ROOT, rag_configs

kubernetes = pytest.importorskip("kubernetes")
MODELS = {
    "ConfigMap": "V1ConfigMap",
    "Deployment": "V1Deployment",
    "Service": "V1Service",
    "PersistentVolumeClaim": "V1PersistentVolumeClaim",
    "Job": "V1Job",
    "HorizontalPodAutoscaler": "V2HorizontalPodAutoscaler",
    "PodDisruptionBudget": "V1PodDisruptionBudget",
}
# monitoring.coreos.com/v1 ServiceMonitor: spec and endpoint fields (prometheus-operator API)
SERVICE_MONITOR_SPEC = {"jobLabel", "targetLabels", "podTargetLabels", "endpoints", "selector",
                        "namespaceSelector", "sampleLimit", "attachMetadata"}  # fmt: skip
ENDPOINT = {"port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout",
            "tlsConfig", "authorization", "honorLabels", "relabelings",
            "metricRelabelings"}  # fmt: skip


def render(config: Path, out: Path, *options: str, code: int = 0) -> Any:
    args = ["deploy", "render", *options, "-o", str(out), "--root", str(ROOT), str(config)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    return result


def load_tree(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        str(p.relative_to(out)): [d for d in yaml.safe_load_all(p.read_text()) if d]
        for p in sorted(out.rglob("*.yaml"))
    }


def check_object(doc: dict[str, Any]) -> Any:
    """``doc`` as the kubernetes client's model; the round trip must keep every field."""
    kind = doc["kind"]
    if kind == "ServiceMonitor":
        assert doc["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(doc["spec"]) <= SERVICE_MONITOR_SPEC
        for endpoint in doc["spec"]["endpoints"]:
            assert set(endpoint) <= ENDPOINT
        return doc
    if kind not in MODELS:
        return doc
    client = kubernetes.client.ApiClient()
    built = client.deserialize(json.dumps(doc), MODELS[kind], "application/json")
    assert client.sanitize_for_serialization(built) == doc
    return built


def objects(tree: dict[str, list[dict[str, Any]]], kind: str) -> list[dict[str, Any]]:
    return [d for docs in tree.values() for d in docs if d.get("kind") == kind]


@pytest.mark.parametrize("config", rag_configs(), ids=lambda p: p.name)
def test_k8s_single_replica_for_every_example(config: Path, tmp_path: Path) -> None:
    render(config, tmp_path, "--target", "k8s")
    tree = load_tree(tmp_path)
    for docs in tree.values():
        for doc in docs:
            if "apiVersion" in doc and doc.get("kind") != "Kustomization":
                check_object(doc)
    loaded = yaml.safe_load(config.read_text())
    name = loaded["name"].lower().replace("_", "-")
    port = (loaded.get("server") or {}).get("port", 8000)
    (deployment,) = objects(tree, "Deployment")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    assert deployment["metadata"]["name"] == name and main["ports"][0]["containerPort"] == port
    assert main["livenessProbe"]["httpGet"]["path"] == "/health"
    assert main["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert main["resources"]["requests"]["cpu"]
    assert "--no-ingest" not in main["args"]  # its only pod indexes, as `llmops up` does
    assert not objects(tree, "Job") and not objects(tree, "HorizontalPodAutoscaler")
    secret = {e["name"]: e for e in main["env"]}["LLMOPS_KEY_SECRET"]
    assert secret["valueFrom"]["secretKeyRef"] == {
        "name": f"{name}-secrets",
        "key": "LLMOPS_KEY_SECRET",
    }
    (config_map,) = [m for m in objects(tree, "ConfigMap") if "app.yaml" in m["data"]]
    in_pod = yaml.safe_load(config_map["data"]["app.yaml"])
    assert in_pod["data_dir"] == "/var/lib/llmops"
    for source in in_pod["sources"]:
        assert (ROOT / source["path"]).exists()  # where the image copies the project
    (service,) = objects(tree, "Service")
    assert service["spec"]["ports"][0]["port"] == port
    (monitor,) = objects(tree, "ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_k8s_scaled_out(scalable: Any, tmp_path: Path) -> None:
    config = scalable("quickstart.yaml")
    render(config, tmp_path, "--target", "k8s", "--replicas", "3", "--max-replicas", "8")
    tree = load_tree(tmp_path)
    (deployment,) = objects(tree, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == ["--no-ingest"]
    (job,) = objects(tree, "Job")
    ingest = check_object(job).spec.template.spec.containers[0]
    assert ingest.command == ["llmops", "ingest", "/app/app.yaml"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    (hpa,) = tree["overlays/production/hpa.yaml"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 8)
    assert hpa["spec"]["scaleTargetRef"]["name"] == "quickstart"
    (pdb,) = tree["overlays/production/pdb.yaml"]
    assert (
        check_object(pdb).spec.selector.match_labels
        == deployment["spec"]["selector"]["matchLabels"]
    )
    (claim,) = objects(tree, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    kustomization = tree["overlays/production/kustomization.yaml"][0]
    assert kustomization["replicas"] == [{"name": "quickstart", "count": 3}]
    assert "ingest-job.yaml" in tree["base/kustomization.yaml"][0]["resources"]


def test_compose_follows_the_config(scalable: Any, tmp_path: Path) -> None:
    config = scalable("ab-test.yaml")
    raw = yaml.safe_load(config.read_text())
    raw["experiment"]["redis_url"] = "${REDIS_URL:-redis://127.0.0.1:6379/0}"
    raw["server"] = {"port": 8100}
    config.write_text(yaml.safe_dump(raw))
    render(config, tmp_path, "--target", "compose")
    compose = yaml.safe_load((tmp_path / "docker-compose.yaml").read_text())
    services = compose["services"]
    expected = {"llmops", "chroma", "redis", "postgres", "mlflow", "prometheus", "grafana"}
    assert expected <= set(services)
    profiles = {name: s["profiles"] for name, s in services.items() if "profiles" in s}
    assert profiles == {"vllm": ["vllm"], "tgi": ["tgi"], "ollama": ["ollama"]}
    assert services["llmops"]["ports"] == ["8100:8100"]
    assert "${POSTGRES_PASSWORD" in services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    in_container = yaml.safe_load((tmp_path / "app.yaml").read_text())
    assert in_container["store"]["host"] == "chroma"
    assert in_container["experiment"]["redis_url"] == "redis://redis:6379/0"
    scrape = yaml.safe_load((tmp_path / "prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["llmops:8100"]
    assert scrape["metrics_path"] == "/metrics"
    build = services["llmops"]["build"]
    assert (tmp_path / build["context"] / build["dockerfile"]).resolve() == ROOT / "Dockerfile"
    for volume in services["llmops"]["volumes"] + services["prometheus"]["volumes"]:
        source = volume.split(":")[0]
        assert not source.startswith(".") or (tmp_path / source).exists()


def test_compose_quickstart_runs_without_the_servers_it_does_not_use(tmp_path: Path) -> None:
    render(ROOT / "configs" / "quickstart.yaml", tmp_path, "--target", "compose")
    services = yaml.safe_load((tmp_path / "docker-compose.yaml").read_text())["services"]
    assert "chroma" not in services and "redis" not in services
    assert {"llmops", "postgres", "mlflow", "prometheus", "grafana"} <= set(services)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("overlay", ["staging", "production"])
def test_kubectl_kustomize_builds_the_overlays(scalable: Any, tmp_path: Path, overlay: str) -> None:
    render(scalable("canary.yaml"), tmp_path, "--target", "k8s", "--replicas", "2",
           "--mesh", "istio")  # fmt: skip
    built = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path / "overlays" / overlay)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    docs = [d for d in yaml.safe_load_all(built.stdout) if d]
    assert {d["metadata"]["namespace"] for d in docs} == {f"guide-canary-{overlay}"}
    for doc in docs:
        check_object(doc)
    replicas = {
        d["metadata"]["name"]: d["spec"]["replicas"] for d in docs if d["kind"] == "Deployment"
    }
    expected = 2 if overlay == "production" else 1
    assert replicas == {"guide-canary-stable": expected, "guide-canary-next": expected}


@pytest.mark.skipif(not os.environ.get("LLMOPS_WRITE_DEPLOY"), reason="set LLMOPS_WRITE_DEPLOY=1")
def test_write_examples(scalable: Any) -> None:
    shutil.rmtree(ROOT / "deploy" / "compose", ignore_errors=True)
    shutil.rmtree(ROOT / "deploy" / "k8s", ignore_errors=True)
    render(ROOT / "configs" / "quickstart.yaml", ROOT / "deploy" / "compose", "--target", "compose")
    render(scalable("quickstart.yaml"), ROOT / "deploy" / "k8s", "--target", "k8s",
           "--replicas", "3", "--max-replicas", "10")  # fmt: skip
