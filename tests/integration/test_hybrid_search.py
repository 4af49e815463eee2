"""Hybrid search over the real bundled MiniLM, Chroma and BM25: each path finds what the other
misses, fusion keeps both, modes and fusion are chosen per request, MMR runs on the fused list."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.errors import InvalidRequest
from llmops.pipelines.query import QueryOptions
from llmops.server import create_app
from tests.conftest import ConfigWriter, write_corpus

PAGES = {
    "codes.md": "# Error codes\n\nError E4021 appears when the licence server is unreachable.\n",
    "restore.md": "# Bringing documents back\n\nTo bring back deleted documents, run the "
    "restore command against last night's backup archive.\n",
    "garden.md": "# Garden\n\nTomatoes need sun, water and a stake to climb.\n",
    "cooking.md": "# Cooking\n\nBoil the pasta for nine minutes, then add the sauce.\n",
    "travel.md": "# Travel\n\nThe night train to Vienna leaves at ten from platform four.\n",
    "music.md": "# Music\n\nThe orchestra tunes to the oboe before the concert begins.\n",
}
KEYWORD = "What does E4021 mean?"
PARAPHRASE = "How can I recover files I removed by mistake?"  # no word shared with restore.md


@pytest.fixture
def rag(tmp_path: Path, write_config: ConfigWriter) -> RAG:
    write_corpus(tmp_path / "docs", PAGES)
    for page in ("install.md", "backup.md", "pricing.md", "notes/colors.txt"):
        (tmp_path / "docs" / page).unlink()
    app = RAG.from_config(write_config(retrieval={"top_k": 2}))
    app.ingest()
    return app


def sources(rag: RAG, question: str, **options: object) -> list[str]:
    answer = rag.query(question, **options)  # type: ignore[arg-type]
    return [s.source.removeprefix("docs/") for s in answer.sources]


def test_each_path_finds_what_the_other_misses_and_hybrid_keeps_both(rag: RAG) -> None:
    with rag:
        assert "restore.md" not in sources(rag, PARAPHRASE, mode="sparse", top_k=6)
        assert sources(rag, PARAPHRASE, mode="dense")[0] == "restore.md"
        assert sources(rag, KEYWORD, mode="sparse") == ["codes.md"]  # one doc has the term
        assert sources(rag, PARAPHRASE)[0] == "restore.md"  # hybrid is the default
        assert sources(rag, KEYWORD)[0] == "codes.md"
        for fusion in ("rrf", "weighted"):
            assert sources(rag, PARAPHRASE, fusion=fusion)[0] == "restore.md"
            assert sources(rag, KEYWORD, fusion=fusion)[0] == "codes.md"


def test_scores_are_those_of_the_mode(rag: RAG) -> None:
    with rag:
        dense = rag.query(KEYWORD, mode="dense").sources
        sparse = rag.query(KEYWORD, mode="sparse").sources
        weighted = rag.query(KEYWORD, fusion="weighted").sources
        active = rag.components.records.active()
        assert active is not None and rag.components.sparse is not None
        bm25 = rag.components.sparse.search(active.collection, [KEYWORD], 1)[0][0]
    assert all(-1.0 <= s.score <= 1.0 for s in dense)
    assert sparse[0].chunk_id == bm25.chunk.id
    assert sparse[0].score == pytest.approx(bm25.score, abs=1e-4)
    assert weighted[0].score == pytest.approx(1.0)  # top of both normalised rankings


def test_every_hybrid_hit_knows_its_similarity(rag: RAG) -> None:
    with rag:
        hits = asyncio.run(rag.pipeline.search(KEYWORD, QueryOptions(top_k=6)))
        vector = rag.components.embedder.embed_queries([KEYWORD])[0]
        active = rag.components.records.active()
        assert active is not None
        stored = rag.components.store.vectors(active.collection, [h.chunk.id for h in hits])
    assert len(hits) == 6 and all(h.similarity is not None for h in hits)
    assert stored.keys() == {h.chunk.id for h in hits}
    for hit in hits:
        assert hit.similarity == pytest.approx(float(stored[hit.chunk.id] @ vector), abs=1e-4)


def test_filters_hold_on_every_path(rag: RAG) -> None:
    only = {"source": {"in": ["docs/garden.md", "docs/codes.md"]}}
    with rag:
        for mode in ("dense", "sparse", "hybrid"):
            found = set(sources(rag, KEYWORD, mode=mode, top_k=6, filters=only))
            assert found <= {"garden.md", "codes.md"}, mode
            assert "codes.md" in found, mode


def test_mmr_runs_on_the_fused_list(tmp_path: Path, write_config: ConfigWriter) -> None:
    pages = {
        "a.md": "# Backups\n\nThe backup runs nightly and keeps seven archives.\n",
        "b.md": "# Backups again\n\nThe backup runs nightly and keeps seven archives.\n",
        "c.md": "# Restore\n\nA backup archive is restored with the restore command.\n",
    }
    write_corpus(tmp_path / "other", pages)
    config = write_config(sources=[{"path": "other"}], retrieval={"top_k": 2})
    with RAG.from_config(config) as rag:
        rag.ingest()
        plain = sources(rag, "how often does the backup run", mode="hybrid")
        diverse = sources(rag, "how often does the backup run", mode="hybrid", mmr=True)
    assert sorted(p.removeprefix("other/") for p in plain) == ["a.md", "b.md"]  # twins
    assert "other/c.md" in diverse


def test_modes_the_app_cannot_serve_are_refused(tmp_path: Path, write_config: ConfigWriter) -> None:
    config = write_config(sparse=None, retrieval={"mode": "dense"})
    with RAG.from_config(config) as rag:
        rag.ingest()
        assert rag.query("How do I restore a backup?").sources
        with pytest.raises(InvalidRequest, match="needs a sparse index"):
            rag.query("backup", mode="hybrid")
        with pytest.raises(InvalidRequest, match="needs a reranker"):
            rag.query("backup", rerank=True)


def test_http_overrides_mode_and_rejects_unknown_ones(rag: RAG) -> None:
    with TestClient(create_app(rag)) as client:
        reply = client.post("/query", json={"question": KEYWORD, "mode": "sparse"})
        assert reply.status_code == 200
        assert [s["source"] for s in reply.json()["sources"]] == ["docs/codes.md"]
        bad = client.post("/query", json={"question": KEYWORD, "mode": "keyword"})
        assert bad.status_code in (400, 422)
        assert "mode" in bad.text


def test_a_keyword_hit_the_vector_store_lacks_is_left_out(rag: RAG) -> None:
    """Mid-ingestion the BM25 index can hold a chunk the vector store has not got (yet)."""
    with rag:
        active = rag.components.records.active()
        assert active is not None and rag.components.sparse is not None
        codes = rag.components.sparse.search(active.collection, [KEYWORD], 1)[0][0].chunk
        rag.components.store.delete(active.collection, [codes.id])
        for mmr in (False, True):
            found = sources(rag, KEYWORD, top_k=6, mmr=mmr)
            assert found and "codes.md" not in found
