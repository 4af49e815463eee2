"""Tuning retrieval from an eval suite's dataset: the questions whose samples name their
relevant documents (``context_ids``) are the labels, the suite's app and its own index (brought
up to date first, as ``llmops eval run`` does) the searcher. The tuning itself is
``tune_retrieval.tune``: a grid re-fused from one retrieval pass, the choice tested on a
held-out third of the questions.

    tune_suite("eval/quickstart.yaml").yaml_section -> {"fusion": "adaptive", ...}
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from llmops.build import build
from llmops.errors import InvalidRequest
from llmops.evaluation.datasets import load_dataset
from llmops.pipelines.eval_retrieval import Progress
from llmops.pipelines.eval_run import load_checked_suite
from llmops.pipelines.ingest import Ingestion
from llmops.pipelines.query import QueryPipeline
from llmops.pipelines.tune_retrieval import (
    Qrels,
    TuneReport,
    collect,
    hold_out,
    needs_sparse,
    tune,
)
from llmops.types import ScoredChunk


def tune_suite(path: str | Path, progress: Progress | None = None) -> TuneReport:
    """Tune the retrieval of the app that the suite at ``path`` evaluates, on the suite's
    labelled questions (a held-out third tests the choice); the app needs a ``sparse:``
    section and some samples with ``context_ids``."""
    loaded, app_spec = load_checked_suite(path)
    needs_sparse(app_spec)
    spec = loaded.spec
    dataset = load_dataset(
        loaded.path(spec.dataset.path), spec.dataset.format, spec.dataset.split, spec.dataset.limit
    )
    qrels: Qrels = {s.id: dict.fromkeys(s.context_ids, 1) for s in dataset if s.context_ids}
    if len(qrels) < 3:
        raise InvalidRequest(
            f"{loaded.path(spec.dataset.path)}: {len(qrels)} questions name their relevant "
            "documents (context_ids); tuning needs at least 3 (some to tune on, some to test)"
        )
    queries = {s.id: s.question for s in dataset if s.id in qrels}
    tune_qrels, test_qrels, names = hold_out(qrels, spec.name)
    notify = progress or (lambda stage, done, total: None)
    app = app_spec.loaded.app
    components = build(app_spec)
    components.start()
    try:
        Ingestion(components).run()  # incremental: cheap when the index is up to date
        pipeline = QueryPipeline(components, app.retrieval, app.prompt)
        lists = asyncio.run(collect(pipeline, queries, notify))
    finally:
        components.close()
    return tune(app.retrieval, lists, (tune_qrels, test_qrels), names, _source_document)


def _source_document(hit: ScoredChunk) -> str:
    """The document id that eval runs score retrieval by (``context_ids`` name these)."""
    return hit.chunk.document_id
