"""``--target compose``: the app beside the services it uses, on one machine.

Always: the app (built from the project's Dockerfile), PostgreSQL + an MLflow tracking server
on it, Prometheus scraping the app's /metrics, Grafana reading Prometheus. When the config
uses them: a Chroma server (store in client/server mode) and Redis (experiment state, rate
limits); the container's config is pointed at them by their service names. LLM servers are
opt-in ``profiles``: ``docker compose --profile vllm up``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmops.deploy.app import (
    CONFIG_FILE,
    DATA_DIR,
    OFFLINE_ENV,
    REQUEST_LOG_ENV,
    SECRET_ENV,
    DeployedApp,
)
from llmops.deploy.files import Files, to_yaml
from llmops.deploy.grafana import DASHBOARDS_DIR, dashboard, datasource, provider
from llmops.deploy.spec import DeploySpec

# Pinned images; move them together with what you test against.
IMAGES = {
    "chroma": "chromadb/chroma:1.5.9",  # the chromadb client's version (pyproject: chromadb)
    "redis": "redis:7.4-alpine",
    "postgres": "postgres:16-alpine",
    "mlflow": "ghcr.io/mlflow/mlflow:v3.17.2",
    "prometheus": "prom/prometheus:v3.5.0",
    "grafana": "grafana/grafana:12.1.0",
    "vllm": "vllm/vllm-openai:v0.11.0",
    "tgi": "ghcr.io/huggingface/text-generation-inference:3.3.6",
    "ollama": "ollama/ollama:0.12.3",
}
CHROMA = ("chroma", 8000)
REDIS_URL = "redis://redis:6379/0"
MLFLOW_URL = "http://mlflow:5000"
PROMETHEUS_URL = "http://prometheus:9090"
HEADER = "# Rendered by `llmops deploy render --target compose`; edit the app config, not this.\n"


def render(deployed: DeployedApp, spec: DeploySpec, root: Path, out: Path) -> Files:
    """docker-compose.yaml, the container's app.yaml, prometheus.yml and Grafana's provisioning
    (the Prometheus datasource, the llmops dashboard);
    ``root`` (the project, the image's build context) is referred to relative to ``out``."""
    app = for_compose(deployed)
    services: dict[str, Any] = {"llmops": app_service(app, spec, _relative(root, out))}
    services.update(state_services(app))
    services.update(observability_services(app))
    services.update(llm_profiles())
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    compose = {
        "name": app.name,
        "services": services,
        "volumes": {name: {} for name in sorted(used) if not name.startswith(".")},
    }
    if not app.insecure:
        compose["secrets"] = {"metrics-key": {"file": "./secrets/metrics-key"}}
    files = {
        "docker-compose.yaml": to_yaml(compose, header=HEADER),
        "app.yaml": HEADER + app.config_yaml(),
        "prometheus.yml": to_yaml(prometheus_config(app), header=HEADER),
        "grafana/datasources/prometheus.yaml": to_yaml(datasource(PROMETHEUS_URL), header=HEADER),
        "grafana/dashboards/provider.yaml": to_yaml(provider(), header=HEADER),
    }
    if app.rag is not None:  # the dashboard charts the RAG app's metrics
        files["grafana/dashboards/llmops.json"] = dashboard()
    return files


def for_compose(deployed: DeployedApp) -> DeployedApp:
    """The container config pointed at the compose services (Chroma, Redis) it uses."""

    def point(raw: dict[str, Any]) -> None:
        if deployed.chroma_server is not None:
            raw["store"].update(host=CHROMA[0], port=CHROMA[1])
        experiment = raw.get("experiment") or {}
        if experiment.get("redis_url"):
            experiment["redis_url"] = REDIS_URL
        auth = (raw.get("server") or {}).get("auth") or {}
        if auth.get("redis_url"):
            auth["redis_url"] = REDIS_URL

    return deployed.with_raw(point)


def app_service(app: DeployedApp, spec: DeploySpec, context: str) -> dict[str, Any]:
    environment: dict[str, str] = {**OFFLINE_ENV, "MLFLOW_TRACKING_URI": MLFLOW_URL}
    environment[SECRET_ENV] = f"${{{SECRET_ENV}:?set {SECRET_ENV} (see docs/security.md)}}"
    if app.request_log_in_postgres:
        environment[REQUEST_LOG_ENV] = (
            f"${{{REQUEST_LOG_ENV}:?set {REQUEST_LOG_ENV}=postgresql://...@postgres:5432/llmops}}"
        )
    for name in app.env_names:
        environment.setdefault(name, f"${{{name}:-}}")
    depends = ["mlflow"] + ([CHROMA[0]] if app.chroma_server else [])
    depends += ["redis"] if app.uses_redis else []
    service: dict[str, Any] = {
        "build": {"context": context, "dockerfile": "Dockerfile"},
        "image": spec.image,
        "ports": [f"{app.port}:{app.port}"],
        "environment": environment,
        "volumes": [f"./app.yaml:{CONFIG_FILE}:ro", f"llmops-data:{DATA_DIR}"],
        "depends_on": {name: {"condition": "service_started"} for name in depends},
        "restart": "unless-stopped",
        "stop_grace_period": f"{app.http.shutdown_timeout_s + 5}s",
    }
    if app.insecure:
        service["command"] = ["--insecure"]  # appended to the image's `llmops up ...`
    return service


def state_services(app: DeployedApp) -> dict[str, Any]:
    password = "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    services: dict[str, Any] = {
        "postgres": {
            "image": IMAGES["postgres"],
            "environment": {
                "POSTGRES_USER": "mlflow",
                "POSTGRES_DB": "mlflow",
                "POSTGRES_PASSWORD": password,
            },
            "volumes": ["postgres-data:/var/lib/postgresql/data"],
            "healthcheck": {
                "test": ["CMD-SHELL", "pg_isready -U mlflow -d mlflow"],
                "interval": "5s",
                "retries": 10,
            },
        },
        "mlflow": {
            "image": IMAGES["mlflow"],
            # the official image has no PostgreSQL driver
            "command": [
                "sh",
                "-c",
                "pip install --quiet psycopg2-binary && exec mlflow server --host 0.0.0.0 "
                "--port 5000 --backend-store-uri "
                "postgresql://mlflow:$${POSTGRES_PASSWORD}@postgres:5432/mlflow "
                "--artifacts-destination /mlartifacts",
            ],
            "environment": {"POSTGRES_PASSWORD": password, "MLFLOW_DISABLE_TELEMETRY": "true"},
            "ports": ["5000:5000"],
            "volumes": ["mlflow-artifacts:/mlartifacts"],
            "depends_on": {"postgres": {"condition": "service_healthy"}},
        },
    }
    if app.chroma_server:
        services["chroma"] = {
            "image": IMAGES["chroma"],
            "environment": {"ANONYMIZED_TELEMETRY": "False"},
            "volumes": ["chroma-data:/data"],
        }
    if app.uses_redis:
        services["redis"] = {"image": IMAGES["redis"], "command": ["redis-server", "--save", ""]}
    return services


def observability_services(app: DeployedApp) -> dict[str, Any]:
    prometheus: dict[str, Any] = {
        "image": IMAGES["prometheus"],
        "volumes": [
            "./prometheus.yml:/etc/prometheus/prometheus.yml:ro",
            "prometheus-data:/prometheus",
        ],
        "ports": ["9090:9090"],
        "depends_on": ["llmops"],
    }
    if not app.insecure:
        prometheus["secrets"] = [{"source": "metrics-key", "target": "/run/secrets/metrics-key"}]
    grafana = {
        "image": IMAGES["grafana"],
        "ports": ["3000:3000"],
        "environment": {"GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD:?set it}"},
        "volumes": [
            "./grafana/datasources:/etc/grafana/provisioning/datasources:ro",
            f"./grafana/dashboards:{DASHBOARDS_DIR}:ro",
        ],
        "depends_on": ["prometheus"],
    }
    return {"prometheus": prometheus, "grafana": grafana}


def llm_profiles() -> dict[str, Any]:
    """LLM servers, each behind its profile; point a generator's base_url at the service."""
    gpu = {"resources": {"reservations": {"devices": [{"driver": "nvidia", "count": 1,
                                                          "capabilities": ["gpu"]}]}}}  # fmt: skip
    return {
        "vllm": {
            "image": IMAGES["vllm"],
            "profiles": ["vllm"],
            "command": ["--model", "${VLLM_MODEL:-Qwen/Qwen2.5-7B-Instruct-AWQ}", "--port", "8001"],
            "ports": ["8001:8001"],
            "deploy": gpu,
        },
        "tgi": {
            "image": IMAGES["tgi"],
            "profiles": ["tgi"],
            "command": ["--model-id", "${TGI_MODEL:-Qwen/Qwen2.5-7B-Instruct}", "--port", "8002"],
            "ports": ["8002:8002"],
            "deploy": gpu,
        },
        "ollama": {
            "image": IMAGES["ollama"],
            "profiles": ["ollama"],
            "ports": ["11434:11434"],
            "volumes": ["ollama-data:/root/.ollama"],
        },
    }


def prometheus_config(app: DeployedApp) -> dict[str, Any]:
    job: dict[str, Any] = {
        "job_name": app.name,
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [f"llmops:{app.port}"], "labels": {"app": app.name}}],
    }
    if not app.insecure:  # /metrics needs an admin-scoped key when keys are on
        job["authorization"] = {"type": "Bearer", "credentials_file": "/run/secrets/metrics-key"}
    return {"global": {"scrape_interval": "15s"}, "scrape_configs": [job]}


def _relative(root: Path, out: Path) -> str:
    import os

    return os.path.relpath(root.resolve(), out.resolve())
