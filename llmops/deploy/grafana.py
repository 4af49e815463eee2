"""Grafana's side of a deployment: the llmops dashboard (shipped in the package), and the
provisioning files that load it and the Prometheus datasource (compose), or the ConfigMap a
Grafana dashboard sidecar picks up (Kubernetes)."""

from __future__ import annotations

from importlib import resources
from typing import Any

DASHBOARDS_DIR = "/etc/grafana/provisioning/dashboards"  # the provider's folder (compose)
SIDECAR_LABEL = "grafana_dashboard"  # kube-prometheus-stack's Grafana sidecar looks for it


def dashboard() -> str:
    """The llmops dashboard of a RAG app (requests, latency percentiles by route and variant,
    errors, refusals, tokens, drift, experiments); ``deploy/grafana-dashboard.json`` is a
    copy for a Grafana set up by hand."""
    return (resources.files("llmops.deploy") / "dashboards" / "llmops.json").read_text("utf-8")


def datasource(url: str) -> dict[str, Any]:
    """The provisioned Prometheus datasource, the dashboard's default."""
    source = {"name": "Prometheus", "type": "prometheus", "uid": "prometheus", "access": "proxy",
              "url": url, "isDefault": True}  # fmt: skip
    return {"apiVersion": 1, "datasources": [source]}


def provider() -> dict[str, Any]:
    """A file provider loading the dashboards in ``DASHBOARDS_DIR`` (mounted read-only)."""
    settings = {"name": "llmops", "folder": "llmops", "type": "file",
                "allowUiUpdates": False, "options": {"path": DASHBOARDS_DIR}}  # fmt: skip
    return {"apiVersion": 1, "providers": [settings]}
