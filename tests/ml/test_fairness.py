"""Fairness gaps with bootstrap intervals (fairlearn)."""

from __future__ import annotations

import numpy as np

from llmops.ml.fairness import fairness_gaps


def test_a_biased_classifier_shows_a_gap_and_a_fair_one_does_not() -> None:
    rng = np.random.default_rng(3)
    groups = rng.choice(["a", "b"], 2000)
    truth = rng.choice(["yes", "no"], 2000)
    biased = np.where(groups == "a", "yes", truth)  # group a always gets "yes"
    gaps = fairness_gaps(biased, truth, groups, "yes", resamples=40)
    parity = gaps["demographic_parity_difference"]
    assert parity.value > 0.4 and parity.low <= parity.value <= parity.high
    fair = fairness_gaps(truth, truth, groups, "yes", resamples=40)
    assert fair["equalized_odds_difference"].value == 0.0
    assert fair["demographic_parity_difference"].high < 0.1
