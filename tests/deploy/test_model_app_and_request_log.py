"""`llmops deploy render` of a model app (kind: model, configs/adult.yaml): its own port and
probes, no ingestion, its registry on the shared MLflow; the scale-out rule of model apps; and
a RAG app's request log in PostgreSQL, whose URL reaches the container from a secret only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import ROOT
from tests.deploy.test_render import check_object, load_tree, objects, render

ADULT = ROOT / "configs" / "adult.yaml"


@pytest.fixture
def adult(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """configs/adult.yaml with its data files where ADULT_DIR says (the config is checked
    against them when it loads; their rows are not read to render)."""
    data = tmp_path / "adult-data"
    data.mkdir()
    for name in ("adult.data", "adult.test"):
        (data / name).write_text("39, State-gov, 77516, Bachelors, 13, ..., <=50K\n")
    monkeypatch.setenv("ADULT_DIR", str(data))
    return ADULT


def model_variant(tmp_path: Path, **changes: Any) -> Path:
    raw = yaml.safe_load(ADULT.read_text())
    raw.update(changes)
    path = tmp_path / "configs" / "model.yaml"  # beside the example: same relative data paths
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_k8s_model_app(adult: Path, tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    render(adult, out, "--target", "k8s")
    tree = load_tree(out)
    for docs in tree.values():
        for doc in docs:
            if "apiVersion" in doc and doc.get("kind") != "Kustomization":
                check_object(doc)
    (deployment,) = objects(tree, "Deployment")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    port = yaml.safe_load(adult.read_text()).get("serving", {}).get("port", 8000)
    assert deployment["metadata"]["name"] == "adult"
    assert main["ports"] == [{"name": "http", "containerPort": port}]
    assert main["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert main["livenessProbe"]["httpGet"]["path"] == "/health"
    assert main["args"] == []  # nothing to index: no --no-ingest, no ingestion Job
    assert not objects(tree, "Job")
    (service,) = objects(tree, "Service")
    assert service["spec"]["ports"][0]["port"] == port
    (config_map,) = objects(tree, "ConfigMap")
    in_pod = yaml.safe_load(config_map["data"]["app.yaml"])
    assert in_pod["kind"] == "model" and in_pod["data_dir"] == "/var/lib/llmops"
    assert in_pod["registry"]["tracking_uri"] == "${MLFLOW_TRACKING_URI:-}"  # as written
    assert in_pod["data"]["train"]["path"].startswith("${ADULT_DIR:-")


def test_compose_model_app(adult: Path, tmp_path: Path) -> None:
    result = render(adult, tmp_path, "--target", "compose")
    assert "resolved from the container's environment" in result.output  # ADULT_DIR's paths
    services = yaml.safe_load((tmp_path / "docker-compose.yaml").read_text())["services"]
    app = services["llmops"]
    assert app["ports"] == ["8000:8000"]
    assert app["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert app["environment"]["ADULT_DIR"] == "${ADULT_DIR:-}"
    assert {"mlflow", "postgres", "prometheus", "grafana"} <= set(services)
    assert "chroma" not in services and "redis" not in services
    assert not (tmp_path / "grafana" / "dashboards" / "llmops.json").exists()  # RAG metrics
    (job,) = yaml.safe_load((tmp_path / "prometheus.yml").read_text())["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["llmops:8000"]


def test_model_app_without_a_registry_reads_the_shared_one(adult: Path, tmp_path: Path) -> None:
    config = model_variant(tmp_path, registry={"onnx": True})
    result = render(config, tmp_path / "out", "--target", "compose")
    assert "registry.tracking_uri is unset" in result.output
    in_container = yaml.safe_load((tmp_path / "out" / "app.yaml").read_text())
    assert in_container["registry"]["tracking_uri"] == "${MLFLOW_TRACKING_URI}"


def test_model_app_replicas_need_shared_state(adult: Path, tmp_path: Path) -> None:
    result = render(adult, tmp_path / "refused", "--target", "k8s", "--replicas", "2", code=1)
    assert "refusing 2 replicas on several machines for app 'adult'" in result.output
    assert "monitoring.predictions.enabled: false" in result.output
    retraining = {"predictions": {"enabled": False}, "retrain": {"triggers": ["drift"]}}
    routed = {"name": "ab", "variants": {"a": {"alias": "production"}, "b": {"alias": "cand"}}}
    refused = model_variant(tmp_path, monitoring=retraining, routing=routed)
    result = render(refused, tmp_path / "refused", "--target", "k8s", "--replicas", "2", code=1)
    assert "routing.redis_url: ${REDIS_URL}" in result.output
    assert "scheduled `llmops train` job" in result.output
    assert "monitoring.predictions" not in result.output
    result = render(refused, tmp_path / "refused", "--target", "k8s", "--mesh", "istio", code=1)
    assert "a model app splits traffic among its registered versions itself" in result.output
    stateless = model_variant(tmp_path, monitoring={"predictions": {"enabled": False}})
    out = tmp_path / "scaled"
    render(stateless, out, "--target", "k8s", "--replicas", "2", "--max-replicas", "4")
    tree = load_tree(out)
    (deployment,) = objects(tree, "Deployment")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["args"] == []
    assert not objects(tree, "Job")  # no ingestion for a model app, scaled or not
    (hpa,) = tree["overlays/production/hpa.yaml"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)


def test_request_log_in_postgresql_comes_from_a_secret(
    scalable: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "s3cret-not-in-any-file"
    monkeypatch.setenv("PG_URL", f"postgresql://llmops:{password}@pg.data.svc:5432/llmops")
    config = scalable("quickstart.yaml", monitoring={"request_log": {"url": "${PG_URL}"}})
    out = tmp_path / "k8s"
    render(config, out, "--target", "k8s", "--replicas", "3")  # no SQLite log to refuse
    tree = load_tree(out)
    (deployment,) = objects(tree, "Deployment")
    (main,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in main["env"]}
    assert env["REQUEST_LOG_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "quickstart-secrets",
        "key": "REQUEST_LOG_URL",
    }
    (job,) = objects(tree, "Job")  # the ingestion writes no request rows, but reads the config
    assert "REQUEST_LOG_URL" in {
        e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    (config_map,) = [m for m in objects(tree, "ConfigMap") if "app.yaml" in m["data"]]
    in_pod = yaml.safe_load(config_map["data"]["app.yaml"])
    assert in_pod["monitoring"]["request_log"]["url"] == "${REQUEST_LOG_URL}"
    compose = tmp_path / "compose"
    render(scalable("quickstart.yaml", monitoring={"request_log": {"url": "${PG_URL}"}}),
           compose, "--target", "compose")  # fmt: skip
    environment = yaml.safe_load((compose / "docker-compose.yaml").read_text())["services"][
        "llmops"
    ]["environment"]
    assert environment["REQUEST_LOG_URL"].startswith("${REQUEST_LOG_URL:?")
    for path in [*out.rglob("*"), *compose.rglob("*")]:
        if path.is_file():
            assert password not in path.read_text() and "pg.data.svc" not in path.read_text()
