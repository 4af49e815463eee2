"""Export a sentence-transformers model's transformer to ONNX once, and cache it.

The export runs locally from the configured model folder (nothing is downloaded):
``torch.onnx.export`` (the classic TorchScript exporter, dynamic batch and sequence axes) of
the transformer alone — pooling and normalisation run in numpy afterwards. For ``int8`` the
graph is then quantized dynamically: int8 weights per output channel, MatMul nodes only.
Measured on MiniLM, 2 cores, 256-token FastAPI-docs chunks (chunks/s, mean cosine to torch):
this recipe 78, 0.993; per-tensor weights as fast, 0.93 (too far); Gather and Attention
quantized too: no faster, a little less close; uint8 weights 5x slower; ONNX Runtime's offline
transformer fusion first: no faster in fp32 (the session's own optimizer fuses as much), and
in int8 it hid the attention projections from the quantizer (61 chunks/s).
Every export is checked against torch on a few probe sentences before it is kept.

The cache holds one folder per (model folder identity, max_seq_length, quantize, exporter
version). A folder is written under a temporary name and renamed when complete, so a killed
export never leaves a broken cache entry.
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np

from llmops.deps import require
from llmops.errors import ComponentError

Quantize = Literal["none", "int8"]
EXPORTER_VERSION = 2  # part of the cache key: bump when exports change
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


def folder_identity(folder: Path) -> str:
    """A cheap identity of a model folder: every file's relative path, size and mtime (hashing
    90 MB of weights at each start would cost more than it protects against)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_entry(cache: Path, folder: Path, max_seq_length: int, quantize: Quantize) -> Path:
    """The cache folder for this model and these settings (it may not exist yet)."""
    parts = [folder_identity(folder), str(max_seq_length), quantize, str(EXPORTER_VERSION)]
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return cache / f"{folder.name}-{quantize}-{key}"


def ensure_exported(
    folder: Path, cache: Path, max_seq_length: int, quantize: Quantize
) -> tuple[Path, bool]:
    """The cached ONNX file for the model in ``folder``, exporting it first if needed.
    Returns the file and whether this call exported it."""
    entry = cache_entry(cache, folder, max_seq_length, quantize)
    if (entry / MODEL_FILE).is_file():
        return entry / MODEL_FILE, False
    cache.mkdir(parents=True, exist_ok=True)
    _drop_stale_temps(cache)
    log.warning("exporting %s to ONNX (%s) into %s (once)", folder, quantize, entry)
    temp = Path(tempfile.mkdtemp(prefix=".export-", dir=cache))
    try:
        meta = export(folder, temp, max_seq_length, quantize)
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


def export(folder: Path, target: Path, max_seq_length: int, quantize: Quantize) -> dict[str, Any]:
    """Write ``target/model.onnx`` for the transformer in ``folder``; returns what was done."""
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
    if quantize == "int8":
        _quantize(raw, final)
        raw.unlink()
    else:
        raw.replace(final)
    if not _agrees(final, probe, names, expected, quantize):
        raise ComponentError(
            f"embedder: the ONNX export of {folder} does not reproduce the torch model's "
            "vectors; use backend: torch for this model"
        )
    return {
        "model": str(folder),
        "max_seq_length": max_seq_length,
        "quantize": quantize,
        "inputs": names,
        "exporter_version": EXPORTER_VERSION,
        "onnxruntime": require("onnxruntime", "onnx").__version__,
        "seconds": round(time.perf_counter() - started, 1),
    }


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


@contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """The quantizer logs advice meant for its developers on the root logger; an export is one
    step for our users, announced by one line."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _quantize(graph: Path, out: Path) -> None:
    quantization = require("onnxruntime.quantization", "onnx")
    with _quiet_onnxruntime():
        quantization.quantize_dynamic(
            str(graph),
            str(out),
            weight_type=quantization.QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
        )


def _agrees(
    path: Path, encoding: Any, names: Sequence[str], expected: np.ndarray, quantize: Quantize
) -> bool:
    ort = require("onnxruntime", "onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {n: np.asarray(encoding[n], dtype=np.int64) for n in names}
    hidden = session.run(None, feeds)[0]
    vectors = _mean_normalised(hidden, feeds["attention_mask"])
    return bool((vectors * expected).sum(1).min() >= MIN_COSINE[quantize])
