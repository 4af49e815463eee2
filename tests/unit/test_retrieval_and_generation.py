"""MMR selection, the extractive generator and the query batcher."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np

from llmops.generation.extractive import NO_ANSWER, ExtractiveGenerator, sentences
from llmops.rag.embedders.batching import QueryBatcher
from llmops.rag.retrieval import mmr_select
from llmops.types import Chunk, ScoredChunk


def test_mmr_prefers_a_diverse_second_pick() -> None:
    query = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    vectors = np.array([[1.0, 0.1, 0], [0.99, 0.12, 0], [0.7, 0, 0.7]], dtype=np.float32)
    assert mmr_select(query, vectors, 2, lambda_=1.0) == [0, 1]
    assert mmr_select(query, vectors, 2, lambda_=0.5) == [0, 2]
    assert mmr_select(query, vectors[:0], 2, 0.5) == []


def _hit(text: str, score: float, source: str = "a.md") -> ScoredChunk:
    return ScoredChunk(
        Chunk(id=text[:8], document_id=source, text=text, source=source, index=0), score
    )


def test_extractive_answer_quotes_and_cites_the_best_sentences() -> None:
    gen = ExtractiveGenerator(ExtractiveGenerator.Config(max_sentences=1, min_score=0.2))
    context = [
        _hit("Our office is in Lyon. The cafeteria opens at noon every weekday.", 0.5),
        _hit("Backups run nightly. To restore a backup, run the restore command.", 0.4, "b.md"),
    ]
    result = asyncio.run(gen.generate("How do I restore a backup?", context, []))
    assert result.text == "To restore a backup, run the restore command. [2]"
    assert result.cited == (2,) and not result.abstained


def test_extractive_abstains_below_min_score() -> None:
    gen = ExtractiveGenerator(ExtractiveGenerator.Config(min_score=0.3))
    result = asyncio.run(gen.generate("q", [_hit("Some unrelated sentence here.", 0.29)], []))
    assert result.abstained and result.text == NO_ANSWER and result.cited == ()


def test_sentences_drop_markup_code_and_tables() -> None:
    text = (
        "# Title\n\nFirst real sentence is here. Second one follows it.\n\n"
        "```\ncode = 1\n```\n| a | b |"
    )
    assert sentences(text) == ["First real sentence is here.", "Second one follows it."]


def test_query_batcher_groups_concurrent_requests() -> None:
    calls: list[int] = []
    gate = threading.Event()

    def encode(texts: Sequence[str]) -> np.ndarray:
        gate.wait(timeout=5)
        calls.append(len(texts))
        return np.array([[float(len(t))] for t in texts], dtype=np.float32)

    batcher = QueryBatcher(encode)
    batcher.start()

    async def main() -> list[float]:
        tasks = [asyncio.create_task(batcher.encode("x" * n)) for n in range(1, 11)]
        await asyncio.sleep(0.05)
        gate.set()
        return [float(v[0]) for v in await asyncio.gather(*tasks)]

    try:
        assert asyncio.run(main()) == [float(n) for n in range(1, 11)]
    finally:
        batcher.close()
    assert sum(calls) == 10 and len(calls) <= 2 and max(calls) >= 9
