"""An ingestion loads the embedding model only when a changed file needs it: `llmops ingest`
of an unchanged corpus imports no model library, a changed file after that is embedded by the
model loaded then (the same vectors as a model loaded at start), and a server still loads its
models before it accepts requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from llmops import RAG
from llmops.server import create_app
from tests.conftest import ConfigWriter

MODEL_LIBRARIES = ("torch", "transformers", "sentence_transformers", "peft", "bitsandbytes")
# `llmops ingest CONFIG` in this process; at exit, the model libraries it imported
PROBE = f"""
import atexit, json, sys
atexit.register(lambda: print("IMPORTED " + json.dumps(
    sorted(set({MODEL_LIBRARIES!r}) & set(sys.modules)))))
from llmops.cli.main import main
sys.argv = ["llmops", "ingest", sys.argv[1]]
main()
"""


def _ingest_in_a_process(config: Path) -> tuple[str, list[str]]:
    """`llmops ingest` in a fresh interpreter: its output and the model libraries imported."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(config)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "250"},  # the report on one line
    )
    assert result.returncode == 0, result.stdout + result.stderr
    imported = next(
        line.removeprefix("IMPORTED ") for line in result.stdout.splitlines() if "IMPORTED" in line
    )
    return result.stdout, json.loads(imported)


@pytest.mark.slow
def test_cli_reingest_of_an_unchanged_corpus_imports_no_model_library(
    write_config: ConfigWriter,
) -> None:
    config = write_config()
    first, imported_first = _ingest_in_a_process(config)
    assert "4 added" in first
    assert {"torch", "sentence_transformers"} <= set(imported_first)  # the probe sees them
    again, imported_again = _ingest_in_a_process(config)
    assert "4 unchanged files; 0 chunks embedded" in again
    assert imported_again == []


def _vectors(rag: RAG, source: str) -> tuple[list[str], np.ndarray]:
    """The texts and stored vectors of one source's chunks, in chunk order."""
    active = rag.components.records.active()
    assert active is not None and rag.components.sparse is not None
    ids = list(rag.components.records.files(active.collection)[source].chunk_ids)
    chunks = rag.components.sparse.chunks(active.collection, ids)
    stored = rag.components.store.vectors(active.collection, ids)
    return [chunks[i].text for i in ids], np.stack([stored[i] for i in ids])


@pytest.mark.parametrize("chunker", ["markdown", "token"])
def test_a_changed_file_is_embedded_by_the_model_loaded_at_first_use(
    write_config: ConfigWriter, corpus: Path, chunker: str
) -> None:
    """With the token chunker, the first use is a token count on the prefetch thread."""
    sections = {"markdown": {"chunk_size": 300, "chunk_overlap": 30}, "token": {}}[chunker]
    config = write_config(chunker={"type": chunker, **sections})
    with RAG.from_config(config) as rag:
        rag.ingest()
    rag = RAG.from_config(config)
    try:
        unchanged = rag.ingest()
        assert unchanged.unchanged == 4 and unchanged.embed_calls == 0
        assert not rag.components.embedder.loaded
        (corpus / "pricing.md").write_text(
            "# Pricing\n\nEverything is free of charge now, for every seat and every month.\n"
        )
        changed = rag.ingest()
        assert rag.components.embedder.loaded
        assert (changed.updated, changed.unchanged) == (1, 3) and changed.chunks_embedded >= 1
        assert changed.token_limit == 256
        texts, stored = _vectors(rag, "docs/pricing.md")
        assert "free of charge" in " ".join(texts)
    finally:
        rag.close()
    with RAG.from_config(config) as loaded_at_start:
        expected = loaded_at_start.components.embedder.embed_documents(texts)
    np.testing.assert_allclose(stored, expected, atol=1e-5)


def test_only_start_makes_the_app_ready(write_config: ConfigWriter) -> None:
    rag = RAG.from_config(write_config())
    try:
        rag.ingest()  # opens the app; the model loads for the new files, the rest does not
        assert rag.not_ready_reason() == "not started"
        rag.start()
        assert rag.ready and rag.components.embedder.loaded
    finally:
        rag.close()


def test_the_server_loads_the_model_before_it_accepts_requests(
    write_config: ConfigWriter,
) -> None:
    config = write_config()
    with RAG.from_config(config) as indexer:
        indexer.ingest()
    rag = RAG.from_config(config)
    assert not rag.components.embedder.loaded
    with TestClient(create_app(rag)) as client:  # entering runs the app's startup
        assert rag.components.embedder.loaded
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
