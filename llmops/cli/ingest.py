"""llmops ingest"""

from __future__ import annotations

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llmops.cli.common import DEFAULT_CONFIG, ConfigArg, console, errors, run
from llmops.pipelines.ingest import IngestProgress, IngestReport
from llmops.service import RAG


def ingest_with_progress(rag: RAG, full: bool) -> IngestReport:
    """Run an ingestion with a progress bar (files, chunks, chunks/s) and print its summary."""
    columns = (
        TextColumn("[bold]ingest[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files  {task.fields[chunks]} chunks  {task.fields[rate]:.1f} chunks/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=errors, transient=False) as bar:
        task = bar.add_task("ingest", total=None, chunks=0, rate=0.0)

        def update(p: IngestProgress) -> None:
            bar.update(
                task,
                total=p.files_total,
                completed=p.files_done,
                chunks=p.chunks_done,
                rate=p.chunks_per_second,
            )

        report = run(lambda: rag.ingest(full=full, progress=update))
    print_report(report)
    return report


def print_report(report: IngestReport) -> None:
    kind = "rebuilt" if report.rebuilt else "updated"
    console.print(
        f"{kind} collection [bold]{report.collection}[/bold] in {report.seconds:.1f}s: "
        f"{report.added} added, {report.updated} changed, {report.removed} removed, "
        f"{report.unchanged} unchanged files; {report.chunks_embedded} chunks embedded, "
        f"{report.chunks_deleted} deleted, {report.chunks_total} in the index"
    )
    for source, reason in sorted(report.skipped.items()):
        errors.print(f"[yellow]skipped[/yellow] {source}: {reason}", highlight=False)
    if report.oversize_warning:
        errors.print(f"[yellow]warning[/yellow] {report.oversize_warning}", highlight=False)


def ingest(
    config: ConfigArg = DEFAULT_CONFIG,
    full: bool = typer.Option(False, "--full", help="Rebuild everything into a new collection."),
) -> None:
    """Index the config's sources: only new, changed and removed files are processed.

    Unchanged files are skipped without embedding; a change of chunker or embedding model
    rebuilds into a new collection that replaces the old one when complete. Safe to interrupt:
    the next run picks up where this one stopped.

    Example: llmops ingest configs/quickstart.yaml
    """
    rag = run(lambda: RAG.from_config(config))
    with rag:
        ingest_with_progress(rag, full)
