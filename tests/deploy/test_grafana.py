"""Grafana in the compose render: the provisioned Prometheus datasource and dashboard, and a
dashboard that queries only metrics a running app exports (scraped from its GET /metrics)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from llmops import RAG
from llmops.deploy.grafana import dashboard
from llmops.server import create_app
from tests.conftest import HASHING, ConfigWriter
from tests.deploy.conftest import ROOT
from tests.deploy.test_render import check_object, render

# the sample names each family type is exposed under (what a PromQL query names)
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
            "gauge": ("",), "summary": ("_sum", "_count", "")}  # fmt: skip


def scraped_names(write_config: ConfigWriter) -> set[str]:
    """Every metric an app serves on GET /metrics, after a query and a drift-free start."""
    rag = RAG.from_config(write_config(embedder=HASHING))
    rag.start()
    try:
        rag.ingest()
        with TestClient(create_app(rag)) as client:
            assert client.post("/query", json={"question": "How do I restore?"}).status_code == 200
            response = client.get("/metrics")
    finally:
        rag.close()
    assert response.status_code == 200
    names = set()
    for family in text_string_to_metric_families(response.text):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def queries(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in board["panels"] if p["type"] != "row" for t in p["targets"]]
    variables = board["templating"]["list"]
    return exprs + [v["query"]["query"] for v in variables if v["type"] == "query"]


def test_dashboard_queries_only_metrics_the_app_exports(write_config: ConfigWriter) -> None:
    board = json.loads(dashboard())
    used = {name for expr in queries(board) for name in re.findall(r"\bllmops_\w+", expr)}
    exported = scraped_names(write_config)
    assert used <= exported, f"the dashboard queries metrics no app exports: {used - exported}"
    for needed in ("llmops_http_request_duration_seconds_bucket", "llmops_http_requests_total",
                   "llmops_errors_total", "llmops_access_refusals_total", "llmops_tokens_total",
                   "llmops_drift_score", "llmops_drift_detected"):  # fmt: skip
        assert needed in used, needed
    assert any('signal="top_score"' in expr for expr in queries(board))  # retrieval scores
    # the copy for a Grafana set up by hand is the packaged dashboard
    assert (ROOT / "deploy" / "grafana-dashboard.json").read_text() == dashboard()


def test_compose_provisions_grafana(tmp_path: Path) -> None:
    render(ROOT / "configs" / "quickstart.yaml", tmp_path, "--target", "compose")
    services = yaml.safe_load((tmp_path / "docker-compose.yaml").read_text())["services"]
    mounts = {}
    for volume in services["grafana"]["volumes"]:
        source, target, mode = volume.split(":")
        assert mode == "ro" and (tmp_path / source).is_dir()
        mounts[target] = tmp_path / source
    sources = tmp_path / "grafana" / "datasources" / "prometheus.yaml"
    (datasource,) = yaml.safe_load(sources.read_text())["datasources"]
    assert mounts["/etc/grafana/provisioning/datasources"] == sources.parent
    prometheus_port = services["prometheus"]["ports"][0].split(":")[1]
    assert datasource["url"] == f"http://prometheus:{prometheus_port}" and datasource["isDefault"]
    (provider,) = yaml.safe_load((tmp_path / "grafana/dashboards/provider.yaml").read_text())[
        "providers"
    ]
    folder = mounts[provider["options"]["path"]]  # the provider reads the mounted folder
    board = json.loads((folder / "llmops.json").read_text())
    assert board["uid"] and board["panels"]
    # Prometheus scrapes the app the dashboard reads, on the app's port and path
    (job,) = yaml.safe_load((tmp_path / "prometheus.yml").read_text())["scrape_configs"]
    assert job["static_configs"][0]["targets"] == ["llmops:8000"]
    assert services["llmops"]["ports"] == ["8000:8000"] and job["metrics_path"] == "/metrics"


def test_k8s_ships_the_dashboard_to_grafanas_sidecar(tmp_path: Path) -> None:
    render(ROOT / "configs" / "quickstart.yaml", tmp_path, "--target", "k8s")
    docs = list(yaml.safe_load_all((tmp_path / "base" / "monitoring.yaml").read_text()))
    (board,) = [d for d in docs if d["kind"] == "ConfigMap"]
    check_object(board)
    assert board["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert board["data"] == {"llmops.json": dashboard()}
    assert (
        "monitoring.yaml"
        in yaml.safe_load((tmp_path / "base/kustomization.yaml").read_text())["resources"]
    )
