"""The record table's active collection, read on every query: cached between commits, yet a
promotion by another connection or process (``llmops ingest`` beside a server) and this
table's own writes are seen at the next read."""

from __future__ import annotations

from pathlib import Path

from llmops.rag.indexing import IndexTarget, RecordTable


def test_the_active_collection_follows_every_writer(tmp_path: Path) -> None:
    server, ingest = (
        RecordTable(tmp_path / "records.sqlite"),
        RecordTable(tmp_path / "records.sqlite"),
    )
    server.open()
    ingest.open()
    try:
        assert server.active() is None and server.building() is None
        first, second = IndexTarget("app-g1", "f1"), IndexTarget("app-g2", "f2")
        ingest.set_building(first)
        assert server.building() == first  # another connection's commit
        ingest.promote(first)
        assert server.active() == first and server.building() is None
        assert server.active() == first  # again, from the cache
        server.promote(second)  # its own write
        assert server.active() == second
        assert ingest.active() == second
    finally:
        server.close()
        ingest.close()
