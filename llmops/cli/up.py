"""llmops up"""

from __future__ import annotations

import typer

from llmops.cli.common import DEFAULT_CONFIG, ConfigArg, console, run
from llmops.cli.ingest import ingest_with_progress
from llmops.service import RAG


def up(
    config: ConfigArg = DEFAULT_CONFIG,
    no_ingest: bool = typer.Option(False, "--no-ingest", help="Serve the index as it is."),
    host: str | None = typer.Option(None, help="Bind address (default: server.host)."),
    port: int | None = typer.Option(None, help="Port (default: server.port)."),
) -> None:
    """Validate the config, bring the index up to date, and serve the HTTP API.

    Ingestion only processes new, changed and removed files, so a restart is quick.
    Stop with Ctrl-C.

    Example: llmops up configs/quickstart.yaml --port 8080
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
    url = f"http://{host}:{port}"
    console.print(f"\nserving [bold]{url}[/bold]  (API docs: {url}/docs)")
    console.print(
        f"try:  curl -X POST {url}/query -H 'content-type: application/json' "
        """-d '{"question": "How do I add PDF files?"}'\n""",
        markup=False,
        highlight=False,
    )
    uvicorn.run(create_app(rag), host=host, port=port, log_level="info")
