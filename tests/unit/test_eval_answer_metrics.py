"""Answer metrics, retrieval hit@k, bootstrap statistics and gates."""

from __future__ import annotations

import numpy as np
import pytest

from llmops.evaluation import answer_metrics as am
from llmops.evaluation.gates import check, parse_gate
from llmops.evaluation.retrieval_metrics import parse_metric
from llmops.evaluation.stats import paired, summarize


def test_normalisation_drops_citations_articles_and_punctuation() -> None:
    assert am.normalize("The pump, must be bled [1]. [2, 3]") == "pump must be bled"


def test_exact_match_and_f1_take_the_best_reference() -> None:
    assert am.best_of("exact_match", "Bleed the pump [1].", ["no", "bleed the pump"]) == 1.0
    # 2 of 3 answer tokens are in the 4-token reference: P 2/3, R 2/4
    f1 = am.token_f1("bleed pump now", "bleed the pump first slowly")
    assert f1 == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))
    assert am.best_of("token_f1", "x", []) is None


def test_rouge_l_uses_the_longest_common_subsequence() -> None:
    # the longest common subsequence is "w y z": 3 of 4 tokens on each side
    assert am.rouge_l("w x y z", "w y z q") == pytest.approx(0.75)
    assert am.rouge_l("alpha", "beta") == 0.0


def test_bleu_is_perfect_for_identical_text_and_low_for_unrelated() -> None:
    text = "the service rebuilds the index when the embedder changes"
    assert am.bleu(text, text) == pytest.approx(1.0)
    assert am.bleu("completely different words here", text) < 0.1


def test_semantic_similarity_is_the_best_cosine() -> None:
    table = {"a": [1.0, 0.0], "r1": [0.0, 1.0], "r2": [3.0, 4.0]}

    def embed(texts: list[str]) -> np.ndarray:
        return np.array([table[t] for t in texts])

    assert am.semantic_similarity("a", ["r1", "r2"], embed) == pytest.approx(0.6)


def test_abstention_is_correct_only_when_it_matches_answerability() -> None:
    assert am.abstention_correct(abstained=True, answerable=False) == 1.0
    assert am.abstention_correct(abstained=False, answerable=True) == 1.0
    assert am.abstention_correct(abstained=True, answerable=True) == 0.0
    assert am.abstention_correct(abstained=False, answerable=False) == 0.0


def test_hit_at_k() -> None:
    hit = parse_metric("hit@2")
    assert hit(["d9", "d1"], {"d1": 1}) == 1.0
    assert hit(["d9", "d8", "d1"], {"d1": 1}) == 0.0


def test_bootstrap_interval_brackets_the_mean_and_narrows_with_data() -> None:
    rng = np.random.default_rng(1)
    small = summarize(list(rng.normal(0.5, 0.1, 20)))
    large = summarize(list(rng.normal(0.5, 0.1, 2000)))
    assert small.low < small.mean < small.high
    assert large.high - large.low < small.high - small.low
    assert summarize([0.3]).low == summarize([0.3]).high == 0.3
    assert summarize([1.0, 0.0, 1.0]) == summarize([1.0, 0.0, 1.0])  # seeded


def test_paired_comparison_separates_a_real_gain_from_noise() -> None:
    rng = np.random.default_rng(2)
    base = rng.uniform(0, 1, 200)
    better = paired(list(base), list(base + 0.05 + rng.normal(0, 0.01, 200)))
    assert better.significant and better.low > 0 and better.diff == pytest.approx(0.05, abs=0.01)
    noise = paired(list(base), list(base + rng.normal(0, 0.1, 200)))
    assert not noise.significant and noise.low < 0 < noise.high
    assert paired([1.0, 0.0], [1.0, 0.0]).p_value == 1.0


def test_gates_parse_compare_and_fail_on_missing_metrics() -> None:
    gates = [
        parse_gate("recall@5 >= 0.9"),
        parse_gate("p95_latency_ms<=500"),
        parse_gate("bleu > 0"),
    ]
    results = check(gates, {"recall@5": 0.95, "p95_latency_ms": 700.0})
    assert [r.passed for r in results] == [True, False, False]
    assert results[2].value is None and "missing" in results[2].describe()
    with pytest.raises(ValueError, match="expected"):
        parse_gate("recall@5 is high")
