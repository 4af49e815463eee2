"""llmops deploy render: compose or Kubernetes files for an app config."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer

from llmops.cli.common import ConfigArg, console, errors, run
from llmops.deploy import app as deployed_app
from llmops.deploy.files import as_stream, write
from llmops.deploy.spec import DeploySpec, Mesh
from llmops.deploy.targets import TARGETS

app = typer.Typer(help="Deployment files rendered from an app config.", no_args_is_help=True)


@app.command("render")
def render(
    config: ConfigArg,
    target: str = typer.Option(..., "--target", help="compose | k8s"),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder to write into (default: print every file)."
    ),
    image: str = typer.Option("llmops:latest", "--image", help="The image built from Dockerfile."),
    replicas: int = typer.Option(1, "--replicas", min=1, help="k8s: production's replicas."),
    max_replicas: int | None = typer.Option(
        None, "--max-replicas", min=1, help="k8s: the HPA's maximum (default: --replicas)."
    ),
    mesh: str | None = typer.Option(
        None, "--mesh", help="k8s: split the experiment's variants with istio | gateway-api."
    ),
    gateway: str = typer.Option(
        "llmops-gateway", "--gateway", help="gateway-api: the Gateway the HTTPRoute attaches to."
    ),
    root: Path = typer.Option(
        Path("."), "--root", help="The project folder the image is built from (its /app)."
    ),
) -> None:
    """Render the files that run CONFIG, a RAG app or a model app (kind: model): `compose`
    (the app, Chroma server, Redis, PostgreSQL + MLflow, Prometheus, Grafana with its
    datasource and dashboard provisioned; vLLM / TGI / Ollama profiles) or `k8s` (kustomize
    base and staging / production overlays). More than one replica is refused for a config
    whose state cannot be shared (embedded Chroma, SQLite routing state, per-process limits,
    the request log in SQLite; a model app's prediction log, routing state, retraining loop),
    with the fix for each. Secrets (API-key secret, the request log's PostgreSQL URL) are
    referenced, never written.

    Example: llmops deploy render --target k8s --replicas 3 --max-replicas 10 -o deploy/k8s app.yaml
    """
    render_target = TARGETS.get(target)
    if render_target is None:
        _fail(f"--target must be one of {sorted(TARGETS)}, got '{target}'", 2)
    if mesh is not None and mesh not in ("istio", "gateway-api"):
        _fail(f"--mesh must be istio or gateway-api, got '{mesh}'", 2)
    try:
        spec = DeploySpec(image, replicas, max_replicas, _mesh(mesh), gateway)
    except ValueError as exc:
        _fail(str(exc), 2)
    deployed = run(lambda: deployed_app.load(config, root))
    where = out or Path(".")
    try:
        files = run(lambda: render_target(deployed, spec, root, where))
    except ValueError as exc:
        _fail(str(exc), 1)
    if out is None:
        typer.echo(as_stream(files), nl=False)
    else:
        for path in write(files, out):
            console.print(f"wrote {path}", highlight=False)
    for note in deployed.notes:
        errors.print(f"note: {note}", markup=False, highlight=False)


def _mesh(name: str | None) -> Mesh | None:
    return None if name is None else ("istio" if name == "istio" else "gateway-api")


def _fail(message: str, code: int) -> NoReturn:
    errors.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)
