"""Incremental ingestion against real Chroma: skip, update, delete, rebuild, skip bad files."""

from __future__ import annotations

from pathlib import Path

from llmops import RAG
from tests.conftest import HASHING, ConfigWriter


def _index_ids(rag: RAG) -> set[str]:
    active = rag.components.records.active()
    assert active is not None
    return rag.components.store.ids(active.collection)


def test_first_ingest_indexes_every_file(write_config: ConfigWriter) -> None:
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        report = rag.ingest()
        assert (report.added, report.updated, report.removed, report.unchanged) == (4, 0, 0, 0)
        assert report.rebuilt and report.chunks_embedded == report.chunks_total > 4
        assert len(_index_ids(rag)) == report.chunks_total


def test_unchanged_reingest_embeds_nothing(write_config: ConfigWriter) -> None:
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        first = rag.ingest()
        ids = _index_ids(rag)
        again = rag.ingest()
    assert again.embed_calls == 0 and again.chunks_embedded == 0
    assert again.unchanged == 4 and not again.rebuilt
    assert again.collection == first.collection
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        assert _index_ids(rag) == ids


def test_changed_and_removed_files_update_only_their_chunks(
    write_config: ConfigWriter, corpus: Path
) -> None:
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        rag.ingest()
        before = _index_ids(rag)
        (corpus / "pricing.md").write_text("# Pricing\n\nEverything is free of charge now.\n")
        (corpus / "notes/colors.txt").unlink()
        report = rag.ingest()
        after = _index_ids(rag)
    assert (report.updated, report.removed, report.unchanged) == (1, 1, 2)
    assert report.chunks_embedded == 1
    records = {c for c in before - after}
    assert records, "old chunks of the changed and removed files must be deleted"
    with RAG.from_config(write_config(embedder=HASHING)) as clean:
        clean.ingest(full=True)
        assert _index_ids(clean) == after


def test_chunker_change_rebuilds_into_new_collection(write_config: ConfigWriter) -> None:
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        first = rag.ingest()
    changed = write_config(
        embedder=HASHING, chunker={"type": "recursive", "chunk_size": 120, "chunk_overlap": 10}
    )
    with RAG.from_config(changed) as rag:
        assert rag.is_stale()
        second = rag.ingest()
        assert second.rebuilt and second.collection != first.collection
        assert rag.components.store.collections() == [second.collection]
        assert not rag.is_stale()


def test_malformed_file_is_reported_and_skipped(write_config: ConfigWriter, corpus: Path) -> None:
    (corpus / "broken.txt").write_bytes(b"\xff\xfe\x00bad \x80\x81 bytes")
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        report = rag.ingest()
        assert "docs/broken.txt" in report.skipped
        assert report.added == 5 and report.chunks_total > 0
        again = rag.ingest()
    assert "docs/broken.txt" in again.skipped and again.embed_calls == 0


def test_oversize_chunks_are_counted_not_hidden(write_config: ConfigWriter) -> None:
    config = write_config(embedder={"type": "hashing", "max_seq_length": 10})
    with RAG.from_config(config) as rag:
        report = rag.ingest()
    assert report.oversize_chunks > 0 and report.longest_chunk_tokens > 10
    assert report.oversize_warning and "10-token limit" in report.oversize_warning


def test_every_format_through_the_pipeline_with_loader_overrides(
    write_config: ConfigWriter, corpus: Path
) -> None:
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(corpus / "manual.pdf"))
    for text in ("Pump manual cover page.", "Bleed the pump before the first start."):
        pdf.drawString(72, 720, text)
        pdf.showPage()
    pdf.save()
    (corpus / "faq.jsonl").write_text('{"id": "q1", "body": "Spare filters ship monthly."}\n')
    (corpus / "parts.csv").write_text("part,price\nfilter,12\nvalve,40\n")
    (corpus / "page.html").write_text("<title>Shop</title><p>The shop opens at nine.</p>")
    config = write_config(
        sources=[
            {
                "path": "docs",
                "include": ["**/*"],
                "loaders": {".jsonl": {"type": "json", "text_field": "body", "id_field": "id"}},
            }
        ]
    )
    with RAG.from_config(config) as rag:
        report = rag.ingest()
        assert report.skipped == {} and report.added == 8
        answer = rag.query("How do I bleed the pump?", top_k=2)
        assert answer.sources[0].source == "docs/manual.pdf" and answer.sources[0].page == 2
        jsonl = rag.query("spare filters", filters={"source": "docs/faq.jsonl"})
        assert jsonl.sources[0].document_id == "docs/faq.jsonl#q1"
