"""llmops ingest"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing, contextmanager

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from llmops.cli.common import (
    DEFAULT_CONFIG,
    ConfigArg,
    ProgressLines,
    console,
    errors,
    live_terminal,
    progress_interval,
    run,
)
from llmops.pipelines.ingest import IngestProgress, IngestReport, ProgressFn
from llmops.service import RAG


@contextmanager
def _bars() -> Iterator[ProgressFn]:
    """A progress bar: files, chunks, chunks/s, elapsed time."""
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

        yield update


class ProgressLine:
    """The latest progress of an ingestion, as one line of text."""

    def __init__(self) -> None:
        self.latest: IngestProgress | None = None
        self.started = time.perf_counter()

    def __call__(self, progress: IngestProgress) -> None:
        self.latest = progress

    def __str__(self) -> str:
        elapsed = f"{time.perf_counter() - self.started:.0f}s elapsed"
        p = self.latest
        if p is None:
            return f"ingest: finding files, {elapsed}"
        return (
            f"ingest: {p.files_done}/{p.files_total} files, {p.chunks_done} chunks, "
            f"{p.chunks_per_second:.1f} chunks/s, {elapsed}"
        )


@contextmanager
def _progress() -> Iterator[ProgressFn]:
    """Bars on a terminal; elsewhere (a pipe, a file, a CI log) a line at a steady interval."""
    if live_terminal():
        with _bars() as update:
            yield update
        return
    line = ProgressLine()
    with ProgressLines(line.__str__, progress_interval()):
        yield line


def ingest_with_progress(rag: RAG, full: bool) -> IngestReport:
    """Run an ingestion showing its progress (files, chunks, chunks/s) and print its summary."""
    with _progress() as update:
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
    if report.parsers:
        counts = Counter(report.parsers.values()).most_common()
        read = [f"{name} ({n} file{'s' if n != 1 else ''})" for name, n in counts]
        console.print("read with: " + ", ".join(read))
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
    # open, not start: the model loads only if a file changed (see ``RAG.open``); a full disk
    # or a locked file at open: one line, no traceback
    run(rag.open)
    with closing(rag):
        ingest_with_progress(rag, full)
