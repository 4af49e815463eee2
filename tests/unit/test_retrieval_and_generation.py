"""MMR selection, the extractive generator and the query batcher."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import numpy as np

from llmops.generation.extractive import NO_ANSWER, ExtractiveGenerator, sentences
from llmops.rag.embedders.worker import EncoderThread
from llmops.rag.retrieval import mmr_select
from llmops.types import Chunk, GenerationRequest, ScoredChunk


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
    result = asyncio.run(
        gen.generate(GenerationRequest("How do I restore a backup?", tuple(context)))
    )
    assert result.text == "To restore a backup, run the restore command. [2]"
    assert result.cited == (2,) and not result.abstained


def test_extractive_abstains_below_min_score() -> None:
    gen = ExtractiveGenerator(ExtractiveGenerator.Config(min_score=0.3))
    result = asyncio.run(
        gen.generate(GenerationRequest("q", (_hit("Some unrelated sentence here.", 0.29),)))
    )
    assert result.abstained and result.text == NO_ANSWER and result.cited == ()


def test_sentences_drop_markup_code_and_tables() -> None:
    text = (
        "# Title\n\nFirst real sentence is here. Second one follows it.\n\n"
        "```\ncode = 1\n```\n| a | b |"
    )
    assert sentences(text) == ["First real sentence is here.", "Second one follows it."]


class _SlowEmbedder:
    """Counts calls and records which thread ran them; blocks until the gate opens."""

    fingerprint = "fake"
    dimension = 1
    max_seq_length = 100

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[tuple[str, int]] = []
        self.threads: set[str] = set()

    def start(self) -> None:
        self.threads.add(threading.current_thread().name)

    def close(self) -> None:
        return None

    def _vectors(self, kind: str, texts: Sequence[str]) -> np.ndarray:
        self.gate.wait(timeout=5)
        self.threads.add(threading.current_thread().name)
        self.calls.append((kind, len(texts)))
        return np.array([[float(len(t))] for t in texts], dtype=np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors("query", texts)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors("docs", texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t) for t in texts]


def test_encoder_thread_batches_concurrent_queries_on_one_thread() -> None:
    inner = _SlowEmbedder()
    encoder = EncoderThread(inner)
    encoder.start()

    async def main() -> list[float]:
        tasks = [asyncio.create_task(encoder.encode_query("x" * n)) for n in range(1, 11)]
        await asyncio.sleep(0.05)
        inner.gate.set()
        return [float(v[0]) for v in await asyncio.gather(*tasks)]

    try:
        assert asyncio.run(main()) == [float(n) for n in range(1, 11)]
        documents = ["a" * n for n in (5, 200, 1, 70)] * 40
        vectors = encoder.embed_documents(documents)
    finally:
        encoder.close()
    query_calls = [n for kind, n in inner.calls if kind == "query"]
    assert sum(query_calls) == 10 and len(query_calls) <= 2 and max(query_calls) >= 9
    assert [float(v[0]) for v in vectors] == [float(len(d)) for d in documents]
    assert all(n <= 64 for kind, n in inner.calls if kind == "docs")
    assert inner.threads == {"llmops-encoder"}


def test_extractive_never_quotes_the_heading_path_line() -> None:
    chunk = Chunk(
        id="h",
        document_id="g.md",
        text="Indexing > Stable chunk ids\n\nChunk ids are derived from the source and content.",
        source="g.md",
        index=0,
        metadata={"heading": "Indexing > Stable chunk ids"},
    )
    gen = ExtractiveGenerator(ExtractiveGenerator.Config(max_sentences=3))
    result = asyncio.run(
        gen.generate(GenerationRequest("How are chunk ids stable?", (ScoredChunk(chunk, 0.6),)))
    )
    assert result.text == "Chunk ids are derived from the source and content. [1]"


def test_sentences_do_not_split_at_abbreviations() -> None:
    text = (
        "Fortnite was developed by Epic Games, Inc. (Epic), a company based in Cary. "
        "The fuel system is described in the manual (see p. 12 for the diagram).\n"
        "It launched in 2017 as a co-op game."
    )
    assert sentences(text) == [
        "Fortnite was developed by Epic Games, Inc. (Epic), a company based in Cary.",
        "The fuel system is described in the manual (see p. 12 for the diagram).",
        "It launched in 2017 as a co-op game.",
    ]


def test_sentences_end_neither_in_code_spans_nor_after_a_bold_run_in() -> None:
    text = (
        "**Embedded.** Chroma runs inside the process. The glob `*.md` matches `a.md?` too "
        "and lands in `../.llmops/quickstart` at the root. The DOTTED.PATH names a key."
    )
    assert sentences(text) == [
        "**Embedded.** Chroma runs inside the process.",
        "The glob `*.md` matches `a.md?` too and lands in `../.llmops/quickstart` at the root.",
        "The DOTTED.PATH names a key.",
    ]


def _answer(question: str, context: list[ScoredChunk], max_sentences: int = 3) -> str:
    gen = ExtractiveGenerator(ExtractiveGenerator.Config(max_sentences=max_sentences))
    return asyncio.run(gen.generate(GenerationRequest(question, tuple(context)))).text


def test_extractive_never_quotes_a_sentence_twice() -> None:
    restore = "To restore a backup, run the restore command."
    context = [  # overlapping chunks of one document, one cut mid-sentence, one with markup
        _hit(f"Backups run nightly. {restore} Restores take minutes.", 0.6),
        _hit(f"{restore} Check the logs afterwards.", 0.5),
        _hit("a backup, run the restore command. Then check the backup logs.", 0.5),
        _hit("Restoring:\n\n- To restore a **backup**, run the  `restore` command.", 0.4),
    ]
    text = _answer("How do I restore a backup?", context, max_sentences=4)
    assert text.lower().count("run the") == 1, text


_CESSNA = (
    "The Cessna 172 lost engine power over the lake. The engine failure was caused by fuel "
    "exhaustion. The pilot landed in a field."
)
_PIPER = (
    "The Piper engine failure was caused by a cracked cylinder. The weather was clear and the "
    "visibility was ten miles. The Piper pilot was not injured."
)


def test_extractive_quotes_only_the_top_source_when_the_next_adds_nothing() -> None:
    context = [_hit(_CESSNA, 0.7, "cessna.pdf"), _hit(_PIPER, 0.5, "piper.pdf")]
    text = _answer("What caused the engine failure of the Cessna?", context)
    assert text == (
        "The Cessna 172 lost engine power over the lake. [1] "
        "The engine failure was caused by fuel exhaustion. [1]"
    )


def test_extractive_adds_another_source_for_missing_question_terms() -> None:
    context = [_hit(_CESSNA, 0.7, "cessna.pdf"), _hit(_PIPER, 0.5, "piper.pdf")]
    question = "What caused the engine failure, and what were the weather and visibility?"
    text = _answer(question, context)
    assert "The weather was clear and the visibility was ten miles. [2]" in text
    assert "cracked cylinder" not in text  # covers nothing the first report does not


def test_extractive_reads_the_pages_of_one_pdf_as_one_source() -> None:
    pages = [
        ScoredChunk(
            Chunk(f"p{n}", f"r.pdf#page={n}", text, "r.pdf", 0, metadata={"page": n}), score
        )
        for n, text, score in ((1, _CESSNA, 0.7), (2, _PIPER.replace("Piper", "Cessna"), 0.5))
    ]
    text = _answer("What caused the engine failure of the Cessna?", pages)
    assert "cracked cylinder. [2]" in text
