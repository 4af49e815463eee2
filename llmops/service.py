"""``RAG``: a built app with its lifecycle — the Python API, and what the CLI and HTTP use.

    with RAG.from_config("configs/quickstart.yaml") as rag:
        rag.ingest()
        print(rag.query("How do I add PDFs?").answer)

Sync methods run on a private event-loop thread; inside async code use ``astart``,
``aingest``, ``aquery`` and ``async with``. One ingestion runs at a time per app.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import AsyncGenerator, Coroutine, Iterator, Mapping, Sequence
from contextlib import aclosing
from pathlib import Path
from types import TracebackType
from typing import Any, TypedDict, TypeVar, Unpack

from opentelemetry.trace import Span

from llmops import tracing
from llmops.build import AppSpec, Components, build, load_config
from llmops.config import resolve_path
from llmops.config.schema import AppConfig, Fusion, SearchMode
from llmops.errors import LLMOpsError, StorageError
from llmops.monitoring.monitor import Monitor
from llmops.pipelines.app_history import AppHistory
from llmops.pipelines.experiment import Experiment
from llmops.pipelines.ingest import Ingestion, IngestReport, ProgressFn, sparse_intact
from llmops.pipelines.ingest_engines import remote_engine
from llmops.pipelines.policy import RequestPolicy
from llmops.pipelines.query import QueryOptions, QueryPipeline
from llmops.pipelines.registered_adapters import registered_adapters
from llmops.types import Answer, GenerationOptions, Message

T = TypeVar("T")
log = logging.getLogger(__name__)


class QueryKwargs(TypedDict, total=False):
    """Per-request options of ``RAG.query`` and ``RAG.stream`` (see ``QueryOptions``)."""

    top_k: int | None
    filters: Mapping[str, Any] | None
    score_threshold: float | None
    mmr: bool | None
    mode: SearchMode | None
    fusion: Fusion | None
    rerank: bool | None
    history: Sequence[Message]
    generation: GenerationOptions
    retrieve: bool
    correlation_id: str | None


class _LoopThread:
    """An event loop on a daemon thread, for the sync wrappers."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, daemon=True).start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None


NOT_BUILT = "no index yet: run `llmops ingest` (or POST /ingest)"


class RAG:
    """A RAG app built from one config file."""

    def __init__(self, spec: AppSpec) -> None:
        self.spec = spec
        self.components: Components = build(spec)
        self.monitor = Monitor(
            self.config.monitoring,
            self.config.name,
            self.components.data_dir,
            spec.base_dir,
            self.components.embedder.embed_queries,
        )
        self.policy = RequestPolicy(self.config.server)
        # the registered LoRA adapters the app's generators follow (GET /models/registry)
        self.registered = registered_adapters(self.components.backends)
        runs_dir = self.config.evaluation.runs_dir
        self.history = AppHistory(  # requests, drift checks, eval runs, the training set
            self.monitor,
            self.components,
            resolve_path(spec.base_dir, runs_dir),
            runs_dir,
            self.open,
        )
        self.pipeline = QueryPipeline(
            self.components, self.config.retrieval, self.config.prompt, self.monitor
        )
        experiment = self.config.experiment
        self.experiment = (
            Experiment(
                experiment, self.components, self.config.retrieval, self.config.prompt, self.monitor
            )
            if experiment is not None
            else None
        )
        self._opened = False  # the indexes (``open``)
        self._started = False  # and the models (``start``)
        self._generator_started = False
        self._start_lock = threading.Lock()
        self._ingest_lock = threading.Lock()
        self._portal = _LoopThread()
        self.last_ingestion: IngestReport | None = None

    @classmethod
    def from_config(cls, path: str | Path) -> RAG:
        """Validate the config (raises ConfigError listing every problem) and build the app."""
        return cls(load_config(path))

    @property
    def config(self) -> AppConfig:
        return self.spec.loaded.app

    @property
    def ready(self) -> bool:
        return self.not_ready_reason() is None

    def not_ready_reason(self) -> str | None:
        """None when the app can answer; else why not: not started, no index yet, its
        collection gone from the store (a damaged Chroma folder moved aside), or a storage
        fault in the way (the fault's own message)."""
        if not self._started:
            return "not started"
        try:
            active = self.components.records.active()
            if active is None:
                return NOT_BUILT
            if active.collection not in self.components.store.collections():
                return (
                    f"the index's collection '{active.collection}' is missing from the store: "
                    "run `llmops ingest` to rebuild it from the sources"
                )
        except LLMOpsError as exc:
            return str(exc)
        return None

    # lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Open the record table and the store and load the models (idempotent): what must
        be done before the app answers (``ready``)."""
        with self._start_lock:
            if self._started:
                return
            opened_here = self._open()
            try:
                self.components.load_models()
            except BaseException:
                if opened_here:
                    self._shut()
                raise
            self._started = True

    def open(self) -> None:
        """Open what an ingestion needs (the record table, the store, the sparse index) and
        load no model (idempotent). The embedding model then loads when the first changed
        chunk needs it, so an ingestion that finds nothing changed imports no model library;
        ``start`` loads the models (what a server does before it accepts requests)."""
        with self._start_lock:
            self._open()

    def _open(self) -> bool:
        """Open unless open (under the start lock); True when this call opened."""
        if self._opened:
            return False
        self.monitor.start()  # first: a missing drift reference fails before models load
        try:
            self.components.start(models=False)
        except BaseException:
            self.monitor.close()
            raise
        self._opened = True
        self._report_index_size()
        return True

    async def astart(self) -> None:
        if self._started and self._generator_started:
            return
        await asyncio.to_thread(self.start)
        if not self._generator_started:
            await self.components.generator.start()
            if self.experiment is not None:
                await self.experiment.start(self.config.name, self.components.data_dir)
            self._generator_started = True

    def close(self) -> None:
        if self._generator_started:
            self._portal.run(self._close_generators())
        self._close_sync()
        self._portal.stop()

    async def aclose(self) -> None:
        if self._generator_started:
            await self._close_generators()
        await asyncio.to_thread(self._close_sync)

    async def _close_generators(self) -> None:
        if self.experiment is not None:  # first: its shadow runs may use the app's generator
            await self.experiment.close()
        await self.components.generator.close()
        self._generator_started = False

    def _close_sync(self) -> None:
        with self._start_lock:
            if self._opened:
                self._shut()

    def _shut(self) -> None:
        self.monitor.close()
        self.components.close()
        self._opened = self._started = False

    def __enter__(self) -> RAG:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RAG:
        await self.astart()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # work ------------------------------------------------------------------------------------
    def ingest(self, full: bool = False, progress: ProgressFn | None = None) -> IngestReport:
        """Bring the index in step with the sources (only what changed, unless ``full``);
        opens the app if needed, and loads the embedding model only if something changed."""
        self.open()
        with self._ingest_lock:
            try:
                engine = remote_engine(self.spec)
                report = Ingestion(self.components, progress, engine).run(full=full)
            except Exception:
                self.monitor.ingestion({}, None, ok=False)
                raise
        self.last_ingestion = report
        self.monitor.ingestion(report.to_dict(), report.chunks_total)
        return report

    def _report_index_size(self) -> None:
        active = self.components.records.active()
        try:
            size = self.components.store.count(active.collection) if active else 0
        except StorageError as exc:  # start anyway: queries say what is wrong, ingestion repairs
            log.error("index %s: %s", active.collection if active else "-", exc)
            size = 0
        self.monitor.index_size(size)

    async def aingest(self, full: bool = False, progress: ProgressFn | None = None) -> IngestReport:
        return await asyncio.to_thread(self.ingest, full, progress)

    def is_stale(self) -> bool:
        """True when the index is missing, built with other settings, or its sparse index is gone.

        Changed files are only found by an ingestion, which skips unchanged files cheaply.
        """
        self.open()
        c = self.components
        active = c.records.active()
        return active is None or active.fingerprint != c.fingerprint or not sparse_intact(c, active)

    async def aquery(
        self,
        question: str,
        *,
        request_id: str | None = None,
        user: str | None = None,
        **options: Unpack[QueryKwargs],
    ) -> Answer:
        """Answer ``question``; ``options`` are those of ``QueryOptions``. With an experiment,
        ``user`` (a user or session id) keeps a user on one variant. A request outside the
        limits of ``server:`` raises ``InvalidRequest``."""
        request_id = request_id or uuid.uuid4().hex
        with tracing.active(self._query_span(request_id, streamed=False)) as span:
            question, admitted = self.policy.admit(question, QueryOptions(**options))
            await self.astart()
            if self.experiment is not None:
                answer = await self.experiment.run(question, admitted, request_id, user)
            else:
                answer = await self.pipeline.run(question, admitted, request_id)
            _answered(span, answer)
            return answer

    def _query_span(self, request_id: str, streamed: bool) -> Span:
        """The span of one query: retrieval, prompt and generation are its children."""
        attributes: tracing.Attributes = {
            "llmops.app": self.config.name,
            "llmops.request_id": request_id,
            "llmops.streamed": streamed,
        }
        return self.components.tracing.tracer.start_span("query", attributes=attributes)

    async def afeedback(self, request_id: str, reward: float) -> str | None:
        """Credit ``reward`` to the experiment variant that served ``request_id`` (returns its
        name; None without an experiment). Unknown or already rated requests raise."""
        await self.astart()
        if self.experiment is None:
            return None
        return await self.experiment.running().feedback(request_id, reward)

    def feedback(self, request_id: str, reward: float) -> str | None:
        """Sync ``afeedback``: credit a rating to the variant that answered ``request_id``."""
        return self._portal.run(self.afeedback(request_id, reward))

    async def alog_feedback(
        self, request_id: str, reward: float, comment: str | None = None, others_write: bool = False
    ) -> bool:
        """Store a rating (and comment) on the request's row in the request log; False when
        the log is off or holds no such request. ``others_write``: other processes answer
        too, so the row may still be on its way (see ``RequestLog.set_feedback``)."""
        log = self.monitor.request_log
        if log is None:
            return False
        return await asyncio.to_thread(log.set_feedback, request_id, reward, comment, others_write)

    async def aexperiment_report(self) -> dict[str, Any] | None:
        """What ``GET /experiments`` shows: traffic, rewards, posteriors, the canary's ramp
        and the shadow's agreement per variant; None without an experiment."""
        await self.astart()
        return None if self.experiment is None else await self.experiment.running().report()

    def experiment_report(self) -> dict[str, Any] | None:
        return self._portal.run(self.aexperiment_report())

    def query(
        self, question: str, *, user: str | None = None, **options: Unpack[QueryKwargs]
    ) -> Answer:
        """Answer ``question``: top_k, filters, score_threshold, mmr, history, generation;
        ``user`` keeps a user on one experiment variant."""
        return self._portal.run(self.aquery(question, user=user, **options))

    async def astream(
        self,
        question: str,
        *,
        request_id: str | None = None,
        user: str | None = None,
        **options: Unpack[QueryKwargs],
    ) -> AsyncGenerator[str | Answer, None]:
        """The answer's text as it is generated, then the ``Answer`` with its sources."""
        request_id = request_id or uuid.uuid4().hex
        span = self._query_span(request_id, streamed=True)
        pieces = self._stream(question, QueryOptions(**options), request_id, user)
        async with aclosing(tracing.within(span, pieces)) as traced:
            async for item in traced:
                if isinstance(item, Answer):
                    _answered(span, item)
                yield item

    async def _stream(
        self, question: str, options: QueryOptions, request_id: str, user: str | None
    ) -> AsyncGenerator[str | Answer, None]:
        question, admitted = self.policy.admit(question, options)
        await self.astart()
        pieces = (
            self.experiment.stream(question, admitted, request_id, user)
            if self.experiment is not None
            else self.pipeline.stream(question, admitted, request_id)
        )
        async with aclosing(pieces):
            async for item in pieces:
                yield item

    def stream(
        self, question: str, *, user: str | None = None, **options: Unpack[QueryKwargs]
    ) -> Iterator[str | Answer]:
        """Sync ``astream``: ``for piece in rag.stream(q): ...``; the last item is the Answer."""
        pieces = self.astream(question, user=user, **options)

        async def step() -> str | Answer | None:
            return await anext(pieces, None)

        try:
            while (item := self._portal.run(step())) is not None:
                yield item
        finally:
            self._portal.run(pieces.aclose())

    def stats(self) -> dict[str, Any]:
        self.start()
        c = self.components
        active = c.records.active()
        files = c.records.files(active.collection) if active else {}
        last = self.last_ingestion
        return {
            "app": self.config.name,
            "collection": active.collection if active else None,
            "documents": sum(1 for r in files.values() if r.chunk_ids),
            "chunks": c.store.count(active.collection) if active else 0,
            "embedder": {
                "fingerprint": c.embedder.fingerprint,
                "dimension": c.embedder.dimension,
                "max_seq_length": c.embedder.max_seq_length,
            },
            "generator": c.generator.name,
            "stale": active is None or active.fingerprint != c.fingerprint,
            "last_ingestion": last.to_dict() if last else None,
        }


def _answered(span: Span, answer: Answer) -> None:
    """What a query span says of its answer."""
    if span.is_recording():
        attributes: tracing.Attributes = {
            "llmops.variant": answer.variant,
            "llmops.generator": answer.generator,
            "llmops.sources": len(answer.sources),
            "llmops.abstained": answer.abstained,
            "llmops.latency_ms": answer.latency_ms,
        }
        span.set_attributes(attributes)
