"""Fine-tuning an embedder on (question, passage) pairs: a real sentence-transformers training
run on a tiny random BERT, which must learn to put each question nearest its own passage, and
leave the model it started from untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from llmops.rag.embedders.training import EmbedderTraining, fine_tune
from tests.beir_data import CORPUS
from tests.tiny_models import build_tiny_bert

st = pytest.importorskip("sentence_transformers")

QUESTIONS = {
    "volc-1": "lava ash magma vent",
    "hike-2": "hikers trails crater rim",
    "bake-3": "sourdough yeast flour",
    "chess-4": "sicilian french defence openings",
}


def pairs() -> list[tuple[str, str]]:
    texts = {d["_id"]: f"{d['title']}\n{d['text']}" for d in CORPUS}
    return [(question, texts[doc]) for doc, question in QUESTIONS.items()]


def mean_reciprocal_rank(model: Path, examples: list[tuple[str, str]]) -> float:
    """Each question's own passage among all the passages, by cosine similarity."""
    encoder = st.SentenceTransformer(str(model), device="cpu")
    questions = encoder.encode([q for q, _ in examples], normalize_embeddings=True)
    passages = encoder.encode([p for _, p in examples], normalize_embeddings=True)
    similarity = np.asarray(questions) @ np.asarray(passages).T
    ranks = [1 + int((row > row[i]).sum()) for i, row in enumerate(similarity)]
    return float(np.mean([1.0 / r for r in ranks]))


def test_training_puts_each_question_nearest_its_passage(tmp_path: Path) -> None:
    base = build_tiny_bert(tmp_path / "base")
    before_files = {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()}
    examples = pairs()
    before = mean_reciprocal_rank(base, examples)
    training = EmbedderTraining(epochs=30, batch_size=4, learning_rate=1e-3)
    out = fine_tune(str(base), examples, tmp_path / "tuned", training)
    after = mean_reciprocal_rank(out, examples)
    assert before < 0.9 and after == 1.0, (before, after)
    assert {p.name: p.read_bytes() for p in base.iterdir() if p.is_file()} == before_files


def test_one_pair_is_refused_with_the_reason(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 2 labelled"):
        fine_tune("unused", pairs()[:1], tmp_path / "tuned")
