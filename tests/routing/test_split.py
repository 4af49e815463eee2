"""Sticky weighted assignment: stable per key and across restarts, on target over many keys,
minimal movement when weights change, clear errors for weights that do not add up."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from llmops.config.experiment import normalised_weights
from llmops.routing.split import WeightedSplit

WEIGHTS = {"control": 0.7, "new_prompt": 0.2, "new_model": 0.1}


def test_a_key_keeps_its_variant_across_requests_and_restarts() -> None:
    split = WeightedSplit.of(WEIGHTS, salt="exp-1")
    first = {f"user-{i}": split.assign(f"user-{i}") for i in range(200)}
    for n in range(10_000):
        key = f"user-{n % 200}"
        assert split.assign(key) == first[key]
    restarted = WeightedSplit.of(dict(WEIGHTS), salt="exp-1")  # a new process, same config
    assert {k: restarted.assign(k) for k in first} == first


def test_the_observed_split_is_within_one_point_of_the_weights() -> None:
    split = WeightedSplit.of(WEIGHTS, salt="exp-1")
    counts = Counter(split.assign(f"session-{i}") for i in range(10_000))
    for variant, weight in WEIGHTS.items():
        assert abs(counts[variant] / 10_000 - weight) < 0.01, (variant, counts)


def test_another_salt_reshuffles_users() -> None:
    one, other = WeightedSplit.of(WEIGHTS, "exp-1"), WeightedSplit.of(WEIGHTS, "exp-2")
    same = sum(one.assign(f"u{i}") == other.assign(f"u{i}") for i in range(2000))
    assert same < 0.6 * 2000  # independent: 0.7² + 0.2² + 0.1² = 54 % agree by chance


def test_changing_weights_moves_only_the_keys_it_must() -> None:
    before = WeightedSplit.of({"a": 90, "b": 10}, "exp")
    after = WeightedSplit.of({"a": 80, "b": 20}, "exp")
    keys = [f"u{i}" for i in range(10_000)]
    moved = [
        (before.assign(k), after.assign(k)) for k in keys if before.assign(k) != after.assign(k)
    ]
    assert set(moved) == {("a", "b")}  # nobody leaves b
    assert abs(len(moved) / len(keys) - 0.10) < 0.01


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"a": 0.5, "b": 0.6}, "sum to 1.1: give fractions that sum to 1"),
        ({"a": 60, "b": 60}, "sum to 120"),
        ({"a": -0.5, "b": 1.5}, "not negative"),
        ({"a": math.nan, "b": 1.0}, "finite"),
        ({}, "at least one variant"),
    ],
)
def test_weights_that_do_not_add_up_are_refused(weights: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalised_weights(weights)


def test_percentages_and_fractions_mean_the_same() -> None:
    assert normalised_weights({"a": 90, "b": 10}) == pytest.approx({"a": 0.9, "b": 0.1})
    assert normalised_weights({"a": 0.9, "b": 0.1}) == pytest.approx({"a": 0.9, "b": 0.1})
