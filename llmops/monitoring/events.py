"""What the query pipeline reports about one answered question."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SIGNALS = ("query_chars", "top_score", "sources_above", "answer_chars", "abstained", "latency_ms")
"""The numeric signals compared by the drift checks and stored in the request log."""


@dataclass(frozen=True)
class QueryEvent:
    """One answered query; ``stages`` are seconds per stage (embed, retrieve, rerank,
    generate); ``vector`` the question's embedding when the search computed one."""

    request_id: str
    question: str
    pipeline: str
    backend: str
    retrieved_ids: tuple[str, ...] = ()
    scores: tuple[float, ...] = ()
    answer_chars: int = 0
    answer: str = ""  # the answer's text (the request log keeps, hashes or drops it)
    abstained: bool = False
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    variant: str = "default"
    correlation_id: str | None = None  # the caller's own id for the request, if it sent one
    trace_id: str | None = None  # the OpenTelemetry trace of the request, when tracing is on
    stages: Mapping[str, float] = field(default_factory=dict)
    vector: Any = None
    time: float = field(default_factory=time.time)
    retrieved: bool = True  # False: a plain chat call (the gateway use), no documents searched

    def signals(self, source_threshold: float) -> dict[str, float]:
        return {
            "query_chars": float(len(self.question)),
            "top_score": max(self.scores, default=0.0),
            "sources_above": float(sum(s >= source_threshold for s in self.scores)),
            "answer_chars": float(self.answer_chars),
            "abstained": float(self.abstained),
            "latency_ms": self.latency_ms,
        }
