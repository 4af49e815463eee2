"""Query: question (+ earlier turns) → search (dense, BM25 or hybrid; rerank; MMR) → token
budget → prompt → generator (whole or streamed) → answer with sources."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from llmops import tracing
from llmops.build import Components
from llmops.config.schema import Fusion, RetrievalConfig, SearchMode
from llmops.errors import BackendError, InvalidRequest, NotReady, StorageError
from llmops.monitoring.events import QueryEvent
from llmops.monitoring.monitor import Monitor
from llmops.protocols import Generator
from llmops.rag import filters
from llmops.rag.search import Searcher, SearchParams, SearchTrace
from llmops.types import (
    Answer,
    Generation,
    GenerationOptions,
    GenerationRequest,
    Message,
    ScoredChunk,
    SourceRef,
)

SNIPPET_CHARS = 300
T = TypeVar("T")


@dataclass(frozen=True)
class QueryOptions:
    """Per-request settings: retrieval overrides, earlier turns of the conversation
    (``history``, oldest first) and sampling overrides. ``retrieve=False`` skips the documents:
    the conversation goes to the generator as it is (the gateway use of the OpenAI API).
    ``deadline`` (``time.monotonic()`` seconds) bounds the generator's retries and fallbacks;
    the service's request policy sets it. ``correlation_id`` is a caller's own id for the
    request, logged beside the server's."""

    top_k: int | None = None
    filters: Mapping[str, Any] | None = None
    score_threshold: float | None = None
    mmr: bool | None = None
    mode: SearchMode | None = None
    fusion: Fusion | None = None
    rerank: bool | None = None
    history: Sequence[Message] = ()
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    retrieve: bool = True
    variant: str = "default"
    deadline: float | None = None
    correlation_id: str | None = None


@dataclass(frozen=True)
class Prepared:
    """A request ready for the generator: what was retrieved and the rendered prompt."""

    request: GenerationRequest
    started: float
    request_id: str
    options: QueryOptions = field(default_factory=QueryOptions)
    trace: SearchTrace = field(default_factory=SearchTrace)
    retrieved: bool = True

    @property
    def variant(self) -> str:
        return self.options.variant


class QueryPipeline:
    def __init__(
        self,
        components: Components,
        retrieval: RetrievalConfig,
        prompt: str,
        monitor: Monitor | None = None,
        generator: Generator | None = None,
        adapter: str | None = None,
    ) -> None:
        """``generator`` replaces the app's (an experiment variant's own); ``adapter`` is the
        LoRA adapter this pipeline answers with when a request names none (a variant's)."""
        self.c = components
        self.generator = generator or components.generator
        self.adapter = adapter
        self.monitor = monitor
        self.retrieval = retrieval
        self.prompt = prompt
        self.tracer = components.tracing.tracer
        self.searcher = Searcher(
            components.store,
            components.sparse,
            components.embedder,
            components.reranker,
            self.tracer,
            components.embed_model,
        )

    def params(self, options: QueryOptions) -> SearchParams:
        """Resolve request options against the config; invalid ones raise InvalidRequest."""
        r = self.retrieval
        mode = options.mode or r.mode
        if mode != "dense" and self.c.sparse is None:
            raise InvalidRequest(f"mode '{mode}' needs a sparse index; this app has none")
        if options.rerank and self.c.reranker is None:
            raise InvalidRequest("rerank needs a reranker; this app configures none")
        return SearchParams(
            top_k=options.top_k or r.top_k,
            score_threshold=_pick(options.score_threshold, r.score_threshold),
            where=filters.parse(options.filters) if options.filters else None,
            mode=mode,
            fusion=options.fusion or r.fusion,
            rrf_k=r.rrf_k,
            dense_weight=r.dense_weight,
            candidates=r.candidates,
            rerank=_pick(options.rerank, self.c.reranker is not None),
            rerank_top_n=self.c.reranker.top_n if self.c.reranker else 0,
            mmr=_pick(options.mmr, r.mmr.enabled),
            fetch_k=r.mmr.fetch_k,
            mmr_lambda=r.mmr.lambda_,
        )

    def search_text(self, question: str, history: Sequence[Message]) -> str:
        """The question, preceded by the last ``history_turns`` earlier user turns."""
        turns = self.retrieval.history_turns
        earlier = [m.content for m in history if m.role == "user"][-turns:] if turns else []
        return "\n".join([*earlier, question])

    def fit_budget(self, hits: list[ScoredChunk]) -> list[ScoredChunk]:
        """Keep the most relevant hits (they come best first) whose texts fit
        ``max_context_tokens`` together."""
        budget = self.retrieval.max_context_tokens
        if budget is None or not hits:
            return hits
        kept = []
        sizes = self.c.embedder.count_tokens([h.chunk.text for h in hits])
        for hit, size in zip(hits, sizes, strict=True):
            if size <= budget:
                kept.append(hit)
                budget -= size
        return kept

    async def search(
        self, question: str, options: QueryOptions | None = None, trace: SearchTrace | None = None
    ) -> list[ScoredChunk]:
        """Retrieval only: the hits an answer to ``question`` would be built from (before the
        context token budget), best first. In a conversation the question is searched alone
        and with the earlier user turns: a follow-up finds its topic, and a question that
        changes the subject is not dragged back."""
        options = options or QueryOptions()
        params = self.params(options)
        active = self.c.records.active()
        if active is None:
            raise NotReady("the index is empty: run `llmops ingest` (or POST /ingest) first")
        texts = list(dict.fromkeys([question, self.search_text(question, options.history)]))
        try:
            return await self.searcher.search(active.collection, texts, params, trace)
        except StorageError:
            now = self.c.records.active()
            if now is None or now.collection == active.collection:
                raise
            # a rebuild made its new collection active and dropped this one mid-search
            return await self.searcher.search(now.collection, texts, params, trace)

    async def prepare(
        self, question: str, options: QueryOptions | None = None, request_id: str | None = None
    ) -> Prepared:
        """Retrieve, budget and render: everything up to the generator call."""
        try:
            return await self._prepare(question, options or QueryOptions(), request_id)
        except Exception as exc:
            self._failed(exc)
            raise

    async def _prepare(
        self, question: str, options: QueryOptions, request_id: str | None
    ) -> Prepared:
        started = time.perf_counter()
        request_id = request_id or uuid.uuid4().hex
        trace = SearchTrace()
        if not options.retrieve:
            conversation = (*options.history, Message("user", question))
            request = GenerationRequest(
                question, (), conversation, options.generation, options.deadline
            )
            return Prepared(request, started, request_id, options, trace, False)
        hits = self.fit_budget(await self.search(question, options, trace))
        return self._rendered(question, hits, options, request_id, started, trace)

    def _rendered(
        self,
        question: str,
        hits: list[ScoredChunk],
        options: QueryOptions,
        request_id: str,
        started: float,
        trace: SearchTrace,
    ) -> Prepared:
        with tracing.span(self.tracer, "prompt") as span:
            prompt = (
                self.c.prompts.render(self.prompt, question, hits, options.history)
                if self.generator.uses_prompt
                else []
            )
            if span.is_recording():
                attributes: tracing.Attributes = {
                    tracing.PROMPT_NAME: self.prompt,
                    "llmops.prompt.messages": len(prompt),
                    "llmops.prompt.chars": sum(len(m.content) for m in prompt),
                    "llmops.context_chunks": len(hits),
                }
                span.set_attributes(attributes)
        request = GenerationRequest(
            question, tuple(hits), tuple(prompt), options.generation, options.deadline
        )
        return Prepared(request, started, request_id, options, trace)

    def adopt(self, source: QueryPipeline, prepared: Prepared, options: QueryOptions) -> Prepared:
        """A request ``source`` prepared, for this pipeline (which retrieves alike): the same
        hits without searching again, rendered with this pipeline's prompt (or the same prompt
        messages, when both render the same template)."""
        request, started = prepared.request, time.perf_counter()
        same_prompt = self.prompt == source.prompt and (
            source.generator.uses_prompt or not self.generator.uses_prompt
        )
        if not prepared.retrieved or same_prompt:
            return replace(prepared, started=started, options=options)
        hits, trace = list(request.context), prepared.trace  # the search it took
        return self._rendered(request.question, hits, options, prepared.request_id, started, trace)

    async def run(
        self, question: str, options: QueryOptions | None = None, request_id: str | None = None
    ) -> Answer:
        return await self.answer(await self.prepare(question, options, request_id))

    async def answer(self, prepared: Prepared) -> Answer:
        """Generate the answer to a prepared request (and report it to the monitor)."""
        try:
            generating = time.perf_counter()
            generation = await self.generator.generate(self._request(prepared))
        except Exception as exc:
            self._failed(exc)
            raise
        return self._observed(prepared, generation, generating)

    def _request(self, prepared: Prepared) -> GenerationRequest:
        """The generator's request, with this pipeline's adapter unless the request names one
        (a request adopted from another variant's pipeline carries that one's options)."""
        request = prepared.request
        if self.adapter is None or prepared.options.generation.adapter is not None:
            return request
        return replace(request, options=replace(request.options, adapter=self.adapter))

    def _observed(self, prepared: Prepared, generation: Generation, generating: float) -> Answer:
        """The answer, reported to the monitor (metrics, request log, drift window; backends
        that failed before a fallback answered count as errors)."""
        answer = _answer(prepared, generation)
        if self.monitor is not None:
            prepared.trace.stages["generate"] = time.perf_counter() - generating
            self.monitor.failed_over(generation.extra.get("fallback_errors", ()))
            self.monitor.observe(_event(prepared, answer, self.monitor.pipeline))
        return answer

    def _failed(self, exc: Exception) -> None:
        if self.monitor is not None:
            self.monitor.error(exc)

    async def run_with_context(
        self, question: str, options: QueryOptions | None = None
    ) -> tuple[Answer, tuple[ScoredChunk, ...]]:
        """``run``, plus the hits the answer was built from, whole (evaluation scores them)."""
        prepared = await self.prepare(question, options)
        return await self.answer(prepared), prepared.request.context

    async def stream(
        self, question: str, options: QueryOptions | None = None, request_id: str | None = None
    ) -> AsyncGenerator[str | Answer, None]:
        """The answer's text as it is generated, then the ``Answer`` with its sources.

        Errors before the first piece (empty index, bad filter, every backend down) are raised
        by the first ``anext``; closing the stream early stops the generator's work."""
        prepared = await self.prepare(question, options, request_id)
        async with aclosing(self.answer_stream(prepared)) as pieces:
            async for item in pieces:
                yield item

    async def answer_stream(self, prepared: Prepared) -> AsyncGenerator[str | Answer, None]:
        """``stream`` from a prepared request."""
        try:
            generating = time.perf_counter()
            generator = self.generator
            async with aclosing(generator.stream(self._request(prepared))) as pieces:
                async for item in pieces:
                    if isinstance(item, Generation):
                        yield self._observed(prepared, item, generating)
                        return
                    yield item
            raise BackendError(generator.name, "the stream ended without a final answer")
        except Exception as exc:
            self._failed(exc)
            raise


def _pick(override: T | None, default: T) -> T:
    return default if override is None else override


def _answer(prepared: Prepared, generation: Generation) -> Answer:
    request = prepared.request
    return Answer(
        question=request.question,
        answer=generation.text,
        sources=tuple(_sources(request.context, generation)),
        abstained=generation.abstained,
        latency_ms=round((time.perf_counter() - prepared.started) * 1000, 2),
        request_id=prepared.request_id,
        generator=generation.generator,
        usage=generation.usage,
        variant=prepared.variant,
    )


def _event(prepared: Prepared, answer: Answer, pipeline: str) -> QueryEvent:
    return QueryEvent(
        request_id=answer.request_id,
        question=answer.question,
        pipeline=pipeline,
        backend=answer.generator,
        retrieved_ids=tuple(s.chunk_id for s in answer.sources),
        scores=tuple(s.score for s in answer.sources),
        answer_chars=len(answer.answer),
        answer=answer.answer,
        abstained=answer.abstained,
        latency_ms=answer.latency_ms,
        prompt_tokens=answer.usage.prompt_tokens,
        completion_tokens=answer.usage.completion_tokens,
        variant=prepared.variant,
        correlation_id=prepared.options.correlation_id,
        trace_id=tracing.trace_id(),
        stages=prepared.trace.stages,
        vector=prepared.trace.vector,
        retrieved=prepared.retrieved,
    )


def _sources(hits: Sequence[ScoredChunk], generation: Generation) -> list[SourceRef]:
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
