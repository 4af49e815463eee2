"""A model-free embedder: feature-hashed bag of words (with bigrams), L2-normalised.

Deterministic and instant, so it suits tests, CI smoke runs and lexical baselines. It knows
no synonyms; use a sentence-transformers model for real semantic search.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from llmops.protocols import Vectors
from llmops.registry import register

_WORD = re.compile(r"\w+")


@register("embedder", "hashing", summary="feature-hashed bag of words; no model (tests, smoke)")
class HashingEmbedder:
    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        dimension: int = Field(256, ge=8, le=8192)
        max_seq_length: int = Field(512, ge=8)

    def __init__(self, config: Config, **_: object) -> None:
        self.config = config
        self.dimension = config.dimension
        self.max_seq_length = config.max_seq_length
        self.fingerprint = f"hashing-{config.dimension}"

    def start(self) -> None:
        return None

    def close(self) -> None:
        return None

    def _vector(self, text: str) -> Vectors:
        words = _WORD.findall(text.lower())
        vector = np.zeros(self.dimension, dtype=np.float32)
        for feature in [*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))]:
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dimension
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return (
            np.stack([self._vector(t) for t in texts])
            if texts
            else np.zeros((0, self.dimension), np.float32)
        )

    def embed_queries(self, texts: Sequence[str]) -> Vectors:
        return self.embed_documents(texts)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(_WORD.findall(t)) for t in texts]
