"""Retrieval evaluation on a BEIR folder: ingest the corpus into a throwaway index with the app's
own ingestion (so chunking, embedding and BM25 are those an app uses), search every judged query
in each mode, and score the rankings with trec_eval's definitions.

    evaluate_beir("datasets/scifact").metrics -> {"dense": {"ndcg@10": 0.64, ...}, ...}
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Generic, TypeVar

import yaml

from llmops import registry
from llmops.build import AppSpec, Components, Resolved, build, load_config
from llmops.config.schema import Fusion, SearchMode, SourceConfig
from llmops.errors import DatasetError, IngestError, InvalidRequest
from llmops.evaluation.beir import BeirFolder
from llmops.evaluation.retrieval_metrics import DEFAULT_METRICS, judged_queries, mean, per_query
from llmops.pipelines.ingest import Ingestion, IngestProgress, IngestReport
from llmops.pipelines.query import QueryOptions, QueryPipeline
from llmops.types import ScoredChunk

DEPTH = 100  # hits asked per query: recall@100 needs them, and BEIR ranks this deep
SHARD_DOCS = 100  # documents per corpus file: the ingestion reports progress per file
DOC_ID = "beir_id"  # the record field (and chunk metadata) holding the BEIR document id
# BEIR judges whole documents. One chunk per document keeps the published setup: dense search
# embeds the start of each document (the model truncates at its window), BM25 indexes it all.
# 20,000 characters hold every SciFact abstract (the longest has 10,127); a longer document is
# split, and its best chunk ranks it.
WHOLE_DOCUMENT_CHUNKER = {"type": "recursive", "chunk_size": 20_000, "chunk_overlap": 0}
DEFAULT_APP = {
    "name": "beir-eval",
    "sources": [{"path": "corpus"}],
    "chunker": WHOLE_DOCUMENT_CHUNKER,
}


@dataclass(frozen=True)
class EvalMode:
    """How a reported mode searches: ``search`` None means the app's ``retrieval.mode``."""

    search: SearchMode | None
    rerank: bool
    needs: str | None = None  # the config section the mode cannot run without
    fusion: Fusion | None = None  # None: the app's retrieval.fusion
    default: bool = True  # run when no modes are asked for


MODES = {
    "dense": EvalMode("dense", False),
    "bm25": EvalMode("sparse", False, "sparse"),
    "hybrid": EvalMode("hybrid", False, "sparse"),
    "rerank": EvalMode(None, True, "reranker"),
    # the fusions side by side, on request (same index: no second ingestion)
    "hybrid_rrf": EvalMode("hybrid", False, "sparse", "rrf", default=False),
    "hybrid_weighted": EvalMode("hybrid", False, "sparse", "weighted", default=False),
    "hybrid_adaptive": EvalMode("hybrid", False, "sparse", "adaptive", default=False),
}

Progress = Callable[[str, int, int], None]
"""Called with (stage, done, total): stage "ingest" counts documents, a mode name queries."""
Checked = TypeVar("Checked")


@dataclass
class BeirReport:
    """Metrics per mode (``metrics``: ``{mode: {metric: mean}}``) and how the run went."""

    metrics: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, dict[str, float]]]
    latency_ms: dict[str, float]  # median search time per query, per mode
    documents: int
    queries: int
    ingest: IngestReport


def evaluate_beir(
    folder: str | Path,
    config: str | Path | None = None,
    modes: Sequence[str] | None = None,
    split: str = "test",
    limit: int | None = None,
    progress: Progress | None = None,
    workdir: str | Path | None = None,
) -> BeirReport:
    """Evaluate retrieval on the ``split`` queries of a BEIR folder (the first ``limit`` judged
    ones, if given) in each of ``modes`` (default: every mode the config supports).

    ``config``: an app config whose chunker, embedder, sparse index, reranker and retrieval
    settings are used (its sources and data_dir are replaced); without it, an app's defaults
    with one chunk per document. The index lives in a temporary folder, removed at the end,
    or in ``workdir``, kept for the next run (which re-indexes only what changed: nothing, for
    the same corpus and app).
    """
    beir = BeirFolder.open(folder, split)
    qrels, queries = judged_split(beir, limit)
    notify = progress or (lambda stage, done, total: None)
    check = partial(resolve_modes, modes=modes)
    with indexed(beir, config, notify, check, workdir) as index:
        order = list(qrels)
        search = _search_modes(index.pipeline, queries, order, index.checked, notify)
        runs, latency = asyncio.run(search)
    scores = {mode: per_query(run, qrels) for mode, run in runs.items()}
    metrics = {mode: mean(s, DEFAULT_METRICS) for mode, s in scores.items()}
    return BeirReport(metrics, scores, latency, index.documents, len(qrels), index.ingest)


@dataclass
class Index(Generic[Checked]):
    """A BEIR corpus indexed by an app's own ingestion, and the app's query pipeline on it;
    ``checked`` is what the caller's check of the app returned."""

    spec: AppSpec
    pipeline: QueryPipeline
    documents: int
    ingest: IngestReport
    checked: Checked


@contextmanager
def indexed(
    beir: BeirFolder,
    config: str | Path | None,
    notify: Progress,
    check: Callable[[AppSpec], Checked],
    workdir: str | Path | None = None,
    embedder_model: str | None = None,
) -> Iterator[Index[Checked]]:
    """Index ``beir``'s corpus with the app of ``config`` in ``workdir`` or a temporary folder
    (see ``evaluate_beir``); ``check`` vets the app before the ingestion starts.
    ``embedder_model``: another model folder for the app's sentence-transformers embedder."""
    with _root(workdir) as root:
        (root / "corpus").mkdir(parents=True, exist_ok=True)
        spec = eval_spec(config, root, embedder_model)
        checked = check(spec)
        documents = write_shards(beir, root / "corpus")
        components = build(spec)
        with _started(components):
            ingest = _ingest(components, documents, notify, full=workdir is None)
            app = spec.loaded.app
            pipeline = QueryPipeline(components, app.retrieval, app.prompt)
            yield Index(spec, pipeline, documents, ingest, checked)


def judged_split(
    beir: BeirFolder, limit: int | None
) -> tuple[dict[str, dict[str, int]], dict[str, str]]:
    """The qrels of the first ``limit`` queries (qrels order) that have a relevant document,
    and those queries' texts."""
    qrels = beir.read_qrels()
    judged = judged_queries(qrels)[:limit]
    if not judged:
        raise DatasetError(f"{beir.qrels}: no query has a document with a score above 0")
    return {qid: qrels[qid] for qid in judged}, beir.read_queries(set(judged))


def eval_spec(config: str | Path | None, root: Path, embedder_model: str | None = None) -> AppSpec:
    """The app to evaluate, reading the corpus files in ``root/corpus`` into ``root/data``
    (with ``embedder_model`` as its embedder's ``model`` when given)."""
    spec = load_config(config if config is not None else _default_config(root))
    source = SourceConfig(path=str(root / "corpus"), include=["*.jsonl"])
    app = spec.loaded.app.model_copy(update={"sources": [source], "data_dir": str(root / "data")})
    components = spec.components
    if embedder_model is not None:
        embedder = components["embedder"]
        changed = embedder.config.model_copy(update={"model": embedder_model})
        components = {**components, "embedder": Resolved(embedder.entry, changed)}
    entry = registry.get("loader", "json")
    settings = {"id_field": DOC_ID, "metadata_fields": [DOC_ID]}
    loaders = [{".jsonl": Resolved(entry, entry.config.model_validate(settings))}]
    return AppSpec(replace(spec.loaded, app=app), components, loaders)


def _default_config(root: Path) -> Path:
    path = root / "eval-app.yaml"
    path.write_text(yaml.safe_dump(DEFAULT_APP, sort_keys=False))
    return path


def resolve_modes(spec: AppSpec, modes: Sequence[str] | None) -> list[str]:
    """The modes to run, checked against the app: bm25 and hybrid need a sparse index,
    rerank a reranker. Default: every mode the app supports."""
    supported = [m for m, how in MODES.items() if how.needs is None or how.needs in spec.components]
    if modes is None:
        return [m for m in supported if MODES[m].default]
    for mode in modes:
        if mode not in MODES:
            raise InvalidRequest(f"unknown mode '{mode}'; allowed: {', '.join(MODES)}")
        needs = MODES[mode].needs
        if mode not in supported:
            raise InvalidRequest(
                f"mode '{mode}' needs a '{needs}:' section in the app config "
                f"({spec.loaded.file} has none); modes this config supports: "
                + ", ".join(supported)
            )
    return list(dict.fromkeys(modes))


def write_shards(beir: BeirFolder, folder: Path) -> int:
    """Copy the corpus into JSONL files of ``SHARD_DOCS`` records ``{beir_id, text}`` (title
    and text joined) for the JSON loader; returns the number of documents."""
    documents = beir.documents()
    count = 0
    for number in itertools.count():
        batch = list(itertools.islice(documents, SHARD_DOCS))
        if not batch:
            break
        lines = [json.dumps({DOC_ID: d.id, "text": d.full_text}) + "\n" for d in batch]
        (folder / f"shard-{number:06d}.jsonl").write_text("".join(lines))
        count += len(batch)
    if not count:
        raise DatasetError(f"{beir.corpus}: the corpus has no documents")
    return count


@contextmanager
def _root(workdir: str | Path | None) -> Iterator[Path]:
    if workdir is not None:
        yield Path(workdir)
        return
    with tempfile.TemporaryDirectory(prefix="llmops-beir-", ignore_cleanup_errors=True) as tmp:
        yield Path(tmp)


@contextmanager
def _started(components: Components) -> Iterator[Components]:
    components.start()
    try:
        yield components
    finally:
        components.close()


def _ingest(components: Components, documents: int, notify: Progress, full: bool) -> IngestReport:
    def update(p: IngestProgress) -> None:
        notify("ingest", min(p.files_done * SHARD_DOCS, documents), documents)

    report = Ingestion(components, update).run(full=full)
    if report.skipped:
        shard, reason = next(iter(report.skipped.items()))
        raise IngestError(f"{len(report.skipped)} corpus files were not indexed: {shard}: {reason}")
    return report


async def _search_modes(
    pipeline: QueryPipeline,
    queries: Mapping[str, str],
    order: Sequence[str],
    modes: Sequence[str],
    notify: Progress,
) -> tuple[dict[str, dict[str, list[str]]], dict[str, float]]:
    """``{mode: {query id: document ids}}`` and the median latency of each mode."""
    runs: dict[str, dict[str, list[str]]] = {}
    latency: dict[str, float] = {}
    for mode in modes:
        how = MODES[mode]
        options = QueryOptions(
            top_k=DEPTH, mode=how.search, fusion=how.fusion, rerank=how.rerank, mmr=False
        )
        notify(mode, 0, len(order))
        # the first call of a path pays one-off set-up (lazy model init, index load): untimed
        await pipeline.search(queries[order[0]], options)
        runs[mode], times = {}, []
        for done, qid in enumerate(order, 1):
            started = time.perf_counter()
            hits = await pipeline.search(queries[qid], options)
            times.append((time.perf_counter() - started) * 1000)  # one query at a time
            runs[mode][qid] = list(dict.fromkeys(document_id(h) for h in hits))
            notify(mode, done, len(order))
        latency[mode] = statistics.median(times)
    return runs, latency


def document_id(hit: ScoredChunk) -> str:
    """The BEIR id of a hit's document; chunks of one document share it, so collapsing keeps
    each document at the rank of its best chunk."""
    value = hit.chunk.metadata.get(DOC_ID)
    if isinstance(value, str):
        return value
    # a store that drops metadata still has the loader's document id, "<file>#<record id>"
    return hit.chunk.document_id.partition("#")[2]
