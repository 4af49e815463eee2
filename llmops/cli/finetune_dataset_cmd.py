"""llmops finetune dataset from-log: a chat JSONL training set from the request log."""

from __future__ import annotations

from pathlib import Path

import typer

from llmops.cli.common import ConfigArg, console, run
from llmops.cli.drift_cmd import parse_time
from llmops.pipelines.training_set import ExportReport
from llmops.service import RAG

app = typer.Typer(
    help="Training sets for `llmops finetune`: `from-log` exports rated production answers.",
    no_args_is_help=True,
)


@app.command("from-log")
def from_log(
    config: ConfigArg,
    out: Path = typer.Option(..., "--out", "-o", help="The chat JSONL file to write."),
    min_feedback: float = typer.Option(
        1.0, "--min-feedback", help="Lowest feedback score that counts as positive (thumbs up: 1)."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only requests from then on: 7d, 24h ago or an ISO date (UTC)."
    ),
    context: bool = typer.Option(
        True, "--context/--no-context", help="Keep the retrieved passages (RAG-style examples)."
    ),
) -> None:
    """Answered requests with positive feedback, as chat JSONL (deduplicated, newest first;
    rows the log stores hashed or redacted stay out)."""

    def action() -> ExportReport:
        start = parse_time(since) if since else None
        with RAG.from_config(config) as rag:
            return rag.history.export_training_set(
                out, min_feedback=min_feedback, since=start, include_context=context
            )

    report = run(action)
    console.print(f"wrote {report.written} examples to {out} ({report.with_context} with context)")
    console.print(_skipped(report), markup=False, highlight=False)


def _skipped(report: ExportReport) -> str:
    reasons = {
        "not rated positive": report.below_feedback,
        "abstained": report.abstained,
        "stored hashed or redacted": report.not_in_clear,
        "no answer logged": report.no_answer,
        "duplicates": report.duplicates,
        "no passage left in the index": report.no_passages_left,
    }
    parts = [f"{n} {why}" for why, n in reasons.items() if n]
    line = f"skipped {report.rows - report.written} of {report.rows} logged requests"
    line += f": {', '.join(parts)}" if parts else ""
    if report.missing_passages:
        line += f"; {report.missing_passages} passages no longer in the index were left out"
    return line
