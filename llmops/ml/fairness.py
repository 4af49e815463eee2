"""Fairness of a binary classifier across the groups of a column (fairlearn): demographic
parity difference (the gap in positive-prediction rates) and equalized odds difference (the
larger gap in true- or false-positive rates), each with a bootstrap 95 % interval over the
test rows, so a gap is read with its uncertainty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmops.deps import require

RESAMPLES = 200
SEED = 0


@dataclass(frozen=True)
class Gap:
    """A fairness difference (0: equal across groups) and its bootstrap 95 % interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def fairness_gaps(
    predicted: Any, truth: Any, groups: Any, positive: Any, resamples: int = RESAMPLES
) -> dict[str, Gap]:
    """``demographic_parity_difference`` and ``equalized_odds_difference`` of the 0/1
    predictions for the ``positive`` class across ``groups``, with intervals from
    ``resamples`` bootstrap draws (each a fairlearn call of about 25 ms)."""
    np = require("numpy", "ml")
    fair = require("fairlearn.metrics", "ml")
    y_pred = (np.asarray(predicted) == positive).astype(int)
    y_true = (np.asarray(truth) == positive).astype(int)
    groups = np.asarray(groups).astype(str)
    measures = {
        "demographic_parity_difference": fair.demographic_parity_difference,
        "equalized_odds_difference": fair.equalized_odds_difference,
    }
    rng = np.random.default_rng(SEED)
    draws = [rng.integers(0, len(y_true), len(y_true)) for _ in range(resamples)]
    out = {}
    for name, measure in measures.items():
        value = float(measure(y_true, y_pred, sensitive_features=groups))
        spread = [float(measure(y_true[d], y_pred[d], sensitive_features=groups[d])) for d in draws]
        low, high = np.nanpercentile(spread, [2.5, 97.5])
        out[name] = Gap(value, float(low), float(high))
    return out
