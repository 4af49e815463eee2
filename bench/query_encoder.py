"""The dense query side on SciFact: the query encoder (torch, ONNX, int8 ONNX on one index built
with torch) and Chroma's HNSW search depth (ef_search).

    python bench/query_encoder.py [--workdir DIR] [--repeats 200]

The SciFact app of bench/query.py (14k chunks of 1,000 characters, documents embedded by the
bundled MiniLM on torch) is indexed once (``--workdir`` keeps it); then the same index is
searched with queries embedded by torch (``query_backend: documents``), by the ONNX export of
the same model (``onnx``) and by its int8 quantization (``onnx_int8``): nDCG@10 and
recall@100 of the 300 test claims per mode (a document ranks at its best chunk), and the time
to embed one query on the encoder thread (median of ``--repeats``, alternating the encoders).

HNSW: the 100 candidates hybrid search asks Chroma for, against an exact search (every stored
vector, NumPy) for the same query vectors: recall@10 and recall@100 of the candidate list and
the median time of one search, for several ef_search values (the collection's setting is put
back to Chroma's default, 100, at the end; a changed setting reaches the index when a client
loads it again, so each setting is measured through a new client).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import yaml
from chromadb.api.client import SharedSystemClient
from chromadb.config import Settings
from common import dataset, emit, machine, median
from query import scifact_app

from llmops import RAG
from llmops.evaluation.beir import BeirFolder
from llmops.evaluation.retrieval_metrics import mean, per_query
from llmops.pipelines.eval_retrieval import DEPTH, document_id
from llmops.pipelines.query import QueryOptions

ENCODERS = ("documents", "onnx", "onnx_int8")
EF_SEARCH = (100, 200, 400)  # hnswlib never searches less deep than k (100)
CANDIDATES = 100


def with_encoder(config: Path, query_backend: str) -> Path:
    spec = yaml.safe_load(config.read_text())
    spec["embedder"] = {"type": "sentence_transformers", "query_backend": query_backend}
    out = config.with_name(f"encoder-{query_backend}.yaml")
    out.write_text(yaml.safe_dump(spec, sort_keys=False))
    return out


def quality(rag: RAG, queries: dict[str, str], qrels: Any) -> dict[str, dict[str, float]]:
    out = {}
    for mode in ("dense", "hybrid"):
        options = QueryOptions(top_k=DEPTH, mode=mode, mmr=False)  # type: ignore[arg-type]

        async def search_all(o: QueryOptions = options) -> dict[str, list[str]]:
            return {
                qid: list(dict.fromkeys(document_id(h) for h in await rag.pipeline.search(t, o)))
                for qid, t in queries.items()
            }

        run = asyncio.run(search_all())
        scores = mean(per_query(run, qrels), ["ndcg@10", "recall@100"])
        out[mode] = {k: round(v, 4) for k, v in scores.items()}
    return out


def fresh_collection(path: Path, name: str) -> Any:
    """The collection through a new client: Chroma applies a changed ef_search when the index
    is loaded again, not to an index this process already holds."""
    SharedSystemClient.clear_system_cache()
    client = chromadb.PersistentClient(str(path), settings=Settings(anonymized_telemetry=False))
    return client.get_collection(name)


def hnsw(rag: RAG, queries: list[str], repeats: int) -> dict[str, Any]:
    """Candidate recall and search time of Chroma's HNSW against exact search, per ef_search."""
    c = rag.components
    active = c.records.active()
    assert active is not None
    path = c.data_dir / "chroma"
    collection = fresh_collection(path, active.collection)
    stored = collection.get(include=["embeddings"])
    ids, matrix = np.array(stored["ids"]), np.asarray(stored["embeddings"], dtype=np.float32)
    vectors = c.embedder.embed_queries(queries)
    exact = ids[np.argsort(-(vectors @ matrix.T), axis=1)[:, :CANDIDATES]]
    out: dict[str, Any] = {"chunks": len(ids)}
    try:
        for ef in EF_SEARCH:
            collection.modify(configuration={"hnsw": {"ef_search": ef}})
            collection = fresh_collection(path, active.collection)
            found = collection.query(query_embeddings=vectors, n_results=CANDIDATES, include=[])
            pairs = list(zip(found["ids"], exact, strict=True))
            times = []
            for i in range(repeats):
                started = time.perf_counter()
                one = vectors[i % len(vectors)][None]
                collection.query(query_embeddings=one, n_results=CANDIDATES, include=["distances"])
                times.append((time.perf_counter() - started) * 1000)
            out[f"ef_search={ef}"] = {
                f"recall@{k}": round(
                    float(np.mean([len({*f[:k]} & {*e[:k]}) / k for f, e in pairs])), 4
                )
                for k in (10, CANDIDATES)
            } | {"search_p50_ms": round(median(times), 3)}
    finally:
        collection.modify(configuration={"hnsw": {"ef_search": 100}})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the index here")
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = (args.workdir or Path(tmp)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        config, _ = scifact_app(folder, "hybrid")
        results: dict[str, Any] = {}
        times: dict[str, list[float]] = {e: [] for e in ENCODERS}
        rags = {e: RAG.from_config(with_encoder(config, e)) for e in ENCODERS}
        for rag in rags.values():
            rag.start()
            rag.ingest()
        try:
            qrels, queries = judged_claims()
            for name, rag in rags.items():
                results[name] = quality(rag, queries, qrels)
            texts = list(queries.values())
            results["hnsw"] = hnsw(rags["documents"], texts, args.repeats)
            for i in range(args.repeats):
                for name, rag in rags.items():
                    started = time.perf_counter()
                    rag.components.embedder.embed_queries([texts[i % len(texts)]])
                    times[name].append((time.perf_counter() - started) * 1000)
        finally:
            for rag in rags.values():
                rag.close()
    emit(
        {
            "benchmark": "query_encoder",
            "machine": machine(),
            "quality": results,
            "embed_one_query_p50_ms": {k: round(median(v), 2) for k, v in times.items()},
        }
    )


def judged_claims() -> tuple[Any, dict[str, str]]:
    beir = BeirFolder.open(dataset("scifact"), "test")
    qrels = beir.read_qrels()
    return qrels, beir.read_queries(set(qrels))


if __name__ == "__main__":
    main()
