"""Where an eval run's questions are answered: the contract, and the in-process answerer
(``eval_ray`` holds the one on Ray actors). Scoring, logging and gates do not move."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from llmops.evaluation.datasets import Sample
from llmops.pipelines.query import QueryOptions, QueryPipeline
from llmops.types import Answer, ScoredChunk

Ask = Callable[[Sample], Awaitable[tuple[Answer, Sequence[ScoredChunk]]]]
"""Answers one sample's question with a variant: the answer and the hits it was built from."""


class Answering(Protocol):
    """Where the questions are answered; the scoring, logging and gates stay in this process."""

    async def asker(self, variant: str, pipeline: QueryPipeline, todo: Sequence[Sample]) -> Ask:
        """What answers ``todo``'s questions with ``variant`` (``pipeline`` here)."""
        ...

    def close(self) -> None:
        """Release what answering held (workers); called once the run has answered."""
        ...


class InProcess:
    """Answers in this process, through the variant's query pipeline."""

    async def asker(self, variant: str, pipeline: QueryPipeline, todo: Sequence[Sample]) -> Ask:
        async def ask(sample: Sample) -> tuple[Answer, Sequence[ScoredChunk]]:
            return await pipeline.run_with_context(sample.question, QueryOptions())

        return ask

    def close(self) -> None:
        return None
