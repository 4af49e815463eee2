"""deploy/: the Prometheus scrape config and the Grafana dashboard are well-formed, and every
metric the dashboard queries is one the app exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from llmops.monitoring.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported_names() -> set[str]:
    names = set()
    for family in Metrics("app").registry.collect():
        names.update(family.name + s for s in SUFFIXES[family.type])
    return names


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return data


def test_prometheus_scrapes_the_metrics_route() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "llmops"]
    assert job["metrics_path"] == "/metrics"
    assert all(re.fullmatch(r"[\w.-]+:\d+", t) for t in job["static_configs"][0]["targets"])


def test_dashboard_structure() -> None:
    data = dashboard()
    assert {"uid", "title", "panels", "templating", "schemaVersion", "time"} <= set(data)
    assert isinstance(data["schemaVersion"], int) and data["schemaVersion"] >= 36
    panels = data["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not mine & cells, f"panel '{panel['title']}' overlaps another"
        cells |= mine
        if panel["type"] != "row":
            assert panel["type"] in {"timeseries", "stat", "gauge", "table", "bargauge"}
            assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])


def test_dashboard_queries_only_exported_metrics_and_defined_variables() -> None:
    data = dashboard()
    exported = exported_names()
    variables = {v["name"] for v in data["templating"]["list"]} | {"__rate_interval"}
    exprs = [t["expr"] for p in data["panels"] if p["type"] != "row" for t in p["targets"]]
    exprs += [v["query"]["query"] for v in data["templating"]["list"] if v["type"] == "query"]
    used = set()
    for expr in exprs:
        used |= set(re.findall(r"\bllmops_[a-z_]+", expr))
        assert set(re.findall(r"\$\{?(\w+)", expr)) <= variables, expr
    assert used and used <= exported, f"unknown metrics: {used - exported}"
    for needed in ("llmops_http_request_duration_seconds_bucket", "llmops_drift_detected",
                   "llmops_errors_total", "llmops_queries_total"):  # fmt: skip
        assert needed in used
    titles = " ".join(p["title"].lower() for p in data["panels"])
    for topic in ("requests", "latency percentiles", "errors", "by variant", "drift"):
        assert topic in titles, topic
