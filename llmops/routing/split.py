"""Sticky weighted assignment.

A key (a user or session id) and the experiment's salt hash to a fixed point in [0, 1). Each
variant owns a slice of [0, 1) as wide as its weight, in the order the variants are listed.
The same key always lands on the same point, so it keeps its variant across requests and
restarts; when the weights change, only keys whose point leaves their variant's slice move
(raising a variant's weight from 10 % to 20 % moves 10 % of the keys, all into that variant).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from llmops.config.experiment import normalised_weights


def unit_point(key: str, salt: str) -> float:
    """A uniform, stable point in [0, 1) for ``key`` within the experiment ``salt``."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


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
