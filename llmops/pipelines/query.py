"""Query: question → query vector (batched) → dense retrieval → prompt → generator → answer."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from llmops.build import Components
from llmops.config.schema import RetrievalConfig
from llmops.errors import NotReady
from llmops.rag import filters
from llmops.rag.retrieval import DenseRetriever, SearchParams
from llmops.types import Answer, Generation, ScoredChunk, SourceRef

SNIPPET_CHARS = 300


@dataclass(frozen=True)
class QueryOptions:
    """Per-request overrides of the configured retrieval settings."""

    top_k: int | None = None
    filters: Mapping[str, Any] | None = None
    score_threshold: float | None = None
    mmr: bool | None = None


class QueryPipeline:
    def __init__(self, components: Components, retrieval: RetrievalConfig, prompt: str) -> None:
        self.c = components
        self.retrieval = retrieval
        self.prompt = prompt
        self.retriever = DenseRetriever(components.store)

    def params(self, options: QueryOptions) -> SearchParams:
        """Resolve request options against the config; invalid filters raise InvalidRequest."""
        r = self.retrieval
        return SearchParams(
            top_k=options.top_k or r.top_k,
            score_threshold=(
                r.score_threshold if options.score_threshold is None else options.score_threshold
            ),
            where=filters.parse(options.filters) if options.filters else None,
            mmr=r.mmr.enabled if options.mmr is None else options.mmr,
            fetch_k=r.mmr.fetch_k,
            mmr_lambda=r.mmr.lambda_,
        )

    async def run(
        self, question: str, options: QueryOptions | None = None, request_id: str | None = None
    ) -> Answer:
        started = time.perf_counter()
        params = self.params(options or QueryOptions())
        active = self.c.records.active()
        if active is None:
            raise NotReady("the index is empty: run `llmops ingest` (or POST /ingest) first")
        vector = await self.c.embedder.encode_query(question)
        hits = await self.retriever.asearch(active.collection, vector, params)
        generator = self.c.generator
        prompt = self.c.prompts.render(self.prompt, question, hits) if generator.uses_prompt else []
        generation = await generator.generate(question, hits, prompt)
        return Answer(
            question=question,
            answer=generation.text,
            sources=tuple(_sources(hits, generation)),
            abstained=generation.abstained,
            latency_ms=round((time.perf_counter() - started) * 1000, 2),
            request_id=request_id or uuid.uuid4().hex,
            generator=generation.generator,
            usage=generation.usage,
        )


def _sources(hits: list[ScoredChunk], generation: Generation) -> list[SourceRef]:
    cited = set(generation.cited)
    refs = []
    for number, hit in enumerate(hits, 1):
        meta = hit.chunk.metadata
        page, heading = meta.get("page"), meta.get("heading")
        refs.append(
            SourceRef(
                citation=number,
                document_id=hit.chunk.document_id,
                chunk_id=hit.chunk.id,
                source=hit.chunk.source,
                score=round(hit.score, 4),
                snippet=_snippet(hit.chunk.text),
                cited=number in cited,
                page=page if isinstance(page, int) else None,
                heading=heading if isinstance(heading, str) else None,
            )
        )
    return refs


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"
