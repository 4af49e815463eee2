"""`llmops eval retrieval --beir DIR` on a tiny BEIR folder, with the real bundled MiniLM, the
real BM25 index and a throwaway Chroma index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmops.build import load_config
from llmops.cli.main import app
from tests.beir_data import QUERIES, jsonl, write_beir
from tests.conftest import HASHING, ConfigWriter
from tests.eval_suite_data import write_suite
from tests.tiny_models import build_tiny_cross_encoder, tiny_bert_embedder

runner = CliRunner()
METRICS = {"ndcg@10", "recall@10", "recall@100", "mrr@10"}


def _metrics(output: str) -> dict[str, dict[str, float]]:
    body = json.loads(output)  # fails if anything but the one JSON object is on stdout
    for values in body.values():
        assert set(values) == METRICS
        assert all(0.0 <= v <= 1.0 for v in values.values())
    return body


def test_json_report_for_every_mode(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "tiny")
    result = runner.invoke(app, ["eval", "retrieval", "--beir", str(beir), "--json"])
    assert result.exit_code == 0, result.output
    body = _metrics(result.stdout)
    assert list(body) == ["dense", "bm25", "hybrid"]  # no reranker configured
    # Each query's words occur only in the documents judged relevant to it, and the grade-2
    # document of q1 holds all three of its words while the grade-1 one holds one: BM25 must
    # rank every query's documents in the ideal order, which is nDCG@10 = 1 and MRR@10 = 1.
    assert body["bm25"]["ndcg@10"] == pytest.approx(1.0)
    assert body["bm25"]["mrr@10"] == pytest.approx(1.0)
    assert body["bm25"]["recall@10"] == pytest.approx(1.0)
    # recall@100 reaches every document of an 8-document corpus in any mode
    assert all(values["recall@100"] == pytest.approx(1.0) for values in body.values())
    assert "ingest (documents)" in result.stderr and "hybrid (queries)" in result.stderr


def test_table_limit_and_chosen_modes(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "tiny")
    args = ["eval", "retrieval", "--beir", str(beir), "--limit", "2", "-m", "bm25", "-m", "dense"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    table = result.stdout
    assert "ndcg@10" in table and "p50 ms" in table
    assert "bm25" in table and "dense" in table and "hybrid" not in table
    assert "2 queries, 8 documents" in table  # 2 of the 4 judged queries


def test_both_fusions_side_by_side_on_one_index(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "tiny")
    args = ["eval", "retrieval", "--beir", str(beir), "--json", "-m", "hybrid_rrf"]
    fusions = ["-m", "hybrid_weighted", "-m", "hybrid_adaptive", "-m", "hybrid"]
    result = runner.invoke(app, [*args, *fusions])
    assert result.exit_code == 0, result.output
    body = _metrics(result.stdout)
    assert list(body) == ["hybrid_rrf", "hybrid_weighted", "hybrid_adaptive", "hybrid"]
    assert body["hybrid_adaptive"] == body["hybrid"]  # adaptive is the default fusion
    assert result.stderr.count("ingest (documents)") == 1


def test_rerank_mode_with_a_configured_cross_encoder(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    model = build_tiny_cross_encoder(tmp_path / "tiny-ce")
    config = write_config(embedder=HASHING, reranker={"type": "cross_encoder", "model": str(model)})
    beir = write_beir(tmp_path / "tiny")
    args = ["eval", "retrieval", "--beir", str(beir), "-c", str(config), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert list(_metrics(result.stdout)) == ["dense", "bm25", "hybrid", "rerank"]


def test_mode_the_config_cannot_run(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "tiny")
    result = runner.invoke(app, ["eval", "retrieval", "--beir", str(beir), "-m", "rerank"])
    assert result.exit_code == 1
    assert "mode 'rerank' needs a 'reranker:' section" in result.stderr
    result = runner.invoke(app, ["eval", "retrieval", "--beir", str(beir), "-m", "bm26"])
    assert result.exit_code == 1
    assert "unknown mode 'bm26'; allowed: dense, bm25, hybrid, rerank" in result.stderr


def test_bad_folder_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "retrieval", "--beir", str(tmp_path / "nope"), "--json"])
    assert result.exit_code == 1
    assert "not a folder; a BEIR folder holds corpus.jsonl, queries.jsonl" in result.stderr
    assert result.stdout == ""
    broken = write_beir(tmp_path / "broken", queries='{"_id": "q1", "text": "ok"}\n{"_id": 2,\n')
    result = runner.invoke(app, ["eval", "retrieval", "--beir", str(broken)])
    assert result.exit_code == 1
    assert "queries.jsonl:2: invalid JSON" in result.stderr


TRAINING = {
    "t1": ("chess openings defence", "chess-4"),
    "t2": ("honeybees nectar pollen", "bees-6"),
    "t3": ("icy comets tails", "comet-5"),
    "t4": ("ocean tides moon", "tide-8"),
    "t5": ("jazz musicians improvise", "jazz-7"),
    "t6": ("hikers trails crater", "hike-2"),
    "t7": ("wild yeast flour", "bake-3"),
    "t8": ("magma vent ash", "volc-1"),
}


def with_train_split(root: Path) -> Path:
    """The tiny folder with two judged test queries and eight training queries."""
    texts = [{"_id": q, "text": text} for q, (text, _) in TRAINING.items()]
    beir = write_beir(
        root,
        queries=jsonl([*QUERIES, *texts]),
        qrels="q1\tvolc-1\t2\nq1\thike-2\t1\nq2\tbake-3\t2\n",
    )
    train = "".join(f"{q}\t{doc}\t1\n" for q, (_, doc) in TRAINING.items())
    return write_beir(beir, queries=jsonl([*QUERIES, *texts]), qrels=train, split="train")


def test_tune_on_train_tests_on_test_and_writes_a_valid_section(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    # An 8-dimension hashing embedder makes dense search near random, while BM25 ranks every
    # query's documents ideally: tuning from the config's dense mode on eight training
    # queries must find a setting that is significantly better there, and perfect on the
    # queries it did not see.
    config = write_config(
        embedder={"type": "hashing", "dimension": 8}, retrieval={"mode": "dense", "top_k": 5}
    )
    beir = with_train_split(tmp_path / "tiny")
    args = ["eval", "retrieval", "--beir", str(beir), "-c", str(config), "--tune", "--json"]
    result = runner.invoke(app, [*args, "--split", "train", "--write", str(config)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["tuned_on"] == "train (8 queries)" and body["evaluated_on"] == "test (2)"
    assert body["best_trial_on_tuning_queries"]["p_value"] < 0.05
    gain = body["ndcg@10"]
    assert gain["mean_a"] < 1.0 and gain["mean_b"] == pytest.approx(1.0)
    assert gain["diff"] == pytest.approx(gain["mean_b"] - gain["mean_a"])
    assert gain["low"] <= gain["diff"] <= gain["high"]
    assert body["chosen"]["top_k"] == 5 and body["chosen"]["mode"] != "dense"
    written = load_config(config).loaded.app  # the edited config validates
    assert written.retrieval.model_dump(include=set(body["chosen"])) == body["chosen"]
    assert written.embedder.type == "hashing"  # the rest of the config is kept


def test_tune_fine_tunes_the_embedder_and_chooses_on_queries_it_did_not_train_on(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    st = pytest.importorskip("sentence_transformers")
    embedder = tiny_bert_embedder(tmp_path / "tiny-bert")
    config = write_config(embedder=embedder, retrieval={"top_k": 5})
    beir = with_train_split(tmp_path / "tiny")
    out = tmp_path / "tuned-embedder"
    args = ["eval", "retrieval", "--beir", str(beir), "-c", str(config), "--tune", "--json"]
    args += ["--split", "train", "--train-embedder", str(out), "--epochs", "1"]
    result = runner.invoke(app, [*args, "--write", str(config)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    chose = "train (6 queries fine-tuned the embedder, the other 2 chose it and the setting)"
    assert body["tuned_on"] == chose and body["evaluated_on"] == "test (2)"
    assert body["best_trial_on_tuning_queries"]["n"] == 2
    assert body["embedder_on_tuning_queries"]["n"] == 2
    written = load_config(config).loaded.app.embedder.model_dump()
    if body["embedder"] is None:  # the app's embedder kept: the config's section is untouched
        assert written == embedder and not out.exists()
    else:
        assert written == body["embedder"] == {**embedder, "model": str(out.resolve())}
        tuned = st.SentenceTransformer(str(out), device="cpu")  # a folder the embedder loads
        assert tuned.get_embedding_dimension() == 32


def test_train_embedder_needs_tune_beir_and_a_sentence_transformers_embedder(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    beir = with_train_split(tmp_path / "tiny")
    hashing = write_config(embedder=HASHING)
    args = ["eval", "retrieval", "--beir", str(beir), "-c", str(hashing), "--split", "train"]
    result = runner.invoke(app, [*args, "--train-embedder", str(tmp_path / "out")])
    assert result.exit_code == 2 and "--train-embedder needs --tune --beir" in result.output
    result = runner.invoke(app, [*args, "--tune", "--train-embedder", str(tmp_path / "out")])
    assert result.exit_code == 1 and not (tmp_path / "out").exists()
    assert "fine-tunes a sentence_transformers embedder" in result.stderr
    assert "uses 'hashing'" in result.stderr


def test_tune_holds_out_part_of_a_single_split(tmp_path: Path) -> None:
    beir = write_beir(tmp_path / "tiny")
    result = runner.invoke(app, ["eval", "retrieval", "--beir", str(beir), "--tune"])
    assert result.exit_code == 0, result.output
    assert "tuned on test, 3 queries" in result.stdout
    assert "gain (95% CI)" in result.stdout and "retrieval:" in result.stdout
    result = runner.invoke(app, ["eval", "retrieval", "--beir", str(beir), "--write", "x.yaml"])
    assert result.exit_code == 2 and "--write needs --tune" in result.output


def test_tune_on_an_eval_suite_holds_out_a_third_and_keeps_a_chance_gain_out(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    # dense search on an 8-dimension hashing embedder is near random, BM25 finds the suite's
    # documents: the best setting beats the config's on the tuning questions, but three
    # questions cannot make that significant, so the config's setting is kept
    config = write_config(
        embedder={"type": "hashing", "dimension": 8}, retrieval={"mode": "dense", "top_k": 2}
    )
    suite = write_suite(tmp_path, config)
    result = runner.invoke(app, ["eval", "retrieval", "--suite", str(suite), "--tune", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["tuned_on"] == "tiny, 3 queries"
    assert body["evaluated_on"] == "tiny, the 1 other queries (held out)"
    best = body["best_trial_on_tuning_queries"]
    assert best["mean_b"] > best["mean_a"] and best["n"] == 3 and best["p_value"] >= 0.05
    assert body["chosen"]["mode"] == "dense"  # kept
    assert body["ndcg@10"]["diff"] == 0.0 and body["ndcg@10"]["n"] == 1


def test_tune_on_a_suite_needs_bm25_and_suite_needs_tune(
    tmp_path: Path, write_config: ConfigWriter
) -> None:
    dense_only = write_config(embedder=HASHING, sparse=None, retrieval={"mode": "dense"})
    suite = write_suite(tmp_path, dense_only)
    result = runner.invoke(app, ["eval", "retrieval", "--suite", str(suite), "--tune"])
    assert result.exit_code == 1
    assert "add a 'sparse: {type: bm25}' section" in result.stderr
    result = runner.invoke(app, ["eval", "retrieval", "--suite", str(suite)])
    assert result.exit_code == 2 and "--suite needs --tune" in result.output
    result = runner.invoke(app, ["eval", "retrieval", "--tune"])
    assert result.exit_code == 2 and "give one of --beir FOLDER and --suite SUITE" in result.output
