"""The scale-out guard (one rule, `llmops.deploy.scale`) and the mesh canary's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llmops.cli.main import app
from llmops.config import load_app_config
from llmops.deploy import scale
from tests.deploy.conftest import ROOT


def invoke(config: Path, out: Path, *options: str) -> Any:
    args = ["deploy", "render", "--target", "k8s", *options, "-o", str(out), "--root", str(ROOT)]
    return CliRunner().invoke(app, [*args, str(config)])


def test_embedded_chroma_and_sqlite_log_refuse_replicas(tmp_path: Path) -> None:
    result = invoke(ROOT / "configs" / "quickstart.yaml", tmp_path, "--max-replicas", "2")
    assert result.exit_code == 1
    assert "embedded Chroma" in result.output and "store: {type: chroma, host:" in result.output
    assert "monitoring.request_log.enabled: false" in result.output
    assert not (tmp_path / "base").exists()  # nothing half-written


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
