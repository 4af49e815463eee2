"""The ``experiment:`` section: named variants of the app and how traffic is split among them.

A variant changes some of the app's prompt, generator and retrieval settings; an empty variant
is the app as configured. ``weighted`` assigns each user stickily by weight; ``thompson`` learns
from ``POST /feedback`` which variant earns the most reward and sends it more traffic;
``shadow`` answers with one variant and runs the other on a copy of each request in the
background; ``canary`` ramps a new variant up stage by stage and rolls it back when it fails.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from llmops.config.component import ComponentSpec, Strict

if TYPE_CHECKING:
    from llmops.config.schema import RetrievalConfig

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
    fallbacks: list[ComponentSpec] | None = Field(
        None,
        description="Generators to try in turn when the variant's generator fails (default: "
        "the app's fallbacks; [] for none). Needs the variant's own generator.",
    )
    adapter: str | None = Field(
        None,
        max_length=200,
        description="The LoRA adapter this variant answers with: a name in its generator's "
        "`adapters` (hf_local), e.g. one following models:/NAME@candidate; a request naming "
        "its own adapter keeps it. Variants share one base model.",
    )

    @field_validator("retrieval")
    @classmethod
    def _retrieval_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        from llmops.config.schema import RetrievalConfig  # (schema imports this module)

        RetrievalConfig.model_validate(value)  # every key and value as an app's retrieval
        return value

    def retrieval_for(self, app: RetrievalConfig) -> RetrievalConfig:
        """The app's retrieval settings with this variant's overrides."""
        from llmops.config.schema import RetrievalConfig

        return RetrievalConfig.model_validate({**app.model_dump(by_alias=True), **self.retrieval})

    @model_validator(mode="after")
    def _fallbacks_need_a_generator(self) -> Self:
        if self.fallbacks is not None and self.generator is None:
            raise ValueError(
                "fallbacks back up the variant's own generator: set `generator:` too (a variant "
                "without one answers with the app's generator and the app's fallbacks)"
            )
        return self


class ShadowConfig(Strict):
    """``strategy: shadow``: the other variant answers every request; this one runs on a copy
    of it in the background, and both answers and their agreement are recorded."""

    variant: str = Field(description="The variant that runs in the shadow.")
    rate: float = Field(1.0, gt=0.0, le=1.0, description="Share of requests copied.")
    max_in_flight: int = Field(
        4, ge=1, description="Shadow runs at once; copies beyond it are skipped (and counted)."
    )


class RampConfig(Strict):
    """A canary's ramp: the canary serves ``stages[i]`` of the users. Each stage judges a
    window of ``window`` canary requests: within the bounds it advances, outside them the
    canary is rolled back to 0 % and stays there (until its settings change, which restarts
    the ramp). A failed canary request is answered by the stable variant."""

    stages: list[float] = Field(
        default_factory=lambda: [0.05, 0.25, 0.5, 1.0],
        description="Rising traffic shares in (0, 1]; the last one is the end of the ramp.",
    )
    window: int = Field(100, ge=1, description="Canary requests judged per stage.")
    max_error_rate: float = Field(0.05, ge=0.0, le=1.0, description="Errors allowed per window.")
    max_p95_ms: float = Field(2000.0, gt=0.0, description="p95 latency allowed per window (ms).")

    @field_validator("stages")
    @classmethod
    def _rising_shares(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 < s <= 1 for s in value):
            raise ValueError(f"stages must be shares in (0, 1]; got {value}")
        if value != sorted(set(value)):
            raise ValueError(f"stages must rise; got {value}")
        return value


class CanaryConfig(RampConfig):
    """``strategy: canary``: the canary variant and its ramp (the other variant serves the
    rest)."""

    variant: str = Field(description="The variant being rolled out.")


class ExperimentPolicy(Strict):
    """How traffic is split among named variants, whatever a variant is: the RAG app's
    ``experiment:`` (prompt / generator / retrieval changes) or a model app's ``routing:``
    (registered versions). ``ExperimentRouter`` runs any of them."""

    name: str = Field(
        pattern=_VARIANT_NAME.pattern, description="Names the experiment and its stored state."
    )
    strategy: Literal["weighted", "thompson", "shadow", "canary"] = "weighted"
    variants: Mapping[str, Strict] = Field(min_length=2, description="Variant name → what it is.")
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
    shadow: ShadowConfig | None = Field(None, description="strategy shadow: its settings.")
    canary: CanaryConfig | None = Field(None, description="strategy canary: its ramp.")
    redis_url: str | None = Field(
        None, description="Share the experiment's state across replicas (default: SQLite)."
    )

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, value: Mapping[str, Strict]) -> Mapping[str, Strict]:
        bad = [n for n in value if not _VARIANT_NAME.fullmatch(n)]
        if bad:
            raise ValueError(f"variant names must be 1-63 letters, digits, '_', '.' or '-': {bad}")
        return value

    @model_validator(mode="after")
    def _sections_match_strategy(self) -> Self:
        for strategy in ("shadow", "canary"):
            section: ShadowConfig | CanaryConfig | None = getattr(self, strategy)
            if section is None and self.strategy == strategy:
                raise ValueError(
                    f"strategy '{strategy}' needs a `{strategy}:` section (its variant)"
                )
            if section is not None and self.strategy != strategy:
                raise ValueError(
                    f"a `{strategy}:` section needs strategy '{strategy}' (not '{self.strategy}')"
                )
            if section is None:
                continue
            if section.variant not in self.variants:
                raise ValueError(
                    f"{strategy}.variant '{section.variant}' is not one of the variants "
                    f"{sorted(self.variants)}"
                )
            if len(self.variants) != 2:
                raise ValueError(
                    f"strategy '{strategy}' compares two variants (the {strategy} and the one "
                    f"that serves); got {len(self.variants)}"
                )
        return self

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

    @property
    def serving(self) -> str:
        """The variant that answers alongside a shadow or a canary (the other of the two)."""
        special = self.shadow or self.canary
        return next(name for name in self.variants if special is None or name != special.variant)

    def shares(self) -> dict[str, float]:
        """Each variant's share under ``weighted`` (equal shares when no weights are given)."""
        if self.weights is None:
            return {name: 1 / len(self.variants) for name in self.variants}
        return normalised_weights(self.weights)


class ExperimentConfig(ExperimentPolicy):
    """A RAG app's ``experiment:`` section."""

    variants: dict[str, VariantConfig] = Field(
        min_length=2, description="Variant name → its changes ({} is the app as configured)."
    )
