"""Sticky weighted assignment.

A key (a user or session id) and the experiment's salt hash to a fixed point in [0, 1). Each
variant owns a slice of [0, 1) as wide as its weight, in the order the variants are listed.
The same key always lands on the same point, so it keeps its variant across requests and
restarts; when the weights change, only keys whose point leaves their variant's slice move
(raising a variant's weight from 10 % to 20 % moves 10 % of the keys, all into that variant).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from llmops.errors import InvalidRequest


def unit_point(key: str, salt: str) -> float:
    """A uniform, stable point in [0, 1) for ``key`` within the experiment ``salt``."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def normalised_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Shares that sum to 1, from fractions summing to 1 or percentages summing to 100.

    Anything else is refused rather than guessed at: weights of 0.5 and 0.6 are a typo, not a
    55/45 split.
    """
    if not weights:
        raise InvalidRequest("a split needs at least one variant with a weight")
    bad = {name: w for name, w in weights.items() if not math.isfinite(w) or w < 0}
    if bad:
        raise InvalidRequest(f"weights must be finite and not negative; got {bad}")
    total = sum(weights.values())
    if math.isclose(total, 1.0, abs_tol=1e-6) or math.isclose(total, 100.0, abs_tol=1e-4):
        return {name: w / total for name, w in weights.items()}
    raise InvalidRequest(
        f"weights sum to {total:g}: give fractions that sum to 1 (0.9 and 0.1) or percentages "
        "that sum to 100 (90 and 10)"
    )


@dataclass(frozen=True)
class WeightedSplit:
    """Assigns keys to variants by weight, stickily (see the module docstring)."""

    salt: str
    variants: tuple[str, ...]
    bounds: tuple[float, ...]  # cumulative upper bound of each variant's slice

    @classmethod
    def of(cls, weights: Mapping[str, float], salt: str) -> WeightedSplit:
        shares = normalised_weights(weights)
        bounds, upper = [], 0.0
        for share in shares.values():
            upper += share
            bounds.append(upper)
        bounds[-1] = 1.0  # no gap at the top from rounding
        return cls(salt, tuple(shares), tuple(bounds))

    def assign(self, key: str) -> str:
        point = unit_point(key, self.salt)
        for variant, upper in zip(self.variants, self.bounds, strict=True):
            if point < upper:
                return variant
        return self.variants[-1]
