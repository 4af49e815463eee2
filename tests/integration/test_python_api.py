"""The Python API: RAG.from_config, ingest, query (sync and async), context managers."""

from __future__ import annotations

import asyncio

import pytest

from llmops import RAG
from llmops.errors import InvalidRequest, NotReady
from llmops.types import Answer, Message
from tests.conftest import HASHING, ConfigWriter


def test_query_answers_with_cited_sources(write_config: ConfigWriter) -> None:
    with RAG.from_config(write_config()) as rag:
        rag.ingest()
        answer = rag.query("How do I restore a backup?", top_k=3)
    assert not answer.abstained
    assert "restore" in answer.answer.lower()
    assert answer.sources[0].source == "docs/backup.md"
    cited = [s for s in answer.sources if s.cited]
    assert cited and all(f"[{s.citation}]" in answer.answer for s in cited)
    assert answer.latency_ms > 0 and len(answer.request_id) == 32


def test_filters_restrict_sources(write_config: ConfigWriter) -> None:
    with RAG.from_config(write_config()) as rag:
        rag.ingest()
        answer = rag.query("backup", top_k=5, filters={"source": "docs/pricing.md"})
        assert {s.source for s in answer.sources} == {"docs/pricing.md"}
        either = rag.query(
            "widgets",
            filters={"or": [{"source": "docs/pricing.md"}, {"source": {"eq": "docs/install.md"}}]},
        )
        assert {s.source for s in either.sources} <= {"docs/pricing.md", "docs/install.md"}
        with pytest.raises(InvalidRequest, match="unknown operator 'like'"):
            rag.query("x", filters={"source": {"like": "a"}})


def test_unrelated_question_abstains(write_config: ConfigWriter) -> None:
    with RAG.from_config(write_config()) as rag:
        rag.ingest()
        answer = rag.query("zebra migration patterns serengeti", score_threshold=-1.0)
    assert answer.abstained and "could not find" in answer.answer


def test_query_before_ingest_is_not_ready(write_config: ConfigWriter) -> None:
    with RAG.from_config(write_config()) as rag, pytest.raises(NotReady, match="llmops ingest"):
        rag.query("anything")


def test_async_api_and_async_context_manager(write_config: ConfigWriter) -> None:
    async def main() -> tuple[str, str]:
        async with RAG.from_config(write_config()) as rag:
            await rag.aingest()
            first, second = await asyncio.gather(
                rag.aquery("What does the team edition cost?"),
                rag.aquery("How do I install Widgetron?"),
            )
            return first.sources[0].source, second.sources[0].source

    assert asyncio.run(main()) == ("docs/pricing.md", "docs/install.md")


def test_stream_yields_text_then_the_answer_sync_and_async(write_config: ConfigWriter) -> None:
    with RAG.from_config(write_config()) as rag:
        rag.ingest()
        items = list(rag.stream("How do I restore a backup?"))
        *pieces, answer = items
        assert pieces and all(isinstance(p, str) for p in pieces)
        assert isinstance(answer, Answer) and "".join(pieces) == answer.answer  # type: ignore[arg-type]
        abandoned = rag.stream("How do I restore a backup?")
        assert isinstance(next(abandoned), str)
        abandoned.close()  # leaving early is clean, and the app keeps answering
        assert rag.query("How do I restore a backup?").sources

    async def run() -> list[object]:
        async with RAG.from_config(write_config()) as rag:
            return [item async for item in rag.astream("What does the team edition cost?")]

    streamed = asyncio.run(run())
    assert isinstance(streamed[-1], Answer) and "20 euros" in streamed[-1].answer


def test_context_budget_drops_the_least_relevant_chunks(write_config: ConfigWriter) -> None:
    question = "How do I restore a backup?"
    full = write_config("full.yaml", embedder=HASHING, retrieval={"top_k": 4})
    with RAG.from_config(full) as rag:
        rag.ingest()
        everything = rag.query(question).sources
        sizes = rag.components.embedder.count_tokens([s.snippet for s in everything])
    budget, expected = 40, set()
    remaining = budget
    for source, size in sorted(zip(everything, sizes, strict=True), key=lambda p: -p[0].score):
        if size <= remaining:
            expected.add(source.chunk_id)
            remaining -= size
    assert 0 < len(expected) < len(everything)  # the budget bites in this corpus
    limited = write_config(embedder=HASHING, retrieval={"top_k": 4, "max_context_tokens": budget})
    with RAG.from_config(limited) as rag:
        rag.ingest()
        kept = rag.query(question).sources
    assert {s.chunk_id for s in kept} == expected
    assert [s.citation for s in kept] == list(range(1, len(kept) + 1))


def test_history_joins_the_search_and_the_prompt(write_config: ConfigWriter) -> None:
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        pipeline = rag.pipeline
        history = [Message("user", "Tell me about backups"), Message("assistant", "Nightly.")]
        assert pipeline.search_text("and restoring?", history) == (
            "Tell me about backups\nand restoring?"
        )
        assert pipeline.search_text("q", []) == "q"
        rendered = rag.components.prompts.render("answer.v1", "and restoring?", [], history)
    assert [m.role for m in rendered] == ["system", "user", "assistant", "user"]
    assert rendered[1].content == "Tell me about backups"
