"""The same app against a real Chroma server (``chroma run``), started and stopped here."""

from __future__ import annotations

import pytest

from llmops import RAG
from tests.conftest import HASHING, ConfigWriter

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_ingest_and_query_against_a_chroma_server(
    write_config: ConfigWriter, chroma_server: int
) -> None:
    store = {"type": "chroma", "host": "127.0.0.1", "port": chroma_server}
    config = write_config(embedder=HASHING, store=store)
    with RAG.from_config(config) as rag:
        first = rag.ingest()
        assert first.chunks_total > 4
        assert rag.ingest().embed_calls == 0
        answer = rag.query("restore a backup", score_threshold=-1.0)
        assert answer.sources and answer.sources[0].source == "docs/backup.md"
        assert rag.components.store.collections() == [first.collection]
