"""The scale-out guard (one rule, `llmops.deploy.scale`) and the mesh canary's weights."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.cli.up import check_workers
from llmops.config import load_app_config
from llmops.deploy import scale
from tests.conftest import HASHING
from tests.deploy.conftest import ROOT


def invoke(config: Path, out: Path, *options: str) -> Any:
    args = ["deploy", "render", "--target", "k8s", *options, "-o", str(out), "--root", str(ROOT)]
    return CliRunner().invoke(app, [*args, str(config)])


def test_embedded_chroma_and_sqlite_log_refuse_replicas(tmp_path: Path) -> None:
    result = invoke(ROOT / "configs" / "quickstart.yaml", tmp_path, "--max-replicas", "2")
    assert result.exit_code == 1
    assert "embedded Chroma" in result.output and "store: {type: chroma, host:" in result.output
    assert "monitoring.request_log.url: ${REQUEST_LOG_URL}" in result.output
    assert "monitoring.request_log.enabled: false" in result.output
    assert not (tmp_path / "base").exists()  # nothing half-written


def test_a_request_log_in_postgresql_is_shared_by_replicas() -> None:
    quickstart = load_app_config(ROOT / "configs" / "quickstart.yaml").app
    assert scale.sqlite_request_log(quickstart) is not None
    shared = quickstart.model_copy(deep=True)
    shared.monitoring.request_log.url = "postgresql://llmops@postgres:5432/llmops"
    assert scale.sqlite_request_log(shared) is None
    (left,) = scale.problems(shared, scale.Scope.CLUSTER)  # the embedded Chroma is still there
    assert "embedded Chroma" in left.what


def test_each_shared_state_has_its_fix(scalable: Any) -> None:
    app_config = load_app_config(scalable("ab-test.yaml")).app
    assert [p.fix.split(":")[0] for p in scale.problems(app_config, scale.Scope.CLUSTER)] == [
        "share them through Redis"
    ]
    limited = app_config.model_copy(deep=True)
    limited.server.auth.limits.requests_per_minute = 60
    limited.experiment = None
    (problem,) = scale.problems(limited, scale.Scope.CLUSTER)
    assert "limiter: redis" in problem.fix
    # one machine: SQLite and the embedded Chroma are shared by the worker processes
    quickstart = load_app_config(ROOT / "configs" / "quickstart.yaml").app
    assert scale.problems(quickstart, scale.Scope.HOST) == []
    assert len(scale.problems(quickstart, scale.Scope.CLUSTER)) == 2


def test_istio_canary_weights_and_variant_configs(scalable: Any, tmp_path: Path) -> None:
    result = invoke(scalable("canary.yaml"), tmp_path, "--mesh", "istio")
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all((tmp_path / "base" / "mesh.yaml").read_text()))
    rule, service = docs
    assert rule["kind"] == "DestinationRule" and service["kind"] == "VirtualService"
    subsets = {s["name"]: s["labels"]["llmops.dev/variant"] for s in rule["spec"]["subsets"]}
    assert subsets == {"stable": "stable", "next": "next"}
    routes = service["spec"]["http"][0]["route"]
    weights = {r["destination"]["subset"]: r["weight"] for r in routes}
    assert weights == {"stable": 95, "next": 5}  # the canary's first stage
    assert {r["destination"]["host"] for r in routes} == {"guide-canary"}
    app_docs = list(yaml.safe_load_all((tmp_path / "base" / "app.yaml").read_text()))
    deployments = {d["metadata"]["name"]: d for d in app_docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"guide-canary-stable", "guide-canary-next"}
    labels = deployments["guide-canary-next"]["spec"]["template"]["metadata"]["labels"]
    assert labels["llmops.dev/variant"] == "next"
    maps = {d["metadata"]["name"]: yaml.safe_load(d["data"]["app.yaml"]) for d in app_docs
            if d["kind"] == "ConfigMap"}  # fmt: skip
    nxt = maps["guide-canary-next-config"]
    assert "experiment" not in nxt and nxt["generator"]["type"] == "vllm"
    assert maps["guide-canary-stable-config"]["generator"]["type"] == "extractive"


def test_gateway_api_weighted_split(scalable: Any, tmp_path: Path) -> None:
    config = scalable("ab-test.yaml")
    raw = yaml.safe_load(config.read_text())
    raw["experiment"]["weights"] = {"control": 2, "wide": 98}  # percentages
    config.write_text(yaml.safe_dump(raw))
    result = invoke(config, tmp_path, "--mesh", "gateway-api", "--gateway", "edge")
    assert result.exit_code == 0, result.output
    docs = list(yaml.safe_load_all((tmp_path / "base" / "mesh.yaml").read_text()))
    route = docs[-1]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1" and route["kind"] == "HTTPRoute"
    assert route["spec"]["parentRefs"] == [{"name": "edge"}]
    backends = {b["name"]: b["weight"] for b in route["spec"]["rules"][0]["backendRefs"]}
    assert backends == {"abtest-control": 2, "abtest-wide": 98}
    services = {d["metadata"]["name"]: d["spec"]["selector"] for d in docs[:-1]}
    assert services["abtest-wide"]["llmops.dev/variant"] == "wide"
    app_docs = yaml.safe_load_all((tmp_path / "base" / "app.yaml").read_text())
    wide = next(d for d in app_docs if d["metadata"]["name"] == "abtest-wide-config")
    assert yaml.safe_load(wide["data"]["app.yaml"])["retrieval"]["top_k"] == 8


def test_mesh_needs_a_splittable_experiment(scalable: Any, tmp_path: Path) -> None:
    result = invoke(scalable("quickstart.yaml"), tmp_path, "--mesh", "istio")
    assert result.exit_code == 1 and "has none" in result.output
    shadow = invoke(scalable("shadow.yaml"), tmp_path, "--mesh", "istio")
    assert shadow.exit_code == 1 and "render without --mesh" in shadow.output


@pytest.mark.parametrize(
    "weights", [{"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, {"a": 0.125, "b": 0.875}]
)
def test_percentages_sum_to_100(weights: dict[str, float]) -> None:
    from llmops.deploy.mesh import _percentages

    shares = _percentages(weights)
    assert sum(shares.values()) == 100 and set(shares) == set(weights)
    assert all(abs(shares[n] - weights[n] * 100) < 1 for n in weights)


def test_up_refuses_workers_with_per_process_limits(write_config: Any, tmp_path: Path) -> None:
    """`llmops up --workers N` runs the renderer's rule for one machine: the memory limiter
    would give each worker the whole budget. Refused (exit 2) before the port or a model."""
    limits = {"limits": {"requests_per_minute": 60, "tokens_per_day": 1000}}
    config = write_config(embedder=HASHING, server={"auth": limits})
    with socket.socket() as busy:  # were the port taken first, this would be the error
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for args in (["--workers", "3"], []):
            if not args:  # the same from the config
                raw = yaml.safe_load(config.read_text())
                raw["server"]["workers"] = 3
                config.write_text(yaml.safe_dump(raw))
            result = CliRunner().invoke(app, ["up", str(config), "--port", port, *args])
            assert result.exit_code == 2, result.output
            assert "refusing 3 worker processes on one machine for app 'testapp'" in result.output
            assert "server.auth.limiter: redis" in result.output
            assert "run one worker (--workers 1" in result.output
            assert "cannot listen" not in result.output
    assert not (tmp_path / "data").exists()  # nothing was opened


def test_workers_allowed_when_nothing_is_per_process(write_config: Any) -> None:
    shared = {"limiter": "redis", "redis_url": "redis://127.0.0.1:6379/0",
              "limits": {"requests_per_minute": 60}}  # fmt: skip
    for auth in ({}, {"limits": {"requests_per_minute": 60}}, shared):
        config = load_app_config(write_config(embedder=HASHING, server={"auth": auth})).app
        check_workers(config, 1)  # one process: nothing to share
        if auth is not shared and auth:
            with pytest.raises(typer.Exit):
                check_workers(config, 2)
        else:
            check_workers(config, 2)
