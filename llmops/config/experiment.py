"""The ``experiment:`` section: named variants of the app and how traffic is split among them.

A variant changes some of the app's prompt, generator and retrieval settings; an empty variant
is the app as configured. ``weighted`` assigns each user stickily by weight; ``thompson`` learns
from ``POST /feedback`` which variant earns the most reward and sends it more traffic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from llmops.config.component import ComponentSpec, Strict

_VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def normalised_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Shares that sum to 1, from fractions summing to 1 or percentages summing to 100.

    Anything else is refused rather than guessed at: weights of 0.5 and 0.6 are a typo, not a
    55/45 split.
    """
    if not weights:
        raise ValueError("a split needs at least one variant with a weight")
    bad = {name: w for name, w in weights.items() if not math.isfinite(w) or w < 0}
    if bad:
        raise ValueError(f"weights must be finite and not negative; got {bad}")
    total = sum(weights.values())
    if math.isclose(total, 1.0, abs_tol=1e-6) or math.isclose(total, 100.0, abs_tol=1e-4):
        return {name: w / total for name, w in weights.items()}
    raise ValueError(
        f"weights sum to {total:g}: give fractions that sum to 1 (0.9 and 0.1) or percentages "
        "that sum to 100 (90 and 10)"
    )


class VariantConfig(Strict):
    """The app with some settings changed; unset ones keep the app's."""

    prompt: str | None = Field(None, description="Template name in prompts/.")
    generator: ComponentSpec | None = Field(None, description="A generator section.")
    retrieval: dict[str, Any] = Field(
        default_factory=dict, description="Keys of the app's retrieval section to override."
    )

    @field_validator("retrieval")
    @classmethod
    def _retrieval_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        from llmops.config.schema import RetrievalConfig  # (schema imports this module)

        RetrievalConfig.model_validate(value)  # every key and value as an app's retrieval
        return value


class ExperimentConfig(Strict):
    name: str = Field(
        pattern=_VARIANT_NAME.pattern, description="Names the experiment and its stored state."
    )
    strategy: Literal["weighted", "thompson"] = "weighted"
    variants: dict[str, VariantConfig] = Field(
        min_length=2, description="Variant name → its changes ({} is the app as configured)."
    )
    weights: dict[str, float] | None = Field(
        None, description="weighted: each variant's share (fractions or percentages)."
    )
    key: str = Field(
        "x-user-id",
        description="Request header whose value keeps a user on one variant (else the "
        "request's `user` field; requests with neither are assigned at random).",
    )
    reward: Literal["binary", "numeric"] = Field(
        "binary", description="thompson: thumbs (feedback 0/1) or any numeric score."
    )
    min_share: float = Field(0.0, ge=0.0, le=0.5, description="thompson: floor per variant.")
    warmup: int = Field(0, ge=0, description="thompson: pulls per variant before learning.")
    redis_url: str | None = Field(
        None, description="Share the experiment's state across replicas (default: SQLite)."
    )

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, value: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        bad = [n for n in value if not _VARIANT_NAME.fullmatch(n)]
        if bad:
            raise ValueError(f"variant names must be 1-63 letters, digits, '_', '.' or '-': {bad}")
        return value

    @model_validator(mode="after")
    def _weights_match_variants(self) -> Self:
        if self.strategy != "weighted":
            if self.weights is not None:
                raise ValueError(f"weights apply to strategy 'weighted', not '{self.strategy}'")
            return self
        weights = self.weights or {name: 1 / len(self.variants) for name in self.variants}
        unknown = sorted(set(weights) - set(self.variants))
        missing = sorted(set(self.variants) - set(weights))
        if unknown or missing:
            raise ValueError(
                f"weights must name each variant once: unknown {unknown}, missing {missing} "
                f"(variants: {sorted(self.variants)})"
            )
        normalised_weights(weights)
        return self

    def shares(self) -> dict[str, float]:
        """Each variant's share under ``weighted`` (equal shares when no weights are given)."""
        if self.weights is None:
            return {name: 1 / len(self.variants) for name in self.variants}
        return normalised_weights(self.weights)
