"""The cross-encoder reranker, on a tiny random BERT cross-encoder built here."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from llmops import RAG
from llmops.build import build, load_config
from llmops.errors import ComponentError
from llmops.pipelines.query import QueryOptions
from llmops.protocols import Reranker
from llmops.rag.rerankers.cross_encoder import CrossEncoderReranker
from llmops.types import Chunk, ScoredChunk
from tests.conftest import HASHING, PAGES, ConfigWriter
from tests.tiny_models import build_tiny_cross_encoder

QUERY = "How do I restore a backup?"


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-ce")


@pytest.fixture(scope="module")
def reranker(model_folder: Path) -> Iterator[CrossEncoderReranker]:
    config = CrossEncoderReranker.Config(model=model_folder.name, batch_size=3)
    reranker = CrossEncoderReranker(config, base_dir=model_folder.parent)
    reranker.start()
    yield reranker
    reranker.close()


def _hits() -> list[ScoredChunk]:
    """Every paragraph of the test corpus, in an arbitrary order with descending scores."""
    texts = [p for page in PAGES.values() for p in page.split("\n\n") if p.strip()]
    return [
        ScoredChunk(Chunk(f"c{i}", f"d{i}", text, "corpus.md", i), 1.0 - i / 100)
        for i, text in enumerate(texts)
    ]


def _predicted(model_folder: Path, texts: list[str]) -> np.ndarray:
    """Scores straight from sentence-transformers, with the sigmoid the reranker promises."""
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(model_folder), local_files_only=True)
    pairs = [(QUERY, text) for text in texts]
    return np.asarray(model.predict(pairs, activation_fn=torch.nn.Sigmoid()), dtype=np.float64)


def test_order_and_scores_match_cross_encoder_predict(
    reranker: CrossEncoderReranker, model_folder: Path
) -> None:
    hits = _hits()
    expected = _predicted(model_folder, [h.chunk.text for h in hits])
    order = np.argsort(-expected, kind="stable")
    ranked = reranker.rerank(QUERY, hits, top_k=len(hits))
    assert [h.chunk.id for h in ranked] == [hits[i].chunk.id for i in order]
    assert [h.chunk.id for h in ranked] != [h.chunk.id for h in hits]  # the order did change
    assert [h.score for h in ranked] == pytest.approx(expected[order].tolist(), rel=1e-5)
    assert all(0.0 < h.score < 1.0 for h in ranked)
    assert all(r.chunk == hits[i].chunk for r, i in zip(ranked, order, strict=True))


def test_top_k_keeps_the_best(reranker: CrossEncoderReranker) -> None:
    hits = _hits()
    full = reranker.rerank(QUERY, hits, top_k=len(hits))
    assert reranker.rerank(QUERY, hits, top_k=3) == full[:3]
    assert reranker.rerank(QUERY, hits, top_k=len(hits) + 5) == full


def test_empty_input_gives_empty_output(reranker: CrossEncoderReranker) -> None:
    assert reranker.rerank(QUERY, [], top_k=5) == []


def test_equal_texts_keep_their_input_order(reranker: CrossEncoderReranker) -> None:
    hits = _hits()
    twin = ScoredChunk(Chunk("twin", "d-twin", hits[0].chunk.text, "other.md", 0), 0.0)
    ranked = reranker.rerank(QUERY, [hits[0], hits[1], twin], top_k=3)
    ids = [h.chunk.id for h in ranked]
    assert ids.index(hits[0].chunk.id) + 1 == ids.index("twin")
    assert ranked[ids.index("twin")].score == ranked[ids.index(hits[0].chunk.id)].score


def test_start_close_lifecycle(model_folder: Path) -> None:
    config = CrossEncoderReranker.Config(model=str(model_folder))
    reranker = CrossEncoderReranker(config, base_dir=Path("/nonexistent"))
    with pytest.raises(RuntimeError, match="not started"):
        reranker.rerank(QUERY, _hits(), top_k=2)
    reranker.start()
    reranker.start()  # a second start keeps the loaded model
    assert len(reranker.rerank(QUERY, _hits(), top_k=2)) == 2
    reranker.close()
    with pytest.raises(RuntimeError, match="not started"):
        reranker.rerank(QUERY, _hits(), top_k=2)


def test_start_names_a_missing_folder(tmp_path: Path) -> None:
    config = CrossEncoderReranker.Config(model="models/absent")
    reranker = CrossEncoderReranker(config, base_dir=tmp_path)
    with pytest.raises(ComponentError, match=r"model folder not found: .*models/absent"):
        reranker.start()
    (tmp_path / "models" / "absent").mkdir(parents=True)
    with pytest.raises(ComponentError, match=r"no config\.json"):
        reranker.start()


def test_app_config_builds_the_reranker(
    write_config: ConfigWriter, tmp_path: Path, model_folder: Path
) -> None:
    local = shutil.copytree(model_folder, tmp_path / "models" / "ce")
    path = write_config(
        embedder=HASHING, reranker={"type": "cross_encoder", "model": "models/ce", "top_n": 5}
    )
    components = build(load_config(path))
    reranker = components.reranker
    assert isinstance(reranker, CrossEncoderReranker)
    assert reranker.top_n == 5 and reranker.config.device == "cpu"
    assert isinstance(reranker, Reranker)  # the protocol the query pipeline relies on
    assert reranker.model_folder() == local.resolve()  # relative to the config file
    assert components.sparse is not None  # hybrid search keeps its keyword index


def test_the_app_reranks_the_fused_head(write_config: ConfigWriter, model_folder: Path) -> None:
    """Through the service: the reranker starts on the encoder thread and re-orders the first
    ``top_n`` fused hits by the cross-encoder's score; the rest keep their fused order."""
    reranker = {"type": "cross_encoder", "model": str(model_folder), "top_n": 4}
    path = write_config(embedder=HASHING, reranker=reranker, retrieval={"top_k": 20})
    with RAG.from_config(path) as rag:
        rag.ingest()
        fused = asyncio.run(rag.pipeline.search(QUERY, QueryOptions(rerank=False)))
        reranked = asyncio.run(rag.pipeline.search(QUERY, QueryOptions()))
    head = fused[:4]
    expected = _predicted(model_folder, [h.chunk.text for h in head])
    order = np.argsort(-expected, kind="stable")
    assert len(fused) > 4 and len(reranked) == len(fused)
    assert [h.chunk.id for h in reranked[:4]] == [head[i].chunk.id for i in order]
    assert [h.score for h in reranked[:4]] == pytest.approx(expected[order].tolist(), rel=1e-5)
    assert reranked[4:] == fused[4:]
