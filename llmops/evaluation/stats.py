"""Statistics that keep noise from being reported as progress.

- ``summarize``: the mean and a 95% percentile-bootstrap confidence interval.
- ``paired``: two systems scored on the same samples: the mean difference (B − A), its
  bootstrap CI, and a two-sided p-value from a paired sign-flip permutation test.

Both are seeded, so a report is reproducible to the last digit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
SEED = 0
ALPHA = 0.05


@dataclass(frozen=True)
class Summary:
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


@dataclass(frozen=True)
class Comparison:
    """B − A on the samples both have."""

    mean_a: float
    mean_b: float
    diff: float
    low: float
    high: float
    p_value: float
    n: int

    @property
    def p_text(self) -> str:
        """The p-value as reports show it (the smallest a permutation test can give is
        1 / (resamples + 1), so tiny ones read "<0.001")."""
        return "<0.001" if self.p_value < 0.001 else f"{self.p_value:.3f}"

    @property
    def significant(self) -> bool:
        return self.n > 1 and self.p_value < ALPHA

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "diff": self.diff,
            "low": self.low,
            "high": self.high,
            "p_value": self.p_value,
            "n": self.n,
            "significant": self.significant,
        }


def _bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(resamples, len(values)))
    means: np.ndarray = values[picks].mean(axis=1)
    return means


def _interval(means: np.ndarray) -> tuple[float, float]:
    low, high = np.quantile(means, [ALPHA / 2, 1 - ALPHA / 2])
    return float(low), float(high)


def summarize(values: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> Summary:
    """Mean and 95% bootstrap CI; one value gives a zero-width interval. Needs a value."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        raise ValueError("no values to summarize")
    mean = float(array.mean())
    if array.size == 1:
        return Summary(mean, mean, mean, 1)
    low, high = _interval(_bootstrap_means(array, resamples, seed))
    return Summary(mean, low, high, int(array.size))


def paired(
    a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED
) -> Comparison:
    """Compare B with A sample by sample (``a[i]`` and ``b[i]`` score the same sample)."""
    if len(a) != len(b) or not a:
        raise ValueError("a paired comparison needs two equally long, non-empty score lists")
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = y - x
    observed = float(diff.mean())
    if diff.size == 1:
        return Comparison(float(x.mean()), float(y.mean()), observed, observed, observed, 1.0, 1)
    low, high = _interval(_bootstrap_means(diff, resamples, seed))
    return Comparison(
        float(x.mean()),
        float(y.mean()),
        observed,
        low,
        high,
        _sign_flip_p(diff, resamples, seed),
        len(a),
    )


def _sign_flip_p(diff: np.ndarray, resamples: int, seed: int) -> float:
    """Two-sided p-value of "the mean difference is 0": under that hypothesis each
    difference's sign is a coin flip. The observed statistic counts as one of the draws
    (so p is never 0)."""
    if not np.any(diff):
        return 1.0
    rng = np.random.default_rng(seed + 1)
    signs = rng.choice(np.array([-1.0, 1.0]), size=(resamples, diff.size))
    flipped = np.abs((signs * diff).mean(axis=1))
    extreme = int(np.sum(flipped >= abs(diff.mean()) - 1e-12))
    return (extreme + 1) / (resamples + 1)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (linear interpolation, as numpy's default)."""
    if not values:
        raise ValueError("no values")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))
