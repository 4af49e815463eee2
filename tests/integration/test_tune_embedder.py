"""Tuning with a fine-tuned embedder, end to end on a tiny BEIR folder: a random tiny BERT
ranks nothing, the fine-tuned one has learnt the tuning queries, so it is chosen on queries
its first training never saw, then trained again on all of them and saved."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.pipelines.tune_embedder import EmbedderTuning, tune_beir_with_embedder
from llmops.pipelines.tune_retrieval import BeirTuning
from llmops.rag.embedders.training import EmbedderTraining
from tests.beir_data import QUERIES, jsonl, write_beir
from tests.conftest import ConfigWriter
from tests.tiny_models import tiny_bert_embedder

pytestmark = pytest.mark.slow

TOPICS = {
    "chess-4": "chess openings defence",
    "bees-6": "honeybees nectar pollen",
    "comet-5": "icy comets tails",
    "tide-8": "ocean tides moon",
    "jazz-7": "jazz musicians improvise",
    "hike-2": "hikers trails crater",
    "bake-3": "wild yeast flour",
    "volc-1": "magma vent ash",
}


def test_a_fine_tuned_embedder_that_learnt_the_queries_is_chosen_refit_and_saved(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    st = pytest.importorskip("sentence_transformers")
    embedder = tiny_bert_embedder(tmp_path / "tiny-bert")
    config = write_config(embedder=embedder, retrieval={"mode": "dense", "top_k": 5})
    # each training question asked twice: whichever copy is held out to choose on, its twin
    # was in the first training (the held-out share is a seeded random quarter)
    training = {
        f"t{i}{copy}": (text, doc) for i, (doc, text) in enumerate(TOPICS.items()) for copy in "ab"
    }
    texts = [{"_id": q, "text": text} for q, (text, _) in training.items()]
    beir = write_beir(tmp_path / "tiny", queries=jsonl([*QUERIES, *texts]))
    train = "".join(f"{q}\t{doc}\t1\n" for q, (_, doc) in training.items())
    write_beir(beir, queries=jsonl([*QUERIES, *texts]), qrels=train, split="train")
    out = tmp_path / "tuned"
    fast = EmbedderTraining(epochs=20, batch_size=4, learning_rate=1e-3)
    source = BeirTuning(beir, config, split="train")
    report = tune_beir_with_embedder(source, EmbedderTuning(out, fast))
    gain = report.embedder_gain
    assert gain is not None and gain.n == 4 and gain.mean_b > gain.mean_a
    assert report.embedder_section == {**embedder, "model": str(out.resolve())}
    assert report.tuned_on == (
        "train (12 queries fine-tuned the embedder, the other 4 chose it and the setting)"
    )
    assert st.SentenceTransformer(str(out), device="cpu").get_embedding_dimension() == 32
    assert report.comparison.n == 4  # the test queries, which neither training saw
