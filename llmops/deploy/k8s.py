"""Kubernetes objects of one app: per workload (the app, or one per mesh variant) a ConfigMap
with its config file and a Deployment; one Service, one PersistentVolumeClaim for the data dir,
a ServiceMonitor (Prometheus Operator); when the app may scale out, a one-off ingestion Job
(the pods start with ``--no-ingest``), and for production an HPA and a PodDisruptionBudget.

A single-replica app indexes in its own pod at start (once: it is the only one), exactly as
``llmops up`` does on one machine. Secrets are referenced (secretKeyRef), never written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops.deploy import grafana
from llmops.deploy.app import (
    CONFIG_FILE,
    DATA_DIR,
    METRICS_KEY,
    OFFLINE_ENV,
    REQUEST_LOG_ENV,
    SECRET_ENV,
    DeployedApp,
)
from llmops.deploy.spec import DeploySpec

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Workload:
    """One Deployment: the app, or one variant of its experiment (mesh canary)."""

    deployed: DeployedApp
    variant: str | None = None

    @property
    def name(self) -> str:
        base = self.deployed.name
        return base if self.variant is None else f"{base}-{dns_label(self.variant)}"

    def labels(self) -> dict[str, str]:
        labels = app_labels(self.deployed.name, "server")
        if self.variant is not None:
            labels["llmops.dev/variant"] = dns_label(self.variant)
        return labels


def secrets_name(app: DeployedApp) -> str:
    return f"{app.name}-secrets"  # LLMOPS_KEY_SECRET, LLMOPS_METRICS_KEY, REQUEST_LOG_URL


def env_secret_name(app: DeployedApp) -> str:
    return f"{app.name}-env"  # the variables the config refers to (${NAME}); optional


def config_map(work: Workload) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{work.name}-config", "labels": work.labels()},
        "data": {"app.yaml": work.deployed.config_yaml()},
    }


def container(work: Workload, spec: DeploySpec, scaled: bool) -> Manifest:
    app = work.deployed
    no_ingest = scaled and app.ingests  # the ingestion Job indexes once
    args = (["--no-ingest"] if no_ingest else []) + (["--insecure"] if app.insecure else [])
    probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10}
    return {
        "name": "llmops",
        "image": spec.image,
        "args": args,  # after the image's `llmops up /app/app.yaml --host 0.0.0.0`
        "ports": [{"name": "http", "containerPort": app.port}],
        "env": _env(app),
        "envFrom": [{"secretRef": {"name": env_secret_name(app), "optional": True}}],
        "startupProbe": {**probe, "failureThreshold": 60},  # models load before /health
        "livenessProbe": {**probe, "failureThreshold": 3},
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": "http"},
            "periodSeconds": 5,
            "failureThreshold": 2,
        },
        "resources": {
            "requests": {"cpu": spec.cpu, "memory": spec.memory},
            "limits": {"memory": spec.memory_limit},
        },
        "volumeMounts": _mounts(),
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": False},
    }


def pod_spec(work: Workload, spec: DeploySpec, scaled: bool) -> Manifest:
    grace = work.deployed.http.shutdown_timeout_s + 5  # drain, then close
    return {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "fsGroup": 10001},
        "terminationGracePeriodSeconds": max(30, grace),
        "containers": [container(work, spec, scaled)],
        "volumes": [
            {"name": "config", "configMap": {"name": f"{work.name}-config"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": _data_claim(work.deployed)}},
        ],
    }


def deployment(work: Workload, spec: DeploySpec, scaled: bool) -> Manifest:
    # one replica on a ReadWriteOnce volume: the old pod must let go before the new one starts
    strategy = (
        {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        if scaled
        else {"type": "Recreate"}
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": work.name, "labels": work.labels()},
        "spec": {
            "replicas": 1,  # production's overlay sets its own
            "selector": {"matchLabels": work.labels()},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": work.labels()},
                "spec": pod_spec(work, spec, scaled),
            },
        },
    }


def ingest_job(work: Workload, spec: DeploySpec) -> Manifest:
    """Indexes the sources once into the shared stores (Chroma server, the data volume's
    records and keyword index); re-run it (delete and apply) after the sources change."""
    pod = pod_spec(work, spec, scaled=True)
    main = pod["containers"][0]
    main.update(name="ingest", command=["llmops", "ingest", CONFIG_FILE], args=[])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        main.pop(probe)
    main.pop("ports")
    pod["restartPolicy"] = "OnFailure"
    labels = app_labels(work.deployed.name, "ingest")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": f"{work.deployed.name}-ingest", "labels": labels},
        "spec": {"backoffLimit": 3, "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


def service(app: DeployedApp) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": app.name, "labels": app_labels(app.name, "server")},
        "spec": {
            "selector": app_labels(app.name, "server"),
            "ports": [{"name": "http", "port": app.port, "targetPort": "http"}],
        },
    }


def data_claim(app: DeployedApp, scaled: bool) -> Manifest:
    """The data dir: written by the ingestion (records, keyword index, API keys), read by
    every pod; several pods on several nodes need a ReadWriteMany storage class."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": _data_claim(app), "labels": app_labels(app.name, "data")},
        "spec": {
            "accessModes": ["ReadWriteMany" if scaled else "ReadWriteOnce"],
            "resources": {"requests": {"storage": "10Gi"}},
        },
    }


def service_monitor(app: DeployedApp) -> Manifest:
    endpoint: dict[str, Any] = {"port": "http", "path": "/metrics", "interval": "15s"}
    if not app.insecure:  # /metrics needs an admin-scoped key when keys are on
        secret = {"name": secrets_name(app), "key": METRICS_KEY}
        endpoint["authorization"] = {"type": "Bearer", "credentials": secret}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": app.name, "labels": app_labels(app.name, "server")},
        "spec": {
            "selector": {"matchLabels": app_labels(app.name, "server")},
            "endpoints": [endpoint],
        },
    }


def dashboard_map(app: DeployedApp) -> Manifest:
    """The llmops dashboard for a Grafana whose dashboard sidecar loads labelled ConfigMaps
    (kube-prometheus-stack's does); harmless where none runs."""
    labels = {**app_labels(app.name, "monitoring"), grafana.SIDECAR_LABEL: "1"}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"{app.name}-grafana-dashboard", "labels": labels},
        "data": {"llmops.json": grafana.dashboard()},
    }


def autoscaler(work: Workload, spec: DeploySpec) -> Manifest:
    cpu = {"type": "Utilization", "averageUtilization": 70}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": work.name, "labels": work.labels()},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": work.name},
            "minReplicas": spec.replicas,
            "maxReplicas": spec.most,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": cpu}}],
        },
    }


def disruption_budget(work: Workload) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": work.name, "labels": work.labels()},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": work.labels()}},
    }


def _env(app: DeployedApp) -> list[Manifest]:
    env: list[Manifest] = [{"name": k, "value": v} for k, v in OFFLINE_ENV.items()]
    secret = ([] if app.insecure else [SECRET_ENV]) + (
        [REQUEST_LOG_ENV] if app.request_log_in_postgres else []
    )
    for name in secret:
        ref = {"name": secrets_name(app), "key": name}
        env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return env


def _mounts() -> list[Manifest]:
    return [
        {"name": "config", "mountPath": CONFIG_FILE, "subPath": "app.yaml", "readOnly": True},
        {"name": "data", "mountPath": DATA_DIR},
    ]


def _data_claim(app: DeployedApp) -> str:
    return f"{app.name}-data"


def app_labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "llmops",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": component,
    }


def dns_label(text: str) -> str:
    return text.lower().replace("_", "-").replace(".", "-")
