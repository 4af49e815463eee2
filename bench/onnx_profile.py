"""Where an exported embedder's time goes, per ONNX operator type (ONNX Runtime's own profiler).

    python bench/onnx_profile.py [--cache ~/.cache/llmops/onnx] [--batch 4] [--tokens 256]

Every export in the llmops ONNX cache (one folder per model, sequence length, quantization and
int8 weights; an ingestion with ``backend: onnx`` makes them) is run ``--runs`` times on a batch
of random token ids, full length, with the embedder's session settings (one thread: each batch
runs on a core of its own); the share of the operators' kernel time per operator type is
printed with the CPU's flags. bench/onnx_int8_steps.py times whole graphs; this says what
inside them costs.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnxruntime as ort
from common import emit, machine

from llmops.rag.embedders.onnx_runtime import session_options


def profile(graph: Path, batch: int, tokens: int, runs: int, prefix: Path) -> dict[str, float]:
    options = session_options(ort, 1)  # one batch per core: one thread each
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    ids = np.random.default_rng(0).integers(2_000, 20_000, size=(batch, tokens))
    feed = {
        "input_ids": ids,
        "token_type_ids": np.zeros_like(ids),
        "attention_mask": np.ones_like(ids),
    }
    names = {i.name for i in session.get_inputs()}
    for _ in range(runs):
        session.run(None, {k: v.astype(np.int64) for k, v in feed.items() if k in names})
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: Counter[str] = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
    total = sum(per_op.values())
    return {op: round(100 * t / total, 1) for op, t in per_op.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache/llmops/onnx")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--runs", type=int, default=12)
    args = parser.parse_args()
    exports = sorted(args.cache.glob("*/export.json"))
    if not exports:
        raise SystemExit(f"no ONNX exports in {args.cache}: ingest once with backend: onnx")
    shares = {}
    for manifest in exports:
        about = json.loads(manifest.read_text())
        name = f"{Path(about['model']).name} {about['quantize']} {about.get('weights', '')}".strip()
        prefix = manifest.parent / "profile"
        shares[name] = profile(
            manifest.parent / "model.onnx", args.batch, args.tokens, args.runs, prefix
        )
        for leftover in manifest.parent.glob("profile*.json"):
            leftover.unlink()
    emit(
        {
            "benchmark": "onnx_profile",
            "machine": machine(),
            "batch": args.batch,
            "tokens": args.tokens,
            "runs": args.runs,
            "kernel_time_share_percent": shares,
        }
    )


if __name__ == "__main__":
    main()
