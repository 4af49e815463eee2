"""Search cost as the corpus grows: 10k, 100k and 1M chunks, dense, sparse and hybrid.

    python bench/query_scale.py [--sizes 10000 100000 1000000] [--dense-max 100000]

Each size runs in its own subprocess (so its RSS is its own): it builds a synthetic index in a
temporary folder through the app's own components (Chroma store, BM25 index), then times
``Searcher.search`` — the code path behind ``/query``, with concurrent requests' Chroma and BM25
searches batched — at concurrency 1 and 32 in each mode, and reports p50/p99, throughput,
index size on disk and the process's peak RSS.

Synthetic data with realistic statistics, no dataset needed:

- text: chunks of 65 ± 20 indexed words (what SciFact's 1,000-character chunks keep after
  stop words: 62 on average) drawn from a Zipf–Mandelbrot distribution over 2M word types
  (exponent 1.6, shift 30: like SciFact's stemmed terms, 23k types in its 700k tokens and the
  commonest term 1.5–3 % of them), so term and document frequencies and the vocabulary's
  growth follow natural text; a query is 7 words of one random chunk;
- vectors (384-d, MiniLM's size): unit vectors around 2,000 random topic centres, a query
  near one chunk's vector. The query embedding itself is not timed (its cost does not grow
  with the corpus; bench/query.py measures the model), so the encoder returns the prepared
  vector at once.

Sizes above ``--dense-max`` get the sparse index only (building Chroma's HNSW graph and its
document store for 1M chunks takes longer than this 2-core machine's benchmark budget);
their hybrid figure is then not measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from common import ROOT, emit, machine, percentile

from llmops.protocols import Vectors
from llmops.rag.embedders.worker import EncoderThread
from llmops.rag.search import Searcher, SearchParams
from llmops.rag.sparse.bm25 import Bm25Index
from llmops.rag.stores.chroma import ChromaStore
from llmops.types import Chunk

DIMENSION = 384
VOCABULARY = 2_000_000
ZIPF, SHIFT = 1.6, 30.0  # fitted to SciFact's stemmed terms (vocabulary and top share)
WORDS = (65, 20)  # words per chunk: SciFact's 1,000-character chunks index 62 on average
TOPICS = 2_000
BATCH = 5_000
COLLECTION = "scale"
LETTERS = np.array(list("bcdfghjklmnpqrstvwxzaeiouy"))


def words(count: int) -> list[str]:
    """``count`` distinct pronounceable-ish words (rank → letters), none a stop word."""
    digits = np.arange(count)[:, None] // (26 ** np.arange(5))[None, :] % 26
    return ["q" + "".join(row) for row in LETTERS[digits]]


class Corpus:
    """Chunks and queries drawn from one Zipf–Mandelbrot vocabulary, and their vectors."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.size = size
        ranks = np.arange(1, VOCABULARY + 1)
        weights = 1.0 / (ranks + SHIFT) ** ZIPF
        self.cumulative = np.cumsum(weights / weights.sum())
        self.vocab = np.array(words(VOCABULARY), dtype=object)
        self.centres = self._unit(self.rng.standard_normal((TOPICS, DIMENSION)))

    @staticmethod
    def _unit(x: Vectors) -> Vectors:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def texts(self, count: int) -> list[str]:
        lengths = np.clip(self.rng.normal(*WORDS, count).astype(int), 10, 200)
        ids = np.searchsorted(self.cumulative, self.rng.random(int(lengths.sum())))
        tokens = self.vocab[np.minimum(ids, VOCABULARY - 1)]
        bounds = np.cumsum(lengths)[:-1]
        return [" ".join(part) for part in np.split(tokens, bounds)]

    def vectors(self, count: int) -> Vectors:
        topics = self.rng.integers(0, TOPICS, count)
        noise = self.rng.standard_normal((count, DIMENSION)) * 0.06
        return self._unit(self.centres[topics] + noise)

    def batches(self) -> Any:
        for start in range(0, self.size, BATCH):
            count = min(BATCH, self.size - start)
            texts = self.texts(count)
            chunks = [
                Chunk(f"c{start + i}", f"d{start + i}", t, "synthetic", 0)
                for i, t in enumerate(texts)
            ]
            yield chunks, self.vectors(count)

    def queries(self, chunks: Sequence[Chunk], vectors: Vectors, count: int) -> list[Any]:
        picked = self.rng.integers(0, len(chunks), count)
        out = []
        for i in picked.tolist():
            words = chunks[i].text.split()
            text = " ".join(self.rng.choice(words, min(7, len(words)), replace=False))
            vector = self._unit(vectors[i : i + 1] + self.rng.standard_normal(DIMENSION) * 0.05)
            out.append((text, vector[0]))
        return out


class PreparedQueries:
    """An ``Embedder`` that returns each query's prepared vector (no model to time)."""

    dimension, max_seq_length, fingerprint = DIMENSION, 512, "prepared"

    def __init__(self, vectors: dict[str, Vectors]) -> None:
        self.known = vectors

    def start(self) -> None: ...

    def close(self) -> None: ...

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return np.stack([self.known[t] for t in texts])

    embed_documents = embed_queries

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def disk_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20, 1)


def build(size: int, folder: Path, dense: bool) -> tuple[ChromaStore | None, Bm25Index, list[Any]]:
    corpus = Corpus(size)
    sparse = Bm25Index(Bm25Index.Config(), data_dir=folder, namespace="scale")
    sparse.start()
    store = None
    if dense:
        store = ChromaStore(ChromaStore.Config(), data_dir=folder, namespace="scale")
        store.start()
    sample: list[Any] = []
    for chunks, vectors in corpus.batches():
        sparse.upsert(COLLECTION, chunks)
        if store is not None:
            store.upsert(COLLECTION, chunks, vectors)
        if not sample:
            sample = corpus.queries(chunks, vectors, 400)
    return store, sparse, sample


async def timed(
    searcher: Searcher, queries: list[str], mode: str, concurrency: int
) -> dict[str, Any]:
    params = SearchParams(top_k=5, mode=mode)  # type: ignore[arg-type]
    latencies: list[float] = []
    pending = iter(queries)

    async def client() -> None:
        for text in pending:
            started = time.perf_counter()
            await searcher.search(COLLECTION, [text], params)
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "mode": mode,
        "concurrency": concurrency,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "throughput_qps": round(len(queries) / elapsed, 1),
    }


def measure_size(size: int, dense: bool, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="llmops-scale-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        store, sparse, sample = build(size, folder, dense)
        build_s = time.perf_counter() - started
        encoder = EncoderThread(PreparedQueries({t: v for t, v in sample}))
        encoder.start()
        searcher = Searcher(store, sparse, encoder)  # type: ignore[arg-type]
        texts = [t for t, _ in sample][:requests]
        modes = ["dense", "sparse", "hybrid"] if dense else ["sparse"]
        results = []
        for mode in modes:
            asyncio.run(timed(searcher, texts[:20], mode, 4))  # warm-up (loads the index)
            for concurrency in (1, 32):
                results.append(asyncio.run(timed(searcher, texts, mode, concurrency)))
        encoder.close()
        return {
            "chunks": size,
            "build_s": round(build_s, 1),
            "disk_mb": {"sparse": disk_mb(folder / "sparse"), "chroma": disk_mb(folder / "chroma")},
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "vocabulary": len(sparse._loaded(COLLECTION).vocab),
            "results": results,
        }


def plot(sizes: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for axis, concurrency in zip(axes, (1, 32), strict=True):
        for mode in ("dense", "sparse", "hybrid"):
            points = [
                (s["chunks"], r["p50_ms"], r["p99_ms"])
                for s in sizes
                for r in s["results"]
                if r["mode"] == mode and r["concurrency"] == concurrency
            ]
            if points:
                x, p50, p99 = zip(*points, strict=True)
                line = axis.plot(x, p50, marker="o", label=f"{mode} p50")[0]
                axis.plot(
                    x, p99, marker="x", linestyle="--", color=line.get_color(), label=f"{mode} p99"
                )
        axis.set(xscale="log", yscale="log", xlabel="chunks", title=f"concurrency {concurrency}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("search latency (ms)")
    axes[1].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dense-max", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--plot", type=Path, default=None, help="write the plot (PNG) here")
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(measure_size(args.one, args.one <= args.dense_max, args.requests)))
        return
    sizes = []
    for size in args.sizes:
        command = [
            sys.executable,
            __file__,
            "--one",
            str(size),
            "--dense-max",
            str(args.dense_max),
            "--requests",
            str(args.requests),
        ]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        sizes.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(sizes[-1]), file=sys.stderr, flush=True)  # kept if a later size fails
    if args.plot:
        plot(sizes, args.plot)
    emit({"benchmark": "query_scale", "machine": machine(), "sizes": sizes})


if __name__ == "__main__":
    main()
