"""Incremental ingestion against real Chroma: skip, update, delete, rebuild, skip bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmops import RAG, registry
from llmops.build import build, load_config
from llmops.rag.embedders import sentence_transformers
from tests.conftest import HASHING, PAGES, ConfigWriter
from tests.tiny_models import build_tiny_bert, tiny_bert_embedder


def _index_ids(rag: RAG) -> set[str]:
    active = rag.components.records.active()
    assert active is not None
    return rag.components.store.ids(active.collection)


def _indexed_sources(rag: RAG) -> set[str]:
    """Sources with chunks in the active collection; every chunk there belongs to one."""
    active = rag.components.records.active()
    assert active is not None
    records = rag.components.records.files(active.collection).values()
    assert set().union(*(r.chunk_ids for r in records)) == _index_ids(rag)
    return {r.source for r in records if r.chunk_ids}


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


def test_a_model_retrained_in_place_rebuilds_a_copy_does_not(
    write_config: ConfigWriter, tmp_path: Path
) -> None:
    """The embedder's model folder counts by its content, not its path or file times."""
    embedder = tiny_bert_embedder(tmp_path / "tiny-bert")
    with RAG.from_config(write_config(embedder=embedder)) as rag:
        first = rag.ingest()
    for file in (tmp_path / "tiny-bert").iterdir():  # copied or checked out again: new times
        os.utime(file, ns=(1, 1))
    with RAG.from_config(write_config(embedder=embedder)) as rag:
        assert not rag.is_stale()
    build_tiny_bert(tmp_path / "tiny-bert", seed=1)  # retrained into the same folder
    with RAG.from_config(write_config(embedder=embedder)) as rag:
        assert rag.is_stale()
        second = rag.ingest()
    assert second.rebuilt and second.collection != first.collection
    assert second.chunks_embedded == second.chunks_total


def test_building_the_app_reads_no_model_file_until_the_fingerprint_is_asked(
    write_config: ConfigWriter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = tiny_bert_embedder(tmp_path / "tiny-bert")
    reads: list[Path] = []
    monkeypatch.setattr(
        sentence_transformers, "content_identity", lambda folder: reads.append(folder) or "x"
    )
    components = build(load_config(write_config(embedder=embedder)))
    assert reads == []  # constructors do no I/O
    assert components.fingerprint == components.fingerprint
    assert reads == [tmp_path / "tiny-bert"]  # once


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


def _docs_site(root: Path) -> tuple[set[str], set[str]]:
    """A documentation site's shape: nested sections whose index pages are front matter only,
    empty and whitespace-only stubs, and pages with text. Returns (keys with text, keys
    without)."""
    empty = {
        "": "",
        "\n  \n\t\n": "",
        "---\ntitle: Section\n---": "",
        "---\ntitle: Section\nweight: 20\n---\n\n": "",
        "---\ntitle: Stub\ndescription: >-\n  Soon.\n---\n   \n": "",
    }
    with_text, without = set(), set()
    for number in range(60):
        folder = f"site/section-{number % 6}/topic-{number // 6}"
        if number % 5 in (0, 3):
            content = list(empty)[number % len(empty)]
            name = f"{folder}/_index.md"
            without.add(f"docs/{name}")
        else:
            content = f"---\ntitle: Page {number}\n---\n# Page {number}\n\nTopic {number}.\n"
            name = f"{folder}/page-{number}.md"
            with_text.add(f"docs/{name}")
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)
    return with_text, without


def test_files_without_text_are_reported_not_fatal(
    write_config: ConfigWriter, corpus: Path
) -> None:
    with_text, without = _docs_site(corpus)
    assert len(without) >= 20 and len(with_text) >= 30
    with RAG.from_config(write_config()) as rag:  # the bundled model's token counter
        report = rag.ingest()
        assert report.added == 4 + len(with_text) + len(without)
        assert report.skipped == dict.fromkeys(without, "no text")
        indexed = _indexed_sources(rag)
        assert with_text <= indexed and not indexed & without
        again = rag.ingest()
        assert again.embed_calls == 0 and again.added == 0
        assert again.skipped == report.skipped
        stub = sorted(without)[0]
        (corpus.parent / stub).write_text("# Stub\n\nNow the page has text.\n")
        third = rag.ingest()
        assert third.updated == 1 and stub not in third.skipped
        assert len(third.skipped) == len(without) - 1
        assert stub in _indexed_sources(rag)


def test_symlinks_out_of_the_source_are_refused(
    write_config: ConfigWriter, corpus: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "passwd.md").write_text("root:x:0:0:the secret password is hunter2\n")
    (corpus / "passwd.md").symlink_to(secret / "passwd.md")
    (corpus / "etc").symlink_to(secret)
    (corpus / "same-pricing.md").symlink_to(corpus / "pricing.md")
    with RAG.from_config(write_config(embedder=HASHING)) as rag:
        report = rag.ingest()
        indexed = _indexed_sources(rag)
    assert sorted(report.skipped) == ["docs/etc", "docs/passwd.md"]
    assert "outside the source folder" in report.skipped["docs/passwd.md"]
    assert report.added == 4 and indexed == {f"docs/{name}" for name in PAGES}


def test_mdx_pages_are_read_with_clean_headings(write_config: ConfigWriter, corpus: Path) -> None:
    (corpus / "hooks.mdx").write_text(
        "import Note from './note';\n\n# Hooks {/*hooks*/}\n\n## useMemo {/*usememo*/}\n\n"
        "<Note>Caches a calculation between renders.</Note>\n"
    )
    sources = [{"path": "docs", "include": ["**/*.md", "**/*.mdx"]}]
    with RAG.from_config(write_config(embedder=HASHING, sources=sources)) as rag:
        report = rag.ingest()
        answer = rag.query("caches a calculation", filters={"source": "docs/hooks.mdx"})
    assert report.skipped == {} and report.added == 4
    assert answer.sources[0].heading == "Hooks > useMemo"
    assert "<Note>" not in answer.sources[0].snippet


def test_files_skipped_for_want_of_a_loader_are_read_once_there_is_one(
    write_config: ConfigWriter, corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (corpus / "hooks.mdx").write_text("# Hooks\n\n<Note>Hooks let you use state.</Note>\n")
    config = write_config(embedder=HASHING, sources=[{"path": "docs", "include": ["**/*"]}])
    with monkeypatch.context() as before_mdx:
        before_mdx.delitem(registry._ENTRIES, ("loader", "mdx"))
        with RAG.from_config(config) as rag:
            first = rag.ingest()
    assert first.skipped == {"docs/hooks.mdx": "no loader for '.mdx' files"}
    with RAG.from_config(config) as rag:
        second = rag.ingest()
        assert second.skipped == {} and second.updated == 1 and second.unchanged == 4
        assert "docs/hooks.mdx" in _indexed_sources(rag)


def test_report_names_the_parser_of_each_pdf(write_config: ConfigWriter, corpus: Path) -> None:
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(corpus / "manual.pdf"))
    pdf.drawString(72, 720, "Bleed the pump before the first start.")
    pdf.save()
    sources = [{"path": "docs", "include": ["**/*.pdf"]}]
    with RAG.from_config(write_config(embedder=HASHING, sources=sources)) as rag:
        report = rag.ingest()
    assert report.parsers == {"docs/manual.pdf": "pypdf"}
