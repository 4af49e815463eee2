"""llmops query"""

from __future__ import annotations

import json
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from llmops.cli.common import DEFAULT_CONFIG, console, run
from llmops.errors import InvalidRequest
from llmops.service import RAG
from llmops.types import Answer


class SearchModeChoice(StrEnum):
    hybrid = "hybrid"
    dense = "dense"
    sparse = "sparse"


def _parse_filter(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"--filter is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidRequest('--filter must be a JSON object, e.g. \'{"page": {"gte": 2}}\'')
    return value


def show_answer(answer: Answer) -> None:
    console.print(answer.answer, markup=False)
    table = Table("[n]", "source", "where", "score", "snippet", show_lines=False)
    for s in answer.sources:
        where = f"p. {s.page}" if s.page else (s.heading or "")
        mark = f"[{s.citation}]" + ("*" if s.cited else "")
        table.add_row(mark, s.source, where, f"{s.score:.3f}", s.snippet[:80])
    console.print(table)
    console.print(
        f"[dim]{answer.latency_ms:.1f} ms · generator {answer.generator} · * = cited[/dim]"
    )


def query(
    question: str = typer.Argument(..., help="The question to answer."),
    config: Path = typer.Option(DEFAULT_CONFIG, "--config", "-c", help="App config file."),
    top_k: int | None = typer.Option(
        None, "--top-k", "-k", min=1, help="Chunks to retrieve (at most server.max_top_k)."
    ),
    filters: str | None = typer.Option(
        None, "--filter", help='JSON metadata filter, e.g. \'{"source": "guide/03-quickstart.md"}\''
    ),
    mmr: bool | None = typer.Option(None, "--mmr/--no-mmr", help="Diversify with MMR."),
    mode: SearchModeChoice | None = typer.Option(
        None, "--mode", help="hybrid (dense + BM25, the default), dense or sparse."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
) -> None:
    """Answer a question from the index, showing the sources it used.

    Example: llmops query "How do I add PDF files?" --top-k 5
    """
    rag = run(lambda: RAG.from_config(config))
    run(rag.start)  # a full disk or a locked file at start: one line, no traceback
    with rag:
        answer = run(
            lambda: rag.query(
                question,
                top_k=top_k,
                filters=_parse_filter(filters),
                mmr=mmr,
                mode=mode.value if mode else None,
            )
        )
    if as_json:
        typer.echo(json.dumps(asdict(answer), indent=2))
    else:
        show_answer(answer)
