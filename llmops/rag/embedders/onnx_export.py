"""Export a sentence-transformers model's transformer to ONNX once, and cache it.

The export runs locally from the configured model folder (nothing is downloaded):
``torch.onnx.export`` (the classic TorchScript exporter, dynamic batch and sequence axes) of
the transformer alone — pooling and normalisation run in numpy afterwards. For ``int8`` the
graph's transformer operators are then fused (``onnx_graph.fuse``: Attention,
SkipLayerNormalization, BiasGelu, EmbedLayerNormalization) and the MatMul and Attention weights
quantized dynamically, per output channel, in the weight range the CPU's instruction set calls
for (``onnx_int8``: 7-bit weights where AVX2 without VNNI would saturate).
Measured before (MiniLM, 2 cores, 256-token FastAPI-docs chunks, chunks/s, mean cosine to
torch): per-channel MatMul only, unfused, 78, 0.993; per-tensor weights as fast, 0.93 (too
far); uint8 weights 5x slower; fusion with a MatMul-only quantizer 61 (it leaves the
projections inside Attention nodes in fp32), hence Attention is quantized too (QAttention).
With this recipe (bench/onnx_int8_steps.py, 130 chunks): mean cosine 0.9937 with 8-bit
weights, 0.9915 with 7-bit; speed against the unfused recipe could not be told apart on a
machine loaded 10-17 (ratios 0.93-1.09 within round-to-round noise): see docs/benchmarks.md.
fp32 stays unfused: the session's own optimizer fuses as much at load.
Every export is checked against torch on a few probe sentences before it is kept.

The cache holds one folder per (model folder identity, max_seq_length, quantize, int8 weight
range, exporter version). A folder is written under a temporary name and renamed when complete,
so a killed export never leaves a broken cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmops.deps import require
from llmops.errors import ComponentError
from llmops.model_files import content_identity
from llmops.rag.embedders.onnx_graph import Shape, fuse
from llmops.rag.embedders.onnx_graph import quantize as quantize_graph
from llmops.rag.embedders.onnx_int8 import Int8Mode, cpu_flags, int8_mode

Quantize = Literal["none", "int8"]
EXPORTER_VERSION = 3  # part of the cache key: bump when exports change
MODEL_FILE = "model.onnx"
OPSET = 17
PROBES = (
    "How do I restore a backup?",
    "Dependency injection lets a path operation declare what it needs; FastAPI provides it.",
    "x",
)
MIN_COSINE = {"none": 0.9999, "int8": 0.95}
STALE_TEMP_S = 3600

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/llmops/onnx``, or ``~/.cache/llmops/onnx``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmops" / "onnx"


def weight_range(quantize: Quantize, mode: Int8Mode | None = None) -> str:
    """The cache key's name for the weights: fp32, or the int8 mode (this CPU's by default)."""
    if quantize == "none":
        return "fp32"
    return (mode or int8_mode(cpu_flags())).name


def cache_entry(
    cache: Path, folder: Path, max_seq_length: int, quantize: Quantize, mode: Int8Mode | None = None
) -> Path:
    """The cache folder for this model and these settings (it may not exist yet); ``mode``:
    the int8 mode, this CPU's by default."""
    weights = weight_range(quantize, mode)
    parts = [content_identity(folder), str(max_seq_length), weights, str(EXPORTER_VERSION)]
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return cache / f"{folder.name}-{quantize}-{key}"


def ensure_exported(
    folder: Path, cache: Path, max_seq_length: int, quantize: Quantize
) -> tuple[Path, bool]:
    """The cached ONNX file for the model in ``folder``, exporting it first if needed.
    Returns the file and whether this call exported it."""
    mode = int8_mode(cpu_flags())
    entry = cache_entry(cache, folder, max_seq_length, quantize, mode)
    if (entry / MODEL_FILE).is_file():
        return entry / MODEL_FILE, False
    cache.mkdir(parents=True, exist_ok=True)
    _drop_stale_temps(cache)
    log.warning("exporting %s to ONNX (%s) into %s (once)", folder, quantize, entry)
    temp = Path(tempfile.mkdtemp(prefix=".export-", dir=cache))
    try:
        meta = export(folder, temp, max_seq_length, quantize, mode)
        (temp / "export.json").write_text(json.dumps(meta, indent=2))
        try:
            temp.rename(entry)
        except OSError:  # another process finished the same export first: keep theirs
            if not (entry / MODEL_FILE).is_file():
                raise
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return entry / MODEL_FILE, True


def _drop_stale_temps(cache: Path) -> None:
    """Remove the temporary folders of exports killed long ago."""
    now = time.time()
    for temp in cache.glob(".export-*"):
        if now - temp.stat().st_mtime > STALE_TEMP_S:
            shutil.rmtree(temp, ignore_errors=True)


def export(
    folder: Path, target: Path, max_seq_length: int, quantize: Quantize, mode: Int8Mode
) -> dict[str, Any]:
    """Write ``target/model.onnx`` for the transformer in ``folder`` (int8 weights in ``mode``'s
    range); returns what was done."""
    started = time.perf_counter()
    transformers = require("transformers", "rag")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    # eager attention: the plain pattern ONNX Runtime's graph optimizer recognises
    model = transformers.AutoModel.from_pretrained(str(folder), attn_implementation="eager")
    model.eval()
    probe = tokenizer(list(PROBES), padding=True, truncation=True, max_length=max_seq_length)
    names = [n for n in tokenizer.model_input_names if n in probe]
    expected = _torch_vectors(model, probe, names)
    raw = target / "raw.onnx"
    _torch_export(model, probe, names, raw)
    final = target / MODEL_FILE
    fused: dict[str, int] = {}
    if quantize == "int8":
        fused = fuse(raw, target / "fused.onnx", _shape(model.config))
        quantize_graph(target / "fused.onnx", final, mode)
        (target / "fused.onnx").unlink()
        raw.unlink()
    else:
        raw.replace(final)
    agreement = _agreement(final, probe, names, expected)
    if agreement < MIN_COSINE[quantize]:
        raise ComponentError(
            f"embedder: the ONNX export of {folder} does not reproduce the torch model's "
            f"vectors (cosine {agreement:.4f} < {MIN_COSINE[quantize]}); use backend: torch "
            "for this model"
        )
    return {
        "model": str(folder),
        "max_seq_length": max_seq_length,
        "quantize": quantize,
        "weights": weight_range(quantize, mode),
        "weights_reason": mode.reason if quantize == "int8" else "",
        "fused_operators": fused,
        "probe_min_cosine": round(agreement, 5),
        "inputs": names,
        "exporter_version": EXPORTER_VERSION,
        "onnxruntime": require("onnxruntime", "onnx").__version__,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _shape(config: Any) -> Shape:
    return Shape(
        str(getattr(config, "model_type", "")),
        int(getattr(config, "num_attention_heads", 0)),
        int(getattr(config, "hidden_size", 0)),
    )


def _tensors(encoding: Any, names: Sequence[str]) -> list[Any]:
    torch = require("torch", "rag")
    return [torch.tensor(encoding[n], dtype=torch.int64) for n in names]


def _torch_vectors(model: Any, encoding: Any, names: Sequence[str]) -> np.ndarray:
    torch = require("torch", "rag")
    with torch.no_grad():
        hidden = model(**dict(zip(names, _tensors(encoding, names), strict=True)))[0]
    return _mean_normalised(hidden.numpy(), np.asarray(encoding["attention_mask"]))


def _mean_normalised(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    vectors = (hidden * weights).sum(1) / np.clip(weights.sum(1), 1e-9, None)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _torch_export(model: Any, encoding: Any, names: list[str], path: Path) -> None:
    torch = require("torch", "rag")
    require("onnx", "onnx")

    class LastHiddenState(torch.nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: Any) -> Any:
            return self.model(**dict(zip(names, inputs, strict=True)))[0]

    axes = {n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        torch.onnx.export(
            LastHiddenState(),
            tuple(_tensors(encoding, names)),
            str(path),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _agreement(path: Path, encoding: Any, names: Sequence[str], expected: np.ndarray) -> float:
    """The lowest cosine between the ONNX model's and torch's vectors of the probes."""
    ort = require("onnxruntime", "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: np.asarray(encoding[n], dtype=np.int64) for n in names}
    hidden = session.run(None, feeds)[0]
    vectors = _mean_normalised(hidden, feeds["attention_mask"])
    return float((vectors * expected).sum(1).min())
