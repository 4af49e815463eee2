"""Ingestion throughput on the FastAPI docs, against the bare model's ceiling, in one run.

    python bench/ingest.py [--repeats 3]

Reports llmops chunks/s (first ingestion, model already loaded), a plain
sentence-transformers ``encode`` of the very same chunk texts (the ceiling), their ratio, and a
re-ingestion of the unchanged corpus (time as a fraction of the first, embedding calls).
Skips cleanly when ../shared/datasets/fastapi-docs is absent.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import dataset, emit, machine, median, write_app

from llmops import RAG
from llmops.pipelines.discovery import discover_files

CHUNKER = {"type": "recursive", "chunk_size": 1000, "chunk_overlap": 200}


def chunk_texts(rag: RAG) -> list[str]:
    texts = []
    for f in discover_files(rag.components.sources):
        if f.loader is not None:
            for document in f.loader.load(f.path, f.key):
                texts.extend(c.text for c in rag.components.chunker.split(document))
    return texts


def one_round(source: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        config = write_app(Path(tmp), source, ["**/*.md"], chunker=CHUNKER)
        with RAG.from_config(config) as rag:
            texts = chunk_texts(rag)
            model = rag.components.embedder
            model.embed_documents(texts[:64])  # warm-up, same for both
            started = time.perf_counter()
            model.embed_documents(texts)
            ceiling = len(texts) / (time.perf_counter() - started)
            first = rag.ingest()
            again = rag.ingest()
    return {
        "chunks": first.chunks_embedded,
        "llmops_chunks_per_s": first.chunks_embedded / first.seconds,
        "ceiling_chunks_per_s": ceiling,
        "first_ingest_s": first.seconds,
        "reingest_s": again.seconds,
        "reingest_embed_calls": again.embed_calls,
        "oversize_chunks": first.oversize_chunks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    source = dataset("fastapi-docs") / "docs"
    rounds = [one_round(source) for _ in range(args.repeats)]
    ratio = [r["llmops_chunks_per_s"] / r["ceiling_chunks_per_s"] for r in rounds]
    reingest = [r["reingest_s"] / r["first_ingest_s"] for r in rounds]
    emit(
        {
            "benchmark": "ingest",
            "machine": machine(),
            "corpus": str(source),
            "chunker": CHUNKER,
            "chunks": rounds[0]["chunks"],
            "oversize_chunks": rounds[0]["oversize_chunks"],
            "median_llmops_chunks_per_s": round(
                median([r["llmops_chunks_per_s"] for r in rounds]), 1
            ),
            "median_ceiling_chunks_per_s": round(
                median([r["ceiling_chunks_per_s"] for r in rounds]), 1
            ),
            "median_ratio_to_ceiling": round(median(ratio), 3),
            "median_reingest_fraction": round(median(reingest), 4),
            "reingest_embed_calls": max(r["reingest_embed_calls"] for r in rounds),
            "rounds": rounds,
        }
    )


if __name__ == "__main__":
    main()
