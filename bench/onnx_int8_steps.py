"""The int8 ONNX embedder, one step at a time, on the FastAPI docs' chunks.

    python bench/onnx_int8_steps.py [--repeats 3] [--sample 4] [--no-pipeline]
    python bench/avx2_only.py bench/onnx_int8_steps.py     # the same, as an AVX2-only CPU

- padding: padded tokens per real token of the ingestion's batches (windows of 512 chunks,
  encoder slices of 32, model batches of 4), texts sorted by characters (before; what
  sentence-transformers does for torch) or by tokens (now);
- recipes: the bare embedder (tokenize, run, pool) on every ``--sample``-th chunk for each
  graph: fp32 as exported, fp32 fused, int8 as before (MatMul only, unfused), int8 fused with
  MatMul only, int8 fused with MatMul and Attention, in 8-bit and 7-bit weights; chunks/s
  (median over rotating rounds, and the per-round ratio to the old int8 recipe) and the cosine
  of each chunk's vector to torch's (mean, 1st percentile, min); plus the final recipe with
  the old batching (batches cut by characters, one tokenizer call each);
- pipeline: ``rag.ingest()`` of the corpus with the int8 backend, a call's batches side by
  side one per core (now) or one after the other on all cores (before), alternating rounds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
from common import dataset, emit, machine, median, write_app
from ingest import CHUNKER, chunk_texts

from llmops import RAG
from llmops.rag.embedders import onnx_runtime
from llmops.rag.embedders.bucketing import length_batches, padding_ratio
from llmops.rag.embedders.onnx_export import export
from llmops.rag.embedders.onnx_graph import Shape, fuse, quantize, quiet_onnxruntime
from llmops.rag.embedders.onnx_int8 import AVX2, VNNI, cpu_flags, int8_mode
from llmops.rag.embedders.onnx_runtime import OnnxEncoder
from llmops.rag.embedders.sentence_transformers import bundled_model_path

WINDOW, SLICE, BATCH = 512, 32, 4


def windows(chars: list[int], key: list[int]) -> list[list[int]]:
    """The model batches of an ingestion: windows of chunks, slices sorted by characters, then
    batches sorted by ``key`` inside each slice."""
    batches = []
    for start in range(0, len(chars), WINDOW):
        window = sorted(range(start, min(len(chars), start + WINDOW)), key=lambda i: -chars[i])
        for s in range(0, len(window), SLICE):
            part = window[s : s + SLICE]
            batches += [[part[i] for i in b] for b in length_batches([key[i] for i in part], BATCH)]
    return batches


def padding(texts: list[str], tokens: list[int]) -> dict[str, float]:
    chars = [len(t) for t in texts]
    return {
        "by_characters": round(padding_ratio(tokens, windows(chars, chars)), 4),
        "by_tokens": round(padding_ratio(tokens, windows(chars, tokens)), 4),
    }


def matmul_only(graph: Path, out: Path, extra: dict[str, Any] | None = None) -> None:
    """int8 of the MatMul weights only, 8-bit per channel (the recipe before QAttention)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with quiet_onnxruntime():
        quantize_dynamic(
            str(graph), str(out), weight_type=QuantType.QInt8, per_channel=True,
            op_types_to_quantize=["MatMul"], extra_options=extra or {},
        )  # fmt: skip


def recipes(folder: Path, tmp: Path) -> dict[str, Path]:
    export(folder, tmp, 256, "none", VNNI)  # the fp32 graph as exported: tmp/model.onnx
    raw, fused = tmp / "model.onnx", tmp / "fused.onnx"
    shape = Shape("bert", 12, 384)
    operators = fuse(raw, fused, shape)
    print(f"fused operators: {operators}", file=sys.stderr)
    files = {"fp32": raw, "fp32_fused": fused, "int8_before": tmp / "before.onnx"}
    matmul_only(raw, files["int8_before"])  # unfused: the recipe before fusion
    files["int8_fused_matmul_only"] = tmp / "fused_matmul.onnx"
    # the fused operators' outputs are untyped to ONNX's shape inference; all are float
    matmul_only(fused, files["int8_fused_matmul_only"], {"DefaultTensorType": 1})
    for mode in (VNNI, AVX2):
        files[f"int8_fused_{mode.name}"] = tmp / f"fused_{mode.name}.onnx"
        quantize(fused, files[f"int8_fused_{mode.name}"], mode)
    return files


def cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {
        "mean": round(float(c.mean()), 5),
        "p1": round(float(np.percentile(c, 1)), 5),
        "min": round(float(c.min()), 5),
    }


def timed(fn: Callable[[], np.ndarray], count: int) -> tuple[float, np.ndarray]:
    started = time.perf_counter()
    vectors = fn()
    return count / (time.perf_counter() - started), vectors


def as_ingestion(encoder: OnnxEncoder, texts: list[str]) -> np.ndarray:
    """Slices of 32 in character order, as the encoder thread hands them over."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for s in range(0, len(order), SLICE):
        picked = order[s : s + SLICE]
        out[picked] = encoder.encode([texts[i] for i in picked], BATCH, True)
    return out


def old_batching(encoder: OnnxEncoder, texts: list[str]) -> np.ndarray:
    """Batches of 4 cut in character order, each tokenized and padded on its own (before)."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for s in range(0, len(order), BATCH):
        picked = order[s : s + BATCH]
        out[picked] = encoder.encode([texts[i] for i in picked], BATCH, True)
    return out


def recipe_rounds(
    encoder: OnnxEncoder, files: dict[str, Path], texts: list[str], repeats: int
) -> tuple[list[dict[str, float]], dict[str, np.ndarray]]:
    """Chunks/s of each graph per round, and each graph's vectors."""
    final = f"int8_fused_{int8_mode(cpu_flags()).name}"
    runs = [*files, "old_batching"]
    rounds, vectors = [], {}
    for number in range(repeats):
        order = runs[number % len(runs) :] + runs[: number % len(runs)]
        speeds = {}
        for run in order:
            encoder.load(files[final if run == "old_batching" else run])
            batching = old_batching if run == "old_batching" else as_ingestion
            speeds[run], vectors[run] = timed(partial(batching, encoder, texts), len(texts))
            print(f"round {number + 1} {run}: {speeds[run]:.1f} chunks/s", file=sys.stderr)
        rounds.append(speeds)
    return rounds, vectors


def pipeline_rounds(source: Path, cache: Path, repeats: int) -> list[dict[str, float]]:
    """``rag.ingest()`` with the int8 backend: a call's batches side by side, one per core
    (``lanes``, now), or one after the other on all cores (``one_lane``, before)."""
    embedder = {
        "type": "sentence_transformers",
        "backend": "onnx",
        "quantize": "int8",
        "onnx_cache": str(cache),
    }
    rounds = []
    for number in range(repeats):
        speeds = {}
        for name in ["lanes", "one_lane"] if number % 2 == 0 else ["one_lane", "lanes"]:
            encoder = OnnxEncoder if name == "lanes" else OneLane
            with (
                tempfile.TemporaryDirectory() as tmp,
                patch.object(onnx_runtime, "OnnxEncoder", encoder),
            ):
                config = write_app(
                    Path(tmp), source, ["**/*.md"], chunker=CHUNKER, embedder=embedder
                )
                with RAG.from_config(config) as rag:
                    report = rag.ingest()
            speeds[name] = report.chunks_embedded / report.seconds
            print(f"pipeline round {number + 1} {name}: {speeds[name]:.1f} chunks/s",
                  file=sys.stderr)  # fmt: skip
        rounds.append(speeds)
    return rounds


class OneLane(OnnxEncoder):
    """The encoder before lanes: a call's batches one after the other, each on all cores."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs, lanes=1)


def summary(rounds: list[dict[str, float]], base: str) -> dict[str, Any]:
    return {
        "median_chunks_per_s": {k: round(median([r[k] for r in rounds]), 1) for k in rounds[0]},
        f"ratio_to_{base}": {
            k: round(median([r[k] / r[base] for r in rounds]), 3) for k in rounds[0]
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sample", type=int, default=4, help="time every n-th chunk")
    parser.add_argument("--no-pipeline", action="store_true")
    parser.add_argument("--graphs", nargs="+", help="time only these (int8_before always)")
    args = parser.parse_args()
    source = dataset("fastapi-docs") / "docs"
    folder = Path(bundled_model_path())
    with tempfile.TemporaryDirectory() as tmp:
        config = write_app(Path(tmp), source, ["**/*.md"], chunker=CHUNKER)
        with RAG.from_config(config) as rag:
            texts = chunk_texts(rag)
    from sentence_transformers import SentenceTransformer

    torch_model = SentenceTransformer(str(folder))
    sample = texts[:: args.sample]
    reference = torch_model.encode(sample, batch_size=8, normalize_embeddings=True)
    tokens = torch_model.tokenizer(texts, truncation=True, max_length=256)["input_ids"]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        encoder = OnnxEncoder(folder, cache, "int8")
        encoder.start()
        files = recipes(folder, Path(tmp))
        if args.graphs:
            files = {k: v for k, v in files.items() if k in {*args.graphs, "int8_before"}}
        rounds, vectors = recipe_rounds(encoder, files, sample, args.repeats)
        pipeline = [] if args.no_pipeline else pipeline_rounds(source, cache, args.repeats)
    emit(
        {
            "benchmark": "onnx_int8_steps",
            "machine": machine(),
            "chunks": len(texts),
            "timed_chunks": len(sample),
            "padding_per_real_token": padding(texts, [len(t) for t in tokens]),
            "recipes": summary(rounds, "int8_before"),
            "agreement_with_torch": {k: cosines(v, reference) for k, v in vectors.items()},
            "pipeline_int8": summary(pipeline, "one_lane") if pipeline else {},
            "rounds": rounds,
            "pipeline_rounds": pipeline,
        }
    )


if __name__ == "__main__":
    main()
