"""llmops up"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from llmops.cli.common import DEFAULT_CONFIG, ConfigArg, console, run
from llmops.cli.ingest import ingest_with_progress
from llmops.service import RAG


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
        "one per CPU core when requests spend their time in this server rather than the LLM.",
    ),
) -> None:
    """Validate the config, bring the index up to date, and serve the HTTP API.

    Ingestion only processes new, changed and removed files, so a restart is quick.
    Stop with Ctrl-C.

    Example: llmops up configs/quickstart.yaml --port 8080 --workers 2
    """
    import uvicorn

    from llmops.server import create_app

    rag = run(lambda: RAG.from_config(config))
    console.print(f"[green]config ok[/green]  {config}  (app '{rag.config.name}')")
    if not no_ingest:
        rag.start()
        ingest_with_progress(rag, full=False)
    host = host or rag.config.server.host
    port = port or rag.config.server.port
    workers = workers or rag.config.server.workers
    _print_welcome(f"http://{host}:{port}", workers)
    if workers == 1:
        uvicorn.run(create_app(rag), host=host, port=port, log_level="info")
        return
    rag.close()
    _hand_over(config, rag.components.data_dir, workers)
    uvicorn.run(
        "llmops.server.worker:app",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="info",
    )


def _print_welcome(url: str, workers: int) -> None:
    processes = f"  ({workers} worker processes)" if workers > 1 else ""
    console.print(f"\nserving [bold]{url}[/bold]  (API docs: {url}/docs){processes}")
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
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    # prometheus-client multiprocess mode: every worker writes its samples there and a scrape
    # of any worker adds them up
    prepare_multiprocess_dir(data_dir / "prometheus")
