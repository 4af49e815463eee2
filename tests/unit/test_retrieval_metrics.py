"""Ranking metrics against values worked out by hand (trec_eval definitions)."""

from __future__ import annotations

import math

import pytest

from llmops.evaluation.retrieval_metrics import evaluate, parse_metric, per_query

LOG2_3 = math.log2(3)  # 1.5849625: the discount at rank 2
LOG2_5 = math.log2(5)  # 2.3219281: the discount at rank 4

GRADED = {"q1": {"d1": 2, "d2": 1, "d3": 0}}
RUN = {"q1": ["d3", "d1", "d4", "d2"]}


def test_graded_ndcg_uses_the_relevance_as_gain() -> None:
    # DCG@10  = 0 (d3, judged 0) + 2/log2(3) (d1 at rank 2) + 0 (d4) + 1/log2(5) (d2 at rank 4)
    #         = 1.2618595 + 0.4306766 = 1.6925361
    # IDCG@10 = 2/log2(2) + 1/log2(3) = 2 + 0.6309298 = 2.6309298   (grades 2, 1 sorted)
    # nDCG@10 = 1.6925361 / 2.6309298 = 0.6433224
    scores = per_query(RUN, GRADED, ["ndcg@10"])["q1"]
    assert scores["ndcg@10"] == pytest.approx((2 / LOG2_3 + 1 / LOG2_5) / (2 + 1 / LOG2_3))
    assert scores["ndcg@10"] == pytest.approx(0.6433224, abs=1e-7)


def test_cut_offs_apply_to_the_run_and_to_the_ideal_ranking() -> None:
    scores = per_query(RUN, GRADED, ["ndcg@1", "ndcg@2", "recall@2", "recall@10", "precision@2"])
    q1 = scores["q1"]
    assert q1["ndcg@1"] == 0.0  # rank 1 is d3, judged 0
    # DCG@2 = 2/log2(3) = 1.2618595; IDCG@2 = 2 + 1/log2(3) = 2.6309298 -> 0.4796249
    assert q1["ndcg@2"] == pytest.approx(0.4796249, abs=1e-7)
    assert q1["recall@2"] == 0.5  # d1 of {d1, d2}
    assert q1["recall@10"] == 1.0
    assert q1["precision@2"] == 0.5  # d3 (judged 0) and d1


def test_mrr_is_the_first_relevant_rank_within_the_cut_off() -> None:
    assert per_query(RUN, GRADED, ["mrr@10"])["q1"]["mrr@10"] == 0.5  # d1 at rank 2; d3 is 0
    assert per_query(RUN, GRADED, ["mrr@1"])["q1"]["mrr@1"] == 0.0
    late = {"q1": [f"x{i}" for i in range(10)] + ["d2"]}  # the only relevant hit at rank 11
    scores = per_query(late, GRADED, ["mrr@10", "recall@10", "recall@100", "ndcg@10"])["q1"]
    assert scores == {"mrr@10": 0.0, "recall@10": 0.0, "recall@100": 0.5, "ndcg@10": 0.0}


def test_ties_in_relevance_do_not_depend_on_order_and_repeats_count_once() -> None:
    qrels = {"q": {"a": 1, "b": 1}}
    assert evaluate({"q": ["a", "b"]}, qrels, ["ndcg@10"])["ndcg@10"] == pytest.approx(1.0)
    assert evaluate({"q": ["b", "a"]}, qrels, ["ndcg@10"])["ndcg@10"] == pytest.approx(1.0)
    # DCG = 1/log2(3) + 1/log2(4) = 0.6309298 + 0.5 = 1.1309298; IDCG = 1 + 0.6309298
    # = 1.6309298 -> 0.6934264
    shifted = evaluate({"q": ["x", "a", "b"]}, qrels, ["ndcg@10"])["ndcg@10"]
    assert shifted == pytest.approx(0.6934264, abs=1e-7)
    # "a" twice is "a" once: otherwise DCG = 1 + 0.63 + 0.5 would exceed the ideal 1.63
    repeated = evaluate({"q": ["a", "a", "b"]}, qrels, ["ndcg@10", "recall@2"])
    assert repeated == {"ndcg@10": pytest.approx(1.0), "recall@2": 1.0}


def test_negative_relevance_is_not_relevant() -> None:
    qrels = {"q": {"bad": -1, "good": 1}}
    # DCG = 0 + 1/log2(3) = 0.6309298; IDCG = 1 (only "good" has a gain)
    scores = evaluate({"q": ["bad", "good"]}, qrels, ["ndcg@10", "mrr@10", "recall@1"])
    assert scores == {"ndcg@10": pytest.approx(1 / LOG2_3), "mrr@10": 0.5, "recall@1": 0.0}


def test_missing_and_unjudged_queries() -> None:
    qrels = {
        "q1": {"d1": 1},
        "q2": {"d2": 2},  # not in the run: scores 0
        "q3": {"d3": 0},  # no relevant document: skipped, as trec_eval does
    }
    run = {"q1": ["d1"], "q3": ["d3"], "q4": ["d9"]}  # q4 has no qrels: ignored
    scores = per_query(run, qrels, ["ndcg@10", "recall@100"])
    assert set(scores) == {"q1", "q2"}
    assert scores["q2"] == {"ndcg@10": 0.0, "recall@100": 0.0}
    # means over q1 (1.0) and q2 (0.0)
    assert evaluate(run, qrels, ["ndcg@10", "recall@100"]) == {"ndcg@10": 0.5, "recall@100": 0.5}


def test_mean_over_queries_with_the_default_metrics() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    run = {"q1": ["d1"], "q2": ["x", "x2", "d2"]}
    # q1: every metric 1. q2: d2 at rank 3 -> nDCG 1/log2(4) = 0.5, recall 1, MRR 1/3
    assert evaluate(run, qrels) == {
        "ndcg@10": pytest.approx((1 + 0.5) / 2),
        "recall@10": 1.0,
        "recall@100": 1.0,
        "mrr@10": pytest.approx((1 + 1 / 3) / 2),
    }


def test_metric_names() -> None:
    assert parse_metric("nDCG@10").name == "ndcg@10"
    for bad in ("map@10", "ndcg@0", "ndcg", "recall@ten"):
        with pytest.raises(ValueError, match="allowed: ndcg@k, recall@k, mrr@k, precision@k"):
            parse_metric(bad)


def test_no_judged_query_is_an_error() -> None:
    with pytest.raises(ValueError, match="no query in the qrels has a relevant document"):
        evaluate({"q": ["d"]}, {"q": {"d": 0}})
