"""The Python API: RAG.from_config, ingest, query (sync and async), context managers."""

from __future__ import annotations

import asyncio

import pytest

from llmops import RAG
from llmops.errors import InvalidRequest, NotReady
from tests.conftest import ConfigWriter


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
