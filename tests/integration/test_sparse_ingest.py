"""The BM25 index kept in step by ingestion, repaired when lost, and filtered like Chroma."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from llmops import RAG
from llmops.rag import filters
from tests.conftest import HASHING, ConfigWriter

RECORDS_LOADER = {
    "type": "json",
    "text_field": "text",
    "id_field": "id",
    "metadata_fields": ["topic", "year", "score", "draft"],
}
SOURCES = [
    {"path": "docs", "include": ["**/*.md", "**/*.jsonl"], "loaders": {".jsonl": RECORDS_LOADER}}
]


def _active(rag: RAG) -> str:
    active = rag.components.records.active()
    assert active is not None
    return active.collection


def _in_step(rag: RAG) -> set[str]:
    collection, sparse = _active(rag), rag.components.sparse
    assert sparse is not None
    ids = rag.components.store.ids(collection)
    assert ids and sparse.ids(collection) == ids
    assert sparse.count(collection) == rag.components.store.count(collection)
    return ids


def test_add_change_delete_keep_sparse_in_step(write_config: ConfigWriter, corpus: Path) -> None:
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        rag.ingest()
        first = _in_step(rag)
        (corpus / "faq.md").write_text("# FAQ\n\nWidgets ship in teal boxes.\n")
        (corpus / "pricing.md").write_text("# Pricing\n\nEverything is free of charge now.\n")
        (corpus / "backup.md").unlink()
        report = rag.ingest()
        assert (report.added, report.updated, report.removed) == (1, 1, 1) and not report.rebuilt
        second = _in_step(rag)
        assert second != first
        sparse = rag.components.sparse
        assert sparse is not None
        hits = sparse.search(_active(rag), ["charge", "restore backup"], 5)
        assert [h.chunk.source for h in hits[0]] == ["docs/pricing.md"]
        assert all(h.chunk.source != "docs/backup.md" for h in hits[1])


def test_rebuild_moves_sparse_to_the_new_collection(write_config: ConfigWriter) -> None:
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        first = rag.ingest().collection
    changed = write_config(embedder=HASHING, sparse={"type": "bm25", "k1": 0.9})
    with RAG.from_config(changed) as rag:
        assert rag.is_stale()  # BM25 settings are part of the fingerprint
        second = rag.ingest()
        assert second.rebuilt and second.collection != first
        _in_step(rag)
        assert rag.components.sparse is not None
        assert rag.components.sparse.collections() == [second.collection]


def test_lost_sparse_files_are_rebuilt(write_config: ConfigWriter, tmp_path: Path) -> None:
    config = write_config(embedder=HASHING)
    with RAG.from_config(config) as rag:
        rag.ingest()
        ids = _in_step(rag)
    shutil.rmtree(tmp_path / "data" / "sparse")
    with RAG.from_config(config) as rag:
        assert rag.is_stale()  # `llmops up` re-ingests at start
        report = rag.ingest()
        assert report.rebuilt
        assert _in_step(rag) == ids  # chunk ids are content-derived: same chunks again
        again = rag.ingest()
        assert not again.rebuilt and again.embed_calls == 0
        assert not rag.is_stale()


def _crash(*args: object) -> None:
    raise RuntimeError("simulated crash between the vector store's write and the sparse one")


def test_crash_between_store_and_sparse_write_recovers(
    write_config: ConfigWriter, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(embedder=HASHING)
    with RAG.from_config(config) as rag:
        assert rag.components.sparse is not None
        with monkeypatch.context() as patch:
            patch.setattr(rag.components.sparse, "upsert", _crash)
            with pytest.raises(RuntimeError, match="simulated crash"):
                rag.ingest()  # first build: vectors written, keywords not
        rag.ingest()
        built = _in_step(rag)
        (corpus / "pricing.md").write_text("# Pricing\n\nEverything is free of charge now.\n")
        with monkeypatch.context() as patch:
            patch.setattr(rag.components.sparse, "upsert", _crash)
            with pytest.raises(RuntimeError, match="simulated crash"):
                rag.ingest()  # incremental: the changed file's new chunks only in the store
        report = rag.ingest()
        assert report.updated == 1 and not report.rebuilt
        after = _in_step(rag)
        assert after != built
    clean = write_config("clean.yaml", data_dir="clean-data", embedder=HASHING)
    with RAG.from_config(clean) as rag:
        rag.ingest()
        assert _in_step(rag) == after


def _records(corpus: Path) -> None:
    topics = ["ops", "docs", "sales"]
    for part in range(2):
        lines = []
        for i in range(part * 12, part * 12 + 12):
            record = {
                "id": f"r{i}",
                "text": f"Widget note {i}: serial {i * 7} painted in colour {i % 5}.",
                "topic": topics[i % 3],
                "year": 2019 + i % 5,
                "score": round(i / 23, 3),
                "draft": i % 4 == 0,
            }
            lines.append(json.dumps(record))
        (corpus / f"notes{part}.jsonl").write_text("\n".join(lines) + "\n")
    (corpus / "widgets.md").write_text("# Widgets\n\nEvery widget has a serial number.\n")


FILTERS: list[dict[str, Any]] = [
    {"topic": "ops"},
    {"year": {"eq": 2021}},
    {"draft": True},
    {"topic": {"ne": "ops"}},
    {"topic": {"in": ["docs", "sales"]}},
    {"year": {"in": [2019, 2023]}},
    {"topic": {"nin": ["docs"]}},
    {"score": {"gt": 0.5}},
    {"year": {"gte": 2022}},
    {"score": {"lt": 0.25}},
    {"year": {"lte": 2020}},
    {"and": [{"topic": "ops"}, {"year": {"gte": 2020}}]},
    {"or": [{"topic": "docs"}, {"score": {"gt": 0.9}}]},
    {"or": [{"draft": 1}, {"topic": "ops"}]},  # Chroma: a boolean never equals a number
    {"source": "docs/notes1.jsonl", "index": {"lte": 0}},
    {"document_id": {"in": ["docs/notes0.jsonl#r3", "docs/widgets.md"]}},
]


@pytest.mark.parametrize("spec", FILTERS, ids=lambda spec: json.dumps(spec))
def test_filters_give_the_same_chunks_on_dense_and_sparse(
    write_config: ConfigWriter, corpus: Path, spec: dict[str, Any]
) -> None:
    for page in corpus.rglob("*.*"):
        page.unlink()
    _records(corpus)
    with RAG.from_config(write_config(embedder=HASHING, sources=SOURCES)) as rag:
        rag.ingest()
        collection, sparse = _active(rag), rag.components.sparse
        assert sparse is not None
        everything = len(_in_step(rag))
        parsed = filters.parse(spec)
        vector = rag.components.embedder.embed_queries(["widget"])
        dense = rag.components.store.search(
            collection, vector, everything, filters.to_chroma(parsed)
        )
        keyword = sparse.search(
            collection, ["widget"], everything, partial(filters.matches, parsed)
        )
        dense_ids = {h.chunk.id for h in dense[0]}
        assert 0 < len(dense_ids) < everything, "the filter should keep some chunks, not all"
        assert {h.chunk.id for h in keyword[0]} == dense_ids
