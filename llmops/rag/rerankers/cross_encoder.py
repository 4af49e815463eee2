"""sentence-transformers ``CrossEncoder`` reranker, loaded from a local model folder.

A cross-encoder reads the query and a passage together, so it judges relevance far better than
comparing two separately made vectors, at the cost of one transformer pass per candidate: it
re-scores only the ``top_n`` best fused candidates of a search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from llmops.config import resolve_path
from llmops.deps import require
from llmops.errors import ComponentError
from llmops.registry import register
from llmops.types import ScoredChunk

DOWNLOAD_HINT = (
    "download a cross-encoder on a machine with internet (e.g. `hf download "
    "cross-encoder/ms-marco-MiniLM-L-6-v2 --local-dir models/ms-marco-MiniLM-L-6-v2`), "
    "copy the folder here and point reranker.model at it; nothing is downloaded"
)


@register(
    "reranker",
    "cross_encoder",
    summary="sentence-transformers cross-encoder from a local folder (none is bundled)",
    extra="rag",
    requires=("sentence_transformers",),
)
class CrossEncoderReranker:
    """Re-scores hits with a cross-encoder; ``ScoredChunk.score`` becomes its probability.

    Scores are the sigmoid of the model's logit, in (0, 1), not the raw logit: logits of
    different models live on different scales (ms-marco MiniLM spans roughly -11..+11), while a
    probability can be thresholded the same way for any model trained with a binary relevance
    loss (0.5: more likely relevant than not) and fits ``retrieval.score_threshold``'s range.
    Ranking uses the logit itself, so candidates whose probabilities round to the same float
    stay in the model's order; equal logits keep their input (fused) order.
    """

    class Config(BaseModel):
        model_config = ConfigDict(extra="forbid")
        model: str = Field(
            description="Local cross-encoder folder (relative to the config file); "
            "nothing is downloaded."
        )
        top_n: int = Field(
            30, ge=1, le=1000, description="How many fused candidates the cross-encoder re-scores."
        )
        batch_size: int = Field(32, ge=1, le=1024)
        max_length: int | None = Field(
            None,
            ge=8,
            description="Cap on query + passage tokens (default: the model's limit).",
        )
        device: str = Field("cpu", description="cpu, cuda, cuda:0, mps ...")

    def __init__(self, config: Config, *, base_dir: Path) -> None:
        self.config = config
        self.top_n = config.top_n
        self._base_dir = base_dir
        self._model: Any = None

    def model_folder(self) -> Path:
        """The model folder; raises ComponentError when it is missing or holds no model."""
        path = resolve_path(self._base_dir, self.config.model)
        if not path.is_dir():
            raise ComponentError(f"reranker.model: model folder not found: {path}; {DOWNLOAD_HINT}")
        if not (path / "config.json").is_file():
            raise ComponentError(f"reranker.model: not a model folder (no config.json): {path}")
        return path

    def start(self) -> None:
        if self._model is not None:
            return
        st = require("sentence_transformers", "rag")
        require("transformers", "rag").utils.logging.disable_progress_bar()
        self._model = st.CrossEncoder(
            str(self.model_folder()),
            device=self.config.device,
            max_length=self.config.max_length,
            local_files_only=True,
            # logits out; rerank applies the sigmoid itself (see the class docstring)
            activation_fn=require("torch", "rag").nn.Identity(),
        )

    def close(self) -> None:
        self._model = None

    def logits(self, query: str, texts: Sequence[str]) -> list[float]:
        """The model's raw relevance logit for each (query, text) pair."""
        if self._model is None:
            raise RuntimeError("reranker not started: call start() first")
        scores = self._model.predict(
            [(query, text) for text in texts],
            batch_size=self.config.batch_size,
            show_progress_bar=False,
            convert_to_numpy=True,
        )
        return [float(s) for s in scores]

    def rerank(self, query: str, hits: Sequence[ScoredChunk], top_k: int) -> list[ScoredChunk]:
        """The best ``top_k`` of ``hits`` by cross-encoder score, best first."""
        if not hits or top_k <= 0:
            return []
        logits = self.logits(query, [hit.chunk.text for hit in hits])
        order = sorted(range(len(hits)), key=lambda i: -logits[i])  # stable: ties keep order
        # replace() keeps each hit's cosine similarity, which abstention reads
        return [replace(hits[i], score=_sigmoid(logits[i])) for i in order[:top_k]]


def _sigmoid(logit: float) -> float:
    # float64 saturates only beyond |logit| ~ 37; the branch avoids overflow in exp
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    z = math.exp(logit)
    return z / (1.0 + z)
