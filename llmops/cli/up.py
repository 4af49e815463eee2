"""llmops up"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import typer

from llmops.cli.common import (
    DEFAULT_CONFIG,
    ConfigArg,
    ProgressLines,
    console,
    errors,
    progress_interval,
    run,
)
from llmops.cli.ingest import ProgressLine, print_report
from llmops.config import config_kind
from llmops.config.auth import BIND_HOST_ENV, AuthConfig, is_loopback
from llmops.config.schema import AppConfig
from llmops.cpus import usable_cores
from llmops.deploy import scale
from llmops.pipelines.ingest import IngestReport
from llmops.service import RAG

if TYPE_CHECKING:  # the server (FastAPI, uvicorn) is imported when `up` runs, not at CLI start
    import uvicorn

    from llmops.server.app import FirstIngestion

BACKLOG = 2048


def up(
    config: ConfigArg = DEFAULT_CONFIG,
    no_ingest: bool = typer.Option(False, "--no-ingest", help="Serve the index as it is."),
    host: str | None = typer.Option(None, help="Bind address (default: server.host)."),
    port: int | None = typer.Option(None, help="Port (default: server.port)."),
    workers: int | None = typer.Option(
        None,
        min=1,
        max=64,
        help="Worker processes (default: server.workers). Each loads its own models; use about "
        "one per CPU core when requests spend their time in this server rather than the LLM. "
        "Refused (exit 2) while the config keeps per-process state (server.auth limits with "
        "limiter: memory).",
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Serve a non-loopback address without API keys."
    ),
) -> None:
    """Validate the config, serve the HTTP API, and bring the index up to date meanwhile.

    The port is taken first (a busy port is an error at once); the server answers /health as
    soon as the models are loaded, and /ready says "indexing n/m files" until the index can
    answer. Ingestion only processes new, changed and removed files, so a restart is quick.
    Stop with Ctrl-C: a running ingestion stops after its batch and resumes next time.

    A model app (kind: model) is served the same way: POST /predict/{name} answers with the
    registered version its serving alias points at, and follows the alias.

    Example: llmops up configs/quickstart.yaml --port 8080 --workers 2
    """
    if run(lambda: config_kind(config)) == "model":
        _serve_model_app(config, host, port, insecure)
        return
    rag = run(lambda: RAG.from_config(config))
    console.print(f"[green]config ok[/green]  {config}  (app '{rag.config.name}')")
    host = host or rag.config.server.host
    check_exposure(rag.config.server.auth, host, insecure)
    port = port or rag.config.server.port
    workers = workers or rag.config.server.workers
    check_workers(rag.config, workers)
    sock = _listen(host, port)
    _print_welcome(f"http://{host}:{port}", workers, indexing=not no_ingest)
    if workers == 1:
        _serve(rag, sock, None if no_ingest else _report_first_ingestion())
        return
    if not no_ingest and not _index_while_serving(rag, sock, workers):
        return
    _hand_over(config, rag.components.data_dir, workers)
    _serve_workers(sock, workers, rag.config.server.shutdown_timeout_s)


def check_exposure(auth: AuthConfig, host: str, insecure: bool) -> None:
    """Refuse to serve a non-loopback address without API keys unless ``--insecure``; with
    keys on, check the server secret now. Every worker learns the address (``enabled: auto``)."""
    from llmops.access.keys import server_secret

    os.environ[BIND_HOST_ENV] = host
    if auth.active(host):
        run(server_secret)
        return
    if is_loopback(host):
        return
    if insecure:
        errors.print(f"warning: serving {host} without API keys (--insecure)", markup=False)
        return
    errors.print(
        f"error: refusing to serve {host} without API keys: anyone who can reach it could query, "
        "ingest and read the index. Turn keys on (server.auth.enabled: auto or true; set "
        "LLMOPS_KEY_SECRET; `llmops keys create CONFIG --scopes query`), listen on 127.0.0.1, "
        "or pass --insecure on a network you trust.",
        markup=False,
        highlight=False,
    )
    raise typer.Exit(1)


def check_workers(config: AppConfig, workers: int) -> None:
    """Refuse several worker processes for a config whose state one process keeps to itself
    (the rule ``llmops deploy render`` applies to replicas: ``llmops.deploy.scale``), exit 2,
    before anything loads."""
    if workers == 1:
        return
    found = scale.problems(config, scale.Scope.HOST)
    if found:
        message = scale.refusal(config.name, workers, scale.Scope.HOST, found)
        errors.print(f"error: {message}", markup=False, highlight=False)
        raise typer.Exit(2)


def _serve_model_app(config: Path, host: str | None, port: int | None, insecure: bool) -> None:
    import uvicorn

    from llmops.model_service import ModelService
    from llmops.server.model_app import create_model_app

    service = run(lambda: ModelService.from_config(config))
    serving = service.app.serving
    console.print(f"[green]config ok[/green]  {config}  (model app '{service.name}')")
    check_exposure(serving.auth, host or serving.host, insecure)
    sock = _listen(host or serving.host, port or serving.port)
    url = f"http://{host or serving.host}:{port or serving.port}"
    console.print(
        f"\nserving [bold]{url}/predict/{service.name}[/bold] with the version aliased "
        f"'{service.alias}'  (API docs: {url}/docs)\n"
    )
    settings = uvicorn.Config(
        create_model_app(service, freeze_heap=True),
        log_level="info",
        timeout_graceful_shutdown=serving.shutdown_timeout_s,
    )
    _run_draining(uvicorn.Server(settings), sock)


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before any model loads: a busy port is reported at once."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = (exc.strerror or str(exc)).lower()
        errors.print(
            f"error: cannot listen on {host}:{port}: {why}. Is another server running there? "
            "Choose another port with --port (or server.port).",
            markup=False,
            highlight=False,
        )
        raise typer.Exit(1) from None
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def _report_first_ingestion(then: Callable[[bool], None] | None = None) -> FirstIngestion:
    """The first ingestion's reporting: a progress line at a steady interval, then its summary
    (or why it failed); ``then(succeeded)`` is called last."""
    from llmops.server.app import FirstIngestion

    line = ProgressLine()
    printer = ProgressLines(line.__str__, progress_interval()).start()

    def finished(report: IngestReport | None, error: str | None) -> None:
        printer.stop()
        if report is not None:
            print_report(report)
        else:
            errors.print(f"error: ingestion failed: {error}", markup=False, highlight=False)
        if then is not None:
            then(report is not None)

    return FirstIngestion(progress=line, finished=finished)


def _server(rag: RAG, workers: int, first_ingestion: FirstIngestion | None) -> uvicorn.Server:
    """A uvicorn server of ``rag``'s app (run it with the socket)."""
    import uvicorn

    from llmops.server import create_app

    app = create_app(rag, workers=workers, first_ingestion=first_ingestion, freeze_heap=True)
    drain_s = rag.config.server.shutdown_timeout_s
    return uvicorn.Server(uvicorn.Config(app, log_level="info", timeout_graceful_shutdown=drain_s))


def _serve(rag: RAG, sock: socket.socket, first_ingestion: FirstIngestion | None) -> None:
    _run_draining(_server(rag, 1, first_ingestion), sock)


def _run_draining(server: uvicorn.Server, sock: socket.socket) -> None:
    """Serve until SIGTERM or Ctrl-C, then drain: uvicorn stops accepting, lets the requests in
    flight finish (up to ``timeout_graceful_shutdown``) and runs the app's shutdown (the request
    log is written out). uvicorn then raises the signal again so that the default action ends
    the process; a drained stop is a clean one, so that signal ends it with status 0 instead."""
    previous = signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _index_while_serving(rag: RAG, sock: socket.socket, workers: int) -> bool:
    """With several workers: this process serves (health, readiness, queries once the index
    answers) while the first ingestion runs, then stops so the workers can take over the same
    socket. False when the ingestion failed or the server was stopped."""
    outcome: list[bool] = []

    def done(succeeded: bool) -> None:
        outcome.append(succeeded)
        server.should_exit = True

    server = _server(rag, workers, _report_first_ingestion(done))
    _run_draining(server, sock.dup())  # uvicorn closes the socket it is given: the workers' stays
    return outcome == [True]


def _serve_workers(sock: socket.socket, workers: int, drain_s: int) -> None:
    """uvicorn's supervisor: on SIGTERM it passes the signal to each worker, each drains as
    one server does (see ``_run_draining``), and the supervisor waits for them and exits 0."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def terminate_all(self) -> None:
            # the workers close their copies of the listening socket as they drain; were this
            # one left open, new connections would be accepted into its backlog, then reset
            for listening in self.sockets:
                listening.close()
            super().terminate_all()

    settings = uvicorn.Config(
        "llmops.server.worker:app",
        factory=True,
        workers=workers,
        log_level="info",
        timeout_graceful_shutdown=drain_s,
    )
    Supervisor(settings, sockets=[sock]).run()


def _print_welcome(url: str, workers: int, indexing: bool) -> None:
    processes = f"  ({workers} worker processes)" if workers > 1 else ""
    console.print(f"\nserving [bold]{url}[/bold]  (API docs: {url}/docs){processes}")
    if indexing:
        console.print(f"indexing in the background: {url}/ready answers 200 once the index is up")
    console.print(
        f"try:  curl -X POST {url}/query -H 'content-type: application/json' "
        """-d '{"question": "How do I add PDF files?"}'\n""",
        markup=False,
        highlight=False,
    )


def _hand_over(config: Path, data_dir: Path, workers: int) -> None:
    """What the worker processes read from their environment (see llmops.server.worker)."""
    from llmops.monitoring.metrics import prepare_multiprocess_dir
    from llmops.server.worker import CONFIG_ENV, WORKERS_ENV

    os.environ[CONFIG_ENV] = str(config.resolve())
    os.environ[WORKERS_ENV] = str(workers)
    # Each worker's torch would otherwise start one thread per core, and they would fight.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // workers)))
    # prometheus-client multiprocess mode: every worker writes its samples there and a scrape
    # of any worker adds them up
    prepare_multiprocess_dir(data_dir / "prometheus")
