"""A mesh canary: the experiment's variants as separate Deployments, with the traffic split
done by the mesh instead of the app's router. Each variant's pods run the app with that
variant's settings and no ``experiment:`` (so nothing is split twice); they share the index.

The split is per request and fixed at the rendered weights: a canary starts at its first
stage and is ramped by editing the weights (or by Flagger / Argo Rollouts driving them); the
app's own router is the one that keeps users sticky and rolls back on errors by itself.
"""

from __future__ import annotations

from typing import Any, Protocol

from llmops.config.experiment import ExperimentConfig, normalised_weights
from llmops.deploy.app import DeployedApp
from llmops.deploy.k8s import Manifest, Workload, app_labels, dns_label
from llmops.deploy.spec import DeploySpec


def shares(experiment: ExperimentConfig) -> dict[str, int]:
    """Each variant's percentage of requests (integers summing to 100): a weighted split as
    configured, a canary at its first stage. Thompson and shadow need the app's router."""
    names = list(experiment.variants)
    if experiment.strategy == "weighted":
        weights = normalised_weights(experiment.weights or {n: 1.0 for n in names})
    elif experiment.strategy == "canary" and experiment.canary is not None:
        first = experiment.canary.stages[0]
        weights = {n: first if n == experiment.canary.variant else 1 - first for n in names}
    else:
        raise ValueError(
            f"strategy '{experiment.strategy}' cannot be a mesh split: it learns from feedback "
            "(thompson) or copies requests (shadow) inside the app; render without --mesh"
        )
    return _percentages(weights)


def variant_app(deployed: DeployedApp, variant: str) -> DeployedApp:
    """The app as ``variant`` configures it, without the experiment."""
    rag = deployed.rag
    assert rag is not None and rag.experiment is not None
    experiment = rag.experiment
    settings = experiment.variants[variant]
    update: dict[str, Any] = {
        "experiment": None,
        "retrieval": settings.retrieval_for(rag.retrieval),
    }
    for key in ("prompt", "generator", "fallbacks"):
        if getattr(settings, key) is not None:
            update[key] = getattr(settings, key)
    app = rag.model_copy(update=update)

    def apply(raw: dict[str, Any]) -> None:
        variant_raw = raw["experiment"]["variants"][variant] or {}
        raw.pop("experiment")
        for key, value in variant_raw.items():
            if key == "retrieval":
                raw["retrieval"] = {**(raw.get("retrieval") or {}), **value}
            else:
                raw[key] = value

    changed = deployed.with_raw(apply)
    return DeployedApp(app, changed.raw, changed.notes)


class MeshRouting(Protocol):
    """Objects that split the Service's traffic among the variants' Deployments."""

    def objects(
        self, app: DeployedApp, split: list[tuple[Workload, int]], spec: DeploySpec
    ) -> list[Manifest]: ...


class IstioRouting:
    """A DestinationRule with one subset per variant (by its pod label) and a VirtualService
    sending each subset its weight."""

    def objects(
        self, app: DeployedApp, split: list[tuple[Workload, int]], spec: DeploySpec
    ) -> list[Manifest]:
        subsets = [
            {
                "name": dns_label(w.variant or ""),
                "labels": {"llmops.dev/variant": dns_label(w.variant or "")},
            }
            for w, _ in split
        ]
        routes = [
            {
                "destination": {
                    "host": app.name,
                    "subset": dns_label(w.variant or ""),
                    "port": {"number": app.port},
                },
                "weight": weight,
            }
            for w, weight in split
        ]
        metadata = {"name": app.name, "labels": app_labels(app.name, "server")}
        return [
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "DestinationRule",
                "metadata": metadata,
                "spec": {"host": app.name, "subsets": subsets},
            },
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": metadata,
                "spec": {"hosts": [app.name], "http": [{"route": routes}]},
            },
        ]


class GatewayApiRouting:
    """One Service per variant and an HTTPRoute on the Gateway weighting them."""

    def objects(
        self, app: DeployedApp, split: list[tuple[Workload, int]], spec: DeploySpec
    ) -> list[Manifest]:
        services = [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": w.name, "labels": w.labels()},
                "spec": {
                    "selector": w.labels(),
                    "ports": [{"name": "http", "port": app.port, "targetPort": "http"}],
                },
            }
            for w, _ in split
        ]
        backends = [{"name": w.name, "port": app.port, "weight": weight} for w, weight in split]
        route = {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": app.name, "labels": app_labels(app.name, "server")},
            "spec": {
                "parentRefs": [{"name": spec.gateway}],
                "rules": [{"backendRefs": backends}],
            },
        }
        return [*services, route]


MESHES: dict[str, MeshRouting] = {"istio": IstioRouting(), "gateway-api": GatewayApiRouting()}


def _percentages(weights: dict[str, float]) -> dict[str, int]:
    """Whole percentages summing to 100 (largest remainder)."""
    exact = {name: w * 100 for name, w in weights.items()}
    whole = {name: int(v) for name, v in exact.items()}
    by_remainder = sorted(exact, key=lambda n: exact[n] - whole[n], reverse=True)
    for name in by_remainder[: 100 - sum(whole.values())]:
        whole[name] += 1
    return whole
