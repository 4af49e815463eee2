"""One ingestion over a source holding pathological files: each is skipped with its reason
in the report, and every other file is indexed."""

from __future__ import annotations

from pathlib import Path

from llmops import RAG
from tests.conftest import HASHING, PAGES, ConfigWriter
from tests.integration.test_ingest import _indexed_sources
from tests.unit.test_confined_inputs import _bomb_stream, _pdf, _text_stream


def test_pathological_files_are_skipped_and_reported_and_the_rest_indexed(
    write_config: ConfigWriter, corpus: Path, tmp_path: Path
) -> None:
    (corpus / "bomb.pdf").write_bytes(_pdf([_text_stream("Hello"), _bomb_stream(80)]))
    (corpus / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (corpus / "wide.csv").write_text("q,a\nwhy," + "x" * 1_500_000 + "\n")
    with (corpus / "huge.html").open("wb") as handle:  # 3 MB, sparse on disk
        handle.truncate(3_000_000)
    (tmp_path / "secret.md").write_text("# Secret\n\nhunter2\n")
    (corpus / "secret.md").symlink_to(tmp_path / "secret.md")
    sources = [{"path": "docs", "max_file_mb": 2}]
    with RAG.from_config(write_config(embedder=HASHING, sources=sources)) as rag:
        report = rag.ingest()
        indexed = _indexed_sources(rag)
    assert indexed == {f"docs/{name}" for name in PAGES}
    assert sorted(report.skipped) == [
        "docs/bomb.pdf",
        "docs/deep.json",
        "docs/huge.html",
        "docs/secret.md",
        "docs/wide.csv",
    ]
    reasons = report.skipped
    assert "pypdf's safety limits" in reasons["docs/bomb.pdf"]
    assert "JSON nested too deeply" in reasons["docs/deep.json"]
    assert "3.0 MB, over the limit of 2 MB" in reasons["docs/huge.html"]
    assert "sources[].max_file_mb" in reasons["docs/huge.html"]
    assert "outside the source folder" in reasons["docs/secret.md"]
    assert "max_field_chars" in reasons["docs/wide.csv"]
