"""Drift statistics between a reference window and a current window.

- numeric signals: Kolmogorov–Smirnov two-sample test (its p-value decides) and the
  population stability index (PSI, reported as the size of the shift);
- question embeddings: maximum mean discrepancy (MMD², RBF kernel with the median-distance
  bandwidth) with a permutation test for its p-value.

One check runs several tests: the embedding test at ``alpha / 2`` and each numeric signal at
``alpha / 2 / signals`` (weighted Bonferroni), so a check raises a false alarm with
probability at most ``alpha`` when nothing changed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llmops.deps import require

EMBEDDING = "embedding"
MAX_REFERENCE = 1000  # the permutation test is quadratic in the number of samples


@dataclass(frozen=True)
class Window:
    """Samples of one period: numeric signals by name, and question embeddings (rows)."""

    signals: Mapping[str, np.ndarray] = field(default_factory=dict)
    embeddings: np.ndarray | None = None

    @property
    def size(self) -> int:
        if self.embeddings is not None:
            return len(self.embeddings)
        return max((len(v) for v in self.signals.values()), default=0)


@dataclass(frozen=True)
class SignalDrift:
    statistic: float
    p_value: float
    detected: bool
    psi: float | None = None
    level: float | None = None  # the p-value below which this signal counts as drifted

    def scores(self, name: str) -> dict[str, float]:
        out = {("mmd2" if name == EMBEDDING else "ks"): self.statistic, "p_value": self.p_value}
        if self.psi is not None:
            out["psi"] = self.psi
        return out


@dataclass(frozen=True)
class DriftResult:
    detected: bool
    signals: dict[str, SignalDrift]
    reference_size: int
    current_size: int
    alpha: float

    @property
    def drifted(self) -> list[str]:
        return [name for name, s in self.signals.items() if s.detected]

    def to_dict(self) -> dict[str, Any]:
        return {
            "detected": self.detected,
            "drifted": self.drifted,
            "reference_size": self.reference_size,
            "current_size": self.current_size,
            "alpha": self.alpha,
            "signals": {name: asdict(s) for name, s in self.signals.items()},
        }


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index over the reference's quantile bins (0: same; > 0.2 is
    commonly read as a large shift)."""
    values = np.unique(reference)
    if len(values) <= bins:  # a discrete signal (abstained, counts): one bin per value
        inner = (values[:-1] + values[1:]) / 2
    else:
        inner = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    if len(inner) == 0:  # a constant reference: below, at and above it
        inner = np.array([values[0] - 1e-9, values[0] + 1e-9])
    edges = np.r_[-np.inf, inner, np.inf]
    ref = np.histogram(reference, edges)[0] / len(reference)
    cur = np.histogram(current, edges)[0] / len(current)
    ref, cur = np.clip(ref, 1e-4, None), np.clip(cur, 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov statistic and p-value."""
    stats = require("scipy.stats", extra="monitor")
    result = stats.ks_2samp(reference, current)
    return float(result.statistic), float(result.pvalue)


def mmd_test(
    reference: np.ndarray, current: np.ndarray, permutations: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Biased MMD² with an RBF kernel and its permutation p-value."""
    rng = np.random.default_rng(seed)
    if len(reference) > MAX_REFERENCE:
        reference = reference[rng.choice(len(reference), MAX_REFERENCE, replace=False)]
    pooled = np.vstack([reference, current]).astype(np.float64)
    squared = np.sum(pooled**2, axis=1)
    distances = np.maximum(squared[:, None] + squared[None, :] - 2 * pooled @ pooled.T, 0.0)
    bandwidth = np.median(distances[np.triu_indices(len(pooled), 1)]) or 1.0
    kernel = np.exp(-distances / bandwidth)
    n, m = len(reference), len(current)
    labels = np.r_[np.full(n, 1.0 / n), np.full(m, -1.0 / m)]
    weights = rng.permuted(np.tile(labels, (permutations + 1, 1)), axis=1)
    weights[0] = labels
    values = np.einsum("pi,pi->p", weights @ kernel, weights)
    observed = float(values[0])
    p_value = float((1 + np.sum(values[1:] >= observed)) / (permutations + 1))
    return observed, p_value


def compare(
    reference: Window, current: Window, alpha: float = 0.01, permutations: int = 200
) -> DriftResult:
    """Test every signal present (and not constant in both) in both windows."""
    names = [
        n
        for n in current.signals
        if n in reference.signals and len(reference.signals[n]) and len(current.signals[n])
    ]
    use_embeddings = (
        reference.embeddings is not None
        and current.embeddings is not None
        and len(reference.embeddings) > 1
        and len(current.embeddings) > 1
    )
    # weighted Bonferroni: half of alpha to the embedding test, half shared by the signals
    share = alpha / 2 if names and use_embeddings else alpha
    level = share / max(len(names), 1)
    signals: dict[str, SignalDrift] = {}
    for name in names:
        ref = np.asarray(reference.signals[name], dtype=np.float64)
        cur = np.asarray(current.signals[name], dtype=np.float64)
        statistic, p_value = ks(ref, cur)
        signals[name] = SignalDrift(statistic, p_value, p_value < level, psi(ref, cur), level)
    if use_embeddings:
        assert reference.embeddings is not None and current.embeddings is not None
        enough = max(permutations, math.ceil(2 / share))  # so that p can fall below the level
        statistic, p_value = mmd_test(reference.embeddings, current.embeddings, enough)
        signals[EMBEDDING] = SignalDrift(statistic, p_value, p_value < share, level=share)
    detected = any(s.detected for s in signals.values())
    return DriftResult(detected, signals, reference.size, current.size, alpha)
