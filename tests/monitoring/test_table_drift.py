"""Tabular drift: a shifted feature is flagged only with both a small p-value and a real
effect size (PSI); small windows are not judged; rare categories are pooled."""

from __future__ import annotations

from llmops.monitoring.table_drift import compare_tables
from tests.ml.adult_like import adult_like

NUMERIC = ["age", "hours-per-week"]
CATEGORICAL = ["sex", "workclass"]


def test_a_shifted_slice_is_flagged_and_a_random_one_is_not() -> None:
    reference = adult_like(5000, seed=1)
    fresh = adult_like(600, seed=2)
    assert not compare_tables(reference, fresh, NUMERIC, CATEGORICAL).detected
    old = adult_like(3000, seed=3, min_age=50).head(300)
    result = compare_tables(reference, old, NUMERIC, CATEGORICAL)
    assert result.detected and result.drifted == ["age"]
    assert result.columns["age"].psi >= 0.1 and result.columns["age"].test == "ks"


def test_a_category_shift_is_flagged_by_chi_squared() -> None:
    reference = adult_like(4000, seed=1)
    current = adult_like(400, seed=4)
    current["sex"] = "Female"
    result = compare_tables(reference, current, NUMERIC, CATEGORICAL)
    assert result.drifted == ["sex"] and result.columns["sex"].test == "chi2"


def test_small_windows_are_not_judged_and_rare_categories_do_not_alarm() -> None:
    reference = adult_like(4000, seed=1)
    assert not compare_tables(reference, adult_like(50, seed=5), NUMERIC, CATEGORICAL).judged
    current = adult_like(400, seed=6)
    current.loc[:3, "workclass"] = "Never-seen-before"  # a few unknown values: pooled
    assert not compare_tables(reference, current, NUMERIC, CATEGORICAL).detected
    assert isinstance(compare_tables(reference, current, NUMERIC, []).to_dict(), dict)
