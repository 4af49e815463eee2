"""What the request log keeps, whatever holds it: the columns, one row built from a
``QueryEvent`` (the question and the answer kept, hashed or left out), a stored row read back,
and ``RequestStore``, the few storage calls that a SQLite file and a PostgreSQL table each
answer (``llmops.monitoring.request_log`` and ``request_log_postgres``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from llmops.config.monitoring import QuestionMode, RequestLogConfig
from llmops.monitoring.events import QueryEvent

COLUMNS = (
    "request_id", "time", "pipeline", "variant", "backend", "question", "query_chars",
    "retrieved_ids", "scores", "top_score", "sources_above", "answer_chars", "abstained",
    "latency_ms", "prompt_tokens", "completion_tokens", "feedback", "correlation_id",
    "answer", "question_mode", "answer_mode", "trace_id",
)  # fmt: skip
"""The columns of a row as ``event_row`` builds it, in its order."""
EXPORTED = (*COLUMNS, "feedback_comment")
ADDED_COLUMNS = {
    c: "TEXT" for c in ("correlation_id", "answer", "question_mode", "answer_mode", "trace_id")
}
"""Columns newer than the first schema, added to older tables when they are opened; rows
written before have NULL there (a NULL mode: written before modes were recorded)."""
Row = tuple[Any, ...]


class RequestStore(Protocol):
    """Where the rows live. Every call may raise a storage error (``llmops.db.RETRYABLE``:
    the file locked or its disk full, the server unreachable), which the log's writer answers
    by keeping the rows for its next round; ``set_feedback`` raises ``StorageError``."""

    where: str
    """The file or the server (without its password), for messages."""
    shared: bool
    """Processes on other machines (replicas) write to it too."""

    def open(self) -> None:
        """Create the table and its index on ``time`` if missing, add missing columns."""

    def close(self) -> None: ...

    def insert(self, rows: Sequence[Row]) -> None:
        """Append rows in ``COLUMNS`` order, all or none; a ``request_id`` already stored is
        kept as it is (a row, once written, is never replaced)."""

    def set_feedback(self, request_id: str, score: float, comment: str | None) -> bool:
        """Store the rating on the request's row; False when no row has that id."""

    def prune(self, cutoff: float | None, max_rows: int | None) -> int:
        """Delete rows older than ``cutoff`` (epoch seconds), then all but the newest
        ``max_rows``; returns how many were deleted."""

    def select(self, since: float, until: float) -> Iterator[Mapping[str, Any]]:
        """Stored rows with ``since <= time < until``, oldest first, on a connection of their
        own (a long export does not hold up the writer); none when nothing was written yet."""


def stored_question(question: str, mode: QuestionMode) -> str | None:
    if mode == "keep":
        return question
    if mode == "hash":
        return hashlib.sha256(question.encode()).hexdigest()
    return None


def event_row(event: QueryEvent, config: RequestLogConfig, source_threshold: float) -> Row:
    """The row of one answered query, in ``COLUMNS`` order (no feedback yet)."""
    signals = event.signals(source_threshold)
    question_mode, answer_mode = config.question, config.answer_mode
    return (
        event.request_id, event.time, event.pipeline, event.variant, event.backend,
        stored_question(event.question, question_mode), len(event.question),
        json.dumps(event.retrieved_ids), json.dumps(event.scores), signals["top_score"],
        int(signals["sources_above"]), event.answer_chars, int(event.abstained),
        event.latency_ms, event.prompt_tokens, event.completion_tokens, None,
        event.correlation_id, stored_question(event.answer, answer_mode), question_mode,
        answer_mode, event.trace_id,
    )  # fmt: skip


def decoded(row: Mapping[str, Any]) -> dict[str, Any]:
    """A stored row as ``rows`` returns it: every exported column (a table of an older version
    not opened for writing since lacks the new ones), lists and booleans decoded."""
    item = dict.fromkeys(EXPORTED) | dict(row)
    item["retrieved_ids"] = json.loads(item["retrieved_ids"] or "[]")
    item["scores"] = json.loads(item["scores"] or "[]")
    item["abstained"] = bool(item["abstained"])
    return item
